"""``-K/--ask-become-pass`` (issue #17) on a terminal, against real sshd and real sudo: the
password typed at the prompt becomes root on the host, and is on no command line, in no
process environment and in no output. Uses test_become's user (needs root, as those tests do).
"""

from __future__ import annotations

import glob
import os

import pytest

from ..ptyrun import run_on_terminal
from .conftest import HAPROXY_CFG
from . import test_become
from .test_become import USER

sudo_user = test_become.sudo_user    # the fixtures: a user whose sudo needs its password, a fleet
sudo_fleet = test_become.sudo_fleet  # logging in as that user

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                       reason="creates a user and a sudoers drop-in: needs root"),
]


def _leaks(secret: bytes) -> list[str]:
    """Processes whose command line or environment holds ``secret``."""
    found = []
    for path in glob.glob("/proc/[0-9]*/cmdline") + glob.glob("/proc/[0-9]*/environ"):
        try:
            with open(path, "rb") as fh:
                if secret in fh.read():
                    found.append(path)
        except OSError:
            continue
    return found


def _on_terminal(f, *args, password: str, timeout: float = 90) -> tuple[int, str, list[str]]:
    """Run ``concurdeploy ARGS`` on a pseudo-terminal (its controlling terminal); type
    ``password`` at the prompt; return (exit code, output, leaks seen while it ran)."""
    env = {k: v for k, v in os.environ.items() if k != "CD_SUDO_PW"}
    leaks: list[str] = []
    code, out, typed = run_on_terminal([*args, "--no-progress"], cwd=f.project, env=env,
                                       prompt=b"sudo password (-K): ", answer=password, timeout=timeout,
                                       on_poll=lambda: leaks.extend(_leaks(password.encode())))
    assert typed, out
    return code, out, leaks


def test_ask_become_pass_on_a_terminal_becomes_root_and_the_password_stays_put(sudo_fleet):
    f, env = sudo_fleet
    password = env["CD_SUDO_PW"]
    f.group_vars = {"user": USER}  # no become var, no become_password_env: -b and -K alone
    f.write_inventory()
    code, out, leaks = _on_terminal(f, "run", "haproxy", "sleep 1; id -un", "-b", "-K", password=password)
    assert code == 0, out
    assert "h1 | root" in out.replace("\r", "")
    assert password not in out and leaks == []

    code, out, leaks = _on_terminal(f, "push", "haproxy", "-K", "-b", password=password)
    assert code == 0, out
    assert f.dest("h1").read_bytes() == HAPROXY_CFG
    st = f.dest("h1").stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, 0, 0o640)  # kept, as root replaced it
    assert password not in out and leaks == []

    code, out, _ = _on_terminal(f, "run", "haproxy", "id -un", "-b", "-K", password="wrong-" + password)
    assert code == 1 and "refused the password typed for -K" in out, out
    assert "wrong-" not in out
