"""Run one CLI on many inventories from ONE Python process that imports the tool once and
forks a child per inventory: the differential test's way to avoid ~0.5–0.9 s of interpreter
and import start-up per call.

Run as a script (the tests never import it, so pytest never imports ansible)::

    python3 tests/differential/fork_driver.py TOOL OUT_DIR INVENTORY [INVENTORY ...]

The view is ``--list`` unless the environment sets ``FORK_DRIVER_VIEW=--graph``.

``TOOL``:

- ``ansible``: the child runs ``InventoryCLI.cli_executor(["ansible-inventory", "-i", PATH,
  "--list"])``, the function the ``ansible-inventory`` command runs;
- ``concurdeploy``: the child runs ``concurdeploy.cli.program.program.run()`` with
  ``sys.argv = ["concurdeploy", "inventory", "--list", "-i", PATH]``, what
  ``python3 -m concurdeploy`` runs (``concurdeploy/__main__.py``).

For the i-th inventory (0-based) it writes ``OUT_DIR/<i>.out`` (stdout), ``OUT_DIR/<i>.err``
(stderr) and ``OUT_DIR/<i>.rc`` (exit code; ``-14`` = killed after ``CASE_TIMEOUT`` s).
Each child starts from the parent's state right after the import, with fresh caches of its
own (a fork shares nothing it could write back), so cases cannot leak into each other; the
output is byte-identical to the commands' (``test_fork_driver_matches_the_commands``).

The caller sets the environment (``HOME``, ``ANSIBLE_*``) and the working directory: both
tools read their configuration from there. At most ``JOBS`` children run at a time; each is
reaped with ``os.wait`` (no polling, no sleep), and each is killed by ``SIGALRM`` after
``CASE_TIMEOUT`` seconds, so a hung inventory script cannot hang the run.
"""

from __future__ import annotations

import os
import signal
import sys

#: Children running at once (the machine has 2 cores).
JOBS = 2
#: Seconds one child may run (SIGALRM's default action ends it).
CASE_TIMEOUT = 60
#: What both tools print: ``--list`` (JSON) or ``--graph`` (the group tree).
VIEW = os.environ.get("FORK_DRIVER_VIEW", "--list")


def _run_ansible(path: str) -> None:
    from ansible.cli.inventory import InventoryCLI

    InventoryCLI.cli_executor(["ansible-inventory", "-i", path, VIEW])


def _run_concurdeploy(path: str) -> None:
    from concurdeploy.cli.program import program

    sys.argv = ["concurdeploy", "inventory", VIEW, "-i", path]
    program.run()


TOOLS = {"ansible": ("ansible.cli.inventory", _run_ansible),
         "concurdeploy": ("concurdeploy.cli.program", _run_concurdeploy)}


def _child(run, path: str, out: str, err: str) -> None:
    """In the forked child: stdout/stderr to files, run the tool, ``os._exit`` with its code."""
    code = 0
    try:
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.alarm(CASE_TIMEOUT)
        for fd, name in ((1, out), (2, err)):
            target = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(target, fd)
            os.close(target)
        try:
            run(path)
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except BaseException as exc:  # noqa: BLE001 - report anything; never return into the parent's loop
        print(f"fork driver: {type(exc).__name__}: {exc}", file=sys.stderr)
        code = 250
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def main(argv: list[str]) -> int:
    """Run ``TOOL`` (``argv[0]``) on each inventory of ``argv[2:]``, results in ``argv[1]``.

    :returns: 0 (each inventory's own exit code is in its ``.rc`` file); 2 on bad usage.
    """
    if len(argv) < 2 or argv[0] not in TOOLS:
        print(__doc__, file=sys.stderr)
        return 2
    (module, run), out_dir, paths = TOOLS[argv[0]], argv[1], argv[2:]
    __import__(module)  # once, before forking
    running: dict[int, int] = {}  # pid -> index

    def reap_one() -> None:
        pid, status = os.wait()
        index = running.pop(pid)
        with open(os.path.join(out_dir, f"{index}.rc"), "w") as fh:
            fh.write(str(os.waitstatus_to_exitcode(status)))

    for index, path in enumerate(paths):
        if len(running) >= JOBS:
            reap_one()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(run, path, os.path.join(out_dir, f"{index}.out"), os.path.join(out_dir, f"{index}.err"))
        running[pid] = index
    while running:
        reap_one()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
