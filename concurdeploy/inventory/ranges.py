"""Host ranges and ``host:port`` host keys, as Ansible reads them: :func:`host_pattern`,
:func:`expand_range`, and their application to a parsed document (:func:`expand_document`).

Ansible's rules (``parsing/utils/addresses.py`` ``parse_address`` and
``plugins/inventory/__init__.py`` ``_expand_hostpattern``/``expand_hostname_range``),
re-implemented here:

- A host key may end in ``:PORT`` when what is left is an IPv4 address, a bracketed IPv6
  address (``[2001:db8::1]:2222``) or a host name (labels of letters, digits, ``_``, ``-``,
  not ending in ``_``/``-``), each possibly holding ranges. The port becomes the host var
  ``ansible_port``, **only on the host's first definition** (Ansible's ``Host(name, port)``);
  a later definition that gives another port is refused here (Ansible ignores it silently).
  A key that is none of those is a host name as written, port included.
- ``[BEGIN:END]`` and ``[BEGIN:END:STEP]`` expand, END inclusive: numbers (``[1:10:2]`` →
  1 3 5 7 9), numbers with leading zeros kept (``[01:50]``: BEGIN and END the same width),
  letters (``[a:c]``). Several ranges in one name expand left to right
  (``db[1:2]-[a:b]`` → db1-a db1-b db2-a db2-b).

Refused (:class:`InventoryError` at the key's line), where Ansible fails: a malformed range,
zero-padded bounds of different widths, BEGIN > END for letters, a zero step. Refused where
Ansible silently yields no host (BEGIN > END for numbers, a negative step), and above
:data:`MAX_HOSTS` names for one key.

:class:`Definitions` remembers the groups and hosts defined so far, in load order (the INI
reader needs the groups of earlier files; the port rule needs each host's first definition).

Imports only :mod:`concurdeploy.exceptions` and the model's ``YamlMapping``/``where``.
"""

from __future__ import annotations

import re
import string

from concurdeploy.exceptions import InventoryError
from concurdeploy.inventory.model import Location, YamlMapping, where

__all__ = ["MAX_HOSTS", "Definitions", "expand_document", "expand_range", "host_pattern",
           "parse_address"]

#: Most host names one key may expand to.
MAX_HOSTS = 100_000

# --------------------------------------------------------------------------- address grammar

_NUM_RANGE = r"\[[0-9]+:[0-9]+(?::[0-9]+)?\]"
_HEX_RANGE = r"\[[0-9a-f]+:[0-9a-f]+(?::[0-9]+)?\]"
_ALNUM_RANGE = r"\[(?:[a-z]:[a-z]|[0-9]+:[0-9]+)(?::[0-9]+)?\]"

_V4 = rf"(?:[01]?[0-9]{{1,2}}|2[0-4][0-9]|25[0-5]|{_NUM_RANGE})"
_H = rf"(?:[0-9a-f]{{1,4}}|{_HEX_RANGE})"  # one IPv6 group
_V4_IN_V6 = rf"(?:{_H}\.){{3}}{_H}"
_V6_FORMS = [
    rf"(?:{_H}:){{7}}{_H}",
    rf"(?:{_H}:){{1,6}}:",
    *(rf"(?:{_H}:){{{n}}}(?::{_H}){{1,{7 - n}}}" for n in range(1, 6)),
    rf"(?:{_H}:){{6}}(?::{_H})",
    rf":(?::{_H}){{1,6}}",
    rf"{_H}?::",
    rf"(?:0:){{6}}{_V4_IN_V6}",
    rf"::(?:ffff:)?{_V4_IN_V6}",
    rf"(?:0:){{5}}ffff:{_V4_IN_V6}",
]
_LABEL = rf"(?:\w|{_ALNUM_RANGE})(?:[\w-]|{_ALNUM_RANGE})*(?<![_-])"

_BRACKETED_PORT = re.compile(r"^\[(.+)\]:([0-9]+)$")
_HOST_PORT = re.compile(r"^((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)$")
#: Host name first: "any" of them matches, and the IPv6 form, slow to compile (≈10 ms at each
#: start), is then compiled (and cached by ``re``) only for a text that is no name or IPv4 address.
_ADDRESS = [
    rf"^{_LABEL}(?:\.{_LABEL})*$",
    rf"^(?:{_V4}\.){{3}}{_V4}$",
    rf"^(?:{'|'.join(_V6_FORMS)})$",
]


