"""Unit tests for concurdeploy.inventory.patterns: every Ansible pattern form, errors, @file."""

from __future__ import annotations

import textwrap

import pytest

from concurdeploy.exceptions import InventoryError, NoHostsMatched
from concurdeploy.inventory import load, select, split_pattern

INVENTORY = """\
all:
  hosts:
    bastion:
    "fe80::1":
  children:
    lb:
      children:
        haproxy:
          hosts:
            lb1:
            lb2:
        nginx:
          hosts:
            lb3:
    web:
      hosts:
        web1:
        web2:
        web3:
    prod:
      hosts:
        lb1:
        web1:
        web2:
        db1:
    db:
      hosts:
        db1:
    web1:
      hosts:
        lb3:
    empty:
"""

ALL = ["bastion", "fe80::1", "lb1", "lb2", "lb3", "web1", "web2", "web3", "db1"]


@pytest.fixture
def inv(tmp_path):
    path = tmp_path / "prod.yaml"
    path.write_text(INVENTORY, encoding="utf-8")
    return load(path)


def names(inventory, pattern):
    return [host.name for host in select(inventory, pattern)]


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


# --------------------------------------------------------------------------- single terms

def test_host_name(inv):
    assert names(inv, "web2") == ["web2"]


def test_group_name(inv):
    assert names(inv, "haproxy") == ["lb1", "lb2"]


def test_parent_group_includes_descendants(inv):
    assert names(inv, "lb") == ["lb1", "lb2", "lb3"]


def test_all_and_star(inv):
    assert names(inv, "all") == ALL
    assert names(inv, "*") == ALL


def test_name_that_is_host_and_group_selects_both(inv):
    assert names(inv, "web1") == ["lb3", "web1"]


def test_ipv6_host_name_is_one_term(inv):
    assert names(inv, "fe80::1") == ["fe80::1"]


def test_ungrouped(inv):
    assert names(inv, "ungrouped") == ["bastion", "fe80::1"]


# --------------------------------------------------------------------------- globs

def test_glob_star_on_host_names(inv):
    assert names(inv, "web*") == ["lb3", "web1", "web2", "web3"]  # web1 is also a group


def test_glob_on_group_names_selects_their_hosts(inv):
    assert names(inv, "ha*") == ["lb1", "lb2"]
    assert names(inv, "ngin?") == ["lb3"]


def test_glob_question_mark(inv):
    assert names(inv, "lb?") == ["lb1", "lb2", "lb3"]


def test_glob_brackets(inv):
    assert names(inv, "web[23]") == ["web2", "web3"]
    assert names(inv, "lb[!1]") == ["lb2", "lb3"]


def test_glob_is_case_sensitive(inv):
    with pytest.raises(NoHostsMatched):
        select(inv, "WEB*")


# --------------------------------------------------------------------------- combinations

def test_union_with_comma_and_colon(inv):
    assert names(inv, "db1,haproxy") == ["lb1", "lb2", "db1"]
    assert names(inv, "db1:haproxy") == ["lb1", "lb2", "db1"]
    assert names(inv, " db1 , haproxy ") == ["lb1", "lb2", "db1"]


def test_result_is_in_inventory_order_and_deduplicated(inv):
    assert names(inv, "web2,lb1,haproxy,lb,web2") == ["lb1", "lb2", "lb3", "web2"]


def test_intersection(inv):
    assert names(inv, "web:&prod") == ["web1", "web2"]
    assert names(inv, "web,&prod") == ["web1", "web2"]
    assert names(inv, "lb:&prod") == ["lb1"]


def test_exclusion(inv):
    assert names(inv, "web:!web2") == ["web1", "web3"]
    assert names(inv, "web,!web2") == ["web1", "web3"]
    assert names(inv, "lb:!haproxy") == ["lb3"]


def test_union_then_intersection_then_exclusion_whatever_the_order(inv):
    expected = ["lb1", "web1"]
    assert names(inv, "lb:web:&prod:!web2") == expected
    assert names(inv, "!web2:&prod:lb:web") == expected
    assert names(inv, "&prod,!web2,web,lb") == expected


def test_leading_exclusion_alone_means_all_minus(inv):
    assert names(inv, "!lb") == ["bastion", "fe80::1", "web1", "web2", "web3", "db1"]
    assert names(inv, "!lb:!ungrouped") == ["web1", "web2", "web3", "db1"]


def test_leading_intersection_alone_means_all_and(inv):
    assert names(inv, "&prod") == ["lb1", "web1", "web2", "db1"]


def test_globs_combine_with_operators(inv):
    assert names(inv, "*:!lb*:!ungrouped") == ["web1", "web2", "web3", "db1"]
    assert names(inv, "web*:&prod") == ["web1", "web2"]


# --------------------------------------------------------------------------- errors

def test_unknown_name_names_inventory_and_suggests(inv, tmp_path):
    with pytest.raises(NoHostsMatched) as info:
        select(inv, "lb9")
    message = str(info.value)
    assert "pattern 'lb9' matches no host or group in" in message
    assert str(tmp_path / "prod.yaml") in message
    assert "known groups: all, db, empty, haproxy, lb, nginx, prod, ungrouped, web, web1" in message
    assert "did you mean 'lb' or 'lb3' or 'lb2'?" in message


