"""Corpus of the known_hosts differential test: known_hosts files × host/port spellings.

Imported by ``test_known_hosts_vs_openssh.py`` (stdlib only). A :class:`Case` is a known_hosts
*template* (lines with placeholders for keys and hashed names), one looked-up host and port,
and the server key type the client insists on (``HostKeyAlgorithms``). :func:`render` turns
it into the file text once the keys exist.

Placeholders in the lines:

- ``{S}``: the server's key of the case's type (``"ssh-ed25519 AAAA…"``), ``{S64}`` its base64
  alone; ``{O}``: another key of the same type; ``{OX}``: another key of another type;
  ``{SX}``: the server's key of another type; ``{O64}``: ``{O}``'s base64 alone; ``{SHORT}``,
  ``{SHORTL}``, ``{WRONGTYPE}``: the type's short name (``ED25519``, ``ed25519``), another type.
- ``{P}``: the looked-up name as OpenSSH writes it (``host`` or ``[host]:port``, lower case).
- ``{H:name}``: ``name`` hashed as ``|1|salt|hmac`` (salt derived from the case name, so the
  corpus is the same on every run); ``{HP}``: the looked-up name hashed.

Two families: :func:`pattern_cases` (every host field of :data:`FIELDS` against every spelling
of :data:`LOOKUPS`, one line, the key rotating between equal / other / other type / revoked /
CA) and :func:`file_cases` (the multi-line files of :data:`FILES` — duplicates, markers,
comments, broken lines — against a few spellings and every key type).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

#: The key types the server holds: our name → (``HostKeyAlgorithms`` value, known_hosts type).
KEY_TYPES = {
    "ed25519": ("ssh-ed25519", "ssh-ed25519"),
    "ecdsa": ("ecdsa-sha2-nistp256", "ecdsa-sha2-nistp256"),
    "rsa": ("rsa-sha2-512", "ssh-rsa"),
}
_TYPE_ORDER = list(KEY_TYPES)

#: (host, port) as a user or an inventory may spell them.
LOOKUPS = [
    ("web1.example", 22), ("WEB1.Example", 22), ("web1.example", 2200), ("WEB1.EXAMPLE", 2200),
    ("db1.example", 22), ("web12.example", 22), ("127.0.0.1", 22), ("127.0.0.1", 2200),
    ("localhost", 2200), ("LOCALHOST", 2200), ("::1", 22), ("::1", 2200),
]

#: Host fields of a one-line file: exact, case, ports, ``*``/``?``, negation, lists, IPs, hashed.
FIELDS = [
    "web1.example", "WEB1.EXAMPLE", "Web1.Example", "[web1.example]:2200", "[WEB1.example]:2200",
    "[web1.example]:22", "web*.example", "web?.example", "web??.example", "*.example", "*", "?",
    "web*", "*1.example", "w*1*", "[web*]:2200", "[*]:2200", "[web1.example]:*",
    "[web1.example]:22*", "*:2200", "*.example,!db*.example", "!db*.example", "!web1.example,*",
    "*,!WEB1.EXAMPLE", "web1.example,!*:2200", "db1.example,web1.example",
    "web1.example,[web1.example]:2200", "web1.example,,db1.example", "127.0.0.1", "127.0.0.*",
    "[127.0.0.1]:2200", "10.0.0.*", "localhost", "[localhost]:2200", "[LOCALHOST]:2200", "*host*",
    "{H:web1.example}", "{H:[web1.example]:2200}", "{H:WEB1.EXAMPLE}", "{H:[localhost]:2200}",
    "{H:127.0.0.1}", "|1|bad|bad", "|2|abc|def", "[web1.example]", "::1", "[::1]:2200", "[::*]:*",
    "{H:[::1]:2200}",
]

#: The key written after a one-line file's host field, rotating over the cases.
_LINE_KEYS = ["{S}", "{O}", "{OX}", "@revoked {F} {S}", "@cert-authority {F} {S}", "{SX}"]

#: Multi-line files: name → lines (``{P}`` is the looked-up name).
FILES = {
    "dup-same": ["{P} {S}", "{P} {S}"],
    "dup-other-then-equal": ["{P} {O}", "{P} {S}"],
    "dup-equal-then-other": ["{P} {S}", "{P} {O}"],
    "two-others": ["{P} {O}", "{P} {OX}"],
    "other-type-then-equal": ["{P} {OX}", "{P} {S}"],
    "other-type-only": ["{P} {OX}"],
    "server-other-type-only": ["{P} {SX}"],
    "revoked-and-plain": ["@revoked {P} {S}", "{P} {S}"],
    "plain-then-revoked": ["{P} {S}", "@revoked * {S}"],
    "revoked-other-key": ["@revoked {P} {O}", "{P} {S}"],
    "revoked-scoped-elsewhere": ["@revoked db* {S}", "{P} {S}"],
    "revoked-only": ["@revoked {P} {S}"],
    "revoked-negated": ["@revoked *,!{P} {S}", "{P} {S}"],
    "ca-and-other": ["@cert-authority {P} {S}", "{P} {O}"],
    "ca-and-equal": ["@cert-authority * {O}", "{P} {S}"],
    "ca-only": ["@cert-authority {P} {O}"],
    "ca-wildcard-only": ["@cert-authority * {S}"],
    "negated-wildcard-other": ["*,!{P} {O}", "{P} {S}"],
    "negated-wildcard-only": ["*,!{P} {O}"],
    "wildcard-other-exact-equal": ["* {O}", "{P} {S}"],
    "wildcard-equal-exact-other": ["* {S}", "{P} {O}"],
    "comments-blank": ["# {P} {O}", "", "   ", "   {P} {S}   # trailing comment"],
    "comment-after-hash": ["#{P} {S}"],
    "tab-separated": ["{P}\t{S}"],
    "leading-tab": ["\t{P} {S}"],
    "crlf": ["{P} {S}\r"],
    "crlf-other": ["{P} {O}\r"],
    "bad-marker": ["@bogus {P} {O}", "{P} {S}"],
    "marker-upper": ["@REVOKED {P} {S}"],
    "marker-twice": ["@revoked @revoked {P} {S}", "{P} {S}"],
    "marker-no-space": ["@revoked"],
    "broken-key-same-host": ["{P} ssh-ed25519 AAAA", "{P} {S}"],
    "broken-key-only": ["{P} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5"],
    "bad-base64-other": ["{P} ssh-rsa !!!notbase64"],
    "host-only": ["{P}"],
    "type-only": ["{P} ssh-ed25519"],
    "type-mismatch": ["{P} {WRONGTYPE} {S64}"],
    "short-type-name": ["{P} {SHORT} {S64}"],
    "short-type-lower": ["{P} {SHORTL} {S64}"],
    "sigalg-type-name": ["{P} rsa-sha2-512 {S64}"],
    "sigalg-type-other": ["{P} rsa-sha2-256 {O64}", "{P} {O}"],
    "hashed-and-other": ["{HP} {S}", "{P} {O}"],
    "hashed-other": ["{HP} {O}"],
    "hashed-upper": ["{H:UPPER} {O}"],
    "key-comment-spaces": ["{P} {S} some comment with spaces"],
    "ip-and-name-list": ["{P},127.0.0.1,10.0.0.5 {S}"],
    "unknown-type": ["{P} ssh-foo {S64}"],
    "no-trailing-newline": ["{P} {O}", "{P} {S}{NOEOL}"],
}

#: Spellings the multi-line files are tried with (the LOCALHOST hole among them).
FILE_LOOKUPS = [("web1.example", 22), ("LOCALHOST", 2200), ("WEB1.example", 2200)]


@dataclass(frozen=True)
class Case:
    """One differential case.

    :ivar name: unique, stable id (also the salt of hashed names).
    :ivar lines: the file's template lines (see the module docstring).
    :ivar host: the host as the user spells it; ``port``: its SSH port (22 = no ``[]:port``).
    :ivar key_type: ``"ed25519"``, ``"ecdsa"`` or ``"rsa"``: the server key offered.
    """

    name: str
    lines: tuple
    host: str
    port: int
    key_type: str

    @property
    def alias(self) -> str:
        """The spelling handed to OpenSSH (``HostKeyAlias``): ``host`` or ``[host]:port``, case kept."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    @property
    def lookup(self) -> str:
        """The name OpenSSH looks up: :attr:`alias` in lower case."""
        return self.alias.lower()


