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
``-c``, ``-r``, ``--no-dedupe``, ``--complete``, ``--print-completion-script`` are kept, typed
before the task name (after it a core option is the task's own flag of that name, e.g. ``-F``
= ``--ssh-config``, or refused with exit 2: never acted on, never ignored); ``-c``/``-r``
naming nothing that exists is exit 2; ``--print-config`` is ours; ``-R/--dry`` means
``--check`` for a task that has it; the rest (:data:`REFUSED`) are hidden from ``--help`` and
refused with exit code 2, wherever they are typed. Words after ``--``, a flag given twice or
left without its value, and an empty value are refused too (:mod:`concurdeploy.cli.argv`).

Tasks come from the project's ``tasks.py`` (found as invoke finds it: the current
directory, then its parents; one in a parent that another user could write is refused,
:mod:`concurdeploy.cli.loading`) plus the built-in tasks of :mod:`concurdeploy.cli.tasks`;
a project task with the same name replaces the built-in one.
"""

from __future__ import annotations

import inspect
import os
import sys
import threading
from importlib import import_module

from invoke import Argument, Collection, Exit, ParseError, Program
from invoke.exceptions import CollectionNotFound, UncastableEnvVar

from concurdeploy import __version__
from concurdeploy.cli.argv import (
    KEEP_ORDER,
    REFUSED,
    check_task_part,
    core_value,
    expand_verbose,
    flags_of,
    is_cluster,
    not_found,
    reads_remainder,
)
from concurdeploy.cli.config import Config
from concurdeploy.cli.loading import ProjectLoader, UntrustedTasks
from concurdeploy.cli.pipesafe import PipeSafe
from concurdeploy.exceptions import HostsFailed, RunInterrupted, UsageError
from concurdeploy.executors.interrupts import signame as _signame
from concurdeploy.records import RunResult

__all__ = ["REFUSED", "ConcurdeployProgram", "program"]

_DRY = "dry"  # invoke's -R/--dry: check mode for a task that has --check


def _builtins() -> Collection:
    from concurdeploy.cli import tasks
    from concurdeploy.cli.keyscan import keyscan

    from concurdeploy.cli.init import init
    return Collection(tasks.push, tasks.put, tasks.run, tasks.get, tasks.hosts,
                      tasks.inventory, keyscan, init)


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
        except UntrustedTasks as e:  # found in a parent folder another user could write
            raise Exit(f"concurdeploy: {e}", code=2) from None
        except CollectionNotFound:
            if start is not None or name is not None:  # asked for by name: not finding it is an error
                raise Exit(f"concurdeploy: {not_found(start, name)}", code=2)
            module, parent = None, os.getcwd()
        except Exception as e:  # tasks.py itself fails to import: the operator's code, one paragraph
            where = getattr(e, "filename", None) or "tasks.py"
            line = getattr(e, "lineno", None)
            raise Exit(f"concurdeploy: cannot load {where}{f':{line}' if line else ''}: "
                       f"{type(e).__name__}: {e}", code=2)
        self.config.set_project_location(parent)
        try:
            self.config.load_project()
        except UsageError as e:  # checked as read (cli.config): file, line, key
            raise Exit(f"concurdeploy: {e}", code=2)
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

    def create_config(self) -> None:
        try:
            super().create_config()  # reads /etc/concurdeploy.yaml and ~/.concurdeploy.yaml
        except UsageError as e:
            raise Exit(f"concurdeploy: {e}", code=2)

    # -- argv ----------------------------------------------------------------------------------

    def normalize_argv(self, argv) -> None:
        """Move task options typed before the task name after it, then turn
        ``concurdeploy TASK ... --help`` into invoke's ``concurdeploy --help TASK``.

        invoke would otherwise refuse ``-i INV push web`` ("No idea what '-i' is"), and take
        ``--help`` as the value of TASK's first positional argument (``push --help`` → service "--help").
        """
        super().normalize_argv(argv)
        args = self._options_after_task(expand_verbose(list(self.argv)))
        valued = {"-c", "--collection", "-r", "--search-root", "-f", "--config"}
        for i in range(1, len(args)):
            if args[i] == "--":
                break
            if not args[i].startswith("-") and args[i - 1] not in valued:
                rest = args[i + 1:]
                rest = rest[:rest.index("--")] if "--" in rest else rest
                if "--help" in rest or "-h" in rest:
                    args = args[:i] + ["--help", args[i]]
                elif args[i] == "init" and all(w.startswith("-") for w in rest):
                    from concurdeploy.cli.init import default_dir
                    args = default_dir(args, i, self._collection)
                break
        self.argv = args

    def _options_after_task(self, argv: list[str]) -> list[str]:
        """``[prog, opts…, TASK, rest…]`` → ``[prog, core opts…, TASK, task opts…, rest…]``.

        A flag before the task name that the task takes (its own or a shared one, any form:
        ``-i X``, ``--inventory=X``, ``-P5``, ``-qv``) moves after the name; core options stay
        (a cluster of both, ``-qR``, is split). A short flag both invoke and the task know
        (``-l``, ``-F``) is the task's when a task name follows. ``-h/--help`` among them asks
        for TASK's help (the other options do not matter then). Anything else (an unknown flag,
        no task name) leaves argv unchanged, for invoke to parse or refuse.
        """
        end = argv.index("--") if "--" in argv else len(argv)
        head = argv[1:end]
        if not head or not head[0].startswith("-") or head in (["-h"], ["--help"]):
            return argv
        if head[0].partition("=")[0] in KEEP_ORDER - {"-h", "--help"}:
            return argv
        coll = self._collection(core_value(head, ("-r", "--search-root")),
                                core_value(head, ("-c", "--collection")))
        contexts = {}
        for ctx in coll.to_contexts(ignore_unknown_help=True):
            for name in (ctx.name, *ctx.aliases):
                contexts[name] = ctx
        union: dict[str, bool] = {}
        for ctx in contexts.values():
            for flag, valued in flags_of(ctx).items():
                union[flag] = union.get(flag, False) or valued
        core_flags = flags_of(self.initial_context, optional_valued=False)

        def width(tok: str, flags: dict[str, bool]) -> int | None:
            """Tokens taken by flag ``tok`` (1 or 2), or None if ``flags`` lacks it."""
            flag, eq, _ = tok.partition("=")
            cluster = not flag.startswith("--") and len(flag) > 2
            key = flag[:2] if cluster else flag
            if key not in flags:
                return None
            return 2 if flags[key] and not eq and not cluster else 1

        i, task_at, asked_help, split = 0, None, False, []
        while i < len(head):  # bounded: i grows each turn
            tok = head[i]
            if not tok.startswith("-") or tok == "-":
                task_at = len(split) if tok in contexts else None
                split += head[i:]
                break
            if tok in ("-h", "--help"):
                asked_help, i = True, i + 1
                continue
            if tok.partition("=")[0] in KEEP_ORDER:
                return argv
            n = width(tok, union) or width(tok, core_flags)
            if n is None:
                return argv  # unknown: invoke says so
            if n == 1 and is_cluster(tok) and not (union.get(tok[:2]) or core_flags.get(tok[:2])):
                split += ["-" + c for c in tok[1:]]  # -qR: -q (the task's) and -R (invoke's)
            else:
                split += head[i:i + n]
            i += n
        if task_at is None:
            return argv
        head = split
        ctx = contexts[head[task_at]]
        mine = flags_of(ctx)
        moved, kept, i = [], [], 0
        while i < task_at:
            n = width(head[i], mine)
            if n is not None:
                moved += head[i:i + n]
            else:
                n = width(head[i], core_flags) or 1
                kept += head[i:i + n]
            i += n
        if asked_help:  # `-i INV --help push`: push's help; the options given do not change it
            return [argv[0], *kept, head[task_at], "--help"]
        return [argv[0], *kept, head[task_at], *moved, *head[task_at + 1:], *argv[end:]]

    def parse_core(self, argv) -> None:
        try:
            super().parse_core(argv)
        except ParseError as e:
            raise Exit(f"concurdeploy: {str(e).rstrip('.!')}. See 'concurdeploy --help'.", code=2)
        except ValueError as e:  # a core option's value of the wrong type, e.g. -D abc
            raise Exit(f"concurdeploy: a core option has a value of the wrong type ({e}). See "
                       f"'concurdeploy --help'.", code=2)

    def parse_core_args(self) -> None:
        super().parse_core_args()
        for name, message in REFUSED.items():  # before -d turns invoke's log on, before any output
            if self.args[name].got_value and self.args[name].value not in (False, None, ""):
                raise Exit(f"concurdeploy: {message}", code=2)

    def parse_tasks(self) -> None:
        contexts = {}
        for ctx in self.collection.to_contexts(ignore_unknown_help=self.config.tasks.ignore_unknown_help):
            for name in (ctx.name, *ctx.aliases):
                contexts[name] = ctx
        check_task_part(list(self.core.unparsed), self.initial_context, contexts)
        try:
            super().parse_tasks()
        except ParseError as e:
            raise Exit(f"concurdeploy: {str(e).rstrip('.!')}. See 'concurdeploy --help' or "
                       f"'concurdeploy TASK --help'.", code=2)
        except ValueError as e:  # a project task's typed flag, e.g. --count abc
            raise Exit(f"concurdeploy: a flag has a value of the wrong type ({e}). See "
                       f"'concurdeploy TASK --help'.", code=2)
        self._refuse_remainder()
        if len(self.tasks) > 1:  # `push a push b`: leading options would reach only the first
            names = " ".join(ctx.name for ctx in self.tasks)
            raise Exit(f"concurdeploy: one task per command, not {len(self.tasks)} ({names}): options "
                       f"typed before the first would not reach the others, and the exit code would "
                       f"be the last one's; run them one after another (e.g. joined with &&)", code=2)

    def _refuse_remainder(self) -> None:
        """Words after ``--`` (invoke's "remainder") are refused unless every task given reads
        ``c.remainder``: no built-in task does, and a project task counts as reading it when
        its source mentions ``remainder`` (unreadable source: refused). ``--complete`` keeps
        it (the shell's words come there)."""
        rest = self.core.remainder
        if not rest or self.args.complete.value:
            return
        deaf = [ctx.name for ctx in self.tasks if not reads_remainder(self.collection[ctx.name])]
        if deaf or not self.tasks:
            who = f"task {deaf[0]!r} does not read it" if deaf else "no task was given"
            raise Exit(f"concurdeploy: concurdeploy takes nothing after '--': {rest!r} would be ignored "
                       f"({who}). Quote a shell command as one argument (run GROUP 'echo a; echo b'), "
                       f"and type options before '--', not after it.", code=2)

    def parse_cleanup(self) -> None:
        root = self.args.list.value
        if isinstance(root, str):
            try:
                self.collection.subcollection_from_path(root)
            except KeyError:
                raise Exit(f"concurdeploy: --list {root}: the tasks have no sub-collection {root!r} (a bare "
                           f"--list shows every task). Before the task name -l is --list; to limit the "
                           f"hosts type -l after it: concurdeploy push SERVICE -l {root}", code=2)
        super().parse_cleanup()

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
        except UsageError as e:  # a CONCURDEPLOY_<SETTING> variable, named (cli.config.check_environment)
            raise Exit(f"concurdeploy: {e}", code=2)
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
        task = self.collection[name]
        positional = [a for a in ctx.positional_args]
        hidden = set(getattr(task, "help_hidden", ()))  # taken only to be refused with a reason
        flags = sorted((a for a in ctx.args.values() if not a.positional and a.name not in hidden
                        and a.attr_name not in hidden), key=lambda a: a.names[0])
        optional = set(getattr(task, "optional_positional", ()))  # init [DIR]: invoke has no such thing
        usage = " ".join(f"[{a.name.upper()}]" if a.name in optional else a.name.upper() for a in positional)
        print(f"Usage: {self.binary} {name} {usage} [options]".replace("  ", " "))
        print("")
        doc = inspect.getdoc(task)
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
        """invoke's ``run``, with SIGINT/SIGTERM handled from its first line to its last
        (:class:`~concurdeploy.executors.interrupts.Lifecycle`): a signal before any run
        began exits 128 + signal at once (invoke alone would exit 1 on Ctrl-C)."""
        from concurdeploy.executors.interrupts import lifecycle

        self._loaded = {}  # tasks.py and concurdeploy.yaml are read afresh by each run
        if not isinstance(sys.stdout, PipeSafe):
            sys.stdout = PipeSafe(sys.stdout)
        main = threading.current_thread() is threading.main_thread()
        if main:
            lifecycle.install()
        try:
            super().run(argv, exit)
        except (RunInterrupted, KeyboardInterrupt) as e:  # before execute(): parsing, config
            code = 128 + getattr(e, "signum", 2)
            print(f"\nconcurdeploy: interrupted ({_signame(code - 128)}) before any host was contacted",
                  file=sys.stderr)
            if exit:
                sys.exit(code)
        finally:
            if main:
                lifecycle.uninstall()

    def execute(self) -> None:
        """Run the tasks; map their outcome to the exit code (the only place that does).

        A SIGINT/SIGTERM at any moment gives 128 + signal (130/143); one that arrives after
        the run recorded its outcome (its report already says how it ended) leaves the
        report's exit code, with a note on stderr, when a report file was asked for.
        """
        from concurdeploy.executors.interrupts import lifecycle

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
            if not lifecycle.run:
                print(f"\nconcurdeploy: interrupted ({_signame(e.signum)}) before any host was contacted",
                      file=sys.stderr)
            raise Exit(code=128 + e.signum)
        except KeyboardInterrupt:
            print("\nconcurdeploy: interrupted", file=sys.stderr)
            raise Exit(code=130)
        except BrokenPipeError:  # output piped into e.g. `head`: not an error of ours
            sys.stderr.close()
            raise Exit(code=1)
        code = max((r.exit_code for r in (results or {}).values() if isinstance(r, RunResult)), default=0)
        if lifecycle.signum and not self._reported():
            code = 128 + lifecycle.signum  # after the last host, no report to contradict: honour it
        elif lifecycle.signum:
            print(f"concurdeploy: {_signame(lifecycle.signum)} arrived after the run's outcome was "
                  f"recorded; the report stands (exit code {code})", file=sys.stderr)
        if code:
            raise Exit(code=code)

    def _reported(self) -> bool:
        """True when the task was asked for a report file (``--report-json``, ``--junit``)."""
        for ctx in self.tasks or ():
            for name in ("report-json", "report_json", "junit"):
                arg = ctx.args.get(name)
                if arg is not None and arg.value:
                    return True
        return bool(self.config.get("report_json") or self.config.get("junit"))


program = ConcurdeployProgram(
    name="concurdeploy",
    binary="concurdeploy",
    binary_names=["concurdeploy"],
    version=__version__,
    config_class=Config,
    loader_class=ProjectLoader,
)
