"""The README's API examples run as written (issue #17), in a project made by ``concurdeploy init``
(its sandbox hosts: real SSH servers on 127.0.0.1 with strict host keys).

Blocks are found by their marker, the HTML comment on the line before them:
``<!-- readme-test: tasks.py -->`` (written as the project's tasks.py), ``<!-- readme-test:
shell -->`` (``$ concurdeploy …  # exit N: text``: run, the exit code and text checked) and
``<!-- readme-test: script -->`` (written as example.py, run with python: it asserts itself).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"
_BLOCK = re.compile(r"<!-- readme-test: (?P<kind>[\w.]+) -->\n```\w*\n(?P<body>.*?)```", re.S)


def blocks() -> list[tuple[str, str]]:
    """``(kind, code)`` of every marked block, in README order."""
    return [(m["kind"], m["body"]) for m in _BLOCK.finditer(README.read_text())]


def test_the_readme_has_the_marked_examples():
    kinds = [k for k, _ in blocks()]
    assert kinds == ["tasks.py", "shell", "script"], kinds


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, env=dict(os.environ),
                          stdin=subprocess.DEVNULL)


def test_readme_api_examples_run_as_written(tmp_path):
    init = _run([sys.executable, "-m", "concurdeploy", "init", "proj"], tmp_path)
    assert init.returncode == 0, init.stdout + init.stderr
    proj = tmp_path / "proj"
    ran = 0
    for kind, code in blocks():
        if kind == "tasks.py":
            (proj / "tasks.py").write_text(code)
        elif kind == "script":
            (proj / "example.py").write_text(code)
            res = _run([sys.executable, "example.py"], proj)
            assert res.returncode == 0, res.stdout + res.stderr
            assert res.stdout == "", res.stdout  # nothing printed from Python unless console=True
            ran += 1
        elif kind == "shell":
            for line in code.splitlines():
                m = re.match(r"^\$ (concurdeploy [^#]+?)\s+# exit (\d+)(?:: (.*))?$", line)
                assert m, line
                res = _run([sys.executable, "-m", *shlex.split(m[1])], proj)
                assert res.returncode == int(m[2]), (line, res.stdout + res.stderr)
                if m[3] and ":" in m[3] and "RemoteCommandFailed" in m[3]:
                    assert m[3].split(", ", 1)[1] in res.stdout, (line, res.stdout)
                ran += 1
    assert ran == 3
    # the facts example printed each sandbox host's kernel release (this machine's: the sandbox runs locally)
    release = os.uname().release
    res = _run([sys.executable, "-m", "concurdeploy", "facts", "haproxy"], proj)
    assert res.returncode == 0 and res.stdout.count(f"| {release}") == 4, res.stdout
