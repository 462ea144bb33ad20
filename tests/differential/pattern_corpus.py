"""Corpus for the host-pattern differential test: inventories, a pattern generator, and the
reference side (ansible-core's own ``InventoryManager``) run as a script.

Imported by ``test_patterns_vs_ansible.py`` for :data:`INVENTORIES`, :func:`generate` and
:data:`DIVERGENCES` (stdlib only). Run as a script, it is the reference::

    python3 tests/differential/pattern_corpus.py < request.json > answer.json

``request.json``: ``{"inventory": PATH, "patterns": [...]}``. It builds ONE
``InventoryManager(DataLoader(), [PATH])`` (the code ``ansible``/``ansible-playbook`` run)
and, for each pattern, ``list_hosts(pattern)`` after clearing the pattern caches, as
``ansible -i PATH PATTERN --list-hosts`` does. ``answer.json``::

    {"real": {pattern: [host, ...] | {"error": message}},
     "warnings": {pattern: [message, ...]},          # Ansible's warnings for that pattern
     "declared_order": {pattern: [host, ...] | {"error": message}}}

``declared_order`` is the same evaluation with one change, in a second ``InventoryManager``:
``Group._walk_relationship`` visits each level of groups in the order they were reached
instead of iterating a ``set`` of ``Group`` objects (hashed by address, so Ansible's order
of groups two or more levels down under different parents varies between runs). It is one
of the orders the real code produces, the one concurdeploy documents.
"""

from __future__ import annotations

import json
import random
import re
import sys

# --------------------------------------------------------------------------- inventories

#: name -> YAML text. ``fleet``: 24 hosts with names that sort non-trivially (web10 < web2 <
#: web9, Web3, db-10, dots, IPv4/IPv6, unicode), nested groups, hosts in several groups, a
#: group under two parents, an empty group, groups two levels down under different parents;
#: ``deep``: four levels and a diamond; ``flat``: ungrouped hosts only; ``toplevel``: groups
#: outside ``all:``.
INVENTORIES = {
    "fleet": """\
all:
  hosts:
    bastion.example:
    "2001:db8::10":
    10.0.0.5:
  children:
    lb:
      children:
        haproxy:
          hosts:
            lb10:
            lb9:
            lb1:
        nginx:
          hosts:
            lb2:
            "fe80::1":
    web:
      children:
        web_eu:
          hosts:
            web10:
            web2:
            web1:
            Web3:
        web_us:
          hosts:
            web20:
            web9:
            web-a:
            web_b:
      hosts:
        web0:
    db:
      hosts:
        db-b:
        db-a:
        db-10:
        db-9:
    cache:
      hosts:
        cache.eu.example:
        cache.us.example:
        nœud1:
    prod:
      children:
        haproxy:
        web_eu:
        db:
      hosts:
        bastion.example:
    staging:
      children:
        nginx:
        web_us:
      hosts:
        cache.us.example:
    eu:
      hosts:
        lb10:
        web10:
        db-a:
        cache.eu.example:
    canary:
      hosts:
        web9:
        lb1:
        db-9:
    empty_group:
""",
    "deep": """\
all:
  children:
    region:
      children:
        zone_a:
          children:
            rack_a1:
              hosts:
                n07:
                n01:
            rack_a2:
              hosts:
                n12:
                n02:
        zone_b:
          children:
            rack_b1:
              hosts:
                n03:
                n11:
            rack_a2:
    role:
      children:
        compute:
          hosts:
            n01:
            n02:
            n03:
        storage:
          children:
            rack_b1:
          hosts:
            n12:
    solo:
      hosts:
        n99:
""",
    "flat": """\
all:
  hosts:
    b2:
    a10:
    a9:
    A1:
    a-1:
    a_1:
    a.1:
    "fe80::2":
    192.168.0.10:
    z:
""",
    # Top-level groups outside ``all:``, one also a child of another: Ansible links only a
    # parentless top-level group to ``all``, after parsing (``reconcile_inventory``).
    "toplevel": """\
web:
  hosts:
    w2:
    w1:
prod:
  children:
    web:
    db:
      hosts:
        d1:
all:
  children:
    lb:
      hosts:
        l1:
""",
}

#: Patterns where concurdeploy refuses on purpose and Ansible selects hosts:
#: ``(inventory, pattern, why)``. The test checks Ansible really selects hosts for each.
DIVERGENCES = [
    ("fleet", "localhost", "Ansible invents an implicit localhost; ours must be in the inventory"),
    ("fleet", "web[:2]", "Ansible reads [:2] as a glob: it selects host web2, not a slice"),
    ("fleet", "web[-2:]", "Ansible reads [-2:] as a glob: it selects host web2, not a slice"),
    ("fleet", "web_eu[0-1]", "[x-y] was removed from Ansible, which still reads it as [x:y]"),
    ("fleet", "~[", "Ansible's splitter drops the stray '[': '~' matches every host"),
    ("fleet", "~web[", "Ansible's splitter drops the stray '[': '~web' matches"),
    ("fleet", "web:!wbe2", "Ansible ignores a term naming nothing (warning): deploys to all of web"),
    ("fleet", "db,web_eu[7:]", "Ansible selects nothing for the empty slice, silently"),
    ("fleet", "web:&prod,db", "with a ',' Ansible does not split on ':': 'web:&prod' names nothing"),
]


# --------------------------------------------------------------------------- the generator

