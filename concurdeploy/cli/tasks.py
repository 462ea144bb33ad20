"""Built-in tasks: ``push``, ``put``, ``run``, ``get``, ``hosts``, ``inventory``. Arguments in,
library calls (:mod:`concurdeploy.api`), report out.

Each task takes its options after its name (``concurdeploy push haproxy --check -l lb1``).
A project's ``tasks.py`` may compose the same library calls (see
:func:`concurdeploy.api.select_hosts`, :func:`concurdeploy.api.fan_out`); a task there with
the same name replaces the built-in one.
"""

from __future__ import annotations

import os

from invoke import Task, task

from concurdeploy.api import (
    _ask_passphrases,
    _overrides,
    _project_dir,
    _push_payload,
    _warm_up,
    fan_out,
    load_inventory,
    select_hosts,
)
from concurdeploy.records import HostResult, Status
from concurdeploy.inventory.model import Inventory
from concurdeploy.report.masking import _hide, _mask, _secret_var_values

__all__ = ["cdtask", "get", "hosts", "inventory", "push", "put", "run"]


class _Task(Task):
    """A task whose options get the short flags we choose (``-i``, ``-l``, ``-P``), not invoke's guess."""

    SHORT = {"inventory": "i", "limit": "l", "forks": "P", "check": "C", "ssh_config": "F",
             "verbose": "v", "quiet": "q"}

    def arg_opts(self, name, default, taken_names):
        opts = super().arg_opts(name, default, taken_names)
        if name in self.SHORT:
            opts["names"].append(self.SHORT[name])
        return opts


def cdtask(*args, **kwargs):
    """``@invoke.task`` with concurdeploy's short flags and no auto short flags."""
    kwargs.setdefault("auto_shortflags", False)
    kwargs.setdefault("klass", _Task)
    return task(*args, **kwargs)


COMMON_HELP = {
    "inventory": "Inventory file or folder (default: inventories/, or $CONCURDEPLOY_INVENTORY).",
    "limit": "Only hosts matching this pattern, e.g. 'lb1', 'web*', 'eu:&haproxy', '!lb3', '@file'.",
    "forks": "Hosts in flight at once (default 50, or $CONCURDEPLOY_FORKS).",
    "host_key_policy": "strict (default) | accept-new | off: overrides the host_key_policy var.",
    "ssh_config": "OpenSSH client config to read instead of ~/.ssh/config (or 'none').",
    "connect_timeout": "Seconds per connect phase (TCP, handshake, auth); default 10.",
    "command_timeout": "Seconds a remote command may run; default 60.",
    "deadline": "Seconds for the whole run; unfinished hosts then fail (0 = none).",
    "report_json": "Write a JSON report of the run to this path (written even if the run fails).",
    "retry_failed": "Only the hosts a JSON report (--report-json) lists as failed, unreachable or skipped.",
    "junit": "Write a JUnit XML report (one test case per host) to this path.",
}


EXECUTOR_HELP = {
    "executor": "local (default: this machine's process pool) | dask (a Dask cluster, see --scheduler).",
    "scheduler": "--executor dask: the scheduler's address, tcp://HOST:8786 (or $CONCURDEPLOY_SCHEDULER).",
    "retries": "--executor dask: times a host whose worker died before its result arrived is retried "
               "on another worker (default 0: reported unreachable).",
}


OUTPUT_HELP = {
    "no_progress": "No live progress display, plain lines only (the default when stdout is not a terminal).",
    "verbose": "Show every host's remote output (-v); also each changed file's checksums (-vv).",
    "quiet": "Print only failed/unreachable hosts and the recap.",
}


ROLLOUT_HELP = {
    "serial": "Roll out in batches: a count (2), a share (25%) or a list (1,10%,100%: canary first).",
    "max_fail": "Stop further batches once more than N hosts (2) or P% of hosts tried (10%) failed.",
    "fail_fast": "Start no new host after the first failure.",
}


