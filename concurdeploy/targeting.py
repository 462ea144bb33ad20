"""Targeting: which declaration reaches which host, and never the sandbox beside real hosts.

- :class:`Service`: ``push NAME``'s declaration per host, read from group ``NAME``, its parent
  groups and the host's own vars (the rules: :mod:`concurdeploy.operations.service`), never
  from the host's merged vars, where another service's ``files`` may win;
- :func:`check_sandbox`: an inventory that mixes sandbox hosts (``connection: sandbox``) with
  real ones is refused, whichever hosts are selected;
- :func:`has_local_address`: the rule for "not a real host".

Every refusal is a :class:`~concurdeploy.exceptions.UsageError` (a ``ServiceError`` or an
``InventoryError``): exit code 2, one paragraph naming file, line and what to do, raised before
any host is contacted. This module sits beside :mod:`concurdeploy.api` (which alone calls it):
it imports the inventory, the operations' declaration records and the exceptions; no ssh, no
sandbox, no printing.
"""

from __future__ import annotations

import ipaddress
import os

from concurdeploy.exceptions import InventoryError, ServiceError, UsageError
from concurdeploy.inventory import Host, Inventory, YamlMapping, where
from concurdeploy.operations.service import (
    SERVICE_KEYS,
    WHAT_KEYS,
    Declaration,
    host_level,
    scoped_overrides,
)

__all__ = ["Service", "check_key_env", "check_sandbox", "has_local_address"]

_PATTERN_CHARS = set(":,&!*?[]~@")


def _err(message: str, node=None, key: str | None = None) -> ServiceError:
    path, line = where(node, key) if node is not None else (None, None)
    return ServiceError(message, path=path, line=line, key=key)


def _at(mapping, key=None) -> str:
    """``"path:line"`` of a key (or of the mapping), ``"?"`` when unknown."""
    path, line = where(mapping, key)
    return f"{path}:{line}" if path and line else (path or "?")


