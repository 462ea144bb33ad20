"""Dynamic inventories: an inventory script's output, or a JSON file, read as documents for the
:class:`~concurdeploy.inventory.builder.Builder` (:func:`read`).

An **executable file** is an inventory script, as in Ansible's ``script`` inventory plugin
(``plugins/inventory/script.py``): it is run as ``FILE --list`` (no shell, its own folder as
the working directory, stdin empty, at most :data:`TIMEOUT` seconds) and must print JSON in
Ansible's script format::

    {"web":   {"hosts": ["w1", "w2"], "vars": {"http_port": 80}, "children": ["eu"]},
     "db":    ["d1"],                                   # a list: the group's hosts
     "_meta": {"hostvars": {"w1": {"ansible_host": "192.0.2.10"}}}}

Host vars come from ``_meta.hostvars``; without ``_meta`` the script is run again as
``FILE --host NAME`` for each host (each call bounded the same way), as Ansible does. A host
named only in ``_meta.hostvars`` and in no group is not an inventory host (Ansible ignores it).
A group value that is a mapping without ``hosts``, ``vars`` or ``children`` (which Ansible,
deprecated, reads as a host of the same name) is refused.

A **``.json`` file** (not executable) is read the same way when it has that shape (``_meta``,
or hosts/children given as lists: e.g. saved ``ansible-inventory --list`` output, a cloud
inventory exported to JSON); otherwise it is Ansible's YAML inventory structure written in JSON
(``{"all": {"hosts": {"w1": {...}}}}``), which is what Ansible's ``yaml`` plugin reads there.

In both, ``{"__ansible_unsafe": "text"}`` is an :class:`~concurdeploy.inventory.model.Unsafe`
string and ``{"__ansible_vault": ...}`` is refused like ``!vault``. Locations are ``file:line``
for a JSON file and ``FILE (--list output):line`` for a script (lines of what it printed).
A script that cannot be run, exits non-zero (its stderr is quoted), runs too long or prints
anything but a JSON object is an :class:`InventoryError` naming the file.
"""

from __future__ import annotations

import bisect
import json
import os
import subprocess
from json import decoder as json_decoder
from json import scanner as json_scanner

from concurdeploy.exceptions import InventoryError
from concurdeploy.inventory.model import Unsafe, YamlMapping, where
from concurdeploy.inventory.yaml import read_text, vault_error

__all__ = ["TIMEOUT", "is_script", "parse_json", "read"]

#: Seconds an inventory script may run (each call: ``--list``, ``--host NAME``).
TIMEOUT = 30.0
_STDERR_TAIL = 2000  # characters of a failed script's stderr quoted in the error


def is_script(path: str) -> bool:
    """True if ``path`` is a regular file the current user may execute (Ansible's test)."""
    return os.path.isfile(path) and os.access(path, os.X_OK)


def read(path: str, timeout: float = TIMEOUT):
    """Read a dynamic inventory (executable file) or a ``.json`` inventory file.

    :param path: the file.
    :param timeout: seconds allowed for each run of a script.
    :returns: one document in the YAML inventory shape (``YamlMapping`` of groups), for
        :meth:`Builder.add_document`.
    :raises InventoryError: the script fails (exit status, timeout, not runnable), the JSON
        is malformed or of the wrong shape, a ``__ansible_vault`` value (file and line named).
    """
    path = os.fspath(path)
    if is_script(path):
        label = f"{path} (--list output)"
        data = parse_json(_run(path, ["--list"], timeout), label)
        return _from_script(data, label, lambda host: _host_vars(path, host, timeout))
    text = read_text(path)
    data = parse_json(text, path)
    if _script_shaped(data):
        return _from_script(data, path, None)
    if not isinstance(data, dict):
        raise InventoryError("a JSON inventory must be an object of groups (Ansible's script format "
                             "or its YAML inventory structure)", path, 1)
    return data


# --------------------------------------------------------------------------- running a script

