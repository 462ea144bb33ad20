"""The fault-injection matrix of issue #14: each fault × each step of a push, through the
local executor, against a real OpenSSH sshd on loopback, with the real ``concurdeploy``
command as a subprocess.

Faults: the host's sshd killed (SIGKILL, sessions too), stopped (SIGSTOP, sessions too), the
controller sent SIGINT or SIGTERM, the worker process holding the host SIGKILLed.
Steps, each reached as an event: ``connect`` (a relay holds the accepted TCP connection),
``upload`` (the relay pauses after 1 MiB of an 4 MiB file), ``validate`` and ``reload`` (the
command writes to a FIFO, then runs 3 s).

Asserted in every cell: the exit code is the fault's (1 for a host/worker fault, 130, 143)
and the JSON report's; the host's status is one the fault allows; the destination is the
old or the new content byte for byte; no library traceback or path in output or report;
the wall time from the fault is within ``connect_timeout`` + the step's 3 s + a grace; for
controller signals, no temporary file is left beside the destination (for a dead or frozen
host the controller cannot remove it: counted, and swept by a later run after 10 minutes).
The counts are printed at the end (``-s`` not needed) and published in the README.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import pytest

from tests.integration.faultkit import Relay, Run, thaw, workers_of
from tests.sshd import Beacon, _descendants

pytestmark = pytest.mark.integration

FAULTS = ["sshd_killed", "sshd_stopped", "sigint", "sigterm", "worker_killed"]
STEPS = ["connect", "upload", "validate", "reload"]
CONNECT_TIMEOUT = 3
STEP_S = 3
GRACE = 10
OLD = b"old\n"
NEW = os.urandom(1 << 20) * 4  # 4 MiB: the upload takes several round trips

EXIT = {"sshd_killed": 1, "sshd_stopped": 1, "sigint": 130, "sigterm": 143, "worker_killed": 1}
STATUS = {"sshd_killed": {"unreachable"}, "sshd_stopped": {"unreachable"},
          "sigint": {"failed", "skipped", "changed"}, "sigterm": {"failed", "skipped", "changed"},
          "worker_killed": {"unreachable"}}

_matrix: Counter = Counter()


@pytest.fixture(scope="module", autouse=True)
def print_matrix(request):
    """At the end of the module, print the matrix counts on the terminal."""
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or not _matrix:  # e.g. under xdist, or nothing ran
        return
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line(f"fault matrix (local executor): {_matrix['cells']} cells, {_matrix['passed']} passed; "
                            f"dest old {_matrix['old']}, new {_matrix['new']}; temp files left "
                            f"{_matrix['temp_left']} (dead/frozen host); statuses "
                            f"{dict(sorted((k[7:], v) for k, v in _matrix.items() if k.startswith('status:')))}")


def _signal_tree(pid: int, sig: int) -> list[int]:
    pids = [pid, *_descendants(pid)]
    for p in pids:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass
    return pids


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("fault", FAULTS)
def test_fault_at_step(fleet, tmp_path, fault, step):
    _matrix["cells"] += 1
    f = fleet(1)
    f.dest("h1").write_bytes(OLD)
    (f.project / "files" / "haproxy" / "haproxy.cfg").write_bytes(NEW)
    server = f.servers[0]
    relay = Relay(server.port, hold=step == "connect", pause_after=(1 << 20) if step == "upload" else None)
    f.host_vars = {"h1": {"port": relay.port}}
    with open(f.known_hosts, "a") as kh:
        kh.write(f"[127.0.0.1]:{relay.port} {server.host_public_key_line}\n")
    frozen: list[int] = []
    with Beacon(tmp_path / "beacon") as beacon:
        hold = f"{beacon.command(step)}; sleep {STEP_S}"
        f.write_inventory(connect_timeout=CONNECT_TIMEOUT, command_timeout=20,
                          files=[{"src": "files/haproxy/haproxy.cfg", "dest": "{{ root }}/etc/haproxy/haproxy.cfg",
                                  "validate": f"{hold}; test -s {{tmp}}" if step == "validate" else "test -s {tmp}"}],
                          reload=hold if step == "reload" else "true")
        run = Run(f, env={"CONCURDEPLOY_PROCESSES": "1"})
        try:
            if step == "connect":
                assert relay.accepted.wait(30), "the controller never connected"
            elif step == "upload":
                assert relay.paused.wait(30), "the upload never started"
            else:
                beacon.wait(1, timeout=30, proc=run.proc)
            struck = time.monotonic()
            if fault == "sshd_killed":
                _signal_tree(server.pid, signal.SIGKILL)
            elif fault == "sshd_stopped":
                frozen = _signal_tree(server.pid, signal.SIGSTOP)
            elif fault == "sigint":
                run.proc.send_signal(signal.SIGINT)
            elif fault == "sigterm":
                run.proc.send_signal(signal.SIGTERM)
            else:
                workers = workers_of(run.proc.pid)
                assert workers, "no worker process found"
                for p in workers:
                    os.kill(p, signal.SIGKILL)
            relay.release()
            code = run.finish(timeout=60)
            after = time.monotonic() - struck
        finally:
            thaw(frozen)
            relay.close()
    assert code == EXIT[fault], (code, run.out, run.err)
    run.consistent(code)
    status = run.host("h1")["status"]
    _matrix[f"status:{status}"] += 1
    assert status in STATUS[fault], run.host("h1")
    content = f.dest("h1").read_bytes()
    assert content in (OLD, NEW), "destination is neither old nor new"
    _matrix["old" if content == OLD else "new"] += 1
    temps = f.temp_files()
    _matrix["temp_left"] += len(temps)
    if fault in ("sigint", "sigterm"):
        assert temps == [], temps
    assert after < CONNECT_TIMEOUT + STEP_S + GRACE, after
    _matrix["passed"] += 1
