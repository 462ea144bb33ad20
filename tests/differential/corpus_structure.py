"""Generated corpus cases about an inventory's structure: nesting, precedence ties,
``ansible_group_priority``, redefinitions, host ranges, empty/null groups, unicode names.

Most are written both as YAML and as INI from one model (:mod:`.corpus_render`).
"""

from __future__ import annotations

import itertools

from tests.differential.corpus_case import Case, Refusal, line_of
from tests.differential.corpus_render import Group, Inv, ini, yaml

__all__ = ["RANGES", "structure_cases"]


def _both(name: str, inv: Inv, about: str, formats=("yaml", "ini")) -> list[Case]:
    """The same inventory as ``hosts.yml`` and as ``hosts.ini`` (entry: that file)."""
    out = []
    for fmt in formats:
        file = "hosts.yml" if fmt == "yaml" else "hosts.ini"
        text = yaml(inv) if fmt == "yaml" else ini(inv)
        out.append(Case(f"{name}_{fmt}", {file: text}, entry=file, about=f"{about} ({fmt.upper()})"))
    return out


def _family_nesting() -> list[Case]:
    """A chain g1 > g2 > … > gN (N = 1..4), each setting ``level``; host ``leaf`` in the deepest,
    ``side`` in g1; "multi": leaf also in ``other`` (depth 1, a name sorting after every gN)."""
    cases = []
    for depth, multi in itertools.product(range(1, 5), (False, True)):
        groups = [Group("all", vars={"level": 0, "origin": "all"})]
        for d in range(1, depth + 1):
            g = Group(f"g{d}", vars={"level": d, f"from_g{d}": True})
            if d < depth:
                g.children.append(f"g{d + 1}")
            groups.append(g)
        groups[1].hosts.append(("side.example", {}))
        groups[-1].hosts.append(("leaf.example", {"own": "leaf"}))
        if multi:
            groups.append(Group("other", hosts=[("leaf.example", {})], vars={"level": 99, "origin": "other"}))
        cases += _both(f"nest_d{depth}_{'multi' if multi else 'single'}", Inv(groups),
                       f"nesting depth {depth}" + (", host in two branches" if multi else ""))
    return cases


def _family_ties() -> list[Case]:
    """Three sibling groups set ``color`` for one host: Ansible applies them by name, whatever
    the order they are defined in (all six orders)."""
    cases = []
    for order in itertools.permutations(("alpha", "beta", "gamma")):
        groups = [Group(n, hosts=[("h.example", {})], vars={"color": n, f"only_{n}": 1}) for n in order]
        groups.append(Group("solo", hosts=[("s.example", {})], vars={"color": "solo"}))
        cases += _both("tie_" + "_".join(n[0] for n in order), Inv(groups),
                       f"precedence tie between siblings defined {'/'.join(order)}")
    return cases


def _family_priority() -> list[Case]:
    """``ansible_group_priority``: beats the name order, not the depth; equal priorities tie."""
    def inv(alpha_vars, beta_vars, parent_vars=None):
        groups = [Group("alpha", hosts=[("h.example", {})], vars={"color": "alpha", **alpha_vars}),
                  Group("beta", hosts=[("h.example", {})], vars={"color": "beta", **beta_vars})]
        if parent_vars is not None:
            groups = [Group("parent", children=["alpha"], vars={"color": "parent", **parent_vars})] + groups
        return Inv(groups)

    cases = []
    cases += _both("prio_beats_name", inv({"ansible_group_priority": 10}, {}), "priority 10 beats the name order")
    cases += _both("prio_equal", inv({"ansible_group_priority": 5}, {"ansible_group_priority": 5}),
                   "equal priorities fall back to the name")
    cases += _both("prio_vs_depth", inv({}, {}, {"ansible_group_priority": 10}), "priority of a parent vs depth")
    cases += _both("prio_zero_negative", inv({"ansible_group_priority": 0}, {"ansible_group_priority": -1}),
                   "priorities 0 and -1")
    cases += _both("prio_string", inv({"ansible_group_priority": "10"}, {}), "priority given as a string",
                   formats=("yaml",))
    text = yaml(inv({}, {}))
    cases.append(Case("refuse_priority_in_group_vars",
                      {"hosts.yml": text, "group_vars/alpha.yml": "ansible_group_priority: 7\n"},
                      refuse=Refusal("group_vars/alpha.yml", (1,), "Ansible ignores a priority set in group_vars "
                                     "(it only shows as a var)"),
                      about="priority set in group_vars/alpha.yml"))
    return cases


def _family_redefinition() -> list[Case]:
    """A host or group defined more than once: vars merged, the later definition wins."""
    cases = []
    two_groups = Inv([Group("web", hosts=[("h.example", {"role": "web", "a": 1})]),
                      Group("db", hosts=[("h.example", {"role": "db", "b": 2})])])
    cases += _both("redef_host_two_groups", two_groups, "host vars given in two groups")
    cases.append(Case("redef_host_same_group_ini",
                      {"hosts.ini": "[web]\nh.example a=1 b=1\nh.example a=2\n"}, entry="hosts.ini",
                      about="a host line repeated in one INI section"))
    cases.append(Case("redef_group_sections_ini",
                      {"hosts.ini": "[web]\na.example\n\n[web:vars]\nx=1\n\n[web]\nb.example\n\n[web:vars]\nx=2\ny=3\n"},
                      entry="hosts.ini", about="an INI section and its :vars given twice"))
    cases.append(Case("redef_group_nested_yaml",
                      {"hosts.yml": "all:\n  children:\n    p1:\n      children:\n        web:\n          hosts:\n"
                                    "            a.example: {x: 1}\n          vars: {v: p1}\n"
                                    "    p2:\n      children:\n        web:\n          hosts:\n"
                                    "            b.example:\n            a.example: {x: 2}\n          vars: {v: p2, w: 1}\n"},
                      entry="hosts.yml", about="one group written in full under two parents"))
    for second in ("yml", "ini"):
        b = "all:\n  hosts:\n    h.example:\n      x: from_b\n      only_b: 1\n" if second == "yml" else \
            "h.example x=from_b only_b=1\n"
        cases.append(Case(f"redef_host_two_files_{second}",
                          {"a.yml": "all:\n  children:\n    web:\n      hosts:\n        h.example: {x: from_a, only_a: 1}\n",
                           f"b.{second}": b},
                          about=f"a host in a.yml and again in b.{second} (files read by name)"))
    cases.append(Case("redef_dict_var",
                      {"hosts.yml": "all:\n  children:\n    g1:\n      hosts:\n        h.example: {cfg: {a: 1, n: {x: 1}}}\n"
                                    "    g2:\n      hosts:\n        h.example: {cfg: {b: 2, n: {y: 2}}}\n"},
                      entry="hosts.yml", about="a dict host var given twice (merge or replace)"))
    return cases


