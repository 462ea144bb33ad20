"""Familiar flags against real sshd on loopback (issue #17): -u, --private-key, -H, -e, -b;
checked on the hosts (files, bytes), not only in our report."""

from __future__ import annotations

import getpass
import shutil

import pytest
import yaml

from .conftest import HAPROXY_CFG, statuses

pytestmark = pytest.mark.integration


def test_user_flag_beats_the_inventorys_user(fleet):
    f = fleet(2)
    f.group_vars["user"] = "nosuchuser-cd"
    f.write_inventory()
    bad = f.run("push", "haproxy")
    assert bad.returncode == 1 and "AuthFailed" in bad.stdout, bad.stdout + bad.stderr
    assert not f.dest("h1").exists()
    good = f.run("push", "haproxy", "-u", getpass.getuser())
    assert good.returncode == 0, good.stdout + good.stderr
    assert all(f.dest(n).read_bytes() == HAPROXY_CFG for n in f.names)


def test_private_key_flag_beats_the_inventorys_key(fleet, client_keys):
    f = fleet(1)
    f.host_vars["h1"] = {"key_file": client_keys.other}  # authorised nowhere
    f.write_inventory()
    bad = f.run("push", "haproxy")
    assert bad.returncode == 1 and "AuthFailed" in bad.stdout, bad.stdout + bad.stderr
    good = f.run("push", "haproxy", "--private-key", client_keys.rsa)
    assert good.returncode == 0, good.stdout + good.stderr
    assert f.dest("h1").read_bytes() == HAPROXY_CFG


def test_extra_vars_beat_host_vars_and_read_files(fleet, tmp_path):
    f = fleet(2)
    elsewhere = tmp_path / "elsewhere"
    for d in (elsewhere / "h", tmp_path / "fromfile"):
        (d / "etc" / "haproxy").mkdir(parents=True)
    res = f.run("push", "haproxy", "-e", f"root={elsewhere}/h", "-l", "h1")  # `root` is a host var in the fleet
    assert res.returncode == 0, res.stdout + res.stderr
    assert (elsewhere / "h" / "etc" / "haproxy" / "haproxy.cfg").read_bytes() == HAPROXY_CFG
    assert not f.dest("h1").exists()
    (f.project / "more.yaml").write_text(yaml.safe_dump({"root": str(tmp_path / "fromfile")}))
    res = f.run("push", "haproxy", "-l", "h2", "--extra-vars", "@more.yaml")
    assert res.returncode == 0, res.stdout + res.stderr
    assert (tmp_path / "fromfile" / "etc" / "haproxy" / "haproxy.cfg").read_bytes() == HAPROXY_CFG
    assert not f.dest("h2").exists()


def test_adhoc_hosts_without_an_inventory_run_put_and_strict_host_keys(fleet, client_keys, fake_home):
    f = fleet(2)
    shutil.rmtree(f.project / "inventories")  # no inventory at all
    targets = ",".join(f"{getpass.getuser()}@127.0.0.1:{s.port}" for s in f.servers)
    names = [f"127.0.0.1-{s.port}" for s in f.servers]
    common = ["-H", targets, "--private-key", client_keys.ed25519]
    unknown = f.run("run", "all", "echo hi", *common)  # ~/.ssh/known_hosts is empty: strict refuses
    assert unknown.returncode == 1 and unknown.stdout.count("HostKeyUnknown") == 2, unknown.stdout
    assert f"'concurdeploy keyscan {names[0]}'" in unknown.stdout
    scan = f.run("keyscan", "all", "-H", targets, "--yes")  # the hint, with this run's -H
    assert scan.returncode == 0, scan.stdout + scan.stderr
    assert len((fake_home / ".ssh" / "known_hosts").read_text().splitlines()) == 2
    ran = f.run("run", "all", "echo from-$((6 * 7))", *common)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stdout.count("from-42") == 2 and statuses(ran.stdout) == dict.fromkeys(names, "ok")
    dest = f.project / "adhoc" / "motd"
    dest.parent.mkdir()
    put = f.run("put", names[1], "files/haproxy/haproxy.cfg", str(dest), *common, "--mode", "0640")
    assert put.returncode == 0, put.stdout + put.stderr
    assert dest.read_bytes() == HAPROXY_CFG and dest.stat().st_mode & 0o777 == 0o640
    both = f.run("run", "all", "true", *common, "-i", "inventories")
    assert both.returncode == 2 and "-H/--hosts and -i/--inventory" in both.stderr


def test_become_flag_sets_become_on_every_host(fleet):
    """-b is the become var: without sudo rights on the test sshd's user (no NOPASSWD rule for it here),
    sudo -n refuses, and the host fails with the become error instead of running as the login user."""
    f = fleet(1)
    plain = f.run("run", "haproxy", "id -u")
    assert plain.returncode == 0, plain.stdout + plain.stderr
    become = f.run("run", "haproxy", "id -u", "-b", "-v")
    if become.returncode == 0:  # this user may sudo without a password: then it ran as root
        assert "| 0" in become.stdout, become.stdout
    else:
        assert "sudo" in become.stdout, become.stdout
