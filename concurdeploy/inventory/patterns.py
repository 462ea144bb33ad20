"""Ansible host patterns: ``select(inventory, "web[0:2]:&prod:!~db.*")``, as ansible-core 2.19
evaluates them (``ansible/inventory/manager.py``), with refusals where Ansible would guess.

**Splitting** (:func:`split_pattern`, Ansible's ``split_host_pattern``): a pattern holding a
``,`` is split on ``,`` only (then a ``:`` separates nothing: ``web:&prod,db`` has the terms
``web:&prod`` and ``db``). Otherwise a pattern that reads as one network address (a host
name, IPv4, IPv6 such as ``fe80::1``, ``[v6]:port`` or ``name:port``; ``[x:y]`` ranges
allowed) is one term, and anything else is split on ``:`` and whitespace, a ``[...]`` kept
whole. Terms are stripped; empty ones dropped.

**Terms**, each optionally prefixed with ``&`` (intersect) or ``!`` (exclude):

- ``~regex``: :func:`re.match` (anchored at the start only, case-sensitive) against group
  names and host names; ``~web`` matches ``web7`` and ``webfront``; no subscript.
- anything else is a shell glob (:func:`fnmatch.translate`: ``*``, ``?``, ``[seq]``,
  ``[!seq]``, whole name, case-sensitive); a plain word is a glob matching itself.
- It selects, in this order: the hosts of every group whose name matches (groups in
  inventory order; a group's hosts are Ansible's ``Group.get_hosts()``: its own hosts,
  then its descendants' breadth first, see :func:`group_hosts`), then, if no group matched
  or the term is a regex or holds one of ``. ? * [``, the hosts whose name matches
  (inventory order). ``all`` and ``ungrouped`` are groups like any other, so ``all`` and
  ``*`` select every host, in ``all``'s order (not the file order).
- A term that is exactly a host name (no prefix) selects that host only, never a group of
  the same name; ``!name``/``&name`` go through the matching above (a group named so wins
  over the host) — Ansible's ``_evaluate_patterns``.
- An optional subscript (not on a ``~regex``) picks from that list, duplicates included:
  ``g[2]`` / ``g[-1]`` one host (0-based), ``g[1:3]`` hosts 1 to 3 **inclusive**,
  ``g[2:]`` from 2 to the end; quirk kept: ``g[i:0]`` is ``g[i]`` (a zero end means no
  end). ``g[12]`` is a subscript, not the glob ``g1``/``g2``.

**Evaluation**: plain terms first (each adds the hosts not already chosen, in order), then
the ``&`` terms, then the ``!`` terms, whatever their place in the pattern; a pattern with
no plain term starts from ``all``. The result keeps the first occurrence of each host, so
its order is the pattern's (``db,web`` gives db's hosts first), not the file's.

**@file**: a term ``@path`` is replaced by the file's lines, each split like a pattern
(``#`` comments and blank lines ignored). Ansible only reads ``@file`` in ``--limit`` and
takes each line whole (a line ``a,b`` matches nothing there); we split it, and refuse
``!@file``, ``&@file`` and a ``@`` line inside the file.

**Refusals** (Ansible warns or guesses and carries on; a deployment must not):
:class:`~concurdeploy.exceptions.NoHostsMatched` for a term that matches no host or
group name (even after ``!``: excluding a misspelt host must not deploy to it), a subscript
out of range (Ansible errors too) or selecting nothing (``g[5:]`` of 3 hosts; ``g[2:1]``),
and a whole pattern selecting no host (Ansible: warning, exit 0). ``localhost`` is not
implicit: it must be in the inventory (Ansible invents it). :class:`InventoryError` for
what Ansible would misread: a ``[`` or ``]`` that Ansible's splitter would silently drop
(``~web[`` would become ``~web``), a subscript Ansible does not know (``g[:2]``, ``g[-2:]``:
Ansible reads those as globs matching ``g:``/``g2``), the removed ``g[x-y]`` form, a bad
regex, a bare ``!``/``&``.

**Order caveat**: for groups two or more ``children`` levels below a matched group under
different parents, Ansible orders them by iterating a ``set`` of ``Group`` objects (by
memory address), so its order changes from run to run; we use declaration order, which is
one of the orders Ansible produces.

Import direction: this module knows an inventory only by its shape (:class:`Selectable`)
and imports nothing of the inventory package, so :mod:`concurdeploy.inventory.model` can
import it and ``Inventory.select`` delegates here. No I/O except reading ``@path`` files.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Mapping, Sequence
from typing import Protocol, TypeVar

from concurdeploy.exceptions import InventoryError, NoHostsMatched
from concurdeploy.inputs import read_bounded_text

__all__ = ["GroupShape", "Selectable", "group_hosts", "select", "split_pattern", "split_subscript"]

H = TypeVar("H")

#: ``(start, end)``: ``end`` None = one host; -1 = to the last; 0 = one host (Ansible quirk).
Subscript = tuple[int, "int | None"]


class GroupShape(Protocol):
    """What a pattern needs of a group (:class:`~concurdeploy.inventory.model.Group`).

    :ivar hosts: names of the hosts listed directly under the group, in the order they were
        added (for ``ungrouped``: the hosts in no other group).
    :ivar children: child group names, in the order they were added.
    """

    hosts: Sequence[str]
    children: Sequence[str]


class Selectable(Protocol[H]):
    """What a pattern needs of an inventory (:class:`~concurdeploy.inventory.model.Inventory`).

    :ivar location: the inventory's path, for messages.
    :ivar hosts: host name -> host, in order of first definition.
    :ivar groups: group name -> :class:`GroupShape`, in order of first appearance, ``all``
        and ``ungrouped`` first; ``all`` reaches every host through ``hosts``/``children``.
    """

    location: str
    hosts: Mapping[str, H]
    groups: Mapping[str, GroupShape]


# --------------------------------------------------------------------------- selecting

def select(inventory: Selectable[H], pattern: str) -> list[H]:
    """Return the hosts ``pattern`` selects, each once, in Ansible's order (module docstring).

    :param inventory: a loaded :class:`~concurdeploy.inventory.model.Inventory` (any
        :class:`Selectable`).
    :param pattern: e.g. ``"web"``, ``"lb*,db1"``, ``"web[0:1]:&prod"``, ``"~db\\d+"``,
        ``"all:!db"``, ``"@limit.txt"``.
    :returns: the host records, e.g. ``[inv.hosts["web1"], inv.hosts["web2"]]``.
    :raises NoHostsMatched: a term names no host or group, a subscript is out of range or
        selects nothing, or the whole pattern selects no host (Ansible only warns: we refuse).
    :raises InventoryError: a ``@file`` cannot be read, or the pattern is malformed or one
        Ansible would misread (see "Refusals" in the module docstring).
    """
    terms = _expand_files(split_pattern(pattern))
    if not terms:
        raise NoHostsMatched(f"empty host pattern {pattern!r}; give a host, a group or 'all'")
    chosen: dict[str, None] = {}
    cache: dict[str, list[str]] = {}
    for term in _order_terms(terms, pattern):
        if term in inventory.hosts:
            chosen.setdefault(term)
            continue
        prefix = term[0] if term[0] in "&!" else ""
        matched = cache.get(term[len(prefix):])
        if matched is None:
            matched = cache[term[len(prefix):]] = _match_term(inventory, term[len(prefix):])
        if prefix == "!":
            dropped = set(matched)
            chosen = {name: None for name in chosen if name not in dropped}
        elif prefix == "&":
            kept = set(matched)
            chosen = {name: None for name in chosen if name in kept}
        else:
            for name in matched:
                chosen.setdefault(name)
    if not chosen:
        raise NoHostsMatched(f"pattern {pattern!r} matches no host in {inventory.location}")
    return [inventory.hosts[name] for name in chosen]


def _order_terms(terms: list[str], pattern: str) -> list[str]:
    """Plain terms, then ``&`` terms, then ``!`` terms (Ansible's ``order_patterns``);
    ``["all"]`` when there is no plain term.

    :raises InventoryError: a bare ``&`` or ``!``.
    """
    plain, intersect, exclude = [], [], []
    for term in terms:
        if term in ("&", "!"):
            raise InventoryError(f"host pattern {pattern!r} has a {term!r} with no name after it")
        {"&": intersect, "!": exclude}.get(term[0], plain).append(term)
    return (plain or ["all"]) + intersect + exclude


def _match_term(inventory: Selectable, term: str) -> list[str]:
    """Host names one term (prefix removed) selects: matches, then its subscript.

    :returns: names in Ansible's order, possibly with duplicates (a host of two matched
        groups); possibly empty for an empty group named exactly.
    :raises NoHostsMatched: the term matches no host or group name; the subscript is out of
        range or selects nothing.
    :raises InventoryError: a bad regex or a subscript Ansible would misread.
    """
    expr, subscript = split_subscript(term)
    names, matched_a_name = _enumerate(inventory, expr)
    if not matched_a_name:
        raise NoHostsMatched(_unknown_message(inventory, expr))
    if subscript is None:
        return names
    try:
        picked = _apply_subscript(names, subscript)
    except IndexError:
        raise NoHostsMatched(
            f"pattern {term!r}: subscript out of range, {expr!r} selects {len(names)} "
            f"host(s) (indexes 0..{len(names) - 1}, or -{len(names)}..-1) in "
            f"{inventory.location}") from None
    if not picked:
        raise NoHostsMatched(
            f"pattern {term!r}: the subscript selects no host ({expr!r} selects "
            f"{len(names)} host(s), and [a:b] runs from a to b inclusive) in {inventory.location}")
    return picked


def _enumerate(inventory: Selectable, expr: str) -> tuple[list[str], bool]:
    """Ansible's ``_enumerate_matches``: hosts of matching groups, then matching hosts.

    :returns: ``(host names with duplicates, whether any group or host name matched)``.
    :raises InventoryError: ``~regex`` that does not compile.
    """
    regex = _compile(expr)
    matched_groups = [name for name in inventory.groups if regex.match(name)]
    names: list[str] = []
    for group in matched_groups:
        names.extend(group_hosts(inventory, group))
    matched_hosts: list[str] = []
    if not matched_groups or expr[0] == "~" or any(char in expr for char in ".?*["):
        matched_hosts = [name for name in inventory.hosts if regex.match(name)]
        names.extend(matched_hosts)
    return names, bool(matched_groups or matched_hosts)


def _compile(expr: str) -> re.Pattern:
    """``~regex`` -> that regex; anything else -> the glob's regex (whole-name match)."""
    try:
        return re.compile(expr[1:]) if expr[0] == "~" else re.compile(fnmatch.translate(expr))
    except re.error as err:
        raise InventoryError(f"host pattern {expr!r} is not a valid regular expression: {err}; "
                             "a pattern starting with '~' is a Python regex") from None


