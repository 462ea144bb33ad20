"""Unit tests for concurdeploy.inventory.loader: which files a path means (a folder read as
Ansible reads it), which reader reads each file, errors naming the file they come from.

Also home of the helpers that compare a load with the reference, ``ansible-inventory -i PATH
--list`` (ansible-core, the ``test`` extra): :func:`ansible_list`, :func:`assert_agrees`,
used by test_inventory_ini.py, test_inventory_folder.py and test_inventory_ranges.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from concurdeploy.exceptions import InventoryError
from concurdeploy.inventory import load
from concurdeploy.inventory.listing import dumps
from tests.unit.inventory_helpers import assert_points_at, write

ANSIBLE_INVENTORY = shutil.which("ansible-inventory")
needs_ansible = pytest.mark.skipif(ANSIBLE_INVENTORY is None,
                                   reason="ansible-core (the test extra) is not installed")


# --------------------------------------------------------------------------- the reference

def ansible_list(path, scratch) -> dict | None:
    """``ansible-inventory -i PATH --list`` as data, or None when Ansible cannot parse it.

    Run from an empty folder with an empty config and its own ANSIBLE_HOME (so nothing beside
    the test's files is read); a source Ansible cannot parse fails instead of warning.
    """
    scratch.mkdir(exist_ok=True)
    config = scratch / "ansible.cfg"
    config.write_text("")
    env = {**os.environ, "ANSIBLE_CONFIG": str(config), "ANSIBLE_HOME": str(scratch / "home"),
           "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true",
           "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "true", "ANSIBLE_NOCOLOR": "1"}
    res = subprocess.run([ANSIBLE_INVENTORY, "-i", str(path), "--list"], cwd=scratch, env=env,
                         capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        return None
    return json.loads(res.stdout)


def view(listing: dict) -> dict:
    """What we compare: the host set, each group's hosts (in order) and children, and every
    host's merged vars (``_meta.hostvars``)."""
    hostvars = listing["_meta"]["hostvars"]
    groups = {name: {"hosts": body.get("hosts", []), "children": body.get("children", [])}
              for name, body in listing.items() if name != "_meta"}
    hosts = set(hostvars) | {h for body in groups.values() for h in body["hosts"]}
    return {"hosts": sorted(hosts), "groups": groups, "hostvars": hostvars}


def assert_agrees(path, scratch) -> dict:
    """Load ``path`` and check it against ``ansible-inventory --list``; return Ansible's view."""
    theirs = ansible_list(path, scratch)
    assert theirs is not None, f"ansible-inventory cannot parse {path}"
    ours = json.loads(dumps(load(path)))
    assert view(ours) == view(theirs)
    return view(theirs)


# --------------------------------------------------------------------------- files and folders

def test_missing_path(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(InventoryError) as info:
        load(missing)
    assert str(info.value) == (f"inventory not found: {missing}; pass -i PATH or set "
                               "CONCURDEPLOY_INVENTORY")


def test_folder_reads_every_inventory_file_sorted_subfolders_included(tmp_path):
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
    write(tmp_path, "README.md", "# not an inventory")
    write(tmp_path, "ansible.cfg", "[defaults]\n")
    write(tmp_path, "old.yml.bak", "all:\n  hosts:\n    bak1:\n")
    write(tmp_path, ".draft.yaml", "all:\n  hosts:\n    draft1:\n")
    write(tmp_path, "examples/more.yaml", "all:\n  hosts:\n    example1:\n")
    inv = load(tmp_path)
    assert inv.paths == (str(tmp_path / "a_base.yaml"), str(tmp_path / "b_web.yml"),
                         str(tmp_path / "examples" / "more.yaml"))
    assert list(inv.hosts) == ["web1", "db1", "web2", "example1"]
    assert inv.group("web").hosts == ("web1", "web2")
    assert inv.hosts["web2"].vars["user"] == "deploy"
    assert inv.hosts["web2"].vars["inventory_file"] == str(tmp_path / "b_web.yml")
    assert inv.hosts["web1"].vars["inventory_file"] == str(tmp_path / "a_base.yaml")
    assert inv.location == str(tmp_path)


@needs_ansible
def test_folder_agrees_with_ansible(tmp_path):
    inv = tmp_path / "inv"
    write(inv, "10-web.yml", "web:\n  hosts:\n    web1:\n    web2: {port_note: x}\n")
    write(inv, "20-db", "[db]\ndb1 ansible_port=2201\n[prod:children]\ndb\nweb\n")
    write(inv, "30-lb.ini", "[lb]\nlb1\n")
    write(inv, "sub/40-cache.yaml", "cache:\n  hosts:\n    c1:\n")
    write(inv, "notes.txt", "web3\n")
    write(inv, "site.retry", "web4\n")
    theirs = assert_agrees(inv, tmp_path / "ansible")
    assert theirs["hosts"] == ["c1", "db1", "lb1", "web1", "web2"]


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


def test_ini_children_may_name_a_group_of_an_earlier_file_not_a_later_one(tmp_path):
    write(tmp_path, "a.yml", "web:\n  hosts:\n    web1:\n")
    write(tmp_path, "b.ini", "[prod:children]\nweb\n")
    assert load(tmp_path).hosts["web1"].groups == ("all", "prod", "web")
    write(tmp_path, "0.ini", "[stage:children]\nweb\n")
    with pytest.raises(InventoryError) as info:
        load(tmp_path)
    assert_points_at(info.value, "0.ini", 2, "web")


@needs_ansible
def test_redefinition_across_files_later_wins_as_ansible(tmp_path):
    write(tmp_path, "inv/a.yaml", "all:\n  children:\n    web:\n      hosts:\n        web1: {user: alice}\n"
                                  "      vars:\n        color: red\n")
    write(tmp_path, "inv/b.ini", "[web]\nweb1 user=bob\n[web:vars]\ncolor=blue\n")
    assert_agrees(tmp_path / "inv", tmp_path / "ansible")
    host = load(tmp_path / "inv").hosts["web1"]
    assert (host.vars["user"], host.vars["color"]) == ("bob", "blue")


def test_folder_without_inventory_file(tmp_path):
    write(tmp_path, "README.md", "# inventories\n")
    write(tmp_path, "group_vars/all.yml", "x: 1\n")
    with pytest.raises(InventoryError) as info:
        load(tmp_path)
    assert info.value.path == str(tmp_path)
    assert "no inventory file" in str(info.value)


def test_error_in_second_file_names_that_file(tmp_path):
    write(tmp_path, "a.yaml", "all:\n  hosts:\n    web1:\n")
    write(tmp_path, "b.yaml", "all:\n  children:\n    web:\n      hots:\n")
    with pytest.raises(InventoryError) as info:
        load(tmp_path)
    assert_points_at(info.value, "b.yaml", 4, "hots")


# --------------------------------------------------------------------------- which reader

def test_ini_file_by_extension_and_extensionless(tmp_path):
    write(tmp_path, "hosts.ini", "[web]\nweb1 ansible_port=2222\n")
    assert load(tmp_path / "hosts.ini").hosts["web1"].vars["port"] == 2222
    write(tmp_path, "hosts", "web1\n[db]\ndb1\n")
    inv = load(tmp_path / "hosts")
    assert inv.group("ungrouped").hosts == ("web1",) and inv.group("db").hosts == ("db1",)


def test_extensionless_yaml_is_yaml(tmp_path):
    write(tmp_path, "hosts", "all:\n  children:\n    web:\n      hosts:\n        web1:\n")
    assert load(tmp_path / "hosts").group("web").hosts == ("web1",)


@needs_ansible
def test_ini_text_in_a_yml_file_is_read_as_ini_as_ansible_does(tmp_path):
    write(tmp_path, "hosts.yml", "# converted from INI\n[web]\nweb1 http_port=8080\n")
    assert_agrees(tmp_path / "hosts.yml", tmp_path / "ansible")
    assert load(tmp_path / "hosts.yml").hosts["web1"].vars["http_port"] == 8080


def test_malformed_yaml_is_reported_as_yaml_not_ini(tmp_path):
    write(tmp_path, "inv.yaml", "all:\n  hosts:\n    web1:\n   bad: [\n")
    with pytest.raises(InventoryError) as info:
        load(tmp_path / "inv.yaml")
    assert info.value.path.endswith("inv.yaml") and info.value.line == 4
    assert "YAML" in str(info.value)


def test_extensionless_file_that_is_neither_names_the_line(tmp_path):
    write(tmp_path, "hosts", "[web]\nweb1 oops\n")
    with pytest.raises(InventoryError) as info:
        load(tmp_path / "hosts")
    assert_points_at(info.value, "hosts", 2, "oops")


def test_inventory_plugin_config_is_refused(tmp_path):
    write(tmp_path, "aws_ec2.yml", "plugin: amazon.aws.aws_ec2\nregions: [eu-west-1]\n")
    with pytest.raises(InventoryError) as info:
        load(tmp_path / "aws_ec2.yml")
    assert_points_at(info.value, "aws_ec2.yml", 1, "plugin")
    assert "ansible-inventory -i" in str(info.value) and "--list" in str(info.value)


def test_toml_is_refused(tmp_path):
    write(tmp_path, "hosts.toml", "[web.hosts.web1]\n")
    with pytest.raises(InventoryError) as info:
        load(tmp_path / "hosts.toml")
    assert "TOML" in str(info.value) and info.value.path.endswith("hosts.toml")


def test_executable_script_is_run_and_json_file_read(tmp_path):
    script = write(tmp_path, "inv/cloud.py", """\
        #!/usr/bin/env python3
        import json, sys
        if sys.argv[1:] == ["--list"]:
            print(json.dumps({"web": {"hosts": ["web[1:2]"]}, "_meta": {"hostvars": {}}}))
        """)
    script.chmod(0o755)
    write(tmp_path, "inv/saved.json", json.dumps({"db": {"hosts": {"db[1:2]": None}}}))
    inv = load(tmp_path / "inv")
    # a script's names are taken as written (Ansible's script plugin); a JSON file in the YAML
    # structure is read as Ansible's yaml plugin reads it: ranges expanded
    assert inv.group("web").hosts == ("web[1:2]",)
    assert inv.group("db").hosts == ("db1", "db2")


def test_executable_yaml_without_shebang_is_read_not_run(tmp_path):
    path = write(tmp_path, "inv.yml", "all:\n  hosts:\n    web1:\n")
    path.chmod(0o755)
    assert list(load(path).hosts) == ["web1"]
