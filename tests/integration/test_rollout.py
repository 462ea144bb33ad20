"""Safe rollouts (issue 3) against real OpenSSH sshd hosts: templates, check/diff, rollback,
owed reloads, bind mounts, batches and failure limits, interrupts, concurrent runs."""

from __future__ import annotations

import hashlib
import os
import select
import signal
import subprocess
import sys
import time

import pytest

from .conftest import HAPROXY_CFG
from .conftest import statuses as _statuses

pytestmark = pytest.mark.integration

DEST = "{{ root }}/etc/haproxy/haproxy.cfg"




def _snapshot(root) -> dict:
    """path -> (sha256, mode) of every file under ``root`` (symlinks as their target text)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[str(p)] = ("link", os.readlink(p))
        elif p.is_file():
            out[str(p)] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode)
    return out


def test_template_renders_per_host_and_undefined_var_fails_only_that_host(fleet):
    f = fleet(3)
    (f.project / "files" / "haproxy.cfg.j2").write_text(
        "global\n    maxconn {{ maxconn }}\n# host {{ inventory_hostname }}\n")
    f.host_vars = {"h1": {"maxconn": 100}, "h2": {"maxconn": 200}}  # h3 lacks maxconn
    f.write_inventory(files=[{"src": "files/haproxy.cfg.j2", "dest": DEST}])
    res = f.run("push", "haproxy")
    assert res.returncode == 1
    assert _statuses(res.stdout) == {"h1": "changed", "h2": "changed", "h3": "failed"}
    assert f.dest("h1").read_text() == "global\n    maxconn 100\n# host h1\n"
    assert f.dest("h2").read_text() == "global\n    maxconn 200\n# host h2\n"
    h3 = next(ln for ln in res.stdout.splitlines() if ln.startswith("h3 "))
    assert "TemplateFailed" in h3 and "haproxy.cfg.j2" in h3 and "line 2" in h3 and "maxconn" in h3
    assert not f.dest("h3").exists() and f.temp_files() == []


def test_check_mode_leaves_hosts_byte_for_byte_unchanged_and_diff_masks_secrets(fleet):
    f = fleet(2)
    (f.project / "files" / "app.cfg.j2").write_text("user = app\npassword = {{ db_password }}\n")
    f.group_vars = {"db_password": "hunter2-s3cret", "secret_vars": ["db_password"]}
    f.write_inventory(files=[{"src": "files/app.cfg.j2", "dest": DEST}])
    f.dest("h1").write_text("user = app\npassword = old-pass\n")
    os.symlink("haproxy.cfg", f.root("h2") / "etc" / "haproxy" / "link.cfg")
    before = _snapshot(f.project / "roots")
    res = f.run("push", "haproxy", "--check", "--diff")
    assert res.returncode == 0, res.stdout + res.stderr
    assert _snapshot(f.project / "roots") == before
    assert "would be replaced" in res.stdout and "would be created" in res.stdout
    assert "-password = old-pass" in res.stdout and "+password = ********" in res.stdout
    assert "hunter2-s3cret" not in res.stdout + res.stderr
    assert not (f.root("h1") / "reload.log").exists()


def test_diff_of_binary_file_says_so(fleet):
    f = fleet(1)
    (f.project / "files" / "blob.bin").write_bytes(b"\x00\x01\x02binary")
    f.write_inventory(files=[{"src": "files/blob.bin", "dest": DEST}])
    f.dest("h1").write_bytes(b"\x00old")
    res = f.run("push", "haproxy", "--check", "--diff")
    assert res.returncode == 0
    assert "binary file" in res.stdout and "\x00" not in res.stdout


def test_failed_reload_restores_old_file_and_reloads_it(fleet):
    f = fleet(2)
    for n in f.names:
        f.dest(n).write_text("old config\n")
    # The "service" refuses the new config (it contains maxconn) but accepts the old one.
    reload = "grep -q maxconn '{{ root }}/etc/haproxy/haproxy.cfg' && { echo 'config error line 2' >&2; exit 1; }; echo ok >> '{{ root }}/reload.log'"
    f.write_inventory(reload=reload)
    res = f.run("push", "haproxy")
    assert res.returncode == 1
    assert _statuses(res.stdout) == {"h1": "failed", "h2": "failed"}
    assert "rolled back" in res.stdout and "config error line 2" in res.stdout
    for n in f.names:
        assert f.dest(n).read_text() == "old config\n"
        assert (f.root(n) / "reload.log").read_text() == "ok\n"  # reloaded on the old file
        assert not list((f.root(n) / "etc" / "haproxy").glob(".concurdeploy-reload-pending*"))
    assert f.temp_files() == []


def test_failed_healthcheck_rolls_back(fleet):
    f = fleet(1)
    f.dest("h1").write_text("old\n")
    f.write_inventory(healthcheck="echo unhealthy; exit 7")
    res = f.run("push", "haproxy")
    assert res.returncode == 1
    assert "healthcheck failed (exit 7)" in res.stdout and "rolled back" in res.stdout
    assert f.dest("h1").read_text() == "old\n"


def test_backups_keep_the_last_k(fleet):
    f = fleet(1)
    f.write_inventory(backups=2)
    src = f.project / "files" / "haproxy" / "haproxy.cfg"
    directory = f.root("h1") / "etc" / "haproxy"
    for i in range(4):
        src.write_text(f"version {i}\n")
        res = f.run("push", "haproxy")
        assert res.returncode == 0, res.stdout
        _wait_past_newest_backup_second(directory)  # backup names carry the UTC second
    backups = sorted(directory.glob("haproxy.cfg.concurdeploy-*.bak"))
    assert [b.read_text() for b in backups] == ["version 1\n", "version 2\n"]


def _wait_past_newest_backup_second(directory) -> None:
    """Return once the UTC clock has left the second named in the newest backup (at most 3 s):
    the next push's backup then sorts after it. Waits only until that second ends."""
    names = sorted(p.name for p in directory.glob("haproxy.cfg.concurdeploy-*.bak"))
    if not names:
        return
    stamp = names[-1].split(".concurdeploy-", 1)[1].split("-", 1)[0]  # 20250101T120000Z
    deadline = time.monotonic() + 3
    while time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) <= stamp:
        assert time.monotonic() < deadline, f"the UTC clock did not pass {stamp}"
        time.sleep(1 - time.time() % 1 + 0.001)  # exactly to the next second boundary


