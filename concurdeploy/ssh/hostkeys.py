"""Host key verification against OpenSSH known_hosts files, as OpenSSH's client decides.

Policies (the ``host_key_policy`` var), named after OpenSSH's ``StrictHostKeyChecking``:

- ``strict`` (default): the server's key must already be in known_hosts.
- ``accept-new``: trust on first use: the key of a host that *no* line matches (under
  OpenSSH's rules: patterns, negation, case, hashed names, ports) is appended to the
  ``known_hosts`` file (one line, lower-cased name, under an exclusive ``flock`` that holds
  across worker processes; the file is never rewritten or reordered). A host with any other
  key on file is a *changed* key and is refused, whatever the key type.
- ``off``: accept any key (the caller prints a warning on every run). Explicit opt-in only.

Whatever the policy, including ``off``, a key that a matching ``@revoked`` line holds is
refused. A host that only ``@cert-authority`` lines vouch for is refused with a clear
error: paramiko cannot verify host certificates, and recording its plain key would bypass
the certificate authority.

The file format and the matching rules are in :mod:`concurdeploy.ssh.knownhosts`.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import threading

import paramiko

from concurdeploy.exceptions import HostKeyMismatch, HostKeyUnknown
from concurdeploy.ssh import knownhosts

__all__ = ["SYSTEM_KNOWN_HOSTS", "fingerprint", "known_key_types", "verify"]

SYSTEM_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style fingerprint: ``SHA256:`` + unpadded base64 of the SHA-256 of the key blob."""
    return _blob_fingerprint(key.asbytes())


def _blob_fingerprint(blob: bytes) -> str:
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _lookup_name(hostname: str, port: int) -> str:
    """``host`` for port 22, else ``[host]:port``, in lower case (as OpenSSH looks up and writes)."""
    return knownhosts.lookup_name(hostname, port)


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except OSError:
        return None  # missing or unreadable: it vouches for nothing; strict then refuses


_CACHE: dict = {}
_CACHE_LOCK = threading.Lock()


