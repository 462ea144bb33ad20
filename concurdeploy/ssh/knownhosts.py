"""known_hosts lines read and matched exactly as OpenSSH's client reads them.

The rules (OpenSSH ``sshd(8)`` "SSH_KNOWN_HOSTS FILE FORMAT", ``hostfile.c``, ``match.c``),
checked against ``ssh-keygen -l -F`` and a real ``ssh -o StrictHostKeyChecking=yes`` by
``tests/differential/test_known_hosts_vs_openssh.py`` (720 cases):

- Lines end at ``\\n`` only (a ``\\r`` stays part of the line). Leading spaces/tabs are
  skipped; blank lines and lines starting with ``#`` are comments.
- An optional marker, ``@cert-authority`` or ``@revoked`` (exact case), followed by a space
  or tab. Any other ``@word``, or two markers, makes the line invalid (skipped).
- The host field runs to the first space or tab. A field starting with ``|`` is a hashed
  name ``|1|base64(salt)|base64(HMAC-SHA1(salt, name))``: it matches when the whole field
  equals the hash recomputed for the looked-up name; a malformed hash skips the line.
  Otherwise it is a comma-separated pattern list: ``*`` any run of characters, ``?`` one
  character, ``!pattern`` a negation: a negated match makes the line not match whatever
  the other patterns say. Name and patterns are compared in ASCII lower case; a pattern
  of 1023 characters or more makes the list match nothing.
- The name looked up is ``host`` for port 22 and ``[host]:port`` otherwise, lower-cased.
- The key: a full type name (``ssh-ed25519``; short names such as ``ED25519`` or ``rsa`` are
  not usable) then base64 of the key blob (blob's own type must agree), then an optional
  comment. A line whose key does not parse is skipped; only lines whose host
  field matched are parsed, so a broken line for another host never matters.
- Decision (``hostfile.c`` ``check_key_in_hostkeys``), over every matching line of the user
  file then the system file: a plain line with an equal key → ``found``; else any plain
  line (of any key type) → ``changed`` (OpenSSH's HOST_CHANGED: it compares the key with
  every matching line, not per key type); else ``unknown``. A matching ``@revoked`` line
  holding the key overrides all of these → ``revoked``. ``@cert-authority`` lines only vouch
  for host *certificates*, never for a plain key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import struct
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["Decision", "Line", "decide", "lookup_name", "matching_lines", "parse_text"]

#: OpenSSH compares names in ASCII lower case (``tolower`` in the C locale).
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
#: ``match_pattern_list`` copies each sub-pattern into a 1024-byte buffer.
_MAX_SUBPATTERN = 1023
#: Key type names OpenSSH reads in known_hosts, mapped to the type the blob must carry.
_TYPE_NAMES = {
    "ssh-ed25519": "ssh-ed25519",
    "ssh-rsa": "ssh-rsa",
    "rsa-sha2-256": "ssh-rsa",
    "rsa-sha2-512": "ssh-rsa",
    "ssh-dss": "ssh-dss",
    "ecdsa-sha2-nistp256": "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384": "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521": "ecdsa-sha2-nistp521",
}
_ECDSA_CURVES = {"ecdsa-sha2-nistp256": "nistp256", "ecdsa-sha2-nistp384": "nistp384",
                 "ecdsa-sha2-nistp521": "nistp521"}

MARKER_REVOKED = "@revoked"
MARKER_CA = "@cert-authority"


@dataclass(frozen=True)
class Line:
    """One usable known_hosts line (before its key is parsed).

    :ivar path: file it came from; ``lineno``: 1-based line number.
    :ivar marker: ``""``, ``"@revoked"`` or ``"@cert-authority"``.
    :ivar hosts: the host field (a pattern list, or a ``|1|salt|hash`` hashed name).
    :ivar rest: what follows the host field (key type, base64 blob, comment).
    """

    path: str
    lineno: int
    marker: str
    hosts: str
    rest: str


@dataclass(frozen=True)
class Decision:
    """What known_hosts says about one host name and one server key.

    :ivar status: ``"found"``, ``"changed"``, ``"unknown"`` or ``"revoked"``.
    :ivar line: the deciding line: the equal key (found), the first other key (changed),
        the ``@revoked`` line (revoked); None for unknown.
    :ivar others: ``(key_type, blob)`` of every plain matching line (for messages).
    :ivar ca_lines: matching ``@cert-authority`` lines (they cannot vouch for a plain key).
    """

    status: str
    line: Line | None = None
    others: tuple = ()
    ca_lines: tuple = ()


def ascii_lower(text: str) -> str:
    """``text`` with A-Z lower-cased and nothing else changed (OpenSSH's ``lowercase``)."""
    return text.translate(_ASCII_LOWER)


def lookup_name(hostname: str, port: int) -> str:
    """The name OpenSSH looks up and records: ``host`` for port 22, else ``[host]:port``; lower case."""
    host = ascii_lower(hostname)
    return host if port in (0, 22) else f"[{host}]:{port}"


def _split_ws(text: str) -> tuple[str, str]:
    """(text up to the first space/tab, the rest after that run of spaces/tabs)."""
    m = re.match(r"([^ \t]*)[ \t]*(.*)", text, re.S)
    return m.group(1), m.group(2)


def _marker(text: str) -> tuple[str | None, str]:
    """``check_markers``: (marker or "" or None when invalid, text after it and its blanks)."""
    marker = ""
    while text.startswith("@"):
        if marker:
            return None, text
        sp = text.find(" ")
        if sp < 0:
            sp = text.find("\t")
        if sp <= 1 or sp >= 32:
            return None, text
        word = text[:sp]
        if word not in (MARKER_CA, MARKER_REVOKED):
            return None, text
        marker = word
        text = text[sp:].lstrip(" \t")
    return marker, text


def parse_text(text: str, path: str) -> list[Line]:
    """The lines of known_hosts ``text`` that can match a host (comments, blank lines and
    invalid markers dropped). Keys are not parsed here: see :func:`parse_key`.

    :param text: the file's content (decoded with ``surrogateescape``: bytes preserved).
    :returns: :class:`Line` records in file order.
    """
    out = []
    for n, raw in enumerate(text.split("\n"), 1):
        raw = raw.split("\0", 1)[0]  # C strings end at NUL
        body = raw.lstrip(" \t")
        if not body or body.startswith("#"):
            continue
        marker, body = _marker(body)
        if marker is None:
            continue
        hosts, rest = _split_ws(body)
        out.append(Line(path, n, marker, hosts, rest))
    return out


@lru_cache(maxsize=4096)
def _glob(pattern: str) -> re.Pattern:
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.S)


