"""The one run-loop policy shared by both executors (the local pool and Dask).

Everything that decides *what happens to a host* when something other than the host goes
wrong lives here, so the two back-ends cannot drift apart:

* :class:`Job` and :func:`run_host`: one host's work, run the same way in a local worker
  process and on a Dask worker; :func:`run_host` never raises (one host's failure is its own
  result) and :func:`run_sendable` also guarantees a result that can be pickled back.
* :class:`Executor`: the surface ``api.fan_out`` drives (``run``, ``stop``, ``abort``,
  ``stopped``, ``close``, context manager).
* The constants :data:`ABORT_GRACE_S`, :data:`DEADLINE_GRACE_S`, :data:`POLL_S` that
  :class:`concurdeploy.executors.clock.StopClock` applies (when a run stops waiting for hosts
  in flight).
* :func:`host_outcome`: the table of what a lost worker, a job or result that cannot cross
  the process boundary, a host never started or given up means for that host.
* :func:`make_executor`: the choice of back-end from plain values.

The signal handling of a run is :class:`concurdeploy.executors.interrupts.Interrupts`.
This module imports neither paramiko nor Dask (both are imported where used).
"""

from __future__ import annotations

import pickle
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from concurdeploy.records import HostResult, Status
from concurdeploy.ssh.specs import ConnectSpec

__all__ = [
    "ABORT_GRACE_S", "DEADLINE_GRACE_S", "DEADLINE_REASON", "DEFAULT_FORKS", "POLL_S",
    "Again", "Executor", "Job", "Outcome", "host_outcome", "make_executor",
    "not_started", "pickle_problem", "restart_budget", "run_host", "run_sendable", "safe_str",
]

#: Default number of hosts in flight at once (``--forks``).
DEFAULT_FORKS = 50
#: Seconds the controller's loop waits for a message before it looks at the clock and the
#: workers again (bounds how late a deadline, an abort or a dead worker is noticed).
POLL_S = 0.2
#: Seconds hosts in flight get, after an abort (SIGINT/SIGTERM, ``abort()``), to reach their
#: next safe point before the executor stops waiting (local: their workers are terminated).
ABORT_GRACE_S = 30.0
#: The same grace once the run's deadline has passed: the deadline is a promise to the
#: operator, and a host's next safe point is normally well under a second away (remote
#: commands watch the abort flag), so both executors allow 3 s (they were 3 s and 10 s).
DEADLINE_GRACE_S = 3.0
#: The ``stop`` reason (and ``Deadline`` error) when the run's deadline passed.
DEADLINE_REASON = "deadline exceeded"
#: Times a host whose job was handed to a worker that died before *beginning* it is sent
#: again (a resend, not a retry: nothing ran on the host).
MAX_RESENDS = 3


def restart_budget(workers: int) -> int:
    """How many worker deaths a run survives (the dead are replaced) before it gives up:
    ``3 * workers + 3``; past it the workers evidently cannot even start."""
    return 3 * max(1, workers) + 3


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


# ---------------------------------------------------------------------------- one host

