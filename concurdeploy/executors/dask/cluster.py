"""The Dask executor's view of the cluster: reaching it, its workers, where a host may go.

:class:`Membership` keeps the live workers that can run concurdeploy (checked once per new
worker process with :func:`~.worker.worker_facts`) and says which left since the last look;
:func:`serves` is the placement rule; :func:`bounded` keeps a call to a vanished scheduler
from hanging the controller's loop. ``distributed`` itself is imported only by
:func:`import_distributed`.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass

from concurdeploy.exceptions import UsageError
from concurdeploy.executors.core import safe_str
from concurdeploy.executors.dask.worker import worker_facts

__all__ = ["INSTALL_HINT", "Membership", "bounded", "import_distributed", "is_loopback", "serves"]

#: The one-line fix printed when the extra is missing.
INSTALL_HINT = "pip install 'concurdeploy[dask]'"


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




class Membership:
    """The cluster's usable workers (``workers``: address → :class:`_Worker`), kept up to date
    by :meth:`refresh`; ``unusable``: address → why no host is sent there.

    :param client: a connected ``distributed.Client``; ``scheduler``: its address (for messages).
    """

    def __init__(self, client, scheduler: str):
        self.client, self.scheduler = client, scheduler
        self.workers: dict[str, _Worker] = {}
        self.unusable: dict[str, str] = {}

    def preflight(self, placement: dict, local_only: bool, timeout: float) -> None:
        """Check, before any host is touched, that the run can go through this cluster.

        :param placement: host name → ``executor_pool``.
        :param local_only: the scheduler and every worker must be on this machine's loopback.
        :param timeout: seconds to wait for a first worker.
        :raises UsageError: no worker (within ``timeout``), none can run concurdeploy, an
            ``executor_pool`` no worker serves, a non-loopback cluster for sandbox hosts.
        """
        try:
            self.client.wait_for_workers(1, timeout=timeout)
        except Exception:
            raise UsageError(f"the Dask scheduler at {self.scheduler} has no workers (waited "
                             f"{timeout:g} s); start some with 'dask worker {self.scheduler}'") from None
        self.refresh()
        if not self.workers:
            why = "; ".join(f"{a}: {w}" for a, w in list(self.unusable.items())[:3]) or "none answered"
            raise UsageError(f"no Dask worker at {self.scheduler} can run concurdeploy ({why}); "
                             f"install it on every worker: {INSTALL_HINT}")
        for pool in sorted(set(placement.values())):
            if not any(serves(w, pool) for w in self.workers.values()):
                names = ", ".join(f"{w.name} (resources {w.resources or '{}'})"
                                  for w in self.workers.values())
                hosts = sorted(h for h, p in placement.items() if p == pool)
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

    def refresh(self) -> list[_Worker]:
        """Look at the cluster's workers; return those that left since the last look.

        :raises Exception: the scheduler did not answer (``TimeoutError`` after 10 s, or the
            client's own error); the caller decides when that means the scheduler is lost.
        """
        live = self.client.nthreads(callback_timeout=10)
        gone = [self.workers.pop(a) for a in list(self.workers) if a not in live]
        new = [a for a in live if a not in self.workers and a not in self.unusable]
        if new:
            info = self.client.scheduler_info(n_workers=-1)["workers"]
            facts = bounded(30, self.client.run, worker_facts, workers=new, on_error="return")
            for a in new:
                f = facts.get(a)
                if a not in info or isinstance(f, (OSError, TimeoutError)) or f is None:
                    continue  # left, or not answering yet: look again next time
                if not isinstance(f, dict):
                    why = f"{type(f).__name__}: {safe_str(f)}" if isinstance(f, BaseException) else repr(f)
                    self.unusable[a] = why
                    print(f"WARNING: Dask worker {a} cannot run concurdeploy ({why}); no host is sent "
                          f"there. Install it on every worker: {INSTALL_HINT}", file=sys.stderr)
                    continue
                self.workers[a] = _Worker(a, str(info[a].get("name", a)), int(info[a].get("nthreads") or 1),
                                          dict(info[a].get("resources") or {}), f["id"], f["pid"])
        return gone


def bounded(seconds: float, fn, *args, **kwargs):
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