def group_hosts(inventory: Selectable, group: str) -> list[str]:
    """The hosts of ``group`` and its descendants, each once, as Ansible's ``Group.get_hosts()``.

    Groups are visited breadth first: the group, its children, then their children in the
    order of their parents (Ansible iterates a set there, so its order among groups two or
    more levels down under different parents varies between runs; ours is one of its
    orders). Each visited group contributes its own ``hosts`` not seen yet.

    :param group: a name in ``inventory.groups``.
    :returns: host names, e.g. ``["lb1", "lb2", "lb3"]``.
    """
    groups = inventory.groups
    ordered = [group, *(c for c in groups[group].children if c != group)]
    seen = set(ordered)
    frontier = list(ordered)
    for _ in range(len(groups)):  # one level per pass; a level adds unseen groups only
        new = []
        for name in frontier:
            for child in groups[name].children if name in groups else ():
                if child not in seen:
                    seen.add(child)
                    new.append(child)
        if not new:
            break
        ordered.extend(new)
        frontier = new
    hosts: dict[str, None] = {}
    for name in ordered:
        for host in groups[name].hosts if name in groups else ():
            hosts.setdefault(host)
    return list(hosts)


# --------------------------------------------------------------------------- subscripts

_SUBSCRIPT = re.compile(r"^(.+)\[(?:(-?[0-9]+)|([0-9]+)([:-])([0-9]*))\]$")
_LOOKS_LIKE_SLICE = re.compile(r"^(.+)\[(-?[0-9]*[:-]-?[0-9]*)\]$")


