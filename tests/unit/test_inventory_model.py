"""Unit tests for concurdeploy.inventory.model: Host/Group/Inventory records, ungrouped and
magic vars, the precedence rule, lookups, pickling."""

from __future__ import annotations

import os
import pickle

import pytest

from concurdeploy.exceptions import InventoryError, NoHostsMatched, UnknownGroup, UsageError
from concurdeploy.inventory import Group, Host, Unsafe, YamlMapping, where
from concurdeploy.inventory.model import precedence_order
from tests.unit.inventory_helpers import NESTED, load_error, load_text


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


# --------------------------------------------------------------------------- pickling

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


def test_host_with_raw_vars_and_unsafe_pickles(tmp_path):
    inv = load_text(tmp_path, "all:\n  hosts:\n    h1: {ansible_port: 2222, m: !unsafe '{{ x }}'}\n")
    copy = pickle.loads(pickle.dumps(inv.hosts["h1"]))
    assert copy == inv.hosts["h1"]
    assert copy.raw_vars == {"ansible_port": 2222, "m": "{{ x }}"} and isinstance(copy.raw_vars["m"], Unsafe)
    assert copy.vars["port"] == 2222 and "ansible_port" not in copy.vars


def test_precedence_order_depth_then_priority_then_name():
    depth = {"all": 0, "a": 1, "b": 1, "c": 2}
    assert precedence_order(["c", "b", "a", "all"], depth) == ("all", "a", "b", "c")
    assert precedence_order(["c", "b", "a", "all"], depth, {"a": 5}) == ("all", "b", "a", "c")