@cdtask(help={
    "service": "The group whose 'files' are pushed to each of its hosts (e.g. haproxy).",
    "check": "Check mode: connect and compare, report what would change, write nothing.",
    "diff": "Show a unified diff of each changed file (secret_vars masked); with --check or not.",
    **ROLLOUT_HELP,
    **COMMON_HELP,
    **OUTPUT_HELP,
    **EXECUTOR_HELP,
}, incrementable=["verbose"])
def push(c, service, inventory=None, limit=None, retry_failed=None, forks=0, check=False, diff=False,
         serial=None,
         max_fail=None, fail_fast=False, host_key_policy=None, ssh_config=None, connect_timeout=0.0,
         command_timeout=0.0, deadline=0.0, report_json=None, junit=None, no_progress=False, verbose=0,
         quiet=False, executor=None, scheduler=None, retries=0):
    """Push a service's files to every host of its group: atomic replace, reload if changed."""
    from concurdeploy.operations.push import push as push_action

    inv = load_inventory(c, inventory)
    hosts = select_hosts(inv, service, limit, retry_failed)
    _ask_passphrases(hosts)  # before any worker starts: they inherit the answers
    _warm_up(c, executor)
    build = _push_payload(_project_dir(c), check, diff, service)
    payloads = [build(h) for h in hosts]  # every declaration checked before any host is touched
    fan_out(c, hosts, push_action, payloads, forks=forks, deadline=deadline, inventory=inv,
            overrides=_overrides(c, host_key_policy, connect_timeout, command_timeout, ssh_config),
            title=f"push {service}{' (check mode)' if check else ''}", serial=serial,
            max_fail=max_fail, fail_fast=fail_fast, show_diff=diff, report_json=report_json,
            junit=junit, progress=not no_progress, verbose=verbose, quiet=quiet,
            executor=executor, scheduler=scheduler, retries=retries)


@cdtask(help={
    "group": "Group or host pattern to run on.",
    "command": "Shell command run on each host (quote it).",
    "timeout": "Seconds the command may run per host (default: command_timeout).",
    "sudo": "Run the command as root through sudo (password from the become_password_env var).",
    "collect": "Print each host's output grouped under its line when it finishes, instead of live.",
    **ROLLOUT_HELP,
    **COMMON_HELP,
    **OUTPUT_HELP,
    **EXECUTOR_HELP,
}, incrementable=["verbose"])
def run(c, group, command, inventory=None, limit=None, retry_failed=None, forks=0, timeout=0.0, sudo=False, collect=False,
        serial=None, max_fail=None, fail_fast=False, host_key_policy=None, ssh_config=None, connect_timeout=0.0,
        command_timeout=0.0, deadline=0.0, report_json=None, junit=None, no_progress=False, verbose=0,
        quiet=False, executor=None, scheduler=None, retries=0):
    """Run an ad-hoc shell command on every host; output is printed prefixed by host name."""
    from concurdeploy.operations.become import Become
    from concurdeploy.operations.commands import RunJob, run_command
    from concurdeploy.operations.service import secret_values

    inv = load_inventory(c, inventory)
    hosts = select_hosts(inv, group, limit, retry_failed)
    _ask_passphrases(hosts)  # before any worker starts: they inherit the answers
    _warm_up(c, executor)
    jobs = []
    for h in hosts:
        become = None
        if sudo or h.vars.get("become") is True:
            become = Become(user=str(h.vars.get("become_user") or "root"),
                            password_env=h.vars.get("become_password_env"))
        jobs.append(RunJob(command, timeout or None, become, stream=not collect,
                           secrets=secret_values(h)))
    fan_out(c, hosts, run_command, jobs, forks=forks, deadline=deadline, inventory=inv,
            overrides=_overrides(c, host_key_policy, connect_timeout, command_timeout, ssh_config),
            show_output=collect, stream=not collect, serial=serial, max_fail=max_fail, fail_fast=fail_fast,
            report_json=report_json, junit=junit, progress=not no_progress, verbose=verbose, quiet=quiet,
            executor=executor, scheduler=scheduler, retries=retries)


@cdtask(help={
    "group": "Group or host pattern to fetch from.",
    "remote_path": "Absolute path of the file on each host.",
    "local_dir": "Folder receiving LOCAL_DIR/<host>/<remote path>.",
    **COMMON_HELP,
    **OUTPUT_HELP,
}, incrementable=["verbose"])
def get(c, group, remote_path, local_dir, inventory=None, limit=None, retry_failed=None, forks=0,
        host_key_policy=None, ssh_config=None,
        connect_timeout=0.0, command_timeout=0.0, deadline=0.0, report_json=None, junit=None,
        no_progress=False, verbose=0, quiet=False):
    """Download one file from every host into LOCAL_DIR/<host>/<remote path>."""
    from concurdeploy.operations.commands import GetJob, get_file

    inv = load_inventory(c, inventory)
    hosts = select_hosts(inv, group, limit, retry_failed)
    _ask_passphrases(hosts)  # before any worker starts: they inherit the answers
    _warm_up(c, "local")
    job = GetJob(remote_path, os.path.abspath(local_dir))
    fan_out(c, hosts, get_file, [job] * len(hosts), forks=forks, deadline=deadline, inventory=inv,
            overrides=_overrides(c, host_key_policy, connect_timeout, command_timeout, ssh_config),
            report_json=report_json, junit=junit, progress=not no_progress, verbose=verbose, quiet=quiet,
            executor="local")  # the files must land on this machine, not on a Dask worker


