"""Build an :class:`~concurdeploy.inventory.model.Inventory` from parsed inventory
documents, whatever file they came from.

A document is the shape of Ansible's YAML inventory: a mapping of groups (``all`` and any
other top-level group, a child of ``all``), each a mapping with ``hosts`` (host name ->
vars mapping, or empty), ``children`` (group name -> group) and ``vars``; every mapping a
:class:`~concurdeploy.inventory.model.YamlMapping` so errors can name ``file:line``.
:class:`Builder` takes one document per file (:meth:`Builder.add_document`); the same
group in two documents gets the hosts, children and vars of both, and a var set twice must
have the same value. :meth:`Builder.build` then checks the ``children`` graph for cycles,
puts group-less hosts into ``ungrouped``, computes each group's depth and merges every
host's vars by :func:`~concurdeploy.inventory.model.make_host`'s precedence rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from concurdeploy.exceptions import InventoryError
from concurdeploy.inventory.model import (
    Group,
    Inventory,
    Location,
    YamlMapping,
    format_location,
    make_host,
    precedence_order,
    suggest,
    where,
)
from concurdeploy.inventory.vars import describe, normalise_vars

__all__ = ["GROUP_KEYS", "Builder"]

#: Keys allowed in a group mapping.
GROUP_KEYS = ("hosts", "children", "vars")


# --------------------------------------------------------------------------- drafts

@dataclass
class _GroupDraft:
    name: str
    location: Location | None
    hosts: list = field(default_factory=list)
    children: list = field(default_factory=list)
    vars: YamlMapping = field(default_factory=lambda: YamlMapping.at(None, None))


@dataclass
class _HostDraft:
    name: str
    location: Location
    vars: YamlMapping
    groups: list = field(default_factory=list)  # groups listing the host directly


def _merge_into(target: YamlMapping, new: YamlMapping, owner: str) -> None:
    """Add ``new``'s keys to ``target``; a key set in both must have the same value.

    :raises InventoryError: a key with two different values (names both places).
    """
    for key, value in new.items():
        location = where(new, key)
        if key in target and target[key] != value:
            raise InventoryError(
                f"{owner} sets {key!r} twice with different values: {value!r} here and "
                f"{target[key]!r} at {format_location(where(target, key))}; keep one",
                *location, key=str(key))
        if key not in target:
            target.put(key, value, location)


# --------------------------------------------------------------------------- the builder

class Builder:
    """Collects groups and hosts from parsed files, then builds an :class:`Inventory`.

    Use: one ``Builder()``, :meth:`add_document` per file in load order, then
    :meth:`build` once.
    """

    def __init__(self):
        self.groups: dict[str, _GroupDraft] = {}
        self.hosts: dict[str, _HostDraft] = {}
        self.edge_locations: dict[tuple[str, str], Location] = {}
        self._draft("all", None)
        self._draft("ungrouped", None)
        self._link("all", "ungrouped", (None, None))

    # ---- collecting

    def add_document(self, data, path: str) -> None:
        """Add one parsed file.

        :raises InventoryError: the document is not a mapping of groups, or any group in it
            is wrong.
        """
        if data is None:
            raise InventoryError("inventory file is empty; it must be a mapping that starts "
                                 "with 'all:'", path, 1)
        if not isinstance(data, dict):
            raise InventoryError(
                f"the top level must be a mapping of groups starting with 'all:', got "
                f"{describe(data)} (concurdeploy reads Ansible's YAML inventory format, not INI)",
                path, where(data)[1] or 1)
        for name, body in data.items():
            location = where(data, name)
            name = self._name(name, "group", location)
            if name in GROUP_KEYS:
                raise InventoryError(
                    f"top-level key {name!r}: an inventory starts with 'all:' and "
                    f"'{name}:' goes under it ('all: {name}: ...')", *location, key=name)
            if name != "all":
                self._link("all", name, location)
            self._add_group(name, body, location, ())

    def _name(self, name, what: str, location: Location) -> str:
        """Check a host or group name is a non-empty string; YAML may read ``010`` as 8."""
        if not isinstance(name, str) or not name.strip():
            raise InventoryError(
                f"{what} name {name!r} is not a non-empty string (YAML read it as "
                f"{type(name).__name__}); quote the name as written, e.g. '\"010\":'",
                *location, key=str(name))
        return name

    def _draft(self, name: str, location: Location | None) -> _GroupDraft:
        draft = self.groups.get(name)
        if draft is None:
            draft = self.groups[name] = _GroupDraft(name, location)
        elif draft.location is None:
            draft.location = location
        return draft

    def _link(self, parent: str, child: str, location: Location) -> None:
        children = self.groups[parent].children
        if child not in children:
            children.append(child)
        self.edge_locations.setdefault((parent, child), location)

    def _add_group(self, name: str, body, location: Location, stack: tuple) -> None:
        """Add one group definition (``body`` is its mapping, or None for an empty group).

        :param stack: ids of the group mappings being added above this one (alias loops).
        :raises InventoryError: unknown key, wrong types, conflicting vars.
        """
        draft = self._draft(name, location)
        if body is None:
            return
        if not isinstance(body, dict):
            raise InventoryError(
                f"group {name!r} must be a mapping with {', '.join(GROUP_KEYS)} (or empty), "
                f"got {describe(body)}", *location, key=name)
        if id(body) in stack:
            raise InventoryError(f"group {name!r} contains itself through a YAML alias (*anchor)",
                                 *location, key=name)
        for key, value in body.items():
            key_location = where(body, key)
            if key == "vars":
                self._add_group_vars(draft, value, key_location)
            elif key == "hosts":
                self._add_hosts(name, value, key_location)
            elif key == "children":
                self._add_children(name, value, key_location, stack + (id(body),))
            else:
                raise InventoryError(
                    f"unknown key {key!r} in group {name!r} (allowed: {', '.join(GROUP_KEYS)}); "
                    "host entries go under 'hosts:', variables under 'vars:', child groups "
                    f"under 'children:'{suggest(str(key), GROUP_KEYS)}",
                    *key_location, key=str(key))

    def _add_group_vars(self, draft: _GroupDraft, value, location: Location) -> None:
        if value is None:
            return
        if not isinstance(value, dict):
            raise InventoryError(f"vars of group {draft.name!r} must be a mapping "
                                 f"(name: value), got {describe(value)}", *location, key="vars")
        owner = f"group {draft.name!r}"
        _merge_into(draft.vars, normalise_vars(value, owner), owner)

    def _add_hosts(self, group: str, hosts, location: Location) -> None:
        if hosts is None:
            return
        if not isinstance(hosts, dict):
            raise InventoryError(
                f"hosts of group {group!r} must be a mapping of host name to vars, got "
                f"{describe(hosts)}; write each host as 'name:' on its own line, not '- name'",
                *location, key="hosts")
        for name, host_vars in hosts.items():
            host_location = where(hosts, name)
            self._add_host(group, self._name(name, "host", host_location), host_vars,
                           host_location)

    def _add_host(self, group: str, name: str, host_vars, location: Location) -> None:
        if host_vars is None:
            host_vars = YamlMapping.at(*location)
        if not isinstance(host_vars, dict):
            raise InventoryError(
                f"vars of host {name!r} must be a mapping (name: value) or empty, got "
                f"{describe(host_vars)}; to give its address write '{name}: {{host: ADDRESS}}'",
                *location, key=name)
        owner = f"host {name!r}"
        normalised = normalise_vars(host_vars, owner)
        draft = self.hosts.get(name)
        if draft is None:
            draft = self.hosts[name] = _HostDraft(name, location, YamlMapping.at(*location))
        _merge_into(draft.vars, normalised, owner)
        if group not in draft.groups:
            draft.groups.append(group)
        if name not in self.groups[group].hosts:
            self.groups[group].hosts.append(name)

    def _add_children(self, group: str, children, location: Location, stack: tuple) -> None:
        if children is None:
            return
        if not isinstance(children, dict):
            raise InventoryError(
                f"children of group {group!r} must be a mapping of group name to group "
                f"(or empty), got {describe(children)}", *location, key="children")
        for name, body in children.items():
            child_location = where(children, name)
            name = self._name(name, "group", child_location)
            self._draft(name, child_location)
            self._link(group, name, child_location)
            self._add_group(name, body, child_location, stack)

    # ---- checking and building

    def check_cycles(self) -> None:
        """:raises InventoryError: a ``children`` cycle, shown as ``"a -> b -> a"``."""
        done: set[str] = set()
        for start in self.groups:
            self._visit(start, [], done)

    def _visit(self, name: str, path: list[str], done: set[str]) -> None:
        if name in path:
            cycle = path[path.index(name):] + [name]
            location = self.edge_locations.get((path[-1], name), (None, None))
            raise InventoryError(f"cycle in children: {' -> '.join(cycle)}; a group cannot "
                                 "contain itself, remove one of these links",
                                 *location, key=name)
        if name in done:
            return
        path.append(name)
        for child in self.groups[name].children:
            self._visit(child, path, done)
        path.pop()
        done.add(name)

    def depths(self) -> dict[str, int]:
        """Group -> longest ``children`` path from ``all`` (Ansible's depth). Needs no cycles."""
        parents = self._parents()
        depth: dict[str, int] = {}

        def depth_of(name: str) -> int:
            if name not in depth:
                depth[name] = max((depth_of(p) + 1 for p in parents[name]), default=0)
            return depth[name]

        for name in self.groups:
            depth_of(name)
        return depth

    def _parents(self) -> dict[str, list[str]]:
        parents: dict[str, list[str]] = {name: [] for name in self.groups}
        for name, draft in self.groups.items():
            for child in draft.children:
                parents[child].append(name)
        return parents

    def settle_ungrouped(self) -> None:
        """Put every host in no group but ``all``/``ungrouped`` into ``ungrouped`` only."""
        ungrouped = []
        for host in self.hosts.values():
            if all(g in ("all", "ungrouped") for g in host.groups):
                if "ungrouped" not in host.groups:
                    host.groups.append("ungrouped")
                ungrouped.append(host.name)
            elif "ungrouped" in host.groups:
                host.groups.remove("ungrouped")
        self.groups["ungrouped"].hosts = ungrouped

    def build(self, location: str, paths: tuple[str, ...]) -> Inventory:
        """:raises InventoryError: a ``children`` cycle."""
        self.check_cycles()
        self.settle_ungrouped()
        depth = self.depths()
        parents = self._parents()
        groups = {name: Group(name, tuple(d.hosts), tuple(d.children), d.vars,
                              format_location(d.location) if d.location else "<implicit>")
                  for name, d in self.groups.items()}
        hosts = {}
        for draft in self.hosts.values():
            ordered = precedence_order(_ancestors(draft.groups, parents), depth)
            hosts[draft.name] = make_host(draft.name, draft.location, draft.vars, ordered, groups)
        return Inventory(location, paths, hosts, groups)


def _ancestors(direct: list[str], parents: dict[str, list[str]]) -> set[str]:
    """Return ``direct`` plus every ancestor group of them (``all`` included)."""
    found: set[str] = set()
    todo = ["all", *direct]
    while todo:
        name = todo.pop()
        if name not in found:
            found.add(name)
            todo.extend(parents[name])
    return found
