"""The Dask executor's worker side: what runs inside a Dask worker process.

The controller (:mod:`.pool`) submits :func:`run_chunk` as one Dask task per chunk of hosts;
it runs the very same :func:`concurdeploy.executors.core.run_sendable` as the local pool, one
thread per host, and streams each result back as it finishes (``Worker.log_event``).
:func:`abort_run` and :func:`worker_facts` are run on every worker with ``Client.run``.
Nothing here is imported by the controller's run loop except these names, by reference.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import sys
import threading
from collections import OrderedDict
from dataclasses import replace

from concurdeploy.executors.core import Job, run_sendable, safe_str
from concurdeploy.records import HostResult, Status

__all__ = ["STALE", "abort_run", "run_chunk", "worker_facts"]

#: :func:`run_chunk`'s answer when it landed on another process than the one chosen.
STALE = "concurdeploy-stale-worker"

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


def abort_run(run_id: str) -> None:
    """Run on every worker by the controller (``Client.run``): in-flight hosts of that run
    stop at their next safe point."""
    _abort_flag(run_id).set()


def worker_facts(dask_worker=None) -> dict:
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
                                f"{safe_str(e)}); install the same concurdeploy on every worker")
    return run_sendable(job, abort, emit)


def run_chunk(meta: dict, items: list, contents: dict) -> dict | str:
    """The Dask task: run a chunk's hosts at once (one thread each, outside the worker's
    thread pool), streaming each result to the controller as it finishes.

    :returns: ``{index: HostResult}``, or ``STALE`` when this is not the worker process the
        controller chose (it was restarted at the same address): nothing is run then.
    """
    from concurrent.futures import ThreadPoolExecutor

    from distributed import get_worker, secede

    worker = get_worker()
    if meta.get("worker_id") and worker.id != meta["worker_id"]:
        return STALE
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
