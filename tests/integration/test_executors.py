"""The same fault cases through both executors: one run-loop policy (``executors/core.py``).

Every test runs once with the local pool (2 worker processes, 1 thread each), once with the
in-controller executor a run of a few hosts gets (``InlinePool``, no worker process), and once with a
``DaskPool`` on a real ``distributed.LocalCluster`` (2 worker processes with nannies, loopback;
the cluster of ``test_dask.py``), both built by :func:`make_executor`, against real OpenSSH
sshd hosts. The expected ``(host, status, error_kind)`` table is one constant per case, the
same for both back-ends, so they cannot drift apart again.

The actions below are module-level: local workers import them by reference, Dask workers
receive them by value. Every run has a deadline (or a bound checked after it), every wait in
an action is bounded.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from concurdeploy.executors.core import DEADLINE_GRACE_S, Executor, Job, make_executor
from concurdeploy.records import HostResult, Status
from concurdeploy.ssh.specs import ConnectSpec
from tests.sshd import free_port, login_user

pytestmark = pytest.mark.integration

#: Seconds after which any run here is given up (a fan-out bug fails a test, never hangs it).
BOUND = 60.0
BACKENDS = ["local", "inline", "dask"]
#: The back-ends with worker processes to lose (the inline executor has none: its hosts are
#: threads of the controller, which a killed "worker" would be).
POOLED = ["local", "dask"]


# ---------------------------------------------------------------------------- actions (run in workers)

def ok(conn, payload) -> HostResult:
    """A real remote command, then ``ok``."""
    out = conn.run("echo alive").stdout.strip()
    return HostResult(conn.spec.name, Status.OK, data={"pid": os.getpid(), "remote": out})


def raise_error(conn, payload) -> HostResult:
    """A bug in an action: a plain exception."""
    raise RuntimeError("boom, on purpose")


def unpicklable_result(conn, payload) -> HostResult:
    """A result that cannot be pickled back (a lock in its data)."""
    return HostResult(conn.spec.name, Status.OK, data={"lock": threading.Lock()})


def killed_once(conn, marker: str) -> HostResult:
    """The first time (no ``marker`` file yet): SIGKILL this worker process mid-job; then ``ok``."""
    if not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return ok(conn, None)


def until_aborted(conn, seconds: float) -> HostResult:
    """Stop at the next safe point once the run is aborted (``Interrupted``); else ``ok``
    after ``seconds`` (the bound)."""
    if conn.abort is not None:
        conn.abort.wait(seconds)  # the run's abort flag (an Event) is the event waited on
    conn.check_abort()  # raises Interrupted once the abort flag is set
    return HostResult(conn.spec.name, Status.OK)


def ignores_abort(conn, release: str) -> HostResult:
    """A host stuck where it never looks at the abort flag, until the ``release`` file exists
    (the test creates it when done; bounded at 30 s)."""
    end = time.monotonic() + 30
    while not os.path.exists(release) and time.monotonic() < end:
        time.sleep(0.05)
    return HostResult(conn.spec.name, Status.OK)


# ---------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def dask_cluster(client_keys, tmp_path_factory):
    """``test_dask.py``'s LocalCluster for this module: ``(scheduler_address, client)``."""
    from tests.integration.test_dask import local_cluster

    with local_cluster(client_keys, tmp_path_factory.mktemp("dask-scratch")) as running:
        yield running


@pytest.fixture
def spec_for(sshd_factory, client_keys, known_hosts_file):
    """``spec_for(name, port=None) -> ConnectSpec`` of one real sshd (any name reaches it)."""
    (srv,) = sshd_factory(1)
    kh = known_hosts_file([srv])

    def make(name: str, port: int | None = None) -> ConnectSpec:
        return ConnectSpec(name=name, hostname="127.0.0.1", port=port or srv.port, user=login_user(),
                           key_file=client_keys.ed25519, known_hosts=kh, connect_timeout=5,
                           command_timeout=20, allow_agent=False, connect_retries=0)

    return make


