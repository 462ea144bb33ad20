"""Unit tests for concurdeploy.inventory.model: format, precedence, aliases, errors, locations."""

from __future__ import annotations

import json
import os
import pickle
import textwrap
from pathlib import Path

import pytest
import yaml

from concurdeploy.exceptions import (
    InventoryError,
    NoHostsMatched,
    UnknownGroup,
    UsageError,
)
from concurdeploy.inventory.model import (
    Group,
    Host,
    Inventory,
    YamlMapping,
    load,
    where,
)


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


# --------------------------------------------------------------------------- structure

def test_nested_groups_membership_and_order(tmp_path):
    inv = load_text(tmp_path, NESTED)
    assert list(inv.hosts) == ["bastion", "lb1", "lb2", "web1", "web2"]
    assert list(inv.groups) == ["all", "ungrouped", "lb", "haproxy", "web"]
    assert inv.hosts["lb1"].groups == ("all", "lb", "haproxy")
    assert inv.hosts["web1"].groups == ("all", "web")
    assert [h.name for h in inv.hosts_of("lb")] == ["lb1", "lb2"]
    assert [h.name for h in inv.hosts_of("all")] == ["bastion", "lb1", "lb2", "web1", "web2"]
    assert inv.paths == (str(tmp_path / "inv.yaml"),)


def test_group_records(tmp_path):
    inv = load_text(tmp_path, NESTED)
    lb = inv.group("lb")
    assert isinstance(lb, Group)
    assert lb.hosts == ()
    assert lb.children == ("haproxy",)
    assert lb.vars == {"color": "lb", "tier": "frontend", "depth_owner": "lb"}
    assert lb.source == f"{tmp_path / 'inv.yaml'}:10"
    assert inv.group("haproxy").hosts == ("lb1", "lb2")
    assert set(inv.group("all").children) == {"ungrouped", "lb", "web"}


def test_host_source_is_its_first_definition(tmp_path):
    inv = load_text(tmp_path, NESTED)
    assert inv.hosts["lb1"].source == f"{tmp_path / 'inv.yaml'}:18"
    assert inv.hosts["bastion"].source == f"{tmp_path / 'inv.yaml'}:8"


def test_host_only_under_all_is_ungrouped(tmp_path):
    inv = load_text(tmp_path, NESTED)
    assert inv.hosts["bastion"].groups == ("all", "ungrouped")
    assert inv.group("ungrouped").hosts == ("bastion",)
    assert [h.name for h in inv.hosts_of("ungrouped")] == ["bastion"]


def test_explicit_ungrouped_host_also_in_a_group_leaves_ungrouped(tmp_path):
    inv = load_text(tmp_path, """\
        all:
          children:
            ungrouped:
              hosts:
                a:
                b:
            web:
              hosts:
                b:
        """)
    assert inv.group("ungrouped").hosts == ("a",)
    assert inv.hosts["b"].groups == ("all", "web")
    assert inv.hosts["a"].groups == ("all", "ungrouped")


def test_top_level_groups_other_than_all_are_children_of_all(tmp_path):
    inv = load_text(tmp_path, """\
        web:
          hosts:
            web1:
          vars:
            color: web
        db:
          hosts:
            db1:
        """)
    assert inv.hosts["web1"].groups == ("all", "web")
    assert {"web", "db"} <= set(inv.group("all").children)
    assert inv.group("all").source == "<implicit>"
    assert inv.hosts["web1"].vars["color"] == "web"


def test_empty_group_is_allowed_but_has_no_hosts(tmp_path):
    inv = load_text(tmp_path, """\
        all:
          children:
            later:
            web:
              hosts:
                web1:
        """)
    assert inv.group("later").hosts == ()
    with pytest.raises(NoHostsMatched) as info:
        inv.hosts_of("later")
    assert "'later' has no hosts" in str(info.value)


def test_child_reference_defined_elsewhere(tmp_path):
    inv = load_text(tmp_path, """\
        all:
          children:
            prod:
              children:
                web:
            web:
              hosts:
                web1:
              vars:
                color: web
        """)
    assert inv.hosts["web1"].groups == ("all", "prod", "web")
    assert [h.name for h in inv.hosts_of("prod")] == ["web1"]


