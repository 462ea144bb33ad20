"""Drive ``concurdeploy`` on a pseudo-terminal: answer one prompt, collect all output.

Shared by the prompt tests (``-K``, key passphrases): the program gets the pty as its
controlling terminal, so ``getpass`` and ``isatty`` see a real terminal.
"""

from __future__ import annotations

import errno
import fcntl
import os
import pty
import select
import signal
import subprocess
import sys
import termios
import time
from typing import Callable


def _controlling_tty() -> None:
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def run_on_terminal(args: list[str], *, cwd: str, env: dict[str, str], prompt: bytes, answer: str,
                    timeout: float, on_poll: Callable[[], None] | None = None) -> tuple[int, str, bool]:
    """Run ``python -m concurdeploy ARGS`` on a pty; type ``answer`` + newline once ``prompt``
    has been printed.

    ``on_poll`` is called about every 50 ms while the program runs (e.g. to scan /proc).
    Returns (exit code, everything printed decoded as UTF-8 with replacement, whether the
    answer was typed). Raises AssertionError if the terminal gets no EOF within ``timeout``
    seconds; the program's process group is killed on the way out in any case.
    """
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "concurdeploy", *args], cwd=cwd,
                            stdin=slave, stdout=slave, stderr=slave, env=env,
                            preexec_fn=_controlling_tty)
    os.close(slave)
    out, typed = b"", False
    deadline = time.monotonic() + timeout
    try:
        while True:
            if on_poll is not None:
                on_poll()
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no EOF from the pty within {timeout} s: {out!r}")
            ready, _, _ = select.select([master], [], [], min(left, 0.05))
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError as e:  # EIO: every writer closed the terminal
                if e.errno == errno.EIO:
                    break
                raise
            if not data:
                break
            out += data
            if not typed and prompt in out:
                os.write(master, answer.encode() + b"\n")
                typed = True
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return code, out.decode("utf-8", "replace"), typed
