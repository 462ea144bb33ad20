"""The one rule of what is a secret and how it is hidden (``********``), for every output path.

A leaf module (it imports nothing of concurdeploy), so that the worker side
(:mod:`concurdeploy.operations.masking`), the reports and the CLI (:mod:`concurdeploy.report.masking`)
hide exactly the same things:

- **which vars are secret**: those listed in the host's ``secret_vars``, and those named like a
  secret (:data:`SECRET_WORDS`: ``db_password``, ``api_token``…; a ``*_env`` var names an
  environment variable and is not secret, nor is ``secret_vars`` itself), nested values included;
  their *rendered* values count (``db_password: "{{ vault_db }}"`` hides the value of ``vault_db``);
- **which texts of a secret are hidden** (:func:`secret_forms`): the value; each of its lines of
  4 characters or more (a PEM key printed line by line, or half of it, is still hidden); the
  base64 body of a PEM/OpenSSH key as one string (its lines joined); and the value as ``repr``
  and JSON escape it (``\\n`` for a newline), so a report that quotes it is covered too.
"""

from __future__ import annotations

import functools
import json

__all__ = ["MASK", "SECRET_WORDS", "is_secret_name", "mask", "mask_data", "secret_forms",
           "secret_var_values"]

#: What a hidden secret is shown as.
MASK = "********"
#: Parts of a var name that mark its value as secret.
SECRET_WORDS = ("password", "passphrase", "secret", "token", "private_key")
#: Lines of a multi-line secret shorter than this are not hidden on their own (``}``, ``--``).
MIN_LINE = 4


def is_secret_name(key, names=()) -> bool:
    """True if var ``key`` holds a secret: listed in ``names`` (the host's ``secret_vars``), or
    named like one (:data:`SECRET_WORDS`, case-insensitive), but not a ``*_env`` var (it names
    an environment variable) nor ``secret_vars`` itself."""
    key = str(key)
    if key in names:
        return True
    return any(w in key.lower() for w in SECRET_WORDS) and not key.endswith("_env") \
        and key != "secret_vars"


def secret_var_values(hvars: dict, names=()) -> list[str]:
    """Every value of a secret var of ``hvars`` (nested mappings and lists walked; a nested key
    named like a secret counts too), as text, in first-seen order.

    :param hvars: a host's vars, already rendered (``{{ }}`` resolved) where possible.
    :param names: the host's ``secret_vars`` (a set or list of var names).
    :returns: ``list[str]`` (None, ``""`` and booleans are no secrets).
    """
    found: list[str] = []

    def walk(key, value, inherited: bool) -> None:
        secret = inherited or is_secret_name(key, names)
        if isinstance(value, dict):
            for k, x in value.items():
                walk(k, x, secret)
        elif isinstance(value, (list, tuple)):
            for x in value:
                walk(key, x, secret)
        elif value not in (None, "") and not isinstance(value, bool) and secret:
            found.append(str(value))

    for k, x in hvars.items():
        walk(k, x, False)
    return list(dict.fromkeys(found))


@functools.lru_cache(maxsize=256)
def secret_forms(value: str) -> tuple[str, ...]:
    """The texts to hide for one secret ``value``, longest first.

    :returns: the value, stripped; each line of ``MIN_LINE`` (4) characters or more, stripped;
        for a multi-line value, its non-``-----`` lines joined (a PEM/OpenSSH key's base64
        body as one string); the value as ``repr`` and JSON escape it. Empty for ``""``.
    """
    if not value:
        return ()
    forms = {value, value.strip()}
    lines = [ln.strip() for ln in value.splitlines()]
    forms.update(ln for ln in lines if len(ln) >= MIN_LINE)
    if len(lines) > 1:
        forms.add("".join(ln for ln in lines if ln and not ln.startswith("-----")))
        for v in (value, value.strip()):
            forms.add(repr(v)[1:-1])
            forms.add(json.dumps(v)[1:-1])
    return tuple(sorted((f for f in forms if len(f) >= min(MIN_LINE, len(value.strip()) or 1)),
                        key=len, reverse=True))


def mask(text: str, secrets) -> str:
    """``text`` with every form (:func:`secret_forms`) of each secret replaced by ``********``,
    longest first (so a whole key goes before its lines).

    :param secrets: an iterable of secret values (``str``); empty ones are ignored.
    """
    if not text:
        return text
    forms = sorted({f for s in secrets if s for f in secret_forms(str(s))}, key=len, reverse=True)
    for form in forms:
        if form in text:
            text = text.replace(form, MASK)
    return text


def mask_data(value, secrets):
    """``value`` with :func:`mask` applied to every string inside (dicts, lists, tuples; keys too)."""
    if isinstance(value, str):
        return mask(value, secrets)
    if isinstance(value, dict):
        return {mask_data(k, secrets): mask_data(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(mask_data(v, secrets) for v in value)
    return value
