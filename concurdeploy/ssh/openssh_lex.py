"""The lexical rules of OpenSSH's client config (``readconf.c``, ``misc.c``, ``match.c``):
word splitting, quoting, ``%`` tokens, ``${ENV}``, patterns, times, ``[user@]host[:port]``
hops. Used by :mod:`concurdeploy.ssh.openssh_config`; no file or process I/O here.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import os
import pwd
import re
import socket

from concurdeploy.exceptions import InventoryError

__all__ = ["KEYWORDS", "a2port", "argv_split", "check_agent", "config_error", "conn_hash", "convtime", "dollar", "hop_texts",
           "is_address", "lexed", "match_pattern", "parse_hop", "pattern_list", "percent", "strdelim", "user_home"]

WS = " \t\r\n"
_TIME_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

#: Every keyword OpenSSH 9.2's ssh accepts (found by asking it). Another keyword is
#: refused unless ``IgnoreUnknown`` lists it or the installed ssh knows it (:func:`ssh_knows`).
KEYWORDS = frozenset("""
addkeystoagent addressfamily afstokenpassing batchmode bindaddress bindinterface canonicaldomains
canonicalizefallbacklocal canonicalizehostname canonicalizemaxdots canonicalizepermittedcnames
casignaturealgorithms certificatefile challengeresponseauthentication checkhostip cipher ciphers
clearallforwardings compression compressionlevel connectionattempts connecttimeout controlmaster
controlpath controlpersist dsaauthentication dynamicforward enableescapecommandline
enablesshkeysign escapechar exitonforwardfailure fallbacktorsh fingerprinthash
forkafterauthentication forwardagent forwardx11 forwardx11timeout forwardx11trusted gatewayports
globalknownhostsfile globalknownhostsfile2 gssapiauthentication gssapiclientidentity
gssapidelegatecredentials gssapikexalgorithms gssapikeyexchange gssapirenewalforcesrekey
gssapiserveridentity gssapitrustdns hashknownhosts host hostbasedacceptedalgorithms
hostbasedauthentication hostbasedkeytypes hostkeyalgorithms hostkeyalias hostname identitiesonly
identityagent identityfile identityfile2 ignoreunknown include ipqos kbdinteractiveauthentication
kbdinteractivedevices keepalive kerberosauthentication kerberostgtpassing kexalgorithms
knownhostscommand localcommand localforward loglevel logverbose macs match
nohostauthenticationforlocalhost numberofpasswordprompts passwordauthentication
permitlocalcommand permitremoteopen pkcs11provider port preferredauthentications protocol
protocolkeepalives proxycommand proxyjump proxyusefdpass pubkeyacceptedalgorithms
pubkeyacceptedkeytypes pubkeyauthentication rekeylimit remotecommand remoteforward requesttty
requiredrsasize revokedhostkeys rhostsauthentication rhostsrsaauthentication securitykeyprovider
sendenv serveralivecountmax serveraliveinterval sessiontype setenv setuptimeout
skeyauthentication smartcarddevice stdinnull streamlocalbindmask streamlocalbindunlink
stricthostkeychecking syslogfacility tcpkeepalive tisauthentication tunnel tunneldevice
updatehostkeys useblacklistedkeys useprivilegedport user userknownhostsfile userknownhostsfile2
useroaming usersh verifyhostkeydns visualhostkey xauthlocation
""".split())

_lex_cache: dict = {}


def lexed(path: str, st: os.stat_result, data: bytes) -> tuple:
    """The file's lines as ``(number, keyword, lowercase keyword, rest, args or None)``,
    blank and comment lines left out (``args`` None: unbalanced quotes). Cached per file
    version: a lookup per host name then costs no re-lexing."""
    key = (path, st.st_ino, st.st_mtime_ns, st.st_size)
    if key in _lex_cache:
        return _lex_cache[key]
    out = []
    for number, raw in enumerate(data.decode("utf-8", errors="surrogateescape").split("\n"), 1):
        line = raw.rstrip(WS + "\f")
        if not line:
            continue
        keyword, rest = strdelim(line)
        if keyword == "":
            keyword, rest = strdelim(rest)
        if not keyword or keyword.startswith("#"):
            continue
        rest = (rest or "").lstrip(WS)
        try:
            args = argv_split(rest)
        except ValueError:
            args = None
        out.append((number, keyword, keyword.lower(), rest, args))
    if len(_lex_cache) > 256:
        _lex_cache.clear()
    _lex_cache[key] = tuple(out)
    return _lex_cache[key]




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



def conn_hash(this: str, host: str, port: str, user: str, jump: str | None) -> str:
    """``%C``: the hex SHA-1 of ``%l%h%p%r`` (and ``%j`` when given), as ssh computes it."""
    return hashlib.sha1((this + host + port + user + (jump or "")).encode()).hexdigest()


def percent(value: str, tokens: dict, where, keyword: str) -> str:
    """``value`` with ``%x`` replaced by ``tokens["x"]`` and ``%%`` by ``%`` (OpenSSH's
    ``percent_expand``). The value is never quoted in errors (a command may hold a secret).

    :raises InventoryError: a token not in ``tokens``, a ``%`` at the end.
    """
    out, i = [], 0
    while i < len(value):
        c = value[i]
        if c != "%":
            out.append(c)
            i += 1
            continue
        if i + 1 >= len(value):
            raise config_error(where, keyword, "the value ends with a lone '%' (write %% for a percent sign)")
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
    """``value`` with ``${NAME}`` replaced from the environment.

    :raises InventoryError: an unset variable, a malformed ``${...}``.
    """
    def one(m):
        name = m.group(1)
        if name not in os.environ:
            raise config_error(where, keyword, f"${{{name}}} is not set in the environment")
        return os.environ[name]
    if "${" in value and not re.fullmatch(r"(?:[^$]|\$(?!\{)|\$\{[A-Za-z_][A-Za-z0-9_]*\})*", value):
        raise config_error(where, keyword, f"{value!r}: bad ${{...}} (a variable name in braces)")
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", one, value)


def check_agent(arg: str, where, keyword: str) -> None:
    """The checks ssh makes on an ``IdentityAgent`` value. :raises InventoryError: bad ``$NAME``/``${...}``."""
    if arg.startswith("$") and not arg.startswith("${") and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", arg[1:]):
        raise config_error(where, keyword, f"{arg!r} is not a valid environment variable name")
    if "${" in arg and not re.fullmatch(r"(?:[^$]|\$(?!\{)|\$\{[A-Za-z_][A-Za-z0-9_]*\})*", arg):
        raise config_error(where, keyword, f"{arg!r}: bad ${{...}} (a variable name in braces)")


# ---------------------------------------------------------------------- patterns


def match_pattern(text: str, pattern: str) -> bool:
    """OpenSSH's ``match_pattern``: ``*`` any run of characters, ``?`` one; nothing else special."""
    return _compiled(pattern).fullmatch(text) is not None


