"""Push data safety (issue #13) against real OpenSSH sshd on loopback: protocol lines never
mixed with step output, backups that cannot alias, locks on every destination directory,
bad destinations refused up front. Each test checks the host's files, not only the report.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.sshd import Beacon

from .conftest import HAPROXY_CFG, statuses

pytestmark = pytest.mark.integration

SRC = "files/haproxy/haproxy.cfg"
DEST = "{{ root }}/etc/haproxy/haproxy.cfg"
#: A reload failing the first time only: the push rolls back, and the rollback's reload works.
FAIL_ONCE = "if [ -e '{{ root }}/failed-once' ]; then true; else : > '{{ root }}/failed-once'; exit 1; fi"


def _dir(f, name="h1") -> Path:
    return f.root(name) / "etc" / "haproxy"


def _backups(directory: Path, base: str = "haproxy.cfg") -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.startswith(base + ".concurdeploy-")
                  and p.name.endswith(".bak"))


# ----------------------------------------------------------------------------------------
# 1. protocol lines never mixed with command output
# ----------------------------------------------------------------------------------------

def test_validate_printing_without_newline_keeps_its_exit_status(fleet):
    f = fleet(1)
    f.dest("h1").write_bytes(b"old\n")
    f.write_inventory(files=[{"src": SRC, "dest": DEST,
                              "validate": "test -s {tmp} && printf 'no newline here'; exit 3"}])
    res = f.run("push", "haproxy")
    assert res.returncode == 1, res.stdout
    assert "ValidateFailed" in res.stdout and "(exit 3)" in res.stdout, res.stdout
    assert "@@concurdeploy" not in res.stdout + res.stderr
    assert f.dest("h1").read_bytes() == b"old\n" and f.temp_files() == []


def test_validate_printing_a_protocol_like_line_cannot_fake_a_backup(fleet):
    f = fleet(1)
    f.dest("h1").write_bytes(b"old\n")
    f.write_inventory(files=[{"src": SRC, "dest": DEST,
                              "validate": "echo '@@concurdeploy-backup 0 /etc/passwd'; test -s {tmp}"}],
                      reload=FAIL_ONCE)
    res = f.run("push", "haproxy")
    assert res.returncode == 1 and "rolled back" in res.stdout, res.stdout
    assert f.dest("h1").read_bytes() == b"old\n"


def test_hash_sign_in_validate_command(fleet):
    f = fleet(1)
    f.write_inventory(files=[{"src": SRC, "dest": DEST, "validate": "grep -q maxconn {tmp} # a comment"}])
    res = f.run("push", "haproxy")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f.dest("h1").read_bytes() == HAPROXY_CFG


def test_backslashes_in_destination_backup_and_rollback(fleet):
    f = fleet(1)
    dest = _dir(f) / "back\\nslash\\c.cfg"
    dest.write_bytes(b"old\n")
    f.write_inventory(files=[{"src": SRC, "dest": str(dest)}], reload=FAIL_ONCE)
    res = f.run("push", "haproxy")
    assert res.returncode == 1 and "rolled back" in res.stdout, res.stdout
    assert "ROLLBACK FAILED" not in res.stdout
    assert dest.read_bytes() == b"old\n"
    assert [b.read_bytes() for b in _backups(_dir(f), dest.name)] == [b"old\n"]


def test_reload_printing_without_newline_exit_status_reported(fleet):
    f = fleet(1)
    f.write_inventory(reload="printf 'partial'; exit 4")
    res = f.run("push", "haproxy")
    assert res.returncode == 1
    assert "reload failed (exit 4)" in res.stdout, res.stdout
    assert "@@concurdeploy" not in res.stdout


# ----------------------------------------------------------------------------------------
# 2. backups that cannot alias
# ----------------------------------------------------------------------------------------

def test_in_place_with_failing_reload_restores_the_original_bytes(fleet):
    f = fleet(1)
    old = b"original config\n" * 50
    f.dest("h1").write_bytes(old)
    inode = f.dest("h1").stat().st_ino
    f.write_inventory(files=[{"src": SRC, "dest": DEST, "replace": "in-place"}], reload=FAIL_ONCE)
    res = f.run("push", "haproxy")
    assert res.returncode == 1 and "rolled back" in res.stdout, res.stdout
    assert hashlib.sha256(f.dest("h1").read_bytes()).digest() == hashlib.sha256(old).digest()
    assert f.dest("h1").stat().st_ino == inode  # rewritten in place, not renamed over
    assert f.temp_files() == []


def test_in_place_backup_holds_the_old_bytes(fleet):
    f = fleet(1)
    f.dest("h1").write_bytes(b"old\n")
    f.write_inventory(files=[{"src": SRC, "dest": DEST, "replace": "in-place"}])
    res = f.run("push", "haproxy")
    assert res.returncode == 0, res.stdout
    assert f.dest("h1").read_bytes() == HAPROXY_CFG
    backups = _backups(_dir(f))
    assert [b.read_bytes() for b in backups] == [b"old\n"]
    assert backups[0].stat().st_ino != f.dest("h1").stat().st_ino


def test_two_pushes_in_the_same_second_keep_both_backups(fleet):
    f = fleet(1)
    f.write_inventory(backups=5)
    src = f.project / SRC
    f.dest("h1").write_bytes(b"v0\n")
    for i in (1, 2, 3):
        src.write_bytes(b"v%d\n" % i)
        res = f.run("push", "haproxy")
        assert res.returncode == 0, res.stdout
    contents = sorted(b.read_bytes() for b in _backups(_dir(f)))
    assert contents == [b"v0\n", b"v1\n", b"v2\n"]


def test_keep_n_counts_only_real_backups(fleet):
    f = fleet(1)
    f.write_inventory(backups=1)
    d = _dir(f)
    notes = d / "haproxy.cfg.concurdeploy-my-notes.bak"
    notes.write_bytes(b"keep me\n")
    folder = d / "haproxy.cfg.concurdeploy-20200101T000000Z-abcdef.bak"
    folder.mkdir()
    src = f.project / SRC
    f.dest("h1").write_bytes(b"v0\n")
    for i in (1, 2):
        src.write_bytes(b"v%d\n" % i)
        res = f.run("push", "haproxy")
        assert res.returncode == 0, res.stdout
    assert notes.read_bytes() == b"keep me\n" and folder.is_dir()
    real = [b for b in _backups(d) if b not in (notes, folder)]
    assert [b.read_bytes() for b in real] == [b"v1\n"]


# ----------------------------------------------------------------------------------------
# 3. locks on every destination directory
# ----------------------------------------------------------------------------------------

def test_every_one_of_twenty_destination_directories_is_locked(fleet):
    f = fleet(1)
    files = []
    for i in range(20):
        d = f.root("h1") / f"d{i:02d}"
        d.mkdir(parents=True)
        files.append({"src": SRC, "dest": str(d / "x.cfg")})
    beacon_path = Path(tempfile.mkdtemp(prefix="cdlock-", dir=f.project)) / "beacon"
    go = beacon_path.parent / "go"
    os.mkfifo(go)
    with Beacon(beacon_path) as beacon:
        f.write_inventory(files=files, lock_timeout=1,
                          reload=f"{beacon.command('reloading')}; read x < '{go}'")
        first = subprocess.Popen([sys.executable, "-m", "concurdeploy", "push", "haproxy"], cwd=f.project,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            beacon.wait(1, 60, first)
            # a second run on the LAST directory only (``put`` locks its file's directory)
            second = f.run("put", "haproxy", str(f.project / SRC), str(f.root("h1") / "d19" / "y.cfg"))
        finally:
            fd = os.open(go, os.O_WRONLY | os.O_NONBLOCK)
            os.write(fd, b"go\n")
            os.close(fd)
            out, err = first.communicate(timeout=60)
    assert first.returncode == 0, out + err
    assert second.returncode == 1, second.stdout
    assert "locked by another concurdeploy run" in second.stdout, second.stdout
    assert not (f.root("h1") / "d19" / "y.cfg").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="runs a process as nobody: needs root")
def test_unprivileged_reader_cannot_block_a_push(fleet):
    f = fleet(1)
    base = Path(tempfile.mkdtemp(prefix="cdpush-lock-", dir="/var/tmp"))
    try:
        os.chmod(base, 0o755)
        d = base / "etc"
        d.mkdir(mode=0o755)
        dest = d / "app.cfg"
        f.write_inventory(files=[{"src": SRC, "dest": str(dest)}], lock_timeout=1, reload=None)
        assert f.run("push", "haproxy").returncode == 0  # the lock file exists from now on
        (f.project / SRC).write_bytes(b"new\n")
        script = (f"for p in {d} {d}/.concurdeploy.lock; do exec 8<\"$p\" 2>/dev/null && "
                  f"flock -n 8 && echo locked; done; echo done; read x")
        holder = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                   "sh", "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True)
        try:
            assert holder.stdout.readline() in ("locked\n", "done\n")
            res = f.run("push", "haproxy")
        finally:
            holder.communicate("x\n", timeout=30)
        assert res.returncode == 0, res.stdout
        assert dest.read_bytes() == b"new\n"
        lock = d / ".concurdeploy.lock"
        assert lock.is_file() and (lock.stat().st_mode & 0o777) == 0o600
    finally:
        shutil.rmtree(base, ignore_errors=True)


# ----------------------------------------------------------------------------------------
# 8. bad destinations refused up front; odd but valid names written exactly
# ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["/etc/a\rb.cfg", "/etc/a\x1cb.cfg", "/etc/a\u2028b.cfg", "/etc/a\x85b.cfg",
                                 "/etc/a\x7fb.cfg", "etc/relative.cfg", "/etc/../passwd", "/etc/dir/",
                                 "/etc//x.cfg"])
def test_bad_destination_refused_before_any_host(fleet, bad):
    f = fleet(1)
    f.servers[0].stop()  # no host may be contacted: a stopped one proves it
    f.write_inventory(files=[{"src": SRC, "dest": bad}])
    res = f.run("push", "haproxy")
    assert res.returncode == 2, res.stdout + res.stderr
    assert "hosts.yaml" in res.stderr and "dest" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


def test_odd_names_are_written_exactly(fleet):
    f = fleet(1)
    d = _dir(f)
    names = ["with space.cfg", "quote'\"s.cfg", "back\\slash.cfg", "$(touch pwned).cfg", "star*.cfg",
             "-leading-dash.cfg", "ünïcödé-配置.cfg"]
    for n in names:
        (d / n).write_bytes(b"old\n")
    f.write_inventory(files=[{"src": SRC, "dest": str(d / n)} for n in names], reload=FAIL_ONCE)
    res = f.run("push", "haproxy")  # a failing reload: every backup is restored too
    assert res.returncode == 1 and "rolled back" in res.stdout, res.stdout
    assert all((d / n).read_bytes() == b"old\n" for n in names)
    f.write_inventory(files=[{"src": SRC, "dest": str(d / n)} for n in names])
    res = f.run("push", "haproxy")
    assert res.returncode == 0, res.stdout
    assert statuses(res.stdout) == {"h1": "changed"}
    listing = sorted(p.name for p in d.iterdir() if not p.name.startswith(".") and ".concurdeploy-" not in p.name)
    assert listing == sorted(names)
    assert all((d / n).read_bytes() == HAPROXY_CFG for n in names)
    assert not list(f.project.rglob("pwned")) and f.temp_files() == []
