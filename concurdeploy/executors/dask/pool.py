"""The Dask executor's controller side: :class:`DaskPool` (see the package doc for how a run goes).

It keeps control of a run: it chooses the worker of each chunk of hosts, pins the Dask task
there, settles each host from the results streamed back, and applies the one run-loop policy
of :mod:`concurdeploy.executors.core` (deadline, abort grace, lost workers, retries) exactly
as the local pool does.
"""

from __future__ import annotations

import logging
import math
import pickle
import queue
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from concurdeploy.exceptions import UsageError
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
    retry_note,
    safe_str,
)
from concurdeploy.executors.dask.cluster import Membership, _Worker, bounded, import_distributed, serves
from concurdeploy.executors.dask.shipping import Contents, content_keys
from concurdeploy.executors.dask.worker import STALE, abort_run, run_chunk
from concurdeploy.records import HostResult, Status

__all__ = ["CHUNK_MAX", "NO_WORKER_WAIT_S", "SCHEDULER_LOST_S", "WORKER_POLL_S", "DaskPool"]

#: Most hosts in one Dask task.
CHUNK_MAX = 64
#: Seconds between looks at the cluster's workers while a run is in flight.
WORKER_POLL_S = 1.0
#: Seconds hosts wait for a worker that may take them (e.g. one its nanny is restarting)
#: before they are reported unreachable.
NO_WORKER_WAIT_S = 30.0
#: Seconds without the scheduler before in-flight hosts are given up.
SCHEDULER_LOST_S = 10.0


@dataclass
class _Chunk:
    token: str
    future: Any
    worker: _Worker
    indices: list
    begun: bool = False


@dataclass
class _RunState:
    jobs: list
    run_id: str
    on_result: Callable | None
    on_output: Callable | None
    done: dict = field(default_factory=dict)
    owner: dict = field(default_factory=dict)      # index in flight -> token of its chunk
    where: dict = field(default_factory=dict)      # index in flight -> its _Worker
    inflight: int = 0
    started: set = field(default_factory=set)      # indices whose chunk began
    attempts: dict = field(default_factory=dict)   # index -> retries used
    resends: dict = field(default_factory=dict)    # index -> resends of a chunk that never began
    notes: dict = field(default_factory=dict)      # index -> warnings to add to its result
    holds: dict = field(default_factory=dict)      # index -> content keys it needs (until settled)
    uses: dict = field(default_factory=dict)       # content key -> unsettled hosts needing it
    pending: dict = field(default_factory=dict)    # pool -> deque of indices not sent
    starved: dict = field(default_factory=dict)    # pool -> since when no worker may take it


