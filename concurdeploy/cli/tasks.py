"""Built-in tasks: ``push``, ``put``, ``run``, ``get``, ``hosts``, ``inventory``. Each is thin:
flags → :class:`~concurdeploy.options.RunOptions` (:func:`options_from`) → a library call
(:mod:`concurdeploy.api`) → its :class:`~concurdeploy.records.RunResult`, which
:mod:`concurdeploy.cli.program` turns into the exit code.

The shared flags are declared once, in :data:`concurdeploy.options.OPTIONS`; a task lists the
option groups it takes (:data:`concurdeploy.options.TASK_OPTIONS`). Options may come before or
after the task name (``concurdeploy -i inv.yaml push haproxy --check``).

A project's ``tasks.py`` writes its tasks with :func:`cdtask` and reads its settings with
:func:`options_from` (see ``seed`` in this repository's ``tasks.py``); a task there with the
same name replaces the built-in one.
"""

from __future__ import annotations

import inspect

from invoke import Argument, Task, task

from concurdeploy import api
from concurdeploy.options import OPTIONS, RunOptions, option, task_flags

__all__ = ["cdtask", "get", "hosts", "inventory", "options_from", "push", "put", "run"]

#: Short flags, from the options table (``-i``, ``-l``, ``-P``, ``-C``, ``-F``, ``-v``, ``-q``).
SHORT = {o.name: o.short for o in OPTIONS if o.short}


class _Task(Task):
    """A task whose options get concurdeploy's short flags (not invoke's guess) and, for the
    built-in tasks, the flags of the options table (``flags``: option names), passed to the
    body as keywords (``**flags``; a flag not given is None)."""

    def __init__(self, body, flags=(), **kwargs):
        self.table_flags = tuple(flags)
        super().__init__(body, **kwargs)

    def argspec(self, body):
        sig = super().argspec(body)
        return sig.replace(parameters=[p for p in sig.parameters.values()
                                       if p.kind is not inspect.Parameter.VAR_KEYWORD])

    def arg_opts(self, name, default, taken_names):
        opts = super().arg_opts(name, default, taken_names)
        if name in SHORT and SHORT[name] not in taken_names:
            opts["names"].append(SHORT[name])
        return opts

    def get_arguments(self, ignore_unknown_help=None):
        saved = dict(self.help)  # invoke pops each help text it uses: a second call would lose them
        try:
            args = super().get_arguments(ignore_unknown_help)
        finally:
            self.help = saved
        for name in self.table_flags:
            o = option(name)
            names = (name.replace("_", "-"),) + ((o.short,) if o.short else ())
            if o.kind is bool:
                kind, default = bool, False
            elif o.kind is list:  # repeatable (-e A=1 -e B=2)
                kind, default = list, []
            elif name == "verbose":
                kind, default = int, 0
            else:  # the options record converts and checks the value (one message per flag)
                kind, default = str, None
            args.append(Argument(names=names, attr_name=name if "_" in name else None, kind=kind,
                                 default=default, help=o.help, incrementable=name == "verbose"))
        return args


def cdtask(*args, **kwargs):
    """``@invoke.task`` with concurdeploy's short flags (``-i``, ``-l``, ``-P``, ``-C``, ``-F``,
    ``-v``, ``-q`` for parameters of those names) and no automatic short flags.

    Give a parameter the default None to leave it to the config (``options_from`` then
    takes the ``concurdeploy.yaml`` / ``CONCURDEPLOY_*`` value or the built-in default).
    """
    kwargs.setdefault("auto_shortflags", False)
    kwargs.setdefault("klass", _Task)
    return task(*args, **kwargs)


def options_from(c, **flags) -> RunOptions:
    """The :class:`RunOptions` of a task run from the CLI: defaults < ``concurdeploy.yaml``
    < ``CONCURDEPLOY_*`` < ``flags`` (None = not given), printing on (``console=True``),
    relative paths from the project root (where ``tasks.py`` was found).

    For a project's ``tasks.py``: ``opts = options_from(c, inventory=inventory, forks=forks)``,
    then ``load_inventory(opts.inventory, project_dir=opts.project_dir)`` and
    ``fan_out(hosts, action, payloads, opts)``; ``return`` the ``RunResult`` so that the exit
    code says whether a host failed.

    :param c: the invoke ``Context`` the task received (only ``c.config`` is read).
    :param flags: option names of :data:`concurdeploy.options.OPTIONS` (``forks``, ``limit``, …).
    :raises UsageError: an unknown option or a bad value (the CLI exits 2).
    """
    cfg = c.config
    return RunOptions.from_sources(flags, config=cfg, project_dir=cfg.get("project_dir") or None,
                                   console=True, command=cfg.get("command_line") or None)