def match_pattern_list(name: str, patterns: str) -> int:
    """``match_pattern_list(name, patterns, 1)``: 1 positive match, -1 negated match, 0 none.

    ``name`` must already be lower case; the patterns are lower-cased here.
    """
    got_positive = 0
    for sub in patterns.split(","):
        negated = sub.startswith("!")
        if negated:
            sub = sub[1:]
        if len(sub) >= _MAX_SUBPATTERN:
            return 0
        if _glob(ascii_lower(sub)).fullmatch(name):
            if negated:
                return -1
            got_positive = 1
    return got_positive


def _b64(text: str) -> bytes | None:
    """Strict base64 as OpenSSH's ``b64_pton``: padding required, unused bits zero, blanks skipped."""
    s = re.sub(r"[ \t\n\r\v\f]", "", text)
    try:
        data = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        return None
    return data if base64.b64encode(data).decode() == s else None


@lru_cache(maxsize=65536)
def _hashed_match(field: str, name: str) -> int:
    """1 when hashed ``field`` is ``name``'s hash, 0 when not, -1 when the field is malformed."""
    if not field.startswith("|1|"):
        return -1
    salt_b64, sep, _ = field[3:].partition("|")
    if not sep or not salt_b64 or len(salt_b64) > 1024:
        return -1
    salt = _b64(salt_b64)
    if salt is None or len(salt) != 20:
        return -1
    digest = hmac.new(salt, name.encode("utf-8", "surrogateescape"), hashlib.sha1).digest()
    expected = f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"
    return 1 if field == expected else 0


