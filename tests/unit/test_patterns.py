"""Unit tests for concurdeploy.inventory.patterns: every Ansible pattern form, the order of
hosts, the refusals, @file.

The expected host lists are ansible-core 2.19's (``ansible -i INV PATTERN --list-hosts`` on
the same inventory); tests/differential/test_patterns_vs_ansible.py checks hundreds more
against the real tool.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import pytest

from concurdeploy.exceptions import InventoryError, NoHostsMatched
from concurdeploy.inventory import load, select, split_pattern
from concurdeploy.inventory.patterns import group_hosts, split_subscript

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
    webfront:
      hosts:
        lb3:
    empty:
"""

#: ``all`` as Ansible orders it: all's own hosts, then its children's, breadth first.
ALL = ["bastion", "fe80::1", "web1", "web2", "web3", "lb1", "db1", "lb3", "lb2"]
#: the file order (``inventory.hosts``)
FILE_ORDER = ["bastion", "fe80::1", "lb1", "lb2", "lb3", "web1", "web2", "web3", "db1"]


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


@dataclass
class FakeGroup:
    hosts: tuple = ()
    children: tuple = ()


@dataclass
class FakeInventory:
    """The shape patterns.select needs, for cases the loader refuses or cannot build."""

    groups: dict
    hosts: dict
    location: str = "fake.yaml"


def fake(groups: dict, host_order: list) -> FakeInventory:
    return FakeInventory(groups, {name: name for name in host_order})


# --------------------------------------------------------------------------- single terms

@pytest.mark.parametrize("pattern, expected", [
    ("web2", ["web2"]),                              # a host
    ("haproxy", ["lb1", "lb2"]),                     # a group
    ("lb", ["lb1", "lb2", "lb3"]),                   # a parent group: its descendants' hosts
    ("all", ALL),                                    # all's order, not the file's
    ("*", ALL),
    ("fe80::1", ["fe80::1"]),                        # an IPv6 name is one term
    ("ungrouped", ["bastion", "fe80::1"]),
    ("ungr*", ["bastion", "fe80::1"]),
])
def test_single_term(inv, pattern, expected):
    assert names(inv, pattern) == expected


def test_all_order_is_not_the_file_order(inv):
    assert ALL != FILE_ORDER and sorted(ALL) == sorted(FILE_ORDER)


def test_localhost_is_not_implicit(inv):
    # Ansible invents an implicit 'localhost'; a push target must be in the inventory.
    with pytest.raises(NoHostsMatched, match="'localhost' matches no host or group"):
        select(inv, "localhost")


# --------------------------------------------------------------------------- globs

@pytest.mark.parametrize("pattern, expected", [
    # groups web and webfront match (their hosts, in group order), then hosts web1..3
    ("web*", ["web1", "web2", "web3", "lb3"]),
    ("ha*", ["lb1", "lb2"]),
    ("ngin?", ["lb3"]),
    ("lb?", ["lb1", "lb2", "lb3"]),
    ("web[!1]", ["web2", "web3"]),
    ("lb[!1]", ["lb2", "lb3"]),
    ("*[bx]", ["lb1", "lb2", "lb3", "web1", "web2", "web3", "db1"]),  # groups lb, web, db
])
def test_glob(inv, pattern, expected):
    assert names(inv, pattern) == expected


def test_glob_is_case_sensitive(inv):
    with pytest.raises(NoHostsMatched):
        select(inv, "WEB*")


# --------------------------------------------------------------------------- subscripts

