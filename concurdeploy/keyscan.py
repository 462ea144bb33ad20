"""``concurdeploy keyscan GROUP``: record the SSH host keys of new hosts, on purpose.

Each host (and each jump host in front of one) is connected to just far enough to get its
host key: TCP (or a ``direct-tcpip`` channel through its bastion), SSH banner, key
exchange, close. No authentication on the host itself. One line per host::

    web1  [10.0.0.5]:22  ssh-ed25519  SHA256:8Vq…  new
    web2  [10.0.0.6]:22  ssh-ed25519  SHA256:Jc1…  known
    web3  [10.0.0.7]:22  ssh-ed25519  SHA256:Zz0…  CHANGED

- ``known``: known_hosts already holds this key: nothing to do.
- ``new``: the host is not in known_hosts. With ``--yes`` (or a ``y`` at the prompt, only
  ever asked on a terminal) its key is appended to the host's known_hosts file (the
  ``--known-hosts`` file, else the ``known_hosts`` var): one line per host, append-only,
  under the same exclusive lock as ``accept-new`` (:func:`concurdeploy.hostkeys._append`).
  Without ``--yes`` and without a terminal nothing is written: the keys that would be
  added are shown and the command exits 1 (never a prompt in CI).
- ``CHANGED``: known_hosts holds another key for the host (or marks this one
  ``@revoked``): it is never written; the command exits 1 and says how to proceed.

Jump hosts are scanned first (labelled ``(jump host)``), one level at a time, so that a
bastion recorded in this run can be used (authenticated, its key verified) to reach the
hosts behind it. Scans run in at most ``--forks`` threads, each phase bounded by
``connect_timeout``.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from invoke import Exit

from .commands import COMMON_HELP, cdtask, load_inventory, select_hosts
from .exceptions import HostsFailed
from .specs import ConnectSpec, connect_spec

__all__ = ["keyscan", "Scan", "scan_all"]


@dataclass
class Scan:
    """One scanned endpoint and its outcome.

    :ivar state: ``"known"``, ``"new"``, ``"CHANGED"``, ``"error"`` or ``"skipped"``.
    :ivar detail: the error or mismatch message (never a secret).
    """

    label: str
    spec: ConnectSpec
    depth: int
    state: str = "skipped"
    key_type: str = ""
    fingerprint: str = ""
    detail: str = ""
    recorded: bool = False
    key: object = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"[{self.spec.hostname}]:{self.spec.port}"


def _targets(specs: list[ConnectSpec]) -> list[Scan]:
    """Every host and every jump host in front of one, each once, jump hosts first."""
    seen: dict = {}
    for spec in specs:
        chain = [(f"{hop.name} (jump host)", replace(hop, jump=spec.jump[:i]), i)
                 for i, hop in enumerate(spec.jump)]
        for label, s, depth in chain + [(spec.name, spec, len(spec.jump))]:
            key = (s.hostname, s.port, os.path.expanduser(s.known_hosts),
                   tuple((h.hostname, h.port) for h in s.jump))
            if key not in seen:
                seen[key] = Scan(label, s, depth)
    return sorted(seen.values(), key=lambda t: t.depth)  # stable: inventory order within a level


def _scan_one(target: Scan) -> None:
    from . import hostkeys
    from .connection import Connection
    from .exceptions import HostError, HostKeyMismatch, HostKeyUnknown

    spec = target.spec
    try:
        key = Connection(spec).host_key()
    except HostError as e:
        target.state, target.detail = "error", f"{type(e).__name__}: {e.message}"
        return
    except Exception as e:  # a bug must not hide the other hosts' lines
        target.state, target.detail = "error", f"{type(e).__name__}: {e}"
        return
    target.key, target.key_type, target.fingerprint = key, key.get_name(), hostkeys.fingerprint(key)
    try:
        hostkeys.verify(spec.known_hosts, "strict", spec.hostname, spec.port, key)
        target.state = "known"
    except HostKeyUnknown:
        target.state = "new"
    except HostKeyMismatch as e:
        target.state, target.detail = "CHANGED", e.message


def scan_all(targets: list[Scan], forks: int, after_level) -> None:
    """Scan ``targets`` level by level (jump hosts before what is behind them).

    :param after_level: ``callable(list_of_scans) -> bool`` called after each level; True =
        its new keys were recorded (so the hosts behind them may be reached).
    """
    blocked: set = set()  # (hostname, port, hops) of jump hosts we cannot go through
    for depth in sorted({t.depth for t in targets}):
        level = [t for t in targets if t.depth == depth]
        runnable = []
        for t in level:
            hops = t.spec.jump
            bad = next((h for i, h in enumerate(hops) if _hop_key(hops, i) in blocked), None)
            if bad is not None:
                t.state, t.detail = "skipped", (f"not scanned: its jump host {bad.name} "
                                                f"is not trusted (see its line above)")
            else:
                runnable.append(t)
        if runnable:
            with ThreadPoolExecutor(max_workers=max(1, min(forks, len(runnable))),
                                    thread_name_prefix="keyscan") as pool:
                list(pool.map(_scan_one, runnable))
        recorded = after_level(level)
        for t in level:
            if not (t.state == "known" or (t.state == "new" and recorded)):
                blocked.add((t.spec.hostname, t.spec.port,
                             tuple((h.hostname, h.port) for h in t.spec.jump)))


def _hop_key(hops, i):
    return (hops[i].hostname, hops[i].port, tuple((h.hostname, h.port) for h in hops[:i]))


def _line(t: Scan, width: int, ep_width: int) -> str:
    head = f"{t.label:<{width}}  {t.endpoint:<{ep_width}}"
    if t.state in ("error", "skipped"):
        return f"{head}  {t.state}: {t.detail}"
    return f"{head}  {t.key_type}  {t.fingerprint}  {t.state}"


def _record(targets: list[Scan]) -> None:
    from . import hostkeys
    from .exceptions import HostKeyMismatch

    for t in targets:
        spec = t.spec
        name = hostkeys._lookup_name(spec.hostname, spec.port)
        try:
            hostkeys._append(os.path.expanduser(spec.known_hosts), name, t.key)
            t.recorded = True
        except HostKeyMismatch as e:  # another run recorded a different key meanwhile
            t.state, t.detail = "CHANGED", e.message
        except OSError as e:
            t.state, t.detail = "error", f"cannot write {spec.known_hosts}: {e.strerror or e}"


def _interactive() -> bool:
    try:
        return sys.stdin.isatty() and sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


@cdtask(help={
    "group": "Group or host pattern whose host keys to scan.",
    "inventory": COMMON_HELP["inventory"],
    "limit": COMMON_HELP["limit"],
    "known_hosts": "known_hosts file to check and append to (default: each host's known_hosts var, "
                   "else ~/.ssh/known_hosts).",
    "yes": "Record the new keys without asking (needed when not on a terminal).",
    "forks": "Hosts scanned at once (default 50, or $CONCURDEPLOY_FORKS).",
    "ssh_config": "OpenSSH client config to read (default ~/.ssh/config; 'none' = none).",
    "connect_timeout": COMMON_HELP["connect_timeout"],
})
def keyscan(c, group, inventory=None, limit=None, known_hosts=None, yes=False, forks=0,
            ssh_config=None, connect_timeout=0.0):
    """Show hosts' SSH host keys (SHA256 fingerprints) and record the new ones in known_hosts."""
    inv = load_inventory(c, inventory)
    hosts = select_hosts(inv, group, limit)
    overrides = {"known_hosts": known_hosts or None, "ssh_config": ssh_config or None,
                 "connect_timeout": connect_timeout or None}
    defaults = {"connect_timeout": c.config.get("connect_timeout"),
                "command_timeout": c.config.get("command_timeout")}
    sandboxed = [h.name for h in hosts if h.vars.get("connection", "ssh") == "sandbox"]
    specs = [connect_spec(h.name, h.vars, overrides, defaults=defaults, inventory=inv)
             for h in hosts if h.name not in sandboxed]
    for name in sandboxed:
        print(f"{name}  skipped: a sandbox host (its keys are the sandbox's own)")
    if not specs:
        return
    targets = _targets(specs)
    width = max(len(t.label) for t in targets)
    ep_width = max(len(t.endpoint) for t in targets)
    forks = int(forks or c.config.get("forks") or 50)
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
        from .connection import close_bastions
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
        print(f"\n{t.label}: {t.detail}\nkeyscan never replaces a recorded key: verify the new "
              f"key out of band first.", file=sys.stderr)
    if declined:
        how = ("answered no" if interactive else "no terminal to ask on")
        print(f"\nkeyscan: {len(declined)} new host key(s) NOT recorded ({how}): check the "
              f"fingerprints above, then run again with --yes to record them.", file=sys.stderr)
    if changed or failed:
        raise HostsFailed([t.label for t in changed + failed])
    if declined:
        raise Exit(code=1)