def _run(path: str, args: list[str], timeout: float) -> str:
    """Run ``path`` with ``args`` (no shell, cwd = its folder); return its stdout (UTF-8)."""
    command = [os.path.abspath(path), *args]
    shown = " ".join([path, *args])
    try:
        done = subprocess.run(command, cwd=os.path.dirname(os.path.abspath(path)), stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise InventoryError(f"inventory script '{shown}' did not finish within {timeout:g} s; "
                             "make it faster or export its output to a .json file", path) from None
    except OSError as err:
        raise InventoryError(
            f"cannot run '{shown}': {err.strerror or err}. An executable file in the inventory is run as "
            "a dynamic inventory script (as Ansible does): give it a #! line, or remove its executable "
            "bit (chmod -x) if it is a plain inventory file", path) from None
    stderr = done.stderr.decode("utf-8", "replace").strip()
    if done.returncode != 0:
        tail = stderr[-_STDERR_TAIL:] or "(nothing on stderr)"
        raise InventoryError(f"inventory script '{shown}' exited with status {done.returncode}; its "
                             f"stderr: {tail}", path)
    try:
        return done.stdout.decode("utf-8")
    except UnicodeDecodeError:
        raise InventoryError(f"inventory script '{shown}' printed bytes that are not UTF-8", path) from None


def _host_vars(path: str, host: str, timeout: float):
    """``path --host HOST``'s JSON object (empty output: no vars)."""
    text = _run(path, ["--host", host], timeout)
    if not text.strip():
        return None
    data = parse_json(text, f"{path} (--host {host} output)")
    if not isinstance(data, dict):
        raise InventoryError(f"'{path} --host {host}' must print a JSON object of vars", path)
    return data


# --------------------------------------------------------------------------- JSON with lines

class _LocatedDecoder(json.JSONDecoder):
    """``json`` decoder whose objects are ``YamlMapping``\\ s located at ``label:line`` (the pure
    Python scanner, with our object parser; the value start of each key gives its line)."""

    def __init__(self, text: str, label: str):
        super().__init__()
        self.label = label
        self.newlines = [i for i, char in enumerate(text) if char == "\n"]
        self.parse_object = self._parse_object
        self.scan_once = json_scanner.py_make_scanner(self)

    def line(self, index: int) -> int:
        return bisect.bisect_left(self.newlines, index) + 1

    def _parse_object(self, s_and_end, strict, scan_once, object_hook, object_pairs_hook, memo=None):
        starts = []

        def recording(string, index):
            starts.append(index)
            return scan_once(string, index)

        pairs, end = json_decoder.JSONObject(s_and_end, strict, recording, None, list, memo)
        line = self.line(s_and_end[1] - 1)
        keys = [key for key, _ in pairs]
        if keys == ["__ansible_unsafe"] and isinstance(pairs[0][1], str):
            return Unsafe(pairs[0][1]), end
        if keys == ["__ansible_vault"]:
            raise vault_error(self.label, line)
        mapping = YamlMapping.at(self.label, line)
        for (key, value), start in zip(pairs, starts):
            if key in mapping:
                raise InventoryError(f"duplicate key {key!r} in one object (first at line "
                                     f"{where(mapping, key)[1]}); JSON readers would silently keep only "
                                     "one: remove or rename one", self.label, self.line(start), key)
            mapping.put(key, value, (self.label, self.line(start)))
        return mapping, end


def parse_json(text: str, label: str):
    """Parse JSON text; objects become ``YamlMapping``\\ s located at ``label:line``.

    :raises InventoryError: malformed JSON (with its line), a duplicate key, ``__ansible_vault``.
    """
    try:
        return _LocatedDecoder(text, label).decode(text)
    except json.JSONDecodeError as err:
        raise InventoryError(f"not valid JSON: {err.msg} (column {err.colno})", label, err.lineno) from None


# --------------------------------------------------------------------------- script format

def _script_shaped(data) -> bool:
    """True for Ansible's script format (``_meta``, or hosts/children as lists)."""
    if not isinstance(data, dict):
        return False
    if "_meta" in data:
        return True
    for body in data.values():
        if isinstance(body, list):
            return True
        if isinstance(body, dict) and any(isinstance(body.get(k), list) for k in ("hosts", "children")):
            return True
    return False


def _names(value, what: str, group: str, location) -> YamlMapping:
    """A JSON list of names (hosts or children) as ``{name: None}``, located."""
    if isinstance(value, dict):  # Ansible iterates a mapping's keys
        value = list(value)
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InventoryError(f"group {group!r}: {what} must be a list of names (strings)", *location, key=what)
    names = YamlMapping.at(*location)
    for name in value:
        names.put(name, None, location)
    return names


def _from_script(data, label: str, ask_host_vars):
    """Script-format JSON → the YAML inventory shape (see the module docstring).

    :param ask_host_vars: ``host -> vars`` (runs ``--host``) when ``_meta`` is missing, or None.
    """
    if not isinstance(data, dict):
        raise InventoryError("an inventory script must print a JSON object of groups", label, 1)
    hostvars = None
    if "_meta" in data:
        meta = data["_meta"]
        hostvars = meta.get("hostvars") if isinstance(meta, dict) else None
        if not isinstance(hostvars, dict):
            raise InventoryError("'_meta' must be an object holding 'hostvars' (host name -> vars)",
                                 *where(data, "_meta"), key="_meta")
        profile = meta.get("profile", "inventory_legacy")
        if not (isinstance(profile, str) and profile.startswith("inventory_")):
            raise InventoryError(f"'_meta.profile' {profile!r} is not an inventory profile",
                                 *where(meta, "profile"), key="profile")
    doc = YamlMapping.at(label, 1)
    first_listing: dict[str, YamlMapping] = {}  # host -> the hosts mapping that lists it first
    for group, body in data.items():
        if group == "_meta":
            continue
        location = where(data, group)
        if isinstance(body, list):
            body = {"hosts": body}
        if not isinstance(body, dict):
            raise InventoryError(f"group {group!r} must be an object with hosts, vars, children (or a list "
                                 f"of hosts), got {type(body).__name__}", *location, key=group)
        if not any(k in body for k in ("hosts", "vars", "children")):
            raise InventoryError(f"group {group!r} has none of hosts, vars, children; Ansible would read it "
                                 "as a host of the same name (deprecated): write "
                                 f'{{"hosts": ["{group}"], "vars": {{...}}}} under another group name',
                                 *location, key=group)
        out = YamlMapping.at(*location)
        if "hosts" in body:
            hosts = _names(body["hosts"], "hosts", group,
                           where(body, "hosts") if body is data[group] else location)
            for host in hosts:
                first_listing.setdefault(host, hosts)
            out.put("hosts", hosts, where(hosts))
        if "vars" in body:
            out.put("vars", body["vars"], where(body, "vars"))
        if "children" in body:
            out.put("children", _names(body["children"], "children", group, where(body, "children")),
                    where(body, "children"))
        doc.put(group, out, location)
    for host, hosts in first_listing.items():
        if hostvars is not None:
            vars_ = hostvars.get(host)
        elif ask_host_vars is not None:
            vars_ = ask_host_vars(host)
        else:
            vars_ = None
        if vars_ is not None:
            hosts.put(host, vars_, where(hostvars, host) if hostvars is not None else where(vars_))
    return doc
