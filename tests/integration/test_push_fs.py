"""What a push does to the destination's file system (issue #13 points 4–7, 9), on real OpenSSH
sshd on loopback: SFTP servers without ``posix-rename``, owner/group/mode kept or refused,
symlinks and mounts decided explicitly, files safe from the first byte, the path actually
written in the report. Each test checks the host's files, not only the report.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import paramiko
import pytest

from .conftest import HAPROXY_CFG, statuses

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
    assert [p.name for p in real_dir.iterdir()] == ["real.cfg"] or all(
        p.name.endswith(".bak") for p in real_dir.iterdir() if p.name != "real.cfg")
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
    import shutil
    import subprocess

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


def test_bind_mounted_file_is_refused_then_rewritten_in_place_on_request(fleet, bind_mount):
    f = fleet(1)
    outside = f.root("h1") / "container-view.cfg"
    outside.write_bytes(b"old\n")
    f.dest("h1").write_bytes(b"placeholder\n")
    bind_mount(outside, f.dest("h1"))
    inode = os.stat(f.dest("h1")).st_ino
    res, doc = _report(f)
    assert res.returncode == 1, res.stdout + res.stderr
    assert statuses(res.stdout) == {"h1": "failed"} and "replaced" not in res.stdout
    assert "mount point" in res.stdout and "replace: in-place" in res.stdout
    assert outside.read_bytes() == b"old\n" and f.dest("h1").read_bytes() == b"old\n"
    assert doc["hosts"][0]["changes"] == [] and f.temp_files() == []
    f.write_inventory(files=[{"src": SRC, "dest": DEST, "replace": "in-place"}])
    res, doc = _report(f)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "rewritten in place" in res.stdout
    assert outside.read_bytes() == HAPROXY_CFG and os.stat(f.dest("h1")).st_ino == inode
    change, = doc["hosts"][0]["changes"]
    assert (change["path"], change["method"], change["action"]) == (str(f.dest("h1")), "in-place", "replaced")


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
    opens = [ln.split(" ", 2) for ln in log.read_text().splitlines()]
    uploads = [(flags, perm) for flags, perm, path in opens if ".concurdeploy-" in path]
    assert uploads == [("2a", "600")], opens  # WRITE|CREAT|EXCL (0x02|0x08|0x20), mode 0600