def split_subscript(term: str) -> tuple[str, Subscript | None]:
    """Split ``"web[1:3]"`` into ``("web", (1, 3))`` (Ansible's ``_split_subscript``).

    :param term: one term, prefix removed.
    :returns: ``(expression, (start, end))``; ``end`` None for ``[i]``, -1 for ``[i:]``;
        ``(term, None)`` without a subscript or for a ``~regex``.
    :raises InventoryError: ``[x-y]`` (removed from Ansible, which still reads it as
        ``[x:y]``), or a slice Ansible does not know (``[:2]``, ``[-2:]``, ``[1:-1]``),
        which Ansible reads as a glob.
    """
    if term.startswith("~"):
        return term, None
    found = _SUBSCRIPT.match(term)
    if found:
        expr, index, start, separator, end = found.groups()
        if separator == "-":
            raise InventoryError(
                f"host pattern {term!r}: the subscript form [x-y] was removed from Ansible, "
                f"which still reads it as [x:y] (hosts x to y of {expr!r}); write "
                f"'{expr}[{start}:{end}]' for that, or a '~regex' for a character range")
        if index:
            return expr, (int(index), None)
        return expr, (int(start), int(end) if end else -1)
    lookalike = _LOOKS_LIKE_SLICE.match(term)
    if lookalike and any(char.isdigit() or char == ":" for char in lookalike.group(2)):
        expr = lookalike.group(1)
        raise InventoryError(
            f"host pattern {term!r}: [{lookalike.group(2)}] is not a subscript Ansible knows "
            f"(it would read it as a glob); use {expr}[N] (N may be negative), "
            f"{expr}[A:B] (A to B inclusive, from 0) or {expr}[A:] (A to the end)")
    return term, None