def run_host(job: Job, abort=None, emit=None, on_conn=None) -> HostResult:
    """Connect, run the job's action, close. Never raises: every outcome is a ``HostResult``.

    ``HostError`` subclasses keep their status (``unreachable`` for
    :class:`HostUnreachable`, else ``failed``). The connection's own trouble is classified
    here, whatever the action raised (:mod:`~concurdeploy.executors.liveness`): a link that
    dropped (``EOFError``, a socket or paramiko error with the transport down, an operation's
    "failed" with no exit status while the transport is down) is ``unreachable``
    (``ConnectionLost``); a host that stops answering SSH keepalives for
    ``spec.connect_timeout`` seconds is ``unreachable`` (``HostFrozen``) and its transport is
    closed so the action stops at once — both with one sentence naming the step, never a
    library path. Any other exception becomes ``failed`` with its class name in
    ``error_kind`` (a bug, reported per host, not a crash). Fast transient connect failures
    (reset, dropped at the server's ``MaxStartups`` limit) are retried
    ``spec.connect_retries`` times with exponential backoff (0.5 s, 1 s, 2 s … plus jitter);
    authentication and host key failures, and failures that took half the connect timeout,
    never are.

    :param abort: an ``Event``-like object; once set, the action stops at its next safe
        point (see :class:`~concurdeploy.exceptions.Interrupted`).
    :param emit: ``callable(stream: str, data: bytes)`` for live output, set as
        ``conn.emit`` for actions that stream (``run``); None = no streaming.
    :param on_conn: ``callable(conn)`` called with the host's ``Connection`` before it opens
        (the in-controller executor closes it under a host it gives up); None = nothing.
    :returns: the host's ``HostResult`` with ``duration_s`` (seconds) and ``batch`` set.
    """
    from concurdeploy.exceptions import HostError
    from concurdeploy.executors.liveness import Watchdog, connection_lost, lost_sentence, plain, step_of
    from concurdeploy.operations import timing
    from concurdeploy.ssh.connection import (
        Connection,  # imported in the worker, never by the CLI
    )
    from concurdeploy.ssh.spill import notes

    start = time.monotonic()
    name = job.spec.name
    conn = Connection(job.spec, abort=abort)
    conn.emit = emit
    if on_conn is not None:
        on_conn(conn)
    watchdog = Watchdog(conn, job.spec.connect_timeout)
    opened = False
    try:
        with watchdog:
            try:
                _open_with_retries(conn, abort)
            finally:
                timing.record(conn, "connect", start, time.monotonic())
            opened = True
            result = timing.timed_action(job.action, conn, job.payload)
    except HostError as e:
        result = HostResult(name, Status(e.status), output=e.output, changes=_changes_of(e),
                            exit_status=getattr(e, "exit_status", None),
                            error_kind=type(e).__name__, error=e.message,
                            warnings=tuple(conn.warnings),
                            rolled_back=bool(getattr(e, "rolled_back", False)))
        if watchdog.frozen:  # what the action saw (a drop, a timeout) came from the host freezing
            result = replace(result, status=Status.UNREACHABLE, error_kind="HostFrozen",
                             error=lost_sentence(watchdog.frozen, step_of(e), job.spec))
        elif opened and result.status is Status.FAILED and result.exit_status is None and not conn.is_open():
            # an operation's own failure ("upload … failed: Socket is closed") with the link
            # gone under it: the link is the cause, the host's outcome unknown
            result = replace(result, status=Status.UNREACHABLE, error_kind="ConnectionLost",
                             error=lost_sentence("the connection dropped", step_of(e), job.spec))
    except Exception as e:
        if watchdog.frozen or connection_lost(e, conn):  # the link went: the host's outcome is unknown
            why = watchdog.frozen or f"the connection dropped ({plain(e)})"
            result = HostResult(name, Status.UNREACHABLE, warnings=tuple(conn.warnings), changes=_changes_of(e),
                                error_kind="HostFrozen" if watchdog.frozen else "ConnectionLost",
                                error=lost_sentence(why, step_of(e), job.spec))
        else:  # a bug in an action: this host fails, the others go on
            last = traceback.extract_tb(e.__traceback__)[-1:]
            where = f" at {last[0].filename}:{last[0].lineno}" if last else ""
            result = HostResult(name, Status.FAILED, error_kind=type(e).__name__,
                                error=f"{_first_line(e)}{where}")
    finally:
        conn.close()
    return replace(result, duration_s=round(time.monotonic() - start, 3), batch=job.batch,
                   timings=result.timings or timing.relative(conn, start),
                   warnings=result.warnings + notes(conn.spilled))