def test_groups_nest_arbitrarily_deep(tmp_path):
    inv = load_text(tmp_path, """\
        all:
          children:
            a:
              children:
                b:
                  children:
                    c:
                      children:
                        d:
                          hosts:
                            deep:
        """)
    assert inv.hosts["deep"].groups == ("all", "a", "b", "c", "d")
    assert [h.name for h in inv.hosts_of("a")] == ["deep"]


def test_host_in_several_groups(tmp_path):
    inv = load_text(tmp_path, """\
        all:
          children:
            web:
              hosts:
                h1: {user: u}
            prod:
              hosts:
                h1: {user: u, port: 2200}
        """)
    host = inv.hosts["h1"]
    assert host.groups == ("all", "prod", "web")
    assert host.vars["port"] == 2200 and host.vars["user"] == "u"
    assert host.vars["group_names"] == ["prod", "web"]


def test_magic_vars_and_default_host(tmp_path):
    inv = load_text(tmp_path, NESTED)
    lb1 = inv.hosts["lb1"]
    path = str(tmp_path / "inv.yaml")
    assert lb1.vars["inventory_hostname"] == "lb1"
    assert lb1.vars["inventory_file"] == path
    assert lb1.vars["inventory_dir"] == os.path.dirname(os.path.abspath(path))
    assert os.path.isabs(lb1.vars["inventory_dir"])
    assert lb1.vars["group_names"] == ["haproxy", "lb"]
    assert inv.hosts["bastion"].vars["group_names"] == []
    assert lb1.vars["host"] == "lb1"
    assert lb1.origins["host"] == "default: the inventory name"
    assert lb1.origins["inventory_hostname"] == "magic variable"


def test_magic_vars_do_not_override_user_vars(tmp_path):
    inv = load_text(tmp_path, """\
        all:
          hosts:
            h1:
              inventory_hostname: custom
              host: 192.0.2.7
        """)
    assert inv.hosts["h1"].vars["inventory_hostname"] == "custom"
    assert inv.hosts["h1"].vars["host"] == "192.0.2.7"


# --------------------------------------------------------------------------- precedence

def test_precedence_host_over_child_over_parent_over_all(tmp_path):
    inv = load_text(tmp_path, NESTED)
    path = str(tmp_path / "inv.yaml")
    lb1, lb2, web1 = inv.hosts["lb1"].vars, inv.hosts["lb2"].vars, inv.hosts["web1"].vars
    assert lb1["color"] == "host"          # host beats child group
    assert lb2["color"] == "haproxy"       # child beats parent
    assert lb2["tier"] == "frontend"       # parent beats all
    assert web1["tier"] == "none"          # all when nobody else sets it
    assert lb2["depth_owner"] == "haproxy"
    origins = inv.hosts["lb1"].origins
    assert origins["color"] == f"host lb1 ({path}:19)"
    assert inv.hosts["lb2"].origins["color"] == f"group haproxy ({path}:22)"
    assert inv.hosts["lb2"].origins["tier"] == f"group lb ({path}:13)"
    assert inv.hosts["web1"].origins["user"] == f"group all ({path}:3)"


def test_same_depth_groups_apply_in_alphabetical_order(tmp_path):
    inv = load_text(tmp_path, """\
        all:
          children:
            beta:
              hosts:
                h1:
              vars:
                color: beta
            alpha:
              hosts:
                h1:
              vars:
                color: alpha
                only_alpha: yes
        """)
    host = inv.hosts["h1"]
    assert host.vars["color"] == "beta"
    assert host.origins["color"].startswith("group beta ")
    assert host.vars["only_alpha"] is True
    assert host.groups == ("all", "alpha", "beta")


def test_deeper_group_wins_whatever_its_name(tmp_path):
    inv = load_text(tmp_path, """\
        all:
          children:
            zzz:
              hosts:
                h1:
              vars: {color: zzz}
            parent:
              children:
                aaa:
                  hosts:
                    h1:
                  vars: {color: aaa}
        """)
    assert inv.hosts["h1"].vars["color"] == "aaa"
    assert inv.hosts["h1"].groups == ("all", "parent", "zzz", "aaa")


def test_depth_is_the_longest_path_from_all(tmp_path):
    inv = load_text(tmp_path, """\
        all:
          children:
            shared:
              hosts:
                h1:
              vars: {color: shared}
            zzz:
              hosts:
                h1:
              vars: {color: zzz}
            lb:
              children:
                shared:
        """)
    # shared is a child of all (depth 1) and of lb (depth 2): depth 2 beats zzz's 1
    assert inv.hosts["h1"].vars["color"] == "shared"
    assert inv.hosts["h1"].groups == ("all", "lb", "zzz", "shared")


