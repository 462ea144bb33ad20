"""``get`` writes safely (issue #15 point 4): the remote file's mode kept (a 0600 file never
lands 0644), and no symlink planted under the local folder is ever written through."""

from __future__ import annotations

import os
import stat

from tests.integration.conftest import statuses


def test_get_keeps_a_0600_file_private(fleet, tmp_path):
    f = fleet(1)
    remote = tmp_path / "secret.key"
    remote.write_bytes(b"private\n")
    remote.chmod(0o600)
    out_dir = tmp_path / "fetched"
    res = f.run("get", "haproxy", str(remote), str(out_dir))
    assert res.returncode == 0, res.stdout + res.stderr
    local = out_dir / "h1" / str(remote).lstrip("/")
    assert local.read_bytes() == b"private\n"
    assert stat.S_IMODE(local.stat().st_mode) == 0o600
    assert [p.name for p in local.parent.iterdir()] == ["secret.key"]  # no temp file left


def test_get_refuses_a_planted_symlink_at_the_target(fleet, tmp_path):
    f = fleet(1)
    remote = tmp_path / "app.conf"
    remote.write_bytes(b"new\n")
    out_dir = tmp_path / "fetched"
    victim = tmp_path / "victim"
    victim.write_bytes(b"untouched\n")
    local = out_dir / "h1" / str(remote).lstrip("/")
    local.parent.mkdir(parents=True)
    os.symlink(victim, local)
    res = f.run("get", "haproxy", str(remote), str(out_dir))
    assert res.returncode == 1, res.stdout + res.stderr
    assert statuses(res.stdout) == {"h1": "failed"}
    assert "symlink" in res.stdout
    assert victim.read_bytes() == b"untouched\n"
    assert os.path.islink(local)


def test_get_refuses_a_symlinked_folder_below_the_local_dir(fleet, tmp_path):
    f = fleet(1)
    remote = tmp_path / "app.conf"
    remote.write_bytes(b"new\n")
    out_dir = tmp_path / "fetched"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out_dir.mkdir()
    os.symlink(elsewhere, out_dir / "h1")
    res = f.run("get", "haproxy", str(remote), str(out_dir))
    assert res.returncode == 1, res.stdout + res.stderr
    assert "symlink" in res.stdout
    assert list(elsewhere.iterdir()) == []
