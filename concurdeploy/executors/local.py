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
import pickle
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import replace
from multiprocessing.connection import wait

from concurdeploy.executors.clock import StopClock
from concurdeploy.executors.core import (
    ABORT_GRACE_S,
    DEADLINE_REASON,
    DEFAULT_FORKS,
    POLL_S,
    Again,
    Executor,
    Job,
    Outcome,
    host_outcome,
    not_started,
    restart_budget,
    retry_note,
    run_host,
    safe_str,
)
from concurdeploy.executors.procs import AbortFlag, worker_main
from concurdeploy.records import HostResult

__all__ = ["DEFAULT_FORKS", "Executor", "Job", "WorkerPool", "run_host", "run_jobs", "warm_up"]


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


class _Worker:
    """One worker process of the pool and its own two pipes; ``held``: index → pid once its
    "start" arrived, None while the job is sent but not begun."""

    def __init__(self, proc, tasks, results, threads: int):
        self.proc, self.tasks, self.results, self.threads = proc, tasks, results, threads
        self.held: dict[int, int | None] = {}
        self.dead = False

    @property
    def free(self) -> int:
        return 0 if self.dead else self.threads - len(self.held)

    def close_pipes(self) -> None:
        for conn in (self.tasks, self.results):
            try:
                conn.close()
            except OSError:
                pass