def _changes_of(e: BaseException) -> tuple:
    """The files an action had already replaced when it raised ``e``: it may set
    ``e.changes`` (a tuple of :class:`~concurdeploy.records.FileChange`) so that the report
    says so even when the connection dropped afterwards (e.g. during the reload)."""
    changes = getattr(e, "changes", None)
    return tuple(changes) if isinstance(changes, (tuple, list)) else ()


def _open_with_retries(conn, abort) -> None:
    """``conn.open()``, retrying a *fast* transient failure (accepted then reset at once: a
    server shedding load) ``spec.connect_retries`` times. A failure that took half the
    connect timeout or more is a host that hangs, not one that sheds load: never retried, so
    an unreachable verdict comes within the connect timeout, not a multiple of it."""
    import random

    from concurdeploy.exceptions import HostUnreachable

    for attempt in range(conn.spec.connect_retries + 1):
        began = time.monotonic()
        try:
            conn.open()
            return
        except HostUnreachable as e:
            last = attempt == conn.spec.connect_retries
            slow = time.monotonic() - began >= conn.spec.connect_timeout / 2
            if last or slow or not getattr(e, "transient", False) or (abort is not None and abort.is_set()):
                raise
            conn.close()
            time.sleep(0.5 * 2 ** attempt + random.uniform(0, 0.25))


def run_sendable(job: Job, abort=None, emit=None, on_conn=None) -> HostResult:
    """:func:`run_host`, guaranteed to produce a result a worker can send back (pickle).

    ``multiprocessing.Queue.put`` pickles in a background thread and only prints a
    pickling error, and a ``BaseException`` (``sys.exit()`` in an action) would end the
    worker thread: either way the controller would wait for that host forever. Both become
    that host's ``failed`` result (see :func:`host_outcome`).
    """
    try:
        result = run_host(job, abort, emit, on_conn)
    except BaseException as e:  # SystemExit from an action, or an unprintable exception
        return host_outcome(job, Outcome.CRASHED, why=f"{type(e).__name__} raised on this host: {safe_str(e)}",
                            kind=type(e).__name__)
    try:
        pickle.dumps(result)
    except Exception as e:
        return replace(host_outcome(job, Outcome.RESULT_UNSENDABLE, why=f"{type(e).__name__}: {safe_str(e)}"),
                       duration_s=result.duration_s)
    return result


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else ""


def safe_str(e: BaseException) -> str:
    """The first line of ``str(e)``; ``repr(type(e))`` when ``__str__`` itself fails."""
    try:
        return _first_line(e)
    except Exception:  # an exception whose __str__ itself fails
        return repr(type(e))


def pickle_problem(job: Job, pickler: Callable[[Any], bytes] = pickle.dumps) -> str | None:
    """Why ``job`` cannot be sent to a worker (``"TypeError: cannot pickle …"``), or None.

    Checked in the controller, where a queue would otherwise drop it silently.
    :param pickler: ``pickle.dumps`` (local pool) or ``cloudpickle.dumps`` (Dask).
    """
    try:
        pickler(job)
    except Exception as e:
        return f"{type(e).__name__}: {safe_str(e)}"
    return None


# ---------------------------------------------------------------------------- the policy

class Outcome(str, Enum):
    """Things that happen to a host outside its own action (see :func:`host_outcome`)."""

    WORKER_LOST = "worker_lost"              # its worker died or left before its result arrived
    NO_WORKER = "no_worker"                  # no live worker may take it (Dask placement)
    NOT_STARTED = "not_started"              # the run stopped before it was handed to a worker
    POOL_BROKEN = "pool_broken"              # never run: the executor's workers cannot start or keep dying
    GIVEN_UP = "given_up"                    # the grace after an abort / the deadline ran out
    JOB_UNSENDABLE = "job_unsendable"        # its job cannot be pickled to a worker
    RESULT_UNSENDABLE = "result_unsendable"  # its result cannot be pickled back
    RESULT_UNREADABLE = "result_unreadable"  # its result arrived but cannot be unpickled
    CRASHED = "crashed"                      # a BaseException escaped run_host (sys.exit)