class DaskPool(Executor):
    """Run :class:`~concurdeploy.executors.local.Job` s on a Dask cluster; same surface as ``WorkerPool``.

    Connecting happens here, before anything is sent: an unreachable scheduler, a cluster
    without workers, a worker without concurdeploy, an ``executor_pool`` no worker serves →
    :class:`UsageError` (exit code 2, no host touched).

    :param scheduler: the scheduler's address, e.g. ``tcp://10.0.0.5:8786``.
    :param forks: hosts in flight at once over the whole cluster.
    :param hosts_hint: the number of hosts to be run (caps ``forks``).
    :param retries: times a host whose worker died before its result arrived is tried again
        on another worker (0 = report it ``unreachable``).
    :param placement: host name → ``executor_pool`` (see :func:`serves`).
    :param local_only: every worker must run on this machine (``connection: sandbox`` hosts,
        whose SSH servers listen on the controller's loopback).
    :param connect_timeout: seconds to reach the scheduler and to wait for a first worker.
    :param quiet: silence ``distributed``'s own log lines (lost workers are reported per host).
    :raises UsageError: see above; also no ``scheduler`` given, ``retries`` < 0, the extra
        not installed (:func:`~.cluster.import_distributed`).
    """

    def __init__(self, scheduler: str, forks: int = DEFAULT_FORKS, hosts_hint: int | None = None,
                 retries: int = 0, placement: dict | None = None, local_only: bool = False,
                 connect_timeout: float = 5.0, quiet: bool = True):
        distributed = import_distributed()
        if not scheduler:
            raise UsageError("--executor dask needs the scheduler's address: --scheduler "
                             "tcp://HOST:8786 (or CONCURDEPLOY_SCHEDULER, or 'scheduler' in "
                             "concurdeploy.yaml)")
        if retries < 0:
            raise UsageError(f"--retries must be 0 or more (got {retries})")
        if quiet:  # we report lost workers per host; distributed's own log lines are noise here
            logging.getLogger("distributed").setLevel(logging.CRITICAL)
        self.scheduler = scheduler
        self.forks = max(1, min(forks, hosts_hint or forks))
        self.retries = retries
        self.placement = {k: str(v) for k, v in (placement or {}).items()}
        self._stop_reason: str | None = None
        self._inbox: queue.Queue = queue.Queue()
        self._failing_since: float | None = None
        self._send_failed_at = 0.0
        self.client = None
        try:
            self.client = distributed.Client(scheduler, timeout=connect_timeout, set_as_default=False)
        except Exception as e:
            raise UsageError(f"cannot reach the Dask scheduler at {scheduler} within "
                             f"{connect_timeout:g} s ({type(e).__name__}: {safe_str(e)}); no host "
                             f"was touched. Start one with 'dask scheduler' and workers with "
                             f"'dask worker {scheduler}'") from None
        self._contents = Contents(self.client)
        self._members = Membership(self.client, scheduler)
        self.workers: dict[str, _Worker] = self._members.workers  # the same dict, kept up to date
        try:
            self._members.preflight(self.placement, local_only, connect_timeout)
            self._topic = self.client.id  # the scheduler drops this topic's events when we leave
            self.client.subscribe_topic(self._topic, self._on_event)
        except BaseException:
            self._close_client()
            raise

    def _on_event(self, event) -> None:  # runs in the client's event loop thread
        msg = event[1] if isinstance(event, tuple) and len(event) == 2 else None
        if isinstance(msg, dict) and "r" in msg:
            self._inbox.put(("event", msg))

    # ------------------------------------------------------------------ WorkerPool surface

    # abort(): Executor's; the workers are told from run()'s loop (a signal handler must not
    # talk to the scheduler).

    def run(self, jobs: Iterable[Job], on_result: Callable[[HostResult], None] | None = None,
            deadline: float | None = None, grace_s: float = ABORT_GRACE_S,
            on_output: Callable[[str, str, bytes], None] | None = None) -> list[HostResult]:
        """Run ``jobs`` on the cluster; one result per job, in the order given (see the package doc).

        The parameters and the deadline/abort rules are :meth:`Executor.run`'s and
        :class:`~concurdeploy.executors.clock.StopClock`'s, as for the local pool.
        """
        jobs = list(jobs)
        if not jobs:
            return []
        st = _RunState(jobs, uuid.uuid4().hex[:12], on_result, on_output)
        for i, job in enumerate(jobs):
            st.pending.setdefault(self.placement.get(job.spec.name), deque()).append(i)
            keys = content_keys(job)
            if keys:
                st.holds[i] = keys
                for key in keys:
                    st.uses[key] = st.uses.get(key, 0) + 1
        chunks: dict[str, _Chunk] = {}
        abort_sent = False
        clock = StopClock(self, deadline, grace_s)
        last_look = time.monotonic()
        while len(st.done) < len(jobs):
            clock.check()  # past the deadline: abort (the same rule and grace as the local pool)
            if self.aborting and not abort_sent:
                abort_sent = self._broadcast_abort(st.run_id)
            self._feed(st, chunks)
            if self._stop_reason is not None and not chunks:
                break  # nothing in flight; the rest was never sent
            for kind, value in self._messages():
                if kind == "event" and value.get("r") == st.run_id:
                    self._on_message(st, chunks, value)
                elif kind == "future" and value in chunks:
                    self._on_future(st, chunks, chunks[value])
            if clock.check():
                why = DEADLINE_REASON if self._stop_reason == DEADLINE_REASON else \
                    f"{self._stop_reason}; gave up waiting for its Dask worker"
                self._give_up(st, chunks, why)
                break
            now = time.monotonic()
            if (chunks or st.starved) and now - last_look > WORKER_POLL_S:
                last_look = now
                self._look_at_workers(st, chunks)
        for i, job in enumerate(jobs):
            if i not in st.done:
                st.done[i] = host_outcome(job, Outcome.NOT_STARTED, why=str(self._stop_reason))
                self._unhold(st, i)
        self._cancel([c.future for c in chunks.values()])
        return [st.done[i] for i in range(len(jobs))]

    def _messages(self, most: int = 1000) -> list:
        """What arrived: wait up to ``POLL_S`` for the first message, then take what is there."""
        try:
            out = [self._inbox.get(timeout=POLL_S)]
        except queue.Empty:
            return []
        while len(out) < most:
            try:
                out.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        return out

    # ------------------------------------------------------------------ the loop's parts

    def _settle(self, st: _RunState, i: int, result: HostResult) -> None:
        if i in st.done:
            return
        if st.notes.get(i):
            result = replace(result, warnings=tuple(result.warnings) + tuple(st.notes[i]))
        st.done[i] = result
        self._free_slot(st, i)
        self._unhold(st, i)
        if st.on_result:
            st.on_result(result)

    @staticmethod
    def _free_slot(st: _RunState, i: int) -> None:
        """Host ``i`` is no longer in flight (settled, or to be sent again)."""
        if st.owner.pop(i, None) is not None:
            st.inflight -= 1
            st.where.pop(i).load -= 1

    def _unhold(self, st: _RunState, i: int) -> None:
        for key in st.holds.pop(i, ()):
            st.uses[key] -= 1
            if st.uses[key] <= 0:  # no host of this batch still needs it: release it
                self._contents.release(key)

    def _feed(self, st: _RunState, chunks: dict) -> None:
        """Send chunks while fewer than ``forks`` hosts are in flight."""
        waits: set = set()  # pools with no worker right now, still waiting for one
        while self._stop_reason is None:
            waiting = {p: q for p, q in st.pending.items() if q and p not in waits}
            if not waiting:
                return
            free = self.forks - st.inflight
            total = sum(len(q) for q in waiting.values())
            batch_min = max(1, min(CHUNK_MAX, self.forks // (4 * max(1, len(self.workers)))))
            if free <= 0 or free < min(batch_min, total) or time.monotonic() - self._send_failed_at < 1.0:
                return
            pool = min(waiting, key=lambda p: waiting[p][0])  # keep inventory order across pools
            q = waiting[pool]
            eligible = [w for w in self.workers.values() if serves(w, pool)]
            if eligible:
                st.starved.pop(pool, None)
            elif time.monotonic() - st.starved.setdefault(pool, time.monotonic()) < NO_WORKER_WAIT_S:
                waits.add(pool)
                continue
            else:
                why = "no Dask worker is left" if pool is None else \
                    f"no live Dask worker serves executor_pool {pool!r}"
                why += f" (waited {NO_WORKER_WAIT_S:g} s for one)"
                st.starved.pop(pool, None)
                while q:
                    i = q.popleft()
                    self._settle(st, i, host_outcome(st.jobs[i], Outcome.NO_WORKER, why=why))
                continue
            worker = min(eligible, key=lambda w: (w.load / max(1, w.nthreads), w.load))
            size = max(1, min(CHUNK_MAX, free, len(q), math.ceil(min(free, len(q)) / len(eligible))))
            self._submit(st, chunks, worker, [q.popleft() for _ in range(size)])

    def _submit(self, st: _RunState, chunks: dict, worker: _Worker, indices: list) -> None:
        token = uuid.uuid4().hex[:12]
        items, new, needed, sent = [], {}, set(), []
        for i in indices:
            job = st.jobs[i]
            try:
                blob, keys, fresh = self._contents.pack(job)
            except OSError as e:
                self._settle(st, i, HostResult(job.spec.name, Status.FAILED, error_kind="SourceUnreadable",
                                               error=f"cannot read a source file: {safe_str(e)}",
                                               batch=job.batch))
                continue
            except Exception as e:
                self._settle(st, i, host_outcome(job, Outcome.JOB_UNSENDABLE,
                                                 why=f"{type(e).__name__}: {safe_str(e)}"))
                continue
            new.update(fresh)
            needed.update(keys or ())
            items.append((i, job.spec.name, job.batch, blob))
            sent.append(i)
        if not items:
            return
        meta = {"run": st.run_id, "token": token, "topic": self._topic, "worker_id": worker.id}
        try:
            contents = self._contents.scatter(new, needed, worker.address)
            future = self.client.submit(run_chunk, meta, items, contents, key=f"concurdeploy-{st.run_id}-{token}",
                                        workers=[worker.address], allow_other_workers=False, pure=False)
        except Exception as e:  # the worker or the scheduler went away: nothing was started
            self._send_failed_at = time.monotonic()
            self._contents.forget()
            why = f"could not send to the Dask cluster ({type(e).__name__}: {safe_str(e)})"
            for i in reversed(sent):  # nothing began: sent again, as the policy says
                self._again_or_settle(st, i, why, begun=False)
            return
        chunk = _Chunk(token, future, worker, sent)
        chunks[token] = chunk
        worker.load += len(sent)
        st.inflight += len(sent)
        for i in sent:
            st.owner[i] = token
            st.where[i] = worker
        future.add_done_callback(lambda _f, t=token: self._inbox.put(("future", t)))

    def _on_message(self, st: _RunState, chunks: dict, msg: dict) -> None:
        chunk = chunks.get(msg.get("c"))
        if chunk is None:
            return  # from a chunk given up or already settled
        kind = msg.get("k")
        if kind == "begin":
            chunk.begun = True
            st.started.update(chunk.indices)
            return
        i = msg.get("i")
        if st.owner.get(i) != chunk.token:
            return  # settled already, or sent again since
        if kind == "out" and st.on_output:
            st.on_output(st.jobs[i].spec.name, msg.get("s", "stdout"), msg.get("d", b""))
        elif kind == "done":
            try:
                result = pickle.loads(msg["v"])
            except Exception as e:
                result = host_outcome(st.jobs[i], Outcome.RESULT_UNREADABLE,
                                      why=f"{type(e).__name__}: {safe_str(e)}")
            self._settle(st, i, result)
            self._finish_if_settled(st, chunks, chunk)

    def _finish_if_settled(self, st: _RunState, chunks: dict, chunk: _Chunk) -> None:
        if all(st.owner.get(i) != chunk.token for i in chunk.indices):
            self._drop(chunks, chunk)

    def _drop(self, chunks: dict, chunk: _Chunk) -> None:
        if chunks.pop(chunk.token, None) is not None:
            try:
                chunk.future.release()
            except Exception:
                pass

    def _on_future(self, st: _RunState, chunks: dict, chunk: _Chunk) -> None:
        fut = chunk.future
        missing = [i for i in chunk.indices if st.owner.get(i) == chunk.token]
        if not missing:
            self._drop(chunks, chunk)
            return
        status = fut.status
        if status == "finished":
            try:
                value = fut.result(timeout=30)
            except Exception as e:
                value = e
            if isinstance(value, dict):
                chunk.begun = True
                for i in missing:
                    if i in value:
                        self._settle(st, i, value[i])
                self._finish_if_settled(st, chunks, chunk)
                if chunk.token not in chunks:
                    return
            why = "it ran on a new process of that worker" if value == STALE else \
                f"its result could not be fetched ({type(value).__name__})"
            self._lost(st, chunks, chunk, f"Dask worker {chunk.worker.name} ({chunk.worker.address}): {why}")
        elif status == "error":
            exc = fut.exception(timeout=10)
            if type(exc).__name__ in ("KilledWorker", "FutureCancelledError", "CancelledError"):
                self._lost(st, chunks, chunk, f"Dask worker {chunk.worker.name} ({chunk.worker.address}) "
                                              f"lost the task ({type(exc).__name__})")
                return
            self._drop(chunks, chunk)
            for i in missing:
                self._settle(st, i, host_outcome(
                    st.jobs[i], Outcome.CRASHED, kind=type(exc).__name__,
                    why=f"the Dask worker {chunk.worker.name} could not run this host's job: {safe_str(exc)}"))
        elif status in ("cancelled", "lost"):
            self._lost(st, chunks, chunk, f"Dask worker {chunk.worker.name} ({chunk.worker.address}) "
                                          f"lost the task ({status})")

    def _look_at_workers(self, st: _RunState, chunks: dict) -> None:
        try:
            gone = self._members.refresh()
            self._failing_since = None
        except Exception as e:  # the scheduler is gone? then nothing in flight can report
            now = time.monotonic()
            self._failing_since = self._failing_since or now
            if now - self._failing_since < SCHEDULER_LOST_S:
                return
            self.stop(f"lost the Dask scheduler {self.scheduler} ({type(e).__name__})")
            for chunk in list(chunks.values()):
                self._lost(st, chunks, chunk, f"lost the Dask scheduler {self.scheduler}", retry=False)
            return
        if gone:
            self._contents.forget()  # what lived on them is lost; scatter again on demand
        for w in gone:
            for chunk in [c for c in chunks.values() if c.worker.address == w.address]:
                self._lost(st, chunks, chunk, f"Dask worker {w.name} ({w.address}, pid {w.pid}) died "
                                              f"or left before this host's result arrived")
        for chunk in list(chunks.values()):  # a pinned task whose worker is gone never runs
            if chunk.future.done() and chunk.token in chunks:
                self._on_future(st, chunks, chunk)

    def _lost(self, st: _RunState, chunks: dict, chunk: _Chunk, why: str, retry: bool = True) -> None:
        """The hosts of ``chunk`` whose result never arrived: send again, retry, or unreachable."""
        self._drop(chunks, chunk)
        self._cancel([chunk.future])
        self._contents.forget()  # the chunk's contents may have lived on that worker
        for i in chunk.indices:
            if st.owner.get(i) != chunk.token:
                continue
            self._free_slot(st, i)
            self._again_or_settle(st, i, why, begun=chunk.begun, retryable=retry)
        for q in st.pending.values():  # keep inventory order within each pool
            if len(q) > 1:
                ordered = sorted(q)
                q.clear()
                q.extend(ordered)

    def _again_or_settle(self, st: _RunState, i: int, why: str, begun: bool, retryable: bool = True) -> None:
        """Host ``i`` lost its worker: queue it again (resend or retry) or settle it, as
        :func:`~concurdeploy.executors.core.host_outcome` decides."""
        verdict = host_outcome(st.jobs[i], Outcome.WORKER_LOST, why=why, started=begun,
                               attempts=st.attempts.get(i, 0), retries=self.retries,
                               resends=st.resends.get(i, 0), retryable=retryable)
        if isinstance(verdict, HostResult):
            self._settle(st, i, verdict)
            return
        if verdict is Again.RESEND:
            st.resends[i] = st.resends.get(i, 0) + 1
        else:
            st.attempts[i] = st.attempts.get(i, 0) + 1
            st.notes.setdefault(i, []).append(retry_note(st.attempts[i] + 1, why, "Dask worker"))
        st.pending.setdefault(self.placement.get(st.jobs[i].spec.name), deque()).appendleft(i)

    def _give_up(self, st: _RunState, chunks: dict, why: str) -> None:
        """Stop waiting: in-flight hosts ``failed`` (reported), the others ``skipped``."""
        self._broadcast_abort(st.run_id)
        for chunk in list(chunks.values()):
            self._drop(chunks, chunk)
            self._cancel([chunk.future])
        for i, job in enumerate(st.jobs):
            if i in st.done:
                continue
            result = host_outcome(job, Outcome.GIVEN_UP, why=why, started=i in st.started)
            if result.status is Status.FAILED:
                self._settle(st, i, result)
            else:
                self._free_slot(st, i)
                st.done[i] = result
                self._unhold(st, i)

    def _broadcast_abort(self, run_id: str) -> bool:
        try:
            bounded(10, self.client.run, abort_run, run_id, on_error="ignore")
            return True
        except Exception:
            return False

    def _cancel(self, futures: list) -> None:
        if futures:
            try:
                bounded(10, self.client.cancel, futures)
            except Exception:
                pass

    def close(self) -> None:
        """Leave the cluster (scattered contents are released; the workers keep running)."""
        self._close_client()

    def _close_client(self) -> None:
        client, self.client = self.client, None
        if client is None:
            return
        self._contents.forget()
        try:
            client.unsubscribe_topic(client.id)
        except Exception:
            pass
        try:
            client.close(timeout=5)
        except Exception:
            pass