def _backend(request):
    kind = request.param
    cluster = request.getfixturevalue("dask_cluster") if kind == "dask" else None

    def make(forks: int, retries: int = 0) -> Executor:
        if kind == "inline":  # what make_executor picks for a few hosts with --processes 0
            pool = make_executor("local", forks=forks, hosts=[], processes=0, retries=retries)
            assert type(pool).__name__ == "InlinePool"
            return pool
        return make_executor(kind, forks=forks, hosts=[], processes=2, retries=retries,
                             scheduler=cluster[0] if cluster else "")

    yield kind, make
    if cluster:
        cluster[1].wait_for_workers(2, timeout=60)  # a killed worker's nanny has restarted it


@pytest.fixture(params=BACKENDS)
def backend(request):
    """``(kind, make(forks, retries=0) -> Executor)``; Dask runs settle the cluster back to 2 workers."""
    yield from _backend(request)


@pytest.fixture(params=POOLED)
def pooled_backend(request):
    """:func:`backend`, for the back-ends that have worker processes."""
    yield from _backend(request)


def table(results: list[HostResult]) -> list[tuple]:
    """What must be the same through both back-ends: ``(host, status, error_kind)`` per host."""
    return [(r.host, r.status.value, r.error_kind) for r in results]


def run(executor: Executor, jobs: list[Job], **kwargs) -> tuple[list[HostResult], float]:
    """``executor.run(jobs)`` bounded by :data:`BOUND` (unless a deadline is given); returns
    (results, seconds taken)."""
    kwargs.setdefault("deadline", time.monotonic() + BOUND)
    t0 = time.monotonic()
    results = executor.run(jobs, **kwargs)
    return results, time.monotonic() - t0


# ---------------------------------------------------------------------------- the cases

def test_faults_of_one_host_stay_with_that_host(backend, spec_for):
    kind, make = backend
    closed = free_port()  # nothing listens there
    jobs = [Job(spec_for("h1"), ok),
            Job(spec_for("h2"), raise_error),
            Job(spec_for("h3", port=closed), ok),
            Job(spec_for("h4"), ok, payload=threading.Lock()),
            Job(spec_for("h5"), unpicklable_result),
            Job(spec_for("h6"), ok)]
    reported = []
    with make(forks=2) as pool:
        results, took = run(pool, jobs, on_result=lambda r: reported.append(r.host))
    assert table(results) == [
        ("h1", "ok", None),
        ("h2", "failed", "RuntimeError"),
        ("h3", "unreachable", "HostUnreachable"),
        ("h4", "failed", "JobNotPicklable"),
        ("h5", "failed", "ResultNotPicklable"),
        ("h6", "ok", None),
    ], (kind, results)
    assert "boom, on purpose" in results[1].error
    assert "module level" in results[3].error and "pickle" in results[4].error.lower()
    assert results[0].data["remote"] == results[5].data["remote"] == "alive"
    assert sorted(reported) == [f"h{i}" for i in range(1, 7)]  # each reported exactly once
    assert took < BOUND / 2, f"{kind}: a host's fault held the run up ({took:.1f} s)"


@pytest.mark.parametrize("retries", [0, 1])
def test_a_worker_killed_mid_job_is_that_hosts_outcome_only(pooled_backend, spec_for, tmp_path, retries):
    """The one policy: the host whose worker died is ``unreachable`` (``WorkerLost``) unless
    ``retries`` allows another worker to run it; every other host finishes; no hang."""
    kind, make = pooled_backend
    marker = tmp_path / "killed.pid"
    jobs = [Job(spec_for("h1"), ok), Job(spec_for("h2"), killed_once, str(marker)),
            Job(spec_for("h3"), ok), Job(spec_for("h4"), ok)]
    reported = []
    with make(forks=2, retries=retries) as pool:
        results, took = run(pool, jobs, on_result=lambda r: reported.append(r.host))
    assert marker.exists(), "the action never ran"
    victim = int(marker.read_text())
    if retries:
        assert table(results) == [("h1", "ok", None), ("h2", "ok", None), ("h3", "ok", None), ("h4", "ok", None)]
        assert any("retried on another" in w for w in results[1].warnings), results[1]
    else:
        assert table(results) == [("h1", "ok", None), ("h2", "unreachable", "WorkerLost"),
                                  ("h3", "ok", None), ("h4", "ok", None)], (kind, results)
        assert "not retried (--retries 0)" in results[1].error
    assert all(r.data["pid"] != victim for r in results if r.status is Status.OK)
    assert sorted(reported) == ["h1", "h2", "h3", "h4"]
    assert took < BOUND - 10, f"{kind}: the lost host was waited for ({took:.1f} s)"


