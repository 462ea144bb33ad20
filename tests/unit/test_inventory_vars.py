"""Unit tests for concurdeploy.inventory.vars: connection aliases, value checks, free-form
vars (each through a real YAML file and load())."""

from __future__ import annotations

import pytest

from tests.unit.inventory_helpers import assert_points_at, load_error, load_text


# --------------------------------------------------------------------------- aliases and types

def test_connection_aliases_are_normalised(tmp_path):
    inv = load_text(tmp_path, """\
        all:
          hosts:
            h1:
              ansible_host: 10.0.0.1
              ansible_port: 2222
              ansible_user: admin
              ansible_ssh_private_key_file: ~/.ssh/id_deploy
        """)
    host = inv.hosts["h1"]
    assert host.vars["host"] == "10.0.0.1"
    assert host.vars["port"] == 2222
    assert host.vars["user"] == "admin"
    assert host.vars["key_file"] == "~/.ssh/id_deploy"
    assert not any(key.startswith("ansible_") for key in host.vars)
    assert host.origins["port"] == f"host h1 ({tmp_path / 'inv.yaml'}:5)"


def test_alias_and_name_with_same_value_are_fine(tmp_path):
    inv = load_text(tmp_path, """\
        all:
          hosts:
            h1: {ansible_port: 22, port: 22}
        """)
    assert inv.hosts["h1"].vars["port"] == 22


def test_alias_and_name_with_different_values_conflict(tmp_path):
    err = load_error(tmp_path, """\
        all:
          hosts:
            h1:
              port: 22
              ansible_port: 2222
        """)
    assert_points_at(err, "inv.yaml", 5, "ansible_port")
    assert "'port'" in str(err) and "keep one" in str(err)


def test_alias_in_group_and_plain_name_on_host_follow_precedence(tmp_path):
    inv = load_text(tmp_path, """\
        all:
          vars:
            ansible_user: groupuser
          hosts:
            h1: {user: hostuser}
            h2:
        """)
    assert inv.hosts["h1"].vars["user"] == "hostuser"
    assert inv.hosts["h2"].vars["user"] == "groupuser"


def test_numeric_string_port_is_converted(tmp_path):
    inv = load_text(tmp_path, """\
        all:
          hosts:
            h1: {port: "2222"}
        """)
    assert inv.hosts["h1"].vars["port"] == 2222


@pytest.mark.parametrize("key, value, expected", [
    ("port", '"abc"', "integer from 1 to 65535"),
    ("port", "70000", "integer from 1 to 65535"),
    ("port", "0", "integer from 1 to 65535"),
    ("port", "true", "integer from 1 to 65535"),
    ("ansible_port", "-1", "integer from 1 to 65535"),
    ("host", "123", "non-empty string"),
    ("ansible_host", '""', "non-empty string"),
    ("user", "null", "non-empty string"),
    ("key_file", "[a, b]", "non-empty string"),
    ("key_env", "12", "non-empty string"),
    ("password_env", "{a: 1}", "non-empty string"),
    ("known_hosts", "false", "non-empty string"),
    ("host_key_policy", "maybe", "strict, accept-new, off"),
    ("host_key_policy", "true", "strict, accept-new, off"),
    ("connect_timeout", "0", "positive number of seconds"),
    ("command_timeout", "-5", "positive number of seconds"),
    ("command_timeout", '"10"', "positive number of seconds"),
    ("forks", "0", "positive integer"),
    ("forks", "1.5", "positive integer"),
])
def test_connection_var_types_are_checked(tmp_path, key, value, expected):
    err = load_error(tmp_path, f"""\
        all:
          children:
            web:
              hosts:
                web1:
                  {key}: {value}
        """)
    assert_points_at(err, "inv.yaml", 6, key)
    assert expected in str(err)
    assert "host 'web1'" in str(err)


def test_connection_var_types_are_checked_in_group_vars(tmp_path):
    err = load_error(tmp_path, """\
        all:
          vars:
            forks: many
        """)
    assert_points_at(err, "inv.yaml", 3, "forks")
    assert "group 'all'" in str(err)


def test_valid_connection_values_are_kept(tmp_path):
    inv = load_text(tmp_path, """\
        all:
          hosts:
            h1:
              host_key_policy: off
              connect_timeout: 2.5
              command_timeout: 30
              forks: 10
              key_env: DEPLOY_KEY
            h2:
              host_key_policy: accept-new
        """)
    vars_ = inv.hosts["h1"].vars
    assert vars_["host_key_policy"] == "off"   # YAML reads bare off as false
    assert vars_["connect_timeout"] == 2.5
    assert vars_["command_timeout"] == 30
    assert vars_["forks"] == 10
    assert inv.hosts["h2"].vars["host_key_policy"] == "accept-new"


def test_other_vars_are_free_form(tmp_path):
    inv = load_text(tmp_path, """\
        all:
          hosts:
            h1:
              anything: [1, two, {three: 3}]
              when: 2024-01-02
        """)
    assert inv.hosts["h1"].vars["anything"] == [1, "two", {"three": 3}]
