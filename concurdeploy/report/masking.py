"""Which values are secrets, and text with them hidden (``********``)."""

from __future__ import annotations

__all__ = ["SECRET_WORDS"]


#: Parts of a var name that mark its value as secret (``hosts --vars`` shows ``********``).
SECRET_WORDS = ("password", "passphrase", "secret", "token", "private_key")


def _is_secret_name(key, names=()) -> bool:
    key = str(key)
    if key in names:
        return True
    return any(w in key.lower() for w in SECRET_WORDS) and not key.endswith("_env") \
        and key != "secret_vars"


def _mask(key: str, value, names=()):
    """``value`` for display: ``********`` if ``key`` is listed in ``secret_vars`` (``names``)
    or names a secret (password, passphrase, secret, token; ``*_env`` names a variable, shown);
    in a mapping, the same per key."""
    if _is_secret_name(key, names):
        return "********"
    if isinstance(value, dict):
        return {k: _mask(k, x) for k, x in value.items()}
    if isinstance(value, list):
        return [_mask("", x) for x in value]
    return value


def _secret_var_values(hvars: dict, names) -> list[str]:
    """Every secret value (of a secret var, also nested) as text, to hide wherever it is quoted."""
    found = []

    def walk(key, value):
        if isinstance(value, dict):
            for k, x in value.items():
                walk(k, x)
        elif isinstance(value, list):
            for x in value:
                walk(key, x)
        elif value not in (None, "") and not isinstance(value, bool) and _is_secret_name(key, names):
            found.append(str(value))

    for k, x in hvars.items():
        walk(k, x)
    return found


def _hide(text: str, values: list[str]) -> str:
    """``text`` (a ``repr``) with each secret value, as such or as ``repr`` escapes it, replaced."""
    for value in sorted(set(values), key=len, reverse=True):
        for form in {value, repr(value)[1:-1]}:
            if form:
                text = text.replace(form, "********")
    return text
