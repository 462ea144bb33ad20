"""Load an Ansible-style YAML inventory into frozen, picklable :class:`Host` records.

Format (Ansible's YAML inventory)::

    all:                        # top-level keys are groups; any other than ``all`` is a child of ``all``
      vars: {user: deploy}      # a group mapping may only hold ``hosts``, ``children`` and ``vars``
      children:
        lb:
          children:
            haproxy:
              hosts:
                lb1: {ansible_host: 10.0.0.1, port: 2222}   # host name -> vars mapping, or empty
                lb2:
              vars: {reload: systemctl reload haproxy}
        web: {hosts: {web1: , web2: }}
        db:                     # an empty group (Ansible allows it); it may be filled elsewhere

``load(path)`` takes a file, or a directory whose top-level ``*.yml``/``*.yaml`` files are
read in name order (subdirectories and dot-files are not read) and merged into one
inventory: the same group in two files gets the hosts, children and vars of both.

Variable precedence, lowest first (a later layer replaces a key wholesale, no deep merge):

1. group ``all`` (depth 0);
2. the other groups that contain the host, directly or through a descendant, in order of
   depth (the longest ``children`` path from ``all``), shallower first; groups at the same
   depth in alphabetical order by name (Ansible's rule) — so a child group beats its parent;
3. the host's own vars.

Then magic vars are added when absent: ``inventory_hostname`` (the name),
``inventory_file`` (the file that first defined the host), ``inventory_dir`` (that file's
absolute directory), ``group_names`` (sorted, without ``all``/``ungrouped``); and
``host`` = the inventory name when no address was given. ``Host.origins`` says where each
final value came from.

Connection aliases are renamed at load time: ``ansible_host`` → ``host``, ``ansible_port``
→ ``port``, ``ansible_user`` → ``user``, ``ansible_ssh_private_key_file`` → ``key_file``.
Connection vars are type-checked (see :data:`CONNECTION_VARS`); other vars are free-form,
except that a password written in plain text (``password``, ``ansible_password``,
``ansible_ssh_pass``, ``ansible_become_pass`` …, see :data:`PLAINTEXT_PASSWORD_VARS`) is
refused: the error names file, line and the ``*_env`` var to use, never the value.

Every mapping read from YAML is a :class:`YamlMapping`: a ``dict`` that remembers the file
and line of itself and of each key, so later code can point at the line of, say, a
``files:`` entry with :func:`where`. Every error is an :class:`InventoryError` naming file,
line and key.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field

import yaml

from concurdeploy.exceptions import InventoryError, NoHostsMatched, UnknownGroup

__all__ = ["CONNECTION_VARS", "Group", "Host", "Inventory", "YamlMapping", "load", "where"]

#: Keys allowed in a group mapping.
GROUP_KEYS = ("hosts", "children", "vars")

#: Ansible spelling -> concurdeploy spelling.
ALIASES = {
    "ansible_host": "host",
    "ansible_port": "port",
    "ansible_user": "user",
    "ansible_ssh_private_key_file": "key_file",
}

HOST_KEY_POLICIES = ("strict", "accept-new", "off")

#: ``(path, 1-based line)``; either may be None when unknown.
Location = tuple["str | None", "int | None"]


# --------------------------------------------------------------------------- YAML with lines

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


_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    """SafeLoader whose mappings are :class:`YamlMapping` and that rejects duplicate keys."""

    def __init__(self, stream, path: str):
        super().__init__(stream)
        self.path = path

    def construct_located_mapping(self, node):
        """Build a :class:`YamlMapping` for ``node`` (two steps, so recursive aliases work).

        :raises InventoryError: a key appears twice in the mapping.
        """
        data = YamlMapping.at(self.path, node.start_mark.line + 1)
        yield data
        explicit = {id(key) for key, _ in node.value if key.tag != _MERGE_TAG}
        self.flatten_mapping(node)  # resolves "<<: *anchor"; merged keys come first
        first_line = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=False)
            line = key_node.start_mark.line + 1
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    "found unhashable key", key_node.start_mark) from None
            if id(key_node) in explicit:
                if key in first_line:
                    raise InventoryError(
                        f"duplicate key {key!r} in one mapping (first at line {first_line[key]}); "
                        "YAML would silently keep only the last one: remove or rename one",
                        self.path, line, str(key))
                first_line[key] = line
            data.put(key, self.construct_object(value_node, deep=False), (self.path, line))


_Loader.add_constructor("tag:yaml.org,2002:map", _Loader.construct_located_mapping)


def _read_yaml(path: str):
    """Parse one YAML file.

    :returns: the document (``YamlMapping``, list, scalar, or None if empty).
    :raises InventoryError: unreadable file, malformed YAML (with its line), duplicate key.
    """
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except (OSError, UnicodeDecodeError) as err:
        raise InventoryError(f"cannot read inventory file: {err}", path) from None
    loader = _Loader(text, path)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(err, "problem", None) or str(err)
        context = getattr(err, "context", None)
        detail = f"{problem} ({context})" if context else problem
        raise InventoryError(f"malformed YAML: {detail}; fix the syntax on this line "
                             "(indent with spaces, quote values holding ': ' or '#')",
                             path, line) from None
    finally:
        loader.dispose()


# --------------------------------------------------------------------------- connection vars

def _check_str(name, value):
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _check_port(name, value):
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError(f"{name} must be an integer from 1 to 65535, got {value!r}")
    return value


def _check_policy(name, value):
    if value is False:  # YAML 1.1 reads a bare ``off`` as false
        value = "off"
    if value not in HOST_KEY_POLICIES:
        raise ValueError(f"{name} must be one of {', '.join(HOST_KEY_POLICIES)}, got {value!r}")
    return value


def _check_seconds(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return value


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _check_jump(name, value):
    hops = value if isinstance(value, list) else [value]
    if not hops or not all(isinstance(h, str) and h.strip() for h in hops):
        raise ValueError(f"{name} must be a jump host ('user@bastion:port', an inventory host "
                         f"name, or 'none') or a list of them, got {_kind(value)}")
    return value


#: Connection var -> checker ``(name, value) -> normalised value``, raising ValueError.
CONNECTION_VARS = {
    "host": _check_str,
    "port": _check_port,
    "user": _check_str,
    "key_file": _check_str,
    "key_env": _check_str,
    "password_env": _check_str,
    "known_hosts": _check_str,
    "host_key_policy": _check_policy,
    "connect_timeout": _check_seconds,
    "command_timeout": _check_seconds,
    "forks": _check_positive_int,
    "ssh_config": _check_str,
    "jump": _check_jump,
}

#: Vars that would hold a password in plain text -> the var to use instead (it names an
#: environment variable holding the password).
PLAINTEXT_PASSWORD_VARS = {
    "password": "password_env",
    "ansible_password": "password_env",
    "ansible_ssh_pass": "password_env",
    "ansible_ssh_password": "password_env",
    "ansible_become_pass": "become_password_env",
    "ansible_become_password": "become_password_env",
    "ansible_sudo_pass": "become_password_env",
    "become_password": "become_password_env",
}


def _refuse_plaintext_password(key, value, owner: str, location: Location) -> None:
    """:raises InventoryError: ``key`` is a password var with a literal value. The value
    itself is never put in the message."""
    fix = PLAINTEXT_PASSWORD_VARS.get(key)
    if fix is None or value is None or value == "":
        return
    raise InventoryError(
        f"{owner}: {key!r} holds a password in plain text, which the inventory must not "
        f"(it is read by everyone who can read the repository); put it in an environment "
        f"variable and set {fix}: NAME (the variable's name) instead",
        *location, key=str(key))


def _kind(value) -> str:
    """Describe a YAML value's type for an error message ("a list", "the string 'x'")."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the string {value!r}"
    return f"{type(value).__name__} {value!r}"


