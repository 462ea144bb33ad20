"""Symlinked folders and destinations, and the login user's upload (issue #13, remaining items),
on real OpenSSH sshd on loopback: destinations resolved to their real directory on the host and
each real directory locked once; ``follow: true`` locks the directory actually written; a
replaced symlink's backup holds its bytes and a rollback puts the link back; ``--check --diff``
shows what a symlink points to; owner and mode of the login user's upload set through its SFTP
handle, never by a path that could be swapped. Each test checks the host's files.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.sshd import Beacon

from .conftest import HAPROXY_CFG, statuses
from .test_push_fs import PROXY, SFTP_SERVER, _need_sftp_server

pytestmark = pytest.mark.integration

SRC = "files/haproxy/haproxy.cfg"
DEST = "{{ root }}/etc/haproxy/haproxy.cfg"
FAIL_ONCE = "if [ -e '{{ root }}/failed-once' ]; then true; else : > '{{ root }}/failed-once'; exit 1; fi"


def _backups(directory: Path, base: str = "haproxy.cfg") -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.startswith(base + ".concurdeploy-")
                  and p.name.endswith(".bak"))


def _report(f, *args):
    path = f.project / "report.json"
    res = f.run("push", "haproxy", "--report-json", str(path), *args)
    doc = json.loads(path.read_text()) if path.exists() else None
    return res, doc


# ----------------------------------------------------------------------------------------
# 1. two paths through a symlinked folder: one real directory, locked once
# ----------------------------------------------------------------------------------------

def test_two_paths_through_a_symlinked_folder_lock_the_real_directory_once(fleet):
    """``etc/hp`` is a symlink to ``etc/haproxy``: locking both paths took the same lock file twice,
    so the run waited ``lock_timeout`` for itself and failed with LockBusy."""
    f = fleet(1)
    real = f.root("h1") / "etc" / "haproxy"
    (f.root("h1") / "etc" / "hp").symlink_to(real)
    f.write_inventory(files=[{"src": SRC, "dest": str(real / "a.cfg")},
                             {"src": SRC, "dest": "{{ root }}/etc/hp/b.cfg"}], lock_timeout=5)
    started = time.monotonic()
    res, doc = _report(f)
    assert res.returncode == 0, res.stdout + res.stderr
    assert time.monotonic() - started < 60  # generous: the bug cost lock_timeout, then failed
    assert "locked by another" not in res.stdout
    assert (real / "a.cfg").read_bytes() == (real / "b.cfg").read_bytes() == HAPROXY_CFG
    paths = sorted((c["dest"], c["path"]) for c in doc["hosts"][0]["changes"])
    assert paths == [(str(real / "a.cfg"), str(real / "a.cfg")),
                     (str(f.root("h1") / "etc" / "hp" / "b.cfg"), str(real / "b.cfg"))]
    assert sorted(p.name for p in real.iterdir()) == [".concurdeploy.lock", "a.cfg", "b.cfg"]
    assert f.temp_files() == []


def test_two_entries_writing_one_real_file_are_refused_before_anything_is_written(fleet):
    f = fleet(1)
    real = f.root("h1") / "etc" / "haproxy"
    (f.root("h1") / "etc" / "hp").symlink_to(real)
    f.dest("h1").write_bytes(b"old\n")
    (f.project / "files" / "other.cfg").write_bytes(b"other\n")
    f.write_inventory(files=[{"src": SRC, "dest": DEST},
                             {"src": "files/other.cfg", "dest": "{{ root }}/etc/hp/haproxy.cfg"}], lock_timeout=5)
    res = f.run("push", "haproxy")
    assert res.returncode == 1, res.stdout + res.stderr
    assert statuses(res.stdout) == {"h1": "failed"}
    assert "are the same file on the host" in res.stdout and "locked by another" not in res.stdout
    assert f.dest("h1").read_bytes() == b"old\n" and _backups(real) == [] and f.temp_files() == []
    assert not (f.root("h1") / "reload.log").exists()


# ----------------------------------------------------------------------------------------
# 2. follow: true locks the directory actually written
# ----------------------------------------------------------------------------------------

def test_follow_locks_the_directory_of_the_file_written(fleet):
    """While a push with ``follow`` writes ``srv/real.cfg`` (through ``etc/haproxy/haproxy.cfg``), a
    second run writing into ``srv/`` must wait for its lock: only ``etc/haproxy`` was locked."""
    f = fleet(1)
    srv = f.root("h1") / "srv"
    srv.mkdir()
    (srv / "real.cfg").write_bytes(b"old\n")
    f.dest("h1").symlink_to(srv / "real.cfg")
    beacon_path = Path(tempfile.mkdtemp(prefix="cdfollow-", dir=f.project)) / "beacon"
    go = beacon_path.parent / "go"
    os.mkfifo(go)
    with Beacon(beacon_path) as beacon:
        f.write_inventory(files=[{"src": SRC, "dest": DEST, "follow": True}], lock_timeout=1,
                          reload=f"{beacon.command('reloading')}; read x < '{go}'")
        first = subprocess.Popen([sys.executable, "-m", "concurdeploy", "push", "haproxy"], cwd=f.project,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            beacon.wait(1, 60, first)
            second = f.run("put", "haproxy", str(f.project / SRC), str(srv / "other.cfg"))
        finally:
            fd = os.open(go, os.O_WRONLY | os.O_NONBLOCK)
            os.write(fd, b"go\n")
            os.close(fd)
            out, err = first.communicate(timeout=60)
    assert first.returncode == 0, out + err
    assert (srv / "real.cfg").read_bytes() == HAPROXY_CFG and f.dest("h1").is_symlink()
    assert second.returncode == 1, second.stdout + second.stderr
    assert "locked by another concurdeploy run" in second.stdout, second.stdout
    assert not (srv / "other.cfg").exists()


# ----------------------------------------------------------------------------------------
# 3. a replaced symlink: its backup holds the bytes, a rollback puts the link back
# ----------------------------------------------------------------------------------------

def test_replaced_symlink_is_backed_up_as_its_bytes_and_rolled_back_to_the_link(fleet):
    f = fleet(1)
    other = f.root("h1") / "shared"
    other.mkdir()
    (other / "real.cfg").write_bytes(b"shared config\n")
    f.dest("h1").symlink_to("../../shared/real.cfg")  # a relative link: its own text comes back
    f.write_inventory(reload=FAIL_ONCE)
    res = f.run("push", "haproxy")
    assert res.returncode == 1 and "rolled back" in res.stdout, res.stdout + res.stderr
    assert "ROLLBACK FAILED" not in res.stdout
    assert f.dest("h1").is_symlink() and os.readlink(f.dest("h1")) == "../../shared/real.cfg"
    assert (other / "real.cfg").read_bytes() == b"shared config\n"
    backup, = _backups(f.dest("h1").parent)
    assert not backup.is_symlink() and backup.is_file() and backup.read_bytes() == b"shared config\n"
    assert f.temp_files() == []


def test_replaced_symlinks_backup_is_counted_and_pruned(fleet):
    f = fleet(1)
    other = f.root("h1") / "shared"
    other.mkdir()
    (other / "real.cfg").write_bytes(b"v0\n")
    f.dest("h1").symlink_to(other / "real.cfg")
    f.write_inventory(backups=1)
    src = f.project / SRC
    for i in (1, 2, 3):
        src.write_bytes(b"v%d\n" % i)
        res = f.run("push", "haproxy")
        assert res.returncode == 0, res.stdout + res.stderr
    backups = _backups(f.dest("h1").parent)
    assert [(b.is_symlink(), b.read_bytes()) for b in backups] == [(False, b"v2\n")]
    assert f.dest("h1").read_bytes() == b"v3\n" and not f.dest("h1").is_symlink()
    assert (other / "real.cfg").read_bytes() == b"v0\n"


# ----------------------------------------------------------------------------------------
# 4. --check --diff on a symlinked destination shows what it points to
# ----------------------------------------------------------------------------------------

def test_check_diff_of_a_symlinked_destination_shows_the_bytes_it_points_to(fleet):
    f = fleet(1)
    other = f.root("h1") / "shared"
    other.mkdir()
    (other / "real.cfg").write_bytes(b"global\n    maxconn 10\n")
    f.dest("h1").symlink_to(other / "real.cfg")
    res = f.run("push", "haproxy", "--check", "--diff")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "-    maxconn 10" in res.stdout and "+    maxconn 2000" in res.stdout, res.stdout
    assert " global" in res.stdout  # the common line: the old side is not empty
    assert f.dest("h1").is_symlink() and (other / "real.cfg").read_bytes() == b"global\n    maxconn 10\n"
    assert _backups(f.dest("h1").parent) == [] and f.temp_files() == []


# ----------------------------------------------------------------------------------------
# 5. the login user's upload: owner and mode through its handle, never by path
# ----------------------------------------------------------------------------------------

def test_login_users_upload_gets_owner_and_mode_through_its_handle_before_any_byte(fleet, tmp_path):
    """Seen by a proxy in front of sftp-server: the upload is created with its final mode, its
    owner (the replaced file's, daemon:daemon) and mode set by FSETSTAT on the open handle, and
    only then written; the host's file has them."""
    _need_sftp_server()
    log = tmp_path / "sftp.log"
    f = fleet(1, extra_config=f"Subsystem sftp {sys.executable} {PROXY} --keep --log {log} {SFTP_SERVER}\n")
    f.dest("h1").write_bytes(b"old\n")
    os.chown(f.dest("h1"), 1, 1)
    os.chmod(f.dest("h1"), 0o640)
    res = f.run("push", "haproxy")
    assert res.returncode == 0, res.stdout + res.stderr
    st = os.stat(f.dest("h1"))
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1, 1, 0o640)
    assert f.dest("h1").read_bytes() == HAPROXY_CFG
    steps = [ln.split(" ") for ln in log.read_text().splitlines() if ".concurdeploy-" in ln]
    upload = steps[0][2]
    assert [s[0] if s[0] in ("fsetstat", "write") else s[:2] for s in steps if upload in s] == [
        ["2a", "640"], "fsetstat", "fsetstat", "write"], steps
    assert [s[2:] for s in steps if s[0] == "fsetstat"] == [["1:1", "-"], ["-", "640"]]


