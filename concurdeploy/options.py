"""The options of a run: every flag declared once (:data:`OPTIONS`), validated once, frozen.

:class:`RunOptions` is what the CLI hands down to :mod:`concurdeploy.api` (nothing below the
CLI sees invoke's ``Context``). Build it with :meth:`RunOptions.from_sources`, which applies
the layers in this order, lowest first::

    defaults (OPTIONS)  <  config (concurdeploy.yaml)  <  env (CONCURDEPLOY_<KEY>)  <  flags

Only options with a ``setting`` have a config key / env variable. Two settings are defaults
*below* the inventory rather than overrides above it: the config keys ``connect_timeout`` and
``command_timeout`` (fields ``default_connect_timeout`` / ``default_command_timeout``, beaten
by host vars and ssh_config), while the flags ``--connect-timeout`` / ``--command-timeout``
beat every host's vars.

Every value is checked when the record is built (``__post_init__``): a bad one raises
:class:`~concurdeploy.exceptions.UsageError` with one paragraph that names the flag (or config
key / variable) and says what to give instead; the CLI turns it into exit code 2.
This module imports nothing of concurdeploy's but :mod:`concurdeploy.exceptions`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from concurdeploy.exceptions import UsageError

__all__ = ["OPTIONS", "TASK_OPTIONS", "Option", "RunOptions", "check_value", "option"]


@dataclass(frozen=True)
class Option:
    """One option, declared once: its flag, type, default, help and checks.

    :param name: python name; the flag is ``--name-with-dashes``.
    :param kind: ``bool``, ``int``, ``float`` or ``str``.
    :param default: value when no layer gives one (None = "not set": lower layers decide).
    :param short: one-letter flag, or None.
    :param setting: config key (``concurdeploy.yaml``) and env suffix (``CONCURDEPLOY_<KEY>``), or None.
    :param minimum: numbers: smallest allowed value.
    :param maximum: numbers: largest allowed value (a sanity bound).
    :param choices: strings: the allowed values (lower-cased before the check).
    :param metavar: the value's name in ``--help`` (``N``, ``SECONDS``, ``PATH``).
    :param advice: what to give, appended to an error message.
    :param group: which tasks take it (see :data:`TASK_OPTIONS`); "" = a setting with no flag.
    """

    name: str
    kind: type
    default: Any
    help: str
    short: str | None = None
    setting: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    metavar: str = ""
    advice: str = ""
    group: str = ""

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


_S = "SECONDS"
#: Every option of the built-in tasks, in ``--help`` order within a task.
OPTIONS: tuple[Option, ...] = (
    # -- what to change
    Option("check", bool, False, "Check mode: connect and compare, report what would change, write nothing.",
           short="C", group="change"),
    Option("diff", bool, False, "Show a unified diff of each changed file (secret_vars masked); with --check "
           "or not.", group="change"),
    Option("detailed_exitcode", bool, False, "With --check: exit 3 when some host would change (0 = no drift, "
           "1 = a host failed or was unreachable, 2 = bad input).", group="change"),
    # -- which hosts
    Option("inventory", str, "inventories", "Inventory file or folder (default: inventories/, or "
           "$CONCURDEPLOY_INVENTORY).", short="i", setting="inventory", metavar="PATH", group="select"),
    Option("limit", str, None, "Only hosts matching this pattern, e.g. 'lb1', 'web*', 'eu:&haproxy', '!lb3', "
           "'@file'.", short="l", metavar="PATTERN", group="select"),
    Option("retry_failed", str, None, "Only the hosts a JSON report (--report-json) lists as failed, "
           "unreachable or skipped.", metavar="REPORT", group="select"),
    # -- hosts' vars from the command line (:mod:`concurdeploy.inventory.overrides`)
    Option("hosts", str, None, "Ad-hoc hosts instead of an inventory: user@host:port,... (select them with "
           "'all'); host keys checked (strict) against ~/.ssh/known_hosts. Not with -i.", short="H",
           metavar="TARGETS", group="target"),
    Option("extra_vars", list, (), "Host var KEY=VALUE for every host, above the inventory's; repeatable; "
           "@FILE.yaml reads a mapping (as ansible -e).", short="e", metavar="KEY=VALUE", group="target"),
    Option("user", str, None, "Log in as USER on every host (beats the inventory's user).", short="u",
           metavar="USER", group="target"),
    Option("private_key", str, None, "Private key file for every host (beats key_file/key_env).",
           metavar="PATH", group="target"),
    Option("become", bool, False, "Run as root through sudo on every host (the become var).", short="b",
           group="become"),
    Option("ask_become_pass", bool, False, "Ask for the sudo password on the terminal (kept off argv and "
           "environments; local executor).", short="K", group="become"),
    # -- how to connect
    Option("forks", int, 50, "Hosts in flight at once (default 50, or $CONCURDEPLOY_FORKS).", short="P",
           setting="forks", minimum=1, maximum=10000, metavar="N", advice="hosts in flight at once, e.g. 20", group="connect"),
    Option("host_key_policy", str, None, "strict (default) | accept-new | off: overrides the host_key_policy "
           "var.", setting="host_key_policy", choices=("strict", "accept-new", "off"), metavar="POLICY",
           group="connect"),
    Option("ssh_config", str, None, "OpenSSH client config to read instead of ~/.ssh/config (or 'none').",
           short="F", metavar="PATH", group="connect"),
    Option("connect_timeout", float, None, "Seconds per connect phase (TCP, handshake, auth), for every host "
           "(default: host var, ssh_config, config connect_timeout, 10).", minimum=0.1, metavar=_S,
           group="connect"),
    Option("command_timeout", float, None, "Seconds a remote command may run, for every host (default: host "
           "var, config command_timeout, 60).", minimum=0.1, metavar=_S, group="connect"),
    Option("deadline", float, 0.0, "Seconds for the whole run; unfinished hosts then fail (0 = none).",
           setting="deadline", minimum=0, metavar=_S, group="connect"),
    # -- rollout
    Option("serial", str, None, "Roll out in batches: a count (2), a share (25%) or a list (1,10%,100%: "
           "canary first).", metavar="N|P%,...", group="rollout"),
    Option("max_fail", str, None, "Stop further batches once more than N hosts (2) or P% of hosts tried "
           "(10%) failed.", metavar="N|P%", group="rollout"),
    Option("fail_fast", bool, False, "Start no new host after the first failure.", group="rollout"),
    # -- reports and output
    Option("report_json", str, None, "Write a JSON report of the run to this path (written even if the run "
           "fails).", metavar="PATH", group="report"),
    Option("junit", str, None, "Write a JUnit XML report (one test case per host) to this path.",
           metavar="PATH", group="report"),
    Option("report_html", str, None, "Write a self-contained HTML page of the run (recap, each host's outcome, "
           "a timeline of its phases) to this path.", metavar="PATH", group="report"),
    Option("no_progress", bool, False, "No live progress display, plain lines only (the default when stdout "
           "is not a terminal).", group="output"),
    Option("verbose", int, 0, "Show every host's remote output, the reload's too (-v, --verbose 1); also "
           "each changed file's checksums (-vv, --verbose 2).", short="v", minimum=0, group="output"),
    Option("quiet", bool, False, "Print only failed/unreachable hosts and the recap.", short="q",
           group="output"),
    # -- where the hosts are run from
    Option("executor", str, "local", "local (default: this machine's process pool) | dask (a Dask cluster, "
           "see --scheduler).", setting="executor", choices=("local", "dask"), metavar="NAME",
           group="executor"),
    Option("scheduler", str, None, "--executor dask: the scheduler's address, tcp://HOST:8786 (or "
           "$CONCURDEPLOY_SCHEDULER).", setting="scheduler", metavar="ADDRESS", group="executor"),
    Option("retries", int, 0, "Times a host whose worker process died before its result arrived is "
           "retried on another worker (default 0: reported unreachable); local and dask executors.",
           minimum=0, maximum=100, metavar="N", group="executor"),
    # -- settings without a flag
    Option("processes", int, 0, "Worker processes; 0 = automatic: none for up to 64 hosts (they run in "
           "the controller's threads), else one per CPU (at most forks).", setting="processes", minimum=0),
    Option("default_connect_timeout", float, None, "Config connect_timeout: below host vars and ssh_config.",
           setting="connect_timeout", minimum=0.1),
    Option("default_command_timeout", float, None, "Config command_timeout: below host vars.",
           setting="command_timeout", minimum=0.1),
    # -- one task's own options (not RunOptions fields: keywords of that task's api function)
    Option("timeout", float, None, "Seconds the command may run per host (default: command_timeout).",
           minimum=0.1, metavar=_S, group="run"),
    Option("sudo", bool, False, "Run the command as root through sudo (password from the "
           "become_password_env var).", group="run"),
    Option("collect", bool, False, "Print each host's output grouped under its line when it finishes, "
           "instead of live.", group="run"),
    Option("mode", str, None, "Octal mode, e.g. 0640 (default: keep the replaced file's, 0644 for a new "
           "one).", metavar="OCTAL", group="put"),
    Option("validate", str, None, "Command run on the uploaded temporary file, {tmp} = its path.",
           metavar="COMMAND", group="put"),
)

_BY_NAME = {o.name: o for o in OPTIONS}

#: Option groups of each built-in task (the flags its ``--help`` shows, in this order).
TASK_OPTIONS: dict[str, tuple[str, ...]] = {
    "push": ("change", "select", "target", "become", "connect", "rollout", "report", "output", "executor"),
    "put": ("put", "change", "select", "target", "become", "connect", "rollout", "report", "output", "executor"),
    "run": ("run", "select", "target", "become", "connect", "rollout", "report", "output", "executor"),
    "get": ("select", "target", "connect", "report", "output"),
}


def option(name: str) -> Option:
    """The declaration of option ``name`` (python name, e.g. ``"max_fail"``).

    :raises KeyError: no such option.
    """
    return _BY_NAME[name]


def task_flags(task: str) -> list[Option]:
    """The options a built-in task takes (``push``, ``put``, ``run``, ``get``), in help order."""
    return [o for g in TASK_OPTIONS[task] for o in OPTIONS if o.group == g]


def _source_label(opt: Option, source: str) -> str:
    if source == "config":
        return opt.setting or opt.name
    if source == "env":
        return f"CONCURDEPLOY_{(opt.setting or opt.name).upper()}"
    return opt.flag


def _where(opt: Option, source: str) -> str:
    if source == "config":
        return (f" (set in concurdeploy.yaml or $CONCURDEPLOY_{opt.setting.upper()}; "
                f"see 'concurdeploy --print-config')")
    return ""


_TERM = re.compile(r"^\s*(\d+|\d+(\.\d+)?%)\s*$")


def _batch_terms(spec: str, label: str, zero_ok: bool, single: bool) -> None:
    terms = [spec] if single else spec.split(",")
    for t in terms:
        m = _TERM.match(t)
        ok = bool(m)
        if ok:
            t = t.strip()
            number = float(t[:-1]) if t.endswith("%") else int(t)
            low_ok = number >= 0 if zero_ok else number > 0
            ok = low_ok and (number <= 100 if t.endswith("%") else True)
        if not ok:
            if single:
                raise UsageError(f"{label} {spec!r}: give a count ≥ 0 (e.g. 1) or a share (e.g. 10%)")
            raise UsageError(f"{label} {t.strip()!r}: give a host count ≥ 1 (e.g. 2) or a share "
                             f"(e.g. 25%), or a comma list such as 1,10%,100%")


def _writable(path: str, label: str) -> str:
    """``path`` (``~`` expanded) if it is not a folder. Whether the report can really be
    written there is probed before any host is touched, by the run itself
    (:func:`concurdeploy.report.files.check_writable`, where the report-path rules live).

    :raises UsageError: names the flag and the path.
    """
    full = os.path.abspath(os.path.expanduser(path))
    if os.path.isdir(full):
        raise UsageError(f"{label}: cannot write a report to {full}: it is a folder; give a file "
                         f"path; nothing was touched")
    return os.path.expanduser(path)  # as given (relative to the working directory): messages show it so


def check_value(name: str, value: Any, source: str = "flag") -> Any:
    """``value`` of option ``name`` checked and converted to its type; None passes through.

    :param source: where it came from, for the message: ``"flag"``, ``"config"`` or ``"env"``.
    :raises UsageError: wrong type, out of range, not one of the choices, bad syntax, a report
        path that cannot be written; the message names the flag (or config key / variable).
    """
    opt = _BY_NAME[name]
    if value is None:
        return None
    label, where = _source_label(opt, source), _where(opt, source)
    advice = f": give {opt.advice}" if opt.advice else ""
    if opt.kind is list:  # repeatable: each item a non-empty string, or (API) a mapping
        items = [value] if isinstance(value, (str, Mapping)) else list(value)
        for item in items:
            if not isinstance(item, Mapping) and not (isinstance(item, str) and item.strip()):
                raise UsageError(f"{label} {item!r}: give {opt.metavar} or @FILE.yaml{where}")
        return tuple(items)
    if opt.kind is bool:  # a real bool, or its spelling in a file or variable; never "" or 0 or 2
        if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.strip().lower() in ("1", "true", "yes", "on")
        if not isinstance(value, bool):
            raise UsageError(f"{label} must be true or false, not {value!r}{where}")
        return value
    if isinstance(value, str) and not value.strip(" ,:" if name == "limit" else " "):
        raise UsageError(_empty(opt, label, where))
    if opt.kind in (int, float):
        return _number(opt, value, label, advice, where)
    if not isinstance(value, str):
        raise UsageError(f"{label} must be a string, not {value!r}{where}")
    if opt.choices:
        text = value.strip().lower()
        if text not in opt.choices:
            raise UsageError(f"{label} must be {', '.join(opt.choices[:-1])} or {opt.choices[-1]}, "
                             f"not {value!r}{where}")
        return text
    if name == "serial":
        _batch_terms(value, label, zero_ok=False, single=False)
    elif name == "max_fail":
        _batch_terms(value, label, zero_ok=True, single=True)
    elif name in ("report_json", "junit", "report_html"):
        return _writable(value, label)
    elif name == "mode" and not re.fullmatch(r"0?[0-7]{3,4}", value.strip()):
        raise UsageError(f"{label} {value!r}: give an octal mode such as 0640 or 644")
    elif name == "ssh_config" and value.strip().lower() != "none" and \
            not os.path.isfile(os.path.expanduser(value)):
        raise UsageError(f"{label} {value!r}: no such file (from {os.getcwd()}); give an OpenSSH client "
                         f"config file, or 'none' to read none; no host was contacted")
    return value


def _empty(opt: Option, label: str, where: str) -> str:
    """The message for an empty value: typed by the user, it is a mistake (an unset shell
    variable, a ``--flag=`` left unfinished), never "use the default"."""
    if opt.name == "limit":
        return ("--limit is empty (an unset variable?): give a pattern, or leave the flag out to "
                "select every host of the group")
    what = {"PATH": "a path", "PATTERN": "a pattern", "ADDRESS": "an address", _S: "a number of seconds",
            "REPORT": "the path of a JSON report"}.get(opt.metavar) or (
        "a whole number" if opt.kind is int else "a number" if opt.kind is float else "a value")
    if opt.choices:
        what = f"{', '.join(opt.choices[:-1])} or {opt.choices[-1]}"
    leave = ("leave the flag out" if label.startswith("--") else
             "unset it" if label.startswith("CONCURDEPLOY_") else "remove the line")
    return f"{label} is empty (an unset variable?): give {what}, or {leave} for the default{where}"


_WHOLE = re.compile(r"^\s*[+-]?\d+\s*$")


def _number(opt: Option, value: Any, label: str, advice: str, where: str) -> int | float:
    """``value`` as ``opt``'s number type, within its bounds. A count (int) must be written
    as a whole number: ``1e3`` or ``2.0`` are refused, not rounded."""
    number = None
    if not isinstance(value, bool):
        try:
            number = float(value)
        except (TypeError, ValueError):
            pass
    if number is None or math.isnan(number) or math.isinf(number):
        raise UsageError(f"{label} must be a number, not {value!r} (wrong type){advice}{where}")
    if opt.kind is int:
        if not (isinstance(value, int) or (isinstance(value, str) and _WHOLE.match(value))):
            raise UsageError(f"{label} must be a whole number written in digits, not {value!r}{advice}{where}")
        number = int(number) if isinstance(value, int) else int(value.strip())
    unit = " seconds" if opt.metavar == _S or opt.name.endswith(("timeout", "deadline")) else ""
    shown = str(number) if opt.kind is int else f"{number:g}"
    if opt.minimum is not None and number < opt.minimum:
        raise UsageError(f"{label} must be at least {opt.minimum:g}{unit}, not {shown}{advice}{where}")
    if opt.maximum is not None and number > opt.maximum:
        raise UsageError(f"{label} must be at most {opt.maximum:g}{unit}, not {shown}{advice}{where}")
    return number


@dataclass(frozen=True)
class RunOptions:
    """Every shared option of a run, checked (see :data:`OPTIONS` for help texts).

    ``None`` means "not given": the inventory, ssh_config or built-in defaults decide.
    Build with :meth:`from_sources` (layers) or directly (``RunOptions(forks=5)``); either way
    every value is checked and converted here.

    :param project_dir: the project root: relative inventory and ``src`` paths start there
        (None = the current directory).
    :param console: print host lines and the recap on stdout (the CLI sets it; from Python
        the default is False: nothing is printed but warnings on stderr).
    :param command: the command line recorded in reports (None = built from the task).
    :raises UsageError: a value is wrong (one paragraph naming the flag).
    """

    check: bool = False
    diff: bool = False
    detailed_exitcode: bool = False
    inventory: str = "inventories"
    hosts: str | None = None
    extra_vars: tuple = ()
    user: str | None = None
    private_key: str | None = None
    become: bool = False
    ask_become_pass: bool = False
    limit: str | None = None
    retry_failed: str | None = None
    forks: int = 50
    host_key_policy: str | None = None
    ssh_config: str | None = None
    connect_timeout: float | None = None
    command_timeout: float | None = None
    deadline: float = 0.0
    serial: str | None = None
    max_fail: str | None = None
    fail_fast: bool = False
    report_json: str | None = None
    junit: str | None = None
    report_html: str | None = None
    no_progress: bool = False
    verbose: int = 0
    quiet: bool = False
    executor: str = "local"
    scheduler: str | None = None
    retries: int = 0
    processes: int = 0
    default_connect_timeout: float | None = None
    default_command_timeout: float | None = None
    project_dir: str | None = None
    console: bool = False
    command: str | None = None

    def __post_init__(self) -> None:
        layered = "_sources" in self.__dict__  # built by from_sources / with_flags: sources known
        sources = self.__dict__.get("_sources") or {}
        object.__setattr__(self, "_sources", dict(sources))  # kept: with_flags re-checks with it
        for f in fields(self):
            if f.name in _BY_NAME:
                value = check_value(f.name, getattr(self, f.name), sources.get(f.name, "flag"))
                if value is None:
                    value = _BY_NAME[f.name].default
                object.__setattr__(self, f.name, value)
        if self.quiet and self.verbose:
            raise UsageError("-q/--quiet and -v/--verbose exclude each other: give one of them")
        if self.detailed_exitcode and not self.check:
            raise UsageError("--detailed-exitcode is for check mode: add --check (exit 0 = no drift, 3 = some "
                             "host would change, 1 = a host failed, 2 = bad input), or leave it out")
        if self.hosts and (sources.get("inventory") == "flag" if layered else self.inventory != "inventories"):
            raise UsageError(f"-H/--hosts and -i/--inventory {self.inventory} both say which hosts: give one "
                             f"(-l PATTERN narrows an inventory)")
        if layered:  # not for dataclasses.replace(), which cannot tell a flag from a setting
            self._check_executor(sources)
        if self.project_dir is not None:
            object.__setattr__(self, "project_dir", os.path.abspath(self.project_dir))

    def _check_executor(self, sources: Mapping[str, str]) -> None:
        """``--scheduler`` only with the Dask executor; ``executor: dask`` from the config or
        the environment needs a scheduler and the extra (the message names that setting; for
        ``--executor dask`` the executor itself says what is missing)."""
        if self.executor == "local" and self.scheduler and sources.get("scheduler", "flag") == "flag":
            raise UsageError("--scheduler is for --executor dask (the local executor has no scheduler): "
                             "add --executor dask, or leave --scheduler out")
        source = sources.get("executor", "flag")
        if self.executor != "dask" or source == "flag":
            return
        label = ("executor: dask (concurdeploy.yaml)" if source == "config"
                 else "CONCURDEPLOY_EXECUTOR=dask")
        try:
            import importlib.util

            missing = importlib.util.find_spec("distributed") is None
        except (ImportError, ValueError):  # sys.modules["distributed"] = None
            missing = True
        if missing:
            raise UsageError(f"{label} needs Dask distributed, which is not installed; fix: pip install "
                             f"'concurdeploy[dask]', or remove that setting to run on this machine")
        if not self.scheduler:
            raise UsageError(f"{label} needs the scheduler's address: --scheduler tcp://HOST:8786 (or "
                             f"CONCURDEPLOY_SCHEDULER, or 'scheduler' in concurdeploy.yaml); or remove "
                             f"that setting to run on this machine")

    @classmethod
    def from_sources(cls, flags: Mapping[str, Any] | None = None, *, config: Mapping | None = None,
                     env: Mapping[str, str] | None = None, **extra) -> RunOptions:
        """Layer the sources, lowest first: defaults < ``config`` < ``env`` < ``flags``.

        :param flags: option name → value; None values are "not given" and skipped.
        :param config: settings by config key (e.g. invoke's ``c.config``, which already holds
            the env layer; a ``dict`` from concurdeploy.yaml); None or "" values skipped.
        :param env: environment (``os.environ``): ``CONCURDEPLOY_<KEY>`` for each setting.
        :param extra: record fields that are not options (``project_dir``, ``console``, ``command``).
        :raises UsageError: an unknown option name, or a bad value (names its flag, key or variable).
        """
        flags = dict(flags or {})
        unknown = sorted(set(flags) - {f.name for f in fields(cls)})
        if unknown:
            raise UsageError(f"unknown option {unknown[0]!r}: the options are "
                             f"{', '.join(f.name for f in fields(cls))}")
        values, sources = {}, {}
        for f in fields(cls):
            opt = _BY_NAME.get(f.name)
            if opt is None:
                continue
            layers = []
            if opt.setting and config is not None:
                layers.append(("config", config.get(opt.setting)))
            if opt.setting and env is not None:
                layers.append(("env", env.get(f"CONCURDEPLOY_{opt.setting.upper()}")))
            layers.append(("flag", flags.get(f.name)))
            for source, value in layers:
                # "" in ``config`` is invoke's "not set" default (files are checked when read,
                # :mod:`concurdeploy.cli.config`); an empty flag or variable is an error
                if value is not None and (value != "" or source != "config"):
                    values[f.name], sources[f.name] = value, source
        for key in ("project_dir", "console", "command"):
            if key in flags and key not in extra:
                extra[key] = flags[key]
        record = cls.__new__(cls)
        object.__setattr__(record, "_sources", sources)
        for f in fields(cls):
            object.__setattr__(record, f.name, values.get(f.name, extra.get(f.name, f.default)))
        record.__post_init__()
        return record

    def with_flags(self, **flags) -> RunOptions:
        """A copy with these options replaced (None values ignored), checked again.

        :raises UsageError: an unknown option name or a bad value.
        """
        names = {f.name for f in fields(self)}
        unknown = sorted(set(flags) - names)
        if unknown:
            raise UsageError(f"unknown option {unknown[0]!r}: the options are {', '.join(sorted(names))}")
        given = {k: v for k, v in flags.items() if v is not None}
        record = type(self).__new__(type(self))
        object.__setattr__(record, "_sources", {**self._sources, **{k: "flag" for k in given}})
        for f in fields(self):
            object.__setattr__(record, f.name, given.get(f.name, getattr(self, f.name)))
        record.__post_init__()
        return record
