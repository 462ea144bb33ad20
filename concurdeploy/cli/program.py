"""The ``concurdeploy`` command: an invoke ``Program`` and the one place errors become exit codes.

Exit codes:

- 0 — every host ``ok`` or ``changed``;
- 1 — the run finished, some host ``failed`` or was ``unreachable`` (a task returned a
  :class:`~concurdeploy.records.RunResult` whose ``exit_code`` is 1, or raised ``HostsFailed``);
- 2 — bad usage, inventory, service declaration or config (one paragraph on stderr, no
  traceback, no host touched);
- 130 / 143 — interrupted by SIGINT (Ctrl-C) / SIGTERM: no new host was started, hosts in
  flight stopped at a safe point, the recap was printed.

Options may come before or after the task name: ``concurdeploy -i INV push web --check`` is
``concurdeploy push web -i INV --check`` (:meth:`ConcurdeployProgram.normalize_argv`).
invoke's core options: ``--help``, ``--list`` (``-D``, ``--list-format``), ``--version``,
``-c``, ``-r``, ``--no-dedupe``, ``--complete``, ``--print-completion-script`` are kept;
``--print-config`` is ours; ``-R/--dry`` means ``--check`` for a task that has it; the rest
(:data:`REFUSED`) are hidden from ``--help`` and refused with exit code 2, wherever they are typed.

Tasks come from the project's ``tasks.py`` (found as invoke finds it: the current
directory, then its parents) plus the built-in tasks of :mod:`concurdeploy.cli.tasks`;
a project task with the same name replaces the built-in one.
"""

from __future__ import annotations

import inspect
import os
import sys
from importlib import import_module

from invoke import Argument, Collection, Exit, ParseError, Program
from invoke.exceptions import CollectionNotFound, UncastableEnvVar

from concurdeploy import __version__
from concurdeploy.cli.config import Config
from concurdeploy.exceptions import HostsFailed, RunInterrupted, UsageError
from concurdeploy.records import RunResult

__all__ = ["REFUSED", "ConcurdeployProgram", "program"]

#: invoke core options concurdeploy refuses (exit 2), with what to do instead. Hidden from --help.
REFUSED = {
    "echo": "-e/--echo is an invoke option (echo the local shell commands a task runs) that concurdeploy "
            "does not use: its tasks run commands on the hosts. To see each host's output use -v; "
            "for file changes use --diff.",
    "pty": "-p/--pty is an invoke option (run local commands in a pseudo-terminal) that concurdeploy does "
           "not use. Leave it out (the number of hosts in flight is -P/--forks).",
    "warn-only": "-w/--warn-only is an invoke option that concurdeploy does not use: a failed host never "
                 "stops the others, and the exit code is 1 when a host failed or was unreachable. To stop "
                 "early use --fail-fast or --max-fail N.",
    "prompt-for-sudo-password": "--prompt-for-sudo-password is an invoke option that concurdeploy does not "
                                "use: for sudo on the hosts set the become vars, with become_password_env "
                                "naming an environment variable that holds the password (run: --sudo).",
    "config": "-f/--config (an invoke runtime config file) is not read by concurdeploy: settings come from "
              "concurdeploy.yaml in the project root, ~/.concurdeploy.yaml, /etc/concurdeploy.yaml and "
              "CONCURDEPLOY_* variables (see --print-config).",
    "command-timeout": "-T/--command-timeout as a core option is invoke's, which concurdeploy does not use: "
                       "push, put, run and get take --command-timeout SECONDS (a limit per remote "
                       "command), before or after the task name.",
    "hide": "--hide is an invoke option (hide local command output) that concurdeploy does not use: "
            "-q/--quiet prints only failed hosts and the recap.",
    "write-pyc": "--write-pyc is an invoke option that concurdeploy does not use; leave it out.",
    "debug": "-d/--debug (invoke's own debug log) is not supported by concurdeploy: use -v or -vv to see "
             "more of each host.",
}
_DRY = "dry"
#: Core options that, before the task name, leave the command line as typed.
_KEEP_ORDER = {"-h", "--help", "--list", "-V", "--version", "--complete", "--print-completion-script",
               "--print-config"}


