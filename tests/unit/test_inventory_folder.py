"""Unit tests for concurdeploy.inventory.folder: ``group_vars``/``host_vars`` beside an
inventory file or inside an inventory folder (files or folders of files, with and without
``.yml``/``.yaml``/``.json``), their precedence checked against ``ansible-inventory --list``,
and the refusals where Ansible would silently ignore files."""

from __future__ import annotations

import json

import pytest

from concurdeploy.exceptions import InventoryError
from concurdeploy.inventory import load, where
from concurdeploy.inventory.folder import vars_files
from tests.unit.inventory_helpers import assert_points_at, write
from tests.unit.test_inventory_loader import ansible_list, assert_agrees, needs_ansible

INVENTORY = """\
all:
  vars:
    color: inv-all
    level: inv-all
  children:
    prod:
      vars:
        color: inv-prod
      children:
        web:
          hosts:
            web1:
              color: inv-host
            web2:
          vars:
            color: inv-web
            level: inv-web
        db:
          hosts:
            db1:
"""


def project(tmp_path):
    """An inventory file with group_vars and host_vars of every form."""
    inv = tmp_path / "inv"
    write(inv, "hosts.yml", INVENTORY)
    write(inv, "group_vars/all.yml", "level: gv-all\nntp: ntp.example\n")
    write(inv, "group_vars/prod", "color: gv-prod\n")                   # no extension
    write(inv, "group_vars/web/10-base.yaml", "level: gv-web-10\nport_range: [80, 443]\n")
    write(inv, "group_vars/web/20-json.json", json.dumps({"level": "gv-web-20"}))
    write(inv, "group_vars/web/sub/30", "deep: 1\n")                    # sub-folder, no extension
    write(inv, "group_vars/web/notes.md", "not: read\n")                # other extension: skipped
    write(inv, "group_vars/web/.hidden.yml", "not: read\n")
    write(inv, "group_vars/web/backup.yml~", "not: read\n")
    write(inv, "group_vars/ghost.yml", "not: a group\n")                 # no such group: ignored
    write(inv, "host_vars/web2.json", json.dumps({"color": "hv-web2"}))
    write(inv, "host_vars/db1/main.yml", "role: primary\n")
    write(inv, "host_vars/db1/empty.yml", "")                           # empty: skipped
    return inv


def test_group_vars_and_host_vars_forms(tmp_path):
    inv = load(project(tmp_path) / "hosts.yml")
    web1, web2, db1 = (inv.hosts[h].vars for h in ("web1", "web2", "db1"))
    assert web1["level"] == "gv-web-20" and web1["port_range"] == [80, 443] and web1["deep"] == 1
    assert "not" not in web1
    assert web1["color"] == "inv-host"            # the host's own vars beat group_vars files
    assert web2["color"] == "hv-web2"             # host_vars beat everything
    assert db1["color"] == "gv-prod"              # group_vars prod beats the inventory's group vars
    assert db1["level"] == "gv-all" and db1["ntp"] == "ntp.example" and db1["role"] == "primary"
    assert where(db1, "role") == (str(tmp_path / "inv" / "host_vars" / "db1" / "main.yml"), 1)


@needs_ansible
def test_group_vars_and_host_vars_agree_with_ansible(tmp_path):
    inv = project(tmp_path)
    assert_agrees(inv / "hosts.yml", tmp_path / "ansible-file")
    assert_agrees(inv, tmp_path / "ansible-folder")


@needs_ansible
def test_group_vars_file_beats_a_deeper_groups_inventory_vars_as_in_ansible(tmp_path):
    """Ansible: group vars from the inventory (by depth), THEN group_vars files (by depth):
    a parent's group_vars file wins over a child's inventory var."""
    inv = tmp_path / "inv"
    write(inv, "hosts", "[prod:children]\nweb\n[web]\nweb1\n[web:vars]\ncolor=inv-web\n")
    write(inv, "group_vars/prod.yml", "color: gv-prod\n")
    theirs = assert_agrees(inv / "hosts", tmp_path / "ansible")
    assert theirs["hostvars"]["web1"]["color"] == "gv-prod"
    assert load(inv / "hosts").hosts["web1"].vars["color"] == "gv-prod"


@needs_ansible
def test_ini_inventory_with_vars_folders_agrees(tmp_path):
    inv = tmp_path / "inv"
    write(inv, "production", "[lb]\nlb[1:2].example\n[app]\napp1.example\n[prod:children]\nlb\napp\n"
                             "[lb:vars]\nmaxconn=100\n")
    write(inv, "group_vars/lb.yaml", "maxconn: 2000\nfiles: [{src: files/haproxy.cfg, dest: /etc/haproxy.cfg}]\n")
    write(inv, "group_vars/all/main.yml", "user: deploy\n")
    write(inv, "group_vars/all/zz.yml", "user: ops\n")
    write(inv, "host_vars/lb2.example.yml", "maxconn: 10\n")
    theirs = assert_agrees(inv, tmp_path / "ansible")
    assert theirs["hostvars"]["lb1.example"]["user"] == "ops"
    lb = load(inv)
    assert lb.hosts["lb2.example"].vars["maxconn"] == 10
    assert lb.groups["lb"].file_vars["files"][0]["dest"] == "/etc/haproxy.cfg"