class Again(str, Enum):
    """:func:`host_outcome`'s answer when the host is to be run again instead of reported."""

    RESEND = "resend"  # its job was never begun: send it again (not counted as a retry)
    RETRY = "retry"    # it had begun: run it again, one of ``--retries``


def host_outcome(job: Job, what: Outcome, *, why: str = "", started: bool = True, attempts: int = 0,
                 retries: int = 0, resends: int = 0, retryable: bool = True,
                 kind: str | None = None) -> HostResult | Again:
    """What ``what`` means for the host of ``job``: its final ``HostResult``, or :class:`Again`.

    The table (both executors call this; nothing else builds these results):

    ====================  ==============================================  ===============
    what                  result                                          error_kind
    ====================  ==============================================  ===============
    WORKER_LOST           not begun: ``RESEND`` (≤ ``MAX_RESENDS``, then  WorkerLost
                          ``failed``/``PoolBroken``: workers cannot start);
                          begun: ``RETRY`` while ``attempts < retries``,
                          else ``unreachable``
    NO_WORKER             ``unreachable``                                 NoWorker
    NOT_STARTED           ``skipped`` ("not started: <why>")              NotStarted
    POOL_BROKEN           ``failed`` ("not started: <why>"): never        PoolBroken
                          ``skipped``, so the run cannot look fine
    GIVEN_UP              in flight: ``failed``; queued: ``skipped``      Deadline (the
                                                                          deadline), else
                                                                          ``kind`` or
                                                                          Interrupted
    JOB_UNSENDABLE        ``failed``                                      JobNotPicklable
    RESULT_UNSENDABLE     ``failed``                                      ResultNotPicklable
    RESULT_UNREADABLE     ``failed``                                      ResultNotLoadable
    CRASHED               ``failed``                                      ``kind``
    ====================  ==============================================  ===============

    Why a lost worker makes the host ``unreachable`` (``WorkerLost``), not ``failed``: the
    host did nothing wrong and its outcome is unknown to the controller — exactly the
    "connection dropped" case of ``unreachable``. A push is atomic and checksum-idempotent,
    so the host is old-or-new and running it again is safe: ``--retries`` does that, and
    ``--retry-failed`` picks it up like any unreachable host. (The local pool used to say
    ``failed``/``WorkerDied``, Dask ``unreachable``/``WorkerLost``; this is the one rule now.)

    :param why: one line saying what happened (worker, exit code, reason).
    :param started: the host's job had begun (its action may have touched the host).
    :param attempts: retries already used for this host; ``retries``: the ``--retries`` limit.
    :param resends: resends already used for this host (jobs never begun).
    :param retryable: False when nothing can take the host again (e.g. the scheduler is gone).
    :param kind: ``error_kind`` for ``CRASHED`` (the exception's class name); for ``GIVEN_UP``
        other than the deadline (default ``Interrupted``: a signal, a hard stop, ``abort()``).
    :returns: a ``HostResult`` (``batch`` from the job) or :class:`Again`.
    """
    name, batch = job.spec.name, job.batch
    if what is Outcome.WORKER_LOST:
        if retryable and not started and resends < MAX_RESENDS:
            return Again.RESEND
        if retryable and not started:  # every worker given it died before beginning anything
            return HostResult(name, Status.FAILED, error_kind="PoolBroken",
                              error=f"not started: worker processes keep dying before beginning a host ({why})",
                              batch=batch)
        if retryable and attempts < retries:
            return Again.RETRY
        tried = f"; not retried (--retries {retries})" if retryable else ""
        return HostResult(name, Status.UNREACHABLE, error_kind="WorkerLost", error=f"{why}{tried}", batch=batch)
    if what is Outcome.NO_WORKER:
        return HostResult(name, Status.UNREACHABLE, error_kind="NoWorker", error=why, batch=batch)
    if what is Outcome.NOT_STARTED:
        return HostResult(name, Status.SKIPPED, error_kind="NotStarted", error=f"not started: {why}", batch=batch)
    if what is Outcome.POOL_BROKEN:
        return HostResult(name, Status.FAILED, error_kind="PoolBroken", error=f"not started: {why}", batch=batch)
    if what is Outcome.GIVEN_UP:
        given_up = "Deadline" if why == DEADLINE_REASON else kind or "Interrupted"
        return HostResult(name, Status.FAILED if started else Status.SKIPPED, error_kind=given_up,
                          error=why, batch=batch)
    if what is Outcome.JOB_UNSENDABLE:
        return HostResult(name, Status.FAILED, error_kind="JobNotPicklable", batch=batch,
                          error=f"cannot send this host's job to a worker process ({why}); the action "
                                f"must be a function defined at module level (e.g. in tasks.py) and its "
                                f"payload plain picklable values")
    if what is Outcome.RESULT_UNSENDABLE:
        return HostResult(name, Status.FAILED, error_kind="ResultNotPicklable", batch=batch,
                          error=f"the action's HostResult cannot be pickled ({why}); keep plain values "
                                f"in its data")
    if what is Outcome.RESULT_UNREADABLE:
        return HostResult(name, Status.FAILED, error_kind="ResultNotLoadable", batch=batch,
                          error=f"cannot read the worker's result ({why})")
    if what is Outcome.CRASHED:
        return HostResult(name, Status.FAILED, error_kind=kind or "WorkerError", error=why, batch=batch)
    raise ValueError(f"unknown outcome {what!r}")


