"""When a run stops waiting for hosts in flight: :class:`StopClock`, shared by every executor
(the controller's threads, the local pool, Dask), with the deadline and grace constants of
:mod:`concurdeploy.executors.core`."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from concurdeploy.executors.core import ABORT_GRACE_S, DEADLINE_GRACE_S, DEADLINE_REASON

if TYPE_CHECKING:
    from concurdeploy.executors.core import Executor

__all__ = ["StopClock"]


class StopClock:
    """When a run stops waiting for hosts in flight; call :meth:`check` once per loop turn.

    * Past ``deadline`` (a ``time.monotonic()`` value; checked every turn, so hosts finishing
      back to back cannot defer it) the executor is aborted with :data:`DEADLINE_REASON` and
      the grace shrinks to :data:`DEADLINE_GRACE_S`.
    * From the first turn that sees the executor aborting, hosts in flight have ``grace_s``
      seconds to reach a safe point; then :meth:`check` returns True and the executor gives
      them up (``GIVEN_UP`` in :func:`host_outcome`).
    """

    def __init__(self, executor: Executor, deadline: float | None, grace_s: float = ABORT_GRACE_S):
        self.executor, self.deadline, self.grace_s = executor, deadline, grace_s
        self.aborted_at: float | None = None

    @property
    def deadline_passed(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    def check(self) -> bool:
        """Apply the deadline; True once the grace after the abort has run out."""
        now = time.monotonic()
        if self.deadline is not None and now > self.deadline and not self.executor.aborting:
            self.executor.abort(DEADLINE_REASON)
            self.grace_s = min(self.grace_s, DEADLINE_GRACE_S)
        if self.executor.aborting and self.aborted_at is None:
            self.aborted_at = now
        if self.executor.hard:  # a second Ctrl-C: no grace at all
            return True
        return self.aborted_at is not None and now - self.aborted_at > self.grace_s