def test_unknown_name_in_a_union(inv):
    with pytest.raises(NoHostsMatched) as info:
        select(inv, "web,dbb")
    assert "pattern 'dbb'" in str(info.value)
    assert "did you mean 'db'" in str(info.value) or "'db1'" in str(info.value)


def test_unknown_name_in_an_exclusion_is_an_error(inv):
    with pytest.raises(NoHostsMatched) as info:
        select(inv, "web:!wbe2")
    assert "pattern 'wbe2'" in str(info.value)
    assert "'web2'" in str(info.value)


def test_unknown_name_in_an_intersection_is_an_error(inv):
    with pytest.raises(NoHostsMatched) as info:
        select(inv, "web:&prd")
    assert "'prod'" in str(info.value)


def test_glob_matching_nothing(inv):
    with pytest.raises(NoHostsMatched) as info:
        select(inv, "cache*")
    assert "pattern 'cache*' matches no host or group name" in str(info.value)


def test_pattern_selecting_no_host(inv, tmp_path):
    with pytest.raises(NoHostsMatched) as info:
        select(inv, "web:&db")
    assert "pattern 'web:&db' matches no host" in str(info.value)
    assert str(tmp_path / "prod.yaml") in str(info.value)


def test_empty_group_selects_no_host(inv):
    with pytest.raises(NoHostsMatched) as info:
        select(inv, "empty")
    assert "pattern 'empty' matches no host" in str(info.value)


def test_excluding_everything(inv):
    with pytest.raises(NoHostsMatched) as info:
        select(inv, "lb:!lb")
    assert "'lb:!lb'" in str(info.value)


def test_empty_pattern(inv):
    with pytest.raises(NoHostsMatched) as info:
        select(inv, " , ")
    assert "empty host pattern" in str(info.value)


def test_operator_without_name(inv):
    with pytest.raises(InventoryError) as info:
        select(inv, "web:!")
    assert "'!' with no name" in str(info.value)


def test_errors_are_inventory_errors(inv):
    with pytest.raises(InventoryError):
        select(inv, "nope")
    with pytest.raises(LookupError):
        select(inv, "nope")


# --------------------------------------------------------------------------- @file

def test_at_file(inv, tmp_path):
    limit = write(tmp_path, "limit.txt", """\
        # hosts to redo
        web2

        lb1   # the first balancer
        db*
        """)
    assert names(inv, f"@{limit}") == ["lb1", "web2", "db1"]


def test_at_file_lines_may_hold_patterns_and_operators(inv, tmp_path):
    limit = write(tmp_path, "limit.txt", """\
        web
        !web2
        lb1,lb2
        """)
    assert names(inv, f"@{limit}") == ["lb1", "lb2", "web1", "web3"]


def test_at_file_combines_with_other_terms(inv, tmp_path):
    limit = write(tmp_path, "limit.txt", "web1\nweb2\nweb3\n")
    assert names(inv, f"@{limit},&prod") == ["web1", "web2"]
    # !web1 removes host web1 and group web1 (lb3)
    assert names(inv, f"lb3,db1,@{limit},!web1") == ["web2", "web3", "db1"]


def test_at_file_with_unknown_host(inv, tmp_path):
    limit = write(tmp_path, "limit.txt", "web1\nweb9\n")
    with pytest.raises(NoHostsMatched) as info:
        select(inv, f"@{limit}")
    assert "pattern 'web9'" in str(info.value)


def test_at_file_missing(inv, tmp_path):
    missing = str(tmp_path / "nope.txt")
    with pytest.raises(InventoryError) as info:
        select(inv, f"@{missing}")
    assert info.value.path == missing
    assert missing in str(info.value) and "cannot read" in str(info.value)


def test_at_file_without_names(inv, tmp_path):
    limit = write(tmp_path, "limit.txt", "# nothing\n\n")
    with pytest.raises(NoHostsMatched) as info:
        select(inv, f"@{limit}")
    assert limit in str(info.value) and "lists no host" in str(info.value)


def test_at_file_cannot_name_another_file(inv, tmp_path):
    limit = write(tmp_path, "limit.txt", "web1\n@other.txt\n")
    with pytest.raises(InventoryError) as info:
        select(inv, f"@{limit}")
    assert f"{limit}:2:" in str(info.value)


def test_negated_at_file_is_refused(inv, tmp_path):
    limit = write(tmp_path, "limit.txt", "web1\n")
    with pytest.raises(InventoryError) as info:
        select(inv, f"all:!@{limit}")
    assert "cannot take '!'" in str(info.value)


# --------------------------------------------------------------------------- splitting

@pytest.mark.parametrize("pattern, terms", [
    ("web", ["web"]),
    ("web:&prod:!web3", ["web", "&prod", "!web3"]),
    ("a, b ,,c", ["a", "b", "c"]),
    ("web[1:3],db", ["web[1:3]", "db"]),
    ("", []),
])
def test_split_pattern(pattern, terms):
    assert split_pattern(pattern) == terms


def test_split_pattern_keeps_an_exact_name_whole():
    assert split_pattern("fe80::1", {"fe80::1"}) == ["fe80::1"]
    assert split_pattern("fe80::1") == ["fe80", "1"]
