"""Unit tests for concurdeploy.inventory.builder: structural errors (keys, types, cycles,
conflicting vars), each pointing at file, line and key."""

from __future__ import annotations

from concurdeploy.inventory import load, where
from concurdeploy.inventory.builder import Builder
from concurdeploy.inventory.model import YamlMapping
from tests.unit.inventory_helpers import assert_points_at, load_error, load_text, write
from tests.unit.test_inventory_listing import ansible_agrees


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


def test_host_defined_twice_merges_vars_later_wins(tmp_path):
    path = write(tmp_path, "inv.yaml", """\
        all:
          children:
            web:
              hosts:
                web1: {port: 22, color: red, only_first: 1}
            prod:
              hosts:
                web1: {port: 2222, color: blue}
        """)
    inv = load(path)
    web1 = inv.hosts["web1"]
    assert web1.vars["port"] == 2222 and web1.vars["color"] == "blue" and web1.vars["only_first"] == 1
    assert where(web1.vars, "color") == (str(path), 8)
    assert web1.source == f"{path}:5"           # first definition
    ansible_agrees(path)


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


def test_ini_inventory_in_a_yml_file_is_read_as_ansible_reads_it(tmp_path):
    inv = load_text(tmp_path, "[web]\nweb1\n", name="hosts.yml")
    assert inv.hosts["web1"].groups == ("all", "web")
    ansible_agrees(tmp_path / "hosts.yml")


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


def test_group_defined_twice_merges_vars_later_wins(tmp_path):
    path = write(tmp_path, "inv.yaml", """\
        all:
          children:
            web:
              vars: {color: red, size: 1}
              hosts: {w1: }
            prod:
              children:
                web:
                  vars: {color: blue}
        """)
    inv = load(path)
    assert inv.hosts["w1"].vars["color"] == "blue" and inv.hosts["w1"].vars["size"] == 1
    assert inv.hosts["w1"].origins["color"] == f"group web ({path}:9)"
    ansible_agrees(path)


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


# --------------------------------------------------------------------------- Ansible's rules (issue #12)

def test_group_priority_orders_groups_of_the_same_depth(tmp_path):
    path = write(tmp_path, "inv.yaml", """\
        all:
          children:
            alpha:
              vars: {ansible_group_priority: 10, color: alpha}
              hosts: {h1: }
            beta:
              vars: {color: beta}
              hosts: {h1: }
            deep:
              children:
                deeper:
                  vars: {color: deeper}
                  hosts: {h2: }
            zeta:
              vars: {ansible_group_priority: 99, color: zeta}
              hosts: {h2: }
        """)
    inv = load(path)
    assert inv.hosts["h1"].vars["color"] == "alpha"      # priority 10 beats beta's default 1
    assert inv.hosts["h1"].groups == ("all", "beta", "alpha")
    assert inv.hosts["h2"].vars["color"] == "deeper"     # depth first, whatever the priority
    assert inv.group("alpha").priority == 10 and "ansible_group_priority" not in inv.group("alpha").vars
    ansible_agrees(path)


def test_group_priority_must_be_an_integer(tmp_path):
    err = load_error(tmp_path, """\
        all:
          children:
            web:
              vars:
                ansible_group_priority: high
        """)
    assert_points_at(err, "inv.yaml", 5, "ansible_group_priority")


def test_host_and_group_with_the_same_name_are_refused(tmp_path):
    err = load_error(tmp_path, """\
        all:
          children:
            db:
              hosts:
                web1:
            web:
              hosts:
                db:
        """)
    assert_points_at(err, "inv.yaml", 8, "db")
    assert "inv.yaml:3" in str(err) and "names both a host" in str(err)


def test_host_named_like_a_built_in_group_is_refused(tmp_path):
    err = load_error(tmp_path, "all:\n  hosts:\n    ungrouped:\n")
    assert_points_at(err, "inv.yaml", 3, "ungrouped")
    assert "built in" in str(err)


def test_top_level_group_listed_as_a_child_is_not_a_child_of_all(tmp_path):
    path = write(tmp_path, "inv.yaml", """\
        web:
          hosts: w1
        prod:
          children: web
        all:
          children:
            db:
              hosts: {d1: }
        """)
    inv = load(path)
    assert inv.group("all").children == ("ungrouped", "db", "prod")
    assert inv.hosts["w1"].groups == ("all", "prod", "web")
    ansible_agrees(path)


def test_ungrouped_order_explicit_first(tmp_path):
    path = write(tmp_path, "inv.yaml", """\
        all:
          hosts:
            a:
            c:
          children:
            ungrouped:
              hosts:
                b:
                a:
        """)
    assert load(path).group("ungrouped").hosts == ("b", "a", "c")
    ansible_agrees(path)


def test_group_vars_and_host_vars_files_layers(tmp_path):
    """Ansible's VARIABLE_PRECEDENCE: every group's inventory vars < group_vars files (all first)
    < the host's inventory vars < host_vars files."""
    path = write(tmp_path, "inv.yaml", """\
        all:
          children:
            web:
              vars: {a: web-inv, b: web-inv}
              hosts:
                w1: {c: host-inv, d: host-inv}
        """)
    builder = Builder()
    builder.add_document(load_yaml(path), str(path))

    def located(**values):
        mapping = YamlMapping.at("gv.yml", 1)
        for key, value in values.items():
            mapping.put(key, value, ("gv.yml", 2))
        return mapping

    builder.add_group_vars_file("all", located(a="all-file", c="all-file"), "gv.yml")
    builder.add_group_vars_file("web", located(b="web-file"), "gv.yml")
    builder.add_group_vars_file("nosuchgroup", located(a="ignored"), "gv.yml")
    builder.add_host_vars_file("w1", located(d="host-file"), "gv.yml")
    builder.add_host_vars_file("nosuchhost", located(d="ignored"), "gv.yml")
    w1 = builder.build(str(path), (str(path),)).hosts["w1"]
    assert (w1.vars["a"], w1.vars["b"], w1.vars["c"], w1.vars["d"]) == ("all-file", "web-file", "host-inv",
                                                                         "host-file")
    assert w1.origins["a"] == "group_vars all (gv.yml:2)"


def load_yaml(path):
    from concurdeploy.inventory.yaml import read_yaml

    return read_yaml(str(path))


def test_empty_file_beside_another_defines_nothing(tmp_path):
    write(tmp_path, "inv/a.yml", "all:\n  hosts: {h1: }\n")
    write(tmp_path, "inv/b.yml", "# nothing yet\n")
    assert list(load(tmp_path / "inv").hosts) == ["h1"]
    ansible_agrees(tmp_path / "inv")


def test_group_priority_in_a_group_vars_file_is_a_plain_var(tmp_path):
    path = write(tmp_path, "inv.yaml", "all:\n  children:\n    alpha:\n      hosts: {h: }\n      vars: {c: alpha}\n"
                                       "    beta:\n      hosts: {h: }\n      vars: {c: beta}\n")
    builder = Builder()
    builder.add_document(load_yaml(path), str(path))
    mapping = YamlMapping.at("alpha.yml", 1)
    mapping.put("ansible_group_priority", 9, ("alpha.yml", 1))
    builder.add_group_vars_file("alpha", mapping, "alpha.yml")
    inv = builder.build(str(path), (str(path),))
    assert inv.group("alpha").priority == 1                      # as Ansible: no effect on the order
    assert inv.hosts["h"].vars["c"] == "beta" and inv.hosts["h"].raw_vars["ansible_group_priority"] == 9
