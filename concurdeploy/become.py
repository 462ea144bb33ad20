"""Running remote commands as another user through ``sudo`` (Ansible's "become").

A push with ``become: true`` lets a non-root deploy user replace root-owned files with the
same guarantees as a root push: the upload goes over SFTP to a private staging file the
user can write (``/tmp/.concurdeploy-stage-<uuid>``, mode 0600), and every remote step —
copying it beside the destination, checksum, mode and owner, validate, backup, the
atomic ``mv`` (``rename(2)`` in the same directory), reload, rollback — runs as root.

The sudo password, when sudo asks for one, comes from the environment variable named by
``become_password_env`` and is sent on the command's standard input (``sudo -S``), never
on a command line where other users could read it in the process list. Without it,
``sudo -n`` fails at once instead of prompting.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass

from .exceptions import CredentialsMissing

__all__ = ["Become", "wrap", "BecomeShell"]


@dataclass(frozen=True)
class Become:
    """Run remote steps as ``user`` (default root) through sudo.

    :param password_env: name of an environment variable holding the sudo password, or None
        (then sudo must not ask: NOPASSWD, or a cached credential).
    """

    user: str = "root"
    password_env: str | None = None


def wrap(command: str, become: Become | None, stdin: bytes | None = None) -> tuple[str, bytes | None]:
    """Return ``(command, stdin)`` rewritten to run ``command`` through ``sudo … /bin/sh -c``.

    :raises CredentialsMissing: ``password_env`` names an unset variable.
    """
    if become is None:
        return command, stdin
    user = shlex.quote(become.user)
    if become.password_env:
        password = os.environ.get(become.password_env)
        if password is None:
            raise CredentialsMissing(f"become_password_env {become.password_env} is not set")
        return (f"sudo -S -p '' -u {user} -- /bin/sh -c {shlex.quote(command)}",
                password.encode() + b"\n" + (stdin or b""))
    return f"sudo -n -u {user} -- /bin/sh -c {shlex.quote(command)}", stdin


class BecomeShell:
    """A :class:`~concurdeploy.connection.Connection` whose ``run``/``hold`` go through sudo.

    Everything else (``spec``, ``sftp``, ``check_abort``, …) is the connection's own.
    ``staged`` maps a temporary path beside a destination to its staging upload.
    """

    def __init__(self, conn, become: Become):
        self._conn = conn
        self.become = become
        self.staged: dict[str, str] = {}

    def __getattr__(self, name):
        return getattr(self._conn, name)

    def run(self, command: str, *, stdin: bytes | None = None, timeout: float | None = None,
            on_output=None):
        command, stdin = wrap(command, self.become, stdin)
        return self._conn.run(command, stdin=stdin, timeout=timeout, on_output=on_output)

    def hold(self, command: str, ready: str, timeout: float):
        command, stdin = wrap(command, self.become)
        return self._conn.hold(command, ready, timeout, stdin=stdin)
