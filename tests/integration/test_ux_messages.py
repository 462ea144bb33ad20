"""Operator messages (issue #17): what ``-v`` shows, output printed once, ``--verbose N``,
no literal ``{tmp}``, and an unknown host key's hint that works as typed. Real sshd on loopback.
"""

from __future__ import annotations

import json
import os
import re
import shlex

import pytest

pytestmark = pytest.mark.integration


def test_verbose_shows_the_reload_commands_output(fleet):
    f = fleet(2)
    f.write_inventory(reload="echo reload-said-$((6 * 7)) && echo reloaded >> '{{ root }}/reload.log'")
    res = f.run("push", "haproxy", "-v")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("    | reload-said-42") == 2, res.stdout
    for name in f.names:
        assert (f.root(name) / "reload.log").read_text() == "reloaded\n"
    f.dest("h1").write_bytes(b"old\n")
    quiet = f.run("push", "haproxy", "-l", "h1")  # without -v: the reload's output is not shown
    assert quiet.returncode == 0 and "reload-said" not in quiet.stdout, quiet.stdout


def test_run_verbose_prints_each_hosts_output_once(fleet):
    f = fleet(2)
    res = f.run("run", "haproxy", "echo once-$((40 + 2))", "-v")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("once-42") == 2, res.stdout
    failing = f.run("run", "haproxy", "echo twice-$((40 + 2)); exit 3", "-v")
    assert failing.returncode == 1
    assert failing.stdout.count("twice-42") == 2, failing.stdout
    quiet = f.run("run", "haproxy", "echo quiet-$((40 + 2)); exit 3", "-q")  # live lines hidden: under the line
    assert quiet.returncode == 1 and quiet.stdout.count("    | quiet-42") == 2, quiet.stdout


@pytest.mark.parametrize("where", ["after", "before"])
def test_verbose_takes_a_level_like_v_and_vv(fleet, where):
    f = fleet(1)
    f.write_inventory(reload="echo level-$((1 + 1))")

    def push(*flags):
        f.dest("h1").write_bytes(b"old\n")
        args = ["push", "haproxy", *flags] if where == "after" else [*flags, "push", "haproxy"]
        res = f.run(*args)
        assert res.returncode == 0, res.stdout + res.stderr
        return re.sub(r"\(\d+\.\d+ s\)|in \d+\.\d+ s", "", res.stdout)

    assert push("--verbose", "1") == push("-v") != push()
    assert "level-2" in push("--verbose=1")
    assert push("--verbose", "2") == push("-vv") != push("-v")
    assert "sha256" in push("--verbose=2")
    bad = f.run("push", "haproxy", "--verbose=lots")
    assert bad.returncode == 2 and "--verbose" in bad.stderr and "Traceback" not in bad.stderr


def test_validate_failure_names_the_file_it_ran_on_never_a_literal_tmp(fleet, tmp_path):
    f = fleet(1)
    f.write_inventory(files=[{"src": "files/haproxy/haproxy.cfg", "dest": "{{ root }}/etc/haproxy/haproxy.cfg",
                              "validate": "grep -q '^no such line' {tmp}"}])
    report = tmp_path / "r.json"
    res = f.run("push", "haproxy", "--report-json", str(report))
    assert res.returncode == 1
    error = json.loads(report.read_text())["hosts"][0]["error"]
    for text in (res.stdout, error):
        assert "{tmp}" not in text, text
    m = re.search(r"grep -q '\^no such line' (\S+); destination left unchanged", error)
    assert m, error
    ran_on = shlex.split(m.group(1))[0]
    assert ran_on.startswith(str(f.root("h1") / "etc" / "haproxy" / ".haproxy.concurdeploy-")), ran_on
    assert f.temp_files() == []  # and it was removed