@pytest.mark.parametrize("pattern, expected", [
    ("web[0]", ["web1"]),
    ("web[2]", ["web3"]),
    ("lb[1]", ["lb2"]),
    ("web[-1]", ["web3"]),
    ("lb[-3]", ["lb1"]),
    ("web[0:1]", ["web1", "web2"]),                  # the end is inclusive
    ("lb[1:2]", ["lb2", "lb3"]),
    ("web[1:]", ["web2", "web3"]),
    ("all[7:]", ["lb3", "lb2"]),
    ("web[0:0]", ["web1"]),                          # quirk: an end of 0 is no end: [i:0] = [i]
    ("web[1:0]", ["web2"]),
    # web* gives [web1, web2, web3, lb3] from groups web and webfront, then hosts web1..3
    ("web*[3]", ["lb3"]),
    ("web*[4]", ["web1"]),
    ("*[-1]", ["db1"]),                              # the last host name matched, file order
    ("web[0:1]:&prod", ["web1", "web2"]),
    ("prod:!web[0]", ["lb1", "web2", "db1"]),
    ("haproxy[0],web[-1]", ["lb1", "web3"]),
])
def test_subscript(inv, pattern, expected):
    assert names(inv, pattern) == expected


def test_subscript_of_a_number_is_not_a_glob(inv):
    # web[12] is index 12 of group web (Ansible), not the glob matching web1 and web2
    with pytest.raises(NoHostsMatched, match=r"subscript out of range, 'web' selects 3 host"):
        select(inv, "web[12]")


def test_subscript_out_of_range(inv):
    with pytest.raises(NoHostsMatched, match=r"indexes 0\.\.2, or -3\.\.-1"):
        select(inv, "web[3]")
    with pytest.raises(NoHostsMatched):
        select(inv, "web[-4]")


def test_subscript_selecting_nothing_is_refused(inv):
    # Ansible silently selects nothing for these terms
    with pytest.raises(NoHostsMatched, match="the subscript selects no host"):
        select(inv, "db1,web[5:]")
    with pytest.raises(NoHostsMatched, match="the subscript selects no host"):
        select(inv, "db1,web[2:1]")


def test_subscript_that_ansible_reads_as_a_glob_is_refused(inv):
    # Ansible reads web[:2] as the glob matching 'web:' or 'web2', not a slice
    for pattern in ("web[:2]", "web[-2:]", "web[1:-1]", "web[:]"):
        with pytest.raises(InventoryError, match="is not a subscript Ansible knows") as info:
            select(inv, pattern)
        assert not isinstance(info.value, NoHostsMatched)


def test_removed_dash_subscript_is_refused(inv):
    # Ansible still reads web[0-1] as web[0:1] (with a warning that the form was removed)
    with pytest.raises(InventoryError, match=r"write 'web\[0:1\]'"):
        select(inv, "web[0-1]")


@pytest.mark.parametrize("term, parts", [
    ("web[0]", ("web", (0, None))),
    ("web[-2]", ("web", (-2, None))),
    ("web[1:3]", ("web", (1, 3))),
    ("web[2:]", ("web", (2, -1))),
    ("web[2:0]", ("web", (2, 0))),
    ("web*[1]", ("web*", (1, None))),
    ("web[!1]", ("web[!1]", None)),
    ("~web[0]", ("~web[0]", None)),
    ("[0]", ("[0]", None)),
])
def test_split_subscript(term, parts):
    assert split_subscript(term) == parts


# --------------------------------------------------------------------------- regex

def test_regex_is_anchored_at_the_start_only(inv):
    assert names(inv, "~web") == ["web1", "web2", "web3", "lb3"]  # groups web, webfront
    assert names(inv, "~lb\\d") == ["lb1", "lb2", "lb3"]
    with pytest.raises(NoHostsMatched, match="regex '~eb' matches no host or group name"):
        select(inv, "~eb")


def test_regex_full_syntax(inv):
    assert names(inv, "~(db|web)[13]$") == ["web1", "web3", "db1"]
    assert names(inv, "~.*1$") == ["fe80::1", "lb1", "web1", "db1"]


def test_regex_with_operators(inv):
    assert names(inv, "~web\\d:&prod") == ["web1", "web2"]
    assert names(inv, "all:!~(lb|web)") == ["bastion", "fe80::1", "db1"]


