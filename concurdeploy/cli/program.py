"""The ``concurdeploy`` command: an invoke ``Program`` and the one place errors become exit codes.

Exit codes:

- 0 — every host ``ok`` or ``changed``;
- 1 — the run finished, some host ``failed`` or was ``unreachable``;
- 2 — bad usage, inventory, service declaration or config (one paragraph on stderr, no
  traceback, no host touched);
- 130 / 143 — interrupted by SIGINT (Ctrl-C) / SIGTERM: no new host was started, hosts in
  flight stopped at a safe point, the recap was printed.

Tasks come from the project's ``tasks.py`` (found as invoke finds it: the current
directory, then its parents) plus the built-in tasks of :mod:`concurdeploy.api`;
a project task with the same name replaces the built-in one.
"""

from __future__ import annotations

import os
import sys

from invoke import Argument, Collection, Exit, ParseError, Program
from invoke.exceptions import CollectionNotFound, UncastableEnvVar

from concurdeploy import __version__
from concurdeploy.cli.config import Config
from concurdeploy.exceptions import HostsFailed, RunInterrupted, UsageError

__all__ = ["ConcurdeployProgram", "program"]


def _builtins() -> Collection:
    from concurdeploy.cli import tasks
    from concurdeploy.cli.keyscan import keyscan

    return Collection(tasks.push, tasks.put, tasks.run, tasks.get, tasks.hosts,
                      tasks.inventory, keyscan)


class ConcurdeployProgram(Program):
    """invoke ``Program`` that loads ``./tasks.py`` (if any) beside the built-in tasks."""

    def core_args(self):
        return super().core_args() + [
            Argument(names=("print-config",), kind=bool, default=False,
                     help="Print the effective concurdeploy settings (defaults < config files "
                          "< CONCURDEPLOY_* env vars) and exit."),
        ]

    def load_collection(self) -> None:
        start = self.args["search-root"].value
        loader = self.loader_class(config=self.config, start=start)
        try:
            module, parent = loader.load(self.args.collection.value)
        except CollectionNotFound:
            module, parent = None, os.getcwd()
        except Exception as e:  # tasks.py itself fails to import: the operator's code, one paragraph
            where = getattr(e, "filename", None) or "tasks.py"
            line = getattr(e, "lineno", None)
            raise Exit(f"concurdeploy: cannot load {where}{f':{line}' if line else ''}: "
                       f"{type(e).__name__}: {e}", code=2)
        self.config.set_project_location(parent)
        try:
            self.config.load_project()
        except Exception as e:  # malformed concurdeploy.yaml
            raise Exit(f"concurdeploy: cannot read concurdeploy.yaml in {parent}: "
                       f"{str(e).splitlines()[0] if str(e) else type(e).__name__}", code=2)
        self.config["project_dir"] = os.path.abspath(parent)
        if module is None:
            coll = Collection()
        else:
            coll = Collection.from_module(module, loaded_from=parent,
                                          auto_dash_names=self.config.tasks.auto_dash_names)
        builtins = _builtins()
        for name in builtins.task_names:
            if name not in coll.task_names:
                coll.add_task(builtins[name], name=name)
        self.collection = coll

    def normalize_argv(self, argv) -> None:
        """Turn ``concurdeploy TASK ... --help`` into invoke's ``concurdeploy --help TASK``.

        invoke would otherwise take ``--help`` as the value of TASK's first positional
        argument (``push --help`` → service "--help").
        """
        super().normalize_argv(argv)
        args = list(self.argv)
        valued = {"-c", "--collection", "-r", "--search-root", "-f", "--config"}
        for i in range(1, len(args)):
            if not args[i].startswith("-") and args[i - 1] not in valued:
                rest = args[i + 1:]
                if "--help" in rest or "-h" in rest:
                    self.argv = args[:i] + ["--help", args[i]]
                break

    def parse_core(self, argv) -> None:
        try:
            super().parse_core(argv)
        except ParseError as e:
            raise Exit(f"concurdeploy: {str(e).rstrip('.!')}. See 'concurdeploy --help'.", code=2)

    def parse_tasks(self) -> None:
        try:
            super().parse_tasks()
        except ParseError as e:
            raise Exit(f"concurdeploy: {str(e).rstrip('.!')}. See 'concurdeploy --help' or "
                       f"'concurdeploy TASK --help'.", code=2)
        except ValueError as e:  # a flag's value of the wrong type, e.g. --forks abc
            raise Exit(f"concurdeploy: a flag has a value of the wrong type ({e}). See "
                       f"'concurdeploy TASK --help'.", code=2)

    def update_config(self, merge: bool = True) -> None:
        try:
            super().update_config(merge)
            self.config.load_shell_env()  # invoke loads it at execution; we want it checked now
        except (UncastableEnvVar, ValueError) as e:
            raise Exit(f"concurdeploy: a CONCURDEPLOY_* environment variable has the wrong type "
                       f"({e}); see 'concurdeploy --print-config' for the settings and their types",
                       code=2)
        if self.args["print-config"].value:
            from concurdeploy.cli.config import DEFAULTS

            for key in DEFAULTS:
                print(f"{key}: {self.config.get(key)!r}")
            raise Exit

    def no_tasks_given(self) -> None:
        if self.args["print-config"].value:
            return  # handled once the config is complete (update_config)
        super().no_tasks_given()

    def run(self, argv=None, exit: bool = True) -> None:
        if not isinstance(sys.stdout, _PipeSafe):
            sys.stdout = _PipeSafe(sys.stdout)
        super().run(argv, exit)

    def execute(self) -> None:
        try:
            super().execute()
        except UsageError as e:
            raise Exit(f"concurdeploy: error: {e}", code=2)
        except HostsFailed:
            raise Exit(code=1)
        except RunInterrupted as e:
            raise Exit(code=128 + e.signum)
        except KeyboardInterrupt:
            print("\nconcurdeploy: interrupted", file=sys.stderr)
            raise Exit(code=130)
        except BrokenPipeError:  # output piped into e.g. `head`: not an error of ours
            sys.stderr.close()
            raise Exit(code=1)


class _PipeSafe:
    """stdout that, once its reader has gone (``concurdeploy push … | head``), drops further
    output instead of raising: the run goes on, reports are written, the exit code holds."""

    def __init__(self, stream):
        self._stream, self._closed = stream, False

    def write(self, text):
        if not self._closed:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._closed = True
                try:
                    devnull = os.open(os.devnull, os.O_WRONLY)
                    os.dup2(devnull, self._stream.fileno())  # so the interpreter's exit flush is quiet
                except OSError:
                    pass
        return len(text)

    def flush(self):
        if not self._closed:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._closed = True

    def __getattr__(self, name):
        return getattr(self._stream, name)


program = ConcurdeployProgram(
    name="concurdeploy",
    binary="concurdeploy",
    binary_names=["concurdeploy"],
    version=__version__,
    config_class=Config,
)
