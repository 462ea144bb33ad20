"""Local, SSH-free checks of the pieces of ``concurdeploy.operations.push`` that build remote paths
and shell scripts: :func:`temp_name` and the prepare script (run here with a real ``sh``)."""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import stat
import subprocess
from pathlib import Path

import pytest

from concurdeploy.operations.jobs import FileSpec
from concurdeploy.operations.push import (
    _FAIL,
    _WARN,
    DestFacts,
    _prepare_script,
    q,
    temp_name,
)

HEX32 = r"[0-9a-f]{32}"
NASTY = "conf dir $(touch pwned) ;'\"&`id` \\ *"


# ---------------------------------------------------------------------------- temp_name

@pytest.mark.parametrize("target, pattern", [
    ("/etc/haproxy/haproxy.cfg", rf"/etc/haproxy/\.haproxy\.concurdeploy-{HEX32}\.cfg"),
    ("/etc/nginx/conf.d/site.conf", rf"/etc/nginx/conf\.d/\.site\.concurdeploy-{HEX32}\.conf"),
    ("/etc/hosts", rf"/etc/\.hosts\.concurdeploy-{HEX32}"),
    ("/root/.bashrc", rf"/root/\.bashrc\.concurdeploy-{HEX32}"),
    ("/srv/a.tar.gz", rf"/srv/\.a\.tar\.concurdeploy-{HEX32}\.gz"),
    ("/a b/c 'd'.yaml", rf"/a b/\.c 'd'\.concurdeploy-{HEX32}\.yaml"),
])
def test_temp_name_same_directory_same_suffix_dot_file(target, pattern):
    tmp = temp_name(target)
    assert re.fullmatch(pattern, tmp), tmp
    assert posixpath.dirname(tmp) == posixpath.dirname(target)  # same filesystem: rename works
    assert posixpath.basename(tmp).startswith(".")               # conf.d/*.conf globs skip it
    if "." in posixpath.basename(target).lstrip("."):
        assert tmp.endswith("." + target.rsplit(".", 1)[1])        # validators see the suffix


def test_temp_name_is_unique():
    names = {temp_name("/etc/haproxy/haproxy.cfg") for _ in range(2000)}
    assert len(names) == 2000


# ---------------------------------------------------------------------------- prepare script

def sh(script: str, cwd: Path, *flags: str) -> subprocess.CompletedProcess:
    """Run ``script`` with the system's POSIX ``sh`` (dash on Debian: stricter than bash)."""
    return subprocess.run(["sh", *flags, "-c", script], cwd=cwd, capture_output=True, text=True,
                          timeout=20)


def stage(directory: Path, name: str, content: bytes, *, existing: bytes | None = None,
          mode: int | None = None, validate: str | None = None):
    """Create a destination (optionally existing) and its uploaded temporary copy.

    :returns: ``(FileSpec, DestFacts, tmp)`` as :func:`push` hands them to the script.
    """
    directory.mkdir(parents=True, exist_ok=True)
    dest = directory / name
    tmp = temp_name(str(dest))
    Path(tmp).write_bytes(content)
    os.chmod(tmp, 0o600)
    spec = FileSpec(src="/local/" + name, dest=str(dest), sha256=hashlib.sha256(content).hexdigest(),
                    size=len(content), mode=mode, validate=validate)
    if existing is None:
        fact = DestFacts(str(dest), "absent", str(dest))
    else:
        dest.write_bytes(existing)
        os.chmod(dest, 0o640)
        st = os.stat(dest)
        fact = DestFacts(str(dest), "file", str(dest), 0o640, st.st_uid, st.st_gid, len(existing),
                         hashlib.sha256(existing).hexdigest())
    return spec, fact, tmp


@pytest.fixture
def nasty_dir(tmp_path) -> Path:
    d = tmp_path / NASTY
    d.mkdir()
    return d


def test_prepare_script_quotes_hostile_paths(nasty_dir, tmp_path):
    (nasty_dir / "include.cfg").write_text("included\n")
    items = [
        stage(nasty_dir, "my file;`touch pwned2`.cfg", b"maxconn 10\n", existing=b"old\n",
              validate="grep -q maxconn {tmp} && test -f include.cfg"),
        stage(nasty_dir, "new $(id).conf", b"fresh\n", mode=0o604, validate="test -s {tmp}"),
    ]
    script = _prepare_script(items)
    assert sh(script, tmp_path, "-n").returncode == 0  # parses

    res = sh(script, tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert _FAIL not in res.stdout
    # nothing embedded in a path was executed, anywhere
    assert not list(tmp_path.rglob("pwned*")) and not Path("pwned").exists()
    # modes: an existing file's mode is kept (0640), a declared one applied (0604)
    assert stat.S_IMODE(os.stat(items[0][2]).st_mode) == 0o640
    assert stat.S_IMODE(os.stat(items[1][2]).st_mode) == 0o604
    # the destinations themselves are not touched by the prepare step
    assert (nasty_dir / "my file;`touch pwned2`.cfg").read_bytes() == b"old\n"
    assert not (nasty_dir / "new $(id).conf").exists()


def test_prepare_script_validate_failure_names_the_file(nasty_dir, tmp_path):
    items = [
        stage(nasty_dir, "a.cfg", b"good\n", validate="grep -q good {tmp}"),
        stage(nasty_dir, "b 'q'.cfg", b"bad\n", validate="echo \"rejecting $(basename {tmp})\"; exit 4"),
    ]
    res = sh(_prepare_script(items), tmp_path)
    assert res.returncode == 1
    fail = [ln for ln in res.stdout.splitlines() if ln.startswith(_FAIL)]
    assert fail == [f"{_FAIL} 1 validate 4"]
    assert "rejecting .b 'q'.concurdeploy-" in res.stdout  # {tmp} reached the validator intact


def test_prepare_script_detects_a_corrupted_upload(nasty_dir, tmp_path):
    spec, fact, tmp = stage(nasty_dir, "c.cfg", b"expected content\n")
    Path(tmp).write_bytes(b"expected contenX\n")  # same size, other bytes
    res = sh(_prepare_script([(spec, fact, tmp)]), tmp_path)
    assert res.returncode == 1
    assert f"{_FAIL} 0 checksum" in res.stdout

    Path(tmp).write_bytes(b"short\n")
    res = sh(_prepare_script([(spec, fact, tmp)]), tmp_path)
    assert res.returncode == 1
    assert f"{_FAIL} 0 size 6" in res.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another owner needs root")
def test_prepare_script_keeps_the_replaced_files_owner(tmp_path):
    spec, fact, tmp = stage(tmp_path / "d", "o.cfg", b"x\n", existing=b"y\n")
    os.chown(fact.target, 1234, 1235)
    fact = DestFacts(fact.dest, "file", fact.target, 0o640, 1234, 1235, fact.size, fact.sha256)
    res = sh(_prepare_script([(spec, fact, tmp)]), tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert _WARN not in res.stdout
    st = os.stat(tmp)
    assert (st.st_uid, st.st_gid) == (1234, 1235)


def test_q_round_trips_through_sh(tmp_path):
    for word in [NASTY, "", "-n", "a\nb", "ünïcode ✓", "'", '"']:
        res = sh(f"printf '%s' {q(word)}", tmp_path)
        assert res.stdout == word

