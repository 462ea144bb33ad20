"""Asking for key passphrases on a terminal, once per run, before any worker starts.

A ``key_file`` that is encrypted and has no ``passphrase_env`` is asked for on the
controller's terminal (``getpass``: not echoed, not logged) — never without a terminal:
in CI such a key is a :class:`~concurdeploy.exceptions.CredentialsMissing` failure that
names ``passphrase_env``. The answers are kept in memory, never in an environment variable,
a command line, a job payload, a file on disk or a report: in an anonymous in-memory file
(``memfd_create``, close-on-exec) of the controller, which the local workers (same user,
forked from the fork server) read through ``/proc/<controller pid>/fd/<n>``; only that *path*
travels, in :data:`ENV_VAR` (its value names no secret). A worker looks a passphrase up with
:func:`lookup`. Remote processes, sudo and the commands run get neither the answers nor the
path (the SSH session carries no environment).
"""

from __future__ import annotations

import base64
import getpass
import os
import sys

from concurdeploy.ssh import envsecrets

__all__ = ["ENV_VAR", "ask", "is_encrypted", "lookup", "remember"]

#: Names where the controller's passphrases are (``/proc/<pid>/fd/<n>``); never a secret itself.
ENV_VAR = "CONCURDEPLOY_PASSPHRASES"
#: This process's answers (the controller's; in a worker, filled by :func:`lookup`):
#: absolute key path -> passphrase.
_ASKED: dict[str, str] = {}
_FD: list[int] = []  # the memfd holding _ASKED as JSON (the controller's, once created)


def _key(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


def remember(path: str, passphrase: str) -> None:
    """Keep ``passphrase`` for key file ``path`` in memory and publish it to this process's
    future workers (rewrites the memfd; sets :data:`ENV_VAR` to its ``/proc`` path).

    :raises OSError: the memfd cannot be created (no ``/proc`` or ``memfd_create``).
    """
    _ASKED[_key(path)] = passphrase
    envsecrets.publish(_FD, _ASKED, ENV_VAR, "concurdeploy-passphrases")


def lookup(path: str) -> str | None:
    """The passphrase asked on the controller's terminal for key file ``path``, or None.

    In the controller, from memory; in a worker, read from the controller's memfd named by
    :data:`ENV_VAR` (re-read each time: a later run may have asked more). A path that cannot
    be read (no such process, another user's) gives None: the key then fails as encrypted.
    """
    key = _key(path)
    if key in _ASKED:
        return _ASKED[key]
    return envsecrets.read_published(ENV_VAR, key, limit=1 << 20)


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
    passphrase yet, and keep it in memory for the workers (:func:`remember`).

    :param key_files: paths (``~`` allowed) of keys that have no ``passphrase_env``.
    :returns: the paths asked for (empty when stdin is not a terminal).
    """
    stdin = stdin or sys.stdin
    if not (hasattr(stdin, "isatty") and stdin.isatty()):
        return []
    asked = []
    for path in dict.fromkeys(os.path.expanduser(p) for p in key_files):
        if lookup(path) is not None or not is_encrypted(path):
            continue
        remember(path, getpass.getpass(f"Passphrase for {path}: "))
        asked.append(path)
    return asked
