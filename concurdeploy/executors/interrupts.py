"""Signals during a run: SIGINT/SIGTERM abort the executor instead of killing the controller.

Two pieces:

* :class:`Interrupts` — one run's handling (a context manager around the run): the first
  SIGINT/SIGTERM stops the run at a safe point (no new host; hosts in flight finish their
  critical section), the second is a hard stop (workers killed at once); either way the run
  still returns its results, so the report is written.
* :class:`Lifecycle` — the CLI's handling for the whole command (:meth:`install` at the
  start of ``Program.run``, :meth:`uninstall` at the end). While no run is under way a signal
  raises :class:`~concurdeploy.exceptions.RunInterrupted` where the main thread is (inventory
  loading, pool start-up: nothing was touched yet); once a run began, signals go to it —
  also after its hosts finished, while the workers stop and the reports are written — so the
  exit code (128 + the first signal) and the report's ``signal``/``exit_code`` agree.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable

__all__ = ["Interrupts", "Lifecycle", "announce", "lifecycle", "signame"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def signame(signum: int) -> str:
    """``"SIGINT"`` for 2; ``"signal N"`` for a number that is no signal."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def announce(signum: int) -> None:
    """The default notice for the first signal of a run (one line on stderr)."""
    print(f"\n{signal.Signals(signum).name}: stopping — no new hosts; in-flight hosts stop at "
          f"a safe point (destinations old or new, temporary files removed); press Ctrl-C again "
          f"to stop at once…", file=sys.stderr, flush=True)


def announce_hard(signum: int) -> None:
    """The notice for the second signal (hard stop)."""
    print(f"\n{signal.Signals(signum).name} again: stopping now — workers killed; the report "
          f"is still written", file=sys.stderr, flush=True)


class Interrupts:
    """While active (a context manager), SIGINT and SIGTERM call ``executor.abort(...)``:
    no new host starts and hosts in flight stop at their next safe point (see
    :class:`~concurdeploy.executors.clock.StopClock`); a second signal calls
    ``executor.hard_stop(...)`` (no grace: workers killed, results still returned).

    Under the CLI (a :class:`Lifecycle` installed) the signals are delivered by it, also
    after this context exits, so a signal that arrives while the pool stops or the report
    is being prepared still counts (:attr:`signum`). Without it (library use) the previous
    handlers are installed on entry and restored on exit; then it must be entered in the
    main thread (a ``signal.signal`` rule: ``ValueError`` otherwise).

    :param executor: anything with ``abort(reason: str)`` (and ``hard_stop(reason)``, an
        :class:`~concurdeploy.executors.core.Executor`).
    :param notify: called with the signal number on the first signal only; default
        :func:`announce`; None = silent.
    :ivar signum: the first signal received (``int``), 0 if none — the CLI exits 128 + it.
    :ivar count: signals received so far.
    """

    def __init__(self, executor, notify: Callable[[int], None] | None = announce):
        self.executor, self.notify, self.signum, self.count = executor, notify, 0, 0
        self._old: dict = {}

    def deliver(self, signum: int) -> None:
        """Handle one signal (called from a signal handler, in the main thread)."""
        self.count += 1
        name = signal.Signals(signum).name
        if not self.signum:
            self.signum = signum
            if self.notify is not None:
                self.notify(signum)
            self.executor.abort(f"interrupted ({name})")
            return
        hard = getattr(self.executor, "hard_stop", None)
        if hard is not None and not getattr(self.executor, "hard", False):
            if self.notify is not None:
                announce_hard(signum)
            hard(f"interrupted ({signal.Signals(self.signum).name}, then {name}: hard stop)")

    def _handle(self, signum, frame) -> None:
        self.deliver(signum)

    def __enter__(self) -> Interrupts:
        if lifecycle.installed:
            lifecycle.attach(self)
            return self
        for sig in _SIGNALS:
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()


class Lifecycle:
    """The CLI's SIGINT/SIGTERM handling from its first line to its exit (see the module doc).

    :ivar signum: the first signal of the command (``int``), 0 if none.
    :ivar run: the run signals are delivered to (the last :class:`Interrupts` entered; it
        stays attached after its context exits, until the command ends).
    :ivar finished: True once :meth:`uninstall` ran (the command's outcome is decided).
    """

    def __init__(self):
        self.signum = 0
        self.run: Interrupts | None = None
        self.finished = False
        self._old: dict = {}

    @property
    def installed(self) -> bool:
        return bool(self._old)

    def install(self) -> None:
        """Take over SIGINT/SIGTERM (main thread only; idempotent)."""
        if self._old:
            return
        self.signum, self.run, self.finished = 0, None, False
        for sig in _SIGNALS:
            self._old[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        """Give SIGINT/SIGTERM back to what they were before :meth:`install`."""
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()
        self.run = None
        self.finished = True

    def attach(self, run: Interrupts) -> None:
        """Deliver signals to ``run`` from now on; a signal already received aborts it at once
        (no host of it starts)."""
        self.run = run
        if self.signum:
            run.deliver(self.signum)

    def _handle(self, signum, frame) -> None:
        from concurdeploy.exceptions import RunInterrupted

        if not self.signum:
            self.signum = signum
        if self.run is not None:
            self.run.deliver(signum)
            return
        raise RunInterrupted(signum)  # no run under way: nothing touched, stop where we are


#: The one :class:`Lifecycle` of this process (the CLI installs it).
lifecycle = Lifecycle()