def test_later_layer_replaces_a_value_wholesale(tmp_path):
    inv = load_text(tmp_path, """\
        all:
          vars:
            opts: {a: 1, b: 2}
          children:
            web:
              hosts:
                web1:
              vars:
                opts: {a: 3}
        """)
    assert inv.hosts["web1"].vars["opts"] == {"a": 3}


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


# --------------------------------------------------------------------------- structural errors

def test_unknown_key_in_group(tmp_path):
    err = load_error(tmp_path, """\
        all:
          children:
            haproxy:
              host:
                lb1:
        """)
    assert_points_at(err, "inv.yaml", 4, "host")
    message = str(err)
    assert "unknown key 'host' in group 'haproxy'" in message
    assert "(allowed: hosts, children, vars)" in message
    assert "host entries go under 'hosts:'" in message
    assert "did you mean 'hosts'?" in message


def test_vars_must_be_a_mapping(tmp_path):
    err = load_error(tmp_path, """\
        all:
          children:
            web:
              vars:
                - color: red
        """)
    assert_points_at(err, "inv.yaml", 4, "vars")
    assert "must be a mapping" in str(err) and "a list" in str(err)


def test_hosts_must_be_a_mapping(tmp_path):
    err = load_error(tmp_path, """\
        all:
          children:
            web:
              hosts:
                - web1
                - web2
        """)
    assert_points_at(err, "inv.yaml", 4, "hosts")
    assert "not '- name'" in str(err)


def test_host_vars_must_be_a_mapping(tmp_path):
    err = load_error(tmp_path, """\
        all:
          hosts:
            web1: 10.0.0.1
        """)
    assert_points_at(err, "inv.yaml", 3, "web1")
    assert "vars of host 'web1' must be a mapping" in str(err)
    assert "{host: ADDRESS}" in str(err)


def test_children_must_be_a_mapping(tmp_path):
    err = load_error(tmp_path, """\
        all:
          children: [web, db]
        """)
    assert_points_at(err, "inv.yaml", 2, "children")


def test_group_body_must_be_a_mapping(tmp_path):
    err = load_error(tmp_path, """\
        all:
          children:
            web: web1
        """)
    assert_points_at(err, "inv.yaml", 3, "web")
    assert "group 'web' must be a mapping" in str(err)


def test_host_name_must_be_a_string(tmp_path):
    err = load_error(tmp_path, """\
        all:
          hosts:
            010:
        """)
    assert_points_at(err, "inv.yaml", 3, "8")   # YAML 1.1 reads 010 as octal 8
    assert "quote the name" in str(err)


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


def test_cycle_in_children(tmp_path):
    err = load_error(tmp_path, """\
        all:
          children:
            a:
              children:
                b:
                  children:
                    a:
        """)
    assert "a -> b -> a" in str(err)
    assert_points_at(err, "inv.yaml", 7, "a")


def test_cycle_across_definitions(tmp_path):
    err = load_error(tmp_path, """\
        all:
          children:
            a:
              children:
                b:
            b:
              children:
                c:
            c:
              children:
                a:
        """)
    assert "a -> b -> c -> a" in str(err)
    assert_points_at(err, "inv.yaml", 11, "a")


def test_group_child_of_itself(tmp_path):
    err = load_error(tmp_path, """\
        all:
          children:
            web:
              children:
                web:
        """)
    assert "web -> web" in str(err)
    assert_points_at(err, "inv.yaml", 5, "web")


def test_all_as_a_child_is_a_cycle(tmp_path):
    err = load_error(tmp_path, """\
        all:
          children:
            web:
              children:
                all:
        """)
    assert "all -> web -> all" in str(err)


def test_host_defined_twice_with_conflicting_vars(tmp_path):
    err = load_error(tmp_path, """\
        all:
          children:
            web:
              hosts:
                web1: {port: 22}
            prod:
              hosts:
                web1: {port: 2222}
        """)
    assert_points_at(err, "inv.yaml", 8, "port")
    assert "inv.yaml:5" in str(err)   # the other place
    assert "host 'web1'" in str(err)


