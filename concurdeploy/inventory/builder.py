"""Build an :class:`~concurdeploy.inventory.model.Inventory` from parsed inventory
documents, whatever file they came from.

A document is the shape of Ansible's YAML inventory: a mapping of groups (``all`` and any
other top-level group), each a mapping with ``hosts`` (host name -> vars mapping, or empty;
a string is one host name), ``children`` (group name -> group, or empty; a string is one
name) and ``vars``; every mapping a :class:`~concurdeploy.inventory.model.YamlMapping` so
errors can name ``file:line``. Every reader produces it (YAML, INI, JSON, inventory scripts).

:class:`Builder` takes one document per file (:meth:`Builder.add_document`) and, from
``group_vars``/``host_vars`` files, vars layers (:meth:`Builder.add_group_vars_file`,
:meth:`Builder.add_host_vars_file`). As Ansible does: the same group or host defined again
(in the same file or another) gets the hosts, children and vars of every definition, a var
set twice taking the later value; ``ansible_group_priority`` in a group's vars is the group's
priority (not a var). :meth:`Builder.build` then checks the ``children`` graph for cycles,
makes every group without a parent a child of ``all`` (in order of first appearance, as
Ansible's ``reconcile_inventory``), puts group-less hosts into ``ungrouped``, refuses a host
and a group with the same name (Ansible warns; a push target must mean one thing), computes
each group's depth and merges every host's vars (:func:`~concurdeploy.inventory.model.merge_layers`
over :func:`~concurdeploy.inventory.model.host_layers`, then
:func:`~concurdeploy.inventory.vars.resolve_connection_vars`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from concurdeploy.exceptions import InventoryError
from concurdeploy.inventory.model import (
    Group,
    Host,
    Inventory,
    Location,
    YamlMapping,
    add_magic_vars,
    format_location,
    host_layers,
    merge_layers,
    precedence_order,
    suggest,
    where,
)
from concurdeploy.inventory.vars import describe, normalise_vars, resolve_connection_vars

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
    file_vars: YamlMapping = field(default_factory=lambda: YamlMapping.at(None, None))
    priority: int = 1


@dataclass
class _HostDraft:
    name: str
    location: Location
    vars: YamlMapping
    groups: list = field(default_factory=list)  # groups listing the host directly
    file_vars: YamlMapping = field(default_factory=lambda: YamlMapping.at(None, None))


def _one_name(value, location: Location):
    """Ansible reads ``hosts: web1`` / ``children: web`` as one name: ``{web1: None}``."""
    if not isinstance(value, str):
        return value
    mapping = YamlMapping.at(*location)
    mapping.put(value, None, location)
    return mapping


def _update(target: YamlMapping, new) -> None:
    """Set ``new``'s keys in ``target``, a later value replacing an earlier one (Ansible's
    ``set_variable``), each key keeping the location it was last set at."""
    for key, value in new.items():
        target.put(key, value, where(new, key))


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
        self.ungrouped_listed: list[str] = []  # hosts a file lists under 'ungrouped', in order
        self.empty_files: list[str] = []

    # ---- collecting

    def add_document(self, data, path: str) -> None:
        """Add one parsed file (None: an empty file, which defines nothing).

        :raises InventoryError: the document is not a mapping of groups, or any group in it
            is wrong.
        """
        if data is None:  # defines nothing (Ansible skips it); refused by build() if all are empty
            self.empty_files.append(path)
            return
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

    def _add_group_vars(self, draft: _GroupDraft, value, location: Location, file: bool = False) -> None:
        if value is None:
            return
        if not isinstance(value, dict):
            raise InventoryError(f"vars of group {draft.name!r} must be a mapping "
                                 f"(name: value), got {describe(value)}", *location, key="vars")
        checked = normalise_vars(value, f"group {draft.name!r}")
        if "ansible_group_priority" in checked and not file:  # in group_vars files: a plain var
            priority = checked.pop("ansible_group_priority")
            try:
                draft.priority = int(priority)
            except (TypeError, ValueError):
                raise InventoryError(f"group {draft.name!r}: ansible_group_priority must be an integer, "
                                     f"got {describe(priority)}", *where(value, "ansible_group_priority"),
                                     key="ansible_group_priority") from None
        _update(draft.file_vars if file else draft.vars, checked)

    def add_group_vars_file(self, group: str, mapping, path: str) -> None:
        """Add the vars of a ``group_vars`` file (or of one file of a ``group_vars/<group>/``
        folder; call in load order, a later value wins). Vars for a group no document
        defines are ignored, as in Ansible. Applied above every group's inventory vars
        (:func:`~concurdeploy.inventory.model.host_layers`). ``ansible_group_priority`` here
        is a plain var, not the group's priority (Ansible reads it only from inventory sources).

        :param mapping: a ``YamlMapping`` of vars (None: nothing).
        :raises InventoryError: not a mapping, a bad value (file, line, key).
        """
        if group in self.groups:
            self._add_group_vars(self.groups[group], mapping, where(mapping) if mapping is not None
                                 else (path, None), file=True)

    def add_host_vars_file(self, host: str, mapping, path: str) -> None:
        """Add the vars of a ``host_vars`` file (or of one file of a ``host_vars/<host>/``
        folder), above the host's inventory vars. Vars for an unknown host are ignored.

        :raises InventoryError: not a mapping, a bad value (file, line, key).
        """
        draft = self.hosts.get(host)
        if draft is None or mapping is None:
            return
        if not isinstance(mapping, dict):
            raise InventoryError(f"vars of host {host!r} must be a mapping (name: value), got "
                                 f"{describe(mapping)}", path, where(mapping)[1])
        _update(draft.file_vars, normalise_vars(mapping, f"host {host!r}"))

    def _add_hosts(self, group: str, hosts, location: Location) -> None:
        if hosts is None:
            return
        hosts = _one_name(hosts, location)
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
        checked = normalise_vars(host_vars, f"host {name!r}")
        draft = self.hosts.get(name)
        if draft is None:
            draft = self.hosts[name] = _HostDraft(name, location, YamlMapping.at(*location))
        _update(draft.vars, checked)
        if group not in draft.groups:
            draft.groups.append(group)
        if name not in self.groups[group].hosts:
            self.groups[group].hosts.append(name)
            if group == "ungrouped":
                self.ungrouped_listed.append(name)

    def _add_children(self, group: str, children, location: Location, stack: tuple) -> None:
        if children is None:
            return
        children = _one_name(children, location)
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

    def adopt_orphans(self) -> None:
        """Make every group with no parent a child of ``all``, in order of first appearance
        (Ansible's ``reconcile_inventory``: a top-level group that another group lists in its
        ``children`` is not a child of ``all``)."""
        parents = self._parents()
        for name, draft in self.groups.items():
            if name != "all" and not parents[name]:
                self._link("all", name, draft.location or (None, None))

    def settle_ungrouped(self) -> None:
        """Put every host in no group but ``all``/``ungrouped`` into ``ungrouped`` only: first
        those a file lists there, in that order, then the others in inventory order (Ansible)."""
        settled = []
        for host in self.hosts.values():
            if all(g in ("all", "ungrouped") for g in host.groups):
                if "ungrouped" not in host.groups:
                    host.groups.append("ungrouped")
                settled.append(host.name)
            elif "ungrouped" in host.groups:
                host.groups.remove("ungrouped")
        listed = [h for h in self.ungrouped_listed if h in settled]
        self.groups["ungrouped"].hosts = listed + [h for h in settled if h not in listed]

    def check_names(self) -> None:
        """:raises InventoryError: a host and a group with the same name (Ansible warns and
        keeps both; a push target or a pattern must mean one thing)."""
        for name, host in self.hosts.items():
            if name in self.groups:
                group = self.groups[name]
                at = format_location(group.location) if group.location else "built in"
                raise InventoryError(
                    f"{name!r} names both a host (here) and a group ({at}); a name must mean one "
                    "thing for push, --limit and patterns: rename the host or the group",
                    *host.location, key=name)

    def build(self, location: str, paths: tuple[str, ...]) -> Inventory:
        """Check, settle and merge everything added (see the module docstring).

        :param location: the path given to ``load`` (for messages); ``paths``: files read.
        :raises InventoryError: a ``children`` cycle; a host and a group with one name; a
            connection var that cannot be resolved for a host (file, line and key named).
        """
        if self.empty_files and not self.hosts and set(self.groups) == {"all", "ungrouped"}:
            raise InventoryError("inventory file is empty (nothing but comments); it must be a mapping "
                                 "that starts with 'all:'", self.empty_files[0], 1)
        self.check_cycles()
        self.check_names()
        self.adopt_orphans()
        self.settle_ungrouped()
        depth = self.depths()
        parents = self._parents()
        priority = {name: d.priority for name, d in self.groups.items()}
        groups = {name: Group(name, tuple(d.hosts), tuple(d.children), d.vars,
                              format_location(d.location) if d.location else "<implicit>",
                              d.priority, d.file_vars)
                  for name, d in self.groups.items()}
        hosts = {}
        for draft in self.hosts.values():
            ordered = precedence_order(_ancestors(draft.groups, parents), depth, priority)
            hosts[draft.name] = self._host(draft, ordered, groups)
        return Inventory(location, paths, hosts, groups)

    @staticmethod
    def _host(draft: _HostDraft, ordered: tuple[str, ...], groups: dict[str, Group]) -> Host:
        layers = host_layers(draft.name, draft.vars, draft.file_vars, ordered, groups)
        raw, origins, rank = merge_layers(draft.location, layers)
        magic = YamlMapping.at(*draft.location)
        add_magic_vars(draft.name, draft.location, magic, {}, ordered)
        magic.pop("host")
        magic["inventory_hostname_short"] = draft.name.split(".")[0]
        resolved = resolve_connection_vars(draft.name, raw, origins, rank, magic)
        add_magic_vars(draft.name, draft.location, resolved, origins, ordered)
        return Host(draft.name, resolved, ordered, origins, format_location(draft.location), raw)

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