def retry_note(attempt: int, why: str, worker: str = "worker") -> str:
    """The warning a retried host carries: ``retried on another <worker> (attempt N): <why>``."""
    return f"retried on another {worker} (attempt {attempt}): {why}"


def not_started(jobs: list[Job], done: dict[int, HostResult], reason: str | None) -> None:
    """Give every job without a result in ``done`` (index → result) its ``NotStarted`` result."""
    for i, job in enumerate(jobs):
        if i not in done:
            done[i] = host_outcome(job, Outcome.NOT_STARTED, why=str(reason))


# ---------------------------------------------------------------------------- the surface

class Executor:
    """What ``api.fan_out`` needs of an executor (:class:`~concurdeploy.executors.local.WorkerPool`,
    :class:`~concurdeploy.executors.dask.DaskPool`): ``run`` and ``close`` are theirs;
    stopping, aborting, the reason and the context manager are here."""

    _stop_reason: str | None = None
    _aborting: bool = False
    _hard: bool = False

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def run(self, jobs: Iterable[Job], on_result: Callable[[HostResult], None] | None = None,
            deadline: float | None = None, grace_s: float = ABORT_GRACE_S,
            on_output: Callable[[str, str, bytes], None] | None = None) -> list[HostResult]:
        """Run ``jobs``; return one result per job, in the order given (never raises for a host).

        :param on_result: called in the controller as each host finishes.
        :param deadline: ``time.monotonic()`` value; see :class:`~concurdeploy.executors.clock.StopClock`.
        :param grace_s: seconds in-flight hosts get after :meth:`abort` (see :class:`~concurdeploy.executors.clock.StopClock`).
        :param on_output: ``callable(host, stream, data: bytes)`` for streamed output.
        """
        raise NotImplementedError  # pragma: no cover - every executor defines it

    def stop(self, reason: str) -> None:
        """Start no more hosts in the current ``run``; those not started end ``skipped``.

        Hosts in flight finish normally. Safe to call from ``on_result`` or a signal handler.
        """
        if self._stop_reason is None:
            self._stop_reason = reason

    def abort(self, reason: str) -> None:
        """:meth:`stop`, and ask in-flight hosts to stop at their next safe point (safe in a
        signal handler; see :class:`~concurdeploy.executors.clock.StopClock` for how long they are waited for)."""
        self.stop(reason)
        self._aborting = True
        self._on_abort()

    def hard_stop(self, reason: str) -> None:
        """:meth:`abort` with no grace (the second Ctrl-C): the run loop gives every host in
        flight up at its next turn (≤ :data:`POLL_S` s) and the workers are killed; results
        are still returned (hosts in flight ``failed``, the rest ``skipped``), so the report
        is still written. Safe in a signal handler (it only sets flags)."""
        self._hard = True
        self.abort(reason)

    def _on_abort(self) -> None:
        """Back-end hook: tell the workers (must be safe in a signal handler)."""

    @property
    def stopped(self) -> str | None:
        """Why the executor was stopped, or None."""
        return self._stop_reason

    @property
    def aborting(self) -> bool:
        """True once :meth:`abort` was called."""
        return self._aborting

    @property
    def hard(self) -> bool:
        """True once :meth:`hard_stop` was called."""
        return self._hard

    def close(self) -> None:  # pragma: no cover - every executor defines it
        raise NotImplementedError