def host_matches(line: Line, name: str) -> bool:
    """Whether ``line``'s host field matches lower-case ``name`` (hashed or patterns)."""
    if line.hosts.startswith("|"):
        return _hashed_match(line.hosts, name) == 1
    return match_pattern_list(name, line.hosts) == 1


def _read_string(blob: bytes, pos: int) -> tuple[bytes, int] | None:
    if pos + 4 > len(blob):
        return None
    (n,) = struct.unpack(">I", blob[pos:pos + 4])
    if pos + 4 + n > len(blob):
        return None
    return blob[pos + 4:pos + 4 + n], pos + 4 + n


def _blob_ok(blob: bytes, blob_type: str) -> bool:
    """The blob's fields are all there and nothing trails them (the part of ``sshkey_fromb``
    that decides whether a line is usable)."""
    fields = {"ssh-ed25519": 1, "ssh-rsa": 2, "ssh-dss": 4}.get(blob_type, 2)
    got = _read_string(blob, 0)
    if got is None or got[0].decode("latin-1") != blob_type:
        return False
    pos = got[1]
    values = []
    for _ in range(fields):
        got = _read_string(blob, pos)
        if got is None:
            return False
        values.append(got[0])
        pos = got[1]
    if pos != len(blob):
        return False
    if blob_type == "ssh-ed25519":
        return len(values[0]) == 32
    if blob_type in _ECDSA_CURVES:
        return values[0].decode("latin-1") == _ECDSA_CURVES[blob_type] and values[1][:1] == b"\x04"
    return True


@lru_cache(maxsize=65536)
def parse_key(rest: str) -> tuple[str, bytes] | None:
    """``(key type, key blob)`` from the text after a host field, or None if OpenSSH
    would not parse it (unknown type name, bad base64, blob of another type, truncated)."""
    if not rest or rest.startswith("#"):
        return None
    type_name, after = _split_ws(rest)
    if not after:  # nothing after the type (OpenSSH needs a blank after it, then a blob)
        return None
    wanted = _TYPE_NAMES.get(type_name)  # short names ("ED25519", "rsa") are never usable
    if wanted is None:
        return None
    blob = _b64(_split_ws(after)[0])
    if not blob or not _blob_ok(blob, wanted):
        return None
    return wanted, blob


def matching_lines(lines: list[Line], name: str) -> list[tuple[Line, str, bytes]]:
    """``(line, key_type, blob)`` of every line matching lower-case ``name`` whose key parses,
    in order (what ``ssh-keygen -l -F name`` lists)."""
    out = []
    for line in lines:
        if host_matches(line, name):
            key = parse_key(line.rest)
            if key is not None:
                out.append((line, *key))
    return out


def decide(lines: list[Line], name: str, blob: bytes) -> Decision:
    """OpenSSH's verdict for server key ``blob`` (the public key's wire form) under ``name``.

    :param lines: the user file's lines then the system file's (:func:`parse_text`).
    :param name: the looked-up name (:func:`lookup_name`, lower case).
    :returns: a :class:`Decision` (see the module docstring for the rules).
    """
    found = changed = None
    others, cas = [], []
    for line, key_type, key in matching_lines(lines, name):
        if line.marker == MARKER_REVOKED:
            if key == blob:
                return Decision("revoked", line)
            continue
        if line.marker == MARKER_CA:
            cas.append(line)
            continue
        others.append((key_type, key))
        if key == blob and found is None:
            found = line
        elif changed is None:
            changed = line
    if found is not None:
        return Decision("found", found, tuple(others), tuple(cas))
    if changed is not None:
        return Decision("changed", changed, tuple(others), tuple(cas))
    return Decision("unknown", None, (), tuple(cas))
