"""Read an Ansible INI inventory into documents for the
:class:`~concurdeploy.inventory.builder.Builder`: :func:`read_ini`.

The format, as ansible-core's ``ini`` inventory plugin reads it (``plugins/inventory/ini.py``)::

    # comment            ; comment (a line starting with '#' or ';')
    bastion.example      # hosts before any section are in group 'ungrouped'

    [web]                # a group; its lines are hosts: NAME or RANGE, optional :PORT,
    web[01:03].example:2222 ansible_user=deploy tier='front end'   # then key=value vars
    [web:vars]           # one key=value per line, for the group
    http_port=8080
    [prod:children]      # child group names, one per line (defined anywhere in the file,
    web                  # or in an earlier inventory file)

Values (host lines and ``:vars`` lines alike, as ansible-core 2.19 does) are read with
Python's ``ast.literal_eval`` when they are a Python literal (``8080`` → int, ``True`` →
bool, ``[1, 2]`` → list, ``'022'`` → the string), else kept as the string. On host lines the
line is first split like a shell (``shlex``: quotes group, ``#`` starts a comment); on
``:vars`` lines everything after the first ``=`` is the value (a trailing ``# comment`` is
part of the string unless the value is a literal). Host names go through
:func:`~concurdeploy.inventory.ranges.host_pattern` (ranges, ``:PORT``).

Each section becomes a small document (``{group: {hosts|vars|children: ...}}``), in file
order, so hosts, groups and child links are created in the order Ansible creates them; every
key keeps ``file:line``. Everything Ansible rejects is an :class:`InventoryError` at its line,
and also, on purpose: a host name holding ``=`` (a ``key=value`` line in a hosts section), an
empty variable name, a group called ``hosts``, ``vars`` or ``children``.
"""

from __future__ import annotations

import ast
import re
import shlex
import warnings

from concurdeploy.exceptions import InventoryError
from concurdeploy.inputs import read_bounded
from concurdeploy.inventory.model import YamlMapping, where
from concurdeploy.inventory.ranges import Definitions, host_pattern

__all__ = ["SECTION", "read_ini"]

#: ``[group]``, ``[group:vars]``, ``[group:children]``, then an optional ``# comment``.
SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$")
_CHILD = re.compile(r"^([^:\]\s]+)\s*(?:#.*)?$")
_RESERVED = ("hosts", "vars", "children")


def _lines(path: str) -> list[str]:
    """The file's lines (comment lines may hold any bytes, as in Ansible).

    :raises InventoryError: unreadable, or a non-comment line is not UTF-8.
    """
    try:
        data = read_bounded(path)
    except OSError as err:
        raise InventoryError(f"cannot read inventory file: {err}", path) from None
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        pass
    lines = []
    for number, raw in enumerate(data.splitlines(), 1):
        if raw[:1] in (b"#", b";"):
            lines.append("")
            continue
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise InventoryError("this line is not UTF-8 text; save the file as UTF-8",
                                 path, number) from None
    return lines


def parse_value(text: str):
    """An INI value as Ansible reads it: a Python literal, else the string itself.

    Tuples and sets become lists, bytes and complex numbers strings, ``...`` the string.
    :raises ValueError: a literal Ansible cannot use either (e.g. a dict with a list key).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    except (TypeError, MemoryError, RecursionError) as err:
        raise ValueError(f"cannot read {text!r} as a value ({type(err).__name__}); quote it") from None
    return _plain(value)


def _plain(value):
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if value is Ellipsis:
        return "..."
    if isinstance(value, complex):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value


def _located(value, location):
    """Dicts inside a value become ``YamlMapping``\\ s located at the value's line."""
    if isinstance(value, list):
        return [_located(item, location) for item in value]
    if isinstance(value, dict):
        mapping = YamlMapping.at(*location)
        for key, item in value.items():
            mapping.put(key, _located(item, location), location)
        return mapping
    return value


