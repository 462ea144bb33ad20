"""Which destination paths a push accepts: checked in the controller, before any host.

A destination is written byte for byte as declared, so a path the remote shell, a
report line or a terminal would show differently from the file actually written is
refused up front (exit 2 with file, line and key): control characters (C0, DEL, C1 —
``\\r``, ``\\x1c``–``\\x1f``, ``\\x85`` included), the Unicode line and paragraph separators
U+2028/U+2029, NUL; relative paths; ``.``/``..`` segments; empty segments (``//``) and a
trailing ``/``. Spaces, quotes, backslashes, ``$()``, ``*``, a leading ``-`` and letters of
any script are fine: every remote command quotes them.
"""

from __future__ import annotations

__all__ = ["dest_problem"]

_SEPARATORS = {"\u2028": "U+2028 (line separator)", "\u2029": "U+2029 (paragraph separator)"}


def _bad_char(path: str) -> str | None:
    for ch in path:
        code = ord(ch)
        if code < 0x20 or code == 0x7F or 0x80 <= code <= 0x9F:
            return f"the control character {ch!r} (U+{code:04X})"
        if ch in _SEPARATORS:
            return f"the character {_SEPARATORS[ch]}"
    return None


def dest_problem(dest: str) -> str | None:
    """Why ``dest`` cannot be a destination, or None when it is fine.

    :param dest: the rendered destination (``str``).
    :returns: one sentence naming the problem and what to write instead, or None.
    """
    bad = _bad_char(dest)
    if bad:
        return f"dest {dest!r} contains {bad}: a destination must be a plain absolute path"
    if not dest.startswith("/"):
        return f"dest {dest!r} must be an absolute path (starting with /)"
    if dest.endswith("/"):
        return f"dest {dest!r} ends with '/': name the file, e.g. {dest}app.conf"
    segments = dest[1:].split("/")
    if any(s == "" for s in segments):
        return f"dest {dest!r} has an empty segment ('//'): write each directory once"
    if any(s in (".", "..") for s in segments):
        return f"dest {dest!r} has a '.' or '..' segment: write the resolved absolute path"
    return None
