"""Helpers shared by the inventory unit tests (tests/unit/test_inventory_*.py): write a
YAML inventory to a temp dir, load it, expect an error that points at file, line and key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from concurdeploy.exceptions import InventoryError
from concurdeploy.inventory import Inventory, load


def write(directory: Path, name: str, text: str) -> Path:
    """Write dedented ``text`` to ``directory/name`` (parents created) and return the path."""
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load_text(tmp_path: Path, text: str, name: str = "inv.yaml") -> Inventory:
    return load(write(tmp_path, name, text))


def load_error(tmp_path: Path, text: str, exc=InventoryError, name: str = "inv.yaml"):
    """Load ``text`` expecting ``exc``; return the exception."""
    with pytest.raises(exc) as info:
        load_text(tmp_path, text, name)
    return info.value


def assert_points_at(err: InventoryError, name: str, line: int, key: str | None) -> None:
    """``err`` names file ``name`` at ``line`` and ``key``, both as attributes and in str()."""
    assert err.path.endswith(name)
    assert err.line == line
    assert f"{name}:{line}:" in str(err)
    if key is not None:
        assert err.key == key
        assert repr(key) in str(err)


#: Groups nested three deep (all > lb > haproxy), an ungrouped host, vars on every level.
NESTED = """\
all:
  vars:
    user: deploy
    color: all
    tier: none
    depth_owner: all
  hosts:
    bastion:
  children:
    lb:
      vars:
        color: lb
        tier: frontend
        depth_owner: lb
      children:
        haproxy:
          hosts:
            lb1:
              color: host
            lb2:
          vars:
            color: haproxy
            depth_owner: haproxy
    web:
      hosts:
        web1:
        web2:
"""

