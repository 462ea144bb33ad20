"""sudo ("become", issue 4 item 5) against a real OpenSSH sshd on loopback.

A real non-root user (``cdtest`` + 6 hex digits, unique per run) logs in over SSH; a
sudoers drop-in lets it run anything as root *with its password* (no NOPASSWD), and as
``daemon`` without one. It pushes to a root-owned directory through
``become: true`` with the sudo password from ``become_password_env``.

Needs root (to create the user and the sudoers drop-in): skipped otherwise. When ``$CI``
is set, missing ``sudo``/``useradd`` fail the tests (never a silent skip).
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import secrets
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import HAPROXY_CFG, Fleet

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                       reason="creates a user and a sudoers drop-in: needs root"),
]

#: A user name and sudoers drop-in unique to this pytest process: test runs sharing the
#: machine (a developer's and an agent's, or xdist workers) must not delete each other's user.
#: (Names in /etc/sudoers.d must not contain a dot.)
USER = f"cdtest{secrets.token_hex(3)}"
SUDOERS = f"/etc/sudoers.d/concurdeploy-test-{USER}"
PW_ENV = "CD_SUDO_PW"
APT_HINT = "sudo/useradd missing: apt-get install -y sudo passwd"
DEST = "{{ root }}/etc/haproxy/haproxy.cfg"
OLD = b"old config\n"


def _need_tools() -> None:
    missing = [t for t in ("sudo", "useradd", "userdel", "chpasswd", "visudo") if shutil.which(t) is None]
    if missing:
        msg = f"{APT_HINT} (not found: {', '.join(missing)})"
        if os.environ.get("CI"):
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)


def _remove_user() -> None:
    if os.path.exists(SUDOERS):
        os.unlink(SUDOERS)
    try:
        pwd.getpwnam(USER)
    except KeyError:
        return
    subprocess.run(["userdel", "-r", "-f", USER], capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def sudo_user(client_keys):
    """A real user ``USER`` (shell /bin/sh) whose sudo needs its password; yields the password.

    Its ``~/.ssh/authorized_keys`` holds the test client keys. Removed at teardown (user,
    home, sudoers drop-in), also after a failed test.
    """
    _need_tools()
    _remove_user()  # a leftover from an interrupted run
    password = f"Sudo-{secrets.token_hex(8)}-pw"
    try:
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", USER], check=True, capture_output=True, timeout=30)
        subprocess.run(["chpasswd"], input=f"{USER}:{password}\n", text=True, check=True,
                       capture_output=True, timeout=30)
        tmp = SUDOERS + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{USER} ALL=(ALL) ALL\n"  # password REQUIRED (no NOPASSWD) ...
                    f"{USER} ALL=(daemon) NOPASSWD: ALL\n")  # ... but not to become daemon
        os.chmod(tmp, 0o440)
        subprocess.run(["visudo", "-c", "-q", "-f", tmp], check=True, capture_output=True, timeout=30)
        os.replace(tmp, SUDOERS)
        pw = pwd.getpwnam(USER)
        ssh_dir = Path(pw.pw_dir) / ".ssh"
        ssh_dir.mkdir(mode=0o700)
        (ssh_dir / "authorized_keys").write_text("".join(client_keys.public_line(k) + "\n"
                                                         for k in client_keys.authorized))
        for p in (ssh_dir, ssh_dir / "authorized_keys"):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        yield password
    finally:
        if os.path.exists(SUDOERS + ".tmp"):
            os.unlink(SUDOERS + ".tmp")
        _remove_user()


@dataclass
class SudoFleet(Fleet):
    """A :class:`Fleet` whose host roots live in ``base``, outside pytest's private (0700,
    and reset to 0700 by any other pytest run) temporary tree, so ``cdtest`` can reach them."""

    base: Path = Path("/nonexistent")

    def root(self, name: str) -> Path:
        return self.base / name

    def temp_files(self) -> list[Path]:
        return [p for p in self.base.rglob("*")
                if ".concurdeploy-" in p.name and p.name.startswith(".") and not p.name.endswith(".bak")
                and not p.name.startswith(".concurdeploy-reload-pending.")]


@pytest.fixture
def sudo_fleet(sshd_factory, client_keys, known_hosts_file, tmp_path, sudo_user):
    """A one-host fleet (``h1``) that logs in as ``cdtest`` and becomes root with its password.

    The destination directory is root's (0755) and holds a root:root 0640 haproxy.cfg.
    Returns ``(fleet, env)``: ``env`` carries the sudo password for the CLI.
    """
    home = pwd.getpwnam(USER).pw_dir
    # The fixture's AuthorizedKeysFile sits in pytest's root-only tree, and sshd reads it with
    # the login user's privileges: cdtest uses its own ~/.ssh/authorized_keys instead.
    servers = sshd_factory(1, extra_config=f"Match User {USER}\n    AuthorizedKeysFile {home}/.ssh/authorized_keys\n")
    base = Path(tempfile.mkdtemp(prefix="concurdeploy-become-", dir="/tmp"))
    try:
        os.chmod(base, 0o755)
        project = tmp_path / "project"
        (project / "files" / "haproxy").mkdir(parents=True)
        (project / "inventories").mkdir()
        (project / "files" / "haproxy" / "haproxy.cfg").write_bytes(HAPROXY_CFG)
        kh = known_hosts_file(servers, str(project / "known_hosts"))
        f = SudoFleet(project, servers, ["h1"], client_keys.ed25519, kh, base=base)
        f.dest("h1").parent.mkdir(parents=True, mode=0o755)
        f.dest("h1").write_bytes(OLD)
        os.chown(f.dest("h1"), 0, 0)
        os.chmod(f.dest("h1"), 0o640)
        f.group_vars = {"user": USER, "become": True, "become_password_env": PW_ENV}
        f.write_inventory()
        yield f, {PW_ENV: sudo_user}
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _stage_files() -> set:
    """The staging uploads in /tmp owned by our user (other runs may have their own)."""
    uid = pwd.getpwnam(USER).pw_uid
    out = set()
    for p in glob.glob("/tmp/.concurdeploy-stage-*"):
        try:
            if os.lstat(p).st_uid == uid:
                out.add(p)
        except FileNotFoundError:
            continue
    return out


def _host_line(out: str, name: str = "h1") -> str:
    return next(ln for ln in out.splitlines() if ln.startswith(f"{name} "))


def _stat(p: Path) -> tuple[int, int, int]:
    st = p.stat()
    return st.st_uid, st.st_gid, st.st_mode & 0o7777


def test_push_as_cdtest_with_sudo_replaces_root_owned_file_keeping_owner_and_mode(sudo_fleet):
    f, env = sudo_fleet
    stage_before = _stage_files()
    res = f.run("push", "haproxy", "--no-progress", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "changed" in _host_line(res.stdout) and "reloaded" in _host_line(res.stdout)
    assert f.dest("h1").read_bytes() != OLD
    assert f.dest("h1").read_bytes() == (f.project / "files" / "haproxy" / "haproxy.cfg").read_bytes()
    assert _stat(f.dest("h1")) == (0, 0, 0o640)
    assert (f.root("h1") / "reload.log").read_text() == "reloaded\n"
    assert f.temp_files() == []
    assert _stage_files() == stage_before
    # the backup is root's too (a hard link of the old file or a cp -p)
    backups = list(f.dest("h1").parent.glob("haproxy.cfg.concurdeploy-*.bak"))
    assert [b.read_bytes() for b in backups] == [OLD] and _stat(backups[0])[:2] == (0, 0)

    again = f.run("push", "haproxy", "--no-progress", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert " ok " in _host_line(again.stdout) + " "
    assert (f.root("h1") / "reload.log").read_text() == "reloaded\n"  # not reloaded again
    assert _stat(f.dest("h1")) == (0, 0, 0o640)
    assert env[PW_ENV] not in res.stdout + res.stderr + again.stdout + again.stderr


def test_push_without_become_fails_on_permission_and_leaves_destination(sudo_fleet):
    f, env = sudo_fleet
    f.group_vars = {"user": USER}
    f.write_inventory()
    for mode in (0o640, 0o644):  # unreadable by cdtest; then readable, in a directory it cannot write
        os.chmod(f.dest("h1"), mode)
        res = f.run("push", "haproxy", "--no-progress", env=env)
        assert res.returncode == 1, res.stdout + res.stderr
        line = _host_line(res.stdout)
        assert "failed" in line and "DestinationError" in line and "permission denied" in line, line
        assert "become: true" in line  # the message points at the fix
        assert f.dest("h1").read_bytes() == OLD and _stat(f.dest("h1")) == (0, 0, mode)
        assert f.temp_files() == []
        assert not (f.root("h1") / "reload.log").exists()


def test_wrong_sudo_password_fails_and_is_never_shown(sudo_fleet, tmp_path):
    f, _ = sudo_fleet
    wrong = f"Wrong-{secrets.token_hex(8)}-pw"
    report = tmp_path / "report.json"
    junit = tmp_path / "junit.xml"
    start = time.monotonic()
    res = f.run("push", "haproxy", "--no-progress", "-vv", "--report-json", str(report),
                "--junit", str(junit), env={PW_ENV: wrong})
    took = time.monotonic() - start
    assert res.returncode == 1, res.stdout + res.stderr
    line = _host_line(res.stdout)
    assert "AuthFailed: sudo -u root refused the password from become_password_env CD_SUDO_PW" in line, line
    assert took < 30, f"a wrong sudo password must fail fast, took {took:.1f} s"
    everything = res.stdout + res.stderr + report.read_text() + junit.read_text()
    assert wrong not in everything
    doc = json.loads(report.read_text())
    assert doc["hosts"][0]["status"] == "failed"
    assert f.dest("h1").read_bytes() == OLD
    assert f.temp_files() == []

    run = f.run("run", "haproxy", "id -un", "--sudo", "--no-progress", "-v", env={PW_ENV: wrong})
    assert run.returncode == 1, run.stdout + run.stderr
    assert wrong not in run.stdout + run.stderr
    line = _host_line(run.stdout)
    assert "AuthFailed" in line and f"become_password_env {PW_ENV}" in line and "incorrect password" in line
    assert "@@concurdeploy" not in run.stdout + run.stderr  # the wrapper's marker is not streamed


def test_unset_become_password_env_names_the_variable(sudo_fleet):
    f, _ = sudo_fleet
    env = {k: v for k, v in os.environ.items() if k != PW_ENV}
    res = subprocess.run([sys.executable, "-m", "concurdeploy", "push", "haproxy", "--no-progress"],
                         cwd=f.project, capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 1, res.stdout + res.stderr
    line = _host_line(res.stdout)
    assert "CredentialsMissing" in line and PW_ENV in line, line
    assert f.dest("h1").read_bytes() == OLD


def test_failing_validate_under_become_leaves_destination_and_no_temp_files(sudo_fleet):
    f, env = sudo_fleet
    stage_before = _stage_files()
    f.write_inventory(files=[{"src": "files/haproxy/haproxy.cfg", "dest": DEST,
                              "validate": "echo 'checking as' $(id -un); grep -q nosuchdirective {tmp}"}])
    res = f.run("push", "haproxy", "--no-progress", env=env)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "ValidateFailed" in _host_line(res.stdout)
    assert "checking as root" in res.stdout  # validate ran as root
    assert f.dest("h1").read_bytes() == OLD and _stat(f.dest("h1")) == (0, 0, 0o640)
    assert f.temp_files() == []
    assert _stage_files() == stage_before
    assert not (f.root("h1") / "reload.log").exists()


def test_reload_failure_under_become_rolls_back_keeping_owner(sudo_fleet):
    f, env = sudo_fleet
    os.chown(f.dest("h1"), 1, 4)  # daemon:adm, so "kept" cannot be confused with root's default
    reload = ("grep -q maxconn '{{ root }}/etc/haproxy/haproxy.cfg' && { echo 'bad config' >&2; exit 1; }; "
              "echo ok >> '{{ root }}/reload.log'")
    f.write_inventory(reload=reload)
    res = f.run("push", "haproxy", "--no-progress", env=env)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "rolled back" in res.stdout and "bad config" in res.stdout
    assert f.dest("h1").read_bytes() == OLD
    assert _stat(f.dest("h1")) == (1, 4, 0o640)
    assert (f.root("h1") / "reload.log").read_text() == "ok\n"  # the old file reloaded, as root
    assert f.temp_files() == []


def test_new_file_under_become_is_root_owned(sudo_fleet):
    f, env = sudo_fleet
    f.write_inventory(files=[{"src": "files/haproxy/haproxy.cfg", "dest": "{{ root }}/etc/haproxy/new.cfg",
                              "mode": "0600"}])
    res = f.run("push", "haproxy", "--no-progress", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    new = f.dest("h1").parent / "new.cfg"
    assert _stat(new) == (0, 0, 0o600)


def test_run_with_and_without_sudo(sudo_fleet):
    f, env = sudo_fleet
    f.group_vars = {"user": USER, "become_password_env": PW_ENV}  # become only through --sudo
    f.write_inventory()
    res = f.run("run", "haproxy", "id -un", "--sudo", "--no-progress", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "h1 | root" in res.stdout.splitlines()
    plain = f.run("run", "haproxy", "id -un", "--no-progress", env=env)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert f"h1 | {USER}" in plain.stdout.splitlines()


def test_sudo_password_never_reaches_the_command_stdin(sudo_fleet):
    """Whether or not sudo asks (cached credentials within one connection), the command's
    stdin never receives the password line."""
    f, env = sudo_fleet
    f.write_inventory(files=[{"src": "files/haproxy/haproxy.cfg", "dest": DEST,
                              "validate": "echo stdin:; cat; echo :end; true {tmp}"}],
                      reload="echo reload-stdin:; cat; echo :end")
    res = f.run("push", "haproxy", "--no-progress", "-v", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert env[PW_ENV] not in res.stdout + res.stderr
    run = f.run("run", "haproxy", "cat; cat; echo done", "--sudo", "--no-progress", env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert env[PW_ENV] not in run.stdout + run.stderr
    assert "h1 | done" in run.stdout.splitlines()


def test_password_not_fed_to_the_command_when_sudo_does_not_ask(sudo_fleet):
    """become_user daemon needs no password (NOPASSWD): the password line must not become the
    command's stdin (a plain ``sudo -S`` would hand it to ``cat`` here)."""
    f, env = sudo_fleet
    f.group_vars = {"user": USER, "become_user": "daemon", "become_password_env": PW_ENV}
    f.write_inventory()
    res = f.run("run", "haproxy", "id -un; cat; echo done", "--sudo", "--no-progress", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert env[PW_ENV] not in res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert "h1 | daemon" in lines and "h1 | done" in lines


def test_sudo_without_password_env_when_sudo_asks_fails_with_the_fix(sudo_fleet):
    f, env = sudo_fleet
    f.group_vars = {"user": USER, "become": True}
    f.write_inventory()
    start = time.monotonic()
    res = f.run("push", "haproxy", "--no-progress", env=env)
    assert res.returncode == 1, res.stdout + res.stderr
    assert time.monotonic() - start < 30
    line = _host_line(res.stdout)
    assert "AuthFailed" in line and "become_password_env" in line and "password is required" in line, line
    assert f.dest("h1").read_bytes() == OLD


def _cmdlines() -> list[str]:
    out = []
    for d in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(d, "rb") as fh:
                out.append(fh.read().replace(b"\0", b" ").decode("utf-8", "replace"))
        except OSError:
            continue
    return out


def test_sudo_password_is_on_no_command_line(sudo_fleet):
    f, env = sudo_fleet
    password = env[PW_ENV]
    proc = subprocess.Popen([sys.executable, "-m", "concurdeploy", "run", "haproxy", "sleep 3",
                             "--sudo", "--no-progress"], cwd=f.project, env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen_sleep = 0
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            lines = _cmdlines()
            assert not [ln for ln in lines if password in ln], "sudo password on a command line"
            seen_sleep += any(ln.strip() == "sleep 3" or ln.startswith("sleep 3") for ln in lines)
            try:  # look again in 50 ms, or stop looking as soon as the run ends
                proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                pass
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out + err
    assert seen_sleep >= 1, "the remote 'sleep 3' was never seen running: the check proved nothing"
    assert password not in out + err


def test_planted_symlink_at_the_reload_marker_cannot_steer_root(sudo_fleet):
    """The destination directory's owner plants a symlink where the owed-reload marker goes,
    pointing at a root-owned file: root makes its marker with symlink(2) (``ln -sfT``), never
    by opening that path, so the file keeps its bytes (``: > marker`` truncated it)."""
    f, env = sudo_fleet
    victim = f.root("h1") / "victim.conf"
    victim.write_bytes(b"precious\n")
    os.chmod(victim, 0o600)
    marker = f.dest("h1").parent / ".concurdeploy-reload-pending.haproxy"
    marker.symlink_to(victim)
    res = f.run("push", "haproxy", "--no-progress", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert victim.read_bytes() == b"precious\n" and _stat(victim) == (0, 0, 0o600)
    assert f.dest("h1").read_bytes() == HAPROXY_CFG and not os.path.lexists(marker)
    assert f.temp_files() == []


def test_become_keeps_0600_and_leaves_no_private_copy_in_tmp(sudo_fleet):
    """Root checks, chowns and chmods the upload in a private ``mktemp -d`` directory, then
    copies it beside the destination: the result keeps 0600 root:root, nothing is left in /tmp."""
    f, env = sudo_fleet
    os.chmod(f.dest("h1"), 0o600)
    before = set(glob.glob("/tmp/tmp.*"))
    res = f.run("push", "haproxy", "--no-progress", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert _stat(f.dest("h1")) == (0, 0, 0o600) and f.dest("h1").read_bytes() == HAPROXY_CFG
    assert f.temp_files() == [] and set(glob.glob("/tmp/tmp.*")) <= before


def test_sudo_run_past_command_timeout_leaves_no_process(sudo_fleet):
    """#14.1: the command runs as root, which the login user cannot signal: the kill switch
    goes through sudo too, and nothing of the command is left on the host."""
    f, env = sudo_fleet
    f.group_vars = {"user": USER, "become_password_env": PW_ENV}
    f.write_inventory()
    marker = f"300.{secrets.randbelow(10**12):012d}"
    res = f.run("run", "haproxy", f"sleep {marker} & sleep {marker}", "--sudo", "--no-progress",
                "--command-timeout", "3", env=env)
    assert res.returncode == 1 and "timed out" in res.stdout, res.stdout + res.stderr
    left = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, text=True).stdout.split()
    for pid in left:  # wait (on pidfds) for what a kill just ended
        try:
            fd = os.pidfd_open(int(pid))
        except ProcessLookupError:
            continue
        try:
            assert select.select([fd], [], [], 5)[0], f"sleep {marker} (pid {pid}) still running"
        finally:
            os.close(fd)