#: ``--check --detailed-exitcode``: the exit code when no host failed and some host would change.
WOULD_CHANGE = 3


def _drift(result, flags: dict):
    """``result``; with ``--detailed-exitcode`` (check mode only, :class:`RunOptions` refuses it
    otherwise) and no failed host, exit :data:`WOULD_CHANGE` when some host would change.

    :raises invoke.Exit: code 3 (the recap has been printed).
    """
    if flags.get("detailed_exitcode") and result.exit_code == 0 and result.changed:
        from invoke import Exit

        raise Exit(code=WOULD_CHANGE)
    return result


def _become_password(c, flags: dict) -> str | None:
    """``-K/--ask-become-pass`` (popped from ``flags``): the sudo password, asked on the terminal
    (``getpass``: not echoed), after the other flags were checked; None without ``-K``.

    :raises UsageError: no terminal to ask on (CI: ``become_password_env``), the Dask executor
        (the password would travel to the cluster), nothing typed.
    """
    if not flags.pop("ask_become_pass", False):
        return None
    import getpass
    import sys

    from concurdeploy.exceptions import UsageError

    if options_from(c, **flags).executor != "local":
        raise UsageError("-K/--ask-become-pass is for the local executor: with Dask the password would travel "
                         "to the cluster's workers; set become_password_env there instead, and leave -K out")
    try:
        tty = sys.stdin.isatty()
    except (AttributeError, ValueError):
        tty = False
    if not tty:
        raise UsageError("-K/--ask-become-pass needs a terminal to ask on, and stdin is not one (CI, a pipe): "
                         "set the become_password_env var to the name of an environment variable holding the "
                         "sudo password (e.g. a CI secret), and leave -K out; no host was contacted")
    try:
        password = getpass.getpass("sudo password (-K): ")
    except EOFError:
        password = ""
    if not password:
        raise UsageError("-K/--ask-become-pass: no password was typed; no host was contacted")
    return password


def _builtin(name: str, **help):
    return task(klass=_Task, auto_shortflags=False, flags=[o.name for o in task_flags(name)], help=help)


@_builtin("push", service="The group whose 'files' are pushed to each of its hosts (e.g. haproxy).")
def push(c, service, **flags):
    """Push a service's files to every host of its group: atomic replace, reload if changed."""
    password = _become_password(c, flags)
    return _drift(api.push(service, options=options_from(c, **flags), become_password=password), flags)


#: Flags push parses only to refuse them with a reason (exit 2), so not shown in ``push --help``:
#: ``-H`` gives hosts, and push reads a group's files from an inventory.
push.help_hidden = ("hosts",)


@_builtin("run", group="Group or host pattern to run on.", command="Shell command run on each host (quote it).")
def run(c, group, command, **flags):
    """Run an ad-hoc shell command on every host; output is printed prefixed by host name."""
    own = {k: flags.pop(k) for k in ("timeout", "sudo", "collect")}
    password = _become_password(c, flags)
    return api.run(group, command, **own, options=options_from(c, **flags), become_password=password)


@_builtin("get", group="Group or host pattern to fetch from.", remote_path="Absolute path of the file on each host.",
          local_dir="Folder receiving LOCAL_DIR/<host>/<remote path>.")
def get(c, group, remote_path, local_dir, **flags):
    """Download one file from every host into LOCAL_DIR/<host>/<remote path>."""
    return api.get(group, remote_path, local_dir, options=options_from(c, **flags))


@_builtin("put", group="Group or host pattern to put the file on.",
          src="Local file (relative to the project root, or absolute).",
          dest="Absolute path on each host ({{ var }} allowed).")
def put(c, group, src, dest, **flags):
    """Put one file on every host with the same atomic replace as push (no reload)."""
    own = {k: flags.pop(k) for k in ("mode", "validate")}
    password = _become_password(c, flags)
    return _drift(api.put(group, src, dest, **own, options=options_from(c, **flags), become_password=password),
                  flags)


def _load(c, inventory):
    opts = options_from(c, inventory=inventory)
    return api.load_inventory(opts.inventory, project_dir=opts.project_dir)