class WorkerPool(Executor):
    """A pool of worker processes, each driving several hosts at once with threads.

    Reusable across batches; use as a context manager so workers are always stopped::

        with WorkerPool(forks=50) as pool:
            results = pool.run(jobs, on_result=print)

    Each worker has its own task and result pipes, so the controller always knows which
    hosts a worker holds: a worker that dies at any moment (before or after beginning a
    host, mid-message) is seen at once through its sentinel and its hosts are resent (not
    begun), retried (``retries``) or reported ``unreachable`` (``WorkerLost``) by
    :func:`~concurdeploy.executors.core.host_outcome`; nothing any other worker does can
    block on it. Workers end with the controller (:func:`~.procs.die_with_parent`).

    :param forks: hosts in flight at once (``int`` ≥ 1).
    :param processes: worker processes; None = ``min(os.cpu_count(), forks)``.
    :param hosts_hint: the number of hosts to be run, to start no more workers than needed.
    :param retries: times a host whose worker process died while on it is run again in
        another worker (0 = report it ``unreachable``, ``WorkerLost``).
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
        self._abort = AbortFlag(self._ctx)
        self._workers: list[_Worker] = []
        self._stop_reason: str | None = None
        self._deaths = 0

    @property
    def pids(self) -> list[int]:
        """PIDs of the live worker processes (for tests and diagnostics)."""
        return [w.proc.pid for w in self._workers if not w.dead and w.proc.pid]

    def _start(self) -> None:
        while len([w for w in self._workers if not w.dead]) < self.processes and not self._hard:
            task_r, task_w = self._ctx.Pipe(duplex=False)
            result_r, result_w = self._ctx.Pipe(duplex=False)
            p = self._ctx.Process(target=worker_main, args=(task_r, result_w, self.threads, self._abort),
                                  daemon=True, name="concurdeploy-worker")
            p.start()
            task_r.close()  # the worker's ends: closed here, so its death reads as end-of-file
            result_w.close()
            self._workers.append(_Worker(p, task_w, result_r, self.threads))

    def _on_abort(self) -> None:
        self._abort.set()  # shared memory: every worker's hosts see it at their next safe point

    def run(self, jobs: Iterable[Job], on_result: Callable[[HostResult], None] | None = None,
            deadline: float | None = None, grace_s: float = ABORT_GRACE_S,
            on_output: Callable[[str, str, bytes], None] | None = None) -> list[HostResult]:
        """Run ``jobs``; return one result per job, in the order given.

        Jobs are handed to a worker with a free thread as capacity frees up (never more
        than ``forks`` in flight), so :meth:`stop` takes effect at once.

        :param on_result: called in the controller as each host finishes (for live output).
        :param deadline: ``time.monotonic()`` value after which unfinished hosts are given
            up: in flight → ``failed`` (deadline exceeded), never started → ``skipped``
            (see :class:`~concurdeploy.executors.clock.StopClock`).
        :param grace_s: after :meth:`abort`, seconds to wait for in-flight hosts to reach a
            safe point before their workers are terminated (0 after :meth:`hard_stop`).
        :param on_output: ``callable(host, stream, data)`` for output streamed by actions
            as it arrives (``stream`` is ``"stdout"`` or ``"stderr"``, ``data`` bytes).
        :returns: ``list[HostResult]`` aligned with ``jobs``.
        """
        jobs = list(jobs)
        if not jobs:
            return []
        self._start()
        run = _Run(jobs, on_result)
        run.on_output = on_output
        clock = StopClock(self, deadline, grace_s)
        while len(run.done) < len(jobs):  # bounded: each turn waits ≤ POLL_S; the clock ends it
            self._feed(run)
            if clock.check():
                why = DEADLINE_REASON if self._stop_reason == DEADLINE_REASON \
                    else f"{self._stop_reason}; worker terminated"
                self._give_up(run, why)
                break
            if self._stop_reason is not None and not any(w.held for w in self._workers):
                break  # nothing in flight; the rest was never started
            live = [w for w in self._workers if not w.dead]
            ready = wait([w.results for w in live] + [w.proc.sentinel for w in live], timeout=POLL_S)
            for w in live:
                if w.results in ready:
                    self._read(w, run)
            for w in live:
                if not w.dead and (w.proc.sentinel in ready or not w.proc.is_alive()):
                    self._read(w, run)  # what it sent before dying still counts
                    self._lost(w, run, f"died (exit code {w.proc.exitcode})")
            if any(w.dead for w in self._workers):
                self._replace_dead(run)
        not_started(jobs, run.done, self._stop_reason)
        return [run.done[i] for i in range(len(jobs))]

    def _feed(self, run: _Run) -> None:
        while self._stop_reason is None and run.pending:
            worker = max(self._workers, key=lambda w: w.free, default=None)
            if worker is None or worker.free <= 0:
                return
            index = run.pending.popleft()
            try:
                blob = pickle.dumps(run.jobs[index])
            except Exception as e:
                run.settle(index, host_outcome(run.jobs[index], Outcome.JOB_UNSENDABLE,
                                               why=f"{type(e).__name__}: {safe_str(e)}"))
                continue
            try:
                worker.tasks.send((index, blob))
            except OSError:  # the worker is gone: its death is handled by the loop
                run.pending.appendleft(index)
                self._lost(worker, run, "died (its task pipe is closed)")
                continue
            worker.held[index] = None

    def _read(self, worker: _Worker, run: _Run, limit: int = 1000) -> None:
        """Handle up to ``limit`` messages already in ``worker``'s result pipe (bounded, so a
        flood of output from one worker cannot starve the clock or the others)."""
        for _ in range(limit):
            try:
                if not worker.results.poll():
                    return
                kind, index, value = worker.results.recv()
            except (EOFError, OSError):  # its end is closed: it died (the sentinel says so too)
                return
            except Exception as e:  # a result that cannot be unpickled: that host's failure
                held = [i for i, pid in worker.held.items() if pid is not None]
                if len(held) == 1:
                    run.settle(held[0], host_outcome(run.jobs[held[0]], Outcome.RESULT_UNREADABLE,
                                                     why=f"{type(e).__name__}: {safe_str(e)}"))
                    worker.held.pop(held[0], None)
                continue
            if index not in worker.held:
                continue  # a late message of an attempt given up
            if kind == "start":
                worker.held[index] = value
            elif kind == "output":
                if run.on_output:
                    run.on_output(run.jobs[index].spec.name, *value)
            else:
                worker.held.pop(index, None)
                if value.error_kind == "JobNotLoadable":
                    value = replace(value, host=run.jobs[index].spec.name, batch=run.jobs[index].batch)
                run.settle(index, value)

    def _lost(self, worker: _Worker, run: _Run, what: str) -> None:
        """``worker`` is gone: each host it held is resent (never begun), retried or
        reported (:func:`~concurdeploy.executors.core.host_outcome`)."""
        if worker.dead:
            return
        worker.dead = True
        self._deaths += 1
        pid = worker.proc.pid
        for index, began in sorted(worker.held.items()):
            if index in run.done:
                continue
            job = run.jobs[index]
            why = f"worker process {pid} {what} while on this host"
            verdict = host_outcome(job, Outcome.WORKER_LOST, why=why, started=began is not None,
                                   attempts=run.attempts.get(index, 0), retries=self.retries,
                                   resends=run.resends.get(index, 0))
            if verdict is Again.RESEND:
                run.resends[index] = run.resends.get(index, 0) + 1
                run.pending.appendleft(index)
            elif verdict is Again.RETRY:
                run.attempts[index] = run.attempts.get(index, 0) + 1
                run.notes.setdefault(index, []).append(retry_note(run.attempts[index] + 1, why, "worker process"))
                run.pending.appendleft(index)
            else:
                run.settle(index, verdict)
        worker.held.clear()
        worker.close_pipes()
        worker.proc.join(0.5)

    def _replace_dead(self, run: _Run) -> None:
        self._workers = [w for w in self._workers if not w.dead]
        if self._deaths > restart_budget(self.processes):  # workers cannot even start: stop trying
            self.stop(f"worker processes keep dying ({self._deaths} so far)")
            while run.pending:
                index = run.pending.popleft()
                run.settle(index, host_outcome(run.jobs[index], Outcome.POOL_BROKEN, why=self._stop_reason),
                           report=False)
            if not self._workers:  # nobody left to finish what is in flight
                self._give_up(run, str(self._stop_reason), kind="PoolBroken")
            return
        if self._stop_reason is None or run.pending:
            self._start()  # replace the dead so queued hosts still run

    def _give_up(self, run: _Run, why: str, kind: str | None = None) -> None:
        for w in self._workers:  # results already sent must not be thrown away
            if not w.dead:
                self._read(w, run)
        started = {i for w in self._workers for i, pid in w.held.items() if pid is not None}
        self.terminate()
        for i, job in enumerate(run.jobs):
            if i not in run.done:
                result = host_outcome(job, Outcome.GIVEN_UP, why=why, started=i in started, kind=kind)
                run.settle(i, result, report=result.status.is_failure)

    def terminate(self) -> None:
        """Stop every worker now: SIGKILL after a hard stop, else SIGTERM then SIGKILL
        after 2 s (a worker's clean-up cannot be trusted once it is past its grace)."""
        for w in self._workers:
            if w.proc.is_alive():
                (w.proc.kill if self._hard else w.proc.terminate)()
        end = time.monotonic() + 2
        for w in self._workers:
            w.proc.join(max(0.0, end - time.monotonic()))
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(1)
            w.close_pipes()
        self._workers = []

    def close(self) -> None:
        """Ask workers to finish and exit; terminate any that do not within 5 s (at once
        after :meth:`hard_stop`, which a signal may call while this waits)."""
        for w in self._workers:
            for _ in range(w.threads):
                try:
                    w.tasks.send(None)
                except OSError:
                    break
        end = time.monotonic() + 5
        for w in self._workers:
            while not self._hard and w.proc.is_alive() and time.monotonic() < end:  # bounded by `end`
                w.proc.join(min(POLL_S, max(0.0, end - time.monotonic())))
        self.terminate()

class _Run:
    """One ``run()``'s bookkeeping: results so far, who started what, retries used."""

    def __init__(self, jobs: list[Job], on_result):
        self.jobs, self.on_result = jobs, on_result
        self.done: dict[int, HostResult] = {}
        self.pending: deque[int] = deque(range(len(jobs)))  # to be sent (resends and retries first)
        self.attempts: dict[int, int] = {}
        self.resends: dict[int, int] = {}
        self.notes: dict[int, list[str]] = {}
        self.on_output = None

    def settle(self, i: int, result: HostResult, report: bool = True) -> None:
        if i in self.done:
            return
        if self.notes.get(i):
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