def _normalise_vars(mapping, owner: str) -> YamlMapping:
    """Rename connection aliases and check connection var types.

    :param mapping: a vars ``YamlMapping`` (not modified).
    :param owner: ``"group 'web'"`` or ``"host 'lb1'"``, for messages.
    :returns: a new ``YamlMapping`` with the same locations.
    :raises InventoryError: bad type or value; an alias and its target given with
        different values.
    """
    out = YamlMapping.at(*where(mapping))
    spelled = {}
    for key, value in mapping.items():
        location = where(mapping, key)
        _refuse_plaintext_password(key, value, owner, location)
        name = ALIASES.get(key, key)
        check = CONNECTION_VARS.get(name)
        if check is not None:
            try:
                value = check(key, value)
            except ValueError as err:
                raise InventoryError(f"{owner}: {err}", *location, key=str(key)) from None
        if name in out and out[name] != value:
            raise InventoryError(
                f"{owner} sets both {spelled[name]!r} and {key!r} with different values "
                f"({out[name]!r} vs {value!r}); both mean {name!r}: keep one",
                *location, key=str(key))
        if name not in out:
            out.put(name, value, location)
            spelled[name] = key
    return out


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


def _format_location(location: Location) -> str:
    path, line = location
    return f"{path}:{line}" if line else f"{path}"


def _name_list(names, limit: int = 30) -> str:
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names) - limit} more)" if len(names) > limit else "")


def _suggest(name: str, candidates) -> str:
    """Return ``"; did you mean 'x'?"`` for close matches of ``name`` (difflib), or ``""``."""
    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(c) for c in close) + "?"


