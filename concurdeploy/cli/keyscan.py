"""The ``keyscan`` task: scan hosts' SSH host keys (:mod:`concurdeploy.ssh.keyscan`), show
them, and record the new ones on purpose (``--yes`` or a ``y`` on a terminal)."""

from __future__ import annotations

import sys

from invoke import Exit

from concurdeploy.api import load_inventory, select_hosts
from concurdeploy.cli.tasks import cdtask, options_from
from concurdeploy.options import option
from concurdeploy.report.text import name as esc
from concurdeploy.exceptions import HostsFailed
from concurdeploy.ssh.keyscan import Scan, _record, _targets, scan_all
from concurdeploy.ssh.specs import connect_spec

__all__ = ["keyscan"]


def _line(t: Scan, width: int, ep_width: int) -> str:
    head = f"{esc(t.label):<{width}}  {esc(t.endpoint):<{ep_width}}"
    if t.state in ("error", "skipped"):
        return f"{head}  {t.state}: {t.detail}"
    return f"{head}  {t.key_type}  {t.fingerprint}  {t.state}"


def _interactive() -> bool:
    try:
        return sys.stdin.isatty() and sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


@cdtask(help={
    "group": "Group or host pattern whose host keys to scan.",
    "inventory": option("inventory").help,
    "limit": option("limit").help,
    "known_hosts": "known_hosts file to check and append to (default: each host's known_hosts var, "
                   "else ~/.ssh/known_hosts).",
    "yes": "Record the new keys without asking (needed when not on a terminal).",
    "forks": "Hosts scanned at once (default 50, or $CONCURDEPLOY_FORKS).",
    "ssh_config": "OpenSSH client config to read (default ~/.ssh/config; 'none' = none).",
    "connect_timeout": option("connect_timeout").help,
    "hosts": option("hosts").help,
})
def keyscan(c, group, inventory=None, limit=None, known_hosts=None, yes=False, forks=None,
            ssh_config=None, connect_timeout=None, hosts=None):
    """Show hosts' SSH host keys (SHA256 fingerprints) and record the new ones in known_hosts."""
    opts = options_from(c, inventory=inventory, limit=limit, forks=forks, ssh_config=ssh_config,
                        connect_timeout=connect_timeout, hosts=hosts)
    if opts.hosts:
        from concurdeploy.inventory.overrides import adhoc_inventory

        inv = adhoc_inventory(opts.hosts)
    else:
        inv = load_inventory(opts.inventory, project_dir=opts.project_dir)
    hosts = select_hosts(inv, group, opts.limit)
    overrides = {"known_hosts": known_hosts or None, "ssh_config": opts.ssh_config,
                 "connect_timeout": opts.connect_timeout}
    defaults = {"connect_timeout": opts.default_connect_timeout,
                "command_timeout": opts.default_command_timeout}
    sandboxed = [h.name for h in hosts if h.vars.get("connection", "ssh") == "sandbox"]
    specs = [connect_spec(h.name, h.vars, overrides, defaults=defaults, inventory=inv)
             for h in hosts if h.name not in sandboxed]
    for name in sandboxed:
        print(f"{esc(name)}  skipped: a sandbox host (its keys are the sandbox's own)")
    if not specs:
        return
    targets = _targets(specs)
    width = max(len(esc(t.label)) for t in targets)
    ep_width = max(len(esc(t.endpoint)) for t in targets)
    forks = opts.forks
    interactive = _interactive()
    declined = []

    def after_level(level: list[Scan]) -> bool:
        for t in level:
            print(_line(t, width, ep_width), flush=True)
        new = [t for t in level if t.state == "new"]
        if not new:
            return False
        files = sorted({t.spec.known_hosts for t in new})
        if not yes:
            answer = ""
            if interactive:
                try:
                    answer = input(f"Add these {len(new)} new host key(s) to {', '.join(files)}? "
                                   f"[y/N] ").strip().lower()
                except EOFError:
                    answer = ""
            if answer not in ("y", "yes"):
                declined.extend(new)
                return False
        _record(new)
        for t in new:
            if not t.recorded:  # lost a race with another writer, or the file is not writable
                print(_line(t, width, ep_width), flush=True)
        return True

    import logging
    # paramiko logs e.g. a refused tunnel at WARNING; each host's line already says it
    logging.getLogger("paramiko").addHandler(logging.NullHandler())
    try:
        scan_all(targets, forks, after_level)
    finally:
        from concurdeploy.ssh.connection import close_bastions
        close_bastions()

    recorded = [t for t in targets if t.recorded]
    changed = [t for t in targets if t.state == "CHANGED"]
    failed = [t for t in targets if t.state in ("error", "skipped")]
    counts = {s: sum(1 for t in targets if t.state == s) for s in ("new", "known", "CHANGED")}
    print(f"keyscan: {len(targets)} scanned: {counts['new']} new ({len(recorded)} recorded), "
          f"{counts['known']} known, {counts['CHANGED']} changed, {len(failed)} not scanned")
    for path in sorted({t.spec.known_hosts for t in recorded}):
        n = sum(1 for t in recorded if t.spec.known_hosts == path)
        print(f"recorded {n} new host key(s) in {path}")
    for t in changed:
        print(f"\n{esc(t.label)}: {t.detail}\nkeyscan never replaces a recorded key: verify the new "
              f"key out of band first.", file=sys.stderr)
    if declined and not interactive:  # never a prompt in CI, and never a silent "no": refused
        raise Exit(f"concurdeploy: keyscan: refused to record {len(declined)} new host key(s) without "
                   f"--yes: stdin or stdout is not a terminal, so there is no one to ask (nothing was "
                   f"written). Check the fingerprints above against the hosts' own (on each host: "
                   f"ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then run it again with --yes to "
                   f"record them, or run it at a terminal to be asked.", code=2)
    if declined:
        print(f"\nkeyscan: {len(declined)} new host key(s) NOT recorded (answered no): check the "
              f"fingerprints above, then run again with --yes to record them.", file=sys.stderr)
    if changed or failed:
        raise HostsFailed([t.label for t in changed + failed])
    if declined:
        raise Exit(code=1)