class Service:
    """``push NAME``'s declaration in one inventory: the group layers resolved once,
    :meth:`for_host` adds each host's own layers (rules in :mod:`concurdeploy.operations.service`).

    :param inv: the loaded inventory.
    :param name: the name given to ``push``.
    :raises ServiceError: ``name`` is a host or a pattern, not a group; two unrelated parent
        groups set the same key (or the files and the reload of ``name``); a group sets a
        ``services: {name: ...}`` override (host vars only).
    :raises UnknownGroup: no such group or host.
    """

    def __init__(self, inv: Inventory, name: str):
        self.inv, self.name = inv, name
        if name not in inv.groups:
            if name in inv.hosts:
                raise ServiceError(f"push takes a service (a group that declares files), and {name!r} is "
                                   f"a host: push one of its groups and narrow with --limit {name} (its "
                                   f"groups: {', '.join(inv.hosts[name].groups)})")
            if _PATTERN_CHARS & set(name):
                raise ServiceError(f"push takes one group name, not the host pattern {name!r}: push the "
                                   f"service's group and narrow with --limit {name!r}")
            inv.group(name)  # raises UnknownGroup with the known groups and close matches
        self._parents: dict[str, set] = {g: set() for g in inv.groups}
        for group in inv.groups.values():
            for child in group.children:
                self._parents.setdefault(child, set()).add(group.name)
        self._memo: dict[str, frozenset] = {}
        self._own_vars: dict[str, dict] = {}
        self.ancestors = self.ancestors_of(name)
        self.scope = self.ancestors | {name}
        for group in inv.groups:
            overrides = self._own(group).get("services")
            if isinstance(overrides, dict) and name in overrides:
                raise _err(f"group {group} sets services: {{{name}: ...}}, but such overrides are "
                           f"read from a host's own vars only; put these keys in group {name}'s vars",
                           self._own(group), "services")
        self.values, self.origins, self.locations = self._group_layers()

    def ancestors_of(self, group: str) -> frozenset:
        """Every group that has ``group`` among its descendants (``all`` included)."""
        if group not in self._memo:
            seen, todo = set(), list(self._parents.get(group, ()))
            while todo:  # bounded: each group enters ``seen`` once
                g = todo.pop()
                if g not in seen:
                    seen.add(g)
                    todo.extend(self._parents.get(g, ()))
            if group != "all" and "all" in self.inv.groups:
                seen.add("all")
            self._memo[group] = frozenset(seen)
        return self._memo[group]

    def _own(self, group: str) -> dict:
        """The group's own vars: its inventory vars, then its ``group_vars`` files' (these win)."""
        if group not in self._own_vars:
            g = self.inv.groups[group]
            file_vars = getattr(g, "file_vars", None) or {}
            own = g.vars
            if file_vars:
                own = YamlMapping.at(*where(g.vars))
                for layer in (g.vars, file_vars):
                    for key, value in layer.items():
                        own.put(key, value, where(layer, key))
            self._own_vars[group] = own
        return self._own_vars[group]

    def _origin(self, group: str, key: str) -> str:
        return f"group {group} ({_at(self._own(group), key)})"

    def _unrelated(self, a: str, b: str) -> bool:
        return a != b and a not in self.ancestors_of(b) and b not in self.ancestors_of(a)

    def _group_layers(self) -> tuple[dict, dict, dict]:
        values, origins, locations, provider = {}, {}, {}, {}
        for key in SERVICE_KEYS:
            if key in self._own(self.name):
                setters = [self.name]
            else:
                declaring = [g for g in sorted(self.ancestors) if key in self._own(g)]
                setters = [g for g in declaring
                           if not any(g in self.ancestors_of(other) for other in declaring)]
            if len(setters) > 1:
                a, b = setters[:2]
                raise _err(f"group {self.name} has two parent groups that set {key!r}, {a} (here) and "
                           f"{b} ({_at(self._own(b), key)}), and neither is a parent of the other: which "
                           f"one applies to push {self.name} would be a guess; set {key} in group "
                           f"{self.name}'s own vars ({self.inv.groups[self.name].source})",
                           self._own(a), key)
            if setters:
                provider[key] = setters[0]
                values[key] = self._own(setters[0])[key]
                origins[key] = self._origin(setters[0], key)
                locations[key] = where(self._own(setters[0]), key)
        what = [(k, provider[k]) for k in WHAT_KEYS if k in provider]
        for k1, g1 in what:
            for k2, g2 in what:
                if self._unrelated(g1, g2):
                    raise _err(f"push {self.name} would take {k1!r} from group {g1} (here) and {k2!r} "
                               f"from group {g2} ({_at(self._own(g2), k2)}), two groups neither of which "
                               f"is a parent of the other; declare both in group {self.name}'s vars",
                               self._own(g1), k1)
        return values, origins, locations

    def _check_other_groups(self, host: Host) -> list[str]:
        """The host's other services (groups declaring ``files``); refuses stray service keys."""
        others = []
        for group in host.groups:
            keys = [k for k in SERVICE_KEYS if k in self._own(group)]
            if group in self.scope or not keys:
                continue
            is_service = "files" in self._own(group)
            if is_service and self.name not in self.ancestors_of(group):
                others.append(group)
                continue
            key, own = keys[0], self._own(group)
            if self.name in self.ancestors_of(group):
                why = (f"group {group}, a subgroup of {self.name}, sets {key!r}; push {self.name} reads its "
                       f"keys from {self.name}, its parent groups and the hosts only, so whether it applies "
                       f"would be a guess")
                fix = (f"move it to group {self.name}'s vars or to each host's services: "
                       f"{{{self.name}: {{{key}: ...}}}}" + ("; or take the subgroup out of "
                       f"{self.name} and push it as its own service" if is_service else ""))
            else:
                why = (f"group {group} sets {key!r} for its hosts ({host.name} among them), but it is "
                       f"neither {self.name} nor a parent group of it, so push {self.name} would ignore it")
                fix = (f"set it in the hosts' own vars (services: {{{self.name}: {{{key}: ...}}}}), in "
                       f"group {self.name}'s vars, or make {group} a parent of {self.name}")
            raise _err(f"{why}: {fix}", own, key)
        return others

    def for_host(self, host: Host) -> Declaration:
        """The declaration of this service for ``host`` (a host of the group).

        :raises ServiceError: an ambiguous or misplaced key, a bad ``services`` override, or no
            ``files`` at all for the host (names file, line, key and the groups involved).
        """
        if self.name not in host.groups:
            raise ServiceError(f"host {host.name} is not in group {self.name}")
        others = self._check_other_groups(host)
        values, origins, locations = dict(self.values), dict(self.origins), dict(self.locations)
        for key in SERVICE_KEYS:
            if not host_level(host, key):
                continue
            if key in WHAT_KEYS and others:
                other = others[0]
                raise _err(f"host {host.name} sets {key!r} in its own vars, but it is in two services, "
                           f"{self.name} ({self.inv.groups[self.name].source}) and {other} "
                           f"({_at(self._own(other), 'files')}): which one it is for would be a guess; "
                           f"write it as services: {{{self.name}: {{{key}: ...}}}} in the host's vars",
                           host.vars, key)
            values[key], origins[key] = host.vars[key], f"host {host.name} ({_at(host.vars, key)})"
            locations[key] = where(host.vars, key)
        scoped = scoped_overrides(host, self.name)
        for key, value in scoped.items():
            values[key] = value
            origins[key] = f"host {host.name} services.{self.name} ({_at(scoped, key)})"
            locations[key] = where(scoped, key)
        if "files" not in values:
            group = self.inv.groups[self.name]
            parents = ", ".join(sorted(self.ancestors)) or "none"
            path, _, line = group.source.rpartition(":")
            raise ServiceError(
                f"push {self.name}: group {self.name} declares no files (nor do its parent groups: "
                f"{parents}; nor host {host.name}'s services: {{{self.name}: {{files: ...}}}}); add "
                f"files: [{{src: ..., dest: ...}}] to group {self.name}'s vars, or push the group "
                f"that declares the service", path=path or None,
                line=int(line) if line.isdigit() else None)
        return Declaration(self.name, values, origins, locations, self._scope_vars(host, others))

    def _scope_vars(self, host: Host, others: list[str]) -> dict:
        """For ``{{ }}`` in this service's declaration: each var whose merged value comes from
        ANOTHER service's group (``others``) takes this service's group chain's value instead
        (parents by depth, then the group), when the chain sets it. Vars of ordinary groups
        (``eu``) and of the host itself are left as merged."""
        chain = sorted(self.ancestors, key=lambda g: (len(self.ancestors_of(g)), g)) + [self.name]
        merged: dict = {}
        for group in chain:
            merged.update(self._own(group))
        labels = tuple(f"{kind} {g} " for g in others for kind in ("group", "group_vars"))
        return {k: merged[k] for k in host.vars
                if k in merged and str(host.origins.get(k, "")).startswith(labels)}


