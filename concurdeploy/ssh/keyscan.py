"""Host key scanning for ``concurdeploy keyscan GROUP`` (the task: :mod:`concurdeploy.cli.keyscan`): record the SSH host keys of new hosts, on purpose.

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
  under the same exclusive lock as ``accept-new`` (:func:`concurdeploy.ssh.hostkeys._append`).
  Without ``--yes`` and without a terminal nothing is written: the keys that would be
  added are shown and the command refuses, exit 2 (never a prompt in CI). A missing
  folder (``~/.ssh``) is created 0700, a new known_hosts file 0644 (less the umask).
- ``CHANGED``: known_hosts holds another key for the host (or marks this one
  ``@revoked``): it is never written; the command exits 1 and says how to proceed.

Jump hosts are scanned first (labelled ``(jump host)``), one level at a time, so that a
bastion recorded in this run can be used (authenticated, its key verified) to reach the
hosts behind it. Scans run in at most ``--forks`` threads, each phase bounded by
``connect_timeout``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from concurdeploy.ssh.specs import ConnectSpec

__all__ = ["Scan", "scan_all"]


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
            key = (s.hostname, s.port, s.host_key_alias, os.path.expanduser(s.known_hosts),
                   tuple((h.hostname, h.port) for h in s.jump))
            if key not in seen:
                seen[key] = Scan(label, s, depth)
    return sorted(seen.values(), key=lambda t: t.depth)  # stable: inventory order within a level


def _scan_one(target: Scan) -> None:
    from concurdeploy.exceptions import HostError, HostKeyMismatch, HostKeyUnknown
    from concurdeploy.ssh import hostkeys
    from concurdeploy.ssh.connection import Connection

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
        hostkeys.verify(spec.known_hosts, "strict", *spec.known_hosts_name, key)
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




def _record(targets: list[Scan]) -> None:
    from concurdeploy.exceptions import HostKeyMismatch
    from concurdeploy.ssh import hostkeys

    for t in targets:
        spec = t.spec
        name = hostkeys._lookup_name(*spec.known_hosts_name)
        try:
            hostkeys._append(os.path.expanduser(spec.known_hosts), name, t.key)
            t.recorded = True
        except HostKeyMismatch as e:  # another run recorded a different key meanwhile
            t.state, t.detail = "CHANGED", e.message
        except OSError as e:
            t.state, t.detail = "error", f"cannot write {spec.known_hosts}: {e.strerror or e}"