@pytest.mark.parametrize("how", ["symlink", "hardlink"])
def test_upload_swapped_for_a_link_is_never_chmodded_through_it(fleet, tmp_path, how):
    """Between the upload and the prepare step the temporary path becomes a link to another file
    with the same bytes (another user who can write the directory). With a hard link, ``chmod``
    by path made that file 0644 and the rename installed it as the destination; a symlink was
    caught by the size check. Now nothing is applied by path: the host fails, both untouched."""
    _need_sftp_server()
    victim = tmp_path / "victim.key"
    victim.write_bytes(HAPROXY_CFG)
    os.chmod(victim, 0o600)
    hard = "--hardlink" if how == "hardlink" else ""
    f = fleet(1, extra_config=f"Subsystem sftp {sys.executable} {PROXY} --keep --swap {victim} {hard} {SFTP_SERVER}\n")
    f.dest("h1").write_bytes(b"old\n")
    os.chmod(f.dest("h1"), 0o644)
    res = f.run("push", "haproxy")
    assert res.returncode == 1, res.stdout + res.stderr
    assert statuses(res.stdout) == {"h1": "failed"}
    assert "no longer a regular file of its own" in res.stdout, res.stdout
    assert stat.S_IMODE(os.stat(victim).st_mode) == 0o600 and victim.read_bytes() == HAPROXY_CFG
    assert os.stat(victim).st_nlink == 1  # the hard link put in the upload's place was removed
    assert not f.dest("h1").is_symlink() and f.dest("h1").read_bytes() == b"old\n"
    assert os.stat(f.dest("h1")).st_nlink == 1
    assert f.temp_files() == [] and not (f.root("h1") / "reload.log").exists()
