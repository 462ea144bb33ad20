"""What a host's connection trouble means, decided at the executor boundary (issue #14.3).

* :class:`Watchdog`: while a host's action runs, its SSH transport is probed with a
  ``keepalive@openssh.com`` global request that wants a reply (sshd answers it even while a
  long remote command runs). No reply within ``connect_timeout`` seconds: the host is
  frozen (a stopped sshd, a hung kernel, a black-holed link) — the transport is closed so
  that whatever the action is blocked in fails at once, instead of after
  ``command_timeout`` or never.
* :func:`connection_lost`: whether an exception that escaped an action is the connection
  going away (``EOFError``, a socket error, paramiko's ``SSHException``, or any error once
  the transport is down) rather than a bug; :func:`step_of` names the step it hit.

Both only read the connection (``conn.transport``, ``conn.spec``); nothing here talks to the
host except the probe.
"""

from __future__ import annotations

import threading
import traceback

__all__ = ["Watchdog", "connection_lost", "lost_sentence", "plain", "step_of"]

#: Longest wait between two probes, in seconds (a frozen host is seen within
#: ``connect_timeout`` + this).
PROBE_EVERY_S = 1.0

#: Functions of the operations a traceback may pass through, and the step each one is.
_STEPS = {
    "_upload": "upload", "open_upload": "upload",
    "hold": "lock and facts", "lock_and_facts_script": "lock and facts", "gather": "facts",
    "prepare_script": "validate", "validate": "validate",
    "install": "rename", "replace_atomically": "rename",
    "reload_and_check": "reload", "reload": "reload", "healthcheck": "healthcheck",
    "rollback": "rollback", "_diff": "diff", "read_bytes": "download", "get": "download",
    "open": "connect", "_handshake": "connect", "_authenticate": "connect",
}


class Watchdog:
    """Probe ``conn``'s transport every :data:`PROBE_EVERY_S` s (at most) while active.

    Use as a context manager around the action. Costs one thread per host in flight and one
    small packet per probe; a probe is only sent once the transport is up.

    :param conn: a :class:`~concurdeploy.ssh.connection.Connection` (its ``transport`` may
        be None until it is opened, and replaced on reconnect).
    :param timeout: seconds a probe may go unanswered (the host's ``connect_timeout``).
    :ivar frozen: None, or one sentence saying the host stopped answering.
    """

    def __init__(self, conn, timeout: float):
        self.conn, self.timeout = conn, max(0.5, float(timeout))
        self.frozen: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="concurdeploy-watchdog")

    def __enter__(self) -> Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(self.timeout + 1)  # bounded: a probe never outlives its timeout

    def _watch(self) -> None:
        period = min(PROBE_EVERY_S, self.timeout / 2)
        while not self._stop.wait(period):
            t = self.conn.transport
            if t is None or not t.is_active() or not getattr(t, "authenticated", True):
                continue
            answered = threading.Event()

            def probe(t=t, answered=answered) -> None:
                try:
                    t.global_request("keepalive@openssh.com", wait=True)  # returns once closed too
                except Exception:  # the transport died under it: the action sees that itself
                    pass
                finally:
                    answered.set()

            threading.Thread(target=probe, daemon=True, name="concurdeploy-probe").start()
            if answered.wait(self.timeout) or self._stop.is_set():
                continue
            self.frozen = (f"the host stopped answering (no reply to an SSH keepalive within "
                           f"{self.timeout:g} s, connect_timeout)")
            try:
                t.close()  # whatever the action waits on fails now
            except Exception:
                pass
            return


def connection_lost(e: BaseException, conn) -> bool:
    """True when ``e`` (escaped from an action on ``conn``) is the connection going away:
    ``EOFError``, ``ConnectionError``, or an ``OSError`` / paramiko ``SSHException`` raised
    while the transport is no longer active. (A paramiko error on a live transport, e.g. a
    ``BadHostKeyException`` an action raises itself, is the action's failure, not this.)"""
    if isinstance(e, (EOFError, ConnectionError)):
        return True
    try:
        import paramiko

        ssh_errors: tuple = (paramiko.SSHException,)
    except ImportError:  # pragma: no cover - paramiko is a dependency
        ssh_errors = ()
    t = getattr(conn, "transport", None)
    return isinstance(e, (OSError, *ssh_errors)) and (t is None or not t.is_active())


def step_of(e: BaseException) -> str | None:
    """The step (``"upload"``, ``"reload"`` …) that ``e``'s traceback went through last
    among the known operations, or None."""
    step = None
    for frame in traceback.extract_tb(e.__traceback__):
        if "concurdeploy" in frame.filename and frame.name in _STEPS:
            step = _STEPS[frame.name]
    return step


def plain(e: BaseException) -> str:
    """A connection error in words, without the library's class names or paths."""
    if isinstance(e, EOFError):
        return "end of stream"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower()
    lines = str(e).strip().splitlines()
    text = lines[0] if lines else ""
    return text if text and "/" not in text and len(text) < 120 else "closed"


def lost_sentence(why: str, step: str | None, spec) -> str:
    """One sentence: what happened to the link (``why``), in which step, what it means for
    the host. ``spec``: the host's :class:`~concurdeploy.ssh.specs.ConnectSpec`."""
    during = f" during the {step}" if step else ""
    return (f"{spec.hostname}:{spec.port}: {why}{during}; its destinations are old or new "
            f"(every replace is atomic): check it, or run again")
