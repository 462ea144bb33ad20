"""The words of a ``concurdeploy`` command line, checked before invoke acts on them.

invoke's parser keeps the first value of a flag given twice and misreads the second, drops a
flag left without a value at the end, takes its own core options after a task name (acting on
``--list``, ignoring ``-V``), and passes the words after ``--`` to tasks that never read them.
:func:`check_task_part` walks the task part of the command line as that parser will and
refuses each of these (``invoke.Exit``, code 2, one paragraph); :data:`REFUSED` lists invoke's
core options that concurdeploy refuses wherever they are typed.
Used by :mod:`concurdeploy.cli.program` only.
"""

from __future__ import annotations

import inspect
import os

from invoke import Exit

from concurdeploy.exceptions import UsageError
from concurdeploy.options import check_value, option

__all__ = ["KEEP_ORDER", "REFUSED", "check_task_part", "core_value", "expand_verbose", "flags_of",
           "is_cluster", "not_found", "reads_remainder"]

#: invoke core options concurdeploy refuses (exit 2), with what to do instead. Hidden from --help.
REFUSED = {
    "echo": "--echo (invoke's, echo the local shell commands a task runs) is not used by concurdeploy, whose "
            "tasks run commands on the hosts: to see each host's output use -v; for file changes use --diff. "
            "-e is -e/--extra-vars KEY=VALUE (a host var for every host), typed with its value.",
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
#: Core options that, before the task name, leave the command line as typed.
KEEP_ORDER = {"-h", "--help", "--list", "-V", "--version", "--complete", "--print-completion-script",
              "--print-config"}


def expand_verbose(args: list[str]) -> list[str]:
    """``--verbose N`` / ``--verbose=N`` (N in digits) as ``-v`` given N times, so that
    ``--verbose 2`` is ``-vv`` (invoke's counted flag takes no value); words after ``--`` are
    left alone. A bare ``--verbose`` stays one ``-v``.

    :raises invoke.Exit: code 2, ``--verbose=`` with something other than a whole number.
    """
    out, i = [], 0
    end = args.index("--") if "--" in args else len(args)
    while i < end:  # bounded: i grows each turn
        tok = args[i]
        flag, eq, value = tok.partition("=")
        if flag == "--verbose" and eq:
            if not value.strip().isdigit():
                raise Exit(f"concurdeploy: --verbose={value!r}: give a level in digits (--verbose 1 is -v, "
                           f"--verbose 2 is -vv), or leave the flag out", code=2)
            out += ["-v"] * int(value)
        elif tok == "--verbose" and i + 1 < end and args[i + 1].isdigit():
            out += ["-v"] * int(args[i + 1])
            i += 1
        else:
            out.append(tok)
        i += 1
    return out + args[end:]


def core_value(args: list[str], names: tuple[str, ...]):
    """The value of core option ``names`` (``-r X``, ``--search-root=X``) in ``args``, or None."""
    for i, tok in enumerate(args):
        flag, eq, value = tok.partition("=")
        if flag in names:
            return value if eq else (args[i + 1] if i + 1 < len(args) else None)
    return None


def is_cluster(tok: str) -> bool:
    """``-qv`` (short flags run together, or ``-P5``: a short flag and its value)."""
    return tok.startswith("-") and not tok.startswith("--") and "=" not in tok and len(tok) > 2


def not_found(start: str | None, name: str | None) -> str:
    """Why ``-r START`` / ``-c NAME`` found no tasks file (the user named it: not a silent fallback)."""
    where = start or os.getcwd()
    if start is not None and not os.path.isdir(os.path.expanduser(start)):
        return f"-r/--search-root {start}: no such folder; leave -r out to search from the current directory"
    if name is not None:
        return (f"-c/--collection {name!r}: no {name}.py (or {name}/ package) in {where} or the folders "
                f"above it; leave -c out to load tasks.py")
    return (f"-r/--search-root {start}: no tasks.py there or in the folders above it; leave -r out to "
            f"search from the current directory")


def flags_of(ctx, optional_valued: bool = True) -> dict[str, bool]:
    """Every flag of a parser context (``--name``, ``-n``, ``--no-name``) → whether it takes a
    value (an optional value counts only if ``optional_valued``)."""
    out = {}
    for arg in ctx.args.values():
        valued = arg.takes_value and (optional_valued or not arg.optional)
        for n in arg.names:
            out[("-" if len(n) == 1 else "--") + n] = valued
    out.update({f: False for f in ctx.inverse_flags})
    return out


def reads_remainder(task) -> bool:
    """Whether ``task`` reads ``c.remainder`` (its words after ``--``): never a built-in task;
    a project task whose source mentions ``remainder``; unknown (no source) counts as no."""
    body = getattr(task, "body", task)
    if getattr(body, "__module__", "").startswith("concurdeploy."):
        return False
    try:
        return "remainder" in inspect.getsource(body)
    except (OSError, TypeError):
        return False


def _display(arg) -> str:
    """``-P/--forks`` for an invoke Argument."""
    names = sorted(arg.names, key=len)
    return "/".join(("-" if len(n) == 1 else "--") + n for n in names)


def _core_after_task(arg, tok: str) -> str:
    """The sentence for invoke core option ``arg`` typed after a task name as ``tok``."""
    if arg.name in REFUSED:
        return REFUSED[arg.name]
    typed, full = tok.partition("=")[0], "--" + arg.name
    name = typed if typed == full else f"{typed} ({full})"
    return (f"{name} is an option of concurdeploy itself: type it before the task name "
            f"(concurdeploy {full} ...), or leave it out")


def check_task_part(tokens: list[str], initial, contexts: dict) -> None:
    """Walk the words after the core options (``TASK args/flags…``) as invoke's parser will,
    and refuse (``Exit``, code 2) what it would misread or silently drop:

    - an invoke core option typed after the task name that is not the task's own flag
      (``push web --list``, ``-V``, ``-c X``): invoke would act on it or ignore it;
    - a flag given twice (``-P2 -P3``): invoke keeps the first and misreads the second;
    - a flag needing a value and given none (``-l`` at the end, ``-l --check``);
    - an empty value (``--inventory=``, ``-i ""``): an unset variable, not "the default".

    ``-h/--help`` and ``-R/--dry`` after the task are kept (help; check mode). An unknown word
    ends the walk: invoke's parser refuses it ("No idea what …").
    """
    def refuse(message: str):
        raise Exit(f"concurdeploy: {message}", code=2)

    def got(arg, flag: str, value: str) -> None:
        if not value.strip():
            name = arg.attr_name or arg.name.replace("-", "_")
            try:
                option(name)
            except KeyError:
                refuse(f"{_display(arg)} is empty (an unset variable?): give a value, or leave the flag out")
            try:
                check_value(name, value)  # the option's own message (--limit's, --inventory's, …)
            except UsageError as e:
                refuse(str(e))

    def is_flag(tok: str) -> bool:
        key = tok.partition("=")[0]
        return key in initial.flags or (ctx is not None and (key in ctx.flags or key in ctx.inverse_flags))

    ctx, seen, missing, pending = None, {}, 0, None
    queue = list(tokens)
    while queue:  # bounded: each turn consumes a word (a cluster becomes its single flags once)
        tok = queue.pop(0)
        if pending is not None:
            arg, flag = pending
            pending = None
            if is_flag(tok):
                refuse(f"{_display(arg)} needs a value, and {tok!r} came instead: "
                       f"{flag} {_metavar(arg)}")
            got(arg, flag, tok)
            continue
        if ctx is not None and tok.startswith("-") and tok != "-":
            flag, eq, value = tok.partition("=")
            if is_cluster(tok):
                head = tok[:2]
                if head in ctx.flags and ctx.flags[head].takes_value:
                    flag, eq, value = head, "=", tok[2:]
                elif head in ctx.flags or head in initial.flags:
                    queue[:0] = ["-" + c for c in tok[1:]]
                    continue
            if flag in ctx.flags or flag in ctx.inverse_flags:
                arg = ctx.flags[ctx.inverse_flags.get(flag, flag)]
                if not arg.takes_value:
                    continue
                if not eq and not queue and not arg.optional:
                    refuse(f"{_display(arg)} needs a value ({flag} ends the command line): "
                           f"{flag} {_metavar(arg)}")
                if not (arg.incrementable or arg.kind is list):
                    if arg.name in seen:
                        refuse(f"{_display(arg)} given twice ({seen[arg.name]} and {tok}): give it once")
                    seen[arg.name] = tok
                if eq:
                    got(arg, flag, value)
                elif not arg.optional:
                    pending = (arg, flag)
                continue
        if ctx is not None and missing:
            if tok.startswith("-") and tok.partition("=")[0] in initial.flags:
                arg = initial.flags[tok.partition("=")[0]]
                want = ctx.missing_positional_args[-missing].name.upper()
                if arg.name in ("dry", "help"):
                    refuse(f"{tok!r} where {ctx.name}'s {want} was expected: type the task's arguments "
                           f"first (concurdeploy {ctx.name} {want} ... {tok})")
                refuse(f"{tok!r} where {ctx.name}'s {want} was expected. {_core_after_task(arg, tok)}")
            missing -= 1
            continue
        if tok in contexts:
            ctx, seen = contexts[tok], {}
            missing = len(ctx.missing_positional_args)
            continue
        key = tok.partition("=")[0]
        if ctx is not None and key in initial.flags:
            arg = initial.flags[key]
            if arg.name in ("help", "dry"):
                if arg.takes_value and "=" not in tok and queue and not queue[0].startswith("-"):
                    queue.pop(0)  # --help TASK
                continue
            refuse(_core_after_task(arg, tok))
        return  # unknown word (or flags before any task): invoke's parser says so
    if pending is not None:
        arg, flag = pending
        refuse(f"{_display(arg)} needs a value ({flag} ends the command line): {flag} {_metavar(arg)}")


def _metavar(arg) -> str:
    """The value's name for ``arg`` in messages (``N``, ``PATTERN``, ``VALUE``)."""
    try:
        return option(arg.attr_name or arg.name.replace("-", "_")).metavar or "VALUE"
    except KeyError:
        return "N" if arg.kind is int else "VALUE"