def test_vars_folders_only_beside_the_path_given(tmp_path):
    inv = tmp_path / "inv"
    write(inv, "hosts.yml", "web:\n  hosts:\n    web1:\n")
    write(tmp_path, "group_vars/web.yml", "color: outside\n")   # beside the folder: not read
    assert "color" not in load(inv).hosts["web1"].vars
    write(inv, "group_vars/web.yml", "color: inside\n")
    assert load(inv).hosts["web1"].vars["color"] == "inside"
    assert load(inv / "hosts.yml").hosts["web1"].vars["color"] == "inside"


# --------------------------------------------------------------------------- refusals

def test_two_candidates_for_one_name_are_refused(tmp_path):
    """Ansible reads group_vars/web/ and silently ignores group_vars/web.yml."""
    inv = tmp_path / "inv"
    write(inv, "hosts.yml", "web:\n  hosts:\n    web1:\n")
    write(inv, "group_vars/web/a.yml", "color: dir\n")
    write(inv, "group_vars/web.yml", "color: file\n")
    with pytest.raises(InventoryError) as info:
        load(inv)
    assert info.value.path == str(inv / "group_vars" / "web.yml")
    assert "ignores" in str(info.value) and "merge them" in str(info.value)


@needs_ansible
def test_ansible_ignores_the_second_candidate(tmp_path):
    inv = tmp_path / "inv"
    write(inv, "hosts.yml", "web:\n  hosts:\n    web1:\n")
    write(inv, "group_vars/web.yml", "color: yml\n")
    write(inv, "group_vars/web.yaml", "color: yaml\n")
    assert ansible_list(inv, tmp_path / "ansible")["_meta"]["hostvars"]["web1"] == {"color": "yml"}
    with pytest.raises(InventoryError):
        load(inv)


def test_subfolder_with_its_own_group_vars_is_refused(tmp_path):
    """Ansible reads inv/staging/hosts for -i inv, but not inv/staging/group_vars."""
    inv = tmp_path / "inv"
    write(inv, "staging/hosts", "[web]\nweb1\n")
    write(inv, "staging/group_vars/web.yml", "color: staging\n")
    with pytest.raises(InventoryError) as info:
        load(inv)
    assert info.value.path == str(inv / "staging" / "group_vars")
    assert f"pass -i {inv / 'staging'}" in str(info.value)
    assert load(inv / "staging").hosts["web1"].vars["color"] == "staging"


def test_group_priority_in_a_group_vars_file_is_refused(tmp_path):
    """Ansible applies ansible_group_priority only from the inventory file."""
    inv = tmp_path / "inv"
    write(inv, "hosts.yml", "web:\n  hosts:\n    web1:\n")
    write(inv, "group_vars/web.yml", "x: 1\nansible_group_priority: 10\n")
    with pytest.raises(InventoryError) as info:
        load(inv)
    assert_points_at(info.value, "group_vars/web.yml", 2, "ansible_group_priority")


@pytest.mark.parametrize("text, line", [("- a\n- b\n", 1), ("x: [\n", 2)])
def test_a_vars_file_that_is_not_a_mapping_points_at_it(tmp_path, text, line):
    inv = tmp_path / "inv"
    write(inv, "hosts.yml", "web:\n  hosts:\n    web1:\n")
    write(inv, "host_vars/web1.yml", text)
    with pytest.raises(InventoryError) as info:
        load(inv)
    assert_points_at(info.value, "host_vars/web1.yml", line, None)


def test_vars_file_values_are_checked_like_inventory_vars(tmp_path):
    inv = tmp_path / "inv"
    write(inv, "hosts.yml", "web:\n  hosts:\n    web1:\n")
    write(inv, "group_vars/web.yml", "x: 1\nansible_port: not-a-port\n")
    with pytest.raises(InventoryError) as info:
        load(inv)
    assert_points_at(info.value, "group_vars/web.yml", 2, "ansible_port")


def test_group_vars_that_is_a_file_is_refused(tmp_path):
    inv = tmp_path / "inv"
    write(inv, "hosts.yml", "web:\n  hosts:\n    web1:\n")
    write(inv, "group_vars", "web:\n  color: red\n")
    with pytest.raises(InventoryError) as info:
        load(inv / "hosts.yml")
    assert info.value.path == str(inv / "group_vars") and "must be a folder" in str(info.value)


def test_vars_files_order(tmp_path):
    write(tmp_path, "group_vars/web/b.yml", "")
    write(tmp_path, "group_vars/web/a/z.json", "{}")
    write(tmp_path, "group_vars/web/a.d/skipped.yml", "")
    write(tmp_path, "group_vars/web/c", "")
    assert [p[len(str(tmp_path)) + 1:] for p in vars_files(str(tmp_path), "group_vars", "web")] == [
        "group_vars/web/a/z.json", "group_vars/web/b.yml", "group_vars/web/c"]
    assert vars_files(str(tmp_path), "host_vars", "web") == []