def pattern_cases() -> list[Case]:
    """:data:`FIELDS` × :data:`LOOKUPS`, one line each; key and key type rotate with the index."""
    out = []
    for i, field in enumerate(FIELDS):
        for j, (host, port) in enumerate(LOOKUPS):
            n = i * len(LOOKUPS) + j
            key = _LINE_KEYS[(i + j) % len(_LINE_KEYS)]
            line = key.replace("{F}", field) if key.startswith("@") else f"{field} {key}"
            out.append(Case(f"p{i:02d}-{j}", (line,), host, port, _TYPE_ORDER[n % 3]))
    return out


def file_cases() -> list[Case]:
    """:data:`FILES` × :data:`FILE_LOOKUPS`, the key type rotating over the three types."""
    out = []
    for i, (name, lines) in enumerate(FILES.items()):
        for j, (host, port) in enumerate(FILE_LOOKUPS):
            out.append(Case(f"f-{name}-{j}", tuple(lines), host, port, _TYPE_ORDER[(i + j) % 3]))
    return out


def all_cases() -> list[Case]:
    """Every case: :func:`pattern_cases` then :func:`file_cases`."""
    return pattern_cases() + file_cases()


def hashed(name: str, salt_seed: str) -> str:
    """``name`` hashed as OpenSSH's ``HashKnownHosts`` writes it, salt derived from ``salt_seed``."""
    salt = hashlib.sha1(salt_seed.encode()).digest()
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def render(case: Case, server: dict, other: dict) -> str:
    """The known_hosts text of ``case``.

    :param server: key type → ``"type base64"`` of the server's keys.
    :param other: key type → ``"type base64"`` of keys the server does not hold.
    """
    kt = case.key_type
    kx = _TYPE_ORDER[(_TYPE_ORDER.index(kt) + 1) % 3]
    s64 = server[kt].split()[1]
    values = {
        "S": server[kt], "S64": s64, "O": other[kt], "OX": other[kx], "SX": server[kx],
        "P": case.lookup, "HP": hashed(case.lookup, case.name),
        "WRONGTYPE": KEY_TYPES[kx][1], "SHORT": KEY_TYPES[kt][1].split("-")[1].upper()
        if kt != "ecdsa" else "ECDSA",
    }
    values["SHORTL"] = values["SHORT"].lower()
    values["O64"] = other[kt].split()[1]

    def sub(m: re.Match) -> str:
        token = m.group(1)
        if token.startswith("H:"):
            target = case.lookup.upper() if token == "H:UPPER" else token[2:]
            return hashed(target, case.name + token)
        return values.get(token, m.group(0))

    lines = [re.sub(r"\{([A-Z0-9]+|H:[^}]+)\}", sub, line) for line in case.lines]
    text = "\n".join(lines)
    if text.endswith("{NOEOL}"):
        return text[: -len("{NOEOL}")]
    return text + "\n"