def parse_address(text: str) -> tuple[str, int | None]:
    """Split ``text`` into an address (ranges allowed) and an optional port.

    ``[ADDR]:PORT`` then ``ADDR:PORT`` are tried in that order (each on what the previous
    left); what remains must be an IPv4 address, an IPv6 address or a host name.

    :returns: ``(address, port)``; port None if none was given.
    :raises ValueError: ``text`` is not such an address (Ansible then keeps it as written).
    """
    address, port = text, None
    for pattern in (_BRACKETED_PORT, _HOST_PORT):
        match = pattern.match(address)
        if match:
            address, port = match.group(1), int(match.group(2))
    if not any(re.match(pattern, address, re.I) for pattern in _ADDRESS):
        raise ValueError(f"not a valid network host name: {address}")
    return address, port


# --------------------------------------------------------------------------- ranges

def expand_range(name: str) -> list[str]:
    """Expand every ``[BEGIN:END(:STEP)]`` range of ``name`` (see the module docstring).

    :returns: the host names, in order; ``[name]`` when it holds no ``[``.
    :raises ValueError: a malformed or empty range, or more than :data:`MAX_HOSTS` names
        (the message says what is wrong).
    """
    names, todo = [], [name]
    while todo:  # bounded: each step removes one range, and names are capped below
        current = todo.pop(0)
        if "[" not in current:
            names.append(current)
            if len(names) > MAX_HOSTS:
                raise ValueError(f"the ranges expand to more than {MAX_HOSTS} hosts")
            continue
        todo[0:0] = _expand_first(current)
        if len(todo) > MAX_HOSTS:
            raise ValueError(f"the ranges expand to more than {MAX_HOSTS} hosts")
    return names


def _expand_first(name: str) -> list[str]:
    """Expand the first range of ``name`` (the text between its first ``[`` and first ``]``)."""
    start, end = name.index("["), name.find("]")
    if end < start or "|" in name:
        raise ValueError("a range is written [BEGIN:END] or [BEGIN:END:STEP]")
    head, spec, tail = name[:start], name[start + 1:end], name[end + 1:]
    bounds = spec.split(":")
    if len(bounds) not in (2, 3):
        raise ValueError(f"range [{spec}] must be [BEGIN:END] or [BEGIN:END:STEP]")
    begin, last = bounds[0] or "0", bounds[1]
    step = bounds[2] if len(bounds) == 3 else "1"
    if not last:
        raise ValueError(f"range [{spec}] must give its END")
    width = len(begin) if begin[0] == "0" and len(begin) > 1 else 0
    if width and width != len(last):
        raise ValueError(f"range [{spec}]: a zero-padded BEGIN and END must have the same width")
    try:
        values = _letters(begin, last, step, spec)
    except _Refused:
        raise
    except ValueError:  # not letters: numbers, as Ansible tries next
        values = None
    if values is None:
        try:
            numbers = range(int(begin), int(last) + 1, int(step))
        except ValueError:
            raise ValueError(f"range [{spec}]: BEGIN and END must be both numbers or both "
                             "letters, STEP a number other than 0") from None
        if len(numbers) > MAX_HOSTS:
            raise ValueError(f"range [{spec}] expands to more than {MAX_HOSTS} hosts")
        values = [str(n).zfill(width) for n in numbers]
    if not values:
        raise ValueError(f"range [{spec}] expands to no host (BEGIN after END, or a negative "
                         "STEP); Ansible would silently define none")
    return [f"{head}{value}{tail}" for value in values]


def _letters(begin: str, last: str, step: str, spec: str) -> list[str]:
    """Letter range as Ansible computes it; :raises ValueError: not letters."""
    first, final = string.ascii_letters.index(begin), string.ascii_letters.index(last)
    if first > final:
        raise _Refused(f"range [{spec}]: BEGIN must come before END")
    return list(string.ascii_letters[first:final + 1:int(step)])


class _Refused(ValueError):
    """A range that is letters but wrong (not retried as numbers)."""


def host_pattern(pattern: str, location: Location) -> tuple[list[str], int | None]:
    """Read one host key: ``web[01:03].example:2222`` → ``(["web01.example", …], 2222)``.

    :param location: ``(path, line)`` of the key, for errors.
    :returns: the host names (in order) and the port, None if none.
    :raises InventoryError: a malformed or empty range (names file, line and the key).
    """
    try:
        address, port = parse_address(pattern)
    except ValueError:
        address, port = pattern, None
    try:
        names = expand_range(address) if "[" in address else [address]
    except ValueError as err:
        raise InventoryError(f"host range {pattern!r}: {err}; write ranges as web[01:50].example, "
                             "db-[a:c] or web[1:9:2]", *location, key=pattern) from None
    return names, port


# --------------------------------------------------------------------------- definitions