def test_unknown_host_key_hint_names_concurdeploy_keyscan_and_works_as_typed(fleet):
    f = fleet(2)
    with open(f.known_hosts, "w"):
        pass  # no host is known
    res = f.run("push", "haproxy", "-l", "h2")
    assert res.returncode == 1
    assert "HostKeyUnknown" in res.stdout and "ssh-keyscan" not in res.stdout, res.stdout
    m = re.search(r"'(concurdeploy keyscan [^']+)'", res.stdout)
    assert m and m.group(1) == "concurdeploy keyscan h2", res.stdout
    scan = f.run(*shlex.split(m.group(1))[1:], "--yes")
    assert scan.returncode == 0, scan.stdout + scan.stderr
    with open(f.known_hosts) as fh:
        assert len(fh.read().splitlines()) == 1  # h2's key only
    again = f.run("push", "haproxy", "-l", "h2")
    assert again.returncode == 0, again.stdout + again.stderr
    assert f.dest("h2").exists() and not f.dest("h1").exists()


def test_large_upload_shows_byte_progress_on_a_terminal_only(fleet):
    from .test_output import _run_in_pty

    f = fleet(1)
    big = os.urandom(6 << 20)  # over PROGRESS_MIN (4 MiB): reported every MiB
    (f.project / "files" / "haproxy" / "haproxy.cfg").write_bytes(big)
    code, out = _run_in_pty(f, "push", "haproxy")
    assert code == 0, out
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)
    assert re.search(r"h1 haproxy\.cfg.*\d\.\d/6\.3 MB", plain), plain
    assert f.dest("h1").read_bytes() == big
    f.dest("h1").write_bytes(b"old\n")
    piped = f.run("push", "haproxy")
    assert piped.returncode == 0 and " MB" not in piped.stdout, piped.stdout


@pytest.mark.parametrize("existing", [False, True])
def test_check_mode_wording_survives_a_one_letter_secret(fleet, existing):
    """A secret "e" masks every "e" of what a host sends back; the check-mode wording ("would be
    created/replaced") must not change with it, and check mode never says it did something."""
    f = fleet(1)
    f.write_inventory(db_password="e")
    if existing:
        f.dest("h1").write_bytes(b"old\n")
    before = f.dest("h1").read_bytes() if existing else None
    res = f.run("push", "haproxy", "--check", "--report-json", "r.json", "--report-html", "r.html")
    assert res.returncode == 0, res.stdout + res.stderr
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("h1 "))
    word = "replaced" if existing else "created"
    assert line.startswith("h1  would change ") and line.split("  (")[0].endswith(f"haproxy.cfg would be {word}"), line
    assert not re.search(r"(?<!be )\b(created|replaced|rewritten)\b|\bchanged\b", res.stdout), res.stdout
    assert "RECAP  1 host in" in res.stdout and "0 ok, 1 would change, 0 failed" in res.stdout
    page = re.sub(r"<[^>]+>", " ", (f.project / "r.html").read_text())
    body = page.split("concurdeploy push", 2)[-1]
    assert "would change" in body and f"(would be {word})" in body, body
    assert not re.search(r"(?<!be )\b(created|replaced|rewritten)\b|\bchanged\b", body), body
    assert (f.dest("h1").read_bytes() if existing else f.dest("h1").exists()) == (before if existing else False)
    doc = json.loads((f.project / "r.json").read_text())
    assert doc["hosts"][0]["data"].get("check") is True, doc["hosts"][0]["data"]  # keys never masked


def test_check_mode_recap_says_would_change_even_when_nothing_would(fleet):
    f = fleet(1)
    assert f.run("push", "haproxy").returncode == 0
    res = f.run("push", "haproxy", "--check")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 ok, 0 would change, 0 failed" in res.stdout and not re.search(r"\bchanged\b", res.stdout), res.stdout


def test_a_deadline_that_stops_hosts_says_so_in_the_recap_and_report(fleet):
    """Hosts stopped at a safe point by ``--deadline`` are not a silent "interrupted": the run
    says it stopped early because of the deadline (recap line and JSON ``stopped``)."""
    f = fleet(1)
    f.write_inventory(files=[{"src": "files/haproxy/haproxy.cfg", "dest": "{{ root }}/etc/haproxy/haproxy.cfg",
                              "validate": "sleep 30; test -s {tmp}"}])
    res = f.run("push", "haproxy", "--deadline", "3", "--report-json", "run.json")
    assert res.returncode == 1, res.stdout + res.stderr
    doc = json.loads((f.project / "run.json").read_text())
    assert doc["stopped"] == "deadline exceeded", doc
    assert "deadline exceeded" in res.stdout, res.stdout
    assert not f.dest("h1").exists()