def _load(paths: list[str]) -> list[knownhosts.Line]:
    """The lines of ``paths`` (user file first), parsed once per process while the files are
    unchanged (keyed on path, mtime, size and inode)."""
    state = []
    for path in paths:
        try:
            st = os.stat(path)
            state.append((path, st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            continue
    key = tuple(state)
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
    if hit is None:
        hit = []
        for path, *_ in state:
            text = _read(path) if os.path.isfile(path) else None
            if text is not None:
                hit.extend(knownhosts.parse_text(text, path))
        with _CACHE_LOCK:
            if len(_CACHE) > 16:
                _CACHE.clear()
            _CACHE[key] = hit
    return hit


def _files(known_hosts: str) -> list[str]:
    return [os.path.expanduser(known_hosts), SYSTEM_KNOWN_HOSTS]


def known_key_types(known_hosts: str, hostname: str, port: int) -> list[str]:
    """Key types (e.g. ``["ssh-ed25519"]``) that plain lines matching ``hostname:port`` hold,
    in file order, to prefer in key exchange (as OpenSSH's client orders its offer).

    Asking the server for the type we hold avoids a false mismatch when it has several keys.
    """
    name = _lookup_name(hostname, port)
    types = (t for line, t, _ in knownhosts.matching_lines(_load(_files(known_hosts)), name)
             if not line.marker)
    return list(dict.fromkeys(types))


def _where(line: knownhosts.Line) -> str:
    return f"{line.path}:{line.lineno}"


def verify(known_hosts: str, policy: str, hostname: str, port: int, key: paramiko.PKey,
           inventory_name: str | None = None) -> str | None:
    """Check ``key`` (the server's host key) for ``hostname:port`` under ``policy``.

    :param known_hosts: path of the known_hosts file (``~`` allowed); the system file
        ``/etc/ssh/ssh_known_hosts`` is read too, never written.
    :param policy: ``"strict"``, ``"accept-new"`` or ``"off"``.
    :param inventory_name: the host's inventory name, for the hint of an unknown key
        (``concurdeploy keyscan NAME``); None = ``HOST``.
    :returns: None when the key was already known, else a note for the host's warnings
        (``"host key recorded …"`` under accept-new, ``"host key not verified …"`` under off).
    :raises HostKeyMismatch: a matching line holds another key (any key type), under any
        policy but off; or a matching ``@revoked`` line holds this key, under every policy.
    :raises HostKeyUnknown: no plain line matches the host and the policy is ``strict``;
        or only ``@cert-authority`` lines match it (strict and accept-new).
    """
    name = _lookup_name(hostname, port)
    got_type, got_fp = key.get_name(), fingerprint(key)
    decision = knownhosts.decide(_load(_files(known_hosts)), name, key.asbytes())
    if decision.status == "revoked":
        raise HostKeyMismatch(
            f"{name}: server offered {got_type} {got_fp}, which known_hosts marks @revoked "
            f"({_where(decision.line)}); connection refused under every host_key_policy, "
            f"off included")
    if policy == "off":
        return f"host key not verified (host_key_policy: off): {got_type} {got_fp}"
    if decision.status == "found":
        return None
    if decision.status == "changed":
        line = decision.line
        held = ", ".join(f"{t} {_blob_fingerprint(b)}" for t, b in decision.others)
        raise HostKeyMismatch(
            f"HOST KEY CHANGED for {name}: server offered {got_type} {got_fp}, known_hosts "
            f"holds {held} for this host (first at {_where(line)}, line pattern "
            f"{line.hosts!r}). Possible man-in-the-middle; connection refused. If the change "
            f"is legitimate, verify the new key, remove the old entry "
            f"(ssh-keygen -R '{name}' -f {known_hosts}) and record the new key")
    if decision.ca_lines:
        where = ", ".join(_where(line) for line in decision.ca_lines)
        raise HostKeyUnknown(
            f"{name} is vouched for only by @cert-authority lines of known_hosts ({where}), "
            f"but host certificates cannot be verified (paramiko {paramiko.__version__} has "
            f"no host-certificate support), and its plain {got_type} key {got_fp} is not "
            f"recorded; connection refused. Verify the key and record it "
            f"(concurdeploy keyscan), or connect with an OpenSSH client")
    if policy == "accept-new":
        _append(os.path.expanduser(known_hosts), name, key)
        return f"host key recorded in {known_hosts} (accept-new): {got_type} {got_fp}"
    raise HostKeyUnknown(
        f"{name} is not in known_hosts ({known_hosts}); its {got_type} key is {got_fp}. "
        f"Verify it, then record it: 'concurdeploy keyscan {inventory_name or 'HOST'}' (with this "
        f"run's -i or -H) shows its fingerprint, add --yes to record it; or opt in to trust-on-first-use "
        f"with host_key_policy: accept-new")


def _append(path: str, name: str, key: paramiko.PKey) -> None:
    """Append ``name keytype base64`` to ``path`` under an exclusive lock, after deciding again
    on the file as it is now (and the system file) with OpenSSH's rules.

    :param name: the lower-case lookup name (:func:`_lookup_name`).
    :raises HostKeyMismatch: a matching line now holds another key, or revokes this one.
    :raises OSError: the file cannot be created or written.
    """
    name = knownhosts.ascii_lower(name)
    _make_folders(os.path.dirname(path) or ".")
    # a new file: 0644 less the umask, as OpenSSH's ssh creates it (never group/world-writable)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    with open(fd, "a+", encoding="utf-8", errors="surrogateescape") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            f.seek(0)
            lines = knownhosts.parse_text(f.read(), path)
            system = _read(SYSTEM_KNOWN_HOSTS) if os.path.isfile(SYSTEM_KNOWN_HOSTS) else None
            if system is not None:
                lines += knownhosts.parse_text(system, SYSTEM_KNOWN_HOSTS)
            decision = knownhosts.decide(lines, name, key.asbytes())
            if decision.status == "found":
                return
            if decision.status != "unknown":
                raise HostKeyMismatch(
                    f"{name}: not recorded: known_hosts {'revokes this key' if decision.status == 'revoked' else 'holds another key for this host'} "
                    f"({_where(decision.line)}); refused")
            f.seek(0, os.SEEK_END)
            if f.tell() and not _ends_with_newline(path):
                f.write("\n")
            f.write(f"{name} {key.get_name()} {key.get_base64()}\n")
            f.flush()
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _make_folders(folder: str) -> None:
    """Create ``folder`` and its missing parents with mode 0700, as OpenSSH's ssh creates
    ``~/.ssh`` for a new known_hosts file (a folder that exists is left as it is)."""
    missing = []
    for _ in range(folder.count(os.sep) + 2):  # bounded: one step per path level
        if os.path.lexists(folder) or folder == os.path.dirname(folder):
            break
        missing.append(folder)
        folder = os.path.dirname(folder)
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:  # another writer made it meanwhile
            pass


def _ends_with_newline(path: str) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"
