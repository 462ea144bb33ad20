"""The handler: the service's ``reload`` run once per host after all its files are in place,
then the optional ``healthcheck``; and the marker that remembers a reload still owed.

A run that replaced files but did not finish its reload (failure, interrupt, dropped link)
leaves ``.concurdeploy-reload-pending.<service>`` beside the first destination; the next
run sees it (:mod:`~concurdeploy.operations.facts`) and reloads even when nothing changed.
The marker is removed only when the reload succeeds.
"""

from __future__ import annotations

import hashlib
import posixpath
import re

from concurdeploy.exceptions import ReloadFailed
from concurdeploy.operations.become import Privilege
from concurdeploy.operations.jobs import PushJob
from concurdeploy.operations.shell import q
from concurdeploy.operations.timing import phase
from concurdeploy.records import tail
from concurdeploy.ssh.connection import Connection

__all__ = ["marker_path", "reload_and_check", "reload_command"]


def marker_path(job: PushJob) -> str | None:
    """Where a host remembers a reload it owes: beside the first destination, one per service
    (so a reload command fixed between runs still runs). None when the job has no reload."""
    if not job.reload:
        return None
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", job.service) or hashlib.sha1(job.reload.encode()).hexdigest()[:12]
    return posixpath.join(posixpath.dirname(job.files[0].dest), f".concurdeploy-reload-pending.{name}")


def reload_command(job: PushJob, marker: str | None) -> str:
    """The shell command running ``job.reload`` in a subshell, then removing ``marker`` if it exited 0."""
    clear = f"\nrc=$?; [ $rc -eq 0 ] && rm -f -- {q(marker)}; exit $rc" if marker else ""
    return f"( {job.reload}\n){clear}"


def reload_and_check(conn: Connection, privilege: Privilege, job: PushJob, marker: str | None) -> str:
    """Run the handler (``job.reload``), then ``job.healthcheck``; each at most once.

    :returns: their output (stdout then stderr of each, in order; ``""`` if none), for
        ``-v`` to show (the caller masks secrets and keeps the tail).
    :raises ReloadFailed: either exited non-zero (the caller rolls back).
    :raises CommandTimeout: either ran past ``command_timeout`` (the caller rolls back).
    """
    shown = ""
    if job.reload:
        with phase(conn, "reload"):
            res = privilege.run(conn, reload_command(job, marker))
        if res.exited != 0:
            raise ReloadFailed(f"reload failed (exit {res.exited}): {job.reload}",
                               output=tail(res.stdout + res.stderr), exit_status=res.exited)
        shown += res.stdout + res.stderr
    if job.healthcheck:
        with phase(conn, "healthcheck"):
            res = privilege.run(conn, job.healthcheck)
        if res.exited != 0:
            raise ReloadFailed(f"healthcheck failed (exit {res.exited}): {job.healthcheck}",
                               output=tail(res.stdout + res.stderr), exit_status=res.exited)
        shown += res.stdout + res.stderr
    return shown
