"""The library below the CLI: load an inventory, select hosts, fan an action out over them.

Used by the built-in tasks (:mod:`concurdeploy.cli.tasks`) and by a project's own
``tasks.py``. Nothing here parses flags; exit codes are the CLI's (:mod:`concurdeploy.cli.program`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from concurdeploy.exceptions import HostsFailed, RunInterrupted, UsageError
from concurdeploy.records import HostResult, RunRecord, Status, utc_now

if TYPE_CHECKING:  # imported where used: `concurdeploy --list` must stay as fast as invoke's
    from concurdeploy.inventory.model import Host, Inventory

__all__ = ["fan_out", "load_inventory", "make_pool", "select_hosts", "setting"]










def _ask_passphrases(hosts) -> None:
    """On a terminal, ask for the passphrases of encrypted ``key_file``s that have no
    ``passphrase_env`` (before any worker starts: they inherit the answers)."""
    from concurdeploy.ssh.passphrases import ask

    ask(h.vars["key_file"] for h in hosts
        if isinstance(h.vars.get("key_file"), str) and not h.vars.get("passphrase_env")
        and h.vars.get("connection", "ssh") == "ssh")


def _warm_up(c, executor: str | None = None) -> None:
    """Start the local pool's fork server early (its imports overlap our own work); not when
    the run goes to a Dask cluster (``--executor dask`` or config ``executor``)."""
    if str(executor or c.config.get("executor") or "local").strip().lower() == "local":
        from concurdeploy.executors.local import warm_up

        warm_up()


def _project_dir(c) -> str:
    return os.path.abspath(c.config.get("project_dir") or os.getcwd())


def load_inventory(c, inventory: str | None = None) -> Inventory:
    """Load the inventory named by ``inventory``, else config ``inventory`` (relative to the project root).

    :raises InventoryError: see :func:`concurdeploy.inventory.model.load`.
    """
    path = inventory or c.config.get("inventory") or "inventories"
    if not os.path.isabs(path) and not os.path.exists(path):
        path = os.path.join(_project_dir(c), path)
    from concurdeploy.inventory.model import load

    return load(path)


def select_hosts(inv: Inventory, group: str, limit: str | None = None,
                 retry_failed: str | None = None) -> list[Host]:
    """Hosts of ``group`` (any pattern), narrowed by ``limit`` and by the failed hosts of a
    JSON report (``retry_failed``); inventory order.

    :raises UnknownGroup, NoHostsMatched: nothing selected (never "deployed to zero hosts").
    :raises UsageError: ``retry_failed`` is not a readable concurdeploy JSON report.
    """
    from concurdeploy.exceptions import NoHostsMatched

    if limit is not None and not str(limit).strip(" ,:"):
        raise UsageError("--limit is empty (an unset variable?): give a pattern, or leave the "
                         "flag out to select every host of the group")
    chosen = inv.select(group)
    if limit:
        allowed = {h.name for h in inv.select(limit)}
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


def _overrides(c, host_key_policy, connect_timeout, command_timeout, ssh_config=None) -> dict:
    cfg = c.config
    for name, value in (("connect_timeout", connect_timeout), ("command_timeout", command_timeout)):
        if value and value < 0.1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 0.1 seconds, not {value:g}")
    return {
        "host_key_policy": host_key_policy or cfg.get("host_key_policy") or None,
        "connect_timeout": connect_timeout or None,
        "command_timeout": command_timeout or None,
        "ssh_config": ssh_config or None,
    }


def setting(c, key: str, kind, given=None, minimum: float = 0):
    """A number from the flag ``given`` (if set) or the config ``key``, checked.

    :raises UsageError: not a number, or below ``minimum`` (names the flag / config key).
    """
    value = given if given not in (None, 0, 0.0, "") else c.config.get(key)
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise UsageError(f"{key} must be a number, not {value!r} (check --{key.replace('_', '-')}, "
                         f"CONCURDEPLOY_{key.upper()} and concurdeploy.yaml)") from None
    if number < minimum:
        raise UsageError(f"{key} must be at least {minimum:g}, not {number:g}")
    return number


def _defaults(c) -> dict:
    return {"connect_timeout": setting(c, "connect_timeout", float, minimum=0.1),
            "command_timeout": setting(c, "command_timeout", float, minimum=0.1)}


def fan_out(c, hosts: list[Host], action, payloads, *, forks: int = 0, deadline: float = 0.0,
            overrides: dict | None = None, show_output: bool = False, title: str = "",
            serial: str | None = None, max_fail: str | None = None, fail_fast: bool = False,
            show_diff: bool = False, stream: bool = False, report_json: str | None = None,
            junit: str | None = None, progress: bool = True, verbose: int = 0,
            quiet: bool = False, executor: str | None = None, scheduler: str | None = None,
            retries: int = 0, inventory: Inventory | None = None) -> list[HostResult]:
    """Run ``action(conn, payload)`` on every host through the worker pool, printing as hosts finish.

    :param payloads: one payload per host (``list``); a payload that is a
        :class:`HostResult` is taken as that host's result as is (e.g. a template that
        failed to render) and the host is not contacted.
    :param forks: hosts in flight; 0 = config ``forks``.
    :param deadline: seconds for the whole run; 0 = config ``deadline`` (0 = none).
    :param serial: batches, e.g. ``"2"``, ``"25%"``, ``"1,10%,100%"`` (see :mod:`.batches`).
    :param max_fail: stop further batches past this many (``"2"``) or this share (``"10%"``)
        of failed hosts.
    :param fail_fast: start no new host after the first failure.
    :param report_json: write the JSON report here (also when the run fails or is interrupted).
    :param junit: write a JUnit XML report here (one test case per host).
    :param progress: live progress display when stdout is a terminal (False: plain lines).
    :param verbose: 1 = every host's output, 2 = also file checksums; ``quiet``: failures and recap only.
    :param stream: print output streamed by the action (``run``) as it arrives, each line
        prefixed by its host.
    :param executor: ``"local"`` or ``"dask"``; None = config ``executor`` (see :func:`make_pool`).
    :param scheduler: the Dask scheduler's address; None = config ``scheduler``.
    :param retries: Dask only: retries of a host whose worker died before its result arrived.
    :param inventory: the whole inventory, so that a ``jump`` var may name any of its hosts.
    :returns: ``list[HostResult]`` in host order; the recap is printed.
    :raises HostsFailed: any host failed or was unreachable (the CLI exits 1).
    :raises RunInterrupted: SIGINT/SIGTERM arrived (in-flight hosts stopped at a safe point).
    """
    from concurdeploy.executors import batches
    from concurdeploy.executors.local import Job
    from concurdeploy.report import console

    start = time.monotonic()
    started = utc_now()
    forks = setting(c, "forks", int, forks, minimum=1)
    deadline = setting(c, "deadline", float, deadline)
    if report_json or junit:
        from concurdeploy.report.files import check_writable

        for path in (report_json, junit):  # a bad path is found before any host is touched
            if path:
                check_writable(path)
    limit = batches.parse_max_fail(max_fail)
    groups = batches.split(list(range(len(hosts))), serial)
    width = max(len(h.name) for h in hosts) + 1
    out = console.Console(len(hosts), width=width, show_output=show_output, show_diff=show_diff,
                          progress=progress, verbosity=console.verbosity(verbose, quiet))
    results: dict[int, HostResult] = {}
    with contextlib.ExitStack() as stack:
        stack.enter_context(out)
        if title:
            extra = f", {len(groups)} batches" if len(groups) > 1 else ""
            out.line(f"{title}: {len(hosts)} host{'s' if len(hosts) != 1 else ''}, "
                     f"forks {min(forks, len(hosts))}{extra}")
        pool = stack.enter_context(make_pool(c, hosts, forks, executor, scheduler, retries))
        specs = _connect_specs(c, hosts, overrides or {}, stack, inventory)
        signals = stack.enter_context(_Interrupts(pool))
        end = time.monotonic() + deadline if deadline else None

        streamer = _Streamer(out, width) if stream else None

        def on_result(r: HostResult) -> None:
            if streamer:
                streamer.flush(r.host)
            out.host_done(r)
            if fail_fast and r.status.is_failure:
                pool.stop(f"--fail-fast: {r.host} {r.status.value}")

        for number, members in enumerate(groups, 1):
            tag = number if len(groups) > 1 else None
            if pool.stopped is not None:  # --max-fail, --fail-fast or a signal: batch not started
                for i in members:
                    results[i] = HostResult(hosts[i].name, Status.SKIPPED, error_kind="NotStarted",
                                            error=f"not started: {pool.stopped}", batch=tag)
                continue
            if len(groups) > 1:
                out.batch_started(f"-- batch {number}/{len(groups)}: {', '.join(hosts[i].name for i in members)}")
            jobs, index = [], []
            for i in members:
                p = payloads[i]
                if isinstance(p, HostResult):
                    results[i] = replace(p, batch=tag)
                    out.host_done(results[i])
                else:
                    jobs.append(Job(specs[i], action, p, batch=tag))
                    index.append(i)
            for i, r in zip(index, pool.run(jobs, on_result=on_result, deadline=end, on_output=streamer)):
                results[i] = r
            tried = [results[i] for i in results if results[i].status is not Status.SKIPPED]
            failed = sum(1 for r in tried if r.status.is_failure)
            if pool.stopped is None and batches.exceeded(failed, len(tried), limit):
                pool.stop(f"--max-fail {max_fail} exceeded ({failed} of {len(tried)} hosts failed)")
    ordered = [results.get(i) or HostResult(h.name, Status.SKIPPED, error_kind="NotStarted",
                                             error=f"not started: {pool.stopped}")
               for i, h in enumerate(hosts)]
    out.finish(ordered, time.monotonic() - start, stopped=pool.stopped)
    record = RunRecord(" ".join(["concurdeploy", *sys.argv[1:]]), started, utc_now(),
                       tuple(ordered), pool.stopped, signals.signum)
    _write_reports(record, report_json, junit)
    if signals.signum:
        raise RunInterrupted(signals.signum)
    failed_hosts = [r.host for r in ordered if r.status.is_failure]
    if failed_hosts:
        raise HostsFailed(failed_hosts)
    return ordered


def make_pool(c, hosts: list[Host], forks: int, executor: str | None = None,
              scheduler: str | None = None, retries: int = 0):
    """The executor for a run: the local :class:`WorkerPool` (default), or a
    :class:`~concurdeploy.executors.dask.DaskPool` (``--executor dask``, config ``executor``),
    connected before any host is touched. Both have the same surface.

    :raises UsageError: unknown executor; for Dask: extra not installed, no scheduler given
        or reachable, an ``executor_pool`` no worker serves, sandbox hosts on a remote cluster.
    """
    kind = str(executor or c.config.get("executor") or "local").strip().lower()
    if kind == "local":
        from concurdeploy.executors.local import WorkerPool

        processes = int(c.config.get("processes") or 0) or None
        return WorkerPool(forks=forks, processes=processes, hosts_hint=len(hosts))
    if kind != "dask":
        raise UsageError(f"--executor must be local or dask, not {kind!r}")
    from concurdeploy.executors.dask import DaskPool

    pins = {h.name: h.vars["executor_pool"] for h in hosts if h.vars.get("executor_pool") not in (None, "")}
    bad = next((h for h, p in pins.items() if not isinstance(p, (str, int)) or isinstance(p, bool)), None)
    if bad:
        raise UsageError(f"host {bad}: executor_pool must be a name (e.g. eu), not {pins[bad]!r}")
    return DaskPool(str(scheduler or c.config.get("scheduler") or ""), forks=forks, hosts_hint=len(hosts),
                    retries=int(retries or 0), placement=pins,
                    local_only=any(h.vars.get("connection", "ssh") == "sandbox" for h in hosts))


class _Streamer:
    """Prints streamed output line by line as ``host | line``, holding partial lines per host."""

    def __init__(self, out, width: int):
        self.out, self.width, self.partial = out, width, {}

    def __call__(self, host: str, stream: str, data: bytes) -> None:
        from concurdeploy.report import text as report

        text = self.partial.pop((host, stream), "") + data.decode("utf-8", "replace")
        *lines, rest = text.split("\n")
        if rest:
            self.partial[(host, stream)] = rest
        for ln in lines:
            self.out.line(f"{host:<{self.width}}| {report.clean(ln)}")

    def flush(self, host: str) -> None:
        from concurdeploy.report import text as report

        for key in [k for k in self.partial if k[0] == host]:
            self.out.line(f"{host:<{self.width}}| {report.clean(self.partial.pop(key))}")


def _write_reports(record: RunRecord, report_json: str | None, junit: str | None) -> None:
    if not (report_json or junit):
        return
    from concurdeploy.report import files as reports

    if report_json:
        reports.write_json(report_json, record)
        print(f"JSON report: {report_json}")
    if junit:
        reports.write_junit(junit, record)
        print(f"JUnit report: {junit}")


class _Interrupts:
    """While active, SIGINT/SIGTERM abort the pool (hosts stop at a safe point) instead of
    killing the controller; ``signum`` remembers the first signal."""

    def __init__(self, pool):  # a WorkerPool or a DaskPool
        self.pool, self.signum, self._old = pool, 0, {}

    def _handle(self, signum, frame) -> None:
        if not self.signum:
            self.signum = signum
            print(f"\n{signal.Signals(signum).name}: stopping — no new hosts; in-flight hosts stop at "
                  f"a safe point (destinations old or new, temporary files removed)…",
                  file=sys.stderr, flush=True)
        self.pool.abort(f"interrupted ({signal.Signals(signum).name})")

    def __enter__(self) -> _Interrupts:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _connect_specs(c, hosts, overrides, stack, inventory=None) -> list:
    from concurdeploy.ssh.specs import connect_spec

    defaults = _defaults(c)
    sandboxed = [h.name for h in hosts if h.vars.get("connection", "ssh") == "sandbox"]
    bad = next((h for h in hosts if h.vars.get("connection", "ssh") not in ("ssh", "sandbox")), None)
    if bad:
        raise UsageError(f"host {bad.name}: connection {bad.vars['connection']!r} is not ssh or sandbox "
                         f"(set in {bad.origins.get('connection', bad.source)})")
    ports = {}
    sandbox = None
    if sandboxed:
        from concurdeploy.sandbox.server import (
            Sandbox,  # only when the inventory asks for sandbox hosts
        )
        sandbox = stack.enter_context(Sandbox(os.path.join(_project_dir(c), ".sandbox")))
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


def _push_payload(project_dir: str, check: bool, diff: bool = False, service: str = ""):
    from concurdeploy.operations.service import TemplateFailed, push_job

    cache: dict = {}

    def build(h: Host):
        try:
            return push_job(h, project_dir, check=check, cache=cache, diff=diff, service=service)
        except TemplateFailed as e:
            return HostResult(h.name, Status.FAILED, error_kind="TemplateFailed", error=str(e))
    return build


























