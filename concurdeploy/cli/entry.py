"""The ``concurdeploy`` command's first lines: SIGINT/SIGTERM are ours before anything loads.

Importing the CLI (invoke, the option tables, the report code) takes ≈0.25 s; a Ctrl-C in
that time used to raise ``KeyboardInterrupt`` in the middle of an import (a traceback, exit
1). :func:`main` installs a handler first — nothing has been read or contacted yet, so a
signal there ends the command at once with one line and 128 + signal (130, 143) — and then
hands over to :meth:`~concurdeploy.cli.program.ConcurdeployProgram.run`, whose
:class:`~concurdeploy.executors.interrupts.Lifecycle` takes the signals from its first line.

What no Python code can cover: a signal before the interpreter runs this (its own start-up,
≈0.05 s, e.g. while ``site`` imports ``.pth`` hooks) gets Python's default handling.
"""

from __future__ import annotations

import os
import signal

__all__ = ["main"]

_lifecycle = None  # the CLI's Lifecycle, once main() imported it (a small module)


def _early(signum, frame) -> None:
    """Handler outside the CLI's :class:`Lifecycle`: while it loads, one line on stderr and exit
    128 + signal (nothing touched); once the command has ended (its exit code and report are
    decided, only the interpreter's exit is left) the signal is ignored, so it cannot contradict them."""
    if _lifecycle is not None and _lifecycle.finished:
        return
    name = "SIGINT" if signum == signal.SIGINT else "SIGTERM" if signum == signal.SIGTERM else str(signum)
    os.write(2, f"\nconcurdeploy: interrupted ({name}) before any host was contacted\n".encode())
    os._exit(128 + signum)  # no buffered output yet and no child process to wait for


def main() -> None:
    """Entry point of the ``concurdeploy`` command and of ``python -m concurdeploy``."""
    global _lifecycle

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _early)
    from concurdeploy.executors.interrupts import lifecycle

    _lifecycle = lifecycle
    from concurdeploy.cli.program import program

    program.run()