def test_regex_takes_no_subscript(inv):
    # the [0] is part of the regex: "web" then "0"
    with pytest.raises(NoHostsMatched, match="regex"):
        select(inv, "~web[0]")


def test_bad_regex(inv):
    with pytest.raises(InventoryError, match="not a valid regular expression"):
        select(inv, "~web(")


# --------------------------------------------------------------------------- combinations

@pytest.mark.parametrize("pattern, expected", [
    ("db1,haproxy", ["db1", "lb1", "lb2"]),          # the pattern's order, not the file's
    ("db1:haproxy", ["db1", "lb1", "lb2"]),
    (" db1 , haproxy ", ["db1", "lb1", "lb2"]),
    ("db1 haproxy", ["db1", "lb1", "lb2"]),          # whitespace separates too
    ("web2,lb1,haproxy,lb,web2", ["web2", "lb1", "lb2", "lb3"]),  # each host once
    ("web:&prod", ["web1", "web2"]),
    ("web,&prod", ["web1", "web2"]),
    ("lb:&prod", ["lb1"]),
    ("web:!web2", ["web1", "web3"]),
    ("web,!web2", ["web1", "web3"]),
    ("lb:!haproxy", ["lb3"]),
    # plain terms, then '&', then '!', whatever their place
    ("lb:web:&prod:!web2", ["lb1", "web1"]),
    ("!web2:&prod:lb:web", ["lb1", "web1"]),
    ("&prod,!web2,lb,web", ["lb1", "web1"]),
    # no plain term: start from all
    ("!lb", ["bastion", "fe80::1", "web1", "web2", "web3", "db1"]),
    ("!lb:!ungrouped", ["web1", "web2", "web3", "db1"]),
    ("&prod", ["web1", "web2", "lb1", "db1"]),
    ("*:!lb*:!ungrouped", ["web1", "web2", "web3", "db1"]),
    ("web*:&prod", ["web1", "web2"]),
])
def test_combinations(inv, pattern, expected):
    assert names(inv, pattern) == expected


def test_comma_makes_colon_no_separator(inv):
    # Ansible: with a ',' the pattern is split on ',' only; 'web:&prod' then names nothing
    with pytest.raises(NoHostsMatched, match="split on ',' only"):
        select(inv, "web:&prod,db")


def test_name_with_port_is_one_term(inv):
    # Ansible: 'web1:22' reads as host web1 port 22, one term, not 'web1' and '22'
    assert split_pattern("web1:22") == ["web1:22"]
    with pytest.raises(NoHostsMatched, match="read whole, as a host and port"):
        select(inv, "web1:22")


def test_exact_host_name_beats_a_group_of_that_name_but_not_after_a_prefix():
    # Ansible's _evaluate_patterns: a plain term equal to a host name is that host only;
    # '!x'/'&x' go through group matching, where a group named x wins over the host.
    # (The loader refuses a host and a group of the same name; the shape still allows it.)
    groups = {"all": FakeGroup(children=("ungrouped", "web", "web1")), "ungrouped": FakeGroup(),
              "web": FakeGroup(hosts=("web1", "web2")), "web1": FakeGroup(hosts=("lb3",))}
    shape = fake(groups, ["web1", "web2", "lb3"])
    assert select(shape, "web1") == ["web1"]
    assert select(shape, "web:!web1") == ["web1", "web2"]
    assert select(shape, "all:&web1") == ["lb3"]


def test_all_order_is_breadth_first_in_declaration_order():
    # all -> [a, b]; a -> [a1, a2]; b -> [b1]: level 2 in the order of the parents.
    # (Ansible orders level 2 and below by a set of groups: varies from run to run.)
    groups = {"all": FakeGroup(hosts=("h0",), children=("ungrouped", "a", "b")),
              "ungrouped": FakeGroup(hosts=("h0",)),
              "a": FakeGroup(children=("a1", "a2")), "b": FakeGroup(hosts=("h9",), children=("b1",)),
              "a1": FakeGroup(hosts=("h5", "h1")), "a2": FakeGroup(hosts=("h3", "h9")),
              "b1": FakeGroup(hosts=("h4",))}
    shape = fake(groups, ["h0", "h1", "h3", "h4", "h5", "h9"])
    assert group_hosts(shape, "all") == ["h0", "h9", "h5", "h1", "h3", "h4"]
    assert select(shape, "a") == ["h5", "h1", "h3", "h9"]


