"""The worker pool (``concurdeploy.executors.local``) against a real OpenSSH sshd on loopback.

Actions live in ``tests/actions.py`` so worker processes can import them by reference.
Every run here is bounded by a ``deadline`` so a fan-out bug shows up as a failed
assertion, never as a hung test run.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import select
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import paramiko
import pytest

from concurdeploy.executors.local import Job, WorkerPool, run_jobs
from concurdeploy.records import HostResult, Status
from concurdeploy.ssh.specs import ConnectSpec
from tests import actions
from tests.sshd import login_user

pytestmark = pytest.mark.integration

#: Seconds after which a test's run is given up (bounds every test on a fan-out bug).
BOUND = 30.0


@pytest.fixture
def spec_for(sshd_factory, client_keys, known_hosts_file):
    """``spec_for(name) -> ConnectSpec`` of one real sshd (every name reaches the same server)."""
    (srv,) = sshd_factory(1)
    kh = known_hosts_file([srv])

    def make(name: str) -> ConnectSpec:
        return ConnectSpec(name=name, hostname="127.0.0.1", port=srv.port, user=login_user(),
                           key_file=client_keys.ed25519, known_hosts=kh, connect_timeout=5,
                           command_timeout=20, allow_agent=False)

    return make


def jobs_of(spec_for, action, payloads) -> list[Job]:
    return [Job(spec_for(f"h{i + 1}"), action, p) for i, p in enumerate(payloads)]


def bounded() -> float:
    return time.monotonic() + BOUND


def workers_alive() -> list:
    return [p for p in multiprocessing.active_children() if p.name == "concurdeploy-worker"]


def pid_gone(pid: int, timeout: float = 5.0) -> bool:
    """True once ``pid`` has exited (a zombie counts), waited for on a pidfd (bounded by ``timeout`` s)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])  # readable once the process exits
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------- errors as data

def test_unpicklable_paramiko_exception_reaches_parent_as_plain_data(spec_for, client_keys):
    rsa_pub = client_keys.rsa + ".pub"
    # The premise: this exception really cannot cross a process boundary as an object.
    e = paramiko.BadHostKeyException("127.0.0.1", actions.public_key(rsa_pub),
                                     actions.public_key(rsa_pub))
    with pytest.raises(TypeError, match="cannot pickle"):
        pickle.loads(pickle.dumps(e))

    jobs = jobs_of(spec_for, actions.raise_bad_host_key, [None, rsa_pub, None])
    t0 = time.monotonic()
    results = run_jobs(jobs, forks=3, deadline=bounded())
    assert time.monotonic() - t0 < 15

    assert [r.host for r in results] == ["h1", "h2", "h3"]
    bad = results[1]
    assert bad.status is Status.FAILED
    assert bad.error_kind == "BadHostKeyException"
    assert "does not match" in bad.error and "actions.py:" in bad.error  # message + where
    assert [r.status for r in (results[0], results[2])] == [Status.OK, Status.OK]
    for r in results:  # what came back is plain data: it round-trips again
        assert pickle.loads(pickle.dumps(r)) == r


def test_sys_exit_in_action_fails_that_host_only(spec_for):
    """``SystemExit`` is a BaseException: it must not kill the worker's thread silently."""
    jobs = jobs_of(spec_for, actions.sys_exit_if_told, [None, "exit", None])
    with WorkerPool(forks=2, processes=1) as pool:
        results = pool.run(jobs, deadline=time.monotonic() + 15)
    assert results[1].status is Status.FAILED
    assert results[1].error_kind == "SystemExit", results[1]
    assert [results[0].status, results[2].status] == [Status.OK, Status.OK]


def test_unpicklable_result_fails_that_host_instead_of_hanging(spec_for):
    jobs = jobs_of(spec_for, actions.unpicklable_result, [None, "bad", None])
    t0 = time.monotonic()
    with WorkerPool(forks=3, processes=1) as pool:
        results = pool.run(jobs, deadline=time.monotonic() + 15)
    assert time.monotonic() - t0 < 10, "the result was lost: the run waited for its deadline"
    assert results[1].status is Status.FAILED and results[1].error_kind != "Deadline", results[1]
    assert "pickle" in results[1].error.lower()
    assert [results[0].status, results[2].status] == [Status.OK, Status.OK]


def test_unpicklable_job_fails_its_host_instead_of_hanging(spec_for):
    """A closure as action (e.g. defined inside a task) cannot reach a worker: say so."""
    def local_action(conn, payload):  # not importable by reference
        return HostResult(conn.spec.name, Status.OK)

    jobs = [Job(spec_for("h1"), actions.echo_pid), Job(spec_for("h2"), local_action)]
    t0 = time.monotonic()
    with WorkerPool(forks=2, processes=1) as pool:
        results = pool.run(jobs, deadline=time.monotonic() + 15)
    assert time.monotonic() - t0 < 10, "the job was lost: the run waited for its deadline"
    assert results[0].status is Status.OK
    assert results[1].status is Status.FAILED and results[1].error_kind != "Deadline", results[1]
    assert "module level" in results[1].error


# ---------------------------------------------------------------------------- dead workers

def test_worker_that_dies_loses_its_host_only_others_complete(spec_for):
    """The one policy (``executors.core.host_outcome``): ``unreachable``, ``WorkerLost``."""
    payloads = [None, "die", None, None, None, None]
    jobs = jobs_of(spec_for, actions.die_if_told, payloads)
    seen = []
    t0 = time.monotonic()
    with WorkerPool(forks=2, processes=2) as pool:
        assert (pool.processes, pool.threads) == (2, 1)
        results = pool.run(jobs, on_result=lambda r: seen.append(r.host), deadline=bounded())
    assert time.monotonic() - t0 < 20

    dead = results[1]
    assert dead.status is Status.UNREACHABLE and dead.error_kind == "WorkerLost"
    assert "exit code 3" in dead.error and "not retried (--retries 0)" in dead.error
    others = [r for i, r in enumerate(results) if i != 1]
    assert [r.status for r in others] == [Status.OK] * 5
    assert sorted(seen) == sorted(f"h{i + 1}" for i in range(6))  # each reported exactly once
    assert workers_alive() == []


