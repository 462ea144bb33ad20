"""What the Dask executor sends with the work: jobs by value, file contents once each.

Each distinct file content (read from ``src`` here, or already rendered in memory) is
scattered to the cluster once, under its SHA-256, and handed to chunks as a Dask dependency
(each worker fetches it once); the worker checks it against the SHA-256 before the host is
touched (:mod:`.worker`). A project's own actions are pickled by value (the workers cannot
import its ``tasks.py``). Secrets never travel: a ``ConnectSpec`` carries only paths and the
*names* of environment variables.
"""

from __future__ import annotations

import sys
import uuid
from dataclasses import replace
from typing import Any

from concurdeploy.executors.core import Job
from concurdeploy.operations.jobs import PushJob

__all__ = ["Contents", "content_keys"]


def content_keys(job: Job) -> set[str]:
    """The SHA-256 keys of the file contents ``job`` needs (empty for jobs that are not pushes)."""
    return {f.sha256 for f in job.payload.files} if isinstance(job.payload, PushJob) else set()


class Contents:
    """The contents on the cluster (``scattered``: SHA-256 → Dask future of the bytes).

    :param client: a connected ``distributed.Client``.
    """

    def __init__(self, client):
        self.client = client
        self.scattered: dict[str, Any] = {}
        self._read_cache: dict[str, bytes] = {}
        self._by_value: set = set()

    def pack(self, job: Job) -> tuple[bytes, tuple | None, dict]:
        """``(blob, keys, new)``: the job pickled (cloudpickle) without its file contents, the
        content key of each of its files (None: not a push), and the contents not on the
        cluster yet (key → bytes).

        :raises OSError: a source file cannot be read.
        :raises Exception: the job cannot be pickled (whatever cloudpickle raises).
        """
        import cloudpickle

        stripped, keys, new = self._strip(job)
        self._pickle_by_value(job.action)
        return cloudpickle.dumps((stripped, keys)), keys, new

    def _strip(self, job: Job):
        p = job.payload
        if not isinstance(p, PushJob):
            return job, None, {}
        files, keys, new = [], [], {}
        for f in p.files:
            if f.sha256 not in self.scattered and f.sha256 not in new:
                new[f.sha256] = f.content if f.content is not None else self._read(f.src)
            files.append(replace(f, content=None))
            keys.append(f.sha256)
        return replace(job, payload=replace(p, files=tuple(files))), tuple(keys), new

    def _read(self, path: str) -> bytes:
        if path not in self._read_cache:
            with open(path, "rb") as fh:
                self._read_cache[path] = fh.read()
        return self._read_cache[path]

    def scatter(self, new: dict, needed: set, address: str) -> dict:
        """Scatter the contents not on the cluster yet (to the chunk's worker at ``address``;
        others fetch them from there); return key → Future for every content the chunk needs.

        :raises Exception: the scheduler or the worker went away (``distributed``'s errors).
        """
        if new:  # a fresh Dask key each time: a released one may still be being forgotten
            names = {k: f"concurdeploy-content-{k[:16]}-{uuid.uuid4().hex[:8]}" for k in new}
            futures = self.client.scatter({names[k]: v for k, v in new.items()}, workers=[address],
                                          timeout=60)
            for k in new:
                self.scattered[k] = futures[names[k]]
        return {k: self.scattered[k] for k in needed}

    def release(self, key: str) -> None:
        """No host still needs content ``key``: let the cluster forget it."""
        self.scattered.pop(key, None)

    def forget(self) -> None:
        """Scatter everything again on demand (a worker that held some left)."""
        self.scattered.clear()

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