@cdtask(help={
    "group": "Group or host pattern to put the file on.",
    "src": "Local file (relative to the project root, or absolute).",
    "dest": "Absolute path on each host ({{ var }} allowed).",
    "mode": "Octal mode, e.g. 0640 (default: keep the replaced file's, 0644 for a new one).",
    "validate": "Command run on the uploaded temporary file, {tmp} = its path.",
    "check": "Check mode: report what would change, write nothing.",
    "diff": "Show a unified diff of the file on each host against the new one.",
    **ROLLOUT_HELP,
    **COMMON_HELP,
    **OUTPUT_HELP,
    **EXECUTOR_HELP,
}, incrementable=["verbose"])
def put(c, group, src, dest, mode=None, validate=None, inventory=None, limit=None, retry_failed=None,
        forks=0, check=False, diff=False, serial=None, max_fail=None, fail_fast=False,
        host_key_policy=None, ssh_config=None, connect_timeout=0.0, command_timeout=0.0, deadline=0.0,
        report_json=None, junit=None, no_progress=False, verbose=0, quiet=False, executor=None,
        scheduler=None, retries=0):
    """Put one file on every host with the same atomic replace as push (no reload)."""
    from concurdeploy.operations.push import push as push_action
    from concurdeploy.operations.service import TemplateFailed, put_job

    inv = load_inventory(c, inventory)
    hosts = select_hosts(inv, group, limit, retry_failed)
    _ask_passphrases(hosts)  # before any worker starts: they inherit the answers
    _warm_up(c, executor)
    project_dir, cache, payloads = _project_dir(c), {}, []
    for h in hosts:  # every host's job is built before any host is touched
        try:
            payloads.append(put_job(h, project_dir, src, dest, mode, validate, check, diff, cache))
        except TemplateFailed as e:
            payloads.append(HostResult(h.name, Status.FAILED, error_kind="TemplateFailed", error=str(e)))
    fan_out(c, hosts, push_action, payloads, forks=forks, deadline=deadline, inventory=inv,
            overrides=_overrides(c, host_key_policy, connect_timeout, command_timeout, ssh_config),
            title=f"put {src} -> {dest}{' (check mode)' if check else ''}", serial=serial,
            max_fail=max_fail, fail_fast=fail_fast, show_diff=diff, report_json=report_json,
            junit=junit, progress=not no_progress, verbose=verbose, quiet=quiet,
            executor=executor, scheduler=scheduler, retries=retries)


@cdtask(help={"inventory": COMMON_HELP["inventory"],
              "graph": "Show the group tree with each group's hosts (the default view)."})
def inventory(c, inventory=None, graph=False):
    """Show the inventory's group tree: groups, child groups and hosts (connects to nothing)."""
    inv = load_inventory(c, inventory)
    for line in _graph(inv, "all", 0, frozenset({"all"})):
        print(line)


def _graph(inv: Inventory, name: str, depth: int, seen: frozenset) -> list[str]:
    """Ansible-style tree: ``@group:`` lines, children indented under ``|--``, hosts last."""
    def pad(d: int) -> str:
        return "" if d == 0 else "  " + "|  " * (d - 1) + "|--"

    group = inv.groups[name]
    lines = [f"{pad(depth)}@{name}:"]
    for child in sorted(group.children):
        if child in inv.groups and child not in seen:
            lines += _graph(inv, child, depth + 1, seen | {child})
    lines += [f"{pad(depth + 1)}{h}" for h in group.hosts]
    return lines


@cdtask(help={"limit": "Host pattern to list (default: all).",
              "inventory": COMMON_HELP["inventory"],
              "vars": "Also show each host's merged vars and where each came from."})
def hosts(c, limit="all", inventory=None, vars=False):
    """List the inventory's hosts with their groups and connection settings (connects to nothing)."""
    inv = load_inventory(c, inventory)
    chosen = inv.select(limit or "all")
    width = max(len(h.name) for h in chosen) + 1
    for h in chosen:
        v = h.vars
        addr = f"{v.get('user', '') + '@' if v.get('user') else ''}{v.get('host', h.name)}:{v.get('port', 22)}"
        groups = ",".join(g for g in h.groups if g != "all")
        conn = v.get("connection", "ssh")
        print(f"{h.name:<{width}} {addr:<28} {conn:<8} groups={groups}")
        if vars:
            names = v.get("secret_vars")
            names = {n for n in names if isinstance(n, str)} if isinstance(names, list) else set()
            values = _secret_var_values(v, names)
            for key in sorted(v):
                shown = _hide(repr(_mask(key, v[key], names)), values)
                print(f"    {key} = {shown}   # {h.origins.get(key, 'built-in')}")
