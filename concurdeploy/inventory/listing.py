"""An :class:`~concurdeploy.inventory.model.Inventory` as ``ansible-inventory --list`` prints it
(ansible-core's ``cli/inventory.py`` ``json_inventory``), so other tools can read it and so the
two can be compared (tests/differential/).

Shape (JSON, keys sorted, 4-space indent, non-ASCII kept, as Ansible's ``dump``)::

    {"_meta": {"hostvars": {"w1": {"ansible_host": "192.0.2.10", "color": "web"}},
               "profile": "inventory_legacy"},
     "all": {"children": ["ungrouped", "web"]},
     "web": {"hosts": ["w1"], "children": [...]}}

- every group reachable from ``all`` with its direct ``hosts`` (in the order they were added;
  none for ``all``) and ``children`` (in order); a group with neither is left out (it still
  appears in its parent's ``children``);
- ``_meta.hostvars``: each host's merged vars as written (``Host.raw_vars``: ``ansible_*``
  names kept, group vars by depth, priority and name, then host vars; not rendered), without
  magic vars (Ansible's ``INTERNAL_STATIC_VARS``) and without ``ansible_group_priority``
  (a group property); a host with no vars is left out;
- ``!unsafe`` strings as ``{"__ansible_unsafe": "text"}``, dates as ISO 8601 text.

Secrets: a plain-text password cannot be in a loaded inventory (refused at load), and the
``*_env`` vars hold only the names of environment variables. Beyond that, :func:`ansible_list`
takes a ``mask`` function (the CLI passes the report's masking rule, so a var listed in
``secret_vars`` or named like a secret prints as ``********``). ``ansible-inventory`` would
print the values; an inventory without such vars lists identically.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable

from concurdeploy.inventory.model import Inventory, Unsafe

__all__ = ["INTERNAL_VARS", "PROFILE", "ansible_list", "dumps"]

#: ansible-core's ``constants.INTERNAL_STATIC_VARS``: never listed under ``_meta.hostvars``.
INTERNAL_VARS = frozenset((
    "ansible_async_path", "ansible_collection_name", "ansible_config_file", "ansible_dependent_role_names",
    "ansible_diff_mode", "ansible_facts", "ansible_forks", "ansible_inventory_sources", "ansible_limit",
    "ansible_play_batch", "ansible_play_hosts", "ansible_play_hosts_all", "ansible_play_role_names",
    "ansible_playbook_python", "ansible_role_name", "ansible_role_names", "ansible_run_tags",
    "ansible_skip_tags", "ansible_verbosity", "ansible_version", "inventory_dir", "inventory_file",
    "inventory_hostname", "inventory_hostname_short", "groups", "group_names", "hostvars", "playbook_dir",
    "play_hosts", "role_name", "role_names", "role_path", "role_uuid",
))

#: ``_meta.profile`` of ansible-core >= 2.18's output.
PROFILE = "inventory_legacy"

#: ``mask(var name, value, secret var names) -> value to print``.
Mask = Callable[[str, object, set], object]


def _json_key(key) -> str:
    """A mapping key as JSON writes it (``80`` → ``"80"``, ``True`` → ``"true"``), so that keys of
    mixed types sort as Ansible's output does: as strings."""
    return key if isinstance(key, str) else json.dumps(key, default=str)


def _plain(value):
    """``value`` as Ansible's JSON encoder gives it: ``Unsafe`` strings as
    ``{"__ansible_unsafe": ...}`` (json would print them as str), every mapping key a string,
    every set a list (sorted when it can be: a set has no order)."""
    if isinstance(value, Unsafe):
        return {"__ansible_unsafe": str(value)}
    if isinstance(value, dict):
        return {_json_key(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        try:
            return [_plain(v) for v in sorted(value)]
        except TypeError:
            return sorted((_plain(v) for v in value), key=repr)
    return value


def _host_vars(raw: dict, mask: Mask | None) -> dict:
    out = {k: v for k, v in raw.items() if k not in INTERNAL_VARS}
    if mask is not None:
        names = out.get("secret_vars")
        names = {n for n in names if isinstance(n, str)} if isinstance(names, list) else set()
        out = {k: mask(k, v, names) for k, v in out.items()}
    return _plain(out)


def ansible_list(inv: Inventory, mask: Mask | None = None) -> dict:
    """The data ``ansible-inventory --list`` would print for ``inv`` (see the module docstring).

    :param inv: a loaded inventory.
    :param mask: applied to each host var, or None to print values as they are.
    :returns: a JSON-ready dict (``Unsafe`` already encoded; dates left to :func:`dumps`).
    """
    result: dict = {}
    todo, seen = ["all"], {"all"}
    while todo:  # each group once; a group is only reached through children, so this ends
        group = inv.groups[todo.pop(0)]
        entry = {}
        if group.name != "all" and group.hosts:
            entry["hosts"] = list(group.hosts)
        if group.children:
            entry["children"] = list(group.children)
        if entry:
            result[group.name] = entry
        for child in group.children:
            if child not in seen:
                seen.add(child)
                todo.append(child)
    hostvars = {}
    for host in inv.hosts.values():
        listed = _host_vars(host.raw_vars, mask)
        if listed:
            hostvars[host.name] = listed
    result["_meta"] = {"hostvars": hostvars, "profile": PROFILE}
    return result


def _default(value):
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    raise TypeError(f"cannot list a value of type {type(value).__name__}: {value!r}")


def dumps(inv: Inventory, mask: Mask | None = None) -> str:
    """:func:`ansible_list` as JSON text, formatted as ``ansible-inventory --list`` prints it."""
    return json.dumps(ansible_list(inv, mask), sort_keys=True, indent=4, ensure_ascii=False,
                      default=_default)
