"""The controller's lifecycle under faults (issue #14): the real ``concurdeploy`` command as a
subprocess against real OpenSSH sshd hosts on loopback, signals and kills delivered at known
moments (a remote step writes a line to a :class:`~tests.sshd.Beacon` FIFO and blocks; the
test waits on that event, never on a sleep), then the hosts and the JSON report checked.

Every run is bounded twice: by ``subprocess`` timeouts and by an assertion of its wall time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.conftest import HAPROXY_CFG
from tests.integration.faultkit import BannerServer, Relay, Run, cmdline, freeze, thaw, workers_of
from tests.sshd import Beacon, _descendants, _pid_alive, _wait_pids_gone

pytestmark = pytest.mark.integration

DEST = "{{ root }}/etc/haproxy/haproxy.cfg"
OLD = b"old\n"


# ---------------------------------------------------------------------------- helpers

def old_or_new(f, names) -> None:
    for n in names:
        assert f.dest(n).read_bytes() in (OLD, HAPROXY_CFG), n
    assert f.temp_files() == []


@pytest.fixture
def beacon(tmp_path):
    with Beacon(tmp_path / "beacon") as b:
        yield b


def hold_at_validate(f, beacon: Beacon, seconds: int = 20, **more) -> None:
    """The inventory's validate says "validate" on the beacon, then runs ``seconds``."""
    f.write_inventory(files=[{"src": "files/haproxy/haproxy.cfg", "dest": DEST,
                              "validate": f"{beacon.command('validate')}; sleep {seconds}; test -s {{tmp}}"}],
                      **more)


# ---------------------------------------------------------------------------- #14.2 lifecycle

def test_first_sigint_stops_at_a_safe_point_exit_130_with_the_report(fleet, beacon):
    f = fleet(3)
    for n in f.names:
        f.dest(n).write_bytes(OLD)
    hold_at_validate(f, beacon)
    run = Run(f, "-P", "1")
    beacon.wait(1, timeout=30, proc=run.proc)
    run.proc.send_signal(signal.SIGINT)
    assert run.finish() == 130
    doc = run.consistent(130)
    assert doc["signal"] == 2
    assert run.statuses()["h2"] == "skipped" and run.statuses()["h3"] == "skipped"
    old_or_new(f, f.names)
    assert run.took < 15, run.took  # not the validate's 20 s


def test_sigterm_exits_143_with_the_report(fleet, beacon):
    f = fleet(2)
    hold_at_validate(f, beacon)
    run = Run(f, "-P", "1")
    beacon.wait(1, timeout=30, proc=run.proc)
    run.proc.send_signal(signal.SIGTERM)
    assert run.finish() == 143
    assert run.consistent(143)["signal"] == 15
    assert f.temp_files() == []


def test_second_sigint_is_a_hard_stop_still_130_with_the_report(fleet, beacon):
    f = fleet(2)
    hold_at_validate(f, beacon, command_timeout=60)
    run = Run(f, "-P", "1")
    beacon.wait(1, timeout=30, proc=run.proc)
    frozen = freeze(f.servers[0])  # the host hangs: the safe point is never reached
    try:
        run.proc.send_signal(signal.SIGINT)
        first = time.monotonic()
        # the notice on stderr is the event that the first signal was handled
        run.wait_stderr("stopping")
        run.proc.send_signal(signal.SIGINT)
        assert run.finish(timeout=30) == 130
        assert time.monotonic() - first < 10
        doc = run.consistent(130)
        assert doc["signal"] == 2
        assert run.statuses() == {"h1": "failed", "h2": "skipped"}
        assert run.host("h1")["error_kind"] == "Interrupted", run.host("h1")  # not "Deadline"
    finally:
        thaw(frozen)