# --------------------------------------------------------------------------- splitting

@pytest.mark.parametrize("pattern, terms", [
    ("web", ["web"]),
    ("web:&prod:!web3", ["web", "&prod", "!web3"]),
    ("a, b ,,c", ["a", "b", "c"]),
    ("web[1:3],db", ["web[1:3]", "db"]),
    ("web[1:3]:db", ["web[1:3]", "db"]),
    ("web[1:]:db[0]", ["web[1:]", "db[0]"]),
    ("web[1:3]", ["web[1:3]"]),
    ("fe80::1", ["fe80::1"]),
    ("[fe80::1]:22", ["[fe80::1]:22"]),
    ("10.0.0.1:22", ["10.0.0.1:22"]),
    ("web:&prod,db", ["web:&prod", "db"]),
    ("web  db", ["web", "db"]),
    ("~web.*:db", ["~web.*", "db"]),
    ("~(a|b){1,2}", ["~(a|b){1", "2}"]),
    ("", []),
])
def test_split_pattern(pattern, terms):
    assert split_pattern(pattern) == terms


def test_unbalanced_bracket_is_refused(inv):
    # Ansible's splitter drops the stray '[': '~[' becomes '~', a regex matching every host
    for pattern in ("~[", "~web[", "web]:db"):
        with pytest.raises(InventoryError, match="unbalanced"):
            select(inv, pattern)


# --------------------------------------------------------------------------- errors

def test_unknown_name_names_inventory_and_suggests(inv, tmp_path):
    with pytest.raises(NoHostsMatched) as info:
        select(inv, "lb9")
    message = str(info.value)
    assert "pattern 'lb9' matches no host or group in" in message
    assert str(tmp_path / "prod.yaml") in message
    assert "known groups: all, db, empty, haproxy, lb, nginx, prod, ungrouped, web, webfront" in message
    assert "did you mean 'lb' or 'lb3' or 'lb2'?" in message


def test_unknown_name_in_a_union(inv):
    with pytest.raises(NoHostsMatched) as info:
        select(inv, "web,dbb")
    assert "pattern 'dbb'" in str(info.value)
    assert "did you mean 'db'" in str(info.value) or "'db1'" in str(info.value)


def test_unknown_name_in_an_exclusion_is_an_error(inv):
    # Ansible ignores it with a warning, and would deploy to web2
    with pytest.raises(NoHostsMatched) as info:
        select(inv, "web:!wbe2")
    assert "pattern 'wbe2'" in str(info.value)
    assert "'web2'" in str(info.value)


def test_space_after_operator_is_part_of_the_name(inv):
    with pytest.raises(NoHostsMatched, match="a space after '!' or '&' is part of the name"):
        select(inv, "web,! web2")


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
    assert names(inv, "db,empty") == ["db1"]  # an empty group is a name, not a typo


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
    assert names(inv, f"@{limit}") == ["web2", "lb1", "db1"]


def test_at_file_lines_may_hold_patterns_and_operators(inv, tmp_path):
    limit = write(tmp_path, "limit.txt", """\
        web
        !web2
        lb1,lb2
        haproxy[0]
        """)
    assert names(inv, f"@{limit}") == ["web1", "web3", "lb1", "lb2"]


def test_at_file_combines_with_other_terms(inv, tmp_path):
    limit = write(tmp_path, "limit.txt", "web1\nweb2\nweb3\n")
    assert names(inv, f"@{limit},&prod") == ["web1", "web2"]
    assert names(inv, f"lb3,db1,@{limit},!web1") == ["lb3", "db1", "web2", "web3"]


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
