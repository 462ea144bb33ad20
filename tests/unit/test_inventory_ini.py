"""Unit tests for concurdeploy.inventory.ini: Ansible's INI inventory format, each rule
checked against ``ansible-inventory --list``; what Ansible rejects (and what we refuse on
purpose) is an error at the file's line."""

from __future__ import annotations

import pytest

from concurdeploy.exceptions import InventoryError
from concurdeploy.inventory import load, where
from concurdeploy.inventory.ini import parse_value
from tests.unit.inventory_helpers import assert_points_at, write
from tests.unit.test_inventory_loader import ansible_list, assert_agrees, needs_ansible

EXAMPLE = """\
# the example of Ansible's ini plugin documentation, plus ranges and ports
bastion.example ansible_host=192.0.2.1   # a host before any section: ungrouped

[web]
host1
host2 ansible_port=222 # defined inline, interpreted as an integer

[web:vars]
http_port=8080 # all members of 'web' will inherit these
myvar=23 # defined in a :vars section: a literal too (ansible-core 2.19)
greeting=hello world # not a literal: the whole string, comment included

[web:children]
apache
nginx

[apache]
tomcat1
tomcat2 myvar=34
tomcat3 mysecret="'03#pa33w0rd'"

[nginx]
jenkins1

[nginx:vars]
has_java = True

[all:vars]
has_java = False

[g1]
host4

[g2]
host4
"""


def load_ini(tmp_path, text, name="hosts.ini"):
    return load(write(tmp_path, name, text))


def ini_error(tmp_path, text, name="hosts.ini") -> InventoryError:
    with pytest.raises(InventoryError) as info:
        load_ini(tmp_path, text, name)
    return info.value


# --------------------------------------------------------------------------- structure

def test_sections_hosts_vars_children(tmp_path):
    inv = load_ini(tmp_path, EXAMPLE)
    assert list(inv.hosts) == ["bastion.example", "host1", "host2", "tomcat1", "tomcat2", "tomcat3",
                               "jenkins1", "host4"]
    assert inv.group("ungrouped").hosts == ("bastion.example",)
    assert inv.group("web").children == ("apache", "nginx")
    assert inv.hosts["tomcat2"].groups == ("all", "web", "apache")
    tomcat2 = inv.hosts["tomcat2"].vars
    assert (tomcat2["myvar"], tomcat2["http_port"], tomcat2["has_java"]) == (34, 8080, False)
    assert inv.hosts["jenkins1"].vars["has_java"] is True
    assert inv.hosts["tomcat3"].vars["mysecret"] == "03#pa33w0rd"
    assert inv.hosts["host1"].vars["greeting"] == "hello world # not a literal: the whole string, comment included"
    assert inv.hosts["host2"].vars["port"] == 222
    assert inv.hosts["bastion.example"].vars["host"] == "192.0.2.1"
    assert inv.hosts["host4"].groups == ("all", "g1", "g2")


@needs_ansible
def test_example_agrees_with_ansible(tmp_path):
    assert_agrees(write(tmp_path, "hosts.ini", EXAMPLE), tmp_path / "ansible")


def test_every_key_keeps_its_line(tmp_path):
    inv = load_ini(tmp_path, EXAMPLE)
    path = str(tmp_path / "hosts.ini")
    assert where(inv.groups["web"].vars, "http_port") == (path, 9)
    assert where(inv.hosts["tomcat2"].vars, "myvar") == (path, 19)
    assert inv.hosts["host2"].source == f"{path}:6"
    assert inv.groups["nginx"].source == f"{path}:15"  # first named, under [web:children]


def test_children_listed_before_their_section(tmp_path):
    inv = load_ini(tmp_path, "[prod:children]\nweb\ndb\n[db]\ndb1\n[web]\nweb1\n")
    assert inv.hosts["web1"].groups == ("all", "prod", "web")
    assert set(inv.group("prod").children) == {"web", "db"}


