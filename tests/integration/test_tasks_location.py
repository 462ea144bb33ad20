"""A ``tasks.py`` is loaded only from the project directory or a folder the user trusts (issue
#15.4): invoke searches the parents of the current directory too, and imports what it finds.

Each case plants a ``tasks.py`` that creates a marker file when imported, then runs the real
``concurdeploy --list`` from a folder below it: refused (exit 2, one paragraph, no traceback,
marker absent) when the file or its folder belongs to another user or is group/world-writable;
loaded otherwise. Needs root (to give files to ``nobody``).
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                       reason="gives files to the user nobody: needs root"),
]


def _nobody() -> tuple[int, int]:
    pw = pwd.getpwnam("nobody")
    return pw.pw_uid, pw.pw_gid


def _plant(parent: Path, marker: Path, package: bool = False) -> Path:
    """``parent/tasks.py`` (or ``parent/tasks/__init__.py``) that writes ``marker`` on import,
    and a project folder ``parent/project`` (root's, 0755) to run from; returns the project."""
    parent.mkdir(mode=0o755)
    code = (f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\n"
            f"from invoke import task\n\n@task\ndef planted(c):\n    pass\n")
    if package:
        (parent / "tasks").mkdir(mode=0o755)
        (parent / "tasks" / "__init__.py").write_text(code)
    else:
        (parent / "tasks.py").write_text(code)
    project = parent / "project"
    project.mkdir(mode=0o755)
    return project


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "concurdeploy", *args, "--list"], cwd=cwd,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def _give(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)


@pytest.mark.parametrize("case", ["parent-of-nobody", "file-of-nobody", "world-writable-parent",
                                  "group-writable-file", "package-of-nobody"])
def test_tasks_py_in_an_untrusted_parent_is_refused_and_not_run(tmp_path, case):
    marker = tmp_path / "marker"
    parent = tmp_path / "parent"
    project = _plant(parent, marker, package=case == "package-of-nobody")
    uid, gid = _nobody()
    planted = parent / ("tasks" if case == "package-of-nobody" else "tasks.py")
    if case in ("parent-of-nobody", "package-of-nobody"):
        _give(parent, uid, gid)
        _give(planted, uid, gid)
        if case == "package-of-nobody":
            _give(planted / "__init__.py", uid, gid)
    elif case == "file-of-nobody":
        _give(planted, uid, gid)
    elif case == "world-writable-parent":
        os.chmod(parent, 0o777)
    elif case == "group-writable-file":
        os.chmod(planted, 0o664)
    res = _run(project)
    assert res.returncode == 2, res.stdout + res.stderr
    assert not marker.exists(), "the planted tasks.py was imported"
    err = res.stderr
    assert "refusing to load" in err and str(parent) in err and "Traceback" not in err, err
    assert "--search-root" in err and "Nothing was run" in err
    assert len(err.strip().splitlines()) == 1  # one paragraph
    assert "planted" not in res.stdout


def test_tasks_py_in_a_trusted_parent_or_the_project_itself_is_loaded(tmp_path):
    uid, gid = _nobody()
    # a parent folder that is root's (the user here) and not writable by others: loaded
    marker = tmp_path / "marker1"
    project = _plant(tmp_path / "mine", marker)
    res = _run(project)
    assert res.returncode == 0, res.stdout + res.stderr
    assert marker.read_text() == "imported" and "planted" in res.stdout

    # nobody's tasks.py in the directory concurdeploy runs in: the project's own, loaded
    marker = tmp_path / "marker2"
    here = _plant(tmp_path / "theirs", marker).parent
    _give(here, uid, gid)
    _give(here / "tasks.py", uid, gid)
    res = _run(here)
    assert res.returncode == 0, res.stdout + res.stderr
    assert marker.read_text() == "imported"

    # the same parent named on purpose with --search-root: loaded
    marker.unlink()
    res = _run(here / "project", "--search-root", str(here))
    assert res.returncode == 0, res.stdout + res.stderr
    assert marker.read_text() == "imported"