# --------------------------------------------------------------------------- the sandbox

def _loopback(address: str) -> bool:
    if address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def has_local_address(host: Host) -> bool:
    """True when ``host`` may be a sandbox host: its address is ``localhost`` or a loopback IP
    (127.0.0.0/8, ::1), or it has no address of its own (no ``host``/``ansible_host`` var) and its
    name is a bare label such as ``lb1`` or ``web-2`` (no dot, no colon). Anything else — an
    explicit address such as ``10.0.0.5`` or ``lb1.example.com``, or a name such as
    ``db.example.com`` or ``10.0.0.5`` — is a real host.
    """
    address = str(host.vars.get("host", host.name))
    if _loopback(address):
        return True
    explicit = not str(host.origins.get("host", "default")).startswith("default")
    return not explicit and address == host.name and "." not in address and ":" not in address


def _same_file(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and os.path.realpath(a) == os.path.realpath(b)


def _names(hosts: list[Host], limit: int = 5) -> str:
    shown = ", ".join(h.name for h in hosts[:limit])
    return shown + (f", … ({len(hosts) - limit} more)" if len(hosts) > limit else "")


def _refuse_overridden_sandbox(inv: Inventory) -> None:
    """A group declaring ``connection: sandbox`` whose hosts end up with another connection
    (e.g. a ``group_vars/all.yml`` holding ``ansible_connection: ssh`` beside ``sandbox.yaml``):
    the sandbox's bare-named hosts would be contacted over SSH by name. :raises InventoryError:"""
    for group in inv.groups.values():
        for layer in (group.vars, group.file_vars):
            if layer.get("connection") != "sandbox":
                continue
            for h in inv.hosts_of(group.name):
                if h.vars.get("connection", "ssh") != "sandbox":
                    path, line = where(layer, "connection")
                    raise InventoryError(
                        f"connection: sandbox set here for group {group.name} is overridden for host "
                        f"{h.name} by connection {h.vars.get('connection', 'ssh')!r} "
                        f"({h.origins.get('connection', 'the default')}): the sandbox host would be "
                        f"contacted over SSH by its bare name; keep the sandbox inventory apart "
                        f"(remove it, or the file that sets the other connection, from the folder, "
                        f"or choose one with -i)", path, line, key="connection")


def check_sandbox(inv: Inventory) -> None:
    """Refuse an inventory in which the sandbox could stand in for, or touch, a real host.

    Sandbox hosts (merged var ``connection: sandbox``) are fine only when the operator chose
    an inventory of sandbox hosts alone. Refused, in this order:

    1. ``connection: sandbox`` reaches a host from another file than the one defining the host
       (a ``sandbox.yaml`` left in ``inventories/`` beside a real inventory: its ``all: vars:``
       would make every host a local sandbox host);
    2. a sandbox host with a real address (:func:`has_local_address` is False);
    3. the inventory holds sandbox hosts and other hosts (``connection: ssh``).

    :param inv: the whole loaded inventory (not only the selected hosts).
    :raises InventoryError: one paragraph: the file and line of ``connection: sandbox``, the
        host, and which file to remove or which ``-i`` to use. No-op without sandbox hosts.
    """
    hosts = list(inv.hosts.values())
    _refuse_overridden_sandbox(inv)
    sandboxed = [h for h in hosts if h.vars.get("connection") == "sandbox"]
    if not sandboxed:
        return
    sandbox_files = sorted({where(h.vars, "connection")[0] or "?" for h in sandboxed})
    others = [p for p in inv.paths if not any(_same_file(p, s) for s in sandbox_files)]
    fix = (f"remove {' and '.join(sandbox_files)} (the sandbox is for trying concurdeploy out) "
           + (f"or choose your inventory with -i {others[0]}" if others else
              "or take connection: sandbox off the real hosts"))
    for h in sandboxed:
        path, line = where(h.vars, "connection")
        if not _same_file(path, where(h.vars)[0]):
            raise InventoryError(
                f"connection: sandbox set here reaches host {h.name}, which is defined in another "
                f"file ({h.source}): the sandbox would stand in for that host and run everything "
                f"locally, as your own user; {fix}", path, line, key="connection")
    for h in sandboxed:
        if not has_local_address(h):
            path, line = where(h.vars, "connection")
            raise InventoryError(
                f"host {h.name} ({h.source}) has the real address {h.vars.get('host', h.name)!r} "
                f"({h.origins.get('host', 'its name')}) but connection: sandbox (set here): a sandbox "
                f"connection never applies to a real host; give sandbox hosts bare names such as lb1 "
                f"and no address, or {fix}", path, line, key="connection")
    real = [h for h in hosts if h.vars.get("connection", "ssh") != "sandbox"]
    if real:
        path, line = where(sandboxed[0].vars, "connection")
        raise InventoryError(
            f"inventory {inv.location} mixes sandbox hosts ({_names(sandboxed)}, connection: sandbox "
            f"set here) with real hosts ({_names(real)}, from {real[0].source}): a push would reach "
            f"both; {fix}", path, line, key="connection")


def check_key_env(hosts: list[Host], executor: str) -> None:
    """Refuse the run, before any host is contacted, when a host's ``key_env`` names an
    environment variable that is not set, or set but empty (a CI secret not passed in: CI
    systems often set a missing secret to ""): with the local executor the workers read this
    process's environment, so the run could only fail every such host.
    (A Dask worker has its own environment: not checked here.)

    :param hosts: the selected hosts; ``executor``: ``"local"`` or ``"dask"``.
    :raises UsageError: names the variable, the host and where ``key_env`` was set.
    """
    if executor != "local":
        return
    for h in hosts:
        name = h.vars.get("key_env")
        if h.vars.get("connection", "ssh") != "ssh" or not isinstance(name, str) or not name:
            continue
        value = os.environ.get(name)
        if value is None or not value.strip():
            where = h.origins.get("key_env", h.source)
            state = "is not set" if value is None else "is set but empty"
            raise UsageError(f"host {h.name}: key_env {name} {state} (set in {where}): it must hold the "
                             f"private key, e.g. a CI secret; export {name} (in CI: pass the secret into the "
                             f"job's environment) or remove key_env to use key_file or ssh-agent; nothing "
                             f"was touched")
