"""Signals during a run: SIGINT/SIGTERM abort the executor instead of killing the controller."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable

__all__ = ["Interrupts", "announce"]


def announce(signum: int) -> None:
    """The default notice for the first signal of a run (one line on stderr)."""
    print(f"\n{signal.Signals(signum).name}: stopping — no new hosts; in-flight hosts stop at "
          f"a safe point (destinations old or new, temporary files removed)…",
          file=sys.stderr, flush=True)


class Interrupts:
    """While active (a context manager), SIGINT and SIGTERM call ``executor.abort(...)``:
    no new host starts and hosts in flight stop at their next safe point (see
    :class:`~concurdeploy.executors.core.StopClock`). The previous handlers are restored on
    exit. Must be entered in the main thread (a ``signal.signal`` rule: ``ValueError`` otherwise).

    :param executor: anything with ``abort(reason: str)`` (an
        :class:`~concurdeploy.executors.core.Executor`).
    :param notify: called with the signal number on the first signal only; default
        :func:`announce`; None = silent.
    :ivar signum: the first signal received (``int``), 0 if none — the CLI exits 128 + it.
    """

    def __init__(self, executor, notify: Callable[[int], None] | None = announce):
        self.executor, self.notify, self.signum = executor, notify, 0
        self._old: dict = {}

    def _handle(self, signum, frame) -> None:
        if not self.signum:
            self.signum = signum
            if self.notify is not None:
                self.notify(signum)
        self.executor.abort(f"interrupted ({signal.Signals(signum).name})")

    def __enter__(self) -> Interrupts:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()
