"""The inventory's data model: :class:`Host`, :class:`Group`, :class:`Inventory`, the
precedence rule that merges a host's vars, and where each value was read.

Variable precedence, lowest first (a later layer replaces a key wholesale, no deep merge),
applied by :func:`make_host`:

1. group ``all`` (depth 0);
2. the other groups that contain the host, directly or through a descendant, in order of
   depth (the longest ``children`` path from ``all``), shallower first; groups at the same
   depth in alphabetical order by name (Ansible's rule) — so a child group beats its parent
   (:func:`precedence_order`);
3. the host's own vars.

Then magic vars are added when absent: ``inventory_hostname`` (the name),
``inventory_file`` (the file that first defined the host), ``inventory_dir`` (that file's
absolute directory), ``group_names`` (sorted, without ``all``/``ungrouped``); and
``host`` = the inventory name when no address was given. ``Host.origins`` says where each
final value came from.

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
from dataclasses import dataclass

import yaml

from concurdeploy.exceptions import NoHostsMatched, UnknownGroup
from concurdeploy.inventory import patterns

__all__ = ["Group", "Host", "Inventory", "Location", "YamlMapping", "make_host", "precedence_order",
           "where"]

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


# yaml.safe_dump/yaml.dump look representers up by exact type: teach them this dict.
yaml.add_representer(YamlMapping, yaml.representer.SafeRepresenter.represent_dict,
                     Dumper=yaml.SafeDumper)
yaml.add_representer(YamlMapping, yaml.representer.SafeRepresenter.represent_dict,
                     Dumper=yaml.Dumper)


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
    """

    name: str
    hosts: tuple[str, ...]
    children: tuple[str, ...]
    vars: dict
    source: str


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
    """

    name: str
    vars: dict
    groups: tuple[str, ...]
    origins: dict
    source: str


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

def precedence_order(groups: Iterable[str], depth: Mapping[str, int]) -> tuple[str, ...]:
    """Order a host's groups lowest precedence first: by depth, then by name.

    :param groups: every group containing the host, ancestors and ``all`` included.
    :param depth: group -> longest ``children`` path from ``all`` (``all`` is 0).
    :returns: e.g. ``("all", "lb", "haproxy")``: a later group's vars win.
    """
    return tuple(sorted(groups, key=lambda g: (depth[g], g)))


def make_host(name: str, location: Location, own_vars: Mapping, groups: tuple[str, ...],
              all_groups: Mapping[str, Group]) -> Host:
    """Merge a host's vars by precedence and add the magic vars (see the module docstring).

    :param name: the inventory name.
    :param location: ``(path, line)`` of the host's first definition; ``path`` must be set.
    :param own_vars: the host's own vars (a ``YamlMapping``; its key locations are kept).
    :param groups: the host's groups, already in :func:`precedence_order`.
    :param all_groups: group name -> :class:`Group`, holding every name in ``groups``.
    :returns: the :class:`Host`, with ``origins`` naming the winning layer of each var.
    """
    merged = YamlMapping.at(*location)
    origins = {}
    layers = [(f"group {g}", all_groups[g].vars) for g in groups]
    layers.append((f"host {name}", own_vars))
    for label, layer in layers:
        for key, value in layer.items():
            key_location = where(layer, key)
            merged.put(key, value, key_location)
            origins[key] = f"{label} ({format_location(key_location)})"
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
    return Host(name, merged, groups, origins, format_location(location))