class Definitions:
    """Groups and hosts defined so far, in load order (Ansible's inventory while it parses).

    :ivar groups: every group name seen (``all`` and ``ungrouped`` always).
    :ivar hosts: host name -> ``(location, port)`` of its first definition.
    """

    def __init__(self):
        self.groups: set[str] = {"all", "ungrouped"}
        self.hosts: dict[str, tuple[Location, int | None]] = {}

    def host(self, name: str, port: int | None, explicit_port: bool, location: Location) -> int | None:
        """Record one definition of host ``name``; return the ``ansible_port`` to set.

        :param port: the ``:PORT`` of the key, or None.
        :param explicit_port: the same definition also sets ``ansible_port`` itself.
        :returns: ``port`` on the first definition, else None (Ansible's rule).
        :raises InventoryError: a later definition gives a ``:PORT`` other than the first one's
            and does not set ``ansible_port`` (Ansible would silently ignore it).
        """
        first = self.hosts.get(name)
        if first is None:
            self.hosts[name] = (location, port)
            return port
        (path, line), first_port = first
        if port is not None and port != first_port and not explicit_port:
            raise InventoryError(
                f"host {name!r} is already defined at {path}:{line} "
                f"({'port ' + str(first_port) if first_port else 'without a port'}); Ansible "
                f"ignores ':{port}' on a later definition: put the port on the first one, or set "
                f"ansible_port={port} here", *location, key=name)
        return None


def expand_document(document, definitions: Definitions, expand: bool = True) -> None:
    """Expand the host keys of a parsed YAML/JSON inventory document, in place.

    Walks the groups as Ansible's ``yaml`` plugin does (``hosts`` and ``children`` in the
    order written); each ``hosts`` mapping is replaced by one whose keys are single host
    names, every generated host located at its key's line. Shapes the builder refuses are
    left as they are for it to report.

    :param expand: False for an inventory script's output (Ansible takes its names as
        written): only record the groups and hosts in ``definitions``.
    :raises InventoryError: see :func:`host_pattern`, :meth:`Definitions.host`.
    """
    if isinstance(document, dict):
        for name, body in document.items():
            _group(name, body, definitions, expand, ())


def _group(name, body, definitions: Definitions, expand: bool, stack: tuple) -> None:
    if isinstance(name, str):
        definitions.groups.add(name)
    if not isinstance(body, dict) or id(body) in stack:
        return
    stack += (id(body),)
    for key, value in list(body.items()):
        if key == "hosts" and isinstance(value, (dict, str)):
            location = where(body, key)
            if isinstance(value, str):  # Ansible: "hosts: web1" is {web1: None}
                value = _one(value, location)
            if expand:
                body.put("hosts", _expand_hosts(value, definitions), location)
            else:
                for host in value:
                    if isinstance(host, str):
                        definitions.host(host, None, False, where(value, host))
        elif key == "children" and isinstance(value, dict):
            for child, child_body in value.items():
                _group(child, child_body, definitions, expand, stack)
        elif key == "children" and isinstance(value, str):
            definitions.groups.add(value)


def _one(name: str, location: Location) -> YamlMapping:
    mapping = YamlMapping.at(*location)
    mapping.put(name, None, location)
    return mapping


def _expand_hosts(hosts: dict, definitions: Definitions) -> YamlMapping:
    """One ``hosts`` mapping with its keys expanded (a host named twice: vars merged, later
    wins, as Ansible's ``set_variable``)."""
    out = YamlMapping.at(*where(hosts))
    for key, value in hosts.items():
        location = where(hosts, key)
        if not isinstance(key, str):
            out.put(key, value, location)  # the builder names the problem
            continue
        names, port = host_pattern(key, location)
        explicit = isinstance(value, dict) and "ansible_port" in value
        for name in names:
            entry = value
            apply = definitions.host(name, port, explicit, location)
            if apply is not None and (value is None or isinstance(value, dict)):
                entry = YamlMapping.at(*location)
                entry.put("ansible_port", apply, location)
                _update(entry, value)
            if name in out and isinstance(out[name], dict) and isinstance(entry, dict):
                merged = YamlMapping.at(*where(out[name]))
                _update(merged, out[name])
                _update(merged, entry)
                entry = merged
            elif name in out and entry is None:
                entry = out[name]
            out.put(name, entry, where(out, name) if name in out else location)
    return out


def _update(target: YamlMapping, new) -> None:
    """Copy ``new``'s keys (with their locations) into ``target``; None adds nothing."""
    for key, value in (new or {}).items():
        target.put(key, value, where(new, key))