@needs_ansible
@pytest.mark.parametrize("text", [
    # children first, defined later (Ansible links them in the order they are defined)
    "[prod:children]\nweb\ndb\n[db]\ndb1\n[web]\nweb1\n[web:vars]\nx=1\n",
    # a group reopened, a host listed twice (later values win), ungrouped hosts moved
    "h1 a=1\nh2\n[g]\nh1 a=2 b=[1,2]\nh3\n[g]\nh1 c=\"{'k': (1, 2)}\"\n[ungrouped]\nh4\n",
    # value types: literals on host lines and in :vars sections
    "[g]\nh1 i=1 f=1.5 t=True n=None s=hello q='1' l=[1,'a'] z=022 e= x=1j\n"
    "[g:vars]\nv1=1\nv2=yes\nv3=[1, 2] # c\nv4 = spaced  value \nv5='quoted'\n",
    # nested children, a group's vars set twice, vars for all
    "[a:children]\nb\n[b:children]\nc\n[c]\nh1\n[a:vars]\nk=a\n[c:vars]\nk=c\n[all:vars]\nk=all\nz=1\n",
    # group names Ansible warns about but keeps; unicode host names
    "[web-servers]\nwéb1\n[web.servers]\nh2\n",
    # a [g:vars] before [g]; a group only declared, empty
    "[g:vars]\nx=1\n[g]\nh1\n[empty]\n",
])
def test_ini_agrees_with_ansible(tmp_path, text):
    assert_agrees(write(tmp_path, "hosts", text), tmp_path / "ansible")


# --------------------------------------------------------------------------- values

@pytest.mark.parametrize("text, value", [
    ("8080", 8080), ("1.5", 1.5), ("True", True), ("None", None), ("[1, 'a']", [1, "a"]),
    ("(1, 2)", [1, 2]), ("{'a': (1,)}", {"a": [1]}), ("'022'", "022"), ("022", "022"),
    ("hello", "hello"), ("", ""), ("...", "..."), ("1j", "1j"), ("b'x'", "x"),
    ("10.0.0.1", "10.0.0.1"), ("yes", "yes"),
])
def test_parse_value(text, value):
    assert parse_value(text) == value


# --------------------------------------------------------------------------- refusals

@pytest.mark.parametrize("text, line, key, message", [
    ("[g:vars]\nx=1\n", 1, "g", "defined nowhere"),
    ("[p:children]\nc\n", 2, "c", "defined nowhere"),
    ("[p:children]\nc\n[c:vars]\ny=2\n", 2, "c", "defined nowhere"),
    ("[g]\nh1 novalue\n", 2, "novalue", "expected key=value"),
    ("[g]\nh1\n[g:vars]\njustkey\n", 4, None, "expected key=value"),
    ("[g:foo]\nh1\n", 1, None, "unknown type"),
    ("[a b]\nh1\n", 1, None, "invalid section header"),
    ("[g]\nh1:\n", 2, "h1:", "ends in ':'"),
    ("[g]\nh1 a='open\n", 2, None, "close the quote"),
    ("[g]\nh[3:1]\n", 2, "h[3:1]", "expands to no host"),
    ("[p:children]\nweb:x\n", 2, None, "one group name per line"),
    ("---\n", 1, "---", "not a host name"),
    ("[g]\nh1 ; comment\n", 2, ";", "expected key=value"),  # ';' is no comment on a host line
    # refused on purpose (Ansible would make a host called 'regions=all', or a var named '')
    ("[ec2]\nregions=all\n", 2, "regions=all", "is not a host name"),
    ("[g]\nh1\n[g:vars]\n=1\n", 4, None, "needs a name"),
    ("[hosts]\nh1\n", 1, "hosts", "reserved"),
    ("[g]\nh1 d={[1]:2}\n", 2, "d", "quote it"),
])
def test_refusals_point_at_the_line(tmp_path, text, line, key, message):
    err = ini_error(tmp_path, text)
    assert_points_at(err, "hosts.ini", line, key)
    assert message in str(err)


@needs_ansible
@pytest.mark.parametrize("text", ["[g:vars]\nx=1\n", "[p:children]\nc\n", "[g]\nh1 novalue\n",
                                  "[g:foo]\nh1\n", "[g]\nh1:\n"])
def test_ansible_rejects_them_too(tmp_path, text):
    assert ansible_list(write(tmp_path, "hosts.ini", text), tmp_path / "ansible") is None
    with pytest.raises(InventoryError):
        load_ini(tmp_path, text)


def test_non_utf8_only_in_comments(tmp_path):
    path = tmp_path / "hosts.ini"
    path.write_bytes(b"# caf\xe9\n[g]\nh1\n")
    assert list(load(path).hosts) == ["h1"]
    path.write_bytes(b"[g]\nh1 note=caf\xe9\n")
    with pytest.raises(InventoryError) as info:
        load(path)
    assert_points_at(info.value, "hosts.ini", 2, None)
    assert "UTF-8" in str(info.value)


def test_empty_or_comment_only_ini_defines_nothing(tmp_path):
    write(tmp_path, "inv/a.ini", "# nothing yet\n; really\n")
    write(tmp_path, "inv/b.ini", "[g]\nh1\n")
    assert list(load(tmp_path / "inv").hosts) == ["h1"]
