"""Load an inventory path (a file, or a folder as Ansible reads it) into an
:class:`~concurdeploy.inventory.model.Inventory`: :func:`load`.

Which files (:func:`~concurdeploy.inventory.folder.inventory_files`): the file given, or
every inventory file of the folder given, sub-folders included, in name order, as
ansible-core does. Each file is read by one reader, chosen as Ansible's inventory plugins
would (``script``, ``yaml``, ``ini``, in that order):

- an executable file that starts with ``#!`` (or is an ELF binary): an inventory script,
  run with ``--list`` (:func:`concurdeploy.inventory.script.read`);
- ``*.json``: JSON (:func:`concurdeploy.inventory.script.read`: ``ansible-inventory --list``
  output, or the YAML inventory structure in JSON);
- ``*.yml``, ``*.yaml``: YAML (:func:`~concurdeploy.inventory.yaml.read_yaml`); a file that
  is not YAML (or not a mapping) but is INI is read as INI, as Ansible does;
- no extension: YAML when it parses as a YAML mapping, else INI (a ``hosts`` file);
- any other extension (``.ini``, ``.hosts`` …): INI (:func:`~concurdeploy.inventory.ini.read_ini`).

Refused: ``*.toml`` inventories, and inventory-plugin configuration files (a YAML mapping
with ``plugin:``, e.g. ``aws_ec2.yml``): export those with ``ansible-inventory -i FILE
--list > inventory.json`` and load the JSON.

Host keys with ranges or ``:PORT`` are expanded before the builder sees them
(:mod:`~concurdeploy.inventory.ranges`). Every document goes to one
:class:`~concurdeploy.inventory.builder.Builder` in load order; then, for each group and host
the inventory defines, its ``group_vars``/``host_vars`` files
(:mod:`~concurdeploy.inventory.folder`) are added as vars layers, whose precedence is the
model's. Every error is an :class:`InventoryError` naming file, line and key.
"""

from __future__ import annotations

import os

from concurdeploy.exceptions import InventoryError
from concurdeploy.inputs import read_bounded
from concurdeploy.inventory import folder, script
from concurdeploy.inventory.builder import Builder
from concurdeploy.inventory.ini import SECTION, read_ini
from concurdeploy.inventory.model import Inventory
from concurdeploy.inventory.ranges import Definitions, expand_document
from concurdeploy.inventory.yaml import read_yaml

__all__ = ["load", "read_file"]

_YAML_EXTENSIONS = (".yml", ".yaml")


def _is_program(path: str) -> bool:
    """An executable file that starts like a program (``#!`` or ELF). Ansible also runs
    executable files that are not programs, fails, and reads them as YAML/INI: so do we,
    without running them."""
    if not script.is_script(path):
        return False
    try:
        with open(path, "rb") as stream:
            start = stream.read(4)
    except OSError:
        return False
    return start.startswith(b"#!") or start == b"\x7fELF"


def _looks_like_ini(path: str) -> bool:
    """True if the first line that is not blank or a comment is an INI section header."""
    try:
        text = read_bounded(path).decode("utf-8", "replace")
    except OSError:  # unreadable or too large: the YAML reader's error says so
        return False
    for number, line in enumerate(text.splitlines()):
        line = line.strip()
        if line and line[0] not in "#;":
            return bool(SECTION.match(line))
        if number > 10_000:
            break
    return False


def _read_yaml_or_ini(path: str, ext: str, definitions: Definitions) -> list:
    """A ``.yml``/``.yaml`` or extension-less file: YAML if it is a YAML mapping, else INI."""
    try:
        data, yaml_error = read_yaml(path), None
    except InventoryError as err:
        data, yaml_error = None, err
    if yaml_error is None and isinstance(data, dict):
        if data.get("plugin"):
            raise InventoryError(
                f"this is an inventory plugin configuration (plugin: {data['plugin']}), not an "
                "inventory; concurdeploy does not run inventory plugins: export the inventory with "
                f"'ansible-inventory -i {path} --list > inventory.json' and load that JSON file",
                path, 1, key="plugin")
        expand_document(data, definitions)
        return [data]
    if ext in _YAML_EXTENSIONS and data is None and yaml_error is None:
        return [None]  # an empty .yml: the builder says so
    if ext in _YAML_EXTENSIONS and not _looks_like_ini(path):
        if yaml_error is not None:
            raise yaml_error
        return [data]  # a YAML list or scalar: the builder says what it must be
    try:
        return read_ini(path, definitions)
    except InventoryError as ini_error:
        if yaml_error is not None and (yaml_error.line or 0) > (ini_error.line or 0):
            raise yaml_error from None  # YAML got further: it is a YAML file with an error
        raise


def read_file(path: str, definitions: Definitions) -> list:
    """Read one inventory file with the reader Ansible would use (see the module docstring).

    :param definitions: groups and hosts of the files read before (updated).
    :returns: documents for :meth:`Builder.add_document`, in order (``[]``: nothing defined).
    :raises InventoryError: unsupported format, or the reader's error (file, line, key).
    """
    ext = os.path.splitext(path)[1]
    if _is_program(path):
        document = script.read(path)
        expand_document(document, definitions, expand=False)
        return [document]
    if ext == ".json":
        document = script.read(path)
        expand_document(document, definitions)
        return [document]
    if ext == ".toml":
        raise InventoryError("TOML inventories are not supported; write it as YAML (or INI)", path)
    if ext in _YAML_EXTENSIONS or not ext:
        return _read_yaml_or_ini(path, ext, definitions)
    return read_ini(path, definitions)


def load(path: str | os.PathLike) -> Inventory:
    """Load an inventory: a file, or a folder as Ansible reads it, with its
    ``group_vars``/``host_vars``.

    :param path: file or folder.
    :returns: one :class:`Inventory` merging all files.
    :raises InventoryError: see the module docstring; names file, line and key.
    """
    location = os.fspath(path)
    files = folder.inventory_files(location)
    definitions = Definitions()
    builder = Builder()
    for file in files:
        for document in read_file(file, definitions):
            builder.add_document(document, file)
    base = folder.vars_base(location)
    for name in list(builder.groups):
        for file in folder.vars_files(base, "group_vars", name):
            mapping = folder.read_vars_file(file, "group_vars")
            if mapping is not None:
                builder.add_group_vars_file(name, mapping, file)
    for name in list(builder.hosts):
        for file in folder.vars_files(base, "host_vars", name):
            mapping = folder.read_vars_file(file, "host_vars")
            if mapping is not None:
                builder.add_host_vars_file(name, mapping, file)
    return builder.build(location, tuple(files))