def test_stop_leaves_hosts_not_started_skipped(backend, spec_for):
    kind, make = backend
    jobs = [Job(spec_for(f"h{i}"), ok) for i in range(1, 5)]
    with make(forks=1) as pool:
        results, _ = run(pool, jobs, on_result=lambda r: pool.stop(f"seen {r.host}"))
        assert pool.stopped == "seen h1" and not pool.aborting
    assert table(results) == [("h1", "ok", None)] + [(f"h{i}", "skipped", "NotStarted") for i in (2, 3, 4)]
    assert results[1].error == "not started: seen h1"


def test_abort_stops_hosts_in_flight_at_a_safe_point_and_skips_the_rest(backend, spec_for):
    kind, make = backend
    jobs = [Job(spec_for("h1"), ok), Job(spec_for("h2"), until_aborted, 40.0),
            Job(spec_for("h3"), ok), Job(spec_for("h4"), ok)]

    def on_result(r: HostResult) -> None:
        if r.host == "h1":
            pool.abort("aborted by the test")

    with make(forks=2) as pool:
        results, took = run(pool, jobs, on_result=on_result)
    assert table(results) == [("h1", "ok", None), ("h2", "failed", "Interrupted"),
                              ("h3", "skipped", "NotStarted"), ("h4", "skipped", "NotStarted")], (kind, results)
    assert took < 30, f"{kind}: h2 did not stop at its next safe point ({took:.1f} s)"


def test_a_hard_stop_gives_a_host_in_flight_up_as_interrupted_not_deadline(backend, spec_for, tmp_path):
    """The second Ctrl-C (``hard_stop``): h2 never reaches a safe point, so it is given up at
    once, ``failed`` as ``Interrupted`` (the exit code is 130), never labelled ``Deadline``."""
    kind, make = backend
    release = tmp_path / "release"
    jobs = [Job(spec_for("h1"), ok), Job(spec_for("h2"), ignores_abort, str(release))]

    def on_result(r: HostResult) -> None:
        if r.host == "h1":
            pool.hard_stop("interrupted (SIGINT, then SIGINT: hard stop)")

    try:
        with make(forks=2) as pool:
            results, took = run(pool, jobs, on_result=on_result)
    finally:
        release.write_text("go")  # lets a Dask worker's stuck thread end
    assert table(results) == [("h1", "ok", None), ("h2", "failed", "Interrupted")], (kind, results)
    assert results[1].error.startswith("interrupted (SIGINT, then SIGINT: hard stop)"), results[1]
    assert took < 25, f"{kind}: h2 was waited for ({took:.1f} s)"  # it would hold 30 s