def test_a_burst_of_signals_keeps_the_first_ones_exit_code_and_the_report(fleet, beacon):
    f = fleet(2)
    hold_at_validate(f, beacon)
    run = Run(f, "-P", "1")
    beacon.wait(1, timeout=30, proc=run.proc)
    run.proc.send_signal(signal.SIGTERM)
    run.wait_stderr("stopping")
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGINT, signal.SIGTERM):  # while it stops
        run.proc.send_signal(sig)
    assert run.finish(timeout=30) == 143
    assert run.consistent(143)["signal"] == 15


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.1, 0.2])
def test_sigint_in_the_first_moments_exits_130(fleet, delay):
    """From the command's first line (its entry module has run: ``-X importtime`` says so on
    stderr, the event) a Ctrl-C is 130 with one line, not an import's traceback and exit 1."""
    f = fleet(1)
    run = Run(f, python=("-X", "importtime"))
    line = run.proc.stderr.readline()
    while line and "concurdeploy.executors.interrupts" not in line:  # bounded by the process's output
        line = run.proc.stderr.readline()
    assert line, "the command ended before its entry point ran"
    time.sleep(delay)  # the moment itself is what is tested (within the CLI's ≈0.25 s of loading)
    run.proc.send_signal(signal.SIGINT)
    code = run.finish()
    assert code == 130, (code, run.out, run.err[-2000:])
    assert "Traceback" not in run.err and "interrupted (SIGINT)" in run.err
    if run.report.exists():
        assert run.doc()["exit_code"] == 130
    assert not f.dest("h1").exists()


def test_a_worker_killed_mid_run_makes_its_host_unreachable_at_once(fleet, beacon):
    f = fleet(2)
    hold_at_validate(f, beacon, seconds=30)
    run = Run(f, "-P", "1", env={"CONCURDEPLOY_PROCESSES": "1"})
    beacon.wait(1, timeout=30, proc=run.proc)
    workers = workers_of(run.proc.pid)
    assert workers, _descendants(run.proc.pid)
    killed = time.monotonic()
    for p in workers:
        os.kill(p, signal.SIGKILL)
    beacon.wait(2, timeout=30, proc=run.proc)  # h2 reached its validate on a new worker
    assert time.monotonic() - killed < 10
    run.proc.send_signal(signal.SIGINT)  # done with the test: stop h2's 30 s validate
    assert run.finish() == 130
    doc = run.consistent(130)
    h1 = next(h for h in doc["hosts"] if h["host"] == "h1")
    assert h1["status"] == "unreachable" and h1["error_kind"] == "WorkerLost", h1
    assert "died" in h1["error"]


def test_a_worker_killed_mid_run_is_retried_with_retries(fleet, beacon, tmp_path):
    f = fleet(1)
    once = tmp_path / "once"
    # the first attempt says so on the beacon and blocks; the retry finds the mark and goes on
    f.write_inventory(files=[{"src": "files/haproxy/haproxy.cfg", "dest": DEST,
                              "validate": f"if [ ! -e '{once}' ]; then touch '{once}'; "
                                          f"{beacon.command('validate')}; sleep 30; fi; test -s {{tmp}}"}])
    run = Run(f, "--retries", "1", env={"CONCURDEPLOY_PROCESSES": "1"})
    beacon.wait(1, timeout=30, proc=run.proc)
    for p in workers_of(run.proc.pid):
        os.kill(p, signal.SIGKILL)
    assert run.finish(timeout=60) == 0
    run.consistent(0)
    assert run.statuses() == {"h1": "changed"}
    assert f.dest("h1").read_bytes() == HAPROXY_CFG
    # the killed attempt's upload is removed by the retry: its run's lock-holding process is gone
    assert f.temp_files() == [], f.temp_files()
    assert run.took < 30, run.took  # not after the first attempt's sleep


