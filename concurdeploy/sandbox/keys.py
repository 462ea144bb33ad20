"""The sandbox's state directory: its two ed25519 keys and its ``known_hosts``.

Files (all in the directory given to :class:`~concurdeploy.sandbox.server.Sandbox`):

``host_key``     the servers' ed25519 host key (OpenSSH private-key format, no passphrase)
``id_ed25519``   the only client key the servers accept (same format, mode 0600)
``known_hosts``  ``[127.0.0.1]:PORT ssh-ed25519 AAAA…``, one line per running host

Keys are created once and reused across runs, so ``known_hosts`` lines only
change when ports do.
"""

from __future__ import annotations

import os
import tempfile

import paramiko
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

__all__ = ["HOST_KEY_FILE", "CLIENT_KEY_FILE", "KNOWN_HOSTS_FILE", "load_or_create_key",
           "write_known_hosts"]

HOST_KEY_FILE = "host_key"
CLIENT_KEY_FILE = "id_ed25519"
KNOWN_HOSTS_FILE = "known_hosts"


def load_or_create_key(path: str) -> paramiko.Ed25519Key:
    """Load the ed25519 key at ``path``, creating it (mode 0600) first if absent.

    Creation is atomic and never overwrites: the key is written to a temporary
    file and hard-linked into place, so two processes racing on a fresh state
    directory end up sharing whichever key landed first.

    :param path: key file; its directory must exist.
    :returns: the key (paramiko ``Ed25519Key``, private part included).
    :raises OSError: the file cannot be created or read.
    :raises paramiko.SSHException: an existing file is not a valid unencrypted ed25519 key.
    """
    if not os.path.exists(path):
        pem = Ed25519PrivateKey.generate().private_bytes(
            Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()
        )
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-key-")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
        finally:
            os.unlink(tmp)
    return paramiko.Ed25519Key.from_private_key_file(path)


def write_known_hosts(path: str, host_key: paramiko.PKey, ports: list[int]) -> None:
    """Replace ``path`` (atomically, mode 0644) with one line per port for ``host_key``.

    :param ports: TCP ports on 127.0.0.1, in the order the lines are written.
    :raises OSError: writing or renaming failed; ``path`` is then unchanged.
    """
    key_line = f"{host_key.get_name()} {host_key.get_base64()}"
    _write_atomically(path, "".join(f"[127.0.0.1]:{port} {key_line}\n" for port in ports))


def _write_atomically(path: str, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-kh-")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
