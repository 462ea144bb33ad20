"""What a push does to the destination's file system (issue #13 points 4–7, 9), on real OpenSSH
sshd on loopback: SFTP servers without ``posix-rename``, owner/group/mode kept or refused,
symlinks and mounts decided explicitly, files safe from the first byte, the path actually
written in the report. Each test checks the host's files, not only the report.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import secrets
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import paramiko
import pytest

from .conftest import HAPROXY_CFG, Fleet, statuses

pytestmark = pytest.mark.integration

SRC = "files/haproxy/haproxy.cfg"
DEST = "{{ root }}/etc/haproxy/haproxy.cfg"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
PROXY = Path(__file__).resolve().parent.parent / "sftp_proxy.py"
#: sshd whose SFTP server lacks posix-rename@openssh.com (tests/sftp_proxy.py).
NO_POSIX_RENAME = f"Subsystem sftp {sys.executable} {PROXY} {SFTP_SERVER}\n"
#: sshd whose SFTP server refuses posix-rename (OpenSSH's own ``sftp-server -P``).
POSIX_RENAME_DENIED = f"Subsystem sftp {SFTP_SERVER} -P posix-rename@openssh.com\n"


def _need_sftp_server() -> None:
    if not os.access(SFTP_SERVER, os.X_OK):
        pytest.fail(f"{SFTP_SERVER} missing: apt-get install -y openssh-sftp-server", pytrace=False)


def _sftp(f, client_keys, name="h1") -> paramiko.SFTPClient:
    srv = f.servers[f.names.index(name)]
    ssh = paramiko.SSHClient()
    ssh.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # loopback test server only
    ssh.connect("127.0.0.1", srv.port, username=os.environ.get("USER") or "root",
                key_filename=client_keys.ed25519, allow_agent=False, look_for_keys=False)
    return ssh.open_sftp()


def _report(f, *args):
    path = f.project / "report.json"
    res = f.run("push", "haproxy", "--report-json", str(path), *args)
    doc = json.loads(path.read_text()) if path.exists() else None
    return res, doc


# ----------------------------------------------------------------------------------------
# 7. posix-rename fallback
# ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("config", [NO_POSIX_RENAME, POSIX_RENAME_DENIED], ids=["lacking", "denied"])
def test_push_without_posix_rename_falls_back_to_mv(fleet, config):
    _need_sftp_server()
    f = fleet(1, extra_config=config)
    f.dest("h1").write_bytes(b"old\n")
    os.chmod(f.dest("h1"), 0o640)
    inode = os.stat(f.dest("h1")).st_ino
    res = f.run("push", "haproxy")
    assert res.returncode == 0, res.stdout + res.stderr
    assert statuses(res.stdout) == {"h1": "changed"}
    assert f.dest("h1").read_bytes() == HAPROXY_CFG
    st = os.stat(f.dest("h1"))
    assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_ino != inode  # renamed over, not rewritten
    assert f.temp_files() == []


@pytest.mark.parametrize("config", [NO_POSIX_RENAME, ""], ids=["lacking", "openssh"])
def test_destination_turned_directory_before_the_rename_is_never_written_into(fleet, config):
    """``mv`` without ``-T`` would move the upload INTO a directory that appeared at the
    destination after the facts were read (here: made by the validate step)."""
    _need_sftp_server()
    f = fleet(1, extra_config=config)
    f.write_inventory(files=[{"src": SRC, "dest": DEST,
                              "validate": "mkdir '{{ root }}/etc/haproxy/haproxy.cfg' && test -s {tmp}"}])
    res = f.run("push", "haproxy")
    assert res.returncode == 1, res.stdout + res.stderr
    assert statuses(res.stdout) == {"h1": "failed"} and "created" not in res.stdout
    assert f.dest("h1").is_dir() and list(f.dest("h1").iterdir()) == []
    assert f.temp_files() == []


def test_proxy_server_really_lacks_posix_rename(fleet, client_keys, tmp_path):
    """The test server above is what it claims: no extension advertised, the request unsupported."""
    _need_sftp_server()
    f = fleet(1, extra_config=NO_POSIX_RENAME)
    sftp = _sftp(f, client_keys)
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    with pytest.raises(IOError, match="unsupported"):
        sftp.posix_rename(str(a), str(b))
    assert b.read_bytes() == b"b"
    sftp.close()


# ----------------------------------------------------------------------------------------
# 5. symlinks and mounts, decided explicitly (and 9: the report names the path written)
# ----------------------------------------------------------------------------------------

def test_symlinked_destination_is_replaced_by_the_file_not_followed(fleet):
    """Ansible's default: the link itself is replaced; the file it pointed to is untouched."""
    f = fleet(1)
    other = f.root("h1") / "elsewhere"
    other.mkdir()
    (other / "real.cfg").write_bytes(b"not ours\n")
    f.dest("h1").symlink_to(other / "real.cfg")
    res, doc = _report(f)
    assert res.returncode == 0, res.stdout + res.stderr
    assert not f.dest("h1").is_symlink() and f.dest("h1").read_bytes() == HAPROXY_CFG
    assert stat.S_IMODE(os.stat(f.dest("h1")).st_mode) == 0o644
    assert (other / "real.cfg").read_bytes() == b"not ours\n"
    change, = doc["hosts"][0]["changes"]
    assert (change["path"], change["method"], change["action"]) == (str(f.dest("h1")), "replace", "replaced")


