"""YAML aliases are bounded (issue #14.4, :func:`concurdeploy.inputs.check_alias_expansion`):
a file whose aliases multiply it past the limit is refused before any Python value is built,
in time linear in the file; ordinary aliases, merge keys and recursive aliases still load."""

from __future__ import annotations

import time

import pytest
import yaml

from concurdeploy.inputs import AliasBomb, check_alias_expansion, safe_load
from concurdeploy.inventory.yaml import read_yaml
from concurdeploy.exceptions import InventoryError


def bomb(levels: int, width: int = 10) -> str:
    lines = ["l0: &l0 [" + ", ".join(["x"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def test_a_billion_value_bomb_is_refused_at_once_naming_the_line():
    t0 = time.monotonic()
    with pytest.raises(AliasBomb) as info:
        safe_load(bomb(9))
    assert time.monotonic() - t0 < 5  # the expansion itself would take hours
    assert info.value.line == 6 and info.value.total > 10**9  # l5: the first value over 10^6
    assert "MAX_ALIAS_EXPANSION" in str(info.value) and "\n" not in str(info.value)


def test_the_limit_counts_values_added_by_aliases_only():
    node = yaml.compose(bomb(3))  # 17 nodes written (a mapping, 3 keys, 3 lists, 10 x) for 1237
    check_alias_expansion(node, limit=1237 - 17)
    with pytest.raises(AliasBomb) as info:
        check_alias_expansion(node, limit=1237 - 17 - 1)
    assert (info.value.total, info.value.written) == (1237, 17)


def test_ordinary_aliases_merge_keys_and_recursive_aliases_still_load():
    assert safe_load("a: &x {k: 1}\nb: *x\nc: {<<: *x, d: 2}") == {"a": {"k": 1}, "b": {"k": 1},
                                                                     "c": {"k": 1, "d": 2}}
    data = safe_load("a: &a [1, *a]")
    assert data["a"][1] is data["a"]
    assert safe_load("") is None and safe_load("7") == 7


def test_a_huge_file_without_aliases_is_not_refused():
    text = "x: [" + ", ".join(str(i) for i in range(20000)) + "]\n"
    assert len(safe_load(text)["x"]) == 20000  # far over nothing added: fine
    check_alias_expansion(yaml.compose(text), limit=0)


def test_an_inventory_bomb_is_an_inventory_error_with_file_and_line(tmp_path):
    path = tmp_path / "hosts.yml"
    path.write_text(bomb(9))
    with pytest.raises(InventoryError) as info:
        read_yaml(str(path))
    assert str(info.value).startswith(f"{path}:6: YAML aliases"), str(info.value)
