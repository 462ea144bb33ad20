"""The inventory's data model: :class:`Host`, :class:`Group`, :class:`Inventory`, the
precedence rule that merges a host's vars, and where each value was read.

Variable precedence, lowest first (a later layer replaces a key wholesale, no deep merge),
applied by :func:`merge_layers` in the order :func:`host_layers` gives (Ansible's
``VARIABLE_PRECEDENCE`` default, ``vars/manager.py``):

1. group ``all``'s inventory vars (depth 0);
2. the inventory vars of the other groups that contain the host, directly or through a
   descendant, in :func:`precedence_order`: by depth (the longest ``children`` path from
   ``all``), shallower first, then by ``ansible_group_priority`` (default 1, higher wins),
   then by name — so a child group beats its parent;
3. ``group_vars`` files (``Group.file_vars``): ``all`` first, then the other groups in the
   same order;
4. the host's own inventory vars (a host defined more than once: merged, later wins);
5. ``host_vars`` files (``Host``'s file vars).

Then magic vars are added when absent: ``inventory_hostname`` (the name),
``inventory_file`` (the file that first defined the host), ``inventory_dir`` (that file's
absolute directory), ``group_names`` (sorted, without ``all``/``ungrouped``); and
``host`` = the inventory name when no address was given. ``Host.origins`` says where each
final value came from.

``Host.raw_vars`` is the merged result as written (``ansible_*`` names kept, no magic vars:
what ``ansible-inventory --list`` shows); ``Host.vars`` is the same with the connection
aliases resolved to concurdeploy's names (:mod:`~concurdeploy.inventory.vars`) and the magic
vars added.

Every mapping read from a file is a :class:`YamlMapping`: a ``dict`` that remembers the
file and line of itself and of each key, so later code can point at the line of, say, a
``files:`` entry with :func:`where`.

This module imports only :mod:`concurdeploy.exceptions` and
:mod:`concurdeploy.inventory.patterns` (which knows an inventory by its shape only). The
readers (:mod:`~concurdeploy.inventory.yaml`, :mod:`~concurdeploy.inventory.vars`,
:mod:`~concurdeploy.inventory.loader`) import this module, never the reverse.

Code outside the package imports ``load`` and the records from :mod:`concurdeploy.inventory`.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import yaml

from concurdeploy.exceptions import NoHostsMatched, UnknownGroup
from concurdeploy.inventory import patterns

__all__ = ["Group", "Host", "Inventory", "Location", "Unsafe", "YamlMapping", "add_magic_vars", "host_layers",
           "merge_layers", "precedence_order", "where"]

#: ``(path, 1-based line)``; either may be None when unknown.
Location = tuple["str | None", "int | None"]


# --------------------------------------------------------------------------- located values

class YamlMapping(dict):
    """A ``dict`` that remembers where it was read: ``(path, line)`` of itself and of each key.

    Behaves as a plain dict (``==``, ``json.dumps``, ``yaml.safe_dump``, ``copy``, pickle).
    Read locations with :func:`where`. Lines are 1-based.
    """

    _where: Location = (None, None)

    @classmethod
    def at(cls, path: str | None, line: int | None) -> YamlMapping:
        """Return an empty mapping located at ``path:line``."""
        mapping = cls()
        mapping._where = (path, line)
        mapping._key_where = {}
        return mapping

    def put(self, key, value, location: Location) -> None:
        """Set ``self[key] = value`` and record that the key came from ``location``."""
        self[key] = value
        if "_key_where" not in self.__dict__:
            self._key_where = {}
        self._key_where[key] = tuple(location)


class Unsafe(str):
    """A string written ``!unsafe`` (or ``{"__ansible_unsafe": ...}`` in JSON): taken literally,
    never rendered as a Jinja2 template. Behaves as ``str`` (``==``, JSON, pickle)."""

    __slots__ = ()

    def __reduce__(self):
        return (Unsafe, (str(self),))


# yaml.safe_dump/yaml.dump look representers up by exact type: teach them this dict.
yaml.add_representer(YamlMapping, yaml.representer.SafeRepresenter.represent_dict,
                     Dumper=yaml.SafeDumper)
yaml.add_representer(YamlMapping, yaml.representer.SafeRepresenter.represent_dict,
                     Dumper=yaml.Dumper)
for _dumper in (yaml.SafeDumper, yaml.Dumper):
    yaml.add_representer(Unsafe, yaml.representer.SafeRepresenter.represent_str, Dumper=_dumper)


def where(mapping, key=None) -> tuple[str | None, int | None]:
    """Return ``(path, line)`` of a mapping loaded from YAML, or of one of its keys.

    :param mapping: any object; only a :class:`YamlMapping` knows its location.
    :param key: a key of ``mapping``, or None for the mapping itself.
    :returns: ``(path, 1-based line)``, or ``(None, None)`` if unknown.
    """
    if key is None:
        return tuple(getattr(mapping, "_where", (None, None)))
    key_where = getattr(mapping, "__dict__", {}).get("_key_where", {})
    return tuple(key_where.get(key, (None, None)))


def format_location(location: Location) -> str:
    """``"path:line"``, or ``"path"`` when the line is unknown (package-internal helper)."""
    path, line = location
    return f"{path}:{line}" if line else f"{path}"


def suggest(name: str, candidates) -> str:
    """Return ``"; did you mean 'x'?"`` for close matches of ``name`` (difflib), or ``""``."""
    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(c) for c in close) + "?"


def _name_list(names, limit: int = 30) -> str:
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names) - limit} more)" if len(names) > limit else "")


# --------------------------------------------------------------------------- public records

@dataclass(frozen=True)
class Group:
    """One inventory group, as declared (all its definitions merged).

    :param hosts: host names listed directly under the group (for ``ungrouped``: the hosts
        in no other group).
    :param children: child group names.
    :param vars: the group's own vars, not merged with parents (``YamlMapping``).
    :param source: ``"path:line"`` of its first appearance, ``"<implicit>"`` for an
        ``all``/``ungrouped`` the files never name.
    :param priority: ``ansible_group_priority`` (default 1; not kept in ``vars``, as in Ansible).
    :param file_vars: vars from ``group_vars/`` files (``YamlMapping``), above every group's
        inventory vars (see the module docstring).
    """

    name: str
    hosts: tuple[str, ...]
    children: tuple[str, ...]
    vars: dict
    source: str
    priority: int = 1
    file_vars: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Host:
    """One host with its merged vars. Picklable; goes to worker processes.

    :param name: inventory name.
    :param vars: merged vars (``YamlMapping``: a dict; :func:`where` gives the winning
        definition of each key), connection aliases renamed.
    :param groups: every group containing the host, ancestors included: ``all`` first,
        then by depth, then by name.
    :param origins: var name -> ``"group haproxy (inv.yaml:12)"``, ``"host lb1 (inv.yaml:9)"``,
        ``"magic variable"`` or ``"default: the inventory name"``.
    :param source: ``"path:line"`` where the host was first defined.
    :param raw_vars: the merged vars as written (``ansible_*`` names kept, no magic vars, no
        template rendered): what ``ansible-inventory --list`` shows under ``_meta.hostvars``.
    """

    name: str
    vars: dict
    groups: tuple[str, ...]
    origins: dict
    source: str
    raw_vars: dict = field(default_factory=dict)


class Inventory:
    """Hosts and groups loaded from one or more files.

    :ivar location: the path given to :func:`~concurdeploy.inventory.load` (file or
        directory), for messages.
    :ivar paths: files loaded, in load order.
    :ivar hosts: name -> :class:`Host`, in order of first definition.
    :ivar groups: name -> :class:`Group`; ``all`` and ``ungrouped`` first.
    """

    def __init__(self, location: str, paths: tuple[str, ...], hosts: dict[str, Host],
                 groups: dict[str, Group]):
        self.location = location
        self.paths = tuple(paths)
        self.hosts = hosts
        self.groups = groups

    def __repr__(self) -> str:
        return (f"Inventory({self.location!r}, {len(self.hosts)} hosts, "
                f"{len(self.groups)} groups)")

    def group(self, name: str) -> Group:
        """Return the group called ``name``.

        :raises UnknownGroup: no such group; the message lists known groups and close matches.
        """
        try:
            return self.groups[name]
        except KeyError:
            raise UnknownGroup(
                f"unknown group {name!r} in {self.location} "
                f"(known groups: {_name_list(self.groups)}){suggest(name, self.groups)}"
            ) from None

    def hosts_of(self, group: str) -> list[Host]:
        """Return every host of ``group`` and of its descendants, in inventory order.

        :raises UnknownGroup: no such group.
        :raises NoHostsMatched: the group (with its descendants) has no host.
        """
        self.group(group)
        hosts = [host for host in self.hosts.values() if group in host.groups]
        if not hosts:
            raise NoHostsMatched(
                f"group {group!r} has no hosts in {self.location}; add some under "
                f"'{group}: hosts:' or under one of its children")
        return hosts

    def select(self, pattern: str) -> list[Host]:
        """Return the hosts an Ansible-style pattern selects; see :func:`patterns.select`.

        :raises NoHostsMatched: a term names nothing, or nothing is selected.
        :raises InventoryError: a ``@file`` cannot be read, or the pattern is malformed.
        """
        return patterns.select(self, pattern)


# --------------------------------------------------------------------------- precedence

def precedence_order(groups: Iterable[str], depth: Mapping[str, int],
                     priority: Mapping[str, int] | None = None) -> tuple[str, ...]:
    """Order a host's groups lowest precedence first: by depth, then priority, then name
    (Ansible's ``inventory.helpers.sort_groups``).

    :param groups: every group containing the host, ancestors and ``all`` included.
    :param depth: group -> longest ``children`` path from ``all`` (``all`` is 0).
    :param priority: group -> ``ansible_group_priority`` (missing: 1); a higher one wins.
    :returns: e.g. ``("all", "lb", "haproxy")``: a later group's vars win.
    """
    priority = priority or {}
    return tuple(sorted(groups, key=lambda g: (depth[g], priority.get(g, 1), g)))


def host_layers(name: str, own_vars: Mapping, file_vars: Mapping, groups: tuple[str, ...],
                all_groups: Mapping[str, Group]) -> list[tuple[str, Mapping]]:
    """The var layers of one host, lowest precedence first (see the module docstring).

    :param own_vars: the host's inventory vars; ``file_vars``: its ``host_vars`` files' vars.
    :param groups: the host's groups in :func:`precedence_order` (``all`` first).
    :returns: ``[(label, mapping), ...]``, label e.g. ``"group web"``, ``"group_vars web"``.
    """
    layers = [(f"group {g}", all_groups[g].vars) for g in groups]
    layers += [(f"group_vars {g}", all_groups[g].file_vars) for g in groups if all_groups[g].file_vars]
    layers.append((f"host {name}", own_vars))
    if file_vars:
        layers.append((f"host_vars {name}", file_vars))
    return layers


def merge_layers(location: Location, layers: list[tuple[str, Mapping]]) -> tuple[YamlMapping, dict, dict]:
    """Merge var layers, a later one replacing a key wholesale.

    :param location: ``(path, line)`` the merged mapping is said to come from.
    :returns: ``(merged, origins, rank)``: a ``YamlMapping`` keeping each winning key's
        location; var -> ``"group haproxy (inv.yaml:12)"``; var -> index of its layer.
    """
    merged = YamlMapping.at(*location)
    origins, rank = {}, {}
    for index, (label, layer) in enumerate(layers):
        for key, value in layer.items():
            key_location = where(layer, key)
            merged.put(key, value, key_location)
            origins[key] = f"{label} ({format_location(key_location)})"
            rank[key] = index
    return merged, origins, rank


def add_magic_vars(name: str, location: Location, merged: YamlMapping, origins: dict,
                   groups: tuple[str, ...]) -> None:
    """Add, when absent, ``inventory_hostname``, ``inventory_file``, ``inventory_dir``,
    ``group_names`` (sorted, without ``all``/``ungrouped``) and ``host`` = the name.

    :param location: ``(path, line)`` of the host's first definition; ``path`` must be set.
    """
    path = location[0]
    magic = {
        "inventory_hostname": name,
        "inventory_file": path,
        "inventory_dir": os.path.dirname(os.path.abspath(path)),
        "group_names": sorted(g for g in groups if g not in ("all", "ungrouped")),
    }
    for key, value in magic.items():
        if key not in merged:
            merged.put(key, value, (None, None))
            origins[key] = "magic variable"
    if "host" not in merged:
        merged.put("host", name, (None, None))
        origins["host"] = "default: the inventory name"