def test_dangling_symlink_without_follow_is_replaced_not_created_elsewhere(fleet):
    f = fleet(1)
    gone = f.root("h1") / "gone"
    f.dest("h1").symlink_to(gone / "x.cfg")
    gone.mkdir()  # the link's target directory exists, its file does not
    res = f.run("push", "haproxy")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f.dest("h1").read_bytes() == HAPROXY_CFG and not f.dest("h1").is_symlink()
    assert list(gone.iterdir()) == []


def test_follow_writes_the_real_target_atomically_beside_it_and_reports_that_path(fleet):
    f = fleet(1)
    real_dir = f.root("h1") / "srv" / "haproxy"
    real_dir.mkdir(parents=True)
    real = real_dir / "real.cfg"
    real.write_bytes(b"old\n")
    os.chmod(real, 0o600)
    inode = os.stat(real).st_ino
    f.dest("h1").symlink_to(real)
    f.write_inventory(files=[{"src": SRC, "dest": DEST, "follow": True}])
    res, doc = _report(f)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f.dest("h1").is_symlink() and os.readlink(f.dest("h1")) == str(real)
    assert real.read_bytes() == HAPROXY_CFG and os.stat(real).st_ino != inode  # renamed over
    assert stat.S_IMODE(os.stat(real).st_mode) == 0o600
    change, = doc["hosts"][0]["changes"]
    assert (change["dest"], change["path"], change["method"]) == (str(f.dest("h1")), str(real), "replace")
    assert f"(written: {real})" in res.stdout
    # the directory written is the one locked (its lock file), beside the backup
    assert all(p.name.endswith(".bak") for p in real_dir.iterdir() if p.name not in ("real.cfg", ".concurdeploy.lock"))
    assert (real_dir / ".concurdeploy.lock").is_file()
    assert f.temp_files() == []


def test_dangling_symlink_with_follow_is_an_error(fleet):
    f = fleet(1)
    gone = f.root("h1") / "gone"
    gone.mkdir()
    f.dest("h1").symlink_to(gone / "x.cfg")
    f.write_inventory(files=[{"src": SRC, "dest": DEST, "follow": True}])
    res = f.run("push", "haproxy")
    assert res.returncode == 1, res.stdout + res.stderr
    assert statuses(res.stdout) == {"h1": "failed"}
    assert "symlink whose target does not exist" in res.stdout
    assert f.dest("h1").is_symlink() and list(gone.iterdir()) == [] and f.temp_files() == []


