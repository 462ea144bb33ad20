"""A host's phases, timed where they run (the worker), for the report's timeline.

``with phase(conn, "upload"): ...`` appends ``("upload", start, end)`` (``time.monotonic()``
seconds) to ``conn.phases``; the executor turns them into
:attr:`HostResult.timings <concurdeploy.records.HostResult.timings>` relative to the host's
start (:func:`relative`), and the controller places them on the run's clock. A phase that
raised is recorded all the same (its bar ends where it failed).

The phases: ``connect`` (the executor), ``compare`` (lock the destinations and read their
facts), ``upload``, ``validate`` (the verify/validate/backup command), ``rename`` (the atomic
replaces), ``reload``, ``healthcheck``; ``command`` (``run``), ``download`` (``get``); ``task``: an action that times no phase of its own.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import replace

from concurdeploy.records import HostResult

__all__ = ["on_run_clock", "phase", "record", "relative", "timed_action"]


@contextmanager
def phase(conn, name: str):
    """Time the ``with`` block as phase ``name`` of ``conn``'s host (on ``conn.phases``)."""
    began = time.monotonic()
    try:
        yield
    finally:
        record(conn, name, began, time.monotonic())


def record(conn, name: str, began: float, ended: float) -> None:
    """Append phase ``name`` (monotonic ``began`` .. ``ended``) to ``conn.phases``."""
    phases = getattr(conn, "phases", None)
    if phases is None:
        phases = []
        try:
            conn.phases = phases
        except AttributeError:  # an object that takes no attributes: not timed
            return
    phases.append((name, began, ended))


def timed_action(action, conn, payload):
    """``action(conn, payload)``; when it timed no phase of its own (a project's task), its whole
    run is recorded as phase ``task``."""
    before = len(getattr(conn, "phases", None) or ())
    began = time.monotonic()
    try:
        return action(conn, payload)
    finally:
        if len(getattr(conn, "phases", None) or ()) == before:
            record(conn, "task", began, time.monotonic())


def relative(conn, start: float) -> tuple[tuple[str, float, float], ...]:
    """``conn``'s phases as ``(phase, start_s, duration_s)``, seconds from ``start`` (the host's)."""
    return tuple((name, round(max(0.0, b - start), 3), round(max(0.0, e - b), 3))
                 for name, b, e in getattr(conn, "phases", None) or ())


def on_run_clock(r: HostResult, arrived_s: float | None) -> HostResult:
    """``r`` with its timings on the run's clock: the host began ``duration_s`` before it arrived
    (``arrived_s``, seconds from the run's start); its phases, timed by the worker from the
    host's own start (:func:`phase`), are shifted by that; a host
    without phases gets one ``("host", start_s, duration_s)`` bar."""
    if arrived_s is None or not r.duration_s:
        return r
    began = max(0.0, arrived_s - r.duration_s)
    if r.timings:
        return replace(r, timings=tuple((p, round(began + s, 3), d) for p, s, d in r.timings))
    return replace(r, timings=(("host", round(began, 3), round(r.duration_s, 3)),))
