"""``concurdeploy init`` (issue #17): the scaffold it writes, its refusal to overwrite, and the
path of a new user: a wheel (non-editable) installed in a fresh venv, ``init``, ``push haproxy``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from concurdeploy.cli.init import scaffold_files

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
EXPECTED = [".gitignore", "ci/deploy-haproxy.yml", "concurdeploy.yaml", "examples/inventories/production.yaml",
            "files/haproxy/haproxy.cfg", "inventories/sandbox.yaml", "requirements.txt", "tasks.py"]


def _cd(*args, cwd, env=None, exe=(sys.executable, "-m", "concurdeploy")):
    return subprocess.run([*exe, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_init_writes_the_scaffold_then_refuses_to_overwrite_unless_force(tmp_path):
    proj = tmp_path / "new" / "proj"
    res = _cd("init", str(proj), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert sorted(_tree(proj)) == EXPECTED
    assert _tree(proj) == scaffold_files()
    assert all((proj / rel).stat().st_mode & 0o777 == 0o644 for rel in EXPECTED)
    assert "concurdeploy push haproxy" in res.stdout
    assert not list(proj.rglob(".*.*"))  # no temporary file left (.gitignore is the only dot file)

    (proj / "tasks.py").write_text("# mine\n")
    (proj / "notes.txt").write_text("keep\n")
    before = _tree(proj)
    again = _cd("init", cwd=proj)  # DIR defaults to the current directory
    assert again.returncode == 2 and "Traceback" not in again.stderr
    for rel in EXPECTED:
        assert rel in again.stderr
    assert "--force" in again.stderr and "Nothing was written" in again.stderr
    assert _tree(proj) == before

    forced = _cd("init", ".", "--force", cwd=proj)
    assert forced.returncode == 0, forced.stdout + forced.stderr
    after = _tree(proj)
    assert after["tasks.py"] == scaffold_files()["tasks.py"] and after["notes.txt"] == b"keep\n"

    (tmp_path / "afile").write_text("x")
    on_file = _cd("init", str(tmp_path / "afile"), cwd=tmp_path)
    assert on_file.returncode == 2 and "not a folder" in on_file.stderr
    assert (tmp_path / "afile").read_text() == "x"


@pytest.mark.parametrize("where", ["under-a-file", "/proc/concurdeploy-init"])
def test_init_where_no_folder_can_be_made_exits_2_without_a_traceback(tmp_path, where):
    (tmp_path / "file").write_text("x")
    target = str(tmp_path / "file" / "sub") if where == "under-a-file" else where
    res = _cd("init", target, cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr and "cannot create or write the folder" in res.stderr
    assert "nothing was written" in res.stderr


def test_init_then_push_with_the_sandbox_and_the_example_task(tmp_path):
    res = _cd("init", "proj", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    proj = tmp_path / "proj"
    push = _cd("push", "haproxy", cwd=proj)
    assert push.returncode == 0, push.stdout + push.stderr
    src = (proj / "files" / "haproxy" / "haproxy.cfg").read_bytes()
    for host in ("lb1", "lb2", "lb3", "lb4"):
        assert (proj / ".sandbox" / host / "etc" / "haproxy" / "haproxy.cfg").read_bytes() == src
        assert len((proj / ".sandbox" / host / "reload.log").read_text().splitlines()) == 1
    uptime = _cd("uptime", "haproxy", cwd=proj)  # the example task of the scaffold's tasks.py
    assert uptime.returncode == 0, uptime.stdout + uptime.stderr
    assert uptime.stdout.count("load average") == 4, uptime.stdout
    check = _cd("push", "haproxy", "--check", "--detailed-exitcode", cwd=proj)
    assert check.returncode == 0, check.stdout + check.stderr


def _copy_source(dest: Path) -> Path:
    """The repository's files (a git checkout's tracked and new files; else the tree without
    build leftovers), so that building never writes into the checkout."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, timeout=60)
    if listed.returncode != 0:  # not a git checkout (an unpacked archive)
        shutil.copytree(REPO, dest, ignore=shutil.ignore_patterns(".git", "build", "dist", "*.egg-info",
                                                                  "__pycache__", ".sandbox"))
        return dest
    files = listed.stdout.split(b"\0")
    for name in filter(None, files):
        src = REPO / name.decode()
        if src.is_file():
            (dest / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name.decode())
    return dest


def _wheel(tmp_path: Path) -> Path:
    src = _copy_source(tmp_path / "src")
    out = tmp_path / "dist"
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                          "--no-index", "-w", str(out), str(src)], capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    (wheel,) = out.glob("concurdeploy-*.whl")
    return wheel


def test_the_wheel_carries_every_scaffold_file(tmp_path):
    with zipfile.ZipFile(_wheel(tmp_path)) as zf:
        names = set(zf.namelist())
        packaged = {n.split("concurdeploy/scaffold/project/", 1)[1] for n in names
                    if n.startswith("concurdeploy/scaffold/project/")}
        assert {"gitignore" if r == ".gitignore" else r for r in scaffold_files() if r != "requirements.txt"} \
            == packaged
        assert "concurdeploy/sandbox/server.py" in names and "concurdeploy/report/report.schema.json" in names


def test_new_user_path_wheel_in_a_fresh_venv_then_init_and_push(tmp_path):
    """A non-editable install, as a new user gets it: a wheel built from the source, installed
    in a new venv (its dependencies taken from this interpreter's site-packages: no network),
    run from outside the checkout with no PYTHONPATH. Takes ~20-40 s on a loaded 2-core machine."""
    started = time.monotonic()
    wheel = _wheel(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
                   check=True, timeout=120)
    py = venv / "bin" / "python"
    res = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-index", "--ignore-installed",
                          "--no-deps", str(wheel)], capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run([str(py), "-c", "import concurdeploy; print(concurdeploy.__file__)"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=60, env=env, check=True).stdout.strip()
    assert where.startswith(str(venv)), where  # the wheel's copy, not the checkout's
    exe = (str(venv / "bin" / "concurdeploy"),)

    def cd(*args, cwd):
        return subprocess.run([*exe, *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=env,
                              stdin=subprocess.DEVNULL)

    init = cd("init", "proj", cwd=tmp_path)
    assert init.returncode == 0, init.stdout + init.stderr
    proj = tmp_path / "proj"
    push = cd("push", "haproxy", cwd=proj)
    assert push.returncode == 0, push.stdout + push.stderr
    assert "4 changed" in push.stdout
    src = (proj / "files" / "haproxy" / "haproxy.cfg").read_bytes()
    assert all((proj / ".sandbox" / h / "etc" / "haproxy" / "haproxy.cfg").read_bytes() == src
               for h in ("lb1", "lb2", "lb3", "lb4"))
    again = cd("push", "haproxy", cwd=proj)
    assert again.returncode == 0 and "4 ok" in again.stdout, again.stdout + again.stderr
    assert time.monotonic() - started < 120
