"""``--executor dask`` (issue 7): a rollout sharded over a Dask cluster keeps every guarantee of
a local run. A real ``distributed.LocalCluster`` (2 worker processes with nannies, loopback)
started once for the module, real OpenSSH sshd hosts, the real ``concurdeploy`` command.

Every run is bounded (subprocess timeouts, bounded polling loops); the cluster and the extra
worker are stopped by the fixtures even when a test fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from tests.sshd import free_port

from .conftest import HAPROXY_CFG

pytestmark = pytest.mark.integration

DEST = "{{ root }}/etc/haproxy/haproxy.cfg"
OLD = b"old config\n"
NEW_SHA = hashlib.sha256(HAPROXY_CFG).hexdigest()
OLD_SHA = hashlib.sha256(OLD).hexdigest()

try:
    import distributed
except ImportError:  # pragma: no cover - the test extra installs it
    distributed = None


@contextlib.contextmanager
def local_cluster(client_keys, scratch: Path):
    """A LocalCluster of 2 worker processes (with nannies) on 127.0.0.1 and a client to it:
    yields ``(scheduler_address, client)``; both closed on exit.

    The workers' environment holds ``CD_WORKER_KEY`` (an authorised private key) that the
    controller never has: credentials are resolved on the worker. Skips (fails under ``CI``)
    without the extra.
    """
    if distributed is None:
        msg = "dask[distributed] is not installed: pip install -e '.[test]'"
        if os.environ.get("CI"):
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    cl = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=2, host="127.0.0.1",
                                  dashboard_address=None, local_directory=str(scratch),
                                  env={"CD_WORKER_KEY": Path(client_keys.ecdsa).read_text()})
    try:
        client = distributed.Client(cl.scheduler_address, set_as_default=False, timeout=30)
        try:
            client.wait_for_workers(2, timeout=60)
            yield cl.scheduler_address, client
        finally:
            client.close()
    finally:
        cl.close(timeout=30)


@pytest.fixture(scope="module")
def cluster(client_keys, tmp_path_factory):
    """:func:`local_cluster` for the module: ``(scheduler_address, client)``."""
    with local_cluster(client_keys, tmp_path_factory.mktemp("dask-scratch")) as running:
        yield running


def dask_args(cluster, *more) -> tuple:
    return ("--executor", "dask", "--scheduler", cluster[0], *more)


def worker_pids(client) -> dict:
    return client.run(os.getpid)


def settle_cluster(client, n: int = 2) -> None:
    """Wait (bounded) until the cluster has ``n`` live workers again (a nanny restarts a killed one)."""
    client.wait_for_workers(n, timeout=60)
    end = time.monotonic() + 60
    while len(client.nthreads()) != n and time.monotonic() < end:
        time.sleep(0.2)
    assert len(client.nthreads()) == n


class HostEvents:
    """A FIFO that the hosts' shell commands write one line to (``echo NAME >> FIFO``: the
    hosts are sshd on this machine) and that the test waits on with ``select``, not sleep.

    The test holds a writer end too, so the reader never sees EOF between writers, and writers
    never block (the pipe buffers 64 KiB). Use as a context manager.
    """

    def __init__(self, path: Path):
        os.mkfifo(path)
        self.path = path
        self._r = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self._w = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        self._buf = b""
        self.lines: list[str] = []

    def __enter__(self) -> HostEvents:
        return self

    def __exit__(self, *exc) -> None:
        os.close(self._r)
        os.close(self._w)

    def wait_for(self, n: int, timeout: float, alive=lambda: True) -> list[str]:
        """Lines received, once there are ``n`` (or ``timeout`` s passed, or ``alive()`` is False;
        it is asked at least every second)."""
        end = time.monotonic() + timeout
        while len(self.lines) < n and alive():
            left = end - time.monotonic()
            if left <= 0:
                break
            if select.select([self._r], [], [], min(left, 1.0))[0]:
                self._buf += os.read(self._r, 65536)
                *complete, self._buf = self._buf.split(b"\n")
                self.lines += [ln.decode() for ln in complete]
        return self.lines


def report(path) -> dict:
    return json.loads(Path(path).read_text())


def per_host(rep: dict) -> dict:
    """host -> what must match between executors: status, error kind, changes, reload."""
    return {h["host"]: (h["status"], h["error_kind"], h["reloaded"],
                        [(c["dest"], c["sha256_before"], c["sha256_after"], c["action"]) for c in h["changes"]])
            for h in rep["hosts"]}


def recap_counts(out: str) -> str:
    """``RECAP  16 hosts in 2.1 s: ok 1, changed 13, …`` without the time."""
    line = next(ln for ln in out.splitlines() if ln.startswith("RECAP"))
    return re.sub(r" in [\d.]+ s", "", line)


def recap_statuses(out: str) -> dict:
    """host -> status from the RECAP block."""
    lines = out.split("RECAP", 1)[1].splitlines()[1:]
    return {ln.split()[0]: ln.split()[1] for ln in lines
            if ln.strip() and not ln.strip().startswith(("batch", "stopped"))}


def snapshot(root: Path) -> Path:
    copy = root.parent / f"{root.name}-initial"
    shutil.copytree(root, copy, symlinks=True)
    return copy


def restore(root: Path, copy: Path) -> None:
    shutil.rmtree(root)
    shutil.copytree(copy, root, symlinks=True)


# ------------------------------------------------------------------------------- same as local

def test_push_through_dask_gives_the_same_recap_and_report_as_the_local_pool(fleet, cluster, tmp_path):
    f = fleet(16)
    (f.project / "files" / "app.cfg.j2").write_text("name = {{ inventory_hostname }}\nport = {{ port }}\n")
    f.write_inventory(files=[{"src": "files/haproxy/haproxy.cfg", "dest": DEST},
                             {"src": "files/app.cfg.j2", "dest": "{{ root }}/etc/haproxy/app.cfg"}])
    shutil.rmtree(f.root("h3") / "etc" / "haproxy")          # h3: no destination directory -> failed
    f.dest("h7").write_bytes(HAPROXY_CFG)                      # h7: already up to date -> ok
    (f.root("h7") / "etc" / "haproxy" / "app.cfg").write_text(f"name = h7\nport = {f.servers[6].port}\n")
    for n in ("h2", "h9", "h16"):
        f.dest(n).write_bytes(OLD)                             # replaced (not created)
    f.servers[4].stop()                                        # h5: unreachable
    initial = snapshot(f.project / "roots")

    local = f.run("push", "haproxy", "--report-json", str(tmp_path / "local.json"))
    restore(f.project / "roots", initial)
    dask = f.run("push", "haproxy", "--report-json", str(tmp_path / "dask.json"), *dask_args(cluster))

    assert local.returncode == dask.returncode == 1, dask.stdout + dask.stderr
    a, b = report(tmp_path / "local.json"), report(tmp_path / "dask.json")
    assert per_host(a) == per_host(b)
    assert a["totals"] == b["totals"] == {"hosts": 16, "ok": 1, "changed": 13, "failed": 1,
                                          "unreachable": 1, "skipped": 0}
    assert a["failed_hosts"] == b["failed_hosts"] == ["h3", "h5"] and a["stopped"] == b["stopped"] is None
    assert recap_counts(local.stdout) == recap_counts(dask.stdout)
    for n in f.names:
        if n not in ("h3", "h5"):
            assert f.dest(n).read_bytes() == HAPROXY_CFG
            assert (f.root(n) / "etc" / "haproxy" / "app.cfg").read_text().startswith(f"name = {n}\n")
    assert f.temp_files() == []
    # every contacted host says which worker pushed it, and both workers took a share
    workers = {h["data"]["dask_worker"]["address"] for h in b["hosts"] if h["data"].get("dask_worker")}
    assert workers == set(cluster[1].nthreads()), workers
    # run again: nothing to do anywhere (idempotent through the cluster too)
    again = f.run("push", "haproxy", "--limit", "!h3:!h5", *dask_args(cluster))
    assert again.returncode == 0 and " 0 changed" in recap_counts(again.stdout), again.stdout


def test_serial_max_fail_and_fail_fast_stop_at_the_same_place(fleet, cluster, tmp_path):
    f = fleet(8)
    for n in ("h3", "h4"):
        shutil.rmtree(f.root(n) / "etc" / "haproxy")
    initial = snapshot(f.project / "roots")
    env = {"CONCURDEPLOY_EXECUTOR": "dask", "CONCURDEPLOY_SCHEDULER": cluster[0]}  # config route
    for args in (["--serial", "2", "--max-fail", "1"], ["--serial", "1", "--fail-fast"]):
        local = f.run("push", "haproxy", *args, "--executor", "local", "--report-json", str(tmp_path / "l.json"),
                      env=env)
        restore(f.project / "roots", initial)
        dask = f.run("push", "haproxy", *args, "--report-json", str(tmp_path / "d.json"), env=env)
        restore(f.project / "roots", initial)
        a, b = report(tmp_path / "l.json"), report(tmp_path / "d.json")
        assert local.returncode == dask.returncode == 1, dask.stdout + dask.stderr
        assert per_host(a) == per_host(b), args
        assert [h["batch"] for h in a["hosts"]] == [h["batch"] for h in b["hosts"]]
        assert a["stopped"] == b["stopped"] and b["stopped"], args
        assert recap_counts(local.stdout) == recap_counts(dask.stdout)
        assert all("dask_worker" in h["data"] for h in b["hosts"] if h["status"] != "skipped")
    assert [h["status"] for h in b["hosts"]] == ["changed", "changed", "failed"] + ["skipped"] * 5


# ------------------------------------------------------------------------------- placement

@pytest.fixture
def eu_worker(cluster, tmp_path):
    """A third worker started the documented way: ``dask worker ADDR --name eu-1 --resources pool-eu=1``."""
    address, client = cluster
    proc = subprocess.Popen([sys.executable, "-m", "dask", "worker", address, "--name", "eu-1",
                             "--resources", "pool-eu=1", "--nthreads", "2", "--no-nanny",
                             "--host", "127.0.0.1", "--no-dashboard", "--local-directory", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client.wait_for_workers(3, timeout=60)
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        settle_cluster(client, 2)


def test_pinned_hosts_run_only_on_their_pool_and_an_unserved_pool_fails_before_any_host(
        fleet, cluster, eu_worker, tmp_path):
    f = fleet(6)
    f.host_vars = {"h4": {"executor_pool": "mars"}}
    f.write_inventory()
    res = f.run("push", "haproxy", *dask_args(cluster))
    assert res.returncode == 2, res.stdout + res.stderr
    assert "executor_pool 'mars'" in res.stderr and "--resources pool-mars=1" in res.stderr
    assert not any(f.dest(n).exists() for n in f.names)

    f.host_vars = {n: {"executor_pool": "eu"} for n in ("h1", "h2", "h3")}
    f.write_inventory()
    res = f.run("push", "haproxy", "--report-json", str(tmp_path / "r.json"), *dask_args(cluster))
    assert res.returncode == 0, res.stdout + res.stderr
    hosts = {h["host"]: h for h in report(tmp_path / "r.json")["hosts"]}
    assert {n: hosts[n]["data"]["dask_worker"]["name"] for n in ("h1", "h2", "h3")} == \
        {"h1": "eu-1", "h2": "eu-1", "h3": "eu-1"}
    assert {hosts[n]["data"]["dask_worker"]["pid"] for n in ("h1", "h2", "h3")} == {eu_worker}
    assert all(f.dest(n).read_bytes() == HAPROXY_CFG for n in f.names)


# ------------------------------------------------------------------------------- faults

def _push_and_kill_a_worker(f, cluster, events: HostEvents, report_path, *more):
    """Start a push whose validate is slow (and tells ``events`` it started), kill one worker
    process (SIGKILL) once every host validates, and return (completed process, killed pid)."""
    address, client = cluster
    for n in f.names:
        f.dest(n).write_bytes(OLD)
    seen = len(events.lines)
    proc = subprocess.Popen([sys.executable, "-m", "concurdeploy", "push", "haproxy", "--report-json",
                             str(report_path), *dask_args(cluster, *more)],
                            cwd=f.project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        events.wait_for(seen + len(f.names), 60, alive=lambda: proc.poll() is None)
        assert proc.poll() is None, proc.communicate()
        victim = sorted(worker_pids(client).values())[0]
        os.kill(victim, signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    settle_cluster(client, 2)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), victim


def test_a_worker_killed_mid_run_loses_no_host_and_retries_when_allowed(fleet, cluster, tmp_path):
    f = fleet(8)
    events = HostEvents(tmp_path / "validating.fifo")
    f.write_inventory(files=[{"src": "files/haproxy/haproxy.cfg", "dest": DEST,
                              "validate": f"echo '{{{{ root }}}}' >> {events.path} && sleep 3 "
                                          f"&& test -s {{tmp}}"}])
    with events:
        _the_worker_killed_mid_run_cases(f, cluster, events, tmp_path)


def _the_worker_killed_mid_run_cases(f, cluster, events, tmp_path):
    res, victim = _push_and_kill_a_worker(f, cluster, events, tmp_path / "r0.json")
    rep = report(tmp_path / "r0.json")
    assert res.returncode == 1, res.stdout + res.stderr
    assert sorted(h["host"] for h in rep["hosts"]) == sorted(f.names)     # every host accounted for
    lost = [h for h in rep["hosts"] if h["status"] == "unreachable"]
    assert lost and all(h["error_kind"] == "WorkerLost" and "not retried" in h["error"] for h in lost)
    done = [h for h in rep["hosts"] if h["status"] == "changed"]
    assert len(lost) + len(done) == 8
    assert all(h["data"]["dask_worker"]["pid"] != victim for h in done)
    for n in f.names:                                                      # old or new, never a mix
        assert hashlib.sha256(f.dest(n).read_bytes()).hexdigest() in (OLD_SHA, NEW_SHA)
    for h in done:
        assert f.dest(h["host"]).read_bytes() == HAPROXY_CFG

    res, victim = _push_and_kill_a_worker(f, cluster, events, tmp_path / "r1.json", "--retries", "1")
    rep = report(tmp_path / "r1.json")
    assert res.returncode == 0, res.stdout + res.stderr
    assert [h["status"] for h in rep["hosts"]] == ["changed"] * 8
    retried = [h for h in rep["hosts"] if any("retried on another Dask worker" in w for w in h["warnings"])]
    assert retried and all(h["data"]["dask_worker"]["pid"] != victim for h in rep["hosts"])
    assert all(f.dest(n).read_bytes() == HAPROXY_CFG for n in f.names)


def test_sigint_stops_in_flight_hosts_at_a_safe_point_and_run_streams_output(fleet, cluster, tmp_path):
    f = fleet(4)
    res = f.run("run", "haproxy", "echo out-$(hostname); echo err >&2", *dask_args(cluster))
    assert res.returncode == 0, res.stdout + res.stderr
    assert sum(1 for ln in res.stdout.splitlines() if re.match(r"h\d +\| out-", ln)) == 4, res.stdout

    for n in f.names:
        f.dest(n).write_bytes(OLD)
    events = HostEvents(tmp_path / "validating.fifo")
    f.write_inventory(files=[{"src": "files/haproxy/haproxy.cfg", "dest": DEST,
                              "validate": f"echo '{{{{ root }}}}' >> {events.path}; sleep 3; "
                                          f"test -s {{tmp}}"}])
    proc = subprocess.Popen([sys.executable, "-m", "concurdeploy", "push", "haproxy", "-P", "2",
                             *dask_args(cluster)],
                            cwd=f.project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with events:  # validate runs once the upload is in place
            events.wait_for(2, 60, alive=lambda: proc.poll() is None)
        assert len(f.temp_files()) == 2, "the push never reached the upload step"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, out + err
    assert sorted(recap_statuses(out).values()) == ["failed", "failed", "skipped", "skipped"], out
    assert "Interrupted" in out
    assert all(f.dest(n).read_bytes() == OLD for n in f.names) and f.temp_files() == []

    # the deadline: in-flight hosts stop at a safe point, the others are skipped, as locally
    f.write_inventory(files=[{"src": "files/haproxy/haproxy.cfg", "dest": DEST,
                              "validate": "sleep 8; test -s {tmp}"}])
    runs = {ex: f.run("push", "haproxy", "-P", "2", "--deadline", "3", "--executor", ex,
                      *(("--scheduler", cluster[0]) if ex == "dask" else ()))
            for ex in ("local", "dask")}
    for res in runs.values():
        assert res.returncode == 1, res.stdout + res.stderr
        assert sorted(recap_statuses(res.stdout).values()) == ["failed", "failed", "skipped", "skipped"]
        assert "deadline exceeded" in res.stdout, res.stdout
    assert recap_statuses(runs["local"].stdout) == recap_statuses(runs["dask"].stdout)
    end = time.monotonic() + 20  # the workers were told to stop: they clean up at their safe point
    while f.temp_files() and time.monotonic() < end:
        time.sleep(0.1)
    assert all(f.dest(n).read_bytes() == OLD for n in f.names) and f.temp_files() == []


# ------------------------------------------------------------------------------- secrets

def test_no_secret_is_sent_to_the_cluster_and_a_worker_without_it_fails_that_host(
        fleet, cluster, client_keys, tmp_path, monkeypatch):
    """Runs the CLI in this process so that everything handed to Dask can be inspected."""
    import cloudpickle

    from concurdeploy.cli.program import program

    f = fleet(4)
    key_text = Path(client_keys.rsa).read_text()
    password = f"pw-{uuid.uuid4().hex}"
    f.host_vars = {"h1": {"key_env": "CD_WORKER_KEY"},               # only the workers have it
                   "h2": {"key_env": "CD_CONTROLLER_KEY"},           # only the controller has it
                   "h3": {"password_env": "CD_CONTROLLER_PASSWORD"},
                   "h4": {"key_file": f.key_file}}
    path = f.write_inventory()
    inv = yaml.safe_load(path.read_text())
    del inv["all"]["vars"]["key_file"]                               # no key file but h4's
    path.write_text(yaml.safe_dump(inv, sort_keys=False))
    monkeypatch.setenv("CD_CONTROLLER_KEY", key_text)
    monkeypatch.setenv("CD_CONTROLLER_PASSWORD", password)
    monkeypatch.delenv("CD_WORKER_KEY", raising=False)
    monkeypatch.chdir(f.project)

    sent: list[bytes] = []
    scattered: list[str] = []
    for name in ("submit", "scatter", "run", "map"):
        original = getattr(distributed.Client, name)

        def spy(self, *args, __original=original, __name=name, **kwargs):
            sent.append(cloudpickle.dumps((args, kwargs)))
            if __name == "scatter" and isinstance(args[0], dict):
                scattered.extend(args[0])
            return __original(self, *args, **kwargs)

        monkeypatch.setattr(distributed.Client, name, spy)

    with pytest.raises(SystemExit) as exit_info:
        program.run(["concurdeploy", "push", "haproxy", "--no-progress",
                     "--report-json", str(tmp_path / "r.json"), *dask_args(cluster)])
    assert exit_info.value.code == 1
    hosts = {h["host"]: h for h in report(tmp_path / "r.json")["hosts"]}
    assert hosts["h1"]["status"] == "changed" and hosts["h4"]["status"] == "changed"
    assert hosts["h2"]["status"] == hosts["h3"]["status"] == "failed"
    assert hosts["h2"]["error_kind"] == hosts["h3"]["error_kind"] == "CredentialsMissing"
    assert "key_env CD_CONTROLLER_KEY is not set" in hosts["h2"]["error"]
    assert "password_env CD_CONTROLLER_PASSWORD is not set" in hosts["h3"]["error"]

    blob = b"".join(sent)
    assert b"CD_CONTROLLER_KEY" in blob and b"CD_CONTROLLER_PASSWORD" in blob  # the names travel…
    body = "".join(key_text.strip().splitlines()[1:-1]).encode()
    for line in key_text.strip().splitlines()[1:-1]:                            # …never the values
        assert line.encode() not in blob
    assert body[:40] not in blob and password.encode() not in blob
    assert Path(client_keys.ecdsa).read_bytes().split(b"\n")[1] not in blob
    # the one distinct content went to the cluster once, under its SHA-256
    assert len(scattered) == 1 and scattered[0].startswith(f"concurdeploy-content-{NEW_SHA[:16]}-")
    assert blob.count(HAPROXY_CFG) == 1


# ------------------------------------------------------------------------------- refusals

def test_unreachable_scheduler_missing_extra_or_address_exit_2_before_any_host(fleet, tmp_path):
    f = fleet(2)
    dead = f"tcp://127.0.0.1:{free_port()}"
    start = time.monotonic()
    res = f.run("push", "haproxy", "--executor", "dask", "--scheduler", dead)
    assert res.returncode == 2 and time.monotonic() - start < 30, res.stdout + res.stderr
    assert f"cannot reach the Dask scheduler at {dead}" in res.stderr and "no host was touched" in res.stderr

    res = f.run("push", "haproxy", "--executor", "dask")
    assert res.returncode == 2 and "--scheduler tcp://HOST:8786" in res.stderr

    res = f.run("push", "haproxy", "--executor", "ray")
    assert res.returncode == 2 and "local or dask" in res.stderr

    code = ("import sys; sys.modules['distributed'] = None; sys.argv = ['concurdeploy', 'push', 'haproxy', "
            f"'--executor', 'dask', '--scheduler', {dead!r}]; from concurdeploy.cli.program import program; program.run()")
    res = subprocess.run([sys.executable, "-c", code], cwd=f.project, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "pip install 'concurdeploy[dask]'" in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    for n in f.names:
        assert not f.dest(n).exists() and not (f.root(n) / "reload.log").exists()


def test_placement_and_locality_rules():
    from concurdeploy.executors.dask import _Worker, is_loopback, serves

    eu = _Worker("tcp://10.0.0.1:1", "w7", 2, {"pool-eu": 1})
    named = _Worker("tcp://10.0.0.2:1", "eu-2", 2, {})
    other = _Worker("tcp://10.0.0.3:1", "us-1", 2, {"pool-us": 1})
    assert serves(eu, "eu") and serves(named, "eu") and not serves(other, "eu")
    assert all(serves(w, None) for w in (eu, named, other))
    assert is_loopback("tcp://127.0.0.1:8786") and is_loopback("tcp://localhost:1")
    assert is_loopback("tcp://[::1]:8786") and is_loopback("inproc://x/1/2")
    assert not is_loopback("tcp://10.0.0.5:8786") and not is_loopback("tls://sched.example.com:8786")
