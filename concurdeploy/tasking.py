"""The connection a project's per-host function receives from :func:`concurdeploy.fan_out`.

As in Fabric, :meth:`Connection.run` raises when the remote command exits non-zero, unless
``warn=True``; the exception (:class:`~concurdeploy.exceptions.RemoteCommandFailed`, a
``HostError``) fails that host only: the fan-out goes on with the others and the host's
``HostResult`` says ``failed`` with the command's exit status and output tail.

It wraps the internal SSH connection (:class:`concurdeploy.ssh.connection.Connection`, whose
``run`` returns the result whatever the exit status), which stays available as
:attr:`Connection.raw` for the library's own parts (e.g. ``replace_atomically(conn.raw, tmp,
dest)``). Any other attribute (``spec``, ``sftp``, ``emit``, …) is the raw connection's.
"""

from __future__ import annotations

from typing import Any

from concurdeploy.exceptions import RemoteCommandFailed
from concurdeploy.records import CommandResult, tail

__all__ = ["Connection", "TaskAction"]


class Connection:
    """One open SSH connection to one host, for a task's per-host function.

    :ivar raw: the internal :class:`concurdeploy.ssh.connection.Connection`.
    """

    def __init__(self, raw):
        self.raw = raw

    @property
    def name(self) -> str:
        """The host's inventory name (``str``), e.g. ``"lb1"``: use it for the ``HostResult``."""
        return self.raw.spec.name

    def run(self, command: str, *, warn: bool = False, timeout: float | None = None,
            stdin: bytes | None = None) -> CommandResult:
        """Run ``command`` on the host with ``/bin/sh``, whatever the remote user's login shell
        (the command goes on the channel's stdin, never on a command line).

        :param command: a shell command line (``str``); quote values with ``shlex.quote``.
        :param warn: True = return the result even when the command exits non-zero (check
            ``result.ok`` / ``result.exited`` yourself); False (default) = raise.
        :param timeout: seconds before the command is ended with its process group
            (``float``); None = the host's ``command_timeout`` (default 60).
        :param stdin: bytes sent to the command's standard input, then EOF (keeps secrets off
            the command line).
        :returns: :class:`~concurdeploy.records.CommandResult`: ``exited`` (``int``),
            ``stdout``/``stderr`` (``str``, UTF-8, invalid bytes replaced), ``duration_s``.
        :raises RemoteCommandFailed: exit status not 0 (or none came) and not ``warn``;
            ``exit_status`` and ``output`` (the output's tail) set. Fails this host only.
        :raises CommandTimeout: ran past ``timeout`` (even with ``warn``).
        :raises HostUnreachable: the connection dropped.
        """
        result = self.raw.run(command, stdin=stdin, timeout=timeout)
        if result.exited != 0 and not warn:
            shown = command if len(command) <= 80 else command[:77] + "..."
            status = "no exit status" if result.exited is None else f"exit status {result.exited}"
            raise RemoteCommandFailed(f"{shown!r} failed with {status} (pass warn=True to go on)",
                                      output=tail(result.stdout + result.stderr, 4096),
                                      exit_status=result.exited)
        return result

    def put(self, local: str, remote: str) -> None:
        """Copy the local file ``local`` to ``remote`` over SFTP, as is (no temporary name, no
        rename: for an atomic replace use ``temp_name`` + ``replace_atomically(conn.raw, …)``)."""
        self.raw.sftp.put(local, remote)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


class TaskAction:
    """``action(Connection(raw), payload)``: how :func:`concurdeploy.fan_out` calls a project's
    per-host function. Picklable when ``action`` is a module-level function (sent by reference)."""

    def __init__(self, action):
        self.action = action

    def __call__(self, raw, payload):
        return self.action(Connection(raw), payload)

    def __repr__(self) -> str:
        return f"{getattr(self.action, '__module__', '?')}.{getattr(self.action, '__qualname__', self.action)}"
