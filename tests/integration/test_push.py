"""``concurdeploy push`` end to end against real OpenSSH sshd processes on loopback."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest

from .conftest import HAPROXY_CFG

pytestmark = pytest.mark.integration


def _status_lines(out: str) -> dict:
    """Map host -> status from the recap block."""
    lines = out.split("RECAP", 1)[1].splitlines()[1:]
    return {ln.split()[0]: ln.split()[1] for ln in lines if ln.strip()}


def test_push_to_eight_hosts_then_second_run_all_ok(fleet):
    f = fleet(8)
    first = f.run("push", "haproxy")
    assert first.returncode == 0, first.stdout + first.stderr
    assert _status_lines(first.stdout) == {n: "changed" for n in f.names}
    for n in f.names:
        assert f.dest(n).read_bytes() == HAPROXY_CFG
        assert (f.root(n) / "reload.log").read_text() == "reloaded\n"
    assert f.temp_files() == []

    second = f.run("push", "haproxy")
    assert second.returncode == 0, second.stdout + second.stderr
    assert _status_lines(second.stdout) == {n: "ok" for n in f.names}
    for n in f.names:  # nothing changed → no second reload
        assert (f.root(n) / "reload.log").read_text() == "reloaded\n"


def test_one_host_stopped_exits_1_others_pushed(fleet):
    f = fleet(8)
    f.servers[3].stop()
    res = f.run("push", "haproxy")
    assert res.returncode == 1, res.stdout + res.stderr
    statuses = _status_lines(res.stdout)
    assert statuses.pop("h4") == "unreachable"
    assert statuses == {n: "changed" for n in f.names if n != "h4"}
    assert "connection refused" in res.stdout.lower()
    assert not f.dest("h4").exists()
    assert all(f.dest(n).read_bytes() == HAPROXY_CFG for n in f.names if n != "h4")


def test_wrong_key_is_failed_not_retried(fleet, client_keys):
    f = fleet(2)
    f.host_vars = {"h2": {"key_file": client_keys.other}}
    f.write_inventory()
    res = f.run("push", "haproxy")
    assert res.returncode == 1
    assert _status_lines(res.stdout) == {"h1": "changed", "h2": "failed"}
    assert "AuthFailed" in res.stdout and "key_file" in res.stdout
    assert not f.dest("h2").exists()


def test_failing_validate_leaves_destination_and_no_temp_file(fleet):
    f = fleet(2)
    for n in f.names:
        f.dest(n).write_bytes(b"old config\n")
    f.write_inventory(files=[{"src": "files/haproxy/haproxy.cfg",
                              "dest": "{{ root }}/etc/haproxy/haproxy.cfg",
                              "validate": "echo \"checking $(basename {tmp})\"; echo 'bad line 3' >&2; exit 4"}])
    res = f.run("push", "haproxy")
    assert res.returncode == 1
    assert _status_lines(res.stdout) == {"h1": "failed", "h2": "failed"}
    assert "ValidateFailed" in res.stdout and "(exit 4)" in res.stdout
    assert "bad line 3" in res.stdout          # the validator's output is shown for the host
    assert ".haproxy.concurdeploy-" in res.stdout and ".cfg" in res.stdout  # suffix kept
    for n in f.names:
        assert f.dest(n).read_bytes() == b"old config\n"
        assert not (f.root(n) / "reload.log").exists()
    assert f.temp_files() == []


def test_validate_runs_in_destination_directory(fleet):
    f = fleet(1)
    (f.root("h1") / "etc" / "haproxy" / "include.cfg").write_text("included\n")
    f.write_inventory(files=[{"src": "files/haproxy/haproxy.cfg",
                              "dest": "{{ root }}/etc/haproxy/haproxy.cfg",
                              "validate": "test -f include.cfg && test -s {tmp}"}])
    res = f.run("push", "haproxy")
    assert res.returncode == 0, res.stdout + res.stderr


def test_missing_destination_directory_is_a_clear_error_or_created_on_request(fleet):
    f = fleet(1, make_dirs=False)
    res = f.run("push", "haproxy")
    assert res.returncode == 1
    assert "DestinationError" in res.stdout and "does not exist" in res.stdout
    assert "create_dirs: true" in res.stdout
    assert not f.root("h1").exists()

    f.write_inventory(files=[{"src": "files/haproxy/haproxy.cfg",
                              "dest": "{{ root }}/etc/haproxy/haproxy.cfg", "create_dirs": True}],
                      reload=None)
    res = f.run("push", "haproxy")
    assert res.returncode == 0, res.stdout
    assert f.dest("h1").read_bytes() == HAPROXY_CFG


def test_destination_with_spaces_and_shell_metacharacters(fleet):
    f = fleet(1)
    weird = f.root("h1") / "conf dir $(touch pwned) ;'\"&"
    weird.mkdir()
    f.write_inventory(files=[{"src": "files/haproxy/haproxy.cfg",
                              "dest": str(weird / "my file;`id`.cfg"),
                              "validate": "grep -q maxconn {tmp}"}])
    res = f.run("push", "haproxy")
    assert res.returncode == 0, res.stdout + res.stderr
    assert (weird / "my file;`id`.cfg").read_bytes() == HAPROXY_CFG
    assert not list(f.project.rglob("pwned"))
    assert not (f.project / "pwned").exists() and not os.path.exists(os.path.expanduser("~/pwned"))


def test_existing_mode_and_owner_kept_declared_mode_applied(fleet):
    f = fleet(2)
    for n in f.names:
        f.dest(n).write_bytes(b"old\n")
        os.chmod(f.dest(n), 0o640)
    if os.geteuid() == 0:
        os.chown(f.dest("h1"), 1234, 1235)
    f.host_vars = {"h2": {"files": [{"src": "files/haproxy/haproxy.cfg",
                                     "dest": "{{ root }}/etc/haproxy/haproxy.cfg", "mode": "0600"}]}}
    f.write_inventory()
    res = f.run("push", "haproxy")
    assert res.returncode == 0, res.stdout + res.stderr
    st1, st2 = os.stat(f.dest("h1")), os.stat(f.dest("h2"))
    assert stat.S_IMODE(st1.st_mode) == 0o640
    assert stat.S_IMODE(st2.st_mode) == 0o600
    if os.geteuid() == 0:
        assert (st1.st_uid, st1.st_gid) == (1234, 1235)


def test_symlink_destination_with_follow_replaces_target_and_keeps_link(fleet):
    f = fleet(1)
    real = f.root("h1") / "etc" / "haproxy" / "real.cfg"
    real.write_bytes(b"old\n")
    f.dest("h1").symlink_to("real.cfg")
    f.write_inventory(files=[{"src": "files/haproxy/haproxy.cfg", "dest": "{{ root }}/etc/haproxy/haproxy.cfg",
                              "follow": True}])
    res = f.run("push", "haproxy")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f.dest("h1").is_symlink() and os.readlink(f.dest("h1")) == "real.cfg"
    assert real.read_bytes() == HAPROXY_CFG
    again = f.run("push", "haproxy")
    assert _status_lines(again.stdout) == {"h1": "ok"}


def test_check_mode_writes_nothing(fleet):
    f = fleet(2)
    f.dest("h1").write_bytes(b"old\n")
    res = f.run("push", "haproxy", "--check")
    assert res.returncode == 0
    assert "would be replaced" in res.stdout and "would be created" in res.stdout
    assert f.dest("h1").read_bytes() == b"old\n" and not f.dest("h2").exists()
    assert not (f.root("h1") / "reload.log").exists()
    assert f.temp_files() == []


def test_limit_after_task_name(fleet):
    f = fleet(3)
    res = f.run("push", "haproxy", "--limit", "h1,h3", "-P", "2")
    assert res.returncode == 0, res.stdout + res.stderr
    assert _status_lines(res.stdout) == {"h1": "changed", "h3": "changed"}
    assert not f.dest("h2").exists()


def test_reload_runs_once_for_several_changed_files(fleet):
    f = fleet(1)
    (f.project / "files" / "extra.cfg").write_text("extra\n")
    f.write_inventory(files=[
        {"src": "files/haproxy/haproxy.cfg", "dest": "{{ root }}/etc/haproxy/haproxy.cfg"},
        {"src": "files/extra.cfg", "dest": "{{ root }}/etc/haproxy/extra.cfg"}])
    res = f.run("push", "haproxy")
    assert res.returncode == 0, res.stdout
    assert (f.root("h1") / "reload.log").read_text() == "reloaded\n"
    digest = hashlib.sha256(b"extra\n").hexdigest()
    assert hashlib.sha256((f.root("h1") / "etc/haproxy/extra.cfg").read_bytes()).hexdigest() == digest


def test_reload_failing_even_after_rollback_is_reported_loudly(fleet):
    f = fleet(1)
    f.dest("h1").write_bytes(b"old\n")
    f.write_inventory(reload="echo 'reload said no' >&2; exit 3")
    res = f.run("push", "haproxy")
    assert res.returncode == 1
    assert "RollbackFailed" in res.stdout and "reload said no" in res.stdout
    assert "needs attention" in res.stdout
    assert f.dest("h1").read_bytes() == b"old\n"  # the previous file was restored all the same