def test_kill_9_of_the_controller_ends_its_workers_and_no_new_host_is_pushed(fleet, beacon):
    f = fleet(3)
    hold_at_validate(f, beacon, seconds=5)
    run = Run(f, "-P", "1", env={"CONCURDEPLOY_PROCESSES": "1"})
    beacon.wait(1, timeout=30, proc=run.proc)
    family = _descendants(run.proc.pid)
    assert workers_of(run.proc.pid)
    run.proc.kill()
    run.finish()
    left = _wait_pids_gone(family, timeout=5)
    assert left == [], [(p, cmdline(p)) for p in left]
    # h1's validate (5 s) ends on the host by itself; no worker is left to go on to h2 or h3
    assert not f.dest("h2").exists() and not f.dest("h3").exists()
    assert not any(_pid_alive(p) for p in family)


# ---------------------------------------------------------------------------- #14.3 classification

CONNECT_TIMEOUT = 3
#: Seconds on top of a timeout that a verdict may take (process start-up on 2 busy cores).
GRACE = 6


def through_relay(f, name: str, relay) -> None:
    """Make host ``name`` connect through ``relay`` (its key known under the relay's port)."""
    i = f.names.index(name)
    f.host_vars[name] = {"port": relay.port}
    with open(f.known_hosts, "a") as kh:
        kh.write(f"[127.0.0.1]:{relay.port} {f.servers[i].host_public_key_line}\n")


def one_sentence(h: dict) -> str:
    err = h["error"] or ""
    assert err and "\n" not in err and len(err) < 400, err
    return err


def test_a_connection_dropped_mid_upload_is_unreachable_with_one_sentence(fleet):
    f = fleet(1)
    (f.project / "files" / "big.bin").write_bytes(os.urandom(1 << 20) * 8)  # 8 MiB
    relay = Relay(f.servers[0].port, cut_after=3 << 20)
    try:
        through_relay(f, "h1", relay)
        f.write_inventory(connect_timeout=CONNECT_TIMEOUT,
                          files=[{"src": "files/big.bin", "dest": "{{ root }}/etc/haproxy/big.bin"}])
        run = Run(f)
        assert run.finish() == 1
        assert relay.was_cut.is_set()
    finally:
        relay.close()
    h1 = run.host("h1")
    assert h1["status"] == "unreachable", (h1, run.err)
    run.consistent(1)
    assert "upload" in one_sentence(h1), h1
    assert not (f.root("h1") / "etc" / "haproxy" / "big.bin").exists()
    assert run.took < CONNECT_TIMEOUT + GRACE, run.took


def _drop_at_reload(f, beacon) -> Run:
    f.dest("h1").write_bytes(OLD)
    relay = Relay(f.servers[0].port)
    try:
        through_relay(f, "h1", relay)
        f.write_inventory(connect_timeout=CONNECT_TIMEOUT, reload=f"{beacon.command('reload')}; sleep 30")
        run = Run(f)
        beacon.wait(1, timeout=30, proc=run.proc)
        cut = time.monotonic()
        relay.cut()
        assert run.finish() == 1
        assert time.monotonic() - cut < CONNECT_TIMEOUT + GRACE
    finally:
        relay.close()
    run.consistent(1)
    return run


def test_a_connection_dropped_at_reload_is_unreachable(fleet, beacon):
    f = fleet(1)
    run = _drop_at_reload(f, beacon)
    h1 = run.host("h1")
    assert h1["status"] == "unreachable", h1
    one_sentence(h1)
    assert f.dest("h1").read_bytes() == HAPROXY_CFG  # replaced before the drop


def test_a_connection_dropped_at_reload_says_which_files_were_replaced(fleet, beacon):
    f = fleet(1)
    run = _drop_at_reload(f, beacon)
    h1 = run.host("h1")
    assert [c["dest"] for c in h1["changes"]] == [str(f.dest("h1"))], h1
    line = next(ln for ln in run.out.splitlines() if ln.startswith("h1 "))
    assert f"already {f.dest('h1')} replaced" in line, run.out


