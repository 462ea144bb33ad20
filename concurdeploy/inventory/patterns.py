"""Ansible-style host patterns: ``select(inventory, "web:&prod:!web3")``.

A pattern is a list of terms separated by ``,`` or ``:`` (a ``:`` inside ``[...]`` does not
separate; a whole pattern that is exactly a host or group name is one term, so an IPv6
host name works). Each term is:

- ``all`` or ``*``: every host;
- a host name, or a group name (its hosts and its descendants' hosts); a name that is both
  selects both;
- a glob with ``*``, ``?`` or ``[...]`` (:func:`fnmatch.fnmatchcase`), matched against host
  names and group names;
- ``@path``: the file's lines are read as terms (one per line, ``,``/``:`` lists allowed;
  blank lines and ``#`` comments ignored), as if written in place of ``@path``.

A term prefixed with ``&`` intersects, with ``!`` excludes. As in Ansible, all plain terms
are united first, then the intersections applied, then the exclusions, whatever their
order in the pattern; a pattern with no plain term starts from ``all`` (``!web`` = every
host but web's).

Any term naming nothing (a typo) is an error, even after ``!``: excluding a misspelt host
must not deploy to it. This module does no I/O except reading ``@path`` files.

Import direction: this module knows an inventory only by its shape (:class:`Selectable`:
``hosts`` by name, each with its ``groups``; ``groups`` by name; ``location``) and imports
nothing of the inventory package, so :mod:`concurdeploy.inventory.model` can import it
and ``Inventory.select`` delegates here.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import Protocol, TypeVar

from concurdeploy.exceptions import InventoryError, NoHostsMatched

__all__ = ["Selectable", "select", "split_pattern"]

GLOB_CHARS = frozenset("*?[")


class Member(Protocol):
    """What a pattern needs of a host: its groups (ancestors included, ``all`` too)."""

    @property
    def groups(self) -> tuple[str, ...]: ...


H = TypeVar("H", bound=Member)


class Selectable(Protocol[H]):
    """What a pattern needs of an inventory (:class:`~concurdeploy.inventory.model.Inventory`).

    :ivar location: the inventory's path, for messages.
    :ivar hosts: host name -> host, in inventory order.
    :ivar groups: group name -> group (only the names are used).
    """

    location: str
    hosts: Mapping[str, H]
    groups: Mapping[str, object]


def select(inventory: Selectable[H], pattern: str) -> list[H]:
    """Return the hosts ``pattern`` selects, in inventory order, each once.

    :param inventory: a loaded :class:`~concurdeploy.inventory.model.Inventory` (any
        :class:`Selectable`).
    :param pattern: e.g. ``"web"``, ``"lb*,db1"``, ``"all:!db"``, ``"@limit.txt"``.
    :raises NoHostsMatched: a term names no host or group, a glob matches nothing, or the
        whole pattern selects no host.
    :raises InventoryError: a ``@file`` cannot be read, or the pattern is malformed.
    """
    names = set(inventory.hosts) | set(inventory.groups)
    terms = _expand_files(split_pattern(pattern, names), names)
    if not terms:
        raise NoHostsMatched(f"empty host pattern {pattern!r}; give a host, a group or 'all'")
    union, intersect, exclude = _sort_terms(terms, pattern)
    selected: set[str] = set()
    for term in union:
        selected |= _match(inventory, term)
    for term in intersect:
        selected &= _match(inventory, term)
    for term in exclude:
        selected -= _match(inventory, term)
    hosts = [host for name, host in inventory.hosts.items() if name in selected]
    if not hosts:
        raise NoHostsMatched(f"pattern {pattern!r} matches no host in {inventory.location}")
    return hosts


def split_pattern(pattern: str, names=frozenset()) -> list[str]:
    """Split a pattern into stripped, non-empty terms (prefixes ``&``/``!`` kept).

    :param names: host and group names; a pattern equal to one of them is a single term.
    :returns: e.g. ``["web", "&prod", "!web3"]`` for ``"web:&prod:!web3"``.
    """
    if pattern.strip() in names:
        return [pattern.strip()]
    terms, current, depth = [], [], 0
    for char in pattern:
        if char == "[":
            depth += 1
        elif char == "]":
            depth = max(0, depth - 1)
        if char in ",:" and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    terms.append("".join(current))
    return [term.strip() for term in terms if term.strip()]


def _expand_files(terms: list[str], names) -> list[str]:
    """Replace each ``@path`` term by the terms listed in that file.

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
        for line_terms in listed:
            expanded.extend(split_pattern(line_terms, names))
    return expanded


def _read_pattern_file(path: str) -> list[str]:
    """Return the non-blank, non-comment lines of ``path`` (stripped).

    :raises InventoryError: unreadable file, or a line that is itself a ``@file``.
    """
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
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


def _sort_terms(terms: list[str], pattern: str) -> tuple[list[str], list[str], list[str]]:
    """Split terms into (union, intersection, exclusion) names, prefixes removed.

    No plain term means ``all``.

    :raises InventoryError: a bare ``&`` or ``!``.
    """
    union, intersect, exclude = [], [], []
    for term in terms:
        bucket = {"&": intersect, "!": exclude}.get(term[0], union)
        name = term[1:].strip() if bucket is not union else term
        if not name:
            raise InventoryError(f"host pattern {pattern!r} has a {term!r} with no name after it")
        bucket.append(name)
    return union or ["all"], intersect, exclude


def _is_glob(term: str) -> bool:
    return any(char in GLOB_CHARS for char in term)


def _group_hosts(inventory: Selectable, group: str) -> set[str]:
    """Names of the hosts of ``group`` and its descendants (possibly none)."""
    return {name for name, host in inventory.hosts.items() if group in host.groups}


def _match(inventory: Selectable, term: str) -> set[str]:
    """Return the host names one term (no prefix) selects.

    :raises NoHostsMatched: an exact name that is neither host nor group; a glob matching
        no host or group name.
    """
    if term in ("all", "*"):
        return set(inventory.hosts)
    if _is_glob(term):
        hosts = {name for name in inventory.hosts if fnmatchcase(name, term)}
        groups = [name for name in inventory.groups if fnmatchcase(name, term)]
        if not hosts and not groups:
            raise NoHostsMatched(f"pattern {term!r} matches no host or group name in "
                                 f"{inventory.location}")
    else:
        if term not in inventory.hosts and term not in inventory.groups:
            raise NoHostsMatched(_unknown_message(inventory, term))
        hosts = {term} if term in inventory.hosts else set()
        groups = [term] if term in inventory.groups else []
    for group in groups:
        hosts |= _group_hosts(inventory, group)
    return hosts


def _unknown_message(inventory: Selectable, term: str) -> str:
    """Message for a name that is neither host nor group, with close matches (difflib)."""
    message = (f"pattern {term!r} matches no host or group in {inventory.location} "
               f"(known groups: {', '.join(sorted(inventory.groups))})")
    close = difflib.get_close_matches(term, [*inventory.hosts, *inventory.groups], n=3)
    if close:
        message += "; did you mean " + " or ".join(repr(name) for name in close) + "?"
    return message