def make_executor(kind: str, *, forks: int, hosts: list, processes: int | None = None,
                  scheduler: str = "", retries: int = 0) -> Executor:
    """The executor for a run, from plain values (no invoke ``Context``).

    :param kind: ``"local"`` (a :class:`~concurdeploy.executors.local.WorkerPool`, or an
        :class:`~concurdeploy.executors.inline.InlinePool` for a few hosts) or ``"dask"``
        (a :class:`~concurdeploy.executors.dask.DaskPool`, connected before any host is
        touched); case and surrounding blanks are ignored, ``""`` means local.
    :param forks: hosts in flight at once (≥ 1).
    :param hosts: the run's hosts (objects with ``.name`` and ``.vars``; only read: the
        ``executor_pool`` and ``connection`` vars, and their count).
    :param processes: local worker processes; 0 or None = automatic: none (the hosts run in
        the controller's threads, :class:`~concurdeploy.executors.inline.InlinePool`) when
        ``hosts`` are at most :data:`~.inline.INLINE_MAX_HOSTS`, else one
        per CPU (at most ``forks``).
    :param scheduler: the Dask scheduler's address (``tcp://HOST:8786``); Dask only.
    :param retries: times a host whose worker died after beginning it is run again (both
        back-ends; see :func:`host_outcome`).
    :raises UsageError: unknown ``kind``; ``retries`` < 0; for Dask: extra not installed, no
        scheduler given or reachable, an ``executor_pool`` that is not a name or that no
        worker serves, sandbox hosts on a remote cluster.
    """
    from concurdeploy.exceptions import UsageError

    name = str(kind or "local").strip().lower()
    if retries < 0:
        raise UsageError(f"--retries must be 0 or more (got {retries})")
    if name == "local":
        from concurdeploy.executors.inline import InlinePool, fits_inline

        if fits_inline(name, processes, len(hosts)):  # no process started, no multiprocessing imported
            return InlinePool(forks=forks, hosts_hint=len(hosts) or None)
        from concurdeploy.executors.local import WorkerPool

        return WorkerPool(forks=forks, processes=processes or None, hosts_hint=len(hosts), retries=retries)
    if name != "dask":
        raise UsageError(f"--executor must be local or dask, not {name!r}")
    from concurdeploy.executors.dask import DaskPool

    pins = {h.name: h.vars["executor_pool"] for h in hosts if h.vars.get("executor_pool") not in (None, "")}
    bad = next((h for h, p in pins.items() if not isinstance(p, (str, int)) or isinstance(p, bool)), None)
    if bad:
        raise UsageError(f"host {bad}: executor_pool must be a name (e.g. eu), not {pins[bad]!r}")
    return DaskPool(str(scheduler or ""), forks=forks, hosts_hint=len(hosts), retries=int(retries or 0),
                    placement=pins, local_only=any(h.vars.get("connection", "ssh") == "sandbox" for h in hosts))
