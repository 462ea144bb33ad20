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
  very same :func:`concurdeploy.executors.core.run_host` for all its hosts at once, one thread each.
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
  first result of a host's current attempt wins, every other message is ignored. (The rule is
  :func:`concurdeploy.executors.core.host_outcome`, the same as the local pool's.)
* **Interrupts and deadline**: an abort is broadcast to the workers (in-flight hosts stop at
  their next safe point, as locally); after the grace of
  :class:`~concurdeploy.executors.clock.StopClock` the controller stops waiting and reports
  in-flight hosts ``failed``.

Modules: :mod:`.pool` (the controller: :class:`DaskPool`), :mod:`.cluster` (workers,
placement, the scheduler connection), :mod:`.shipping` (jobs and file contents sent to the
cluster), :mod:`.worker` (what runs in a Dask worker).

``dask`` and ``distributed`` are imported only when this executor is used, never by
``import concurdeploy.executors.dask`` itself: without the extra, :class:`DaskPool` raises
:class:`~concurdeploy.exceptions.UsageError` with the fix (``pip install 'concurdeploy[dask]'``).
Every worker needs concurdeploy installed (same version) and, for a project's own actions,
they are pickled by value.
"""

from __future__ import annotations

from concurdeploy.executors.dask.cluster import INSTALL_HINT, _Worker, import_distributed, is_loopback, serves
from concurdeploy.executors.dask.pool import CHUNK_MAX, NO_WORKER_WAIT_S, SCHEDULER_LOST_S, WORKER_POLL_S, DaskPool

__all__ = ["CHUNK_MAX", "INSTALL_HINT", "NO_WORKER_WAIT_S", "SCHEDULER_LOST_S", "WORKER_POLL_S", "DaskPool",
           "_Worker", "import_distributed", "is_loopback", "serves"]
