"""The lexical rules of OpenSSH's client config (``readconf.c``, ``misc.c``, ``match.c``):
word splitting, quoting, ``%`` tokens, ``${ENV}``, patterns, times, ``[user@]host[:port]``
hops. Used by :mod:`concurdeploy.ssh.openssh_config`; no file or process I/O here.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import pwd
import re

from concurdeploy.exceptions import InventoryError

__all__ = ["argv_split", "check_agent", "config_error", "conn_hash", "convtime", "dollar", "hop_texts",
           "is_address", "match_pattern", "parse_hop", "pattern_list", "percent", "strdelim", "user_home"]

WS = " \t\r\n"
_TIME_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def hop_texts(value: str) -> list[str]:
    """The hops of a raw ``ProxyJump`` value (comment cut at ``#``, as ``parse_jump`` does)."""
    return value.split("#", 1)[0].rstrip(WS).split(",")


def parse_hop(text: str) -> tuple[str | None, str, int | None]:
    """``[user@]host[:port]`` (also ``ssh://user@host:port`` and ``[v6addr]:port``).

    :returns: ``(user or None, host, port or None)``.
    :raises ValueError: empty host or a bad port.
    """
    rest = text.strip()
    if rest.startswith("ssh://"):
        rest = rest[len("ssh://"):].rstrip("/")
    user = None
    if "@" in rest:
        user, _, rest = rest.rpartition("@")
        user = user or None
    port = None
    if rest.startswith("["):
        host, _, after = rest[1:].partition("]")
        if after.startswith(":"):
            port = after[1:]
    elif rest.count(":") == 1:
        host, _, port = rest.partition(":")
    else:
        host = rest
    if port is not None:
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"jump host {text!r}: port {port!r} is not a number from 1 to 65535")
        port = int(port)
    if not host:
        raise ValueError(f"jump host {text!r} has no host name")
    return user, host, port



def conn_hash(this, host, port, user, jump) -> str:
    return hashlib.sha1((this + host + port + user + (jump or "")).encode()).hexdigest()


def percent(value: str, tokens: dict, where, keyword: str) -> str:
    out, i = [], 0
    while i < len(value):
        c = value[i]
        if c != "%":
            out.append(c)
            i += 1
            continue
        if i + 1 >= len(value):
            raise config_error(where, keyword, f"{value!r} ends with a lone '%' (write %% for a percent sign)")
        t = value[i + 1]
        if t == "%":
            out.append("%")
        elif t in tokens:
            out.append(tokens[t])
        else:
            raise config_error(where, keyword, f"%{t} is not a token ssh knows here (ssh refuses it)")
        i += 2
    return "".join(out)


def dollar(value: str, where, keyword: str) -> str:
    def one(m):
        name = m.group(1)
        if name not in os.environ:
            raise config_error(where, keyword, f"${{{name}}} is not set in the environment")
        return os.environ[name]
    if "${" in value and not re.fullmatch(r"(?:[^$]|\$(?!\{)|\$\{[A-Za-z_][A-Za-z0-9_]*\})*", value):
        raise config_error(where, keyword, f"{value!r}: bad ${{...}} (a variable name in braces)")
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", one, value)


def check_agent(arg, where, keyword):
    if arg.startswith("$") and not arg.startswith("${") and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", arg[1:]):
        raise config_error(where, keyword, f"{arg!r} is not a valid environment variable name")
    if "${" in arg and not re.fullmatch(r"(?:[^$]|\$(?!\{)|\$\{[A-Za-z_][A-Za-z0-9_]*\})*", arg):
        raise config_error(where, keyword, f"{arg!r}: bad ${{...}} (a variable name in braces)")


# ---------------------------------------------------------------------- patterns


def match_pattern(text: str, pattern: str) -> bool:
    """OpenSSH's ``match_pattern``: ``*`` any run of characters, ``?`` one; nothing else special."""
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, text, re.DOTALL) is not None


def pattern_list(text: str, patterns: str) -> int:
    """OpenSSH's ``match_pattern_list``: 1 a pattern matched, -1 a ``!pattern`` matched, 0 none."""
    got = 0
    for pat in patterns.split(","):
        negated = pat.startswith("!")
        if match_pattern(text, pat[1:] if negated else pat):
            if negated:
                return -1
            got = 1
    return got


# ---------------------------------------------------------------------- lexing


def strdelim(s):
    """OpenSSH's ``strdelim``: ``(token, rest)``; rest None at the end; token None on an
    unbalanced quote."""
    if s is None:
        return None, None
    m = re.search(r'[ \t\r\n"=]', s)
    if m is None:
        return s, None
    i = m.start()
    if s[i] == '"':
        s = s[:i] + s[i + 1:]
        j = s.find('"', i)
        if j < 0:
            return None, None
        return s[:j], s[j + 1:].lstrip(WS)
    equals = s[i] == "="
    token, rest = s[:i], s[i + 1:].lstrip(WS)
    if rest.startswith("=") and not equals:
        rest = rest[1:].lstrip(WS)
    return token, rest


def argv_split(s: str) -> list[str]:
    """OpenSSH's ``argv_split(s, terminate_on_comment=1)``. :raises ValueError: open quote."""
    args, i, n = [], 0, len(s)
    while i < n:
        if s[i] in " \t":
            i += 1
            continue
        if s[i] == "#":
            break
        quote, arg = None, []
        while i < n:
            c = s[i]
            if c == "\\" and i + 1 < n and (s[i + 1] in "'\"\\" or (quote is None and s[i + 1] == " ")):
                i += 1
                arg.append(s[i])
            elif quote is None and c in " \t":
                break
            elif quote is None and c in "\"'":
                quote = c
            elif quote is not None and c == quote:
                quote = None
            else:
                arg.append(c)
            i += 1
        if i >= n and quote is not None:
            raise ValueError("unbalanced quotes")
        args.append("".join(arg))
    return args


def convtime(text: str) -> int | None:
    if not text or not re.fullmatch(r"(\d+[sSmMhHdDwW]?)+", text):
        return None
    total = 0
    for number, unit in re.findall(r"(\d+)([sSmMhHdDwW]?)", text):
        total += int(number) * _TIME_UNITS[unit.lower()]
    return total if total < 2**31 else None


def is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def user_home(name: str, where) -> str:
    try:
        return pwd.getpwnam(name).pw_dir
    except KeyError:
        raise config_error(where, "~", f"no user {name!r} for ~{name}") from None


def config_error(where, keyword: str, message: str) -> InventoryError:
    path, line = where
    return InventoryError(f"ssh_config: {message}", path, line, key=keyword)
