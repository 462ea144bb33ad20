"""Unit tests for concurdeploy.inventory.builder: structural errors (keys, types, cycles,
conflicting vars), each pointing at file, line and key."""

from __future__ import annotations

from tests.unit.inventory_helpers import assert_points_at, load_error, load_text


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
