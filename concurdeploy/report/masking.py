"""Which values are secrets, and text with them hidden (``********``), for what the CLI prints
of an inventory (``hosts --vars``, ``inventory --list``).

The rule is :mod:`concurdeploy.secretset`'s, the one the workers mask ``run``/``push`` output
with: a var listed in ``secret_vars`` or named like a secret, its *rendered* value (``{{ }}``
resolved against the host's vars), each line of a multi-line value and a key's base64 body.
"""

from __future__ import annotations

from concurdeploy.secretset import MASK, SECRET_WORDS, is_secret_name, mask, secret_var_values

__all__ = ["SECRET_WORDS", "hide", "secret_values_of"]

_is_secret_name = is_secret_name  # the name cli.tasks imports


def _mask(key: str, value, names=()):
    """``value`` for display: ``********`` if ``key`` is listed in ``secret_vars`` (``names``)
    or names a secret (password, passphrase, secret, token; ``*_env`` names a variable, shown);
    in a mapping, the same per key."""
    if is_secret_name(key, names):
        return MASK
    if isinstance(value, dict):
        return {k: _mask(k, x) for k, x in value.items()}
    if isinstance(value, list):
        return [_mask("", x) for x in value]
    return value


def _render_all(hvars: dict, limit: int = 10) -> dict:
    """``hvars`` with ``{{ }}`` in string values rendered against the others where it can be
    (Jinja2, sandboxed, undefined names are errors: such a value stays as written); at most
    ``limit`` passes. Only to know which *values* to hide; nothing is run."""
    templated = [k for k, v in hvars.items() if isinstance(v, str) and ("{{" in v or "{%" in v)]
    if not templated:
        return hvars
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    out = dict(hvars)
    for _ in range(limit):
        changed = False
        for k in templated:
            try:
                new = env.from_string(out[k]).render(out) if isinstance(out[k], str) else out[k]
            except Exception:  # noqa: BLE001 - any template error: the value stays as written
                continue
            changed, out[k] = changed or new != out[k], new
        if not changed:
            break
    return out


def secret_values_of(hvars: dict, names=()) -> list[str]:
    """Every secret value of a host's vars (rendered, and as written), to hide wherever quoted.

    :param hvars: the host's merged vars; ``names``: its ``secret_vars``.
    :returns: ``list[str]``, distinct, first-seen order.
    """
    values = secret_var_values(_render_all(hvars), names) + secret_var_values(hvars, names)
    return list(dict.fromkeys(values))


_secret_var_values = secret_values_of  # the name cli.tasks imports


def hide(text: str, values) -> str:
    """``text`` (often a ``repr``) with each secret value — as such, as ``repr`` escapes it,
    and each of its lines — replaced by ``********`` (:func:`concurdeploy.secretset.mask`)."""
    values = [str(v) for v in values if v]
    return mask(text, values + [repr(v)[1:-1] for v in values])


_hide = hide  # the name cli.tasks imports