def test_a_banner_then_silence_host_is_unreachable_within_the_connect_timeout_once(fleet):
    f = fleet(1)
    server = BannerServer()
    try:
        f.host_vars = {"h1": {"port": server.port}}
        f.write_inventory(connect_timeout=CONNECT_TIMEOUT)
        run = Run(f)
        assert run.finish() == 1
        assert server.connections == 1  # no hidden retry multiplying the timeout
    finally:
        server.close()
    run.consistent(1)
    h1 = run.host("h1")
    assert h1["status"] == "unreachable" and "timed out" in one_sentence(h1), h1
    assert run.took < CONNECT_TIMEOUT + GRACE, run.took


def test_a_frozen_host_is_unreachable_within_the_connect_timeout(fleet):
    f = fleet(2)
    f.write_inventory(connect_timeout=CONNECT_TIMEOUT)
    os.kill(f.servers[0].pid, signal.SIGSTOP)  # the kernel still accepts; sshd never answers
    try:
        run = Run(f)
        assert run.finish() == 1
    finally:
        os.kill(f.servers[0].pid, signal.SIGCONT)
    run.consistent(1)
    assert run.statuses() == {"h1": "unreachable", "h2": "changed"}
    one_sentence(run.host("h1"))
    assert run.took < CONNECT_TIMEOUT + GRACE, run.took


def test_a_host_frozen_mid_step_is_unreachable_within_the_connect_timeout(fleet, beacon):
    f = fleet(1)
    f.dest("h1").write_bytes(OLD)
    hold_at_validate(f, beacon, seconds=1, connect_timeout=CONNECT_TIMEOUT, command_timeout=40)
    run = Run(f)
    beacon.wait(1, timeout=30, proc=run.proc)
    frozen = freeze(f.servers[0])
    try:
        start = time.monotonic()
        code = run.finish()
        took = time.monotonic() - start
    finally:
        thaw(frozen)
    assert code == 1
    run.consistent(1)
    h1 = run.host("h1")
    assert h1["status"] == "unreachable", h1
    one_sentence(h1)
    assert f.dest("h1").read_bytes() == OLD
    assert took < CONNECT_TIMEOUT + GRACE, took


# ---------------------------------------------------------------------------- #14.5 controller clean-up

def _shared_memory(pids) -> set:
    """Files under /dev/shm (POSIX semaphores, shared memory) mapped by ``pids`` now."""
    names = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/maps") as maps:
                names |= {ln.split(None, 5)[5].strip() for ln in maps
                          if len(ln.split(None, 5)) == 6 and "/dev/shm/" in ln}
        except OSError:
            pass
    return {n.replace(" (deleted)", "") for n in names if not n.endswith("(deleted)")}


@pytest.mark.parametrize("how", ["finished", "sigint", "sigterm", "hard_stop"])
def test_the_controller_leaves_no_temp_files_or_semaphores(fleet, beacon, tmp_path, how):
    f = fleet(2)
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    hold_at_validate(f, beacon, seconds=20 if how != "finished" else 2)
    run = Run(f, "-P", "1", env={"TMPDIR": str(scratch)})
    beacon.wait(1, timeout=30, proc=run.proc)
    shared = _shared_memory([run.proc.pid, *_descendants(run.proc.pid)])  # while the run is on
    if how != "finished":
        run.proc.send_signal(signal.SIGTERM if how == "sigterm" else signal.SIGINT)
        if how == "hard_stop":
            run.wait_stderr("stopping")
            run.proc.send_signal(signal.SIGINT)
    code = run.finish()
    assert code == {"finished": 0, "sigint": 130, "sigterm": 143, "hard_stop": 130}[how], run.err
    run.consistent(code)
    assert list(scratch.iterdir()) == []  # the fork server's socket dir, report temp files
    assert [n for n in shared if os.path.exists(n)] == []
    if how != "hard_stop":  # a hard stop kills the worker where it is: its upload waits for the sweep
        assert f.temp_files() == []