def test_host_defined_twice_with_same_vars_is_fine(tmp_path):
    inv = load_text(tmp_path, """\
        all:
          children:
            web:
              hosts:
                web1: {port: 22}
            prod:
              hosts:
                web1: {port: 22, user: u}
        """)
    assert inv.hosts["web1"].vars["port"] == 22
    assert inv.hosts["web1"].vars["user"] == "u"
    assert inv.hosts["web1"].source.endswith("inv.yaml:5")


def test_top_level_must_be_a_mapping(tmp_path):
    err = load_error(tmp_path, "- web1\n- web2\n")
    assert err.path.endswith("inv.yaml") and err.line == 1
    assert "mapping of groups" in str(err)


def test_ini_inventory_is_rejected_clearly(tmp_path):
    err = load_error(tmp_path, "[web]\nweb1\n", name="hosts.yml")
    assert err.path.endswith("hosts.yml")
    assert "not INI" in str(err) or "malformed YAML" in str(err)


def test_empty_file(tmp_path):
    err = load_error(tmp_path, "# nothing yet\n")
    assert err.path.endswith("inv.yaml")
    assert "empty" in str(err)


def test_top_level_hosts_key_asks_for_all(tmp_path):
    err = load_error(tmp_path, """\
        hosts:
          web1:
        """)
    assert_points_at(err, "inv.yaml", 1, "hosts")
    assert "starts with 'all:'" in str(err)


def test_group_vars_conflict_in_one_file(tmp_path):
    err = load_error(tmp_path, """\
        all:
          children:
            web:
              vars: {color: red}
            prod:
              children:
                web:
                  vars: {color: blue}
        """)
    assert_points_at(err, "inv.yaml", 8, "color")
    assert "inv.yaml:4" in str(err) and "group 'web'" in str(err)


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


# --------------------------------------------------------------------------- lookups

def test_unknown_group_lists_known_groups_and_suggests(tmp_path):
    inv = load_text(tmp_path, NESTED)
    with pytest.raises(UnknownGroup) as info:
        inv.group("haproy")
    message = str(info.value)
    assert "unknown group 'haproy'" in message
    assert "known groups: all, haproxy, lb, ungrouped, web" in message
    assert "did you mean 'haproxy'?" in message
    assert isinstance(info.value, KeyError) and isinstance(info.value, UsageError)


def test_hosts_of_unknown_group(tmp_path):
    inv = load_text(tmp_path, NESTED)
    with pytest.raises(UnknownGroup) as info:
        inv.hosts_of("wbe")
    assert "did you mean 'web'?" in str(info.value)


def test_inventory_select_delegates_to_patterns(tmp_path):
    inv = load_text(tmp_path, NESTED)
    assert [h.name for h in inv.select("lb:!lb2")] == ["lb1"]


# --------------------------------------------------------------------------- locations, pickling

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


def test_host_pickles(tmp_path):
    inv = load_text(tmp_path, NESTED)
    host = inv.hosts["lb1"]
    copy = pickle.loads(pickle.dumps(host))
    assert isinstance(copy, Host)
    assert copy == host
    assert copy.vars == host.vars and type(copy.vars) is YamlMapping
    assert where(copy.vars, "color") == where(host.vars, "color")
    assert copy.origins == host.origins


def test_inventory_pickles(tmp_path):
    inv = load_text(tmp_path, NESTED)
    copy = pickle.loads(pickle.dumps(inv))
    assert list(copy.hosts) == list(inv.hosts)
    assert copy.groups == inv.groups


def test_inventory_error_pickles(tmp_path):
    err = load_error(tmp_path, "all:\n  hosts:\n    h1: {port: abc}\n")
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is InventoryError
    assert str(copy) == str(err)
    assert (copy.path, copy.line, copy.key) == (err.path, err.line, err.key) == (
        str(tmp_path / "inv.yaml"), 3, "port")


def test_unknown_group_pickles(tmp_path):
    inv = load_text(tmp_path, NESTED)
    with pytest.raises(UnknownGroup) as info:
        inv.group("nope")
    copy = pickle.loads(pickle.dumps(info.value))
    assert type(copy) is UnknownGroup
    assert str(copy) == str(info.value)


def test_group_containing_itself_through_a_yaml_alias(tmp_path):
    err = load_error(tmp_path, """\
        all:
          children:
            a: &loop
              children:
                b: *loop
        """)
    assert_points_at(err, "inv.yaml", 5, "b")
    assert "YAML alias" in str(err)