# ---------------------------------------------------------------------------- order and shape

def test_results_in_job_order_whatever_the_completion_order(spec_for):
    sleeps = [1.2, 0.6, 0.0, 0.0]
    jobs = jobs_of(spec_for, actions.sleep_then_ok, sleeps)
    completed = []
    with WorkerPool(forks=4, processes=2) as pool:
        results = pool.run(jobs, on_result=lambda r: completed.append(r.host), deadline=bounded())
    assert completed[-1] == "h1" and completed[-2] == "h2"  # the slow ones finished last…
    assert [r.host for r in results] == ["h1", "h2", "h3", "h4"]  # …but come back in order
    assert [r.data["slept"] for r in results] == sleeps
    assert all(r.status is Status.OK for r in results)


def test_many_forks_few_processes(spec_for):
    cpus = os.cpu_count() or 1
    live_counts = []
    jobs = jobs_of(spec_for, actions.sleep_then_ok, [0.5] * 8)
    t0 = time.monotonic()
    with WorkerPool(forks=50) as pool:
        assert pool.processes <= cpus
        assert pool.processes * pool.threads >= 8  # all 8 hosts can be in flight at once
        results = pool.run(jobs, on_result=lambda r: live_counts.append(len(workers_alive())),
                           deadline=bounded())
    elapsed = time.monotonic() - t0
    assert all(r.status is Status.OK for r in results)
    assert max(live_counts) <= cpus, live_counts
    assert len({r.data["pid"] for r in results}) <= cpus
    assert elapsed < 8 * 0.5, "hosts ran one after another, not in flight together"
    assert workers_alive() == []


def test_hosts_hint_caps_processes():
    assert WorkerPool(forks=50, hosts_hint=1).processes == 1
    assert WorkerPool(forks=1, processes=8).processes == 1


# ---------------------------------------------------------------------------- deadline

def test_deadline_fails_in_flight_skips_unstarted_and_leaves_no_worker(spec_for, tmp_path):
    pid_file = tmp_path / "worker.pid"
    jobs = [Job(spec_for("h1"), actions.write_pid_then_sleep, (str(pid_file), 60)),
            Job(spec_for("h2"), actions.sleep_then_ok, 0),
            Job(spec_for("h3"), actions.sleep_then_ok, 0)]
    seconds = 2.0
    t0 = time.monotonic()
    with WorkerPool(forks=1, processes=1) as pool:
        results = pool.run(jobs, deadline=t0 + seconds)
        returned = time.monotonic() - t0
    assert seconds <= returned < seconds + 4
    assert results[0].status is Status.FAILED
    assert results[0].error_kind == "Deadline" and results[0].error == "deadline exceeded"
    assert [r.status for r in results[1:]] == [Status.SKIPPED, Status.SKIPPED]
    assert pid_file.exists()
    assert pid_gone(int(pid_file.read_text())), "the worker outlived the deadline"
    assert workers_alive() == []


def test_deadline_holds_while_results_keep_arriving(spec_for):
    """Hosts finishing back to back must not keep the run going past its deadline."""
    jobs = jobs_of(spec_for, actions.sleep_then_ok, [0.1] * 80)
    seconds = 1.0
    t0 = time.monotonic()
    with WorkerPool(forks=4, processes=2) as pool:
        results = pool.run(jobs, deadline=t0 + seconds)
        returned = time.monotonic() - t0
    assert returned < seconds + 1.5, f"run returned {returned:.1f} s after start"
    statuses = {r.status for r in results}
    assert Status.OK in statuses and Status.SKIPPED in statuses


@pytest.mark.serial  # timing-sensitive: run apart from the parallel run
def test_deadline_with_many_queued_jobs_lets_the_process_exit(tmp_path, spec_for):
    """Jobs still queued when the deadline hits must not block interpreter exit.

    (A multiprocessing queue flushes its buffer at exit; with the workers gone nobody
    reads the pipe, so a large backlog would hang the controller forever.)
    """
    spec = spec_for("h")
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from concurdeploy.executors.local import Job, WorkerPool
        from concurdeploy.ssh.specs import ConnectSpec
        from tests import actions
        if __name__ == "__main__":  # workers start with forkserver: they re-import this file
            spec = ConnectSpec(**{spec.__dict__!r})
            jobs = [Job(spec, actions.sleep_then_ok, 60)]
            jobs += [Job(spec, actions.sleep_then_ok, "x" * 4096) for _ in range(200)]
            with WorkerPool(forks=1, processes=1) as pool:
                results = pool.run(jobs, deadline=time.monotonic() + 3)
            print(results[0].status, results[1].status, flush=True)
    """))
    t0 = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                              timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("the controller process did not exit after a run that hit its deadline")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["failed", "skipped"]
    assert time.monotonic() - t0 < 15


def test_pool_is_reusable_across_batches(spec_for):
    with WorkerPool(forks=2, processes=2) as pool:
        first = pool.run(jobs_of(spec_for, actions.echo_pid, [None] * 3), deadline=bounded())
        second = pool.run(jobs_of(spec_for, actions.echo_pid, [None] * 2), deadline=bounded())
    assert [r.status for r in first + second] == [Status.OK] * 5
    assert all(r.data["remote"] == "alive" for r in first + second)
    assert {r.data["pid"] for r in second} <= {r.data["pid"] for r in first}  # same workers

