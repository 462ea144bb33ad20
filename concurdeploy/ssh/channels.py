"""Small helpers around one SSH session channel: a command left running on purpose
(:class:`HeldCommand`), and how commands and their output are shown in messages.

No error translation here: a channel's paramiko errors become concurdeploy errors in
:mod:`concurdeploy.ssh.connection`.
"""

from __future__ import annotations

import select
import socket

import paramiko

__all__ = ["HeldCommand", "decode", "one_line", "short", "timed_out", "wait_event"]


class HeldCommand:
    """A remote command left running on purpose (see :meth:`Connection.hold`).

    ``pid``: its shell's PID on the host (alive exactly as long as the command), or None.
    """

    def __init__(self, chan: paramiko.Channel, pid: int | None = None):
        self._chan = chan
        self.pid = pid

    def release(self) -> None:
        """Send a newline, close the command's stdin and its channel (it then exits).

        The newline ends a ``read`` even on servers that never pass on end-of-input
        (mock-ssh-server). Idempotent; never raises.
        """
        try:
            if not self._chan.closed:
                self._chan.sendall(b"\n")
        except Exception:
            pass
        try:
            self._chan.shutdown_write()
        except Exception:
            pass
        try:
            self._chan.close()
        except Exception:
            pass


def decode(data: bytes) -> str:
    """Remote output as text: UTF-8, invalid bytes replaced (U+FFFD)."""
    return data.decode("utf-8", errors="replace")


def short(command: str, limit: int = 120) -> str:
    """The first line of ``command``, cut to ``limit`` characters, for messages."""
    first = command.strip().splitlines()[0] if command.strip() else ""
    return first if len(first) <= limit else first[:limit] + "…"


def wait_event(chan: paramiko.Channel, seconds: float) -> None:
    """Wait for the channel's next event. Once EOF has arrived paramiko's event pipe stays
    readable, so ``select`` would spin: wait for the exit status instead."""
    if chan.eof_received:
        chan.status_event.wait(seconds)
    else:
        select.select([chan], [], [], seconds)


def timed_out(e: BaseException | None) -> bool:
    """True if ``e`` is, or was raised while handling, a timeout.

    paramiko reports a banner that never came as ``SSHException("Error reading SSH protocol
    banner")``, the same text as for a closed connection; only its ``__context__`` tells.
    """
    for _ in range(10):
        if e is None:
            return False
        if isinstance(e, socket.timeout) or "timeout" in str(e).lower():
            return True
        e = e.__context__
    return False


def one_line(e: BaseException) -> str:
    """The first line of ``e``'s message, or its class name when it has none."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