@pytest.fixture
def bind_mount():
    """``mount(source, target)``: bind-mount one file over another; all unmounted at teardown."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.fail("bind mounts need root and mount(8) (tests run as root in CI)", pytrace=False)
    done = []

    def mount(source: Path, target: Path) -> None:
        r = subprocess.run(["mount", "--bind", str(source), str(target)], capture_output=True, text=True,
                           timeout=30)
        if r.returncode != 0:
            pytest.fail(f"mount --bind not permitted here: {r.stderr.strip()}", pytrace=False)
        done.append(target)

    yield mount
    for target in reversed(done):
        subprocess.run(["umount", str(target)], capture_output=True, timeout=30)


@pytest.mark.parametrize("name", ["haproxy.cfg", "ha proxy.cfg"])  # escaped in /proc/self/mountinfo
def test_bind_mounted_file_is_refused_then_rewritten_in_place_on_request(fleet, bind_mount, name):
    f = fleet(1)
    dest = f.dest("h1").parent / name
    outside = f.root("h1") / "container-view.cfg"
    outside.write_bytes(b"old\n")
    dest.write_bytes(b"placeholder\n")
    bind_mount(outside, dest)
    inode = os.stat(dest).st_ino
    f.write_inventory(files=[{"src": SRC, "dest": str(dest)}])
    res, doc = _report(f)
    assert res.returncode == 1, res.stdout + res.stderr
    assert statuses(res.stdout) == {"h1": "failed"} and f"{dest} replaced" not in res.stdout
    assert "mount point" in res.stdout and "replace: in-place" in res.stdout
    assert outside.read_bytes() == b"old\n" and dest.read_bytes() == b"old\n"
    assert doc["hosts"][0]["changes"] == [] and f.temp_files() == []
    f.write_inventory(files=[{"src": SRC, "dest": str(dest), "replace": "in-place"}])
    res, doc = _report(f)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{dest} rewritten in place" in res.stdout
    assert outside.read_bytes() == HAPROXY_CFG and os.stat(dest).st_ino == inode
    change, = doc["hosts"][0]["changes"]
    assert (change["path"], change["method"], change["action"]) == (str(dest), "in-place", "replaced")


def test_in_place_write_never_goes_through_a_symlink_planted_after_the_check(fleet):
    """The destination is swapped for a symlink to another file after the facts were read (here
    by the validate step): the in-place write must not follow it (``cat > dest`` did). The
    backup step, whose copy is checked against the hash read under the lock, sees it first."""
    f = fleet(1)
    f.dest("h1").write_bytes(b"old\n")
    victim = f.root("h1") / "victim.conf"
    victim.write_bytes(b"precious\n")
    swap = ("rm '{{ root }}/etc/haproxy/haproxy.cfg' && ln -s '{{ root }}/victim.conf' "
            "'{{ root }}/etc/haproxy/haproxy.cfg' && test -s {tmp}")
    f.write_inventory(files=[{"src": SRC, "dest": DEST, "replace": "in-place", "validate": swap}])
    res = f.run("push", "haproxy")
    assert res.returncode == 1, res.stdout + res.stderr
    assert statuses(res.stdout) == {"h1": "failed"} and "became a symlink" in res.stdout
    assert victim.read_bytes() == b"precious\n" and f.temp_files() == []
    assert not (f.root("h1") / "reload.log").exists()


def test_report_says_create_and_replace(fleet):
    f = fleet(2)
    f.dest("h1").write_bytes(b"old\n")
    res, doc = _report(f)
    assert res.returncode == 0, res.stdout + res.stderr
    by_host = {h["host"]: h["changes"] for h in doc["hosts"]}
    assert [(c["path"], c["method"], c["action"]) for c in by_host["h1"]] == [(str(f.dest("h1")), "replace", "replaced")]
    assert [(c["path"], c["method"], c["action"]) for c in by_host["h2"]] == [(str(f.dest("h2")), "create", "created")]
    assert f.dest("h1").read_bytes() == f.dest("h2").read_bytes() == HAPROXY_CFG


# ----------------------------------------------------------------------------------------
# 4. files safe from the first byte
# ----------------------------------------------------------------------------------------

def test_temporary_upload_is_created_exclusive_with_its_final_mode(fleet, tmp_path):
    """The OPEN request that creates the upload carries CREAT|EXCL and the final mode (0600 here),
    as seen by a proxy in front of OpenSSH's sftp-server: never created 0644 then chmod'ed."""
    _need_sftp_server()
    log = tmp_path / "opens.log"
    f = fleet(1, extra_config=f"Subsystem sftp {sys.executable} {PROXY} --keep --log {log} {SFTP_SERVER}\n")
    f.dest("h1").write_bytes(b"secret=old\n")
    os.chmod(f.dest("h1"), 0o600)
    res = f.run("push", "haproxy")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f.dest("h1").read_bytes() == HAPROXY_CFG and stat.S_IMODE(os.stat(f.dest("h1")).st_mode) == 0o600
    opens = [ln.split(" ", 2) for ln in log.read_text().splitlines() if not ln.startswith(("fsetstat ", "write "))]
    uploads = [(flags, perm) for flags, perm, path in opens if ".concurdeploy-" in path]
    assert uploads == [("2a", "600")], opens  # WRITE|CREAT|EXCL (0x02|0x08|0x20), mode 0600


# ----------------------------------------------------------------------------------------
# 6. owner, group, mode kept, or the host fails before any rename
# ----------------------------------------------------------------------------------------

#: A login user unique to this pytest process (runs sharing the machine must not remove each other's).
USER = f"cdfs{secrets.token_hex(3)}"


@pytest.fixture(scope="module")
def login_user(client_keys):
    """A real non-root user ``USER`` (no sudo) whose ``~/.ssh/authorized_keys`` holds the test
    client keys; removed (with its home) at teardown, also after a failed test."""
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        pytest.fail("needs root and useradd (tests run as root in CI): apt-get install -y passwd", pytrace=False)

    def remove():
        try:
            pwd.getpwnam(USER)
        except KeyError:
            return
        subprocess.run(["userdel", "-r", "-f", USER], capture_output=True, timeout=30)

    remove()
    try:
        # password "*": no password login, but not a locked account ("!"), which sshd refuses
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", "-p", "*", USER], check=True, capture_output=True,
                       timeout=30)
        pw = pwd.getpwnam(USER)
        ssh_dir = Path(pw.pw_dir) / ".ssh"
        ssh_dir.mkdir(mode=0o700)
        (ssh_dir / "authorized_keys").write_text("".join(client_keys.public_line(k) + "\n"
                                                         for k in client_keys.authorized))
        for p in (ssh_dir, ssh_dir / "authorized_keys"):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        yield pw
    finally:
        remove()


@dataclass
class UserFleet(Fleet):
    """A :class:`Fleet` whose host roots live in ``base`` (outside pytest's 0700 tree), so
    the non-root login user can reach them."""

    base: Path = Path("/nonexistent")

    def root(self, name: str) -> Path:
        return self.base / name

    def temp_files(self) -> list[Path]:
        return [p for p in self.base.rglob("*") if ".concurdeploy-" in p.name and p.name.startswith(".")
                and not p.name.endswith(".bak") and not p.name.startswith(".concurdeploy-reload-pending.")]


@pytest.fixture
def user_fleet(sshd_factory, client_keys, known_hosts_file, tmp_path, login_user):
    """A one-host fleet (``h1``) logging in as ``USER``, who owns the destination directory
    (so it can create files there) but not the files in it."""
    servers = sshd_factory(1, extra_config=f"Match User {USER}\n    AuthorizedKeysFile "
                                           f"{login_user.pw_dir}/.ssh/authorized_keys\n")
    base = Path(tempfile.mkdtemp(prefix="concurdeploy-owner-", dir="/tmp"))
    try:
        os.chmod(base, 0o755)
        project = tmp_path / "project"
        (project / "files" / "haproxy").mkdir(parents=True)
        (project / "inventories").mkdir()
        (project / "files" / "haproxy" / "haproxy.cfg").write_bytes(HAPROXY_CFG)
        kh = known_hosts_file(servers, str(project / "known_hosts"))
        f = UserFleet(project, servers, ["h1"], client_keys.ed25519, kh, base=base)
        d = f.dest("h1").parent
        d.mkdir(parents=True, mode=0o755)
        for p in (f.root("h1"), f.root("h1") / "etc", d):  # reload.log goes in the root
            os.chown(p, login_user.pw_uid, login_user.pw_gid)
        f.group_vars = {"user": USER}
        f.write_inventory()
        yield f
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _owned(path: Path, uid: int, gid: int, mode: int, content: bytes = b"old\n") -> int:
    path.write_bytes(content)
    os.chown(path, uid, gid)
    os.chmod(path, mode)
    return os.stat(path).st_ino


def test_owner_that_cannot_be_kept_fails_the_host_before_any_rename(user_fleet, login_user):
    f = user_fleet
    daemon = grp.getgrnam("daemon").gr_gid
    inode = _owned(f.dest("h1"), 0, daemon, 0o644)
    res = f.run("push", "haproxy")
    assert res.returncode == 1, res.stdout + res.stderr
    assert statuses(res.stdout) == {"h1": "failed"}
    assert f"is owned root:daemon; pushing as {USER} would make it {USER}:{USER}" in res.stdout
    assert "become" in res.stdout and "owner" in res.stdout
    st = os.stat(f.dest("h1"))
    assert (st.st_ino, st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (inode, 0, daemon, 0o644)
    assert f.dest("h1").read_bytes() == b"old\n" and f.temp_files() == []
    assert not (f.root("h1") / "reload.log").exists()


def test_group_the_login_user_is_not_in_fails_the_host(user_fleet, login_user):
    f = user_fleet
    daemon = grp.getgrnam("daemon").gr_gid
    _owned(f.dest("h1"), login_user.pw_uid, daemon, 0o640)
    res = f.run("push", "haproxy")
    assert res.returncode == 1 and f"is owned {USER}:daemon" in res.stdout, res.stdout
    assert f.dest("h1").read_bytes() == b"old\n" and os.stat(f.dest("h1")).st_gid == daemon


def test_declared_owner_and_group_are_the_explicit_way_out(user_fleet, login_user):
    f = user_fleet
    _owned(f.dest("h1"), 0, grp.getgrnam("daemon").gr_gid, 0o644)
    f.write_inventory(files=[{"src": SRC, "dest": DEST, "owner": USER, "group": USER}])
    res = f.run("push", "haproxy")
    assert res.returncode == 0, res.stdout + res.stderr
    st = os.stat(f.dest("h1"))
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (login_user.pw_uid, login_user.pw_gid, 0o644)
    assert f.dest("h1").read_bytes() == HAPROXY_CFG


def test_own_file_keeps_owner_and_mode(user_fleet, login_user):
    f = user_fleet
    _owned(f.dest("h1"), login_user.pw_uid, login_user.pw_gid, 0o600)
    res = f.run("push", "haproxy")
    assert res.returncode == 0, res.stdout + res.stderr
    st = os.stat(f.dest("h1"))
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (login_user.pw_uid, login_user.pw_gid, 0o600)
    assert f.dest("h1").read_bytes() == HAPROXY_CFG and f.temp_files() == []


def _acl(path: Path) -> bytes | None:
    try:
        return os.getxattr(path, "system.posix_acl_access", follow_symlinks=False)
    except OSError:
        return None


def test_acl_of_the_replaced_file_is_kept_or_the_host_fails_before_the_rename(fleet):
    """An ACL (user daemon may read) set through its xattr, as setfacl does: the new file carries
    the same ACL where the host has getfacl/setfacl, else the host fails, the file untouched."""
    f = fleet(1)
    f.dest("h1").write_bytes(b"old\n")
    os.chmod(f.dest("h1"), 0o640)
    daemon = pwd.getpwnam("daemon").pw_uid
    entries = [(0x01, 6, 0xFFFFFFFF), (0x02, 4, daemon), (0x04, 4, 0xFFFFFFFF), (0x10, 4, 0xFFFFFFFF),
               (0x20, 0, 0xFFFFFFFF)]  # user::rw- user:daemon:r-- group::r-- mask::r-- other::---
    acl = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)
    os.setxattr(f.dest("h1"), "system.posix_acl_access", acl)
    inode = os.stat(f.dest("h1")).st_ino
    res = f.run("push", "haproxy")
    if shutil.which("setfacl") and shutil.which("getfacl"):
        assert res.returncode == 0, res.stdout + res.stderr
        assert f.dest("h1").read_bytes() == HAPROXY_CFG and _acl(f.dest("h1")) == acl
    else:
        assert res.returncode == 1, res.stdout + res.stderr
        assert "has an ACL" in res.stdout and "install the acl package" in res.stdout
        assert os.stat(f.dest("h1")).st_ino == inode and f.dest("h1").read_bytes() == b"old\n"
        assert _acl(f.dest("h1")) == acl
    assert stat.S_IMODE(os.stat(f.dest("h1")).st_mode) == 0o640 and f.temp_files() == []
