"""The in-controller executor: each host in a thread of the controller itself.

For a run of up to :data:`INLINE_MAX_HOSTS` hosts the local pool's machinery costs more than it
gives: a fork server
that imports paramiko, a resource tracker, worker processes, pipes (≈1 s of wall time and
≈0.4 s of CPU before the first SSH packet on a 2-core machine; bench/RESULTS.md). When the
run has at most :data:`INLINE_MAX_HOSTS` hosts and ``--processes`` is left at 0 (automatic),
:func:`~concurdeploy.executors.core.make_executor` returns an :class:`InlinePool` instead: the
same :class:`~concurdeploy.executors.core.Executor` surface, the same one policy
(:func:`~concurdeploy.executors.core.host_outcome`), no process started.

What stays the same as the local pool: ``forks`` bounds the hosts in flight; a job or a result
that could not cross a process boundary fails its host the same way (so a run does not change
its verdict with the host count); :meth:`~InlinePool.stop`, :meth:`~InlinePool.abort` (hosts
stop at their next safe point), the deadline and a hard stop end the run the same way, hosts
given up are ``failed`` / ``Deadline`` and their connections are closed under them so they can
take no further step on the host; results and output are handed to ``on_result`` and
``on_output`` in the calling thread only. What cannot be the same: there is no worker process
to lose (a host's action that kills the process kills the controller: ``--processes N``
keeps the pool for such actions).
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

from concurdeploy.executors.clock import StopClock
from concurdeploy.executors.core import (
    ABORT_GRACE_S,
    DEADLINE_REASON,
    DEFAULT_FORKS,
    POLL_S,
    Executor,
    Job,
    Outcome,
    host_outcome,
    not_started,
    pickle_problem,
    run_sendable,
)
from concurdeploy.records import HostResult

__all__ = ["INLINE_MAX_HOSTS", "InlinePool", "fits_inline"]

#: Runs of at most this many hosts go in the controller's own threads when ``processes`` is 0
#: (automatic). Past it, the CPU of key exchange and hashing is spread over worker processes.
#: Measured on 2 cores (bench/RESULTS.md, row ``cd+pool``): threads were faster and used a third
#: of the memory at 1, 8 and 64 hosts.
INLINE_MAX_HOSTS = 64


def fits_inline(kind: str, processes: int | None, n_hosts: int) -> bool:
    """True when a run of ``n_hosts`` with executor ``kind`` and ``--processes`` ``processes``
    runs in the controller's threads: the local executor, processes 0/None (automatic), and
    at most :data:`INLINE_MAX_HOSTS` hosts."""
    return str(kind or "local").strip().lower() == "local" and not processes and n_hosts <= INLINE_MAX_HOSTS


class InlinePool(Executor):
    """Hosts in threads of this process (see the module's docstring); use as a context manager.

    :param forks: hosts in flight at once (``int`` ≥ 1).
    :param hosts_hint: the number of hosts to be run (only bounds ``forks``).
    """

    processes = 0
    retries = 0
    _open_pools = 0  # InlinePools of this process not yet closed (bastions are closed with the last)
    _count_lock = threading.Lock()

    def __init__(self, forks: int = DEFAULT_FORKS, hosts_hint: int | None = None):
        self.forks = max(1, min(forks, hosts_hint or forks))
        # paramiko logs transport-thread errors (e.g. a banner timeout) that are reported per
        # host; without a handler Python would print them to stderr as tracebacks (as in a worker)
        quiet = logging.getLogger("paramiko")
        if not any(isinstance(h, logging.NullHandler) for h in quiet.handlers):
            quiet.addHandler(logging.NullHandler())
        self._abort = threading.Event()
        self._stop_reason: str | None = None
        self._conns: dict[int, object] = {}  # index -> its Connection while the host is in flight
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._closed = False
        with InlinePool._count_lock:
            InlinePool._open_pools += 1

    @property
    def pids(self) -> list[int]:
        """No worker process: always empty (the surface of the local pool, for diagnostics)."""
        return []

    def _on_abort(self) -> None:
        self._abort.set()  # an Event: safe in a signal handler

    def run(self, jobs: Iterable[Job], on_result: Callable[[HostResult], None] | None = None,
            deadline: float | None = None, grace_s: float = ABORT_GRACE_S,
            on_output: Callable[[str, str, bytes], None] | None = None) -> list[HostResult]:
        """Run ``jobs`` in at most ``forks`` threads; return one result per job, in order.

        Same parameters and guarantees as :meth:`~concurdeploy.executors.local.WorkerPool.run`.
        """
        jobs = list(jobs)
        if not jobs:
            return []
        done: dict[int, HostResult] = {}
        pending = deque(range(len(jobs)))
        flying: set[int] = set()
        inbox: queue.SimpleQueue = queue.SimpleQueue()
        clock = StopClock(self, deadline, grace_s)

        def settle(i: int, result: HostResult, report: bool = True) -> None:
            if i not in done:
                done[i] = result
                if report and on_result:
                    on_result(result)

        while len(done) < len(jobs):  # bounded: each turn waits ≤ POLL_S; the clock ends it
            while self._stop_reason is None and pending and len(flying) < self.forks:
                i = pending.popleft()
                why = pickle_problem(jobs[i])
                if why:
                    settle(i, host_outcome(jobs[i], Outcome.JOB_UNSENDABLE, why=why))
                    continue
                flying.add(i)
                thread = threading.Thread(target=self._host, args=(i, jobs[i], inbox), daemon=True,
                                          name=f"concurdeploy-host-{jobs[i].spec.name}")
                self._threads.append(thread)
                thread.start()
            if clock.check():
                self._drain(inbox, jobs, flying, settle, on_output)
                why = DEADLINE_REASON if self._stop_reason == DEADLINE_REASON \
                    else f"{self._stop_reason}; host given up"
                self._give_up(jobs, flying, settle, why)
                break
            if self._stop_reason is not None and not flying:
                break  # nothing in flight; the rest was never started
            try:
                first = inbox.get(timeout=POLL_S)
            except queue.Empty:
                continue
            self._handle(first, jobs, flying, settle, on_output)
            self._drain(inbox, jobs, flying, settle, on_output)
        not_started(jobs, done, self._stop_reason)
        return [done[i] for i in range(len(jobs))]

    def _host(self, index: int, job: Job, inbox: queue.SimpleQueue) -> None:
        """A host's thread: run it, hand its output and result to the run loop."""
        def emit(stream, data) -> None:
            inbox.put(("output", index, (stream, data)))

        def track(conn) -> None:
            with self._lock:
                self._conns[index] = conn

        try:
            result = run_sendable(job, self._abort, emit, on_conn=track)
        finally:
            with self._lock:
                self._conns.pop(index, None)
        inbox.put(("done", index, result))

    @staticmethod
    def _handle(message, jobs: list[Job], flying: set[int], settle, on_output) -> None:
        kind, index, value = message
        if index not in flying:
            return  # a late message of a host given up
        if kind == "output":
            if on_output:
                on_output(jobs[index].spec.name, *value)
        else:
            flying.discard(index)
            settle(index, value)

    def _drain(self, inbox: queue.SimpleQueue, jobs, flying, settle, on_output, limit: int = 1000) -> None:
        """Handle up to ``limit`` messages already waiting (bounded, so a flood of output
        cannot starve the clock)."""
        for _ in range(limit):
            try:
                message = inbox.get_nowait()
            except queue.Empty:
                return
            self._handle(message, jobs, flying, settle, on_output)

    def _give_up(self, jobs: list[Job], flying: set[int], settle, why: str) -> None:
        """Hosts in flight are ``failed`` (``Deadline``) and their connections closed, so that
        their threads can take no further step on the host; the rest stay for ``not_started``."""
        with self._lock:
            conns = [c for i, c in self._conns.items() if i in flying]
        for conn in conns:
            t = getattr(conn, "transport", None)
            try:
                if t is not None:
                    t.close()  # whatever the host's thread waits on fails now
            except Exception:
                pass
        for i, job in enumerate(jobs):  # in flight: failed; never started: skipped (both Deadline)
            result = host_outcome(job, Outcome.GIVEN_UP, why=why, started=i in flying)
            settle(i, result, report=result.status.is_failure)
        flying.clear()

    def close(self) -> None:
        """Nothing to stop: the hosts' threads have ended (or were given up, their
        connections closed; a thread given up ends at its next step, waited for ≤ 2 s);
        the cached bastion connections are closed with the process's last open pool."""
        end = time.monotonic() + (0 if self._hard else 2)
        with self._lock:
            conns = list(self._conns.values())
        for conn in conns:  # given up but not yet ended: close again, bounded wait below
            t = getattr(conn, "transport", None)
            try:
                if t is not None:
                    t.close()
            except Exception:
                pass
        for thread in self._threads:
            thread.join(max(0.0, end - time.monotonic()))
        self._threads = [t for t in self._threads if t.is_alive()]
        self._release_bastions()

    def _release_bastions(self) -> None:
        """As a worker process's end closes the bastion connections it cached, the last open
        pool of this process closes them (a library caller's process outlives the run)."""
        with InlinePool._count_lock:
            if self._closed:
                return
            self._closed = True
            InlinePool._open_pools -= 1
            last = InlinePool._open_pools == 0
        bastions = sys.modules.get("concurdeploy.ssh.bastions")  # never imported: nothing cached
        if last and bastions is not None:
            bastions.close_bastions()
