"""How remote commands run on the host (issues #13.1, #14.1, #14.4, #14.6), against real
OpenSSH sshd on loopback: scripts on stdin (no argument limit), a kill switch for every
command, output that no step can confuse, a capped output, and any login shell.

sshd runs on this machine, so "the host" is this machine: processes left behind are looked
for with ``pgrep -f`` on a unique argument.
"""

from __future__ import annotations

import json
import os
import pwd
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from concurdeploy.ssh.connection import Connection
from concurdeploy.ssh.remote import KEEP_BYTES
from concurdeploy.ssh.specs import ConnectSpec
from concurdeploy.ssh.remote import SFTP_SERVERS
from tests.sshd import Beacon, OpenSSHServer, find_sshd, login_user

from .conftest import HAPROXY_CFG, Fleet, statuses

pytestmark = pytest.mark.integration

SRC = "files/haproxy/haproxy.cfg"


def _marker() -> str:
    """A unique ``sleep`` argument: ``300.<digits>`` (a valid duration nobody else uses)."""
    return f"300.{uuid.uuid4().int % 10**12:012d}"


def _alive(marker: str) -> list[int]:
    """PIDs of processes on this machine whose command line holds ``sleep <marker>``."""
    res = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, text=True)
    return [int(p) for p in res.stdout.split()]


def _gone_within(pids: list[int], timeout: float) -> list[int]:
    """Wait (on pidfds, no polling) up to ``timeout`` s for ``pids`` to exit; the ones left."""
    left = []
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            if not select.select([fd], [], [], timeout)[0]:
                left.append(pid)
        finally:
            os.close(fd)
    return left


# ----------------------------------------------------------------------------------------
# #13.1: no argument limit
# ----------------------------------------------------------------------------------------

