"""Fan-out over a Dask cluster: :class:`DaskPool`, the second executor beside the local
:class:`~concurdeploy.executors.local.WorkerPool` (``--executor dask --scheduler tcp://HOST:8786``).

It has the same surface as ``WorkerPool`` — ``run(jobs, on_result, deadline, grace_s,
on_output)`` returning one :class:`HostResult` per job in job order, ``stop``, ``abort``,
``stopped``, ``close``, context manager — so :func:`concurdeploy.api.fan_out` keeps
batches, ``--max-fail``, ``--fail-fast``, the deadline, interrupts, the recap and the reports
exactly as in a local run: a batch is one ``run()`` call, and ``run()`` only returns once every
host of it has a result.

How a run goes:

* **The controller keeps control.** It sends hosts to workers in *chunks* (one Dask task
  each, at most ``forks`` hosts in flight over the whole cluster), choosing the worker itself:
  the least loaded one that may take the host. Each task is pinned to that worker
  (``workers=[address], allow_other_workers=False``) so Dask never re-runs it elsewhere on
  its own: a re-run is decided here (``--retries``), and a task that lands on a *new* worker
  process at the same address refuses to run (worker id check).
* **On the worker**, the chunk task leaves the worker's thread pool (``secede``) and runs the
  very same :func:`concurdeploy.executors.local.run_host` for all its hosts at once, one thread each.
  Each host's result is streamed back as it finishes (``Worker.log_event`` on a topic named
  after the controller's client, which the scheduler forwards to it and drops when the
  client leaves); the task's own return value is the backstop.
* **Placement**: a host with the var ``executor_pool: eu`` goes only to workers started with
  the resource ``pool-eu`` (``dask worker tcp://… --resources pool-eu=1``) or named ``eu`` /
  ``eu-…`` (``--name eu-1``); hosts without it go to any worker.
* **Files** travel with the work: each distinct content (read from ``src`` here, or already
  rendered in memory) is scattered to the cluster once, under its SHA-256, and handed to
  chunks as a Dask dependency (each worker fetches it once); the worker checks it against
  the SHA-256 before the host is touched. **Secrets never travel**: a
  :class:`~concurdeploy.ssh.specs.ConnectSpec` carries only paths and the *names* of
  environment variables (``key_env``, ``password_env``, ``become_password_env``…), resolved
  on the worker from its own environment; a worker that lacks one reports that host
  ``failed`` (``CredentialsMissing``).
* **Faults**: when a worker dies or leaves, the hosts it had whose results never arrived are
  retried on another worker if ``retries`` allows (a push is atomic and checksum-idempotent,
  so a second attempt is safe), else reported ``unreachable`` (``WorkerLost``). Hosts of a
  chunk that had not begun yet are simply sent again. No host is lost or counted twice: the
  first result of a host's current attempt wins, every other message is ignored.
* **Interrupts and deadline**: an abort is broadcast to the workers (in-flight hosts stop at
  their next safe point, as locally); after ``grace_s`` or at the deadline the controller
  stops waiting and reports in-flight hosts ``failed``.

``dask`` and ``distributed`` are imported only here, only when this executor is chosen
(``pip install 'concurdeploy[dask]'``). Every worker needs concurdeploy installed (same
version) and, for a project's own actions, they are pickled by value.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import pickle
import queue
import sys
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from concurdeploy.exceptions import UsageError
from concurdeploy.executors.local import (
    DEFAULT_FORKS,
    Executor,
    Job,
    _run_sendable,
    _safe_str,
)
from concurdeploy.operations.jobs import PushJob
from concurdeploy.records import HostResult, Status

__all__ = ["INSTALL_HINT", "DaskPool", "import_distributed", "is_loopback", "serves"]

#: The one-line fix printed when the extra is missing.
INSTALL_HINT = "pip install 'concurdeploy[dask]'"
#: Most hosts in one Dask task.
CHUNK_MAX = 64
#: Seconds between looks at the cluster's workers while a run is in flight.
WORKER_POLL_S = 1.0
#: Times a host whose chunk never began is sent again (does not count as a retry).
MAX_RESENDS = 3
#: Seconds hosts wait for a worker that may take them (e.g. one its nanny is restarting)
#: before they are reported unreachable.
NO_WORKER_WAIT_S = 30.0
#: Seconds without the scheduler before in-flight hosts are given up.
SCHEDULER_LOST_S = 10.0
_POLL_S = 0.2
_STALE = "concurdeploy-stale-worker"


def import_distributed():
    """``distributed``, or :class:`UsageError` with the fix (exit code 2)."""
    try:
        import distributed
    except ImportError as e:
        raise UsageError(f"--executor dask needs Dask distributed, which is not installed "
                         f"({e}); fix: {INSTALL_HINT}") from None
    return distributed


def is_loopback(address: str) -> bool:
    """True when a Dask address (``tcp://127.0.0.1:8786``, ``inproc://…``) is on this machine's loopback."""
    import ipaddress

    if address.startswith("inproc://"):
        return True
    host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class _Worker:
    address: str
    name: str
    nthreads: int
    resources: dict
    id: str = ""
    pid: int = 0
    load: int = 0  # hosts of ours in flight there


def serves(worker: _Worker, pool: str | None) -> bool:
    """May ``worker`` take a host whose ``executor_pool`` is ``pool`` (None = any worker)?

    Yes when it has the resource ``pool-<pool>`` (``dask worker … --resources pool-eu=1``),
    or its name is ``<pool>`` or starts with ``<pool>-`` (``--name eu-1``).
    """
    if pool is None:
        return True
    return (worker.resources or {}).get(f"pool-{pool}", 0) > 0 or worker.name == pool \
        or worker.name.startswith(f"{pool}-")


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
        self._abort_requested = False
        self._inbox: queue.Queue = queue.Queue()
        self._scattered: dict[str, Any] = {}  # sha256 -> Future of the bytes
        self._read_cache: dict[str, bytes] = {}
        self._by_value: set = set()
        self._failing_since: float | None = None
        self.workers: dict[str, _Worker] = {}
        self._unusable: dict[str, str] = {}  # address -> why no host is sent there
        self._send_failed_at = 0.0
        self.client = None
        try:
            self.client = distributed.Client(scheduler, timeout=connect_timeout, set_as_default=False)
        except Exception as e:
            raise UsageError(f"cannot reach the Dask scheduler at {scheduler} within "
                             f"{connect_timeout:g} s ({type(e).__name__}: {_safe_str(e)}); no host "
                             f"was touched. Start one with 'dask scheduler' and workers with "
                             f"'dask worker {scheduler}'") from None
        try:
            self._preflight(local_only, connect_timeout)
            self._topic = self.client.id  # the scheduler drops this topic's events when we leave
            self.client.subscribe_topic(self._topic, self._on_event)
        except BaseException:
            self._close_client()
            raise

    # ------------------------------------------------------------------ set-up

    def _preflight(self, local_only: bool, timeout: float) -> None:
        try:
            self.client.wait_for_workers(1, timeout=timeout)
        except Exception:
            raise UsageError(f"the Dask scheduler at {self.scheduler} has no workers (waited "
                             f"{timeout:g} s); start some with 'dask worker {self.scheduler}'") from None
        self._refresh()
        if not self.workers:
            why = "; ".join(f"{a}: {w}" for a, w in list(self._unusable.items())[:3]) or "none answered"
            raise UsageError(f"no Dask worker at {self.scheduler} can run concurdeploy ({why}); "
                             f"install it on every worker: {INSTALL_HINT}")
        for pool in sorted(set(self.placement.values())):
            if not any(serves(w, pool) for w in self.workers.values()):
                names = ", ".join(f"{w.name} (resources {w.resources or '{}'})"
                                  for w in self.workers.values())
                hosts = sorted(h for h, p in self.placement.items() if p == pool)
                raise UsageError(f"executor_pool {pool!r} (hosts {', '.join(hosts[:5])}"
                                 f"{'…' if len(hosts) > 5 else ''}): no Dask worker serves it; "
                                 f"start one with 'dask worker {self.scheduler} --resources "
                                 f"pool-{pool}=1' (workers now: {names})")
        if local_only:
            far = [a for a in [self.scheduler, *self.workers] if not is_loopback(a)]
            if far:
                raise UsageError(f"connection: sandbox hosts listen on this machine's loopback, so "
                                 f"--executor dask can only reach them through a cluster that runs "
                                 f"here (e.g. a LocalCluster on 127.0.0.1); not on {', '.join(far[:3])}")

    def _refresh(self) -> list[_Worker]:
        """Look at the cluster's workers; return those that left since the last look."""
        live = self.client.nthreads(callback_timeout=10)
        gone = [self.workers.pop(a) for a in list(self.workers) if a not in live]
        new = [a for a in live if a not in self.workers and a not in self._unusable]
        if new:
            info = self.client.scheduler_info(n_workers=-1)["workers"]
            facts = _bounded(30, self.client.run, _worker_facts, workers=new, on_error="return")
            for a in new:
                f = facts.get(a)
                if a not in info or isinstance(f, (OSError, TimeoutError)) or f is None:
                    continue  # left, or not answering yet: look again next time
                if not isinstance(f, dict):
                    why = f"{type(f).__name__}: {_safe_str(f)}" if isinstance(f, BaseException) else repr(f)
                    self._unusable[a] = why
                    print(f"WARNING: Dask worker {a} cannot run concurdeploy ({why}); no host is sent "
                          f"there. Install it on every worker: {INSTALL_HINT}", file=sys.stderr)
                    continue
                self.workers[a] = _Worker(a, str(info[a].get("name", a)), int(info[a].get("nthreads") or 1),
                                          dict(info[a].get("resources") or {}), f["id"], f["pid"])
        if gone:
            self._scattered.clear()  # what lived on them is lost; scatter again on demand
        return gone

    def _on_event(self, event) -> None:  # runs in the client's event loop thread
        msg = event[1] if isinstance(event, tuple) and len(event) == 2 else None
        if isinstance(msg, dict) and "r" in msg:
            self._inbox.put(("event", msg))

    # ------------------------------------------------------------------ WorkerPool surface

    def abort(self, reason: str) -> None:
        """:meth:`stop`, and ask in-flight hosts to stop at their next safe point (safe in a
        signal handler: the workers are told from :meth:`run`'s loop)."""
        self.stop(reason)
        self._abort_requested = True

    def run(self, jobs: Iterable[Job], on_result: Callable[[HostResult], None] | None = None,
            deadline: float | None = None, grace_s: float = 30.0,
            on_output: Callable[[str, str, bytes], None] | None = None) -> list[HostResult]:
        """Run ``jobs`` on the cluster; one result per job, in the order given (see the module doc)."""
        jobs = list(jobs)
        if not jobs:
            return []
        st = _RunState(jobs, uuid.uuid4().hex[:12], on_result, on_output)
        for i, job in enumerate(jobs):
            st.pending.setdefault(self.placement.get(job.spec.name), deque()).append(i)
            if isinstance(job.payload, PushJob):
                st.holds[i] = {f.sha256 for f in job.payload.files}
                for key in st.holds[i]:
                    st.uses[key] = st.uses.get(key, 0) + 1
        chunks: dict[str, _Chunk] = {}
        abort_sent = False
        aborted_at = None
        last_look = time.monotonic()
        while len(st.done) < len(jobs):
            if self._abort_requested and not abort_sent:
                abort_sent = self._broadcast_abort(st.run_id)
                aborted_at = time.monotonic()
            if deadline is not None and time.monotonic() > deadline and not self._abort_requested:
                # as the local pool: in-flight hosts stop at their next safe point (temporary
                # files removed), for at most 10 s; hosts not sent yet are skipped
                self.abort("deadline exceeded")
                grace_s = min(grace_s, 10.0)
                continue
            self._feed(st, chunks)
            if self._stop_reason is not None and not chunks:
                break  # nothing in flight; the rest was never sent
            for kind, value in self._messages():
                if kind == "event" and value.get("r") == st.run_id:
                    self._on_message(st, chunks, value)
                elif kind == "future" and value in chunks:
                    self._on_future(st, chunks, chunks[value])
            now = time.monotonic()
            if aborted_at is not None and now - aborted_at > grace_s:
                self._give_up(st, chunks, f"{self._stop_reason}; gave up waiting for its Dask worker")
                break
            if (chunks or st.starved) and now - last_look > WORKER_POLL_S:
                last_look = now
                self._look_at_workers(st, chunks)
        for i, job in enumerate(jobs):
            if i not in st.done:
                st.done[i] = HostResult(job.spec.name, Status.SKIPPED, error_kind="NotStarted",
                                        error=f"not started: {self._stop_reason}", batch=job.batch)
                self._unhold(st, i)
        self._cancel([c.future for c in chunks.values()])
        return [st.done[i] for i in range(len(jobs))]

    def _messages(self, most: int = 1000) -> list:
        """What arrived: wait up to ``_POLL_S`` for the first message, then take what is there."""
        try:
            out = [self._inbox.get(timeout=_POLL_S)]
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
                self._scattered.pop(key, None)

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
                    self._settle(st, i, HostResult(st.jobs[i].spec.name, Status.UNREACHABLE,
                                                   error_kind="NoWorker", error=why,
                                                   batch=st.jobs[i].batch))
                continue
            worker = min(eligible, key=lambda w: (w.load / max(1, w.nthreads), w.load))
            size = max(1, min(CHUNK_MAX, free, len(q), math.ceil(min(free, len(q)) / len(eligible))))
            self._submit(st, chunks, worker, [q.popleft() for _ in range(size)])

    def _submit(self, st: _RunState, chunks: dict, worker: _Worker, indices: list) -> None:
        import cloudpickle

        token = uuid.uuid4().hex[:12]
        items, new, needed, sent = [], {}, set(), []
        for i in indices:
            job = st.jobs[i]
            try:
                stripped, keys, fresh = self._strip(job)
                self._pickle_by_value(job.action)
                blob = cloudpickle.dumps((stripped, keys))
            except OSError as e:
                self._settle(st, i, HostResult(job.spec.name, Status.FAILED, error_kind="SourceUnreadable",
                                               error=f"cannot read a source file: {_safe_str(e)}",
                                               batch=job.batch))
                continue
            except Exception as e:
                self._settle(st, i, HostResult(
                    job.spec.name, Status.FAILED, error_kind="JobNotPicklable", batch=job.batch,
                    error=f"cannot send this host's job to a Dask worker ({type(e).__name__}: "
                          f"{_safe_str(e)}); the action must be a module-level function and its "
                          f"payload plain picklable values"))
                continue
            new.update(fresh)
            needed.update(keys or ())
            items.append((i, job.spec.name, job.batch, blob))
            sent.append(i)
        if not items:
            return
        meta = {"run": st.run_id, "token": token, "topic": self._topic, "worker_id": worker.id}
        try:
            contents = self._scatter(new, needed, worker)
            future = self.client.submit(_run_chunk, meta, items, contents, key=f"concurdeploy-{st.run_id}-{token}",
                                        workers=[worker.address], allow_other_workers=False, pure=False)
        except Exception as e:  # the worker or the scheduler went away: nothing was started
            self._send_failed_at = time.monotonic()
            self._scattered.clear()
            why = f"could not send to the Dask cluster ({type(e).__name__}: {_safe_str(e)})"
            for i in reversed(sent):
                if st.resends.get(i, 0) < MAX_RESENDS:
                    st.resends[i] = st.resends.get(i, 0) + 1
                    st.pending.setdefault(self.placement.get(st.jobs[i].spec.name), deque()).appendleft(i)
                else:
                    self._settle(st, i, HostResult(st.jobs[i].spec.name, Status.UNREACHABLE,
                                                   error_kind="WorkerLost", error=why, batch=st.jobs[i].batch))
            return
        chunk = _Chunk(token, future, worker, sent)
        chunks[token] = chunk
        worker.load += len(sent)
        st.inflight += len(sent)
        for i in sent:
            st.owner[i] = token
            st.where[i] = worker
        future.add_done_callback(lambda _f, t=token: self._inbox.put(("future", t)))

    def _strip(self, job: Job):
        """``job`` without file contents (they travel once each, scattered), the content key
        of each of its files, and the contents not scattered yet (key → bytes)."""
        p = job.payload
        if not isinstance(p, PushJob):
            return job, None, {}
        files, keys, new = [], [], {}
        for f in p.files:
            if f.sha256 not in self._scattered and f.sha256 not in new:
                new[f.sha256] = f.content if f.content is not None else self._read(f.src)
            files.append(replace(f, content=None))
            keys.append(f.sha256)
        return replace(job, payload=replace(p, files=tuple(files))), tuple(keys), new

    def _read(self, path: str) -> bytes:
        if path not in self._read_cache:
            with open(path, "rb") as fh:
                self._read_cache[path] = fh.read()
        return self._read_cache[path]

    def _scatter(self, new: dict, needed: set, worker: _Worker) -> dict:
        """Scatter the contents not on the cluster yet (to the chunk's worker; others fetch
        them from there); return key → Future for every content the chunk needs."""
        if new:  # a fresh Dask key each time: a released one may still be being forgotten
            names = {k: f"concurdeploy-content-{k[:16]}-{uuid.uuid4().hex[:8]}" for k in new}
            futures = self.client.scatter({names[k]: v for k, v in new.items()}, workers=[worker.address],
                                          timeout=60)
            for k in new:
                self._scattered[k] = futures[names[k]]
        return {k: self._scattered[k] for k in needed}

    def _pickle_by_value(self, action) -> None:
        """A project's own actions (``tasks.py``) cannot be imported on the workers: ship them by value."""
        name = getattr(action, "__module__", None)
        if not name or name in self._by_value or name.split(".")[0] == "concurdeploy":
            return
        module = sys.modules.get(name)
        path = getattr(module, "__file__", "") or ""
        if module is not None and "site-packages" not in path and "dist-packages" not in path:
            import cloudpickle

            cloudpickle.register_pickle_by_value(module)
        self._by_value.add(name)

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
                result = HostResult(st.jobs[i].spec.name, Status.FAILED, error_kind="ResultNotLoadable",
                                    error=f"cannot read the worker's result ({type(e).__name__}: "
                                          f"{_safe_str(e)})", batch=st.jobs[i].batch)
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
            why = "it ran on a new process of that worker" if value == _STALE else \
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
                self._settle(st, i, HostResult(
                    st.jobs[i].spec.name, Status.FAILED, error_kind=type(exc).__name__,
                    error=f"the Dask worker {chunk.worker.name} could not run this host's job: "
                          f"{_safe_str(exc)}", batch=st.jobs[i].batch))
        elif status in ("cancelled", "lost"):
            self._lost(st, chunks, chunk, f"Dask worker {chunk.worker.name} ({chunk.worker.address}) "
                                          f"lost the task ({status})")

    def _look_at_workers(self, st: _RunState, chunks: dict) -> None:
        try:
            gone = self._refresh()
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
        self._scattered.clear()  # the chunk's contents may have lived on that worker
        for i in chunk.indices:
            if st.owner.get(i) != chunk.token:
                continue
            self._free_slot(st, i)
            job = st.jobs[i]
            pool = self.placement.get(job.spec.name)
            if retry and not chunk.begun and st.resends.get(i, 0) < MAX_RESENDS:
                st.resends[i] = st.resends.get(i, 0) + 1
                st.pending.setdefault(pool, deque()).appendleft(i)
            elif retry and st.attempts.get(i, 0) < self.retries:
                st.attempts[i] = st.attempts.get(i, 0) + 1
                st.notes.setdefault(i, []).append(f"retried on another Dask worker "
                                                  f"(attempt {st.attempts[i] + 1}): {why}")
                st.pending.setdefault(pool, deque()).appendleft(i)
            else:
                tried = f"; not retried (--retries {self.retries})" if retry else ""
                self._settle(st, i, HostResult(job.spec.name, Status.UNREACHABLE, error_kind="WorkerLost",
                                               error=f"{why}{tried}", batch=job.batch))
        for q in st.pending.values():  # keep inventory order within each pool
            if len(q) > 1:
                ordered = sorted(q)
                q.clear()
                q.extend(ordered)

    def _give_up(self, st: _RunState, chunks: dict, why: str) -> None:
        """Stop waiting: in-flight hosts ``failed`` (reported), the others ``skipped``."""
        self._broadcast_abort(st.run_id)
        for chunk in list(chunks.values()):
            self._drop(chunks, chunk)
            self._cancel([chunk.future])
        for i, job in enumerate(st.jobs):
            if i in st.done:
                continue
            if i in st.started:
                self._settle(st, i, HostResult(job.spec.name, Status.FAILED, error_kind="Deadline",
                                               error=why, batch=job.batch))
            else:
                self._free_slot(st, i)
                st.done[i] = HostResult(job.spec.name, Status.SKIPPED, error_kind="Deadline", error=why,
                                        batch=job.batch)
                self._unhold(st, i)

    def _broadcast_abort(self, run_id: str) -> bool:
        try:
            _bounded(10, self.client.run, _abort_run, run_id, on_error="ignore")
            return True
        except Exception:
            return False

    def _cancel(self, futures: list) -> None:
        if futures:
            try:
                _bounded(10, self.client.cancel, futures)
            except Exception:
                pass

    def close(self) -> None:
        """Leave the cluster (scattered contents are released; the workers keep running)."""
        self._close_client()

    def _close_client(self) -> None:
        client, self.client = self.client, None
        if client is None:
            return
        self._scattered.clear()
        try:
            client.unsubscribe_topic(client.id)
        except Exception:
            pass
        try:
            client.close(timeout=5)
        except Exception:
            pass


def _bounded(seconds: float, fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, but give up after ``seconds`` (TimeoutError): a call to a
    scheduler that vanished must not hang the controller's loop (deadline, interrupts)."""
    box: dict = {}

    def call() -> None:
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as e:  # handed to the caller
            box["error"] = e

    t = threading.Thread(target=call, daemon=True, name="concurdeploy-dask-call")
    t.start()
    t.join(seconds)
    if t.is_alive():
        raise TimeoutError(f"no answer from the Dask cluster within {seconds:g} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


# ---------------------------------------------------------------------- worker side

#: CPython before 3.11.9 / 3.12.3 can deadlock when ``sys._current_frames()`` runs while threads
#: are created (gh-106883); a Dask worker's statistical profiler calls it every 10 ms while a
#: task runs, and a chunk runs for long and creates many threads (hosts, paramiko transports).
_PROFILER_DEADLOCKS = sys.version_info < (3, 11, 9) or (3, 12) <= sys.version_info < (3, 12, 3)
_ABORTS: OrderedDict[str, threading.Event] = OrderedDict()
_VERIFIED: OrderedDict[tuple, bool] = OrderedDict()
_LOCK = threading.Lock()


def _stop_profiler(worker) -> None:
    """Turn off the worker's task profiler (dashboard only) where it can deadlock the process
    (see ``_PROFILER_DEADLOCKS``; Dask already turns off its event-loop profiler on 3.11).
    Done on the worker's event loop, waited for (at most 5 s) before any thread is started."""
    pc = getattr(worker, "periodic_callbacks", {}).get("profile")
    if not _PROFILER_DEADLOCKS or pc is None or not pc.is_running():
        return
    done = threading.Event()

    def stop() -> None:
        try:
            pc.stop()
        finally:
            done.set()

    worker.loop.add_callback(stop)
    done.wait(5)


def _abort_flag(run_id: str) -> threading.Event:
    with _LOCK:
        flag = _ABORTS.get(run_id)
        if flag is None:
            flag = _ABORTS[run_id] = threading.Event()
            while len(_ABORTS) > 256:
                _ABORTS.popitem(last=False)
        return flag


def _abort_run(run_id: str) -> None:
    """Run on every worker by the controller (``Client.run``): in-flight hosts of that run
    stop at their next safe point."""
    _abort_flag(run_id).set()


def _worker_facts(dask_worker=None) -> dict:
    """Run on each new worker: its unique id (a restarted worker gets a new one) and pid; also
    proves that concurdeploy imports there, and turns off the profiler where it can deadlock."""
    from concurdeploy import __version__

    pc = dask_worker.periodic_callbacks.get("profile")
    if _PROFILER_DEADLOCKS and pc is not None:  # Client.run calls us on the worker's event loop
        pc.stop()
    return {"id": dask_worker.id, "pid": os.getpid(), "version": __version__}


class _ContentMismatch(Exception):
    pass


def _with_contents(job: Job, keys, contents: dict) -> Job:
    """Rebuild the job's files with their contents, each checked against its SHA-256."""
    if not keys:
        return job
    files = []
    for f, key in zip(job.payload.files, keys):
        data = contents.get(key)
        if data is None:
            raise _ContentMismatch(f"{f.dest}: the content of {f.src} did not reach the Dask worker")
        mark = (key, id(data))
        with _LOCK:
            known = _VERIFIED.get(mark)
        if known is None:
            known = hashlib.sha256(data).hexdigest() == f.sha256
            with _LOCK:
                _VERIFIED[mark] = known
                while len(_VERIFIED) > 1024:
                    _VERIFIED.popitem(last=False)
        if not known:
            raise _ContentMismatch(f"{f.dest}: the content received for {f.src} does not match its "
                                   f"SHA-256 {f.sha256[:12]}… (changed since it was checked?); host "
                                   f"not touched")
        files.append(replace(f, content=data))
    return replace(job, payload=replace(job.payload, files=tuple(files)))


def _run_item(name: str, batch, blob: bytes, contents: dict, abort, emit) -> HostResult:
    try:
        job, keys = pickle.loads(blob)
        job = _with_contents(job, keys, contents)
    except _ContentMismatch as e:
        return HostResult(name, Status.FAILED, error_kind="UploadCorrupted", error=str(e), batch=batch)
    except Exception as e:
        return HostResult(name, Status.FAILED, error_kind="JobNotLoadable", batch=batch,
                          error=f"the Dask worker cannot load this host's job ({type(e).__name__}: "
                                f"{_safe_str(e)}); install the same concurdeploy on every worker")
    return _run_sendable(job, abort, emit)


def _run_chunk(meta: dict, items: list, contents: dict) -> dict | str:
    """The Dask task: run a chunk's hosts at once (one thread each, outside the worker's
    thread pool), streaming each result to the controller as it finishes.

    :returns: ``{index: HostResult}``, or ``_STALE`` when this is not the worker process the
        controller chose (it was restarted at the same address): nothing is run then.
    """
    from concurrent.futures import ThreadPoolExecutor

    from distributed import get_worker, secede

    worker = get_worker()
    if meta.get("worker_id") and worker.id != meta["worker_id"]:
        return _STALE
    secede()  # many hosts wait on the network: free the worker's slot for other chunks
    _stop_profiler(worker)
    logging.getLogger("paramiko").addHandler(logging.NullHandler())
    run, token, topic = meta["run"], meta["token"], meta["topic"]

    def send(msg: dict) -> None:
        msg.update(r=run, c=token)
        try:
            worker.log_event(topic, msg)
        except Exception:  # the chunk's return value still carries every result
            pass

    send({"k": "begin"})
    abort = _abort_flag(run)
    where = {"name": str(worker.name), "address": worker.address, "pid": os.getpid()}

    def one(item):
        index, name, batch, blob = item

        def emit(stream, data, index=index):
            send({"k": "out", "i": index, "s": stream, "d": bytes(data)})

        result = _run_item(name, batch, blob, contents, abort, emit)
        result = replace(result, data={**dict(result.data or {}), "dask_worker": where})
        try:
            send({"k": "done", "i": index, "v": pickle.dumps(result)})
        except Exception:
            pass
        return index, result

    with ThreadPoolExecutor(max_workers=max(1, len(items)), thread_name_prefix="concurdeploy-host") as ex:
        return dict(ex.map(one, items))
