"""Host key verification against OpenSSH known_hosts files.

Policies (the ``host_key_policy`` var), named after OpenSSH's ``StrictHostKeyChecking``:

- ``strict`` (default): the server's key must already be in known_hosts.
- ``accept-new``: trust on first use: an unknown host's key is appended to the
  ``known_hosts`` file (one line, under an exclusive ``flock`` that holds across worker
  processes; the file is never rewritten or reordered). A *changed* key is still refused.
- ``off``: accept any key (the caller prints a warning on every run). Explicit opt-in only.

Entries are read with paramiko's ``HostKeys``, which understands hashed names
(``|1|salt|hash``) and the ``[host]:port`` form OpenSSH uses for non-22 ports.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import threading

import paramiko

from concurdeploy.exceptions import HostKeyMismatch, HostKeyUnknown

__all__ = ["SYSTEM_KNOWN_HOSTS", "fingerprint", "known_key_types", "verify"]

SYSTEM_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style fingerprint: ``SHA256:`` + unpadded base64 of the SHA-256 of the key blob."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _lookup_name(hostname: str, port: int) -> str:
    return hostname if port == 22 else f"[{hostname}]:{port}"


def _entry(line: str):
    """A ``HostKeyEntry`` for one plain known_hosts line, or None for a line it cannot use."""
    try:
        return paramiko.hostkeys.HostKeyEntry.from_line(line)
    except Exception:  # InvalidHostKey (bad base64) is not an SSHException; bad key data is
        return None


def _parse(text: str, keys: paramiko.HostKeys, revoked: list | None = None) -> None:
    """Add the entries of known_hosts ``text`` to ``keys``, skipping what OpenSSH skips.

    Comments, blank and unparseable lines are ignored (paramiko's ``HostKeys.load``
    raises on bad base64 and on ``@marker`` lines). ``@cert-authority`` lines are ignored
    (certificates are not supported); the keys of ``@revoked`` lines go to ``revoked``.
    """
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@"):
            marker, _, rest = line.partition(" ")
            if marker == "@revoked" and revoked is not None:
                entry = _entry(rest.strip())
                if entry is not None and entry.key is not None:
                    revoked.append(entry.key)
            continue
        entry = _entry(line)
        if entry is not None and entry.key is not None:
            keys._entries.append(entry)  # as HostKeys.load does: the first line for a host wins


_CACHE: dict = {}
_CACHE_LOCK = threading.Lock()


def _load(paths: list[str], revoked: list | None = None) -> paramiko.HostKeys:
    """The entries of ``paths``, parsed once per process while the files are unchanged
    (keyed on path, mtime and size): parsing every line for every connection would cost
    O(hosts²) over a run. ``revoked`` receives the ``@revoked`` keys."""
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
        keys, revoked_keys = paramiko.HostKeys(), []
        for path, *_ in state:
            if os.path.isfile(path):
                try:
                    with open(path, encoding="utf-8", errors="replace") as f:
                        text = f.read()
                except OSError:
                    continue  # an unreadable file verifies nothing; strict then refuses
                _parse(text, keys, revoked_keys)
        hit = (keys, revoked_keys)
        with _CACHE_LOCK:
            if len(_CACHE) > 16:
                _CACHE.clear()
            _CACHE[key] = hit
    if revoked is not None:
        revoked.extend(hit[1])
    return hit[0]


def _files(known_hosts: str) -> list[str]:
    return [os.path.expanduser(known_hosts), SYSTEM_KNOWN_HOSTS]


def known_key_types(known_hosts: str, hostname: str, port: int) -> list[str]:
    """Key types (e.g. ``["ssh-ed25519"]``) known for ``hostname:port``, to prefer in key exchange.

    Asking the server for the type we hold avoids a false mismatch when it has several keys.
    """
    entry = _load(_files(known_hosts)).lookup(_lookup_name(hostname, port))
    return list(entry.keys()) if entry else []


def verify(known_hosts: str, policy: str, hostname: str, port: int, key: paramiko.PKey) -> str | None:
    """Check ``key`` (the server's host key) for ``hostname:port`` under ``policy``.

    :param known_hosts: path of the known_hosts file (``~`` allowed); the system file
        ``/etc/ssh/ssh_known_hosts`` is read too, never written.
    :returns: None when the key was already known, else a note for the host's warnings
        (``"host key recorded …"`` under accept-new, ``"host key not verified …"`` under off).
    :raises HostKeyMismatch: known_hosts holds another key for this host (any policy but off).
    :raises HostKeyUnknown: the host is not in known_hosts and the policy is ``strict``.
    """
    name = _lookup_name(hostname, port)
    got_type, got_fp = key.get_name(), fingerprint(key)
    if policy == "off":
        return f"host key not verified (host_key_policy: off): {got_type} {got_fp}"
    revoked: list = []
    entry = _load(_files(known_hosts), revoked).lookup(name)
    if key in revoked:
        raise HostKeyMismatch(
            f"{name}: server offered {got_type} {got_fp}, which known_hosts ({known_hosts}) "
            f"marks @revoked; connection refused")
    if entry:
        expected = entry.get(got_type)
        if expected is not None and expected == key:
            return None
        if expected is None:
            # Same host, other key types on file: OpenSSH refuses this too.
            held = ", ".join(f"{t} {fingerprint(k)}" for t, k in entry.items())
            raise HostKeyMismatch(
                f"{name}: server offered {got_type} {got_fp}, but known_hosts "
                f"({known_hosts}) holds only {held} for this host. If the server's keys "
                f"really changed, verify the new key and update known_hosts "
                f"(ssh-keygen -R '{name}' -f {known_hosts})")
        raise HostKeyMismatch(
            f"HOST KEY CHANGED for {name}: server offered {got_type} {got_fp}, known_hosts "
            f"({known_hosts}) expects {got_type} {fingerprint(expected)}. Possible "
            f"man-in-the-middle; connection refused. If the change is legitimate, remove the "
            f"old entry (ssh-keygen -R '{name}' -f {known_hosts}) and record the new key")
    if policy == "accept-new":
        _append(os.path.expanduser(known_hosts), name, key)
        return f"host key recorded in {known_hosts} (accept-new): {got_type} {got_fp}"
    raise HostKeyUnknown(
        f"{name} is not in known_hosts ({known_hosts}); its {got_type} key is {got_fp}. "
        f"Verify it, then record it (ssh-keyscan -p {port} -t {got_type} {hostname} >> "
        f"{known_hosts}), or opt in to trust-on-first-use with host_key_policy: accept-new")


def _append(path: str, name: str, key: paramiko.PKey) -> None:
    """Append ``name keytype base64`` to ``path`` under an exclusive lock; re-check first."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "a+", encoding="utf-8", errors="replace") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            f.seek(0)
            current = paramiko.HostKeys()
            _parse(f.read(), current)
            known = current.lookup(name)
            if known and known.get(key.get_name()) is not None:
                if known[key.get_name()] != key:  # another worker recorded a different key
                    raise HostKeyMismatch(f"{name}: key changed while being recorded; refused")
                return
            f.seek(0, os.SEEK_END)
            if f.tell() and not _ends_with_newline(path):
                f.write("\n")
            f.write(f"{name} {key.get_name()} {key.get_base64()}\n")
            f.flush()
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _ends_with_newline(path: str) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"
