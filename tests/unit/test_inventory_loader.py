"""Unit tests for concurdeploy.inventory.loader: a file or a directory of files, merged in
name order; errors name the file they come from."""

from __future__ import annotations

import pytest

from concurdeploy.exceptions import InventoryError
from concurdeploy.inventory import load
from tests.unit.inventory_helpers import assert_points_at, write


# --------------------------------------------------------------------------- files and directories

def test_missing_path(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(InventoryError) as info:
        load(missing)
    assert str(info.value) == (f"inventory not found: {missing}; pass -i PATH or set "
                               "CONCURDEPLOY_INVENTORY")


def test_directory_merges_top_level_yaml_files_in_name_order(tmp_path):
    write(tmp_path, "b_web.yml", """\
        all:
          children:
            web:
              hosts:
                web2:
              vars:
                color: red
        """)
    write(tmp_path, "a_base.yaml", """\
        all:
          vars:
            user: deploy
          children:
            web:
              hosts:
                web1:
              vars:
                color: red
            db:
              hosts:
                db1:
        """)
    write(tmp_path, "notes.txt", "not an inventory")
    write(tmp_path, ".draft.yaml", "all:\n  hosts:\n    draft1:\n")
    write(tmp_path, "examples/ignored.yaml", "all:\n  hosts:\n    example1:\n")
    inv = load(tmp_path)
    assert inv.paths == (str(tmp_path / "a_base.yaml"), str(tmp_path / "b_web.yml"))
    assert list(inv.hosts) == ["web1", "db1", "web2"]
    assert "example1" not in inv.hosts and "draft1" not in inv.hosts
    assert inv.group("web").hosts == ("web1", "web2")
    assert inv.hosts["web2"].vars["user"] == "deploy"
    assert inv.hosts["web2"].vars["inventory_file"] == str(tmp_path / "b_web.yml")
    assert inv.hosts["web1"].vars["inventory_file"] == str(tmp_path / "a_base.yaml")
    assert inv.location == str(tmp_path)


def test_group_defined_in_one_file_referenced_in_another(tmp_path):
    write(tmp_path, "1.yaml", """\
        all:
          children:
            prod:
              children:
                web:
        """)
    write(tmp_path, "2.yaml", """\
        web:
          hosts:
            web1:
        """)
    inv = load(tmp_path)
    assert inv.hosts["web1"].groups == ("all", "prod", "web")


def test_group_var_conflict_across_files_names_both(tmp_path):
    write(tmp_path, "a.yaml", """\
        all:
          children:
            web:
              vars:
                color: red
        """)
    write(tmp_path, "b.yaml", """\
        all:
          children:
            web:
              vars:
                color: blue
        """)
    with pytest.raises(InventoryError) as info:
        load(tmp_path)
    assert_points_at(info.value, "b.yaml", 5, "color")
    assert "a.yaml:5" in str(info.value)


def test_host_conflict_across_files_names_both(tmp_path):
    write(tmp_path, "a.yaml", "all:\n  hosts:\n    web1: {user: alice}\n")
    write(tmp_path, "b.yaml", "all:\n  hosts:\n    web1: {user: bob}\n")
    with pytest.raises(InventoryError) as info:
        load(tmp_path)
    assert_points_at(info.value, "b.yaml", 3, "user")
    assert "a.yaml:3" in str(info.value)


def test_directory_without_yaml(tmp_path):
    write(tmp_path, "examples/inside.yaml", "all:\n  hosts:\n    h:\n")
    with pytest.raises(InventoryError) as info:
        load(tmp_path)
    assert str(tmp_path) in str(info.value)
    assert "no *.yml or *.yaml" in str(info.value)


def test_error_in_second_file_names_that_file(tmp_path):
    write(tmp_path, "a.yaml", "all:\n  hosts:\n    web1:\n")
    write(tmp_path, "b.yaml", "all:\n  children:\n    web:\n      hots:\n")
    with pytest.raises(InventoryError) as info:
        load(tmp_path)
    assert_points_at(info.value, "b.yaml", 4, "hots")