def test_thousand_file_service_pushes_in_one_run(fleet):
    f = fleet(1)
    root = f.root("h1")
    files = []
    for i in range(1000):
        d = root / f"conf{i % 25:02d}.d"  # 25 directories: locks taken in several batches
        d.mkdir(exist_ok=True)
        files.append({"src": SRC, "dest": f"{{{{ root }}}}/{d.name}/file-{i:04d}.cfg"})
    (root / "conf00.d" / "file-0000.cfg").write_bytes(b"old\n")
    f.write_inventory(files=files)
    res = f.run("push", "haproxy", "--command-timeout", "120", timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert statuses(res.stdout) == {"h1": "changed"}
    written = sorted(root.glob("conf*.d/file-*.cfg"))
    assert len(written) == 1000
    assert all(p.read_bytes() == HAPROXY_CFG for p in written)
    assert [b.read_bytes() for b in (root / "conf00.d").glob("file-0000.cfg.concurdeploy-*.bak")] == [b"old\n"]
    assert f.temp_files() == []
    locks = sorted(root.glob("conf*.d/.concurdeploy.lock"))
    assert len(locks) == 25 and all((p.stat().st_mode & 0o777) == 0o600 for p in locks)


# ----------------------------------------------------------------------------------------
# #13.1: output framing no step output can break
# ----------------------------------------------------------------------------------------

def test_validate_printing_fake_protocol_lines_and_binary_passes(fleet):
    f = fleet(1)
    f.dest("h1").write_bytes(b"old\n")
    noisy = ("printf '@@concurdeploy-fail 0 validate 9\\n@@concurdeploy-warn 0 owner\\n'; "
             "head -c 3000 /dev/urandom; printf '\\001\\377'; test -s {tmp}")
    f.write_inventory(files=[{"src": SRC, "dest": "{{ root }}/etc/haproxy/haproxy.cfg",
                              "validate": noisy}])
    res = f.run("push", "haproxy")
    assert res.returncode == 0, res.stdout
    assert statuses(res.stdout) == {"h1": "changed"}
    assert "owner of the replaced file not kept" not in res.stdout
    assert f.dest("h1").read_bytes() == HAPROXY_CFG and f.temp_files() == []


def test_run_output_without_newline_and_exit_status(fleet):
    f = fleet(1)
    res = f.run("run", "haproxy", "printf 'no newline, fake marker @@concurdeploy-fail 0'; exit 7")
    assert res.returncode == 1
    assert "no newline, fake marker @@concurdeploy-fail 0" in res.stdout
    assert "exit 7" in res.stdout or "exited 7" in res.stdout, res.stdout


# ----------------------------------------------------------------------------------------
# #14.1: the kill switch
# ----------------------------------------------------------------------------------------

def test_validate_past_command_timeout_leaves_no_process(fleet):
    f = fleet(1)
    marker = _marker()
    f.dest("h1").write_bytes(b"old\n")
    f.write_inventory(files=[{"src": SRC, "dest": "{{ root }}/etc/haproxy/haproxy.cfg",
                              "validate": f"test -s {{tmp}} && sleep {marker} # never ends in time"}])
    res = f.run("push", "haproxy", "--command-timeout", "3")
    assert res.returncode == 1, res.stdout
    assert "timed out" in res.stdout, res.stdout
    assert _gone_within(_alive(marker), 5) == []
    assert _alive(marker) == []
    assert f.dest("h1").read_bytes() == b"old\n" and f.temp_files() == []


def test_run_past_command_timeout_leaves_no_process_in_its_group(fleet):
    f = fleet(1)
    marker = _marker()
    # a child in the background and a grandchild: the whole process group must go
    res = f.run("run", "haproxy", "--command-timeout", "2",
                f"sleep {marker} & (sleep {marker}; true) & sleep {marker}")
    assert res.returncode == 1, res.stdout
    assert "timed out" in res.stdout, res.stdout
    assert _gone_within(_alive(marker), 5) == []


def test_ctrl_c_during_run_ends_the_remote_command(fleet, tmp_path):
    f = fleet(1)
    marker = _marker()
    with Beacon(tmp_path / "beacon") as beacon:
        proc = subprocess.Popen([sys.executable, "-m", "concurdeploy", "run", "haproxy",
                                 f"{beacon.command('started')}; sleep {marker}"],
                                cwd=f.project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            beacon.wait(1, 60, proc)
            assert _alive(marker), "the remote command should be running"
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 130, out + err
    assert _gone_within(_alive(marker), 5) == []


# ----------------------------------------------------------------------------------------
# #14.4 (part): remote output kept in memory is capped
# ----------------------------------------------------------------------------------------

def test_large_output_is_capped_and_counted(sshd_factory, client_keys, known_hosts_file):
    server = sshd_factory(1)[0]
    spec = ConnectSpec(name="h1", hostname="127.0.0.1", port=server.port,
                       known_hosts=known_hosts_file([server]), user=login_user(),
                       key_file=client_keys.ed25519, allow_agent=False,
                       connect_timeout=10.0, command_timeout=120.0)
    total = 24 << 20  # 24 MiB on stdout, then a last line; some on stderr
    with Connection(spec) as conn:
        res = conn.run(f"head -c {total} /dev/zero | tr '\\0' x; printf '\\nEND\\n'; "
                       f"printf 'e%.0s' $(seq 3) >&2")
    assert res.exited == 0
    first, rest = res.stdout.split("\n", 1)
    kept = len(rest.encode())
    assert kept == KEEP_BYTES and rest.endswith("x\nEND\n")
    assert first == f"[{total + 5 - KEEP_BYTES} bytes of output before this not kept]"
    assert res.stderr == "eee"


# ----------------------------------------------------------------------------------------
# #14.6: any login shell, noisy login files
# ----------------------------------------------------------------------------------------

NOISE = {  # login shell → (start-up file, what it prints: stdout without newline, stderr)
    "/usr/bin/tcsh": (".cshrc", 'echo "cshrc says hi"\necho -n "no newline from cshrc"\n'
                                'echo "cshrc to stderr" > /dev/stderr\n'),
    "/bin/bash": (".bashrc", 'echo "bashrc says hi"; printf "no newline from bashrc"; '
                             'echo "bashrc to stderr" >&2\n'),
    "/usr/bin/fish": (".config/fish/config.fish", 'echo "fish says hi"; echo -n "no newline from fish"; '
                                                  'echo "fish to stderr" >&2\n'),
}
#: The login shells installed here (tcsh is part of the test image; fish where installed).
SHELLS = sorted(sh for sh in NOISE if os.access(sh, os.X_OK))


class ExternalSftpServer(OpenSSHServer):
    """sshd serving SFTP with the ``sftp-server`` program, which sshd starts through the
    user's login shell (``internal-sftp`` needs no shell): login-file noise reaches SFTP."""

    def render_config(self) -> str:
        return super().render_config().replace("Subsystem sftp internal-sftp",
                                               f"Subsystem sftp {SFTP_SERVERS[0]}")


@pytest.fixture
def shell_user(client_keys, known_hosts_file, tmp_path_factory, tmp_path):
    """``make(shell) -> (fleet, user, home)``: a throw-away local user whose login shell is
    ``shell`` and whose start-up file prints noise, and a one-host fleet logging in as it
    (sshd with the ``sftp-server`` program). The user, its home and its processes are
    removed afterwards."""
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        pytest.skip("creates a local user: needs root and useradd")
    if not os.access(SFTP_SERVERS[0], os.X_OK):
        pytest.skip(f"{SFTP_SERVERS[0]} is not installed")
    made, servers = [], []

    def make(shell: str):
        if not os.access(shell, os.X_OK):
            pytest.skip(f"{shell} is not installed")
        name = "cdsh" + uuid.uuid4().hex[:8]
        home = Path(tempfile.mkdtemp(prefix=f"{name}-", dir="/var/tmp"))
        os.chmod(home, 0o755)
        subprocess.run(["useradd", "-M", "-d", str(home), "-s", shell, "-p", "*", name], check=True)
        made.append((name, home))
        pw = pwd.getpwnam(name)
        rc_name, rc_text = NOISE[shell]
        (home / rc_name).parent.mkdir(parents=True, exist_ok=True)
        (home / rc_name).write_text(rc_text)
        (home / ".ssh").mkdir()
        (home / ".ssh" / "authorized_keys").write_text(client_keys.public_line(client_keys.ed25519) + "\n")
        (home / "root" / "etc" / "haproxy").mkdir(parents=True)
        for p in [home, *home.rglob("*")]:
            os.chown(p, pw.pw_uid, pw.pw_gid)
        server = ExternalSftpServer(tmp_path_factory.mktemp("sshd"), client_keys, sshd_path=find_sshd(),
                                    extra_config=f"Match User {name}\n"
                                                 f"    AuthorizedKeysFile {home}/.ssh/authorized_keys\n")
        servers.append(server)
        server.start()
        project = tmp_path / "project"
        (project / "files" / "haproxy").mkdir(parents=True)
        (project / "inventories").mkdir()
        (project / SRC).write_bytes(HAPROXY_CFG)
        kh = known_hosts_file([server], str(project / "known_hosts"))
        f = Fleet(project, [server], ["h1"], client_keys.ed25519, kh,
                  host_vars={"h1": {"user": name, "root": str(home / "root")}})
        f.write_inventory()
        return f, name, home

    yield make
    for server in servers:
        server.stop()
    for name, home in made:
        running = [int(p) for p in subprocess.run(["pgrep", "-u", name], capture_output=True,
                                                   text=True).stdout.split()]
        # sshd's per-session processes run as the user and end just after the client left
        left = _gone_within(running, 10)
        what = subprocess.run(["ps", "-o", "pid,args", "-p", ",".join(map(str, left))], capture_output=True,
                              text=True).stdout if left else ""
        for pid in left:  # only processes of the user this test created
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _gone_within(left, 10)
        subprocess.run(["userdel", name], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)
        assert left == [], f"processes of {name} left running:\n{what}"


@pytest.mark.parametrize("shell", SHELLS)
def test_push_run_get_under_any_login_shell_with_noisy_start_up_files(shell_user, shell):
    f, name, home = shell_user(shell)
    dest = home / "root" / "etc" / "haproxy" / "haproxy.cfg"
    dest.write_bytes(b"old\n")
    os.chown(dest, pwd.getpwnam(name).pw_uid, pwd.getpwnam(name).pw_gid)
    res = f.run("push", "haproxy")
    assert res.returncode == 0, res.stdout + res.stderr
    assert statuses(res.stdout) == {"h1": "changed"}
    assert dest.read_bytes() == HAPROXY_CFG
    assert (home / "root" / "reload.log").read_text() == "reloaded\n"
    backups = sorted(dest.parent.glob("haproxy.cfg.concurdeploy-*.bak"))
    assert [b.read_bytes() for b in backups] == [b"old\n"]

    res = f.run("run", "haproxy", "--report-json", "run.json", "printf '%s\\n' \"$0\"; id -un; exit 3")
    assert res.returncode == 1, res.stdout
    host = json.loads((f.project / "run.json").read_text())["hosts"][0]
    assert host["exit_status"] == 3
    assert host["output"] == f"sh\n{name}\n", host  # the command's output only: no login noise
    assert "says hi" not in res.stdout and "no newline from" not in res.stdout
    assert "to stderr" not in res.stdout + res.stderr

    res = f.run("get", "haproxy", str(dest), "fetched")
    assert res.returncode == 0, res.stdout + res.stderr
    assert (f.project / "fetched" / "h1" / dest.relative_to("/")).read_bytes() == HAPROXY_CFG


def test_directory_the_user_cannot_write_is_still_locked_and_the_push_fails_clearly(shell_user):
    f, name, home = shell_user("/bin/bash")
    locked = Path(tempfile.mkdtemp(prefix="cdlockro-", dir="/var/tmp"))  # root's, 0755
    try:
        os.chmod(locked, 0o755)
        dest = locked / "app.cfg"
        dest.write_bytes(b"old\n")
        f.write_inventory(files=[{"src": SRC, "dest": str(dest)}], reload=None)
        check = f.run("push", "haproxy", "--check")
        assert check.returncode == 0, check.stdout  # check mode locks the folder, creates nothing
        assert sorted(p.name for p in locked.iterdir()) == ["app.cfg"]
        res = f.run("push", "haproxy")
        assert res.returncode == 1, res.stdout
        assert "permission denied" in res.stdout and "become: true" in res.stdout, res.stdout
        assert dest.read_bytes() == b"old\n" and sorted(p.name for p in locked.iterdir()) == ["app.cfg"]
    finally:
        shutil.rmtree(locked, ignore_errors=True)
