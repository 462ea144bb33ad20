"""The library below the CLI: options record in, :class:`~concurdeploy.records.RunResult` out.

Entry points (exported by :mod:`concurdeploy`)::

    import concurdeploy
    result = concurdeploy.push("haproxy", inventory="inventories/prod.yaml", check=True)
    result.exit_code, [r.status for r in result.hosts], result["lb1"].changes

- :func:`push`, :func:`put`, :func:`run`, :func:`get`: one built-in action over a group;
- :func:`load_inventory`, :func:`select_hosts`, :func:`fan_out`: the parts, for a project's own
  ``tasks.py`` (see ``seed`` there) or a script.

Options come as keywords (``forks=10, serial="25%"``, the names of :data:`concurdeploy.options.OPTIONS`)
or as a :class:`~concurdeploy.options.RunOptions` (``options=``); keywords win. Nothing is printed
unless ``console=True`` (the CLI sets it), except warnings on stderr. Errors:

- a host's failure never raises: it is that host's ``HostResult`` (``result.ok`` is False);
- :class:`~concurdeploy.exceptions.UsageError` (and its :class:`~concurdeploy.exceptions.InventoryError`,
  ``ServiceError``): bad options, inventory, declaration — raised before any host is touched;
- :class:`~concurdeploy.exceptions.RunInterrupted`: SIGINT/SIGTERM (hosts in flight stopped at a safe
  point, the reports written).

No invoke here: exit codes are the CLI's (:mod:`concurdeploy.cli.program`).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from concurdeploy.exceptions import NoHostsMatched, RunInterrupted, UsageError
from concurdeploy import reporting
from concurdeploy.options import RunOptions, check_value
from concurdeploy.records import HostResult, RunRecord, RunResult, Status, utc_now

if TYPE_CHECKING:  # imported where used: `concurdeploy --list` must stay as fast as invoke's
    from concurdeploy.inventory import Host, Inventory

__all__ = ["fan_out", "get", "load_inventory", "push", "put", "run", "select_hosts"]


def _options(options: RunOptions | None, flags: dict) -> RunOptions:
    if options is None:
        return RunOptions.from_sources(flags)
    return options.with_flags(**flags) if flags else options


def _task_options(task: str, options: RunOptions | None, flags: dict) -> RunOptions:
    """The options of one built-in run (``push``, ``put``, ``run``, ``get``), refusing what
    that task does not honour — as its CLI does (``run --check`` is exit 2 there): a keyword
    it does not take, or an options record asking for such a thing (``check=True`` for
    ``run`` would otherwise run the command for real). Config-file settings are exempt.

    :raises UsageError: names the option(s) and the task.
    """
    from concurdeploy.options import OPTIONS, task_flags

    honoured = {o.name for o in task_flags(task)}
    free = {o.name for o in OPTIONS if not o.group} | {"project_dir", "console", "command"}
    bad = sorted(k for k in flags if k not in honoured | free)
    opts = _options(options, flags)
    if options is not None:
        plain = RunOptions()
        bad += sorted(o.name for o in OPTIONS if o.group and o.name not in honoured and not o.setting
                      and hasattr(opts, o.name) and getattr(opts, o.name) != getattr(plain, o.name)
                      and o.name not in bad)
    if bad:
        raise UsageError(f"{task} does not take {', '.join(bad)} (its options: "
                         f"{', '.join(sorted(honoured))}); nothing was touched")
    return opts


def _project_dir(options: RunOptions) -> str:
    return options.project_dir or os.getcwd()


def load_inventory(inventory: str | None = None, *, project_dir: str | None = None) -> Inventory:
    """Load an inventory file or folder.

    :param inventory: path; None = ``"inventories"``. A relative path that does not exist
        from the current directory is taken relative to ``project_dir``.
    :param project_dir: the project root (None = the current directory).
    :raises InventoryError: see :func:`concurdeploy.inventory.load` (file, line and key named).
    """
    path = inventory or "inventories"
    if not os.path.isabs(path) and not os.path.exists(path):
        path = os.path.join(project_dir or os.getcwd(), path)
    from concurdeploy.inventory import load

    return load(path)


def select_hosts(inv: Inventory, group: str, limit: str | None = None,
                 retry_failed: str | None = None) -> list[Host]:
    """Hosts of ``group`` (any pattern), narrowed by ``limit`` and by the failed hosts of a
    JSON report (``retry_failed``); inventory order.

    :raises UnknownGroup, NoHostsMatched: nothing selected (never "deployed to zero hosts"): an
        unknown name, a pattern or ``--limit`` matching nothing, an empty intersection.
    :raises InventoryError: the inventory mixes sandbox hosts with real ones
        (:func:`concurdeploy.targeting.check_sandbox`).
    :raises UsageError: ``limit`` is empty; ``retry_failed`` is not a readable concurdeploy JSON report.
    """
    from concurdeploy.targeting import check_sandbox

    if limit is not None:
        check_value("limit", limit)
    check_sandbox(inv)  # whatever is selected: the sandbox never runs beside real hosts
    chosen = inv.select(group)
    if limit:
        try:
            allowed = {h.name for h in inv.select(limit)}
        except NoHostsMatched as e:
            raise NoHostsMatched(f"--limit {limit!r} selects nothing: {e}") from None
        chosen = [h for h in chosen if h.name in allowed]
        if not chosen:
            raise NoHostsMatched(f"--limit {limit!r} leaves no host of {group!r} "
                                 f"(its hosts: {', '.join(h.name for h in inv.select(group))})")
    if retry_failed:
        from concurdeploy.report.files import retry_hosts

        failed = set(retry_hosts(retry_failed))
        chosen = [h for h in chosen if h.name in failed]
        if not chosen:
            raise NoHostsMatched(f"--retry-failed {retry_failed}: the report lists no failed, "
                                 f"unreachable or skipped host of {group!r}; nothing to retry")
    return chosen


def _prepare(group: str, options: RunOptions, check=None) -> tuple[Inventory, list[Host]]:
    """Inventory and hosts of a built-in action; passphrases asked, the local pool warmed up.

    :param check: ``check(inv, hosts)``, called once the hosts are selected and before any
        prompt: where an action builds (and so checks) its per-host jobs.
    """
    from concurdeploy.inventory.overrides import adhoc_inventory, command_line_vars

    inv = (adhoc_inventory(options.hosts) if options.hosts
           else load_inventory(options.inventory, project_dir=options.project_dir))
    hosts = command_line_vars(select_hosts(inv, group, options.limit, options.retry_failed),
                              extra=options.extra_vars, user=options.user, private_key=options.private_key,
                              become=options.become, project_dir=options.project_dir)
    if check is not None:
        check(inv, hosts)
    from concurdeploy.targeting import check_key_env

    check_key_env(hosts, options.executor)
    from concurdeploy.ssh.passphrases import ask  # on a terminal only; before any worker starts

    ask(h.vars["key_file"] for h in hosts
        if isinstance(h.vars.get("key_file"), str) and not h.vars.get("passphrase_env")
        and h.vars.get("connection", "ssh") == "ssh")
    if _pooled(options, hosts):  # its fork server's imports overlap our own work
        _warm_up_without_secrets(hosts)
    return inv, hosts


def _pooled(options: RunOptions, hosts: list[Host]) -> bool:
    """True when the run uses the local pool's worker processes (not the controller's own
    threads, which a run of a few hosts uses: no fork server to warm up then)."""
    from concurdeploy.executors.inline import fits_inline

    local = str(options.executor or "local").strip().lower() == "local"
    return local and not fits_inline("local", options.processes, len(hosts))


def _warm_up_without_secrets(hosts: list[Host]) -> None:
    """Start the local pool's fork server and resource tracker (once per process) with the
    environment variables the hosts' ``*_env`` vars name *removed* from their environment; the
    workers read those values from this process's memory instead
    (:mod:`concurdeploy.ssh.envsecrets`)."""
    from concurdeploy.executors.local import warm_up
    from concurdeploy.ssh import envsecrets

    names = set().union(*(envsecrets.env_names(h.vars) for h in hosts))
    envsecrets.seal(names)
    with envsecrets.scrubbed(names):
        warm_up()


def _command(options: RunOptions, *words: str) -> RunOptions:
    return options if options.command else replace(options, command=shlex.join(["concurdeploy", *words]))


def push(service: str, *, options: RunOptions | None = None, become_password: str | None = None,
         **flags: Any) -> RunResult:
    """Push a service's files to every host of its group: atomic replace, reload if changed.

    :param service: the group whose declaration is pushed, e.g. ``"haproxy"``: its ``files``,
        ``reload``… read from that group, its parents and the hosts' own vars, never from
        another group a host is in (:class:`concurdeploy.targeting.Service`).
    :param options: a :class:`RunOptions`; ``flags`` (``check=True``, ``limit="lb*"``, …) override it.
    :param become_password: the sudo password for hosts with ``become`` (``-K``), carried in each
        job to the local workers (never an environment), masked in output; push, put and run.
    :returns: :class:`RunResult`, one ``HostResult`` per host in inventory order.
    :raises UsageError: bad option, inventory or declaration; ``service`` is a host or a pattern,
        not a group (no host touched).
    :raises RunInterrupted: SIGINT/SIGTERM arrived.
    """
    from concurdeploy.operations.become import with_password
    from concurdeploy.operations.push import push as push_action
    from concurdeploy.operations.service import TemplateFailed, push_job
    from concurdeploy.targeting import Service

    opts = _command(_task_options("push", options, flags), "push", service)
    if opts.hosts:
        raise UsageError(f"push {service} reads the files of group {service!r} from an inventory, and "
                         f"-H/--hosts gives hosts only: use -i INVENTORY (or -l to narrow it), or put "
                         f"(one file) with -H; nothing was touched")
    project_dir, cache, payloads = _project_dir(opts), {}, []

    def build(inv: Inventory, hosts: list[Host]) -> None:  # every declaration checked before any host is touched
        declared = Service(inv, service)
        for h in hosts:
            try:
                payloads.append(push_job(h, project_dir, check=opts.check, cache=cache, diff=opts.diff,
                                         service=service, declaration=declared.for_host(h)))
            except TemplateFailed as e:
                payloads.append(HostResult(h.name, Status.FAILED, error_kind="TemplateFailed", error=str(e)))

    inv, hosts = _prepare(service, opts, build)
    payloads = with_password(payloads, become_password, opts.executor)
    return fan_out(hosts, push_action, payloads, opts, inventory=inv,
                   title=f"push {service}{' (check mode)' if opts.check else ''}")


def put(group: str, src: str, dest: str, *, mode: str | None = None, validate: str | None = None,
        options: RunOptions | None = None, become_password: str | None = None, **flags: Any) -> RunResult:
    """Put one file on every host of ``group`` with the same atomic replace as :func:`push` (no reload).

    :param src: local file, relative to the project root or absolute.
    :param dest: absolute path on each host (``{{ var }}`` allowed).
    :param mode: octal mode string, e.g. ``"0640"`` (None = keep the replaced file's, 0644 for a new one).
    :param validate: command run on the uploaded temporary file, ``{tmp}`` = its path.
    :returns: :class:`RunResult`. :raises UsageError, RunInterrupted: as :func:`push`.
    """
    from concurdeploy.operations.become import with_password
    from concurdeploy.operations.push import push as push_action
    from concurdeploy.operations.service import TemplateFailed, put_job

    mode = check_value("mode", mode)
    opts = _command(_task_options("put", options, flags), "put", group, src, dest)
    project_dir, cache, payloads = _project_dir(opts), {}, []

    def build(inv: Inventory, hosts: list[Host]) -> None:  # every job built before any host is touched
        for h in hosts:
            try:
                payloads.append(put_job(h, project_dir, src, dest, mode, validate, opts.check, opts.diff,
                                        cache))
            except TemplateFailed as e:
                payloads.append(HostResult(h.name, Status.FAILED, error_kind="TemplateFailed", error=str(e)))

    inv, hosts = _prepare(group, opts, build)
    payloads = with_password(payloads, become_password, opts.executor)
    return fan_out(hosts, push_action, payloads, opts, inventory=inv,
                   title=f"put {src} -> {dest}{' (check mode)' if opts.check else ''}")


def run(group: str, command: str, *, timeout: float | None = None, sudo: bool = False, collect: bool = False,
        options: RunOptions | None = None, become_password: str | None = None, **flags: Any) -> RunResult:
    """Run a shell command on every host of ``group``.

    :param timeout: seconds the command may run per host (None = the host's ``command_timeout``).
    :param sudo: run it as root (or ``become_user``) through sudo, password from ``become_password_env``.
    :param collect: with ``console``: print each host's output under its line when it finishes,
        instead of streaming it live prefixed by host.
    :returns: :class:`RunResult`; each ``HostResult.output`` holds the output's tail and
        ``exit_status`` the command's status (non-zero = that host ``failed``).
    :raises UsageError, RunInterrupted: as :func:`push`.
    """
    from concurdeploy.operations.become import Become, with_password
    from concurdeploy.operations.commands import RunJob, run_command
    from concurdeploy.operations.service import secret_values

    timeout = check_value("timeout", timeout)
    opts = _command(_task_options("run", options, flags), "run", group, command)
    inv, hosts = _prepare(group, opts)
    jobs = []
    for h in hosts:
        become = None
        if sudo or h.vars.get("become") is True:
            become = Become(user=str(h.vars.get("become_user") or "root"),
                            password_env=h.vars.get("become_password_env"))
        jobs.append(RunJob(command, timeout, become, stream=not collect and opts.console,
                           secrets=secret_values(h)))
    return fan_out(hosts, run_command, with_password(jobs, become_password, opts.executor), opts, inventory=inv,
                   show_output=collect, stream=not collect and opts.console)


def get(group: str, remote_path: str, local_dir: str, *, options: RunOptions | None = None,
        **flags: Any) -> RunResult:
    """Download one file from every host of ``group`` into ``LOCAL_DIR/<host>/<remote path>``.

    Always runs on the local pool (the files must land on this machine, not on a Dask worker).

    :returns: :class:`RunResult`. :raises UsageError, RunInterrupted: as :func:`push`.
    """
    from concurdeploy.operations.commands import GetJob, get_file

    opts = _command(_task_options("get", options, flags), "get", group, remote_path, local_dir)
    opts = replace(opts, executor="local")
    inv, hosts = _prepare(group, opts)
    job = GetJob(remote_path, os.path.abspath(local_dir))
    return fan_out(hosts, get_file, [job] * len(hosts), opts, inventory=inv)


def fan_out(hosts: list[Host], action, payloads: list, options: RunOptions | None = None, *,
            inventory: Inventory | None = None, title: str = "", show_output: bool = False,
            stream: bool = False, raise_on_failure: bool = False, **flags: Any) -> RunResult:
    """Run ``action(conn, payload)`` on every host through the worker pool.

    ``conn`` is a :class:`concurdeploy.Connection` (:mod:`concurdeploy.tasking`: ``conn.run``
    raises ``RemoteCommandFailed`` on a non-zero exit unless ``warn=True``); the library's own
    actions (functions of ``concurdeploy.*`` modules) get the internal SSH connection.

    :param hosts: from :func:`select_hosts` (inventory order is kept).
    :param action: a module-level function ``(Connection, payload) -> HostResult`` (it is sent
        to worker processes by reference); raising a ``HostError`` fails that host only.
    :param payloads: one picklable payload per host (``list``); a payload that is a
        :class:`HostResult` is that host's result as is (e.g. a template that failed to
        render) and the host is not contacted.
    :param options: forks, deadline, ``serial``/``max_fail``/``fail_fast``, reports,
        connection overrides, executor, output (``console``, ``verbose``, ``quiet``,
        ``no_progress``, ``diff``); ``flags`` override it (e.g. ``forks=5``).
    :param inventory: the whole inventory, so that a ``jump`` var may name any of its hosts.
    :param title: first line printed (with ``console``), e.g. ``"push haproxy"``.
    :param show_output: print every host's output under its line; ``stream``: print output
        the action streams (``conn.emit``) as it arrives, each line prefixed by its host.
    :param raise_on_failure: raise :class:`~concurdeploy.exceptions.HostsFailed` (after the recap
        and the reports) when a host failed or was unreachable; default False: a host's failure is
        only its ``HostResult``.
    :returns: :class:`RunResult`; with ``console`` the host lines and the recap were printed;
        the reports (``report_json``, ``junit``, ``report_html``) are written, also when hosts failed.
    :raises HostsFailed: ``raise_on_failure`` and some host failed (``.hosts``: their names).
    :raises UsageError: bad options or connection vars (before any host is touched).
    :raises RunInterrupted: SIGINT/SIGTERM arrived (in the main thread only).
    """
    from concurdeploy.executors import batches
    from concurdeploy.executors.core import DEADLINE_REASON, Job, make_executor
    from concurdeploy.executors.interrupts import Interrupts
    from concurdeploy.report import console

    opts = _options(options, flags)
    if not getattr(action, "__module__", "").startswith("concurdeploy."):
        from concurdeploy.tasking import TaskAction

        action = TaskAction(action)
    start, started = time.monotonic(), utc_now()
    limit = batches.parse_max_fail(opts.max_fail)
    groups = batches.split(list(range(len(hosts))), opts.serial)
    from concurdeploy.report.text import name as shown
    from concurdeploy.operations.timing import on_run_clock

    width = max((len(shown(h.name)) for h in hosts), default=4) + 1
    stdout = sys.stdout if opts.console else reporting.Null()
    out = console.Console(len(hosts), width=width, show_output=show_output, show_diff=opts.diff,
                          progress=not opts.no_progress, verbosity=console.verbosity(opts.verbose, opts.quiet),
                          stream=stdout, streamed=stream, check=bool(getattr(opts, "check", False)))
    results: dict[int, HostResult] = {}
    signals = None
    reporting.check_reports(opts)
    if _pooled(opts, hosts):  # a tasks.py may call fan_out first
        _warm_up_without_secrets(hosts)
    with contextlib.ExitStack() as stack:
        stack.enter_context(out)
        # everything that can refuse the run comes before its first line is printed
        pool = stack.enter_context(make_executor(opts.executor, forks=opts.forks, hosts=hosts,
                                                 processes=opts.processes or 0,
                                                 scheduler=opts.scheduler or "", retries=opts.retries))
        specs = reporting.with_output_dir(_connect_specs(hosts, opts, stack, inventory), _project_dir(opts))
        if title:
            extra = f", {len(groups)} batches" if len(groups) > 1 else ""
            out.line(f"{title}: {len(hosts)} host{'s' if len(hosts) != 1 else ''}, "
                     f"forks {min(opts.forks, len(hosts))}{extra}")
        if threading.current_thread() is threading.main_thread():
            signals = stack.enter_context(Interrupts(pool))
        end = time.monotonic() + opts.deadline if opts.deadline else None
        streamer = reporting.Streamer(out, width) if stream else None

        def on_output(host: str, kind: str, data: bytes) -> None:  # a large upload's bytes, or output
            if kind == "progress":
                out.upload_progress(host, data)
            elif streamer:
                streamer(host, kind, data)
        arrived: dict[str, float] = {}  # host -> seconds from the start when its result came

        def on_result(r: HostResult) -> None:
            arrived[r.host] = time.monotonic() - start
            if streamer:
                streamer.flush(r.host)
            out.host_done(r)
            if opts.fail_fast and r.status.is_failure:
                pool.stop(f"--fail-fast: {r.host} {r.status.value}")

        for number, members in enumerate(groups, 1):
            tag = number if len(groups) > 1 else None
            if pool.stopped is not None:  # --max-fail, --fail-fast or a signal: batch not started
                for i in members:
                    results[i] = HostResult(hosts[i].name, Status.SKIPPED, error_kind="NotStarted",
                                            error=f"not started: {pool.stopped}", batch=tag)
                continue
            if len(groups) > 1:
                out.batch_started(f"-- batch {number}/{len(groups)}: {', '.join(shown(hosts[i].name) for i in members)}")
            jobs, index = [], []
            for i in members:
                if isinstance(payloads[i], HostResult):
                    results[i] = replace(payloads[i], batch=tag)
                    out.host_done(results[i])
                else:
                    jobs.append(Job(specs[i], action, payloads[i], batch=tag))
                    index.append(i)
            for i, r in zip(index, pool.run(jobs, on_result=on_result, deadline=end, on_output=on_output)):
                results[i] = on_run_clock(r, arrived.get(r.host))
            tried = [r for r in results.values() if r.status is not Status.SKIPPED]
            failed = sum(1 for r in tried if r.status.is_failure)
            if pool.stopped is None and batches.exceeded(failed, len(tried), limit):
                pool.stop(f"--max-fail {opts.max_fail} exceeded ({failed} of {len(tried)} hosts failed)")
    ordered = tuple(results.get(i) or HostResult(h.name, Status.SKIPPED, error_kind="NotStarted",
                                                  error=f"not started: {pool.stopped}")
                    for i, h in enumerate(hosts))
    elapsed = time.monotonic() - start
    signum = signals.signum if signals else 0
    # "stopped early" only when it stopped something: a host not started, a signal, or the
    # deadline (hosts in flight then stop at a safe point: Interrupted, or are given up: Deadline)
    stopped = pool.stopped if signum or any(r.error_kind == "NotStarted" for r in ordered) \
        or (pool.stopped == DEADLINE_REASON and any(r.error_kind in ("Interrupted", "Deadline") for r in ordered)) \
        else None
    out.finish(ordered, elapsed, stopped=stopped)
    command = opts.command or " ".join(["concurdeploy", *sys.argv[1:]])
    # the report's command line may quote a secret (run 'echo $TOKEN' typed out): mask it
    # with every host's secrets, as each host's own output is
    from concurdeploy.secretset import mask

    command = mask(command, {s for p in payloads for s in getattr(p, "secrets", ())})
    report_error = reporting.write_reports(RunRecord(command, started, utc_now(), ordered, stopped, signum),
                                           opts, stdout)
    if signum:
        raise RunInterrupted(signum)
    result = RunResult(ordered, stopped, round(elapsed, 3), report_error)
    if raise_on_failure and result.failed:
        from concurdeploy.exceptions import HostsFailed

        raise HostsFailed([r.host for r in result.failed])
    return result


def _connect_specs(hosts, opts: RunOptions, stack, inventory=None) -> list:
    """One ``ConnectSpec`` per host: built-in defaults < config (``default_*``) < ssh_config
    < host vars < flags (``connect_timeout``, ``command_timeout``, ``host_key_policy``, ``ssh_config``).

    ``connection: sandbox`` is honoured only for a host without a real address, in an inventory of
    sandbox hosts alone (:mod:`concurdeploy.targeting`); else :class:`UsageError`, before the
    sandbox starts.
    """
    from concurdeploy.ssh.specs import connect_spec
    from concurdeploy.targeting import check_sandbox, has_local_address

    defaults = {"connect_timeout": opts.default_connect_timeout,
                "command_timeout": opts.default_command_timeout}
    overrides = {"host_key_policy": opts.host_key_policy, "connect_timeout": opts.connect_timeout,
                 "command_timeout": opts.command_timeout, "ssh_config": opts.ssh_config}
    sandboxed = [h.name for h in hosts if h.vars.get("connection", "ssh") == "sandbox"]
    bad = next((h for h in hosts if h.vars.get("connection", "ssh") not in ("ssh", "sandbox")), None)
    if bad:
        raise UsageError(f"host {bad.name}: connection {bad.vars['connection']!r} is not ssh or sandbox "
                         f"(set in {bad.origins.get('connection', bad.source)})")
    real = next((h for h in hosts if h.name in sandboxed and not has_local_address(h)), None)
    if real:
        raise UsageError(f"host {real.name} has the real address {real.vars.get('host', real.name)!r} but "
                         f"connection: sandbox (set in {real.origins.get('connection', real.source)}): a "
                         f"sandbox connection never applies to a real host; remove the sandbox inventory "
                         f"or use -i with your own")
    if sandboxed and inventory is not None:
        check_sandbox(inventory)
    ports, sandbox = {}, None
    if sandboxed:
        from concurdeploy.sandbox import Sandbox  # only when the inventory asks for sandbox hosts

        sandbox = stack.enter_context(Sandbox(os.path.join(_project_dir(opts), ".sandbox")))
        ports = sandbox.start(sandboxed)
    specs = []
    for h in hosts:
        hv = dict(h.vars)
        if h.name in ports:  # connection: sandbox skips ssh_config
            hv.update(host="127.0.0.1", port=ports[h.name], user=sandbox.user,
                      key_file=sandbox.client_key_path, known_hosts=sandbox.known_hosts_path,
                      key_env=None, password_env=None, host_key_policy="strict")
        specs.append(connect_spec(h.name, hv, overrides, defaults=defaults, inventory=inventory))
    if any(s.host_key_policy == "off" for s in specs):
        print("WARNING: host_key_policy is 'off' for some hosts: their identity is NOT verified "
              "(anyone in the middle can read what is sent)", file=sys.stderr)
    return specs