class Inventory:
    """Hosts and groups loaded from one or more files.

    :ivar location: the path given to :func:`load` (file or directory), for messages.
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
                f"(known groups: {_name_list(self.groups)}){_suggest(name, self.groups)}"
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
        """Return the hosts an Ansible-style pattern selects; see :func:`patterns.select`."""
        from concurdeploy.inventory import patterns

        return patterns.select(self, pattern)


# --------------------------------------------------------------------------- building

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
                f"{target[key]!r} at {_format_location(where(target, key))}; keep one",
                *location, key=str(key))
        if key not in target:
            target.put(key, value, location)


class _Builder:
    """Collects groups and hosts from parsed files, then builds an :class:`Inventory`."""

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
                f"{_kind(data)} (concurdeploy reads Ansible's YAML inventory format, not INI)",
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
                f"got {_kind(body)}", *location, key=name)
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
                    f"under 'children:'{_suggest(str(key), GROUP_KEYS)}",
                    *key_location, key=str(key))

    def _add_group_vars(self, draft: _GroupDraft, value, location: Location) -> None:
        if value is None:
            return
        if not isinstance(value, dict):
            raise InventoryError(f"vars of group {draft.name!r} must be a mapping "
                                 f"(name: value), got {_kind(value)}", *location, key="vars")
        owner = f"group {draft.name!r}"
        _merge_into(draft.vars, _normalise_vars(value, owner), owner)

    def _add_hosts(self, group: str, hosts, location: Location) -> None:
        if hosts is None:
            return
        if not isinstance(hosts, dict):
            raise InventoryError(
                f"hosts of group {group!r} must be a mapping of host name to vars, got "
                f"{_kind(hosts)}; write each host as 'name:' on its own line, not '- name'",
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
                f"{_kind(host_vars)}; to give its address write '{name}: {{host: ADDRESS}}'",
                *location, key=name)
        owner = f"host {name!r}"
        normalised = _normalise_vars(host_vars, owner)
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
                f"(or empty), got {_kind(children)}", *location, key="children")
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
                              _format_location(d.location) if d.location else "<implicit>")
                  for name, d in self.groups.items()}
        hosts = {}
        for draft in self.hosts.values():
            names = _ancestors(draft.groups, parents)
            ordered = tuple(sorted(names, key=lambda g: (depth[g], g)))
            hosts[draft.name] = _make_host(draft, ordered, groups)
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


def _make_host(draft: _HostDraft, groups: tuple[str, ...], all_groups: dict[str, Group]) -> Host:
    """Merge vars by precedence (``groups`` already ordered) and add magic vars."""
    merged = YamlMapping.at(*draft.location)
    origins = {}
    layers = [(f"group {g}", all_groups[g].vars) for g in groups]
    layers.append((f"host {draft.name}", draft.vars))
    for label, layer in layers:
        for key, value in layer.items():
            location = where(layer, key)
            merged.put(key, value, location)
            origins[key] = f"{label} ({_format_location(location)})"
    path = draft.location[0]
    magic = {
        "inventory_hostname": draft.name,
        "inventory_file": path,
        "inventory_dir": os.path.dirname(os.path.abspath(path)),
        "group_names": sorted(g for g in groups if g not in ("all", "ungrouped")),
    }
    for key, value in magic.items():
        if key not in merged:
            merged.put(key, value, (None, None))
            origins[key] = "magic variable"
    if "host" not in merged:
        merged.put("host", draft.name, (None, None))
        origins["host"] = "default: the inventory name"
    return Host(draft.name, merged, groups, origins, _format_location(draft.location))


# --------------------------------------------------------------------------- entry point

def _inventory_files(location: str) -> list[str]:
    """Return the files to read for ``location`` (a file, or a directory's top-level YAML).

    :raises InventoryError: the path does not exist, or the directory has no YAML file.
    """
    if os.path.isfile(location):
        return [location]
    if not os.path.isdir(location):
        raise InventoryError(f"inventory not found: {location}; pass -i PATH or set "
                             "CONCURDEPLOY_INVENTORY")
    files = sorted(
        name for name in os.listdir(location)
        if name.endswith((".yml", ".yaml")) and not name.startswith(".")
        and os.path.isfile(os.path.join(location, name)))
    if not files:
        raise InventoryError("directory holds no *.yml or *.yaml inventory file (subdirectories "
                             "are not read); pass -i with a file or another directory",
                             location)
    return [os.path.join(location, name) for name in files]


def load(path: str | os.PathLike) -> Inventory:
    """Load an inventory file, or every top-level ``*.yml``/``*.yaml`` file of a directory.

    :param path: file or directory.
    :returns: one :class:`Inventory` merging all files.
    :raises InventoryError: see the module docstring; names file, line and key.
    """
    location = os.fspath(path)
    files = _inventory_files(location)
    builder = _Builder()
    for file in files:
        builder.add_document(_read_yaml(file), file)
    return builder.build(location, tuple(files))