RANGES = [("lead0", "web[01:05].example"), ("letters", "db-[a:c].example"), ("step", "h[1:9:4].example"),
          ("double", "n[0:2]-[a:b].example"), ("widths", "x[8:11].example"), ("three0", "app[001:003].example"),
          ("letterstep", "z[a:e:2].example")]


def _family_ranges() -> list[Case]:
    """Host ranges: each pattern in a group with a host var, and beside a plain host."""
    cases = []
    for label, pattern in RANGES:
        inv = Inv([Group("pool", hosts=[("plain.example", {}), (pattern, {"in_range": True})], vars={"p": 1})])
        cases += _both(f"range_{label}", inv, f"host range {pattern}")
    cases.append(Case("range_leading_bracket_yaml", {"hosts.yml": 'all:\n  hosts:\n    "[1:3].node.example":\n'},
                      entry="hosts.yml", about="a range at the start of a name"))
    return cases


def _family_empty() -> list[Case]:
    """Empty and null groups, and children named before, after or without a definition."""
    cases = []
    cases += _both("empty_group", Inv([Group("empty"), Group("web", hosts=[("w.example", {})])]),
                   "a group with no host")
    cases += _both("child_defined_later",
                   Inv([Group("parent", children=["kid"], vars={"p": 1}),
                        Group("kid", hosts=[("k.example", {})], vars={"k": 1})]),
                   "children: naming a group defined later")
    undefined = Inv([Group("parent", children=["ghost"], hosts=[("p.example", {})])])
    cases += _both("child_undefined", undefined, "children: naming a group defined nowhere", formats=("yaml",))
    text = ini(undefined)
    cases.append(Case("refuse_child_undefined_ini", {"hosts.ini": text}, entry="hosts.ini",
                      refuse=Refusal("hosts.ini", (line_of(text, "ghost"),),
                                     "Ansible's INI reader fails on it and goes on with an EMPTY inventory, exit 0"),
                      about="[parent:children] naming a group defined nowhere (INI)"))
    cases += _both("only_vars_group", Inv([Group("cfg", vars={"x": 1}), Group("web", hosts=[("w.example", {})])]),
                   "a group with vars and no hosts")
    null = "all:\n  children:\n    a:\n      hosts:\n    b:\n      children:\n    c:\n      vars:\n    d:\n" \
           "    e:\n      hosts:\n        e1.example:\n"
    cases.append(Case("null_sections_yaml", {"hosts.yml": null}, entry="hosts.yml",
                      about="hosts:, children:, vars: null and a group with no value"))
    cases.append(Case("top_level_groups_yaml",
                      {"hosts.yml": "web:\n  hosts:\n    w.example:\ndb:\n  hosts:\n    d.example:\n  vars: {x: 1}\n"},
                      entry="hosts.yml", about="groups at the top level, without all:"))
    cases.append(Case("explicit_ungrouped",
                      {"hosts.yml": "all:\n  hosts:\n    a.example:\n  children:\n    ungrouped:\n      hosts:\n"
                                    "        u.example: {x: 1}\n    web:\n      hosts:\n        a.example:\n"},
                      entry="hosts.yml", about="an explicit ungrouped group; an all: host also in web"))
    cases.append(Case("child_in_other_file",
                      {"a.yml": "all:\n  children:\n    parent:\n      children:\n        kid:\n",
                       "b.yml": "all:\n  children:\n    kid:\n      hosts:\n        k.example: {v: 1}\n"},
                      about="children: naming a group defined in another file"))
    cases.append(Case("empty_file_beside",
                      {"a.yml": "all:\n  hosts:\n    a.example:\n", "b.yml": "# nothing yet\n"},
                      about="a folder with an inventory and an empty (comment-only) file"))
    return cases


def _family_unicode() -> list[Case]:
    """Unicode group and host names (Ansible keeps them, at most with a warning)."""
    cases = []
    cases += _both("unicode_latin", Inv([Group("grüppe", hosts=[("hôst.example", {"naïve": "ünïcode"})])]),
                   "accented names and values")
    cases += _both("unicode_cyrillic_cjk", Inv([Group("日本", hosts=[("сервер.example", {})]),
                                                Group("web-servers", hosts=[("сервер.example", {"x": "ок"})])]),
                   "Cyrillic host, CJK group, a dash in a group name")
    return cases




def structure_cases() -> list[Case]:
    """Every structural case, in a fixed order."""
    return (_family_nesting() + _family_ties() + _family_priority() + _family_redefinition()
            + _family_ranges() + _family_empty() + _family_unicode())
