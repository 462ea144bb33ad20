"""Frozen, picklable records that carry outcomes from worker processes to the controller.

A result names its host by inventory name (``str``), never by a live connection, so it
crosses process boundaries and lands in reports unchanged. This module imports nothing
of concurdeploy's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timezone
from enum import Enum

__all__ = ["CommandResult", "FileChange", "HostResult", "RunRecord", "RunResult", "Status", "tail", "utc_now"]

#: Bytes of command output kept per host in a result (the end of it: errors come last).
TAIL_BYTES = 8192


class Status(str, Enum):
    """A host's outcome. ``str`` values, so ``Status.OK == "ok"`` and JSON needs no help."""

    OK = "ok"                    # reached, nothing needed changing
    CHANGED = "changed"          # reached, something changed
    FAILED = "failed"            # reached, something went wrong; nothing half-done is left
    UNREACHABLE = "unreachable"  # could not connect, or the connection dropped
    SKIPPED = "skipped"          # not attempted (stopped before its turn)

    def __str__(self) -> str:
        return self.value

    @property
    def is_failure(self) -> bool:
        """True for ``failed`` and ``unreachable``: the states that make the exit code 1."""
        return self in (Status.FAILED, Status.UNREACHABLE)


def tail(text: str, limit: int = TAIL_BYTES) -> str:
    """Return the last ``limit`` characters of ``text`` (prefixed with ``…`` when cut)."""
    return text if len(text) <= limit else "…" + text[-limit:]


@dataclass(frozen=True)
class FileChange:
    """One file replaced (or, in check mode, that would be) on one host.

    :param dest: absolute destination path as declared (``str``).
    :param sha256_before: hex digest of the file replaced, None if it did not exist.
    :param sha256_after: hex digest of the new content.
    :param size: bytes of the new content.
    :param path: the path actually written on the host: ``dest``, or the file a symlinked
        ``dest`` points to (``follow: true``); None = ``dest``.
    :param method: how it is written: ``"replace"`` (a new file renamed over the path),
        ``"in-place"`` (the existing file's content rewritten), ``"create"`` (nothing was
        there); ``""`` = unknown (then :attr:`action` says it from ``sha256_before``).
    """

    dest: str
    sha256_before: str | None
    sha256_after: str
    size: int
    path: str | None = None
    method: str = ""

    @property
    def action(self) -> str:
        """``"created"`` or ``"replaced"``."""
        if self.method:
            return "created" if self.method == "create" else "replaced"
        return "created" if self.sha256_before is None else "replaced"

    @property
    def written(self) -> str:
        """The path actually written (``path``, else ``dest``)."""
        return self.path or self.dest


@dataclass(frozen=True)
class CommandResult:
    """The outcome of one remote command.

    :param exited: exit status (``int``), or None when killed by a timeout or no status came.
    :param stdout: decoded as UTF-8 with invalid bytes replaced (``\\ufffd``).
    :param duration_s: wall seconds (``float``).
    """

    command: str
    exited: int | None
    stdout: str = ""
    stderr: str = ""
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.exited == 0


@dataclass(frozen=True)
class HostResult:
    """What happened on one host. Small and picklable; the fan-out returns one per host.

    :param host: inventory name.
    :param status: see :class:`Status`.
    :param changes: files replaced, in declaration order.
    :param output: tail of remote output worth showing (validator output, ``run`` output).
    :param exit_status: exit status of the ``run`` command or of the failing command, if any.
    :param error_kind: exception class name, e.g. ``"HostKeyMismatch"``.
    :param error: one-line message, secrets masked.
    :param duration_s: wall seconds spent on the host, connect included.
    :param reloaded: the reload command ran (and succeeded).
    :param batch: 1-based batch number (``--serial``), or None.
    :param warnings: notes that did not fail the host (e.g. flock missing on the host).
    :param data: small extra values for a user's task (``dict`` of plain values).
    :param diff: unified diff of the changed files (``--diff``), secrets masked; "" if none.
    :param rolled_back: the reload failed and the previous files were restored.
    :param timings: the host's phases as ``(phase, start_s, duration_s)`` tuples, seconds from
        the start of the run (phases: ``connect``, ``compare``, ``upload``, ``validate``, ``rename``, ``reload``,
        ``healthcheck``; ``host`` = the whole host, start to result); ``()`` when not recorded.
    """

    host: str
    status: Status
    changes: tuple[FileChange, ...] = ()
    output: str = ""
    exit_status: int | None = None
    error_kind: str | None = None
    error: str | None = None
    duration_s: float = 0.0
    reloaded: bool = False
    batch: int | None = None
    warnings: tuple[str, ...] = ()
    data: dict = field(default_factory=dict)
    diff: str = ""
    rolled_back: bool = False
    timings: tuple[tuple[str, float, float], ...] = ()


@dataclass(frozen=True)
class RunRecord:
    """One whole run, as the reports see it.

    :param command: the command line, e.g. ``"concurdeploy push haproxy --serial 2"``.
    :param started: ISO 8601 UTC start time, e.g. ``"2026-11-29T09:00:00.123Z"``.
    :param ended: ISO 8601 UTC end time.
    :param results: one :class:`HostResult` per selected host, in inventory order.
    :param stopped: why the run stopped early (``--max-fail``, ``--fail-fast``, a signal), or None.
    :param signal: the signal number that interrupted the run (2, 15), or 0.
    """

    command: str
    started: str
    ended: str
    results: tuple[HostResult, ...]
    stopped: str | None = None
    signal: int = 0

    @property
    def duration_s(self) -> float:
        from datetime import datetime

        fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
        return round((datetime.strptime(self.ended, fmt) - datetime.strptime(self.started, fmt)).total_seconds(), 3)


@dataclass(frozen=True)
class RunResult:
    """What a run did: returned by :func:`concurdeploy.push`, ``run``, ``put``, ``get`` and
    :func:`concurdeploy.api.fan_out`. A host's failure is a record here, never an exception.

    :param hosts: one :class:`HostResult` per selected host, in inventory order.
    :param stopped: why the run stopped early (``--max-fail``, ``--fail-fast``), or None.
    :param duration_s: wall seconds of the whole run.
    :param report_error: why a requested report (``report_json``, ``junit``) could not be
        written after the run, or None; such a run exits 1 even if every host was fine.
    """

    hosts: tuple[HostResult, ...]
    stopped: str | None = None
    duration_s: float = 0.0
    report_error: str | None = None

    @property
    def ok(self) -> bool:
        """True when no host failed or was unreachable (every host ``ok``, ``changed`` or ``skipped``)."""
        return not self.failed

    @property
    def failed(self) -> tuple[HostResult, ...]:
        """The hosts that ``failed`` or were ``unreachable``, in inventory order."""
        return tuple(r for r in self.hosts if r.status.is_failure)

    @property
    def changed(self) -> tuple[HostResult, ...]:
        """The hosts where something changed (or, in check mode, would change)."""
        return tuple(r for r in self.hosts if r.status is Status.CHANGED)

    @property
    def exit_code(self) -> int:
        """The CLI's exit code for this run: 0 all ok/changed, 1 a host failed or was
        unreachable, or a requested report could not be written (``report_error``)."""
        return 0 if self.ok and not self.report_error else 1

    def __getitem__(self, host: str) -> HostResult:
        """The result of the host named ``host`` (inventory name). :raises KeyError: not in the run."""
        for r in self.hosts:
            if r.host == host:
                return r
        raise KeyError(host)


def utc_now() -> str:
    """Current time as ISO 8601 UTC with milliseconds: ``2026-11-29T09:00:00.123Z``."""
    from datetime import datetime

    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