def test_deadline_fails_hosts_in_flight_within_the_grace_and_skips_the_rest(backend, spec_for, tmp_path):
    """h1 stops at its safe point (``Interrupted``); h2 never looks at the flag, so it is given
    up once the grace has run out (``Deadline``); h3 and h4 never start (``skipped``, ``Deadline``)."""
    kind, make = backend
    release = tmp_path / "release"
    jobs = [Job(spec_for("h1"), until_aborted, 40.0), Job(spec_for("h2"), ignores_abort, str(release)),
            Job(spec_for("h3"), ok), Job(spec_for("h4"), ok)]
    seconds = 8.0  # room for the workers to start both hosts on a loaded machine
    try:
        with make(forks=2) as pool:
            t0 = time.monotonic()
            results, took = run(pool, jobs, deadline=t0 + seconds)
    finally:
        release.write_text("go")  # lets a Dask worker's stuck thread end
    assert table(results) == [("h1", "failed", "Interrupted"), ("h2", "failed", "Deadline"),
                              ("h3", "skipped", "Deadline"), ("h4", "skipped", "Deadline")], (kind, results)
    assert results[1].error.startswith("deadline exceeded")
    assert seconds <= took < seconds + DEADLINE_GRACE_S + 4, f"{kind}: returned after {took:.1f} s"


# ---------------------------------------------------------------------------- the in-controller executor

def ignores_abort_then_touches(conn, paths: tuple) -> HostResult:
    """Never looks at the abort flag until ``release`` exists (bounded at 30 s), then creates
    ``marker`` on the host through the transport itself (as a step already under way, an SFTP
    write say, goes on without looking at the flag)."""
    release, marker = paths
    end = time.monotonic() + 30
    while not os.path.exists(release) and time.monotonic() < end:
        time.sleep(0.05)
    channel = conn.transport.open_session(timeout=10)
    channel.settimeout(10)
    channel.exec_command(f"touch {marker}")
    channel.recv_exit_status()
    return HostResult(conn.spec.name, Status.OK)


def test_a_few_hosts_run_in_the_controllers_threads_with_no_process_started(spec_for):
    import multiprocessing

    before = set(multiprocessing.active_children())
    jobs = [Job(spec_for(f"h{i}"), ok) for i in (1, 2, 3)]
    with make_executor("local", forks=50, hosts=[object()] * 3, processes=0) as pool:
        assert type(pool).__name__ == "InlinePool"
        results, _ = run(pool, jobs)
    assert table(results) == [(f"h{i}", "ok", None) for i in (1, 2, 3)]
    assert {r.data["pid"] for r in results} == {os.getpid()}
    assert set(multiprocessing.active_children()) == before


def test_a_host_given_up_by_the_inline_executor_takes_no_further_step_on_the_host(spec_for, tmp_path):
    """Past the deadline's grace the host is reported ``failed`` (``Deadline``); its thread cannot
    be killed, so its connection is closed under it: when it wakes up, its next remote command
    must not run (the report would otherwise be wrong about the host)."""
    release, marker = tmp_path / "release", tmp_path / "marker"
    os.chmod(tmp_path, 0o777)  # the login user of the host writes the marker (if it ever runs)
    jobs = [Job(spec_for("h1"), ignores_abort_then_touches, (str(release), str(marker)))]
    pool = make_executor("local", forks=1, hosts=[object()], processes=0)
    try:
        results, took = run(pool, jobs, deadline=time.monotonic() + 2)
    finally:
        release.write_text("go")
        pool.close()  # joins the host's thread (bounded): it has tried its command by now
    assert table(results) == [("h1", "failed", "Deadline")]
    assert took < 2 + DEADLINE_GRACE_S + 4
    assert not marker.exists(), "a host given up ran a command after its verdict"


def test_the_automatic_choice_of_executor():
    from concurdeploy.executors.inline import INLINE_MAX_HOSTS, InlinePool
    from concurdeploy.executors.local import WorkerPool

    few, many = [object()] * INLINE_MAX_HOSTS, [object()] * (INLINE_MAX_HOSTS + 1)
    assert isinstance(make_executor("local", forks=50, hosts=few, processes=0), InlinePool)
    assert isinstance(make_executor("local", forks=50, hosts=few, processes=None), InlinePool)
    with make_executor("local", forks=50, hosts=few, processes=1) as pool:  # asked for: a pool
        assert isinstance(pool, WorkerPool)
    with make_executor("local", forks=50, hosts=many, processes=0) as pool:
        assert isinstance(pool, WorkerPool)
