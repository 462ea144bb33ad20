"""Running remote commands as another user through ``sudo`` (Ansible's "become").

A push with ``become: true`` lets a non-root deploy user replace root-owned files with the
same guarantees as a root push: the upload goes over SFTP to a private staging file the
user can write (``/tmp/.concurdeploy-stage-<uuid>``, mode 0600), and every remote step —
copying it beside the destination, checksum, mode and owner, validate, backup, the
atomic ``mv`` (``rename(2)`` in the same directory), reload, rollback — runs as root.

The sudo password, when sudo asks for one, comes from the environment variable named by
``become_password_env`` and is sent as the first line of the remote command's standard
input, never on a command line where other users could read it in the process list. The
remote login shell (POSIX ``sh``) reads that line into an unexported variable, then:

* if sudo needs no password (``NOPASSWD``, cached credentials), the line is dropped and the
  command runs with ``sudo -n``: the password never reaches the command's stdin;
* else ``sudo -k -S`` checks the password once with stdin closed after it (a wrong password
  fails at once instead of sudo waiting for another try on a held command's open stdin),
  then runs the command with the password line followed by the rest of stdin.

Without ``become_password_env``, ``sudo -n`` fails at once instead of prompting. Either way a
refusal by sudo is reported as :class:`~concurdeploy.exceptions.AuthFailed` naming the
variable, never its value.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass

from concurdeploy.exceptions import AuthFailed, CredentialsMissing, RemoteCommandFailed

__all__ = ["SUDO_FAILED", "Become", "BecomeShell", "refusal", "wrap"]


@dataclass(frozen=True)
class Become:
    """Run remote steps as ``user`` (default root) through sudo.

    :param password_env: name of an environment variable holding the sudo password, or None
        (then sudo must not ask: NOPASSWD, or a cached credential).
    """

    user: str = "root"
    password_env: str | None = None


#: Written to stderr (first word) by the wrapper when sudo itself refuses.
SUDO_FAILED = "@@concurdeploy-sudo-failed"


def wrap(command: str, become: Become | None, stdin: bytes | None = None) -> tuple[str, bytes | None]:
    """Return ``(command, stdin)`` rewritten to run ``command`` through ``sudo … /bin/sh -c``.

    :raises CredentialsMissing: ``password_env`` names an unset variable.
    """
    if become is None:
        return command, stdin
    user = shlex.quote(become.user)
    inner = f"-u {user} -- /bin/sh -c {shlex.quote(command)}"
    refused = f"{{ printf '{SUDO_FAILED} %s\\n' \"$cd_err\" >&2; exit 1; }}"
    # A comment first, so messages quoting a command's first line name the command, not sudo.
    first = command.strip().splitlines()[0][:100] if command.strip() else ""
    head = f"# as {' '.join(become.user.split())} through sudo: {first}\n"
    if not become.password_env:
        return (f"{head}cd_err=$(sudo -n -u {user} true 2>&1 </dev/null) || {refused}\n"
                f"exec sudo -n {inner}"), stdin
    password = os.environ.get(become.password_env)
    if password is None:
        raise CredentialsMissing(f"become_password_env {become.password_env} is not set")
    if "\n" in password or "\r" in password:
        raise CredentialsMissing(f"become_password_env {become.password_env} holds a line break: "
                                 f"sudo reads one line")
    script = (
        f"{head}IFS= read -r cd_pw || cd_pw=\n"
        f"if sudo -n -u {user} true 2>/dev/null </dev/null; then exec sudo -n {inner}; fi\n"
        f"cd_err=$(printf '%s\\n' \"$cd_pw\" | sudo -k -S -p '' -u {user} true 2>&1 >/dev/null) "
        f"|| {refused}\n"
        f"{{ printf '%s\\n' \"$cd_pw\"; cd_pw=; exec cat; }} | sudo -k -S -p '' {inner}\n"
    )
    return script, password.encode() + b"\n" + (stdin or b"")


def refusal(become: Become, output: str):
    """An :class:`AuthFailed` if ``output`` (a wrapped command's stderr) says sudo refused, else None."""
    at = output.find(SUDO_FAILED)
    if at < 0:
        return None
    detail = " ".join(output[at + len(SUDO_FAILED):].split()) or "no reason given"
    if become.password_env:
        return AuthFailed(f"sudo -u {become.user} refused the password from become_password_env "
                          f"{become.password_env}: {detail}")
    return AuthFailed(f"sudo -u {become.user} failed without a password (sudo -n; set "
                      f"become_password_env if sudo asks for one): {detail}")


class BecomeShell:
    """A :class:`~concurdeploy.ssh.connection.Connection` whose ``run``/``hold`` go through sudo.

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
        """:meth:`Connection.run` through sudo.

        :raises AuthFailed: sudo refused (wrong or missing password, not in sudoers).
        """
        command, stdin = wrap(command, self.become, stdin)
        if on_output is not None:  # sudo's refusal is reported as the error, not streamed
            shown = on_output

            def on_output(stream, data, _marker=SUDO_FAILED.encode()):
                if _marker not in data:
                    shown(stream, data)
        res = self._conn.run(command, stdin=stdin, timeout=timeout, on_output=on_output)
        if res.exited != 0:
            err = refusal(self.become, res.stderr)
            if err is not None:
                raise err
        return res

    def hold(self, command: str, ready: str, timeout: float):
        """:meth:`Connection.hold` through sudo. :raises AuthFailed: sudo refused."""
        command, stdin = wrap(command, self.become)
        try:
            return self._conn.hold(command, ready, timeout, stdin=stdin)
        except RemoteCommandFailed as e:
            err = refusal(self.become, e.output)
            if err is not None:
                raise err from None
            raise
