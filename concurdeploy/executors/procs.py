"""The worker-process side of the local executor, and what ties a worker's life to the controller.

* :func:`worker_main`: a worker process's body — ``threads`` threads take ``(index, job)``
  from the worker's own task pipe and send ``("start" | "output" | "done", index, value)``
  back on its own result pipe. Each worker has its own two pipes (no lock shared between
  processes), so a worker killed at any moment — even mid-message — can only break its own
  pipes: the controller sees the end of that result pipe and the process's sentinel at once,
  and knows exactly which hosts the worker held (see :mod:`concurdeploy.executors.local`).
* :class:`AbortFlag`: the "stop at your next safe point" flag, one byte of shared memory
  with no lock (a ``multiprocessing.Event`` is a lock and a condition: a worker killed while
  holding it would block every other reader, and the controller's signal handler).
* :func:`die_with_parent`: a worker exits as soon as the controller is gone — a thread
  waits on the parent's sentinel (a pipe whose write end only the controller holds, so it
  reads end-of-file the moment the controller dies, even by ``kill -9``), and on Linux
  ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` covers the fork server (the worker's direct parent).
"""

from __future__ import annotations

import os
import threading
import time

__all__ = ["AbortFlag", "die_with_parent", "worker_main"]

#: ``prctl`` option number of ``PR_SET_PDEATHSIG`` (linux/prctl.h).
_PR_SET_PDEATHSIG = 1


class AbortFlag:
    """A process-shared boolean without a lock (``is_set``/``set``/``clear``/``wait``, as
    ``threading.Event``). Pass it to a worker at its creation (it wraps a
    ``multiprocessing.RawValue``, shared memory inherited through the process arguments).

    :param ctx: the multiprocessing context that creates the shared byte.
    """

    def __init__(self, ctx):
        self._value = ctx.RawValue("b", 0)

    def is_set(self) -> bool:
        return bool(self._value.value)

    def set(self) -> None:
        """Safe in a signal handler: one store to shared memory."""
        self._value.value = 1

    def clear(self) -> None:
        self._value.value = 0

    def wait(self, timeout: float | None = None) -> bool:
        """Return True once set, False after ``timeout`` seconds (None: 1 hour at most).
        Looks every 50 ms: a shared byte cannot be waited on."""
        end = time.monotonic() + (3600.0 if timeout is None else timeout)
        while not self.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(0.05, left))
        return True


def die_with_parent() -> None:
    """Make this worker process end with the controller (called first in :func:`worker_main`).

    1. Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` — SIGKILL when the direct parent (the
       fork server, which itself exits when the controller goes) dies; then, for the race
       where the parent died before the call, the parent sentinel below is checked at once.
    2. A daemon thread waits on ``multiprocessing.parent_process().sentinel`` (end-of-file
       once the controller is gone, whatever killed it) and then ends this process with
       ``os._exit(70)``: no clean-up of its own can be trusted without the controller.
    Never raises (a platform without either keeps the worker as before).
    """
    import multiprocessing
    import signal
    import sys

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    parent = multiprocessing.parent_process()
    sentinel = getattr(parent, "sentinel", None) if parent is not None else None
    if sentinel is None:
        return
    from multiprocessing.connection import wait

    if wait([sentinel], timeout=0):  # the controller is already gone (the race of step 1)
        os._exit(70)

    def watch() -> None:
        wait([sentinel])  # returns only at end-of-file: the controller has exited
        os._exit(70)

    threading.Thread(target=watch, daemon=True, name="concurdeploy-parent-watch").start()


def worker_main(tasks, results, threads: int, abort=None) -> None:
    """Worker process: ``threads`` threads take ``(index, pickled job)`` from ``tasks`` (this
    worker's own ``Connection``) until ``None`` or end-of-file, run each with
    :func:`~concurdeploy.executors.core.run_sendable` and send ``("start", index, pid)``,
    ``("output", index, (stream, data))`` and ``("done", index, HostResult)`` on ``results``.

    SIGINT is ignored (the controller decides what an interrupt does; a terminal's Ctrl-C
    reaches the whole process group); SIGTERM ends the worker (the controller's hard stop).
    """
    import logging
    import signal

    import pickle

    from concurdeploy.executors.core import run_sendable, safe_str
    from concurdeploy.records import HostResult, Status

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()
    # paramiko logs transport-thread errors (e.g. a banner timeout) that we already report
    # per host; without a handler Python would print them to stderr as tracebacks.
    logging.getLogger("paramiko").addHandler(logging.NullHandler())
    take, send_lock = threading.Lock(), threading.Lock()
    pid = os.getpid()

    def send(message) -> None:
        with send_lock:  # one message at a time on the pipe (threads of this process only)
            results.send(message)

    def loop() -> None:
        while True:
            with take:
                try:
                    item = tasks.recv()
                except (EOFError, OSError):
                    return
            if item is None:
                return
            index, blob = item
            try:
                job = pickle.loads(blob)  # here, not in recv: a job that cannot load is its host's failure
            except BaseException as e:
                send(("done", index, HostResult(f"#{index}", Status.FAILED, error_kind="JobNotLoadable",
                                                error=f"the worker cannot load this host's job "
                                                      f"({type(e).__name__}: {safe_str(e)})")))
                continue
            send(("start", index, pid))

            def emit(stream, data, index=index):
                send(("output", index, (stream, data)))
            send(("done", index, run_sendable(job, abort, emit)))

    pool = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
