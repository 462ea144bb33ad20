"""The fault-injection matrix of issue #14: each fault × each step of a push × each executor,
against a real OpenSSH sshd on loopback, with the real ``concurdeploy`` command as a subprocess.

Faults: the host's sshd killed (SIGKILL, sessions too), stopped (SIGSTOP, sessions too), the
controller sent SIGINT or SIGTERM, the worker process(es) SIGKILLed (the local pool's worker;
with Dask, the cluster's worker processes: their nannies start new ones).
Steps, each reached as an event: ``connect`` (a relay holds the accepted TCP connection),
``upload`` (the relay pauses after 1 MiB of a 4 MiB file; 4 KiB files elsewhere), ``validate``,
``reload`` and ``healthcheck`` (the command writes to a FIFO, then runs 2 s), ``rename`` (the
host's SFTP server, behind ``tests/sftp_proxy.py``, writes to the FIFO at the rename request and
holds it 2 s). Executors: ``local`` (one worker process), every fault × every step; ``inline``
(the hosts in the controller's own threads: the default for up to 64 hosts) and ``dask`` (a
``distributed.LocalCluster`` of 2 worker processes, the cluster of ``test_dask.py``), every fault
× the steps of :data:`SOME_STEPS` (all of them with ``CD_FULL_FAULT_MATRIX=1``); ``inline`` has
no worker to kill.

Asserted in every cell: the exit code is the fault's (1 for a host/worker fault, 130, 143)
and the JSON report's; the host's status is one the fault allows; the destination is the
old or the new content byte for byte; no library traceback or path in output or report;
the wall time from the fault is within ``connect_timeout`` + the step's 2 s + a grace; for
controller signals, no temporary file is left beside the destination (for a dead or frozen
host or a killed worker the controller cannot remove it: counted; the next push removes it,
``test_faults.py``); on the host, no process started by the run's SSH sessions is left (within
5 s of the exit after a controller signal, whose kill switch ends them; within the step's
2 s + 5 s after a host or worker fault, where nothing on the host can be told).
The counts are printed at the end (``-s`` not needed) and published in the README.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.integration.faultkit import Relay, Run, remote_leftovers, thaw, workers_of
from tests.sshd import Beacon, _descendants

pytestmark = pytest.mark.integration

EXECUTORS = ["local", "inline", "dask"]
FAULTS = ["sshd_killed", "sshd_stopped", "sigint", "sigterm", "worker_killed"]
STEPS = ["connect", "upload", "validate", "rename", "reload", "healthcheck"]
#: Steps run through Dask and the controller's threads in the serial part of CI (every fault
#: at each): the handshake, a step before the last safe point (validate: abort and kill
#: switch) and one after it (rename: the shielded finish); ``CD_FULL_FAULT_MATRIX=1`` runs
#: every step (≈ 10 more minutes).
SOME_STEPS = STEPS if os.environ.get("CD_FULL_FAULT_MATRIX") else ["connect", "validate", "rename"]
CELLS = [(kind, fault, step) for kind in EXECUTORS for fault in FAULTS
         for step in (STEPS if kind == "local" else SOME_STEPS)
         if not (kind == "inline" and fault == "worker_killed")]
#: ``CONCURDEPLOY_PROCESSES`` per executor: 1 = one worker process, 0 = automatic (a few
#: hosts: the controller's threads); Dask ignores it.
PROCESSES = {"local": "1", "inline": "0", "dask": "1"}
CONNECT_TIMEOUT = 3
STEP_S = 2
GRACE = 10
OLD = b"old\n"
NEW = os.urandom(1 << 20) * 4  # 4 MiB for the upload step: the upload takes several round trips
NEW_SMALL = os.urandom(4096)  # the other steps: no time spent uploading
PROXY = Path(__file__).resolve().parent.parent / "sftp_proxy.py"
SFTP_SERVERS = ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server", "/usr/lib/ssh/sftp-server")

EXIT = {"sshd_killed": 1, "sshd_stopped": 1, "sigint": 130, "sigterm": 143, "worker_killed": 1}
STATUS = {"sshd_killed": {"unreachable"}, "sshd_stopped": {"unreachable"},
          "sigint": {"failed", "skipped", "changed"}, "sigterm": {"failed", "skipped", "changed"},
          "worker_killed": {"unreachable"}}

_matrix: dict[str, Counter] = {kind: Counter() for kind in EXECUTORS}


@pytest.fixture(scope="module", autouse=True)
def print_matrix(request):
    """At the end of the module, print the matrix counts on the terminal."""
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or not any(_matrix.values()):  # e.g. under xdist, or nothing ran
        return
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        for kind, m in _matrix.items():
            if not m:
                continue
            reporter.write_line(
                f"fault matrix ({kind} executor): {m['cells']} cells, {m['passed']} passed; dest old {m['old']}, "
                f"new {m['new']}; temp files left {m['temp_left']} (dead/frozen host, killed worker); "
                f"remote processes left {m['procs_left']}; statuses "
                f"{dict(sorted((k[7:], v) for k, v in m.items() if k.startswith('status:')))}; "
                f"{m['seconds']:.0f} s")


@pytest.fixture(scope="module")
def dask_cluster(client_keys, tmp_path_factory):
    """``test_dask.py``'s LocalCluster for this module: ``(scheduler_address, client)``."""
    from tests.integration.test_dask import local_cluster

    with local_cluster(client_keys, tmp_path_factory.mktemp("dask-scratch")) as running:
        yield running


