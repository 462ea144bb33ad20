"""Unit tests for concurdeploy.inventory.yaml: malformed YAML with its line, duplicate keys,
merge keys, and the file:line every mapping and key remembers."""

from __future__ import annotations

import json

import yaml

from concurdeploy.inventory import Unsafe, where
from tests.unit.inventory_helpers import NESTED, assert_points_at, load_error, load_text


# --------------------------------------------------------------------------- syntax, duplicate and merge keys

def test_malformed_yaml_reports_the_line(tmp_path):
    err = load_error(tmp_path, """\
        all:
          hosts:
            web1:
              port: 22
             user: bad
        """)
    assert err.path.endswith("inv.yaml")
    assert err.line == 5
    assert "inv.yaml:5:" in str(err)
    assert "malformed YAML" in str(err)


def test_unclosed_flow_mapping_is_malformed(tmp_path):
    err = load_error(tmp_path, "all:\n  hosts: {web1: {port: 22}\n")
    assert "malformed YAML" in str(err)
    assert err.line is not None and f"inv.yaml:{err.line}:" in str(err)


def test_duplicate_key_in_a_mapping(tmp_path):
    err = load_error(tmp_path, """\
        all:
          hosts:
            web1:
              port: 22
            web2:
            web1:
        """)
    assert_points_at(err, "inv.yaml", 6, "web1")
    assert "duplicate key 'web1'" in str(err) and "line 3" in str(err)


def test_duplicate_top_level_key(tmp_path):
    err = load_error(tmp_path, """\
        all:
          hosts:
            a:
        all:
          hosts:
            b:
        """)
    assert_points_at(err, "inv.yaml", 4, "all")


def test_yaml_merge_keys_are_not_duplicates(tmp_path):
    inv = load_text(tmp_path, """\
        all:
          hosts:
            web1: &base
              user: deploy
              port: 22
            web2:
              <<: *base
              port: 2200
        """)
    assert inv.hosts["web2"].vars["port"] == 2200
    assert inv.hosts["web2"].vars["user"] == "deploy"


# --------------------------------------------------------------------------- locations

def test_where_reports_lines_of_nested_values(tmp_path):
    inv = load_text(tmp_path, """\
        all:
          children:
            haproxy:
              hosts:
                lb1:
              vars:
                files:
                  - src: haproxy.cfg
                    dest: /etc/haproxy/haproxy.cfg
                  - src: other.cfg
                    dest: /etc/other.cfg
        """)
    path = str(tmp_path / "inv.yaml")
    files = inv.hosts["lb1"].vars["files"]
    assert where(files[1]) == (path, 10)
    assert where(files[1], "dest") == (path, 11)
    assert where(inv.hosts["lb1"].vars, "files") == (path, 7)
    assert where(inv.group("haproxy").vars, "files") == (path, 7)
    assert where(files[0], "missing") == (None, None)
    assert where({"plain": 1}, "plain") == (None, None)
    assert where("not a mapping") == (None, None)


def test_host_vars_behave_as_plain_dicts(tmp_path):
    inv = load_text(tmp_path, NESTED)
    vars_ = inv.hosts["lb1"].vars
    assert isinstance(vars_, dict)
    assert json.loads(json.dumps(vars_)) == dict(vars_)
    assert yaml.safe_load(yaml.safe_dump(vars_)) == dict(vars_)
    assert vars_ == dict(vars_)


# --------------------------------------------------------------------------- Ansible's tags (issue #12)

VAULTED = """\
all:
  hosts:
    h1:
      ansible_become_password: !vault |
          $ANSIBLE_VAULT;1.1;AES256
          62313365396662343061393464336163383764373764613633653634306231386433626436623361
"""


def test_vault_value_is_refused_at_its_line_with_the_env_var_to_use(tmp_path):
    err = load_error(tmp_path, VAULTED)
    assert_points_at(err, "inv.yaml", 4, "ansible_become_password")
    assert "encrypted with ansible-vault: not supported" in str(err)
    assert "become_password_env" in str(err)
    assert "malformed YAML" not in str(err) and "6231336539" not in str(err)


def test_vault_value_inside_a_list_is_refused_at_its_line(tmp_path):
    err = load_error(tmp_path, "all:\n  vars:\n    tokens:\n      - plain\n      - !vault |\n"
                               "          $ANSIBLE_VAULT;1.1;AES256\n          6231\n")
    assert err.path.endswith("inv.yaml") and err.line == 5
    assert "ansible-vault" in str(err)


def test_unsafe_value_is_a_literal_string(tmp_path):
    inv = load_text(tmp_path, "all:\n  hosts:\n    h1:\n      motd: !unsafe '{{ not a template }}'\n")
    value = inv.hosts["h1"].vars["motd"]
    assert value == "{{ not a template }}" and isinstance(value, Unsafe)
    assert json.loads(json.dumps(inv.hosts["h1"].vars))["motd"] == "{{ not a template }}"


def test_unsafe_on_a_list_is_refused(tmp_path):
    err = load_error(tmp_path, "all:\n  vars:\n    x: !unsafe [a, b]\n")
    assert err.line == 3 and "!unsafe marks a string" in str(err)


def test_unknown_tag_is_refused_not_malformed(tmp_path):
    err = load_error(tmp_path, "all:\n  vars:\n    x: !encrypted abc\n")
    assert err.line == 3 and "unknown YAML tag '!encrypted'" in str(err)