def _builtins() -> Collection:
    from concurdeploy.cli import tasks
    from concurdeploy.cli.keyscan import keyscan

    return Collection(tasks.push, tasks.put, tasks.run, tasks.get, tasks.hosts,
                      tasks.inventory, keyscan)


def _core_value(args: list[str], names: tuple[str, ...]):
    """The value of core option ``names`` (``-r X``, ``--search-root=X``) in ``args``, or None."""
    for i, tok in enumerate(args):
        flag, eq, value = tok.partition("=")
        if flag in names:
            return value if eq else (args[i + 1] if i + 1 < len(args) else None)
    return None


def _flags(ctx, optional_valued: bool = True) -> dict[str, bool]:
    """Every flag of a parser context (``--name``, ``-n``, ``--no-name``) → whether it takes a
    value (an optional value counts only if ``optional_valued``)."""
    out = {}
    for arg in ctx.args.values():
        valued = arg.takes_value and (optional_valued or not arg.optional)
        for n in arg.names:
            out[("-" if len(n) == 1 else "--") + n] = valued
    out.update({f: False for f in ctx.inverse_flags})
    return out


class ConcurdeployProgram(Program):
    """invoke ``Program`` that loads ``./tasks.py`` (if any) beside the built-in tasks."""

    _loaded: dict

    def core_args(self):
        return super().core_args() + [
            Argument(names=("print-config",), kind=bool, default=False,
                     help="Print the effective concurdeploy settings (defaults < config files "
                          "< CONCURDEPLOY_* env vars) and exit."),
        ]

    # -- loading ------------------------------------------------------------------------------

    def _collection(self, start, name) -> Collection:
        """Load tasks.py (once per run) and the project config; add the built-in tasks."""
        cache = self.__dict__.setdefault("_loaded", {})  # normalize_argv may load it first
        if (start, name) in cache:
            return cache[(start, name)]
        loader = self.loader_class(config=self.config, start=start)
        try:
            module, parent = loader.load(name)
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
        for task_name in builtins.task_names:
            if task_name not in coll.task_names:
                coll.add_task(builtins[task_name], name=task_name)
        cache[(start, name)] = coll
        return coll

    def load_collection(self) -> None:
        self.collection = self._collection(self.args["search-root"].value, self.args.collection.value)

    # -- argv ----------------------------------------------------------------------------------

    def normalize_argv(self, argv) -> None:
        """Move task options typed before the task name after it, then turn
        ``concurdeploy TASK ... --help`` into invoke's ``concurdeploy --help TASK``.

        invoke would otherwise refuse ``-i INV push web`` ("No idea what '-i' is"), and take
        ``--help`` as the value of TASK's first positional argument (``push --help`` → service "--help").
        """
        super().normalize_argv(argv)
        args = self._options_after_task(list(self.argv))
        valued = {"-c", "--collection", "-r", "--search-root", "-f", "--config"}
        for i in range(1, len(args)):
            if args[i] == "--":
                break
            if not args[i].startswith("-") and args[i - 1] not in valued:
                rest = args[i + 1:]
                rest = rest[:rest.index("--")] if "--" in rest else rest
                if "--help" in rest or "-h" in rest:
                    args = args[:i] + ["--help", args[i]]
                break
        self.argv = args

    def _options_after_task(self, argv: list[str]) -> list[str]:
        """``[prog, opts…, TASK, rest…]`` → ``[prog, core opts…, TASK, task opts…, rest…]``.

        A flag before the task name that the task takes (its own or a shared one, any form:
        ``-i X``, ``--inventory=X``, ``-P5``, ``-qv``) moves after the name; core options stay.
        A short flag both invoke and the task know (``-l``, ``-F``) is the task's when a task
        name follows. Anything else (an unknown flag, no task name) leaves argv unchanged,
        for invoke to parse or refuse.
        """
        end = argv.index("--") if "--" in argv else len(argv)
        head = argv[1:end]
        if not head or not head[0].startswith("-") or head[0].partition("=")[0] in _KEEP_ORDER:
            return argv
        coll = self._collection(_core_value(head, ("-r", "--search-root")),
                                _core_value(head, ("-c", "--collection")))
        contexts = {}
        for ctx in coll.to_contexts(ignore_unknown_help=True):
            for name in (ctx.name, *ctx.aliases):
                contexts[name] = ctx
        union: dict[str, bool] = {}
        for ctx in contexts.values():
            for flag, valued in _flags(ctx).items():
                union[flag] = union.get(flag, False) or valued

        def width(tok: str, flags: dict[str, bool]) -> int | None:
            """Tokens taken by flag ``tok`` (1 or 2), or None if ``flags`` lacks it."""
            flag, eq, _ = tok.partition("=")
            cluster = not flag.startswith("--") and len(flag) > 2
            key = flag[:2] if cluster else flag
            if key not in flags:
                return None
            return 2 if flags[key] and not eq and not cluster else 1

        core_flags = _flags(self.initial_context, optional_valued=False)
        i, task_at = 0, None
        while i < len(head):
            tok = head[i]
            if not tok.startswith("-") or tok == "-":
                task_at = i if tok in contexts else None
                break
            if tok.partition("=")[0] in _KEEP_ORDER:
                return argv
            n = width(tok, union) or width(tok, core_flags)
            if n is None:
                return argv  # unknown: invoke says so
            i += n
        if task_at is None:
            return argv
        ctx = contexts[head[task_at]]
        mine = _flags(ctx)
        moved, kept, i = [], [], 0
        while i < task_at:
            n = width(head[i], mine)
            if n is not None:
                moved += head[i:i + n]
            else:
                n = width(head[i], core_flags) or 1
                kept += head[i:i + n]
            i += n
        return [argv[0], *kept, head[task_at], *moved, *head[task_at + 1:], *argv[1 + len(head):]]

    def parse_core(self, argv) -> None:
        try:
            super().parse_core(argv)
        except ParseError as e:
            raise Exit(f"concurdeploy: {str(e).rstrip('.!')}. See 'concurdeploy --help'.", code=2)
        except ValueError as e:  # a core option's value of the wrong type, e.g. -D abc
            raise Exit(f"concurdeploy: a core option has a value of the wrong type ({e}). See "
                       f"'concurdeploy --help'.", code=2)

    def parse_tasks(self) -> None:
        try:
            super().parse_tasks()
        except ParseError as e:
            raise Exit(f"concurdeploy: {str(e).rstrip('.!')}. See 'concurdeploy --help' or "
                       f"'concurdeploy TASK --help'.", code=2)
        except ValueError as e:  # a project task's typed flag, e.g. --count abc
            raise Exit(f"concurdeploy: a flag has a value of the wrong type ({e}). See "
                       f"'concurdeploy TASK --help'.", code=2)

    def _refuse_core_options(self) -> None:
        """invoke's core options that make no sense here: refuse them (exit 2), map ``--dry``."""
        for name, message in REFUSED.items():
            if self.args[name].got_value and self.args[name].value not in (False, None, ""):
                raise Exit(f"concurdeploy: {message}", code=2)
        if self.args[_DRY].value:
            lacking = [ctx.name for ctx in self.tasks if "check" not in ctx.args]
            if lacking:
                raise Exit(f"concurdeploy: -R/--dry means check mode (--check), which task "
                           f"{lacking[0]!r} does not have; push and put do. Leave --dry out.", code=2)
            for ctx in self.tasks:
                ctx.args["check"].value = True
            print("concurdeploy: --dry taken as --check: check mode, nothing is written on the hosts",
                  file=sys.stderr)

    def update_config(self, merge: bool = True) -> None:
        self._refuse_core_options()  # before invoke reads -f FILE or prompts for a sudo password
        try:
            super().update_config(merge)
            self.config.load_shell_env()  # invoke loads it at execution; we want it checked now
        except (UncastableEnvVar, ValueError) as e:
            raise Exit(f"concurdeploy: a CONCURDEPLOY_* environment variable has the wrong type "
                       f"({e}); see 'concurdeploy --print-config' for the settings and their types",
                       code=2)
        self.config["command_line"] = " ".join(["concurdeploy", *self.argv[1:]])  # for the reports
        if self.args["print-config"].value:
            from concurdeploy.cli.config import DEFAULTS

            for key in DEFAULTS:
                print(f"{key}: {self.config.get(key)!r}")
            raise Exit

    def no_tasks_given(self) -> None:
        if self.args["print-config"].value:
            return  # handled once the config is complete (update_config)
        super().no_tasks_given()

    # -- help ----------------------------------------------------------------------------------

    def print_help(self) -> None:
        print(f"Usage: {self.binary} [--core-opts] TASK [task options and arguments] ...")
        print("")
        print("Task options may also come before the task name. 'concurdeploy TASK --help' shows them.")
        print("")
        print("Core options:")
        print("")
        hidden = {"--" + n for n in (*REFUSED, _DRY)}
        self.print_columns([t for t in self.initial_context.help_tuples()
                            if not any(part.split("=")[0].split("[")[0].split(" ")[0] in hidden
                                       for part in t[0].split(", "))])

    def print_task_help(self, name: str) -> None:
        """``concurdeploy TASK --help``: usage with the positional arguments, the docstring,
        then every option the task takes with the kind of value it wants."""
        from concurdeploy.options import OPTIONS

        metavars = {o.name: o.metavar for o in OPTIONS}
        ctx = self.parser.contexts[name]
        positional = [a for a in ctx.positional_args]
        flags = sorted((a for a in ctx.args.values() if not a.positional), key=lambda a: a.names[0])
        usage = " ".join(a.name.upper() for a in positional)
        print(f"Usage: {self.binary} {name} {usage} [options]".replace("  ", " "))
        print("")
        doc = inspect.getdoc(self.collection[name])
        for line in (doc or "").splitlines():
            print(self.leading_indent + line if line.strip() else "")
        if positional:
            print("")
            print("Arguments:")
            print("")
            self.print_columns([(a.name.upper(), a.help or "") for a in positional])
        print("Options (before or after the task name):")
        print("")
        rows = []
        for a in flags:
            meta = "" if not a.takes_value else (metavars.get(a.name) or ("N" if a.kind is int else "VALUE"))
            names = []
            for n in sorted(a.names, key=len):
                if len(n) == 1:
                    names.append(f"-{n}" + (f" {meta}" if meta else ""))
                elif a.kind is bool and a.default is True:
                    names.append(f"--[no-]{n}")
                else:
                    names.append(f"--{n}" + (f"={meta}" if meta else ""))
            rows.append((", ".join(names), a.help or ""))
        self.print_columns(rows or [("(none)", "")])
        print("")

    # -- running -------------------------------------------------------------------------------

    def run(self, argv=None, exit: bool = True) -> None:
        self._loaded = {}  # tasks.py and concurdeploy.yaml are read afresh by each run
        if not isinstance(sys.stdout, _PipeSafe):
            sys.stdout = _PipeSafe(sys.stdout)
        super().run(argv, exit)

    def execute(self) -> None:
        """Run the tasks; map their outcome to the exit code (the only place that does)."""
        try:
            klass = self.executor_class
            path = self.config.tasks.executor_class
            if path is not None:
                module, _, attr = path.rpartition(".")
                klass = getattr(import_module(module), attr)
            results = klass(self.collection, self.config, self.core).execute(*self.tasks)
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
        code = max((r.exit_code for r in (results or {}).values() if isinstance(r, RunResult)), default=0)
        if code:
            raise Exit(code=code)


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
