"""``put``, ``run`` streaming, ``--retry-failed``, ``inventory --graph``, ``--print-config``
against real OpenSSH hosts and the real CLI (issue 5)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time

import pytest

from .conftest import HAPROXY_CFG
from .conftest import statuses as _statuses

pytestmark = pytest.mark.integration




def test_put_replaces_atomically_with_mode_and_validate(fleet):
    f = fleet(2)
    f.dest("h1").write_text("old\n")
    res = f.run("put", "haproxy", "files/haproxy/haproxy.cfg", "{{ root }}/etc/haproxy/haproxy.cfg",
                "--mode", "0640", "--validate", "grep -q maxconn {tmp}", "--no-progress")
    assert res.returncode == 0, res.stdout + res.stderr
    for n in f.names:
        assert f.dest(n).read_bytes() == HAPROXY_CFG
        assert stat.S_IMODE(os.stat(f.dest(n)).st_mode) == 0o640
    assert not (f.root("h1") / "reload.log").exists()  # put never reloads
    assert f.temp_files() == []
    bad = f.run("put", "haproxy", "files/haproxy/haproxy.cfg", "{{ root }}/etc/haproxy/other.cfg",
                "--validate", "false {tmp}")
    assert bad.returncode == 1 and "ValidateFailed" in bad.stdout
    assert not (f.root("h1") / "etc/haproxy/other.cfg").exists() and f.temp_files() == []


def test_run_streams_lines_prefixed_by_host_and_collect_groups_them(fleet):
    f = fleet(2)
    res = f.run("run", "haproxy", "echo first; echo second >&2; printf 'no newline'", "--no-progress")
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    for n in f.names:
        mine = [ln for ln in lines if ln.startswith(f"{n} ") and "|" in ln]
        assert [ln.split("| ", 1)[1] for ln in mine] == ["first", "second", "no newline"] or \
            sorted(ln.split("| ", 1)[1] for ln in mine) == ["first", "no newline", "second"]
        # the output comes before the host's status line
        status_at = next(i for i, ln in enumerate(lines) if ln.startswith(f"{n} ") and " ok " in ln)
        assert all(lines.index(ln) < status_at for ln in mine)
    collected = f.run("run", "haproxy", "echo grouped", "--collect", "--no-progress")
    assert collected.returncode == 0
    assert "    | grouped" in collected.stdout and "h1 | grouped" not in collected.stdout


def test_retry_failed_reruns_exactly_the_failed_hosts(fleet):
    f = fleet(4)
    f.servers[1].stop()                               # h2 unreachable
    f.host_vars = {"h4": {"files": [{"src": "files/haproxy/haproxy.cfg",
                                     "dest": "{{ root }}/etc/haproxy/haproxy.cfg",
                                     "validate": "false {tmp}"}]}}  # h4 failed
    f.write_inventory()
    report = f.project / "reports" / "first.json"
    report.parent.mkdir()  # a report's folder must exist
    first = f.run("push", "haproxy", "--report-json", str(report))
    assert first.returncode == 1
    assert sorted(json.loads(report.read_text())["failed_hosts"]) == ["h2", "h4"]
    f.host_vars = {}
    f.write_inventory()
    again = f.run("push", "haproxy", "--retry-failed", str(report))
    assert set(_statuses(again.stdout)) == {"h2", "h4"}
    assert _statuses(again.stdout) == {"h2": "unreachable", "h4": "changed"}
    missing = f.run("push", "haproxy", "--retry-failed", str(f.project / "nope.json"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_retry_failed_with_nothing_failed_is_exit_2(fleet):
    f = fleet(1)
    report = f.project / "ok.json"
    assert f.run("push", "haproxy", "--report-json", str(report)).returncode == 0
    res = f.run("push", "haproxy", "--retry-failed", str(report))
    assert res.returncode == 2 and "nothing to retry" in res.stderr


def test_inventory_graph_and_hosts(fleet):
    f = fleet(2)
    extra = f.project / "inventories" / "more.yaml"
    extra.write_text("all:\n  children:\n    eu:\n      children:\n        haproxy:\n")
    res = f.run("inventory", "--graph")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()  # groups in Ansible's order: ungrouped first, then as read
    assert lines[0] == "@all:" and "  |--@ungrouped:" in lines
    at = lines.index("  |--@eu:")
    assert lines[at:at + 4] == ["  |--@eu:", "  |  |--@haproxy:", "  |  |  |--h1", "  |  |  |--h2"]
    hosts = f.run("hosts", "--limit", "haproxy:&eu")
    assert hosts.returncode == 0 and [ln.split()[0] for ln in hosts.stdout.splitlines()] == ["h1", "h2"]


def test_print_config_shows_env_and_project_file(fleet):
    f = fleet(1)
    (f.project / "concurdeploy.yaml").write_text("forks: 9\ncommand_timeout: 12.5\n")
    res = f.run("--print-config", env={"CONCURDEPLOY_FORKS": "7"})
    assert res.returncode == 0, res.stderr
    assert "forks: 7" in res.stdout and "command_timeout: 12.5" in res.stdout
    bad = f.run("--print-config", env={"CONCURDEPLOY_FORKS": "many"})
    assert bad.returncode == 2 and "CONCURDEPLOY_" in bad.stderr and "Traceback" not in bad.stderr


def test_shell_completion_script(fleet):
    f = fleet(1)
    res = f.run("--print-completion-script", "bash")
    assert res.returncode == 0 and "concurdeploy" in res.stdout and "complete" in res.stdout
    tasks = f.run("--complete", "--", "concurdeploy", "pu")
    assert "push" in tasks.stdout.split() and "put" in tasks.stdout.split()


# --- fixes from a fresh user's review -------------------------------------------------

@pytest.mark.parametrize("args, needle", [
    (["--forks", "abc"], "wrong type"),
    (["--connect-timeout", "-1"], "--connect-timeout must be at least"),
    (["--deadline", "-1"], "deadline must be at least 0"),
    (["--limit", ""], "--limit is empty"),
])
def test_bad_flag_values_are_exit_2_and_touch_nothing(fleet, args, needle):
    f = fleet(1)
    res = f.run("push", "haproxy", *args)
    assert res.returncode == 2, res.stdout + res.stderr
    assert needle in res.stderr and "Traceback" not in res.stderr
    assert not f.dest("h1").exists()


def test_bad_config_file_values_are_exit_2(fleet):
    f = fleet(1)
    (f.project / "concurdeploy.yaml").write_text("forks: abc\n")
    res = f.run("push", "haproxy")
    assert res.returncode == 2 and "forks must be a number" in res.stderr
    (f.project / "concurdeploy.yaml").write_text("forks: [\n")
    res = f.run("push", "haproxy")
    assert res.returncode == 2 and "concurdeploy.yaml" in res.stderr and "Traceback" not in res.stderr
    assert not f.dest("h1").exists()


def test_unwritable_report_path_is_refused_before_any_host_is_touched(fleet):
    f = fleet(1)
    (f.project / "adir").mkdir()
    res = f.run("push", "haproxy", "--report-json", str(f.project / "adir"))
    assert res.returncode == 2 and "it is a folder" in res.stderr and "nothing was touched" in res.stderr
    assert not f.dest("h1").exists()


def test_retry_failed_also_retries_hosts_a_stopped_canary_skipped(fleet):
    f = fleet(3)
    f.host_vars = {"h1": {"files": [{"src": "files/haproxy/haproxy.cfg",
                                     "dest": "{{ root }}/etc/haproxy/haproxy.cfg", "validate": "false {tmp}"}]}}
    f.write_inventory()
    report = f.project / "canary.json"
    first = f.run("push", "haproxy", "--serial", "1,100%", "--max-fail", "0", "--report-json", str(report))
    assert first.returncode == 1 and _statuses(first.stdout) == {"h1": "failed", "h2": "skipped", "h3": "skipped"}
    f.host_vars = {}
    f.write_inventory()
    again = f.run("push", "haproxy", "--retry-failed", str(report))
    assert again.returncode == 0 and _statuses(again.stdout) == {"h1": "changed", "h2": "changed", "h3": "changed"}


def test_vars_holding_templates_are_rendered_like_ansible(fleet):
    f = fleet(2)
    (f.project / "files" / "site.cfg.j2").write_text("url = {{ url }}\n")
    f.group_vars = {"domain": "example.org", "url": "https://{{ inventory_hostname }}.{{ domain }}/"}
    f.write_inventory(files=[{"src": "files/site.cfg.j2", "dest": "{{ root }}/etc/haproxy/haproxy.cfg"}])
    res = f.run("push", "haproxy")
    assert res.returncode == 0, res.stdout
    assert f.dest("h1").read_text() == "url = https://h1.example.org/\n"
    assert f.dest("h2").read_text() == "url = https://h2.example.org/\n"


def test_stale_temporary_upload_is_removed_under_the_lock(fleet):
    f = fleet(1)
    d = f.root("h1") / "etc" / "haproxy"
    stale = d / f".haproxy.concurdeploy-{'a' * 32}.cfg"
    fresh = d / f".haproxy.concurdeploy-{'b' * 32}.cfg"
    stale.write_text("left by a dead connection\n")
    fresh.write_text("maybe another run's\n")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    res = f.run("push", "haproxy")
    assert res.returncode == 0, res.stdout
    assert not stale.exists() and fresh.exists()


def test_setuid_mode_is_applied_and_stable(fleet):
    f = fleet(1)
    f.write_inventory(files=[{"src": "files/haproxy/haproxy.cfg", "dest": "{{ root }}/etc/haproxy/haproxy.cfg",
                              "mode": "4755"}])
    f.dest("h1").write_text("old\n")
    assert f.run("push", "haproxy").returncode == 0
    assert stat.S_IMODE(os.stat(f.dest("h1")).st_mode) == 0o4755
    again = f.run("push", "haproxy")
    assert _statuses(again.stdout) == {"h1": "ok"}


def test_output_to_a_closed_pipe_keeps_the_report_and_exit_code(fleet):
    f = fleet(2)
    report = f.project / "pipe.json"
    cmd = f"{sys.executable} -m concurdeploy push haproxy --report-json {report} | head -c 1 >/dev/null; " \
          f"echo rc=${{PIPESTATUS[0]}}"
    res = subprocess.run(["bash", "-c", cmd], cwd=f.project, capture_output=True, text=True, timeout=120)
    assert "rc=0" in res.stdout, res.stdout + res.stderr
    assert json.loads(report.read_text())["totals"]["changed"] == 2
    assert "Traceback" not in res.stderr
