"""An inventory path as Ansible reads it: the inventory files of a folder
(:func:`inventory_files`) and the ``group_vars``/``host_vars`` beside them (:func:`vars_base`,
:func:`vars_files`, :func:`read_vars_file`).

**Inventory files** (ansible-core ``inventory/manager.py`` ``parse_source``): a file is read
as given; a folder is read entry by entry in name order, folders included (recursively),
skipping names that start with ``.``, the names ``group_vars``, ``host_vars`` and
``vars_plugins``, and names ending in one of :data:`IGNORED_EXTENSIONS` (``.ini`` is *not*
skipped: it is an INI inventory). Refused where Ansible would silently do something a user
does not expect: a sub-folder holding its own ``group_vars``/``host_vars`` (Ansible reads
its inventory files but not those vars: pass ``-i`` that sub-folder instead), a folder with
no inventory file, a symlink loop.

**Vars folders** (ansible-core ``plugins/vars/host_group_vars.py`` and
``DataLoader.find_vars_files``): ``group_vars/`` and ``host_vars/`` in the folder given with
``-i``, or beside the file given with ``-i`` (not in sub-folders of a folder). For a group
or host NAME, the first of ``NAME``, ``NAME.yml``, ``NAME.yaml``, ``NAME.json`` that exists
is read; when it is a folder, every file in it (and in its sub-folders without an extension)
with one of those extensions or none, not hidden, not ending in ``~``, in name order, a later
file's value winning. Refused on purpose: two of those candidates existing at once (Ansible
reads only the first and silently ignores the others), a ``group_vars``/``host_vars`` that is
not a folder, a vars file that is not a mapping, ``ansible_group_priority`` in a
``group_vars`` file (Ansible ignores it there: it is read only from the inventory).

The vars layers' precedence (group_vars files above every group's inventory vars, host_vars
files above the host's inventory vars) is the model's: the loader hands each file to the
:class:`~concurdeploy.inventory.builder.Builder`.
"""

from __future__ import annotations

import os
import re

from concurdeploy.exceptions import InventoryError
from concurdeploy.inventory.model import where
from concurdeploy.inventory.yaml import read_yaml

__all__ = ["IGNORED_EXTENSIONS", "VARS_EXTENSIONS", "inventory_files", "read_vars_file", "vars_base",
           "vars_files"]

#: Ansible's ``INVENTORY_IGNORE_EXTS`` (ansible-core 2.19 default): skipped in a folder.
IGNORED_EXTENSIONS = (".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst", ".orig",
                      ".cfg", ".retry")
#: Ansible's ``YAML_FILENAME_EXTENSIONS``, tried after the bare name for vars files.
VARS_EXTENSIONS = (".yml", ".yaml", ".json")
_IGNORED = re.compile("|".join([r"^\.", "^host_vars$", "^group_vars$", "^vars_plugins$"]
                               + [re.escape(ext) + "$" for ext in IGNORED_EXTENSIONS]))
_MAX_DEPTH = 32


# --------------------------------------------------------------------------- inventory files

def inventory_files(location: str) -> list[str]:
    """Return the inventory files to read for ``location``, in Ansible's order.

    :param location: the ``-i`` path: a file or a folder.
    :returns: file paths (``[location]`` for a file).
    :raises InventoryError: the path does not exist; a folder holds no inventory file, has a
        sub-folder with its own ``group_vars``/``host_vars``, or a symlink loop.
    """
    if os.path.isfile(location):
        return [location]
    if not os.path.isdir(location):
        from concurdeploy.inventory.pathkind import kind_of

        kind = kind_of(location)
        if kind != "missing":  # -i /dev/zero: say what it is, never "not found"
            raise InventoryError(f"inventory {location} is {kind}, not an inventory file or folder; pass "
                                 "-i with a YAML/INI inventory file or a folder of them (or set "
                                 "CONCURDEPLOY_INVENTORY)")
        raise InventoryError(f"inventory not found: {location}; pass -i PATH or set "
                             "CONCURDEPLOY_INVENTORY")
    files: list[str] = []
    _walk(location, files, [os.path.realpath(location)])
    if not files:
        raise InventoryError(
            "folder holds no inventory file (hidden files, group_vars/, host_vars/ and "
            f"{', '.join(IGNORED_EXTENSIONS)} files are not read); pass -i with a file or "
            "another folder", location)
    return files


