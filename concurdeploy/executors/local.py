"""The local executor: one action per host across a pool of worker processes on this machine.

Shape: ``forks`` is how many hosts are in flight at once. They are spread over
``processes`` worker processes (default: one per CPU, at most ``forks``), each running
``ceil(forks / processes)`` threads, so memory does not grow with the host count
(one paramiko process is ≈40 MiB; a thread costs almost nothing) while the CPU work of
key exchange and hashing still spreads over every core.

Work crosses the process boundary as :class:`~concurdeploy.executors.core.Job` (a picklable
:class:`~concurdeploy.ssh.specs.ConnectSpec`, a module-level action function and its payload)
and comes back as :class:`~concurdeploy.records.HostResult`. The worker connects inside
itself (a paramiko transport does not survive a fork). What a dead worker, an unpicklable
job or result, the deadline or an abort means for a host is decided by the one policy in
:mod:`concurdeploy.executors.core`, shared with the Dask executor.

Workers start with the ``forkserver`` method, chosen explicitly (Python 3.14 made it the
Linux default; ``fork`` is unsafe once the controller runs threads, e.g. the sandbox's
SSH servers), with paramiko preloaded once in the fork server.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable

from concurdeploy.executors.core import (
    ABORT_GRACE_S,
    DEADLINE_REASON,
    DEFAULT_FORKS,
    POLL_S,
    Again,
    Executor,
    Job,
    Outcome,
    StopClock,
    host_outcome,
    not_started,
    pickle_problem,
    restart_budget,
    retry_note,
    run_host,
    run_sendable,
)
from concurdeploy.records import HostResult

__all__ = ["DEFAULT_FORKS", "Executor", "Job", "WorkerPool", "run_host", "run_jobs", "warm_up"]


def _worker_main(tasks, results, threads: int, abort=None) -> None:
    """Worker process: ``threads`` threads pull ``(index, job)`` until a ``None`` arrives."""
    import logging
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the controller decides what an interrupt does
    # paramiko logs transport-thread errors (e.g. a banner timeout) that we already report
    # per host; without a handler Python would print them to stderr as tracebacks.
    logging.getLogger("paramiko").addHandler(logging.NullHandler())

    def loop():
        while True:
            item = tasks.get()
            if item is None:
                return
            index, job = item
            results.put(("start", index, os.getpid()))

            def emit(stream, data, index=index):
                results.put(("output", index, (stream, data)))
            results.put(("done", index, run_sendable(job, abort, emit)))

    pool = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


_PRELOAD = ["concurdeploy.ssh.connection", "concurdeploy.operations.push"]

#: A ``-W`` filter passed to the helper processes multiprocessing starts (they inherit
#: ``sys.warnoptions``): the resource tracker sometimes warns at exit that it is cleaning up
#: "leaked semaphore objects" (of the pool's queues; it does clean them up). Seen in about
#: 1 run in 40 and not yet explained (issue #14's lifecycle work); until then the warning
#: would land in the middle of an operator's output or a CI log, so it is silenced there only.
QUIET_TRACKER = "ignore:resource_tracker:UserWarning"


def _quiet_tracker() -> None:
    """Add :data:`QUIET_TRACKER` to ``sys.warnoptions`` before the tracker starts (idempotent)."""
    if QUIET_TRACKER not in sys.warnoptions:
        sys.warnoptions.append(QUIET_TRACKER)


def warm_up() -> None:
    """Start the fork server now, so that its imports (paramiko, ≈0.3 s of CPU) run while
    the controller is still loading the inventory and checking the service; the first
    :class:`WorkerPool` then forks its workers from it at once. Harmless to call twice."""
    from multiprocessing import forkserver

    _quiet_tracker()
    multiprocessing.get_context("forkserver").set_forkserver_preload(_PRELOAD)
    forkserver.ensure_running()


class WorkerPool(Executor):
    """A pool of worker processes, each driving several hosts at once with threads.

    Reusable across batches; use as a context manager so workers are always stopped::

        with WorkerPool(forks=50) as pool:
            results = pool.run(jobs, on_result=print)

    :param forks: hosts in flight at once (``int`` ≥ 1).
    :param processes: worker processes; None = ``min(os.cpu_count(), forks)``.
    :param hosts_hint: the number of hosts to be run, to start no more workers than needed.
    :param retries: times a host whose worker process died while on it is run again in
        another worker (0 = report it ``unreachable``, ``WorkerLost``); see
        :func:`~concurdeploy.executors.core.host_outcome`.
    """

    def __init__(self, forks: int = DEFAULT_FORKS, processes: int | None = None,
                 hosts_hint: int | None = None, retries: int = 0):
        self.forks = max(1, min(forks, hosts_hint or forks))
        self.processes = max(1, min(processes or os.cpu_count() or 1, self.forks))
        self.threads = math.ceil(self.forks / self.processes)
        self.retries = max(0, retries)
        _quiet_tracker()
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(_PRELOAD)
        self._tasks = self._ctx.Queue()
        self._results = self._ctx.Queue()
        self._abort = self._ctx.Event()
        self._procs: list = []
        self._stop_reason: str | None = None
        self._deaths = 0

    def _start(self) -> None:
        while len(self._procs) < self.processes:
            p = self._ctx.Process(target=_worker_main, args=(self._tasks, self._results, self.threads, self._abort),
                                  daemon=True, name="concurdeploy-worker")
            p.start()
            self._procs.append(p)

    def _on_abort(self) -> None:
        self._abort.set()  # a multiprocessing Event: every worker's hosts see it at their next safe point

    def run(self, jobs: Iterable[Job], on_result: Callable[[HostResult], None] | None = None,
            deadline: float | None = None, grace_s: float = ABORT_GRACE_S,
            on_output: Callable[[str, str, bytes], None] | None = None) -> list[HostResult]:
        """Run ``jobs``; return one result per job, in the order given.

        Jobs are handed out as capacity frees up (never more than ``forks`` in flight), so
        :meth:`stop` takes effect at once.

        :param on_result: called in the controller as each host finishes (for live output).
        :param deadline: ``time.monotonic()`` value after which unfinished hosts are given
            up: in flight → ``failed`` (deadline exceeded), never started → ``skipped``
            (see :class:`~concurdeploy.executors.core.StopClock`).
        :param grace_s: after :meth:`abort`, seconds to wait for in-flight hosts to reach a
            safe point before their workers are terminated.
        :param on_output: ``callable(host, stream, data)`` for output streamed by actions
            as it arrives (``stream`` is ``"stdout"`` or ``"stderr"``, ``data`` bytes).
        :returns: ``list[HostResult]`` aligned with ``jobs``.
        """
        jobs = list(jobs)
        if not jobs:
            return []
        self._start()
        run = _Run(jobs, on_result)
        fed = 0
        capacity = self.processes * self.threads
        clock = StopClock(self, deadline, grace_s)
        while len(run.done) < len(jobs):
            while self._stop_reason is None and fed < len(jobs) and fed - len(run.done) < capacity:
                problem = pickle_problem(jobs[fed])
                if problem is None:
                    self._tasks.put((fed, jobs[fed]))
                else:
                    run.settle(fed, host_outcome(jobs[fed], Outcome.JOB_UNSENDABLE, why=problem))
                fed += 1
            if clock.check():
                why = DEADLINE_REASON if self._stop_reason == DEADLINE_REASON \
                    else f"{self._stop_reason}; worker terminated"
                self._give_up(run, why)
                break
            if self._stop_reason is not None and len(run.done) >= fed:
                break  # nothing in flight; the rest was never started
            try:
                kind, index, value = self._results.get(timeout=POLL_S)
            except queue.Empty:
                self._reap_dead_workers(run)
                continue
            if kind == "start":
                run.started[index] = value
            elif kind == "output":
                if on_output:
                    on_output(jobs[index].spec.name, *value)
            elif run.started.get(index) is not None:  # a result of the host's current attempt
                run.settle(index, value)
        not_started(jobs, run.done, self._stop_reason)
        if fed > len(jobs) or self._stop_reason is not None:
            self._drain_queue()
        return [run.done[i] for i in range(len(jobs))]

    def _drain_queue(self) -> list[tuple[int, Job]]:
        """Take back every job still queued (no worker took it); return ``[(index, job)]``."""
        taken = []
        try:
            while True:
                item = self._tasks.get_nowait()
                if item is not None:
                    taken.append(item)
        except (queue.Empty, OSError, ValueError):
            pass
        return taken

    def _reap_dead_workers(self, run: _Run) -> None:
        dead = {p.pid: p.exitcode for p in self._procs if not p.is_alive()}
        if not dead:
            return
        for index, pid in list(run.started.items()):
            if pid in dead and index not in run.done:
                job = run.jobs[index]
                why = f"worker process {pid} died (exit code {dead[pid]}) while on this host"
                verdict = host_outcome(job, Outcome.WORKER_LOST, why=why, started=True,
                                       attempts=run.attempts.get(index, 0), retries=self.retries)
                if isinstance(verdict, Again):  # another worker takes it (RESEND cannot happen: it began)
                    run.attempts[index] = run.attempts.get(index, 0) + 1
                    run.notes.setdefault(index, []).append(retry_note(run.attempts[index] + 1, why,
                                                                      "worker process"))
                    run.started[index] = None  # a late message of the dead attempt is ignored
                    self._tasks.put((index, job))
                else:
                    run.settle(index, verdict)
        self._procs = [p for p in self._procs if p.is_alive()]
        self._deaths += len(dead)
        if self._deaths > restart_budget(self.processes):  # workers cannot even start: stop trying
            self.stop(f"worker processes keep dying ({self._deaths} so far; last exit code "
                      f"{list(dead.values())[-1]})")
            for index, job in self._drain_queue():  # handed out, never taken: not started
                run.settle(index, host_outcome(job, Outcome.POOL_BROKEN, why=self._stop_reason), report=False)
            if not self._procs:  # nobody left to finish what is in flight
                self._give_up(run, str(self._stop_reason))
            return
        self._start()  # replace the dead so queued hosts still run

    def _give_up(self, run: _Run, why: str) -> None:
        # Results already sent must not be thrown away: read what the queue holds first.
        try:
            while True:
                kind, index, value = self._results.get(timeout=0.05)
                if kind == "start":
                    run.started[index] = value
                elif kind == "done" and run.started.get(index) is not None:
                    run.settle(index, value)
        except (queue.Empty, OSError, ValueError, EOFError):
            pass
        self.terminate()
        self._tasks = self._ctx.Queue()  # a terminated worker may have left the queue locked
        self._results = self._ctx.Queue()
        for i, job in enumerate(run.jobs):
            if i not in run.done:
                result = host_outcome(job, Outcome.GIVEN_UP, why=why, started=i in run.started)
                run.settle(i, result, report=result.status.is_failure)

    def terminate(self) -> None:
        """Stop every worker now (SIGTERM, then SIGKILL after 2 s)."""
        for p in self._procs:
            if p.is_alive():
                p.terminate()
        for p in self._procs:
            p.join(2)
            if p.is_alive():
                p.kill()
                p.join(1)
        self._procs = []

    def close(self) -> None:
        """Ask workers to finish and exit; terminate any that do not within 5 s."""
        for _ in range(len(self._procs) * self.threads):
            self._tasks.put(None)
        end = time.monotonic() + 5
        for p in self._procs:
            p.join(max(0.0, end - time.monotonic()))
        self.terminate()
        for q_ in (self._tasks, self._results):
            q_.cancel_join_thread()  # never block interpreter exit on a pipe no one reads
            q_.close()


class _Run:
    """One ``run()``'s bookkeeping: results so far, who started what, retries used."""

    def __init__(self, jobs: list[Job], on_result):
        self.jobs, self.on_result = jobs, on_result
        self.done: dict[int, HostResult] = {}
        self.started: dict[int, int | None] = {}  # index -> pid of its worker (None: to be retried)
        self.attempts: dict[int, int] = {}
        self.notes: dict[int, list[str]] = {}

    def settle(self, i: int, result: HostResult, report: bool = True) -> None:
        if i in self.done:
            return
        if self.notes.get(i):
            from dataclasses import replace

            result = replace(result, warnings=tuple(result.warnings) + tuple(self.notes[i]))
        self.done[i] = result
        if report and self.on_result:
            self.on_result(result)


def run_jobs(jobs: list[Job], forks: int = DEFAULT_FORKS, processes: int | None = None,
             on_result: Callable[[HostResult], None] | None = None,
             deadline: float | None = None) -> list[HostResult]:
    """Run ``jobs`` on a fresh :class:`WorkerPool` and return their results in job order."""
    with WorkerPool(forks=forks, processes=processes, hosts_hint=len(jobs)) as pool:
        return pool.run(jobs, on_result=on_result, deadline=deadline)