def _names(text: str) -> tuple[list[str], list[str]]:
    """(group names, host names) of one corpus inventory, in file order (a light reader
    for the corpus's own regular layout: groups are keys followed by hosts/children/vars
    or nothing, hosts are keys under ``hosts:``)."""
    groups, hosts, under_hosts = [], [], None
    for line in text.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        key = line.strip().rstrip(":").strip('"')
        if under_hosts is not None and indent > under_hosts:
            if key not in hosts:
                hosts.append(key)
            continue
        under_hosts = indent if key == "hosts" else None
        if key not in ("hosts", "children", "vars", "all") and key not in groups:
            groups.append(key)
    return groups, hosts


def _globs(names: list[str]) -> list[str]:
    out = []
    for name in names:
        if len(name) >= 3 and ":" not in name:
            out += [name[:2] + "*", "*" + name[-2:], name[:-1] + "?", name[:1] + "[!" + name[1] + "]*"]
    return out


def _regexes(names: list[str]) -> list[str]:
    fixed = ["~.*", "~[A-Z]", "~.*\\d$", "~.*[.]example$", "~(db|lb)", "~web\\d+$", "~n0[1-3]"]
    out = [rx for rx in fixed if any(re.match(rx[1:], name) for name in names)] + ["~zz"]
    for name in names:
        if len(name) >= 3 and ":" not in name:
            out += ["~" + re.escape(name[:3]), "~.*" + re.escape(name[-2:]) + "$"]
    return out


def _subscripts(groups: list[str]) -> list[str]:
    out = ["all[0]", "all[-1]", "all[3:5]", "all[10:]", "*[1]", "*[-2]"]
    forms = ["[0]", "[1]", "[-1]", "[-2]", "[0:1]", "[1:2]", "[1:]", "[0:0]", "[2:0]", "[3]", "[9]"]
    for group in groups:
        out += [group + form for form in forms]
        if len(group) >= 3:
            out.append(group[:2] + "*" + forms[len(group) % len(forms)])
    return out


def generate(inventory: str, combos: int = 160, seed: int = 12) -> list[str]:
    """Patterns for one corpus inventory: every name, globs, regexes, subscripts, and
    ``combos`` random combinations of 2-4 of those with ``:``/``,``/space separators and
    ``&``/``!`` prefixes.

    :param inventory: a key of :data:`INVENTORIES`.
    :returns: distinct patterns, deterministic for a given ``seed``.
    """
    text = INVENTORIES[inventory]
    groups, hosts = _names(text)
    rng = random.Random(f"{seed}:{inventory}")
    singles = ["all", "*", "ungrouped", *groups, *hosts]
    derived = _globs(groups + hosts) + _regexes(groups + hosts) + _subscripts(groups)
    atoms = singles + derived
    plain_atoms = [atom for atom in atoms if ":" not in atom and "," not in atom]
    patterns = list(atoms)
    for _ in range(combos):
        separator = rng.choice([":", ",", ", ", " : ", ":", ","])
        pool = atoms if "," in separator else plain_atoms
        picked = rng.sample(pool, rng.randint(2, 4))
        terms = [picked[0] if rng.random() < 0.8 else rng.choice("&!") + picked[0]]
        terms += [rng.choice(["", "", "&", "!"]) + atom for atom in picked[1:]]
        patterns.append(separator.join(terms))
    return list(dict.fromkeys(patterns))


# --------------------------------------------------------------------------- reference side

def _ordered_walk(self, rel, include_self=False, preserve_ordering=False):
    """``Group._walk_relationship`` with each level visited in the order it was reached."""
    seen = set()
    unprocessed = dict.fromkeys(getattr(self, rel))
    if include_self:
        unprocessed = {self: None, **unprocessed}
    ordered = ([self] if include_self else []) + list(getattr(self, rel))
    while unprocessed:
        seen.update(unprocessed)
        new = {}
        for group in unprocessed:
            for item in getattr(group, rel):
                new[item] = None
                if preserve_ordering and item not in seen:
                    ordered.append(item)
        unprocessed = {item: None for item in new if item not in seen}
    return ordered if preserve_ordering else seen


def _evaluate(manager, patterns, warnings=None):
    from ansible.inventory import manager as manager_module

    answers = {}
    caught: list[str] = []
    manager_module.display.warning = lambda msg, *a, **k: caught.append(str(msg))
    for pattern in patterns:
        caught.clear()
        manager.clear_caches()
        try:
            answers[pattern] = [getattr(host, "name", host) for host in manager.list_hosts(pattern)]
        except Exception as exc:  # noqa: BLE001 - any refusal of the reference is data
            answers[pattern] = {"error": f"{type(exc).__name__}: {exc}"}
        if warnings is not None:
            warnings[pattern] = list(caught)
    return answers


def reference_main() -> int:
    """Read the request on stdin, answer on stdout (see the module docstring)."""
    request = json.load(sys.stdin)
    from ansible.inventory.group import Group
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader

    source, patterns = request["inventory"], request["patterns"]
    warnings: dict = {}
    real = _evaluate(InventoryManager(loader=DataLoader(), sources=[source]), patterns, warnings)
    Group._walk_relationship = _ordered_walk
    declared = _evaluate(InventoryManager(loader=DataLoader(), sources=[source]), patterns)
    json.dump({"real": real, "warnings": warnings, "declared_order": declared}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(reference_main())
