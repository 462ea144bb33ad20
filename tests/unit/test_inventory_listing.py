"""Unit tests for concurdeploy.inventory.listing: ``inventory --list`` JSON in the exact shape of
``ansible-inventory --list``, checked against the real ansible-inventory (a test-only dependency).

:func:`ansible_agrees` is shared by the other inventory tests that compare with Ansible.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from concurdeploy.inventory import load
from concurdeploy.inventory.listing import PROFILE, ansible_list, dumps
from tests.unit.inventory_helpers import NESTED, write


def ansible_inventory(path: Path) -> str:
    """``ansible-inventory -i PATH --list``'s stdout (the reference)."""
    exe = shutil.which("ansible-inventory")
    if exe is None:
        pytest.fail("ansible-inventory not found: pip install -e '.[test]' (ansible-core is a test dependency)")
    env = {**os.environ, "ANSIBLE_INVENTORY_UNPARSED_FAILED": "1", "ANSIBLE_NOCOLOR": "1"}
    done = subprocess.run([exe, "-i", str(path), "--list"], capture_output=True, text=True, env=env,
                          cwd=str(path.parent), timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def ansible_agrees(path: Path) -> dict:
    """Assert our listing of ``path`` equals ansible-inventory's, as text; return it parsed."""
    ours = dumps(load(path))
    theirs = ansible_inventory(path)
    assert json.loads(ours) == json.loads(theirs)
    assert ours == theirs.rstrip("\n")  # same text: key order, indent, non-ASCII
    return json.loads(ours)


def test_nested_inventory_lists_as_ansible_does(tmp_path):
    data = ansible_agrees(write(tmp_path, "inv.yaml", NESTED))
    assert data["all"] == {"children": ["ungrouped", "lb", "web"]}
    assert data["lb"] == {"children": ["haproxy"]}
    assert data["_meta"]["profile"] == PROFILE
    assert data["_meta"]["hostvars"]["lb1"]["color"] == "host"
    assert "inventory_hostname" not in data["_meta"]["hostvars"]["lb1"]


def test_vars_listed_as_written_with_precedence_priority_and_redefinition(tmp_path):
    path = write(tmp_path, "inv.yaml", """\
        web:
          vars: {ansible_group_priority: 7, color: web, ansible_user: deploy}
          hosts:
            w1: {ansible_host: 192.0.2.1, port_s: "2222", opts: {a: 1}}
            w2:
        db:
          vars: {color: db, ansible_ssh_port: 2200}
          hosts:
            w1: {opts: {b: 2}, when: 2024-01-02}
            d1:
        empty:
        prod:
          children:
            db:
        """)
    data = ansible_agrees(path)
    w1 = data["_meta"]["hostvars"]["w1"]
    assert w1["ansible_host"] == "192.0.2.1" and w1["ansible_user"] == "deploy"   # names kept
    assert w1["opts"] == {"b": 2}          # host defined twice: later wins, wholesale
    assert "ansible_group_priority" not in w1
    assert "empty" not in data and "empty" in data["all"]["children"]
    assert "db" not in data["all"]["children"]    # top-level, but a child of prod: not a child of all


def test_unsafe_and_dates_are_encoded_as_ansible_does(tmp_path):
    path = write(tmp_path, "inv.yaml", """\
        all:
          hosts:
            h1:
              raw: !unsafe "{{ not rendered }}"
              day: 2024-01-02
              at: 2024-01-02 10:11:12
              nested: {list: [!unsafe "{{ x }}", 1, null, true]}
        """)
    data = ansible_agrees(path)
    assert data["_meta"]["hostvars"]["h1"]["raw"] == {"__ansible_unsafe": "{{ not rendered }}"}


def test_unicode_names_kept(tmp_path):
    ansible_agrees(write(tmp_path, "inv.yaml", "all:\n  children:\n    grüppe:\n      hosts:\n"
                                               "        hôst.example: {v: \"é ✓\"}\n"))


def test_mask_is_applied_to_host_vars(tmp_path):
    inv = load(write(tmp_path, "inv.yaml", """\
        all:
          hosts:
            h1: {api_token: abc, secret_vars: [motd], motd: hello, key_file: /k}
        """))

    def mask(key, value, names):
        return "********" if key in names or "token" in key else value

    hv = ansible_list(inv, mask)["_meta"]["hostvars"]["h1"]
    assert hv == {"api_token": "********", "secret_vars": ["motd"], "motd": "********", "key_file": "/k"}


def test_keys_of_mixed_types_list_as_ansible_does(tmp_path):
    """A reviewer's case: int and str keys in one mapping crashed the listing (they cannot be
    sorted together); JSON writes every key as a string, and Ansible sorts them as such."""
    path = write(tmp_path, "inv.yaml", "all:\n  hosts: {h1.example: }\n  vars:\n"
                 "    port_map: {80: http, 443: https, default: none}\n    odd: {true: 1, null: 2, 1.5: 3}\n")
    data = ansible_agrees(path)
    assert list(data["_meta"]["hostvars"]["h1.example"]["port_map"]) == ["443", "80", "default"]


def test_a_set_lists_as_a_list(tmp_path):
    path = write(tmp_path, "inv.yaml", "all:\n  hosts: {h1.example: }\n  vars:\n    st: !!set {y, x}\n")
    data = json.loads(dumps(load(path)))
    theirs = json.loads(ansible_inventory(path))
    assert data["_meta"]["hostvars"]["h1.example"]["st"] == ["x", "y"]  # a set has no order: ours is sorted
    assert sorted(theirs["_meta"]["hostvars"]["h1.example"]["st"]) == ["x", "y"]
