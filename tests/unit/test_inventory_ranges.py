"""Unit tests for concurdeploy.inventory.ranges: host ranges and ``host:port`` keys, in YAML
``hosts:`` keys and INI host lines, checked against ``ansible-inventory --list``."""

from __future__ import annotations

import pytest

from concurdeploy.exceptions import InventoryError
from concurdeploy.inventory import load, where
from concurdeploy.inventory.ranges import MAX_HOSTS, expand_range, host_pattern, parse_address
from tests.unit.inventory_helpers import assert_points_at, write
from tests.unit.test_inventory_loader import assert_agrees, needs_ansible

LOC = ("inv.yaml", 7)


@pytest.mark.parametrize("pattern, names, port", [
    ("web[01:03].example", ["web01.example", "web02.example", "web03.example"], None),
    ("web[1:3]", ["web1", "web2", "web3"], None),
    ("web[8:11]", ["web8", "web9", "web10", "web11"], None),
    ("web[:2]", ["web0", "web1", "web2"], None),
    ("db-[a:c]", ["db-a", "db-b", "db-c"], None),
    ("h[A:C]", ["hA", "hB", "hC"], None),
    ("h[1:10:2]", ["h1", "h3", "h5", "h7", "h9"], None),
    ("h[01:10:3]", ["h01", "h04", "h07", "h10"], None),
    ("h[a:e:2]", ["ha", "hc", "he"], None),
    ("db[1:2]-[a:b]", ["db1-a", "db1-b", "db2-a", "db2-b"], None),
    ("10.0.0.[1:3]", ["10.0.0.1", "10.0.0.2", "10.0.0.3"], None),
    ("web[1:2].example:2222", ["web1.example", "web2.example"], 2222),
    ("web1:2222", ["web1"], 2222),
    ("192.0.2.1:22", ["192.0.2.1"], 22),
    ("[2001:db8::1]:2222", ["2001:db8::1"], 2222),
    ("2001:db8::1", ["2001:db8::1"], None),
    ("web-:22", ["web-:22"], None),          # not a host name: kept as written, as Ansible
    ("plain", ["plain"], None),
])
def test_host_pattern(pattern, names, port):
    assert host_pattern(pattern, LOC) == (names, port)


@pytest.mark.parametrize("pattern, message", [
    ("h[3:1]", "expands to no host"),
    ("h[1:5:-1]", "expands to no host"),
    ("h[1:3:0]", "STEP a number other than 0"),
    ("h[01:3]", "same width"),
    ("h[c:a]", "BEGIN must come before END"),
    ("h[1:]", "must give its END"),
    ("h[1:2:3:4]", "[BEGIN:END] or [BEGIN:END:STEP]"),
    ("h[1-3]", "[BEGIN:END] or [BEGIN:END:STEP]"),
    ("h[1:3", "[BEGIN:END] or [BEGIN:END:STEP]"),
    ("h[a:3]", "both numbers or both letters"),
])
def test_invalid_ranges_name_the_key(pattern, message):
    with pytest.raises(InventoryError) as info:
        host_pattern(pattern, LOC)
    assert_points_at(info.value, "inv.yaml", 7, pattern)
    assert message in str(info.value)


def test_expansion_is_bounded():
    with pytest.raises(ValueError, match="more than"):
        expand_range(f"h[0:{MAX_HOSTS}]")
    with pytest.raises(ValueError, match="more than"):
        expand_range("h[0:999999999999]")  # refused before any name is made
    assert len(expand_range("h[1:100]-[1:100]")) == 10_000


def test_parse_address_refuses_what_is_not_an_address():
    with pytest.raises(ValueError):
        parse_address("web_:22")
    assert parse_address("a.b-c.example:10") == ("a.b-c.example", 10)


# --------------------------------------------------------------------------- through load()

def test_yaml_range_hosts_each_located_at_the_range_line(tmp_path):
    inv = load(write(tmp_path, "inv.yaml", """\
        all:
          children:
            web:
              hosts:
                web[01:03].example:2222:
                  tier: front
                web02.example:
                  extra: 1
        """))
    assert list(inv.hosts) == ["web01.example", "web02.example", "web03.example"]
    web02 = inv.hosts["web02.example"]
    assert (web02.vars["port"], web02.vars["tier"], web02.vars["extra"]) == (2222, "front", 1)
    assert web02.source.endswith("inv.yaml:5")
    assert where(inv.hosts["web03.example"].vars, "tier") == (str(tmp_path / "inv.yaml"), 6)


def test_yaml_invalid_range_points_at_its_line(tmp_path):
    with pytest.raises(InventoryError) as info:
        load(write(tmp_path, "inv.yaml", "all:\n  hosts:\n    ok1:\n    web[05:1]:\n"))
    assert_points_at(info.value, "inv.yaml", 4, "web[05:1]")


def test_ini_range_line(tmp_path):
    inv = load(write(tmp_path, "hosts.ini", "[db]\ndb-[a:c] role=replica\n"))
    assert inv.group("db").hosts == ("db-a", "db-b", "db-c")
    assert inv.hosts["db-b"].vars["role"] == "replica"
    assert inv.hosts["db-c"].source.endswith("hosts.ini:2")


def test_port_on_a_later_definition_is_refused(tmp_path):
    """Ansible keeps the port of a host's first definition and silently ignores a later one."""
    with pytest.raises(InventoryError) as info:
        load(write(tmp_path, "hosts.ini", "[a]\nweb1:2222\n[b]\nweb1:3333\n"))
    assert_points_at(info.value, "hosts.ini", 4, "web1")
    assert "hosts.ini:2" in str(info.value) and "ansible_port=3333" in str(info.value)
    inv = load(write(tmp_path, "ok.ini", "[a]\nweb1:2222\n[b]\nweb1:2222\nweb1:4444 ansible_port=4444\n"))
    assert inv.hosts["web1"].vars["port"] == 4444


@needs_ansible
@pytest.mark.parametrize("name, text", [
    ("ranges.yml", """\
        all:
          children:
            web:
              hosts:
                web[01:12:5].example:2222: {tier: front}
                web06.example: {tier: back}
                "10.0.0.[1:2]":
            db:
              hosts: db-[a:b]
              children:
                replicas:
                  hosts:
                    "[2001:db8::1]:2200":
                    r[1:2]-[x:y]:
        """),
    ("ranges.ini", """\
        [web]
        web[1:3].example:2222 ansible_user=deploy
        web[2:3].example ansible_port=2200
        [db]
        db[08:10]
        [all:vars]
        ntp=ntp.example
        """),
])
def test_ranges_agree_with_ansible(tmp_path, name, text):
    theirs = assert_agrees(write(tmp_path, name, text), tmp_path / "ansible")
    assert len(theirs["hosts"]) > 4