@functools.lru_cache(maxsize=4096)
def _compiled(pattern: str) -> re.Pattern:
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern),
                      re.DOTALL)


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
    """OpenSSH's ``convtime``: ``90``, ``1m30s``, ``2h`` … → seconds; None if malformed or too big."""
    if not text or not re.fullmatch(r"(\d+[sSmMhHdDwW]?)+", text):
        return None
    total = 0
    for number, unit in re.findall(r"(\d+)([sSmMhHdDwW]?)", text):
        total += int(number) * _TIME_UNITS[unit.lower()]
    return total if total < 2**31 else None


def a2port(text: str) -> int:
    """OpenSSH's ``a2port``: a decimal number (leading blanks and a sign allowed, as
    ``strtonum`` does) from 0 to 65535, else a TCP service name (``ssh`` = 22); -1 if neither."""
    m = re.fullmatch(r"[ \t\n\v\f\r]*([+-]?[0-9]+)", text)
    if m is not None and 0 <= int(m.group(1)) <= 65535:
        return int(m.group(1))
    try:
        return socket.getservbyname(text, "tcp")
    except (OSError, UnicodeError, ValueError):
        return -1


def is_address(name: str) -> bool:
    """Whether ``name`` is an IPv4/IPv6 address (ssh does not lowercase those)."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def user_home(name: str, where) -> str:
    """The home of user ``name`` (``~name``). :raises InventoryError: no such user."""
    try:
        return pwd.getpwnam(name).pw_dir
    except KeyError:
        raise config_error(where, "~", f"no user {name!r} for ~{name}") from None


def config_error(where, keyword: str, message: str) -> InventoryError:
    """An error naming the config file and line (``where``) and the keyword, for exit code 2."""
    path, line = where
    return InventoryError(f"ssh_config: {message}", path, line, key=keyword)