def test_a_worker_killed_while_streaming_a_flood_of_output_is_seen_at_once_and_sigterm_still_works(fleet, beacon):
    f = fleet(2)
    # h1 floods its output (≈1 GB if let run); h2 waits for its turn (-P 1)
    run = Run(f, "-P", "1", env={"CONCURDEPLOY_PROCESSES": "1"},
              task=("run", "haproxy", f"{beacon.command('flood')}; yes 0123456789abcdef | head -c 1000000000"),
              stdout_file=f.project / "stdout.txt")
    beacon.wait(1, timeout=30, proc=run.proc)
    for p in workers_of(run.proc.pid):
        os.kill(p, signal.SIGKILL)
    beacon.wait(2, timeout=30, proc=run.proc)  # h2 started on a new worker: the death was seen
    run.proc.send_signal(signal.SIGTERM)
    assert run.finish(timeout=60) == 143
    doc = run.consistent(143)
    assert doc["signal"] == 15
    h1 = run.host("h1")
    assert h1["status"] == "unreachable" and h1["error_kind"] == "WorkerLost", h1


def _replaced_then_dropped(conn, payload):
    """An action that replaced a file, then lost its connection (as a drop at reload does)."""
    from concurdeploy.exceptions import HostUnreachable
    from concurdeploy.records import FileChange

    conn.run("true")
    e = HostUnreachable("connection dropped while running: reload")
    e.changes = (FileChange("/etc/haproxy/haproxy.cfg", None, "ab" * 32, 3),)
    raise e


def test_files_an_action_says_it_replaced_are_reported_even_when_it_then_failed(sshd_factory, client_keys,
                                                                                known_hosts_file):
    from concurdeploy.executors.core import Job, run_host
    from concurdeploy.ssh.specs import ConnectSpec
    from tests.sshd import login_user

    (srv,) = sshd_factory(1)
    spec = ConnectSpec(name="h1", hostname="127.0.0.1", port=srv.port, user=login_user(),
                       key_file=client_keys.ed25519, known_hosts=known_hosts_file([srv]), connect_timeout=5,
                       command_timeout=20, allow_agent=False)
    result = run_host(Job(spec, _replaced_then_dropped))
    assert result.status.value == "unreachable"
    assert [c.dest for c in result.changes] == ["/etc/haproxy/haproxy.cfg"]


# ---------------------------------------------------------------------------- #14.5 clean-up

def _dead_pid() -> int:
    """The PID of a process that has ended (and been reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait(timeout=30)
    return proc.pid


def test_leftovers_of_a_run_that_died_are_removed_at_once_and_a_live_runs_kept(fleet, tmp_path):
    f = fleet(1)
    d = f.dest("h1").parent
    hexes = "%032x"
    zombie = subprocess.Popen(["true"])  # ended, never reaped (as under a PID 1 that reaps nothing)
    dead, alive = _dead_pid(), os.getpid()  # the host is this machine: one PID space
    stale = d / f".haproxy.concurdeploy-{hexes % 1}-{zombie.pid}.cfg"  # a minute old: not the 10 minutes
    live = d / f".haproxy.concurdeploy-{hexes % 2}-{alive}.cfg"  # a run still holding its lock
    stage_stale = Path(f"/tmp/.concurdeploy-stage-{hexes % 3}-{dead}")
    stage_live = Path(f"/tmp/.concurdeploy-stage-{hexes % 4}-{alive}")
    try:
        assert _wait_pids_gone([zombie.pid], 30) == []  # it has exited: a zombie from here on
        for p in (stale, live, stage_stale, stage_live):
            p.write_text("upload\n")
            os.utime(p, (time.time() - 60, time.time() - 60))
        run = Run(f)
        assert run.finish() == 0, run.err
        assert not stale.exists() and not stage_stale.exists()
        assert live.exists() and stage_live.exists()
        warnings = run.host("h1")["warnings"]
        assert f"removed 1 temporary file in {d} left by an earlier run that did not finish" in warnings, warnings
        # (/tmp is the machine's: another run of this code may have swept stage_stale first)
    finally:
        zombie.wait(timeout=30)
        for p in (stale, live, stage_stale, stage_live):
            p.unlink(missing_ok=True)
