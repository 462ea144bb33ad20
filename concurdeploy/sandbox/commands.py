"""The sandbox's ``exec`` requests: ``/bin/sh -c COMMAND`` in a subprocess, one per channel.

The command runs in the controller's working directory and environment, in a
new session (its own process group), with the channel's stdin, stdout and
stderr wired to its pipes; its exit status is sent back, a command killed by
signal N reported as ``128 + N`` (as a shell would), not as ``exit-signal``.
A command still running when its channel closes (client gave up, connection
dropped, :meth:`Sandbox.stop <concurdeploy.sandbox.server.Sandbox.stop>`) gets
``SIGTERM`` sent to its process group.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from typing import Protocol

from paramiko.channel import Channel

__all__ = ["CHUNK", "STOP_TIMEOUT", "ExecSession", "Tracker", "kill_group", "spawn"]

log = logging.getLogger(__name__)

#: Seconds :meth:`Sandbox.stop` waits, in total, for threads and commands to finish
#: (and an exec session for its stdin pump after the command exited).
STOP_TIMEOUT = 5.0
#: Bytes moved per read between a channel and a command's pipes.
CHUNK = 32768


class Tracker(Protocol):
    """What an :class:`ExecSession` reports its threads and processes to (the ``Sandbox``)."""

    def _track_thread(self, t: threading.Thread, *, add: bool) -> None: ...

    def _track_proc(self, p: subprocess.Popen, *, add: bool) -> None: ...


def spawn(target: Callable[[], None], name: str, *, start: bool = True) -> threading.Thread:
    """A daemon thread running ``target``; exceptions are logged at DEBUG, never printed."""
    def run() -> None:
        try:
            target()
        except Exception:
            log.debug("sandbox thread %s failed", name, exc_info=True)

    t = threading.Thread(target=run, name=name, daemon=True)
    if start:
        t.start()
    return t


def kill_group(proc: subprocess.Popen, sig: int) -> None:
    """Send signal ``sig`` to ``proc``'s process group unless ``proc`` has exited; never raises."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


class ExecSession:
    """``/bin/sh -c COMMAND`` connected to one channel.

    :param sandbox: told of every thread and process the session starts and ends.
    :param chan: the channel the ``exec`` request came on; closed when the command ends.
    :param command: the command line as the client sent it (bytes, no decoding).
    """

    def __init__(self, sandbox: Tracker, chan: Channel, command: bytes) -> None:
        self.sandbox = sandbox
        self.chan = chan
        self.command = command
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        """Run the command on a new daemon thread and return at once."""
        t = spawn(self._run, f"sandbox-exec-{self.chan.get_id()}", start=False)
        self.sandbox._track_thread(t, add=True)
        t.start()

    def _run(self) -> None:
        chan = self.chan
        try:
            try:
                self.proc = proc = subprocess.Popen(
                    [b"/bin/sh", b"-c", self.command],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    env=os.environ, start_new_session=True,
                )
            except OSError as e:
                self._finish(127, f"sandbox: cannot run /bin/sh: {e}\n".encode())
                return
            self.sandbox._track_proc(proc, add=True)
            try:
                t_in = spawn(self._pump_stdin, "sandbox-stdin")
                t_err = spawn(lambda: self._pump_out(proc.stderr, chan.sendall_stderr),
                               "sandbox-stderr")
                self._pump_out(proc.stdout, chan.sendall)
                t_err.join()
                rc = proc.wait()
                self._finish(rc if rc >= 0 else 128 - rc)
                t_in.join(STOP_TIMEOUT)
            finally:
                self.sandbox._track_proc(proc, add=False)
        finally:
            self.sandbox._track_thread(threading.current_thread(), add=False)

    def _finish(self, code: int, stderr: bytes = b"") -> None:
        try:
            if stderr:
                self.chan.sendall_stderr(stderr)
            self.chan.send_exit_status(code)
        except Exception:
            pass  # channel already gone
        self.chan.close()

    def _pump_out(self, stream, send: Callable[[bytes], None]) -> None:
        fd = stream.fileno()
        sending = True
        try:
            while True:
                data = os.read(fd, CHUNK)
                if not data:
                    return
                if sending:
                    try:
                        send(data)
                    except Exception:
                        sending = False  # channel closed: drain and discard
        finally:
            stream.close()

    def _pump_stdin(self) -> None:
        chan, proc = self.chan, self.proc
        writing = True
        while True:
            data = chan.recv(CHUNK)  # b"" on EOF from the client or channel closed
            if not data:
                break
            if writing:
                try:
                    proc.stdin.write(data)
                    proc.stdin.flush()
                except (OSError, ValueError):
                    writing = False  # command closed its stdin: discard the rest
        try:
            proc.stdin.close()
        except (OSError, ValueError):
            pass
        # Wait for the channel to close: by _finish() after the command exited,
        # or earlier by the client / a dropped connection / stop(): then hang up.
        chan.status_event.wait()
        if proc.poll() is None:
            kill_group(proc, signal.SIGTERM)