def _walk(folder: str, files: list[str], stack: list[str]) -> None:
    for name in sorted(os.listdir(folder)):
        if _IGNORED.search(name):
            continue
        path = os.path.join(folder, name)
        if not os.path.isdir(path):
            files.append(path)
            continue
        real = os.path.realpath(path)
        if real in stack or len(stack) >= _MAX_DEPTH:
            raise InventoryError(f"folder {path} leads back into {real} (a symlink loop) or nests "
                                 f"deeper than {_MAX_DEPTH}; remove the link", path)
        for kind in ("group_vars", "host_vars"):
            if os.path.exists(os.path.join(path, kind)):
                raise InventoryError(
                    f"sub-folder {path} has its own {kind}/, which Ansible does not read when "
                    f"-i names {stack[0]} (only {kind}/ at the top is read, so these vars would "
                    f"silently not apply); pass -i {path} instead, or move its {kind}/ to the top",
                    os.path.join(path, kind))
        _walk(path, files, stack + [real])


# --------------------------------------------------------------------------- vars files

def vars_base(location: str) -> str:
    """The folder whose ``group_vars``/``host_vars`` apply: ``location`` itself if it is a
    folder, else its file's folder (symlinks resolved, as Ansible does)."""
    folder = location if os.path.isdir(location) else os.path.dirname(os.path.abspath(location))
    return os.path.realpath(folder)


def vars_files(base: str, kind: str, name: str) -> list[str]:
    """The vars files for group or host ``name``, in the order their values apply.

    :param base: see :func:`vars_base`.
    :param kind: ``"group_vars"`` or ``"host_vars"``.
    :returns: paths (``[]`` if none; always ``[]`` for a name starting with ``/``, as Ansible).
    :raises InventoryError: ``base/kind`` is not a folder; two candidates for ``name`` exist.
    """
    folder = os.path.join(base, kind)
    if not os.path.lexists(folder) or name.startswith(os.sep):
        return []
    if not os.path.isdir(folder):
        raise InventoryError(f"{kind} must be a folder of vars files (Ansible skips it with only a "
                             f"warning); move it aside or make it a folder", folder)
    candidates = [os.path.join(folder, name + ext) for ext in ("", *VARS_EXTENSIONS)]
    found = [path for path in candidates if os.path.exists(path)]
    if not found:
        return []
    if len(found) > 1:
        raise InventoryError(
            f"{' and '.join(found)} both hold vars for {name!r}; Ansible reads only the first "
            f"({os.path.basename(found[0])}) and silently ignores the other: merge them into one",
            found[1])
    if os.path.isdir(found[0]):
        return _folder_files(found[0], 0)
    return found


def _folder_files(folder: str, depth: int) -> list[str]:
    if depth >= _MAX_DEPTH:
        raise InventoryError(f"vars folder nests deeper than {_MAX_DEPTH} (a symlink loop?)", folder)
    files = []
    for name in sorted(os.listdir(folder)):
        if name.startswith(".") or name.endswith("~"):
            continue
        path = os.path.join(folder, name)
        ext = os.path.splitext(name)[1]
        if os.path.isdir(path):
            if not ext:
                files.extend(_folder_files(path, depth + 1))
        elif os.path.isfile(path) and (not ext or ext in VARS_EXTENSIONS):
            files.append(path)
    return files


def read_vars_file(path: str, kind: str):
    """Read one vars file (YAML or JSON).

    :param kind: ``"group_vars"`` or ``"host_vars"``.
    :returns: its ``YamlMapping`` (keys located), or None when empty (Ansible skips it).
    :raises InventoryError: malformed, not a mapping, or (``group_vars``)
        ``ansible_group_priority`` set.
    """
    data = read_yaml(path)
    if data is None or data == {}:
        return None
    if not isinstance(data, dict):
        raise InventoryError(f"a {kind} file must be a mapping of variable names to values, got "
                             f"{type(data).__name__}", path, where(data)[1] or 1)
    if kind == "group_vars" and "ansible_group_priority" in data:
        raise InventoryError(
            "ansible_group_priority has no effect in a group_vars file (Ansible reads it only from "
            "the inventory file's group vars); set it there", *where(data, "ansible_group_priority"),
            key="ansible_group_priority")
    return data
