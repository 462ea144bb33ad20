"""Unit tests for concurdeploy.inventory.script: inventory scripts (``--list``, ``--host``) and
JSON inventory files, read into the Builder, compared with the real ansible-inventory."""

from __future__ import annotations

import json
import os
import stat
import sys
import textwrap
from pathlib import Path

import pytest

from concurdeploy.exceptions import InventoryError
from concurdeploy.inventory import Unsafe, where
from concurdeploy.inventory.builder import Builder
from concurdeploy.inventory.listing import dumps
from concurdeploy.inventory.script import read
from tests.unit.test_inventory_listing import ansible_inventory

META_OUTPUT = {
    "web": {"hosts": ["w1", "w2"], "vars": {"http_port": 80, "ansible_group_priority": 4}, "children": ["eu"]},
    "eu": ["w3"],
    "db": {"hosts": ["d1"], "vars": {"raw": {"__ansible_unsafe": "{{ x }}"}}},
    "_meta": {"hostvars": {"w1": {"ansible_host": "192.0.2.10", "ansible_port": 2222},
                           "not_in_a_group": {"a": 1}}},
}


def script(tmp_path: Path, body: str, name: str = "inventory.py") -> Path:
    """An executable Python inventory script (``#!`` this interpreter)."""
    path = tmp_path / name
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body), encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def printing(tmp_path: Path, data: dict, host_vars: dict | None = None) -> Path:
    """A script printing ``data`` for ``--list`` and ``host_vars[NAME]`` for ``--host NAME``."""
    return script(tmp_path, f"""\
        import json, sys
        if sys.argv[1:] == ["--list"]:
            print(json.dumps({data!r}, indent=1))
        elif sys.argv[1] == "--host":
            print(json.dumps({host_vars or {}!r}.get(sys.argv[2], {{}})))
        """)


def build(path: Path):
    builder = Builder()
    builder.add_document(read(str(path)), str(path))
    return builder.build(str(path), (str(path),))


def agrees(path: Path):
    """Our listing of the script/JSON file equals ansible-inventory's; return the inventory."""
    inv = build(path)
    assert json.loads(dumps(inv)) == json.loads(ansible_inventory(path))
    return inv


def test_script_with_meta_hostvars(tmp_path):
    inv = agrees(printing(tmp_path, META_OUTPUT))
    assert list(inv.hosts) == ["w1", "w2", "w3", "d1"]       # a host only in _meta is not a host
    assert inv.hosts["w1"].vars["host"] == "192.0.2.10" and inv.hosts["w1"].vars["port"] == 2222
    assert inv.hosts["w3"].groups == ("all", "web", "eu")
    assert inv.group("web").priority == 4
    assert isinstance(inv.hosts["d1"].vars["raw"], Unsafe)
    label, line = where(inv.hosts["w1"].vars, "host")
    assert label.endswith("inventory.py (--list output)") and line > 1


def test_script_without_meta_is_asked_for_each_host(tmp_path):
    path = printing(tmp_path, {"web": ["a", "b"], "all": {"vars": {"v": 1}}},
                    {"a": {"ansible_user": "ua"}, "b": {"ansible_user": "ub", "v": 2}})
    inv = agrees(path)
    assert inv.hosts["a"].vars["user"] == "ua" and inv.hosts["b"].vars["v"] == 2


def test_script_runs_in_its_own_folder(tmp_path, monkeypatch):
    monkeypatch.chdir("/")
    (tmp_path / "hosts.txt").write_text("h1,h2 $(x)\n")
    inv = build(script(tmp_path, """\
        import json
        names = open("hosts.txt").read().split(",")
        print(json.dumps({"web": {"hosts": [n.strip() for n in names]}, "_meta": {"hostvars": {}}}))
        """))
    assert list(inv.hosts) == ["h1", "h2 $(x)"]


def test_failing_script_names_the_file_and_shows_its_stderr(tmp_path):
    path = script(tmp_path, "import sys\nsys.stderr.write('cloud API said 403\\n')\nsys.exit(3)\n")
    with pytest.raises(InventoryError) as info:
        read(str(path))
    assert info.value.path == str(path)
    assert "exited with status 3" in str(info.value) and "cloud API said 403" in str(info.value)


def test_script_printing_bad_json_names_the_line(tmp_path):
    path = script(tmp_path, "print('{\\n  \"web\": [\"a\",]\\n}')\n")
    with pytest.raises(InventoryError) as info:
        read(str(path))
    assert info.value.path.endswith("inventory.py (--list output)") and info.value.line == 2
    assert "not valid JSON" in str(info.value)


def test_script_that_runs_too_long_is_stopped(tmp_path):
    path = script(tmp_path, "import time\ntime.sleep(60)\n")
    with pytest.raises(InventoryError) as info:
        read(str(path), timeout=0.5)
    assert "did not finish within 0.5 s" in str(info.value)


def test_executable_file_that_is_not_a_program(tmp_path):
    path = tmp_path / "hosts.yml"
    path.write_text("all:\n  hosts:\n    h1:\n")
    path.chmod(0o755)
    with pytest.raises(InventoryError) as info:
        read(str(path))
    assert "chmod -x" in str(info.value) and info.value.path == str(path)


def test_group_without_hosts_vars_or_children_is_refused(tmp_path):
    path = printing(tmp_path, {"web": {"ansible_host": "192.0.2.1"}, "_meta": {"hostvars": {}}})
    with pytest.raises(InventoryError) as info:
        read(str(path))
    assert info.value.key == "web" and "as a host of the same name" in str(info.value)


def test_saved_ansible_inventory_list_json_reads_back_identically(tmp_path):
    source = tmp_path / "src.yaml"
    source.write_text(textwrap.dedent("""\
        all:
          vars: {x: 1}
          hosts: {lone: }
          children:
            web:
              vars: {ansible_group_priority: 3, color: web}
              hosts: {w1: {ansible_host: 192.0.2.1}, w2: }
            prod:
              children: {web: , db: {hosts: {d1: {m: !unsafe '{{ y }}'}}}}
        """))
    saved = tmp_path / "exported.json"
    saved.write_text(ansible_inventory(source))
    assert not os.access(saved, os.X_OK)
    assert dumps(build(saved)) == saved.read_text().rstrip("\n")


def test_json_file_in_the_yaml_structure(tmp_path):
    path = tmp_path / "inv.json"
    path.write_text('{"all": {"children": {"web": {"hosts": {"w1": {"ansible_port": 2200}}}}}}\n')
    inv = agrees(path)
    assert inv.hosts["w1"].vars["port"] == 2200


def test_json_vault_value_is_refused_at_its_line(tmp_path):
    path = tmp_path / "inv.json"
    path.write_text('{"web": {"hosts": ["w1"]},\n "_meta": {"hostvars": {"w1": {\n'
                    '   "ansible_password": {"__ansible_vault": "$ANSIBLE_VAULT;1.1;AES256\\n6231"}}}}}\n')
    with pytest.raises(InventoryError) as info:
        read(str(path))
    assert info.value.path == str(path) and info.value.line == 3
    assert "ansible-vault" in str(info.value)


def test_json_duplicate_key_is_refused(tmp_path):
    path = tmp_path / "inv.json"
    path.write_text('{"web": ["a"],\n "web": ["b"]}\n')
    with pytest.raises(InventoryError) as info:
        read(str(path))
    assert info.value.line == 2 and "duplicate key 'web'" in str(info.value)