@pytest.mark.serial  # timing-sensitive: run apart from the parallel run
def test_owed_reload_is_not_forgotten(fleet):
    f = fleet(1)
    f.dest("h1").write_text("old\n")
    # The reload kills the SSH session serving it: the file is replaced, the reload never completes.
    # (It then fails on its own: a reload left running that ended well would rightly clear the
    # marker, and the next run's outcome would depend on which came first.)
    f.write_inventory(reload="kill -9 $PPID; sleep 1; exit 1")
    first = f.run("push", "haproxy")
    assert first.returncode == 1
    assert f.dest("h1").read_bytes() == HAPROXY_CFG
    markers = list((f.root("h1") / "etc" / "haproxy").glob(".concurdeploy-reload-pending.*"))
    assert len(markers) == 1
    f.write_inventory()  # a working reload again; the file itself is now up to date
    second = f.run("push", "haproxy")
    assert second.returncode == 0, second.stdout
    assert _statuses(second.stdout) == {"h1": "changed"}
    assert "owed by an earlier run" in second.stdout
    assert (f.root("h1") / "reload.log").read_text() == "reloaded\n"
    assert not markers[0].exists()
    third = f.run("push", "haproxy")
    assert _statuses(third.stdout) == {"h1": "ok"}


@pytest.mark.skipif(os.geteuid() != 0, reason="bind mounts need root (CI runs as root)")
def test_bind_mounted_destination_fails_clearly_and_in_place_mode_works(fleet, tmp_path):
    f = fleet(1)
    outside = tmp_path / "outside.cfg"
    outside.write_text("old\n")
    f.dest("h1").write_text("placeholder\n")
    subprocess.run(["mount", "--bind", str(outside), str(f.dest("h1"))], check=True)
    try:
        res = f.run("push", "haproxy")
        assert res.returncode == 1
        assert "mount point" in res.stdout and "replace: in-place" in res.stdout
        assert outside.read_text() == "old\n" and f.temp_files() == []
        # nothing was replaced, so no reload is owed
        assert not list((f.root("h1") / "etc" / "haproxy").glob(".concurdeploy-reload-pending*"))
        f.write_inventory(files=[{"src": "files/haproxy/haproxy.cfg", "dest": DEST, "replace": "in-place"}])
        res = f.run("push", "haproxy")
        assert res.returncode == 0, res.stdout
        assert outside.read_bytes() == HAPROXY_CFG and f.temp_files() == []
    finally:
        subprocess.run(["umount", str(f.dest("h1"))], check=False)


def test_serial_with_max_fail_stops_before_later_batches(fleet):
    f = fleet(6)
    # hosts 3 and 4 (batch 2) fail validation
    f.host_vars = {n: {"files": [{"src": "files/haproxy/haproxy.cfg", "dest": DEST,
                                  "validate": "false {tmp}"}]} for n in ("h3", "h4")}
    f.write_inventory()
    res = f.run("push", "haproxy", "--serial", "2", "--max-fail", "1")
    assert res.returncode == 1
    assert _statuses(res.stdout) == {"h1": "changed", "h2": "changed", "h3": "failed",
                                     "h4": "failed", "h5": "skipped", "h6": "skipped"}
    assert "--max-fail 1 exceeded" in res.stdout
    assert "batch 3: 2 hosts: 0 ok, 0 changed, 0 failed, 0 unreachable, 2 skipped" in res.stdout
    assert not f.dest("h5").exists() and not f.dest("h6").exists()


def test_canary_batches_and_fail_fast(fleet):
    f = fleet(4)
    f.host_vars = {"h1": {"files": [{"src": "files/haproxy/haproxy.cfg", "dest": DEST,
                                     "validate": "false {tmp}"}]}}
    f.write_inventory()
    res = f.run("push", "haproxy", "--serial", "1,100%", "--fail-fast")
    assert res.returncode == 1
    assert _statuses(res.stdout) == {"h1": "failed", "h2": "skipped", "h3": "skipped", "h4": "skipped"}
    assert all(not f.dest(n).exists() for n in f.names)