@cdtask(help={"inventory": option("inventory").help,
              "graph": "Show the group tree with each group's hosts (the default view).",
              "list": "Print the inventory as JSON in the shape of 'ansible-inventory --list' (vars as "
                      "written, ansible_* names kept; secret vars masked)."})
def inventory(c, inventory=None, graph=False, list=False):
    """Show the inventory: the group tree (--graph, default), or --list as ansible-inventory's JSON
    (connects to nothing)."""
    if list and graph:
        from concurdeploy.exceptions import UsageError

        raise UsageError("inventory: give --list or --graph, not both")
    inv = _load(c, inventory)
    if list:
        from concurdeploy.inventory.listing import dumps
        from concurdeploy.report.masking import _secret_var_values

        values: set[str] = set()  # every host's secret values, rendered and as written
        for h in inv.hosts.values():
            names = h.vars.get("secret_vars")
            values.update(_secret_var_values(h.vars, {n for n in names if isinstance(n, str)}
                                             if isinstance(names, type([])) else set()))
        print(dumps(inv, mask=lambda key, value, names: _hidden(_list_mask(key, value, names), values)))
        return
    for line in _graph(inv, "all", 0, frozenset({"all"})):
        print(line)


def _hidden(value, values: set[str]):
    """``value`` with every secret of ``values`` hidden in each string it holds (lists and dicts
    walked): a var that only *holds* a secret (the source of ``db_password: "{{ vault_db }}"``)
    is masked too, as ``hosts --vars`` masks it."""
    from concurdeploy.report.masking import _hide

    if not values:
        return value
    if isinstance(value, str):
        return _hide(value, values)
    if isinstance(value, dict):
        return {k: _hidden(v, values) for k, v in value.items()}
    if isinstance(value, (type([]), tuple)):
        return [_hidden(v, values) for v in value]
    return value


def _list_mask(key: str, value, names: set):
    """``inventory --list``'s masking: a var listed in ``secret_vars`` or named like a secret
    (``hosts --vars``' rule) prints as ``********``; ``*_file``/``*_env`` vars name a file or an
    environment variable and print as written."""
    from concurdeploy.report.masking import _mask

    if key in names:
        return "********"
    return value if str(key).endswith(("_file", "_env")) else _mask(key, value, names)


def _graph(inv, name: str, depth: int, seen: frozenset) -> list[str]:
    """Ansible-style tree: ``@group:`` lines, children indented under ``|--``, hosts last (as
    ``ansible-inventory --graph``, checked on the differential corpus)."""
    def pad(d: int) -> str:
        return "" if d == 0 else "  " + "|  " * (d - 1) + "|--"

    from concurdeploy.report.text import name as esc  # control characters escaped, as ls does

    group = inv.groups[name]
    lines = [f"{pad(depth)}@{esc(name)}:"]
    for child in group.children:  # in the order Ansible keeps them (the --list order)
        if child in inv.groups and child not in seen:
            lines += _graph(inv, child, depth + 1, seen | {child})
    if name != "all":  # as ansible-inventory: all's own hosts are shown under ungrouped
        lines += [f"{pad(depth + 1)}{esc(h)}" for h in group.hosts]
    return lines


@cdtask(help={"limit": "Host pattern to list (default: all).", "inventory": option("inventory").help,
              "vars": "Also show each host's merged vars and where each came from."})
def hosts(c, limit="all", inventory=None, vars=False):
    """List the inventory's hosts with their groups and connection settings (connects to nothing)."""
    from concurdeploy.report.masking import _hide, _mask, _secret_var_values
    from concurdeploy.report.text import name as esc  # control characters escaped, as ls does

    inv = _load(c, inventory)
    chosen = inv.select(limit or "all")
    width = max(len(esc(h.name)) for h in chosen) + 1
    for h in chosen:
        v = h.vars
        addr = esc(f"{v.get('user', '') + '@' if v.get('user') else ''}{v.get('host', h.name)}:{v.get('port', 22)}")
        groups = esc(",".join(g for g in h.groups if g != "all"))
        conn = esc(v.get("connection", "ssh"))
        print(f"{esc(h.name):<{width}} {addr:<28} {conn:<8} groups={groups}")
        if vars:
            names = v.get("secret_vars")
            names = {n for n in names if isinstance(n, str)} if isinstance(names, list) else set()
            values = _secret_var_values(v, names)
            for key in sorted(v):
                shown = _hide(repr(_mask(key, v[key], names)), values)
                print(f"    {esc(key)} = {shown}   # {esc(h.origins.get(key, 'built-in'))}")
