"""A tiny model of an inventory and its renderings as Ansible YAML and INI text, for the
generated corpus (:mod:`tests.differential.inventory_corpus`).

One logical inventory (:class:`Inv`: groups in definition order, each with host entries,
children and vars) is written in either format, so the same structure is checked through
both of Ansible's readers. Values are plain Python (str, int, bool, None, list, dict) or
:class:`Raw` (YAML text written verbatim: ``010``, ``yes``, ``!unsafe '{{ x }}'``).

YAML layout: ``all:`` holds ``vars``, ``hosts`` and ``children``; each group is written in
full under its FIRST parent (or under ``all``), and named again (``name:`` with no value)
under every other parent, the way people write shared child groups. INI layout: one
``[group]`` section per group with its host lines, then ``[group:children]`` and
``[group:vars]``; ``all``'s hosts are written before the first section (ungrouped).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

__all__ = ["Group", "Inv", "Raw", "ini", "yaml"]


@dataclass(frozen=True)
class Raw:
    """A YAML scalar written exactly as ``text`` (its type is what the YAML reader makes of it)."""

    text: str


@dataclass
class Group:
    """One group: ``hosts`` is a list of (host name or range, vars) entries in order (a name may
    come twice: a redefinition); ``children`` names groups; ``vars`` maps name → value.
    ``null_hosts``/``null_children``: write ``hosts:``/``children:`` with no value (YAML)."""

    name: str
    hosts: list[tuple[str, dict]] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    vars: dict = field(default_factory=dict)
    null_hosts: bool = False
    null_children: bool = False


@dataclass
class Inv:
    """Groups in definition order; ``all`` (vars, ungrouped hosts) is the group named ``all``."""

    groups: list[Group]

    def group(self, name: str) -> Group:
        """The group called ``name`` (KeyError if absent)."""
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(name)


def _scalar(value) -> str:
    """YAML text of a value: JSON (a subset of YAML) for plain data, verbatim for Raw."""
    if isinstance(value, Raw):
        return value.text
    return json.dumps(value, ensure_ascii=False)


def _key(name: str) -> str:
    return json.dumps(name, ensure_ascii=False)


def _yaml_vars(values: dict, pad: str) -> list[str]:
    return [f"{pad}{_key(k)}: {_scalar(v)}" for k, v in values.items()]


def _yaml_group(inv: Inv, g: Group, pad: str, placed: set[str]) -> list[str]:
    lines = []
    if g.null_hosts:
        lines.append(f"{pad}hosts:")
    elif g.hosts:
        lines.append(f"{pad}hosts:")
        for host, hvars in g.hosts:
            if hvars:
                lines.append(f"{pad}  {_key(host)}:")
                lines += _yaml_vars(hvars, pad + "    ")
            else:
                lines.append(f"{pad}  {_key(host)}:")
    if g.vars:
        lines.append(f"{pad}vars:")
        lines += _yaml_vars(g.vars, pad + "  ")
    if g.null_children:
        lines.append(f"{pad}children:")
    elif g.children:
        lines.append(f"{pad}children:")
        for child in g.children:
            lines.append(f"{pad}  {_key(child)}:")
            if child not in placed:
                placed.add(child)
                try:
                    sub = inv.group(child)
                except KeyError:  # named but never defined: Ansible makes an empty group
                    continue
                lines += _yaml_group(inv, sub, pad + "    ", placed)
    return lines


def yaml(inv: Inv) -> str:
    """The inventory as one Ansible YAML document (see the module docstring for the layout)."""
    try:
        top = inv.group("all")
    except KeyError:
        top = Group("all")
    named = {c for g in inv.groups for c in g.children}
    roots = [g.name for g in inv.groups if g.name != "all" and g.name not in named]
    shown = Group("all", hosts=top.hosts, vars=top.vars,
                  children=list(top.children) + [r for r in roots if r not in top.children])
    placed: set[str] = {"all"}
    return "\n".join(["all:"] + _yaml_group(inv, shown, "  ", placed)) + "\n"


def _ini_value(value) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, str) and (" " in value or value == ""):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _ini_host(host: str, hvars: dict) -> str:
    return " ".join([host] + [f"{k}={_ini_value(v)}" for k, v in hvars.items()])


def ini(inv: Inv) -> str:
    """The inventory as one Ansible INI file (see the module docstring for the layout)."""
    lines: list[str] = []
    try:
        top = inv.group("all")
    except KeyError:
        top = Group("all")
    lines += [_ini_host(h, v) for h, v in top.hosts]
    for g in inv.groups:
        if g.name == "all":
            continue
        lines += ["", f"[{g.name}]"] + [_ini_host(h, v) for h, v in g.hosts]
        if g.children:
            lines += ["", f"[{g.name}:children]"] + list(g.children)
        if g.vars:
            lines += ["", f"[{g.name}:vars]"] + [f"{k}={_ini_value(v)}" for k, v in g.vars.items()]
    if top.vars:
        lines += ["", "[all:vars]"] + [f"{k}={_ini_value(v)}" for k, v in top.vars.items()]
    if top.children:
        lines += ["", "[all:children]"] + list(top.children)
    return "\n".join(lines).lstrip("\n") + "\n"