def _apply_subscript(names: list[str], subscript: Subscript) -> list[str]:
    """Ansible's ``_apply_subscript``; ``[a:b]`` includes b; an end of 0 means ``[a]``.

    :raises IndexError: a single index out of range.
    """
    if not names:
        return names
    start, end = subscript
    if end:
        if end == -1:
            end = len(names) - 1
        return names[start:end + 1]
    return [names[start]]


# --------------------------------------------------------------------------- splitting

_NUM_RANGE = r"\[(?:[0-9]+:[0-9]+)(?::[0-9]+)?\]"
_HEX_RANGE = r"\[(?:[0-9a-f]+:[0-9a-f]+)(?::[0-9]+)?\]"
_ALNUM_RANGE = r"\[(?:[a-z]:[a-z]|[0-9]+:[0-9]+)(?::[0-9]+)?\]"
_V6 = rf"(?:[0-9a-f]{{1,4}}|{_HEX_RANGE})"
_V4 = rf"(?:[01]?[0-9]{{1,2}}|2[0-4][0-9]|25[0-5]|{_NUM_RANGE})"
_LABEL = rf"(?:\w|{_ALNUM_RANGE})(?:[\w_-]|{_ALNUM_RANGE})*(?<![_-])"
_V6_FORMS = "|".join([
    rf"(?:{_V6}:){{7}}{_V6}", rf"(?:{_V6}:){{1,6}}:", rf"(?:{_V6}:)(?::{_V6}){{1,6}}",
    rf"(?:{_V6}:){{2}}(?::{_V6}){{1,5}}", rf"(?:{_V6}:){{3}}(?::{_V6}){{1,4}}",
    rf"(?:{_V6}:){{4}}(?::{_V6}){{1,3}}", rf"(?:{_V6}:){{5}}(?::{_V6}){{1,2}}",
    rf"(?:{_V6}:){{6}}(?::{_V6})", rf":(?::{_V6}){{1,6}}", rf"{_V6}?::",
    rf"(?:0:){{6}}(?:{_V6}\.){{3}}{_V6}", rf"::(?:ffff:)?(?:{_V6}\.){{3}}{_V6}",
    rf"(?:0:){{5}}ffff:(?:{_V6}\.){{3}}{_V6}",
])
#: Ansible's ``parse_address`` (``ansible/parsing/utils/addresses.py``), ranges allowed.
_PORT_FORMS = (re.compile(r"^\[(.+)\]:([0-9]+)$"),
               re.compile(r"^((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)$"))
#: Host name first: "any" of them matches, and the IPv6 form, slow to compile (≈15 ms at each
#: start), is then compiled only for a text that is not a name or an IPv4 address.
_ADDRESS_FORMS = (rf"^{_LABEL}(?:\.{_LABEL})*$", rf"^(?:{_V4}\.){{3}}{_V4}$", rf"^({_V6_FORMS})$")
#: One ``:``-separated term: no whitespace, ``:``, ``[``, ``]``, except in a whole ``[...]``.
_COLON_TERM = re.compile(r"(?:[^\s:\[\]]|\[[^\]]*\])+")