def test_bad_serial_is_a_usage_error(fleet):
    f = fleet(1)
    res = f.run("push", "haproxy", "--serial", "0")
    assert res.returncode == 2 and "--serial" in res.stderr and "Traceback" not in res.stderr


def _push_until_uploaded(f, *args) -> subprocess.Popen:
    """Start ``concurdeploy push haproxy ARGS`` and return once its uploads sit in their
    temporary files (at most 20 s): the moment to interrupt it or to race it."""
    proc = subprocess.Popen([sys.executable, "-m", "concurdeploy", "push", "haproxy", *args],
                            cwd=f.project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while not f.temp_files() and time.monotonic() < deadline:
        try:  # waits on the push's exit between looks: a push that ends early fails at once
            proc.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            continue
        out, err = proc.communicate()
        pytest.fail(f"the push exited {proc.returncode} before its upload step:\n{out}{err}")
    assert f.temp_files(), "the push never reached the upload step"
    return proc


def _wait_for_exit(pids: set, timeout: float) -> list:
    """Wait (at most ``timeout`` s) for each process in ``pids`` to exit, on its pidfd (an
    event: readable when the process ends; a zombie has ended). :returns: those still running."""
    deadline = time.monotonic() + timeout
    alive = []
    for pid in sorted(pids):
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                alive.append(pid)
        finally:
            os.close(fd)
    return alive


def _children(pid: int) -> set:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return {int(x) for x in out.stdout.split()}


def test_sigint_mid_rollout_leaves_old_or_new_no_temp_files_no_orphans(fleet):
    f = fleet(6)
    for n in f.names:
        f.dest(n).write_text("old\n")
    # A slow validate makes the interrupt land while uploads sit in their temporary files.
    f.write_inventory(files=[{"src": "files/haproxy/haproxy.cfg", "dest": DEST,
                              "validate": "sleep 3; test -s {tmp}"}])
    proc = _push_until_uploaded(f, "-P", "3")
    workers = set()
    for child in _children(proc.pid):
        workers |= {child} | _children(child)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    for n in f.names:
        assert f.dest(n).read_bytes() in (b"old\n", HAPROXY_CFG)
    assert f.temp_files() == []
    statuses = _statuses(out)
    assert set(statuses.values()) <= {"failed", "skipped", "changed"}
    assert "skipped" in statuses.values()  # hosts 4-6 were never started
    alive = _wait_for_exit(workers, timeout=10)
    assert alive == [], f"orphan processes left: {alive}"


def test_sigterm_exits_143(fleet):
    f = fleet(2)
    f.write_inventory(files=[{"src": "files/haproxy/haproxy.cfg", "dest": DEST,
                              "validate": "sleep 3; true {tmp}"}])
    proc = _push_until_uploaded(f)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, out + err
    assert f.temp_files() == []


@pytest.mark.serial  # timing-sensitive: run apart from the parallel run
def test_concurrent_runs_wait_for_the_lock_then_fail_clearly(fleet):
    f = fleet(1)
    f.write_inventory(lock_timeout=1, files=[{"src": "files/haproxy/haproxy.cfg", "dest": DEST,
                                              "validate": "sleep 4; true {tmp}"}])
    first = _push_until_uploaded(f)
    second = f.run("push", "haproxy")
    out1, _ = first.communicate(timeout=60)
    assert first.returncode == 0, out1
    assert second.returncode == 1
    assert "LockBusy" in second.stdout and "locked by another concurdeploy run" in second.stdout
    assert f.dest("h1").read_bytes() == HAPROXY_CFG and f.temp_files() == []


def test_concurrent_runs_with_enough_lock_timeout_both_succeed(fleet):
    f = fleet(1)
    f.write_inventory(lock_timeout=30, files=[{"src": "files/haproxy/haproxy.cfg", "dest": DEST,
                                               "validate": "sleep 2; true {tmp}"}])
    first = _push_until_uploaded(f)
    second = f.run("push", "haproxy")
    first.communicate(timeout=60)
    assert first.returncode == 0
    assert second.returncode == 0 and _statuses(second.stdout) == {"h1": "ok"}  # waited, then saw it done


def test_stalled_host_times_out_without_delaying_the_others(fleet, stalling_server):
    f = fleet(3)
    f.host_vars = {"h2": {"port": stalling_server.port, "connect_timeout": 6}}
    f.write_inventory()
    t0 = time.monotonic()
    res = f.run("push", "haproxy")
    took = time.monotonic() - t0
    assert res.returncode == 1
    assert _statuses(res.stdout) == {"h1": "changed", "h2": "unreachable", "h3": "changed"}
    assert took < 20, took
    # the healthy hosts finished on their own time, not after the stalled host's 6 s timeout
    done_lines = [ln for ln in res.stdout.splitlines() if ln.startswith(("h1 ", "h3 "))]
    assert all(float(ln.rsplit("(", 1)[1].split()[0]) < 5 for ln in done_lines), done_lines
