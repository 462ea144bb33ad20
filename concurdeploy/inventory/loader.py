"""Load an Ansible-style YAML inventory (a file, or a directory of files) into an
:class:`~concurdeploy.inventory.model.Inventory`: :func:`load`.

Format (Ansible's YAML inventory)::

    all:                        # top-level keys are groups; any other than ``all`` is a child of ``all``
      vars: {user: deploy}      # a group mapping may only hold ``hosts``, ``children`` and ``vars``
      children:
        lb:
          children:
            haproxy:
              hosts:
                lb1: {ansible_host: 10.0.0.1, port: 2222}   # host name -> vars mapping, or empty
                lb2:
              vars: {reload: systemctl reload haproxy}
        web: {hosts: {web1: , web2: }}
        db:                     # an empty group (Ansible allows it); it may be filled elsewhere

``load(path)`` takes a file, or a directory whose top-level ``*.yml``/``*.yaml`` files are
read in name order (subdirectories and dot-files are not read) and merged into one
inventory: the same group in two files gets the hosts, children and vars of both.

Each file is parsed by :func:`~concurdeploy.inventory.yaml.read_yaml` and added to one
:class:`~concurdeploy.inventory.builder.Builder`, which checks the vars
(:mod:`~concurdeploy.inventory.vars`) and merges them by the precedence rule
(:mod:`~concurdeploy.inventory.model`). Every error is an :class:`InventoryError` naming
file, line and key.
"""

from __future__ import annotations

import os

from concurdeploy.exceptions import InventoryError
from concurdeploy.inventory.builder import Builder
from concurdeploy.inventory.model import Inventory
from concurdeploy.inventory.yaml import read_yaml

__all__ = ["load"]


def _inventory_files(location: str) -> list[str]:
    """Return the files to read for ``location`` (a file, or a directory's top-level YAML).

    :raises InventoryError: the path does not exist, or the directory has no YAML file.
    """
    if os.path.isfile(location):
        return [location]
    if not os.path.isdir(location):
        raise InventoryError(f"inventory not found: {location}; pass -i PATH or set "
                             "CONCURDEPLOY_INVENTORY")
    files = sorted(
        name for name in os.listdir(location)
        if name.endswith((".yml", ".yaml")) and not name.startswith(".")
        and os.path.isfile(os.path.join(location, name)))
    if not files:
        raise InventoryError("directory holds no *.yml or *.yaml inventory file (subdirectories "
                             "are not read); pass -i with a file or another directory",
                             location)
    return [os.path.join(location, name) for name in files]


def load(path: str | os.PathLike) -> Inventory:
    """Load an inventory file, or every top-level ``*.yml``/``*.yaml`` file of a directory.

    :param path: file or directory.
    :returns: one :class:`Inventory` merging all files.
    :raises InventoryError: see the module docstring; names file, line and key.
    """
    location = os.fspath(path)
    files = _inventory_files(location)
    builder = Builder()
    for file in files:
        builder.add_document(read_yaml(file), file)
    return builder.build(location, tuple(files))