def _is_address(text: str) -> bool:
    """True if Ansible's ``parse_address(text, allow_ranges=True)`` accepts ``text``."""
    for form in _PORT_FORMS:  # Ansible tries both, in turn, on what is left
        found = form.match(text)
        if found:
            text = found.group(1)
    return any(re.match(form, text, re.I) for form in _ADDRESS_FORMS)  # re caches the compiled forms


def split_pattern(pattern: str) -> list[str]:
    """Split a pattern into stripped, non-empty terms, prefixes ``&``/``!`` kept (Ansible's
    ``split_host_pattern``; rules in the module docstring).

    :returns: e.g. ``["web", "&prod", "!web3"]`` for ``"web:&prod:!web3"``;
        ``["fe80::1"]`` for ``"fe80::1"``; ``["web:&prod", "db"]`` for ``"web:&prod,db"``.
    :raises InventoryError: a ``[`` or ``]`` that is not part of a whole ``[...]`` in a
        ``:``-separated pattern (Ansible would drop it silently: ``~web[`` -> ``~web``).
    """
    if "," in pattern:
        parts = pattern.split(",")
    elif _is_address(pattern):
        parts = [pattern]
    else:
        parts = _COLON_TERM.findall(pattern)
        if any(char in "[]" for char in _COLON_TERM.sub("", pattern)):
            raise InventoryError(f"host pattern {pattern!r} has an unbalanced '[' or ']'; "
                                 "close every '[' (Ansible would drop the stray bracket)")
    return [part.strip() for part in parts if part.strip()]


# --------------------------------------------------------------------------- @file

def _expand_files(terms: list[str]) -> list[str]:
    """Replace each ``@path`` term by the terms listed in that file, in place.

    :raises InventoryError: ``!@``/``&@`` used, file unreadable, or a ``@`` line in the file.
    :raises NoHostsMatched: the file lists no term.
    """
    expanded = []
    for term in terms:
        if term[:2] in ("!@", "&@"):
            raise InventoryError(f"{term!r}: a @file cannot take '{term[0]}'; put "
                                 f"'{term[0]}' in front of the names inside the file")
        if not term.startswith("@"):
            expanded.append(term)
            continue
        listed = _read_pattern_file(term[1:])
        if not listed:
            raise NoHostsMatched("host pattern file lists no host or group (only blank "
                                 "lines and comments)", term[1:])
        for line in listed:
            expanded.extend(split_pattern(line))
    return expanded


def _read_pattern_file(path: str) -> list[str]:
    """Return the non-blank, non-comment lines of ``path`` (stripped).

    :raises InventoryError: unreadable file, or a line that is itself a ``@file``.
    """
    try:
        text = read_bounded_text(path)
    except (OSError, UnicodeDecodeError) as err:
        raise InventoryError(f"cannot read host pattern file: {err}", path) from None
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if line.lstrip("!&").startswith("@"):
            raise InventoryError("a pattern file cannot name another @file", path, number)
        if line:
            lines.append(line)
    return lines


# --------------------------------------------------------------------------- messages

def _unknown_message(inventory: Selectable, expr: str) -> str:
    """Message for a term matching no host or group name, with close matches and hints."""
    if expr.startswith("~") or any(char in expr for char in "*?["):
        kind = "regex" if expr.startswith("~") else "pattern"
        message = f"{kind} {expr!r} matches no host or group name in {inventory.location}"
    else:
        message = (f"pattern {expr!r} matches no host or group in {inventory.location} "
                   f"(known groups: {', '.join(sorted(inventory.groups))})")
        candidates = list(dict.fromkeys([*inventory.hosts, *inventory.groups]))
        close = difflib.get_close_matches(expr, candidates, n=3)
        if close:
            message += "; did you mean " + " or ".join(repr(name) for name in close) + "?"
    if _PORT_FORMS[0].match(expr) or _PORT_FORMS[1].match(expr):
        message += ("; note: 'name:digits' is read whole, as a host and port (Ansible's "
                    "rule), not as two terms: separate terms with ','")
    elif ":" in expr and not expr.startswith("~") and not _is_address(expr):
        message += ("; note: a pattern holding ',' is split on ',' only, so ':' separates "
                    "nothing there (Ansible's rule): use ',' throughout")
    if expr[:1].isspace():
        message += "; note: a space after '!' or '&' is part of the name"
    return message
