"""Edges of a run found by a new user's review, each checked on real sshd hosts: a report
that cannot be written after the run is exit 1 (not "bad input, nothing touched"); the API
refuses options its task does not honour instead of ignoring them; nothing is printed
before a refusal; a pool whose workers cannot start fails its hosts (never "skipped", exit 0)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import concurdeploy
from concurdeploy.exceptions import UsageError
from concurdeploy.records import Status

from .conftest import HAPROXY_CFG

pytestmark = pytest.mark.integration


def test_a_report_that_cannot_be_written_after_the_run_is_exit_1_and_says_so(fleet):
    f = fleet(1)
    blocker = f.project / "out"  # a folder at the start: the up-front probe passes
    blocker.mkdir()
    f.write_inventory(reload=f"echo reloaded >> '{{{{ root }}}}/reload.log'; rmdir '{blocker}' && touch '{blocker}'")
    res = f.run("push", "haproxy", "--report-json", "out/run.json", "--no-progress")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "changed" in res.stdout
    assert "cannot write the JSON report" in res.stderr and "the run itself finished" in res.stderr
    assert "Traceback" not in res.stderr
    assert f.dest("h1").read_bytes() == HAPROXY_CFG  # the host was touched: not "bad input"
    assert blocker.is_file()


def test_the_api_returns_the_result_with_the_report_error(fleet):
    f = fleet(1)
    blocker = f.project / "out"
    blocker.mkdir()  # a folder at the start: the probe passes; the reload turns it into a file
    f.write_inventory(reload=f"rmdir '{blocker}' && touch '{blocker}'")
    result = concurdeploy.push("haproxy", inventory=str(f.project / "inventories" / "hosts.yaml"),
                               project_dir=str(f.project), report_json=str(f.project / "out" / "run.json"))
    assert [r.status for r in result.hosts] == [Status.CHANGED]
    assert result.ok and "cannot write the JSON report" in result.report_error and result.exit_code == 1


def test_a_report_path_that_cannot_be_written_is_refused_before_any_host(fleet):
    f = fleet(1)
    res = f.run("push", "haproxy", "--report-json", "/proc/concurdeploy-nope.json", "--no-progress")
    assert res.returncode == 2, res.stdout + res.stderr
    assert "--report-json: cannot write a report to /proc/concurdeploy-nope.json" in res.stderr
    assert res.stdout == ""  # not even the run's first line
    assert not f.dest("h1").exists()


@pytest.mark.parametrize("call, needle", [
    (lambda m, kw: concurdeploy.run("haproxy", f"touch '{m}'", check=True, **kw), "run does not take check"),
    (lambda m, kw: concurdeploy.run("haproxy", f"touch '{m}'", options=concurdeploy.RunOptions(diff=True, **kw)),
     "run does not take diff"),
    (lambda m, kw: concurdeploy.get("haproxy", "/etc/hostname", str(m), fail_fast=True, **kw),
     "get does not take fail_fast"),
    (lambda m, kw: concurdeploy.push("haproxy", mode="0600", **kw), "'mode'"),
])
def test_the_api_refuses_what_the_task_does_not_honour(fleet, call, needle):
    f = fleet(1)
    marker = f.project / "marker"
    kw = {"inventory": str(f.project / "inventories" / "hosts.yaml"), "project_dir": str(f.project)}
    with pytest.raises(UsageError, match=needle):
        call(marker, kw)
    assert not marker.exists() and not f.dest("h1").exists()


def test_nothing_is_printed_before_a_refused_connection_var(fleet):
    f = fleet(1)
    f.host_vars = {"h1": {"connection": "telnet"}}
    f.write_inventory()
    res = f.run("push", "haproxy", "--no-progress")
    assert res.returncode == 2, res.stdout + res.stderr
    assert "connection 'telnet'" in res.stderr
    assert res.stdout == ""


def test_a_pool_whose_workers_cannot_start_fails_its_hosts(fleet, tmp_path):
    """A script calling the API without ``if __name__ == "__main__":`` makes every worker
    process die while starting (multiprocessing re-imports the script): the hosts were never
    run, and the result must say so — failed, not skipped with exit 0. (Worker processes are
    asked for: a run of a few hosts would otherwise use the script's own threads.)"""
    f = fleet(2)
    script = tmp_path / "noguard.py"
    script.write_text(textwrap.dedent(f"""
        import concurdeploy
        result = concurdeploy.push("haproxy", inventory={str(f.project / "inventories" / "hosts.yaml")!r},
                                   project_dir={str(f.project)!r}, processes=2)
        print("RESULT", result.ok, result.exit_code, sorted({{(r.status.value, r.error_kind) for r in result.hosts}}))
    """))
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": os.getcwd()})
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("RESULT"))
    assert line == "RESULT False 1 [('failed', 'PoolBroken')]", res.stdout[-2000:] + res.stderr[-2000:]
    assert not f.dest("h1").exists() and not f.dest("h2").exists()


def test_a_script_without_the_main_guard_runs_a_few_hosts_in_its_own_threads(fleet, tmp_path):
    """No worker process for a run of a few hosts: the script is not imported again, so the
    missing ``if __name__ == "__main__":`` guard does not matter there (README, library use)."""
    f = fleet(2)
    script = tmp_path / "noguard.py"
    script.write_text(textwrap.dedent(f"""
        import concurdeploy, multiprocessing
        result = concurdeploy.push("haproxy", inventory={str(f.project / "inventories" / "hosts.yaml")!r},
                                   project_dir={str(f.project)!r})
        print("RESULT", result.ok, result.exit_code, sorted({{(r.status.value, r.error_kind) for r in result.hosts}}),
              multiprocessing.active_children())
    """))
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": os.getcwd()})
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("RESULT"))
    assert line == "RESULT True 0 [('changed', None)] []", res.stdout[-2000:] + res.stderr[-2000:]
    assert f.dest("h1").exists() and f.dest("h2").exists()
