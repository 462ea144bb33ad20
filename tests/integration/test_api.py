"""The library API (``concurdeploy.push/run/put/get``) against real sshd hosts on loopback:
a ``RunResult`` with one record per host in inventory order; a host's failure is a record,
never an exception; bad input raises before any host is touched; nothing is printed."""

from __future__ import annotations

import pytest

import concurdeploy
from concurdeploy.exceptions import InventoryError, UsageError
from concurdeploy.records import RunResult, Status

from .conftest import HAPROXY_CFG

pytestmark = pytest.mark.integration


def _kw(f) -> dict:
    return {"inventory": str(f.project / "inventories" / "hosts.yaml"), "project_dir": str(f.project)}


def test_push_returns_a_result_per_host_and_a_failed_host_does_not_raise(fleet, capsys):
    f = fleet(3)
    f.servers[1].stop()  # h2 unreachable
    f.dest("h3").write_bytes(HAPROXY_CFG)  # h3 already up to date
    result = concurdeploy.push("haproxy", **_kw(f))
    assert isinstance(result, RunResult)
    assert [r.host for r in result.hosts] == ["h1", "h2", "h3"]
    assert [r.status for r in result.hosts] == [Status.CHANGED, Status.UNREACHABLE, Status.OK]
    assert not result.ok and result.exit_code == 1
    assert [r.host for r in result.failed] == ["h2"] and [r.host for r in result.changed] == ["h1"]
    assert result["h1"].changes[0].dest == str(f.dest("h1")) and result["h1"].reloaded
    assert f.dest("h1").read_bytes() == HAPROXY_CFG
    assert capsys.readouterr().out == ""  # quiet from Python unless console=True


def test_push_check_mode_and_an_options_record(fleet):
    f = fleet(2)
    f.dest("h1").write_bytes(b"old\n")
    opts = concurdeploy.RunOptions(**_kw(f), check=True, forks=1)
    result = concurdeploy.push("haproxy", options=opts, limit="h1")
    assert [(r.host, r.status) for r in result.hosts] == [("h1", Status.CHANGED)]
    assert result.ok and result.exit_code == 0
    assert f.dest("h1").read_bytes() == b"old\n"  # check mode wrote nothing


def test_run_put_get(fleet, tmp_path):
    f = fleet(2)
    ran = concurdeploy.run("haproxy", "echo hi; exit 3", **_kw(f))
    assert [(r.status, r.exit_status) for r in ran.hosts] == [(Status.FAILED, 3)] * 2
    assert all("hi" in r.output for r in ran.hosts) and ran.exit_code == 1
    put = concurdeploy.put("haproxy", "files/haproxy/haproxy.cfg", "{{ root }}/etc/haproxy/extra.cfg",
                           mode="0640", **_kw(f))
    assert put.ok and [r.status for r in put.hosts] == [Status.CHANGED] * 2
    got = concurdeploy.get("haproxy", str(f.root("h1") / "etc/haproxy/extra.cfg"), str(tmp_path / "fetched"),
                           **_kw(f))
    assert got.ok
    for n in f.names:
        assert (tmp_path / "fetched" / n / str(f.root("h1") / "etc/haproxy/extra.cfg").lstrip("/")).read_bytes() \
            == HAPROXY_CFG


def test_bad_input_raises_before_any_host_is_touched(fleet):
    f = fleet(1)
    with pytest.raises(UsageError, match="--forks must be at least 1"):
        concurdeploy.push("haproxy", forks=0, **_kw(f))
    with pytest.raises(UsageError, match="unknown option 'forcks'"):
        concurdeploy.push("haproxy", forcks=2, **_kw(f))
    with pytest.raises(InventoryError, match="haprxy"):  # UnknownGroup or NoHostsMatched
        concurdeploy.push("haprxy", **_kw(f))
    with pytest.raises(InventoryError):
        concurdeploy.push("haproxy", inventory=str(f.project / "nope.yaml"))
    with pytest.raises(UsageError, match="--mode"):
        concurdeploy.put("haproxy", "files/haproxy/haproxy.cfg", "/tmp/x", mode="999", **_kw(f))
    assert not f.dest("h1").exists()


def test_fan_out_and_load_inventory_without_a_context(fleet):
    from concurdeploy.operations.push import push as push_action
    from concurdeploy.operations.service import push_job

    f = fleet(2)
    inv = concurdeploy.load_inventory("inventories/hosts.yaml", project_dir=str(f.project))
    hosts = concurdeploy.select_hosts(inv, "haproxy", limit="h2")
    result = concurdeploy.fan_out(hosts, push_action, [push_job(h, str(f.project)) for h in hosts],
                                  concurdeploy.RunOptions(project_dir=str(f.project)), inventory=inv)
    assert [(r.host, r.status) for r in result.hosts] == [("h2", Status.CHANGED)]
    assert f.dest("h2").read_bytes() == HAPROXY_CFG and not f.dest("h1").exists()
