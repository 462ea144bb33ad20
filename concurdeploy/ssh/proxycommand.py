"""ssh_config's ``ProxyCommand``: the socket of a host reached through a local command.

As OpenSSH runs it: ``/bin/sh -c "exec COMMAND"`` (tokens already expanded, by
:func:`concurdeploy.ssh.openssh_config.proxy_command`), the SSH connection on its stdin and
stdout, its stderr kept (the last line goes into the error when it fails). Unlike
``paramiko.ProxyCommand``: it runs through the shell like ssh (pipes, quotes, ``$VARS``);
it gets a minimal environment (:data:`~concurdeploy.ssh.openssh_config.EXEC_ENV`: never
the variables holding keys or passwords); it is its own process group, killed as a whole
on :meth:`ProxySocket.close` (nothing left running); end-of-file is end-of-file (paramiko's
spins until its timeout); errors never quote the command (it may hold a secret).
"""

from __future__ import annotations

import errno
import os
import select
import signal
import socket
import subprocess
import tempfile
import time

from concurdeploy.exceptions import HostUnreachable
from concurdeploy.ssh.openssh_config import EXEC_ENV

__all__ = ["ProxySocket"]


class ProxySocket:
    """The socket-like object a ``paramiko.Transport`` reads and writes for a ProxyCommand.

    :param command: the expanded command (without ``exec``).
    :raises HostUnreachable: ``/bin/sh`` cannot be started.
    """

    def __init__(self, command: str):
        self._stderr = tempfile.TemporaryFile()
        env = {k: os.environ[k] for k in EXEC_ENV if k in os.environ}
        try:
            self.process = subprocess.Popen(
                ["/bin/sh", "-c", "exec " + command], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=self._stderr, bufsize=0, env=env, start_new_session=True, close_fds=True)
        except OSError as e:
            self._stderr.close()
            raise HostUnreachable(f"ProxyCommand: cannot start /bin/sh: {e.strerror or e}") from None
        self.timeout: float | None = None
        self._closed_by_us = False

    # -- what paramiko's Transport/Packetizer use ------------------------------
    def settimeout(self, timeout: float | None) -> None:
        """Seconds :meth:`recv` waits for data before ``socket.timeout`` (None: forever)."""
        self.timeout = timeout

    def send(self, data: bytes) -> int:
        """Write to the command's stdin. :raises OSError: the command is gone (EPIPE)."""
        try:
            return os.write(self.process.stdin.fileno(), data)
        except (BrokenPipeError, ValueError):
            raise OSError(errno.EPIPE, "ProxyCommand closed its input") from None

    def recv(self, size: int) -> bytes:
        """Up to ``size`` bytes of the command's stdout; ``b""`` at its end.

        :raises socket.timeout: nothing came within the timeout.
        """
        fd = self.process.stdout.fileno()
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([fd], [], [], wait)
            if ready:
                return os.read(fd, size)
            if deadline is not None and time.monotonic() >= deadline:
                raise socket.timeout("ProxyCommand sent nothing in time")

    @property
    def closed(self) -> bool:
        """True once closed or once the command has exited."""
        return self._closed_by_us or self.process.poll() is not None

    _closed = closed  # what paramiko's Transport.stop_thread looks at

    def close(self) -> None:
        """Stop the command and everything it started (SIGTERM to its group, SIGKILL after
        2 s). Idempotent; never raises."""
        if self._closed_by_us:
            return
        self._closed_by_us = True
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.process.wait(timeout=2)
                break
            except subprocess.TimeoutExpired:
                continue
        try:  # a child left in the group after the leader exited
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def failure(self) -> str | None:
        """Why the command ended early (``exited with status N: last stderr line``), or None
        while it runs. Waits up to 1 s for an exit in progress."""
        try:
            code = self.process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            return None
        self._stderr.seek(0)
        lines = self._stderr.read()[-4096:].decode("utf-8", "replace").strip().splitlines()
        last = lines[-1].strip()[:200] if lines else ""
        why = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
        return f"ProxyCommand {why}" + (f": {last}" if last else "")

    def __del__(self):
        try:
            self._stderr.close()
        except Exception:
            pass
