"""Asking for key passphrases on a terminal, once per run, before any worker starts.

A ``key_file`` that is encrypted and has no ``passphrase_env`` is asked for on the
controller's terminal (``getpass``: not echoed, not logged) — never without a terminal:
in CI such a key is a :class:`~concurdeploy.exceptions.CredentialsMissing` failure that
names ``passphrase_env``. The answer is handed to the local worker processes through
their inherited environment (``CONCURDEPLOY_PASSPHRASE_<id>``, see :func:`env_name`),
never through a job payload, a command line or a report.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import os
import sys

__all__ = ["ask", "env_name", "is_encrypted"]


def env_name(path: str) -> str:
    """The environment variable a prompted passphrase for key file ``path`` is kept in."""
    digest = hashlib.sha256(os.path.abspath(os.path.expanduser(path)).encode()).hexdigest()[:16]
    return f"CONCURDEPLOY_PASSPHRASE_{digest.upper()}"


def is_encrypted(path: str) -> bool:
    """True if the private key file ``path`` needs a passphrase (PEM ``ENCRYPTED`` header or
    an OpenSSH-format key whose cipher is not ``none``). Unreadable files: False."""
    try:
        with open(os.path.expanduser(path), encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError:
        return False
    if "ENCRYPTED" in text:
        return True
    if "BEGIN OPENSSH PRIVATE KEY" not in text:
        return False
    body = "".join(ln for ln in text.splitlines() if ln and "-----" not in ln)
    try:
        blob = base64.b64decode(body)
    except ValueError:
        return False
    magic = b"openssh-key-v1\0"
    if not blob.startswith(magic) or len(blob) < len(magic) + 4:
        return False
    size = int.from_bytes(blob[len(magic):len(magic) + 4], "big")
    cipher = blob[len(magic) + 4:len(magic) + 4 + size]
    return cipher != b"none"


def ask(key_files, stdin=None) -> list[str]:
    """On a terminal, ask once for each encrypted key file of ``key_files`` that has no
    passphrase yet, and put it in :func:`env_name`'s variable of this process.

    :param key_files: paths (``~`` allowed) of keys that have no ``passphrase_env``.
    :returns: the paths asked for (empty when stdin is not a terminal).
    """
    stdin = stdin or sys.stdin
    if not (hasattr(stdin, "isatty") and stdin.isatty()):
        return []
    asked = []
    for path in dict.fromkeys(os.path.expanduser(p) for p in key_files):
        if env_name(path) in os.environ or not is_encrypted(path):
            continue
        os.environ[env_name(path)] = getpass.getpass(f"Passphrase for {path}: ")
        asked.append(path)
    return asked
