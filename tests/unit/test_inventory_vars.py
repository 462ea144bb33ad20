"""Unit tests for concurdeploy.inventory.vars: connection aliases, value checks, free-form
vars (each through a real YAML file and load())."""

from __future__ import annotations

import pytest

from concurdeploy.inventory import load
from tests.unit.inventory_helpers import assert_points_at, load_error, load_text, write
from tests.unit.test_inventory_listing import ansible_agrees


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


# --------------------------------------------------------------------------- Ansible's connection vars (issue #12)

def test_legacy_ssh_spellings_and_become_are_mapped(tmp_path):
    path = write(tmp_path, "inv.yaml", """\
        all:
          vars:
            ansible_become: "yes"
            ansible_become_user: postgres
            ansible_become_method: sudo
            ansible_connection: paramiko
            ansible_python_interpreter: /usr/bin/python3
          hosts:
            h1:
              ansible_ssh_host: 192.0.2.5
              ansible_ssh_port: "2222"
              ansible_ssh_user: admin
              ansible_ssh_private_key_file: /keys/id
              ansible_ssh_timeout: 7
              ansible_host_key_checking: false
        """)
    inv = load(path)
    v = inv.hosts["h1"].vars
    assert (v["host"], v["port"], v["user"], v["key_file"]) == ("192.0.2.5", 2222, "admin", "/keys/id")
    assert (v["become"], v["become_user"], v["connection"]) == (True, "postgres", "ssh")
    assert v["connect_timeout"] == 7 and v["host_key_policy"] == "off"
    assert v["ansible_python_interpreter"] == "/usr/bin/python3"      # ignored on purpose, harmless
    assert not any(k in v for k in ("ansible_ssh_host", "ansible_become", "ansible_connection"))
    assert inv.hosts["h1"].origins["host"] == f"host h1 ({path}:10)"
    raw = inv.hosts["h1"].raw_vars
    assert raw["ansible_ssh_port"] == "2222" and raw["ansible_become"] == "yes"  # as written, for --list
    ansible_agrees(path)


def test_two_ansible_spellings_with_different_values_are_refused(tmp_path):
    err = load_error(tmp_path, """\
        all:
          vars:
            ansible_host: 192.0.2.1
          hosts:
            h1:
              ansible_ssh_host: 192.0.2.2
        """)
    assert_points_at(err, "inv.yaml", 6, "ansible_ssh_host")
    assert "inv.yaml:3" in str(err) and "Ansible would take 'ansible_ssh_host'" in str(err)


def test_two_ansible_spellings_with_the_same_value_are_fine(tmp_path):
    inv = load_text(tmp_path, "all:\n  vars: {ansible_user: u}\n  hosts:\n    h1: {ansible_ssh_user: u}\n")
    assert inv.hosts["h1"].vars["user"] == "u"


def test_host_and_port_templates_are_rendered_from_the_host_vars(tmp_path):
    path = write(tmp_path, "inv.yaml", """\
        all:
          vars:
            domain: example
            ansible_host: "{{ inventory_hostname_short }}.{{ site }}.{{ domain }}"
            ansible_port: "{{ base_port + 1 }}"
            base_port: 2221
          hosts:
            web1.internal: {site: "{{ region }}-1", region: eu}
            web2: {site: us, ansible_host: !unsafe "{{ literal }}"}
        """)
    inv = load(path)
    assert inv.hosts["web1.internal"].vars["host"] == "web1.eu-1.example"
    assert inv.hosts["web1.internal"].vars["port"] == 2222
    assert inv.hosts["web2"].vars["host"] == "{{ literal }}"    # !unsafe: never rendered
    assert inv.hosts["web1.internal"].raw_vars["ansible_host"].startswith("{{ inventory_hostname_short }}")
    ansible_agrees(path)


def test_template_with_an_undefined_var_is_refused_at_its_line(tmp_path):
    err = load_error(tmp_path, """\
        all:
          hosts:
            h1:
              ansible_host: "{{ nowhere }}.example"
        """)
    assert_points_at(err, "inv.yaml", 4, "ansible_host")
    assert "'nowhere' is undefined" in str(err)


def test_template_rendering_a_bad_port_is_refused(tmp_path):
    err = load_error(tmp_path, "all:\n  vars: {p: x}\n  hosts:\n    h1: {ansible_port: '{{ p }}'}\n")
    assert_points_at(err, "inv.yaml", 4, "ansible_port")


@pytest.mark.parametrize("key, value, expected", [
    ("ansible_become_method", "su", "sudo only"),
    ("ansible_ssh_common_args", "'-o ProxyCommand=\"ssh -W %h:%p bastion\"'", "jump var"),
    ("ansible_ssh_extra_args", "-4", "cannot be passed through"),
    ("ansible_become_flags", "-H", "own flags"),
    ("ansible_connection", "sandbox", "connection: sandbox"),
    ("ansible_become", "maybe", "boolean"),
    ("ansible_host_key_checking", "sometimes", "boolean"),
    ("ansible_private_key", "KEYDATA", "key_env"),
    ("ansible_ssh_private_key_passphrase", "x", "passphrase_env"),
])
def test_unsupported_ansible_vars_are_refused_at_their_line(tmp_path, key, value, expected):
    err = load_error(tmp_path, f"all:\n  children:\n    web:\n      vars:\n        {key}: {value}\n")
    assert_points_at(err, "inv.yaml", 5, key)
    assert expected in str(err)
    if "KEYDATA" in value:
        assert value not in str(err)


def test_local_connection_is_kept_for_the_run_to_refuse(tmp_path):
    inv = load_text(tmp_path, "all:\n  hosts:\n    localhost: {ansible_connection: local}\n")
    assert inv.hosts["localhost"].vars["connection"] == "local"
    assert inv.hosts["localhost"].origins["connection"].startswith("host localhost (")
