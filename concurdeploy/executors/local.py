"""Fan-out: run one action per host across a pool of worker processes.

Shape: ``forks`` is how many hosts are in flight at once. They are spread over
``processes`` worker processes (default: one per CPU, at most ``forks``), each running
``ceil(forks / processes)`` threads, so memory does not grow with the host count
(one paramiko process is ≈40 MiB; a thread costs almost nothing) while the CPU work of
key exchange and hashing still spreads over every core.

Work crosses the process boundary as :class:`Job` (a picklable
:class:`~concurdeploy.ssh.specs.ConnectSpec`, a module-level action function and its payload)
and comes back as :class:`~concurdeploy.records.HostResult`. The worker connects inside
itself (a paramiko transport does not survive a fork). :func:`run_host` never raises:
one host's failure, timeout or crash is that host's result, never the others'.

Workers start with the ``forkserver`` method, chosen explicitly (Python 3.14 made it the
Linux default; ``fork`` is unsafe once the controller runs threads, e.g. the sandbox's
SSH servers), with paramiko preloaded once in the fork server.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import pickle
import queue
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from concurdeploy.records import HostResult, Status
from concurdeploy.ssh.specs import ConnectSpec

__all__ = ["DEFAULT_FORKS", "Executor", "Job", "WorkerPool", "run_host", "run_jobs", "warm_up"]

#: Default number of hosts in flight at once (``--forks``).
DEFAULT_FORKS = 50
_POLL_S = 0.2


@dataclass(frozen=True)
class Job:
    """One host's work: connect with ``spec``, then call ``action(conn, payload)``.

    :param action: a module-level function ``(Connection, payload) -> HostResult`` (it is
        pickled by reference, so it must be importable in the worker, e.g. from ``tasks.py``).
    :param payload: any picklable value for the action.
    :param batch: 1-based batch number, copied into the result.
    """

    spec: ConnectSpec
    action: Callable[[Any, Any], HostResult]
    payload: Any = None
    batch: int | None = None


def run_host(job: Job, abort=None, emit=None) -> HostResult:
    """Connect, run the job's action, close. Never raises: every outcome is a ``HostResult``.

    ``HostError`` subclasses keep their status (``unreachable`` for
    :class:`HostUnreachable`, else ``failed``); any other exception becomes ``failed``
    with its class name in ``error_kind`` (a bug, reported per host, not a crash).
    Transient connect failures (reset, dropped at the server's ``MaxStartups`` limit) are
    retried ``spec.connect_retries`` times with exponential backoff (0.5 s, 1 s, 2 s …
    plus jitter); authentication and host key failures never are.

    :param abort: an ``Event``-like object; once set, the action stops at its next safe
        point (see :class:`~concurdeploy.exceptions.Interrupted`).
    :param emit: ``callable(stream: str, data: bytes)`` for live output, set as
        ``conn.emit`` for actions that stream (``run``); None = no streaming.
    """
    from concurdeploy.exceptions import HostError
    from concurdeploy.ssh.connection import (
        Connection,  # imported in the worker, never by the CLI
    )

    start = time.monotonic()
    name = job.spec.name
    conn = Connection(job.spec, abort=abort)
    conn.emit = emit
    try:
        _open_with_retries(conn, abort)
        result = job.action(conn, job.payload)
    except HostError as e:
        result = HostResult(name, Status(e.status), output=e.output,
                            exit_status=getattr(e, "exit_status", None),
                            error_kind=type(e).__name__, error=e.message,
                            warnings=tuple(conn.warnings),
                            rolled_back=bool(getattr(e, "rolled_back", False)))
    except Exception as e:  # a bug in an action: this host fails, the others go on
        last = traceback.extract_tb(e.__traceback__)[-1:]
        where = f" at {last[0].filename}:{last[0].lineno}" if last else ""
        result = HostResult(name, Status.FAILED, error_kind=type(e).__name__,
                            error=f"{_first_line(e)}{where}")
    finally:
        conn.close()
    return replace(result, duration_s=round(time.monotonic() - start, 3), batch=job.batch)


def _open_with_retries(conn, abort) -> None:
    import random

    from concurdeploy.exceptions import HostUnreachable

    for attempt in range(conn.spec.connect_retries + 1):
        try:
            conn.open()
            return
        except HostUnreachable as e:
            last = attempt == conn.spec.connect_retries
            if last or not getattr(e, "transient", False) or (abort is not None and abort.is_set()):
                raise
            conn.close()
            time.sleep(0.5 * 2 ** attempt + random.uniform(0, 0.25))


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else ""


def _safe_str(e: BaseException) -> str:
    try:
        return _first_line(e)
    except Exception:  # an exception whose __str__ itself fails
        return repr(type(e))


def _run_sendable(job: Job, abort=None, emit=None) -> HostResult:
    """:func:`run_host`, guaranteed to produce a result the worker can send back.

    ``multiprocessing.Queue.put`` pickles in a background thread and only prints a
    pickling error, and a ``BaseException`` (``sys.exit()`` in an action) would end the
    worker thread: either way the controller would wait for that host forever.
    """
    try:
        result = run_host(job, abort, emit)
    except BaseException as e:  # SystemExit from an action, or an unprintable exception
        result = HostResult(job.spec.name, Status.FAILED, error_kind=type(e).__name__,
                            error=f"{type(e).__name__} raised on this host: {_safe_str(e)}",
                            batch=job.batch)
    try:
        pickle.dumps(result)
    except Exception as e:
        result = HostResult(job.spec.name, Status.FAILED, error_kind="ResultNotPicklable",
                            error=f"the action's HostResult cannot be pickled ({type(e).__name__}: "
                                  f"{_safe_str(e)}); keep plain values in its data",
                            duration_s=result.duration_s, batch=job.batch)
    return result


def _pickle_problem(job: Job) -> str | None:
    """Why ``job`` cannot be sent to a worker, or None (checked in the controller, where
    ``Queue.put`` would otherwise drop it silently)."""
    try:
        pickle.dumps(job)
    except Exception as e:
        return (f"cannot send this host's job to a worker process ({type(e).__name__}: "
                f"{_safe_str(e)}); the action must be a function defined at module level "
                f"(e.g. in tasks.py) and its payload plain picklable values")
    return None


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
            results.put(("done", index, _run_sendable(job, abort, emit)))

    pool = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


_PRELOAD = ["concurdeploy.ssh.connection", "concurdeploy.operations.push"]


class Executor:
    """What ``commands.fan_out`` needs of an executor (:class:`WorkerPool`, ``DaskPool``):
    ``run`` and ``abort`` are theirs; stopping, the reason and the context manager are here."""

    _stop_reason: str | None = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def stop(self, reason: str) -> None:
        """Start no more hosts in the current ``run``; those not started end ``skipped``.

        Hosts in flight finish normally. Safe to call from ``on_result`` or a signal handler.
        """
        if self._stop_reason is None:
            self._stop_reason = reason

    @property
    def stopped(self) -> str | None:
        """Why the executor was stopped, or None."""
        return self._stop_reason

    def close(self) -> None:  # pragma: no cover - every executor defines it
        raise NotImplementedError


def warm_up() -> None:
    """Start the fork server now, so that its imports (paramiko, ≈0.3 s of CPU) run while
    the controller is still loading the inventory and checking the service; the first
    :class:`WorkerPool` then forks its workers from it at once. Harmless to call twice."""
    from multiprocessing import forkserver

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
    """

    def __init__(self, forks: int = DEFAULT_FORKS, processes: int | None = None,
                 hosts_hint: int | None = None):
        self.forks = max(1, min(forks, hosts_hint or forks))
        self.processes = max(1, min(processes or os.cpu_count() or 1, self.forks))
        self.threads = math.ceil(self.forks / self.processes)
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

    def abort(self, reason: str) -> None:
        """:meth:`stop`, and ask in-flight hosts to stop at their next safe point."""
        self.stop(reason)
        self._abort.set()

    def run(self, jobs: Iterable[Job], on_result: Callable[[HostResult], None] | None = None,
            deadline: float | None = None, grace_s: float = 30.0,
            on_output: Callable[[str, str, bytes], None] | None = None) -> list[HostResult]:
        """Run ``jobs``; return one result per job, in the order given.

        Jobs are handed out as capacity frees up (never more than ``forks`` in flight), so
        :meth:`stop` takes effect at once.

        :param on_result: called in the controller as each host finishes (for live output).
        :param deadline: ``time.monotonic()`` value after which unfinished hosts are given
            up: in flight → ``failed`` (deadline exceeded), never started → ``skipped``.
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
        done: dict[int, HostResult] = {}
        started: dict[int, int] = {}
        fed = 0
        capacity = self.processes * self.threads
        aborted_at = None
        while len(done) < len(jobs):
            while self._stop_reason is None and fed < len(jobs) and fed - len(done) < capacity:
                problem = _pickle_problem(jobs[fed])
                if problem is None:
                    self._tasks.put((fed, jobs[fed]))
                else:
                    done[fed] = HostResult(jobs[fed].spec.name, Status.FAILED,
                                           error_kind="JobNotPicklable", error=problem,
                                           batch=jobs[fed].batch)
                    if on_result:
                        on_result(done[fed])
                fed += 1
            if deadline is not None and time.monotonic() > deadline and not self._abort.is_set():
                # checked every turn: hosts finishing back to back must not defer it. Hosts in
                # flight stop at their next safe point (temporary files removed) within the grace.
                self.abort("deadline exceeded")
                grace_s = min(grace_s, 3.0)
            if self._stop_reason is not None and len(done) >= fed:
                break  # nothing in flight; the rest was never started
            if self._abort.is_set() and aborted_at is None:
                aborted_at = time.monotonic()
            try:
                kind, index, value = self._results.get(timeout=_POLL_S)
            except queue.Empty:
                now = time.monotonic()
                if aborted_at is not None and now - aborted_at > grace_s:
                    why = self._stop_reason if self._stop_reason == "deadline exceeded" \
                        else f"{self._stop_reason}; worker terminated"
                    self._give_up(jobs, done, started, why, on_result)
                    break
                self._reap_dead_workers(jobs, done, started, on_result)
                continue
            if kind == "start":
                started[index] = value
                continue
            if kind == "output":
                if on_output:
                    on_output(jobs[index].spec.name, *value)
                continue
            done[index] = value
            if on_result:
                on_result(value)
        for i in range(len(jobs)):
            if i not in done:
                done[i] = HostResult(jobs[i].spec.name, Status.SKIPPED, error_kind="NotStarted",
                                     error=f"not started: {self._stop_reason}", batch=jobs[i].batch)
        if fed > len(jobs) or self._stop_reason is not None:
            self._drain_queue()
        return [done[i] for i in range(len(jobs))]

    def _drain_queue(self) -> None:
        try:
            while True:
                self._tasks.get_nowait()
        except (queue.Empty, OSError, ValueError):
            pass

    def _reap_dead_workers(self, jobs, done, started, on_result) -> None:
        dead = {p.pid: p.exitcode for p in self._procs if not p.is_alive()}
        if not dead:
            return
        for index, pid in list(started.items()):
            if pid in dead and index not in done:
                job = jobs[index]
                done[index] = HostResult(job.spec.name, Status.FAILED, error_kind="WorkerDied",
                                         error=f"worker process died (exit code {dead[pid]}) "
                                               f"while on this host", batch=job.batch)
                if on_result:
                    on_result(done[index])
        self._procs = [p for p in self._procs if p.is_alive()]
        self._deaths += len(dead)
        if self._deaths > 3 * self.processes + 3:  # workers cannot even start: stop trying
            self.stop(f"worker processes keep dying ({self._deaths} so far; last exit code "
                      f"{list(dead.values())[-1]})")
            return
        self._start()  # replace the dead so queued hosts still run

    def _give_up(self, jobs, done, started, why: str, on_result=None) -> None:
        # Results already sent must not be thrown away: read what the queue holds first.
        try:
            while True:
                kind, index, value = self._results.get(timeout=0.05)
                if kind == "start":
                    started[index] = value
                elif kind == "done":
                    done[index] = value
        except (queue.Empty, OSError, ValueError, EOFError):
            pass
        self.terminate()
        self._tasks = self._ctx.Queue()  # a terminated worker may have left the queue locked
        self._results = self._ctx.Queue()
        for i, job in enumerate(jobs):
            if i not in done:
                status = Status.FAILED if i in started else Status.SKIPPED
                done[i] = HostResult(job.spec.name, status, error_kind="Deadline", error=why,
                                     batch=job.batch)
                if on_result and status is Status.FAILED:
                    on_result(done[i])

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


def run_jobs(jobs: list[Job], forks: int = DEFAULT_FORKS, processes: int | None = None,
             on_result: Callable[[HostResult], None] | None = None,
             deadline: float | None = None) -> list[HostResult]:
    """Run ``jobs`` on a fresh :class:`WorkerPool` and return their results in job order."""
    with WorkerPool(forks=forks, processes=processes, hosts_hint=len(jobs)) as pool:
        return pool.run(jobs, on_result=on_result, deadline=deadline)