class _Reader:
    """One pass over an INI file, producing section documents in order."""

    def __init__(self, path: str, definitions: Definitions):
        self.path = path
        self.known = definitions
        self.documents: list[YamlMapping] = []
        self.pending: dict[str, dict] = {}  # group -> {"line", "state", "parents"}

    def error(self, message: str, line: int, key: str | None = None) -> InventoryError:
        return InventoryError(message, self.path, line, key)

    def section(self, group: str, line: int) -> YamlMapping:
        """Start a document ``{group: {}}`` and return the group's body."""
        document = YamlMapping.at(self.path, line)
        body = YamlMapping.at(self.path, line)
        document.put(group, body, (self.path, line))
        self.documents.append(document)
        return body

    def part(self, body: YamlMapping, key: str, line: int) -> YamlMapping:
        if key not in body:
            body.put(key, YamlMapping.at(self.path, line), (self.path, line))
        return body[key]

    def read(self, lines: list[str]) -> list[YamlMapping]:
        group, state = "ungrouped", "hosts"
        body = None
        for number, text in enumerate(lines, 1):
            text = text.strip()
            if not text or text[0] in "#;":
                continue
            match = SECTION.match(text)
            if match:
                group, state = match.group(1), match.group(2) or "hosts"
                body = self.header(group, state, number, match)
                continue
            if text.startswith("[") and text.endswith("]"):
                raise self.error(f"invalid section header {text!r}: write [group], [group:vars] or "
                                 "[group:children], with no spaces", number)
            if body is None:
                body = self.section(group, number)
            if state == "hosts":
                self.hosts_line(group, body, text, number)
            elif state == "vars":
                self.vars_line(body, text, number)
            else:
                self.child_line(group, body, text, number)
        for name, decl in self.pending.items():
            if decl["state"] == "vars":
                raise self.error(f"section [{name}:vars] is for a group defined nowhere; add a [{name}] "
                                 "section (or list it under a [parent:children] and define it)",
                                 decl["line"], name)
            raise self.error(f"section [{decl['parents'][-1][0]}:children] lists group {name!r}, which "
                             f"is defined nowhere in this file or an earlier one; add a [{name}] section",
                             decl["line"], name)
        return self.documents

    def header(self, group: str, state: str, line: int, match) -> YamlMapping:
        if state not in ("hosts", "children", "vars"):
            raise self.error(f"section [{match.group(1)}:{state}] has unknown type {state!r}: use "
                             f"[{group}], [{group}:vars] or [{group}:children]", line)
        if group in _RESERVED:
            raise self.error(f"group name {group!r} is reserved in concurdeploy (it is a key of the "
                             "YAML inventory structure); rename the group", line, group)
        if group not in self.known.groups:
            if state == "vars" and group not in self.pending:
                self.pending[group] = {"line": line, "state": state}
            self.known.groups.add(group)
        if group in self.pending and state != "vars":
            if self.pending[group]["state"] == "children":
                self.adopt(group)
            else:
                del self.pending[group]
        return self.section(group, line)

    def adopt(self, group: str) -> None:
        """``group`` is now defined: link it under the parents that listed it earlier."""
        decl = self.pending.pop(group)
        for parent, line in decl["parents"]:
            body = self.section(parent, line)
            self.part(body, "children", line).put(group, None, (self.path, line))
            if parent in self.pending and self.pending[parent]["state"] == "children":
                self.adopt(parent)

    def hosts_line(self, group: str, body: YamlMapping, text: str, line: int) -> None:
        try:
            tokens = shlex.split(text, comments=True)
        except ValueError as err:
            raise self.error(f"cannot split host line ({err}); close the quote", line) from None
        if not tokens:
            return
        pattern = tokens[0]
        if "=" in pattern:
            raise self.error(f"{pattern!r} in hosts section [{group}] is not a host name (it holds "
                             f"'='); variables go after a host name or under [{group}:vars]", line, pattern)
        names, port = host_pattern(pattern, (self.path, line))
        if pattern.strip().endswith(":") and port is None:
            raise self.error(f"host {pattern!r} ends in ':', which must be followed by a port",
                             line, pattern)
        if "---" in [n.strip() for n in names] or not all(names):
            raise self.error(f"{pattern!r} is not a host name (a YAML file read as INI? name it "
                             "*.yml)", line, pattern)
        variables = YamlMapping.at(self.path, line)
        for token in tokens[1:]:
            key, sep, value = token.partition("=")
            if not sep:
                raise self.error(f"expected key=value after the host name, got {token!r}", line, token)
            variables.put(key, self.value(key, value, line), (self.path, line))
            self.check_key(key, line)
        hosts = self.part(body, "hosts", line)
        for name in names:
            entry = variables
            port_now = self.known.host(name, port, "ansible_port" in variables, (self.path, line))
            if port_now is not None:
                entry = YamlMapping.at(self.path, line)
                entry.put("ansible_port", port_now, (self.path, line))
                for key, value in variables.items():
                    entry.put(key, value, (self.path, line))
            if name in hosts:  # the same host twice in one section: later values win
                merged = YamlMapping.at(self.path, line)
                for mapping in (hosts[name], entry):
                    for key, value in mapping.items():
                        merged.put(key, value, where(mapping, key))
                entry = merged
            hosts.put(name, entry, where(hosts, name) if name in hosts else (self.path, line))

    def vars_line(self, body: YamlMapping, text: str, line: int) -> None:
        key, sep, value = text.partition("=")
        if not sep:
            raise self.error(f"expected key=value in a :vars section, got {text!r}", line)
        key = key.strip()
        self.check_key(key, line)
        self.part(body, "vars", line).put(key, self.value(key, value.strip(), line), (self.path, line))

    def child_line(self, group: str, body: YamlMapping, text: str, line: int) -> None:
        match = _CHILD.match(text)
        if not match:
            raise self.error(f"expected one group name per line in [{group}:children], got {text!r}", line)
        child = match.group(1)
        if child in self.known.groups:
            self.part(body, "children", line).put(child, None, (self.path, line))
        elif child in self.pending:
            self.pending[child].setdefault("parents", []).append((group, line))
        else:
            self.pending[child] = {"line": line, "state": "children", "parents": [(group, line)]}

    def check_key(self, key: str, line: int) -> None:
        if not key:
            raise self.error("a variable needs a name before '='", line)

    def value(self, key: str, text: str, line: int):
        try:
            return _located(parse_value(text), (self.path, line))
        except ValueError as err:
            raise self.error(str(err), line, key) from None


def read_ini(path: str, definitions: Definitions) -> list[YamlMapping]:
    """Read one INI inventory file.

    :param path: the file (UTF-8; comment lines may hold other bytes).
    :param definitions: groups and hosts of the files read before (updated with this file's).
    :returns: documents in file order (``[]`` for a file with no entries), each a
        ``YamlMapping`` ``{group: {hosts|vars|children: ...}}`` with ``file:line`` per key.
    :raises InventoryError: anything Ansible refuses, plus the refusals listed in the module
        docstring (names file, line and what to do).
    """
    return _Reader(path, definitions).read(_lines(path))