@pytest.fixture
def executor(request, kind):
    """``(kind, extra CLI args, Dask client or None)``; a Dask cell ends with the cluster back
    at 2 workers (a killed worker's nanny starts a new one)."""
    if kind in ("local", "inline"):
        yield kind, (), None
        return
    address, client = request.getfixturevalue("dask_cluster")
    yield kind, ("--executor", "dask", "--scheduler", address), client
    client.wait_for_workers(2, timeout=60)
    end = time.monotonic() + 60
    while len(client.nthreads()) != 2 and time.monotonic() < end:  # bounded: 60 s
        time.sleep(0.2)


def _signal_tree(pid: int, sig: int) -> list[int]:
    pids = [pid, *_descendants(pid)]
    for p in pids:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass
    return pids


def _rename_proxy(beacon_path: str) -> str:
    """sshd_config lines: SFTP through ``tests/sftp_proxy.py``, which holds each rename."""
    server = next((s for s in SFTP_SERVERS if os.path.exists(s)), None)
    if server is None:
        pytest.fail("no OpenSSH sftp-server found (openssh-server installs it)")
    return f"Subsystem sftp {sys.executable} {PROXY} --keep --beacon {beacon_path} --hold {STEP_S} {server}\n"


def _kill_workers(run: Run, client) -> None:
    """SIGKILL the worker process running the host: the local pool's, or the Dask worker
    processing its task (every Dask worker if none is seen processing one)."""
    if client is None:
        workers = workers_of(run.proc.pid)
    else:
        pids, busy = client.run(os.getpid), client.processing()
        workers = [pid for addr, pid in pids.items() if busy.get(addr)] or list(pids.values())
    assert workers, "no worker process found"
    for p in workers:
        os.kill(p, signal.SIGKILL)


@pytest.mark.parametrize("kind, fault, step", CELLS, ids=["-".join(c) for c in CELLS])
def test_fault_at_step(fleet, tmp_path, executor, kind, fault, step):
    kind, args, client = executor
    m = _matrix[kind]
    m["cells"] += 1
    t0 = time.monotonic()
    beacon = Beacon(tmp_path / "beacon")
    frozen: list[int] = []
    try:
        f = fleet(1, extra_config=_rename_proxy(beacon.path) if step == "rename" else "")
        f.dest("h1").write_bytes(OLD)
        new = NEW if step == "upload" else NEW_SMALL
        (f.project / "files" / "haproxy" / "haproxy.cfg").write_bytes(new)
        server = f.servers[0]
        relay = Relay(server.port, hold=step == "connect", pause_after=(1 << 20) if step == "upload" else None)
        f.host_vars = {"h1": {"port": relay.port}}
        with open(f.known_hosts, "a") as kh:
            kh.write(f"[127.0.0.1]:{relay.port} {server.host_public_key_line}\n")
        hold = f"{beacon.command(step)}; sleep {STEP_S}"
        f.write_inventory(connect_timeout=CONNECT_TIMEOUT, command_timeout=20,
                          files=[{"src": "files/haproxy/haproxy.cfg", "dest": "{{ root }}/etc/haproxy/haproxy.cfg",
                                  "validate": f"{hold}; test -s {{tmp}}" if step == "validate" else "test -s {tmp}"}],
                          reload=hold if step == "reload" else "true",
                          **({"healthcheck": hold} if step == "healthcheck" else {}))
        run = Run(f, *args, env={"CONCURDEPLOY_PROCESSES": PROCESSES[kind]})
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
                _kill_workers(run, client)
            relay.release()
            code = run.finish(timeout=60)
            after = time.monotonic() - struck
        finally:
            thaw(frozen)
            relay.close()
        # on the host: nothing the run started is left (a signal's kill switch ended it; after
        # a host or worker fault only the step's own 2 s can run out)
        left = remote_leftovers(server.port, 5 if fault in ("sigint", "sigterm") else STEP_S + 5)
    finally:
        beacon.close()
        m["seconds"] += time.monotonic() - t0
    m["procs_left"] += len(left)
    assert code == EXIT[fault], (code, run.out, run.err)
    run.consistent(code)
    status = run.host("h1")["status"]
    m[f"status:{status}"] += 1
    assert status in STATUS[fault], run.host("h1")
    content = f.dest("h1").read_bytes()
    assert content in (OLD, new), "destination is neither old nor new"
    m["old" if content == OLD else "new"] += 1
    temps = f.temp_files()
    m["temp_left"] += len(temps)
    if fault in ("sigint", "sigterm"):
        assert temps == [], temps
    assert left == [], left
    assert after < CONNECT_TIMEOUT + STEP_S + GRACE, after
    m["passed"] += 1
