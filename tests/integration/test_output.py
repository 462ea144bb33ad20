"""Reports and terminal output end to end: the real CLI against real OpenSSH sshd hosts.

* ``--report-json`` is validated against the shipped JSON Schema, ``--junit`` parsed back;
* both are written when the run fails (exit 1) and when it is interrupted (SIGINT → 130);
* under a pseudo-terminal the live progress display (rich) is drawn; piped, the output is
  the plain lines with no escape character at all.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
import xml.etree.ElementTree as ET

import pytest

from concurdeploy.report import files as reports

from tests.sshd import Beacon

from .conftest import HAPROXY_CFG

pytestmark = pytest.mark.integration

FILE = {"src": "files/haproxy/haproxy.cfg", "dest": "{{ root }}/etc/haproxy/haproxy.cfg"}


def _status_lines(out: str) -> dict:
    """Map host -> status from the plain recap block (as tests/integration/test_push.py does)."""
    lines = out.split("RECAP", 1)[1].splitlines()[1:]
    return {ln.split()[0]: ln.split()[1] for ln in lines if ln.startswith("  ") and ln.strip()}


def _failing_second_host(f, validate: str = "echo 'bad line 7' >&2; exit 3; test -s {tmp}"):
    """h2's validate fails; h1 is pushed normally."""
    f.host_vars = {"h2": {"files": [{**FILE, "validate": validate}]}}
    f.write_inventory()


def _validator():
    jsonschema = pytest.importorskip("jsonschema")
    schema = reports.schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_json_report_of_a_failed_run_matches_the_schema(fleet):
    f = fleet(2)
    _failing_second_host(f)
    (f.project / "out" / "reports").mkdir(parents=True)  # a report's folder must exist
    res = f.run("push", "haproxy", "--report-json", "out/reports/run.json")
    assert res.returncode == 1, res.stdout + res.stderr
    path = f.project / "out" / "reports" / "run.json"
    doc = json.loads(path.read_text())
    errors = sorted(_validator().iter_errors(doc), key=str)
    assert not errors, [e.message for e in errors]

    assert doc["schema"] == "concurdeploy.report/1"
    assert doc["command"] == "concurdeploy push haproxy --report-json out/reports/run.json"
    assert doc["task"] == "push"
    assert doc["exit_code"] == 1 and doc["signal"] == 0 and doc["stopped"] is None
    assert doc["started"] <= doc["ended"] and doc["started"].endswith("Z")
    assert doc["duration_s"] >= 0
    assert doc["totals"] == {"hosts": 2, "ok": 0, "changed": 1, "failed": 1, "unreachable": 0, "skipped": 0}
    assert doc["failed_hosts"] == ["h2"]
    h1, h2 = doc["hosts"]
    assert (h1["host"], h1["status"], h1["reloaded"], h1["error_kind"]) == ("h1", "changed", True, None)
    assert h1["changes"] == [{"dest": str(f.dest("h1")), "sha256_before": None,
                              "sha256_after": hashlib.sha256(HAPROXY_CFG).hexdigest(),
                              "size": len(HAPROXY_CFG), "action": "created", "path": str(f.dest("h1")),
                              "method": "create"}]
    assert h1["duration_s"] > 0 and h1["batch"] is None
    assert (h2["host"], h2["status"], h2["error_kind"]) == ("h2", "failed", "ValidateFailed")
    assert h2["changes"] == [] and h2["reloaded"] is False
    assert "bad line 7" in h2["output"] and h2["error"]
    assert reports.failed_hosts(path) == ["h2"]
    assert "JSON report: out/reports/run.json" in res.stdout


def test_json_report_records_replaced_file_checksums_and_batches(fleet):
    f = fleet(2)
    old = b"old config\n"
    f.dest("h1").write_bytes(old)
    res = f.run("push", "haproxy", "--serial", "1", "--report-json", "run.json")
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads((f.project / "run.json").read_text())
    assert not list(_validator().iter_errors(doc))
    assert doc["exit_code"] == 0 and doc["failed_hosts"] == []
    h1, h2 = doc["hosts"]
    assert (h1["batch"], h2["batch"]) == (1, 2)
    assert h1["changes"][0]["sha256_before"] == hashlib.sha256(old).hexdigest()
    assert h1["changes"][0]["action"] == "replaced"
    assert h2["changes"][0]["action"] == "created"


def test_junit_report_parsed_back_failed_unreachable_and_skipped(fleet):
    f = fleet(3)
    f.servers[1].stop()                        # h2 unreachable
    _failing_second_host(f)                    # (h2's validate never runs)
    f.host_vars["h1"] = {"files": [{**FILE, "validate": "echo nope; exit 5; test -s {tmp}"}]}
    f.write_inventory()
    # one host per batch, stop after the first failure: h1 fails, h2 and h3 are never started
    (f.project / "ci").mkdir()  # a report's folder must exist
    res = f.run("push", "haproxy", "--serial", "1", "--fail-fast", "--junit", "ci/junit.xml",
                "--report-json", "ci/run.json")
    assert res.returncode == 1, res.stdout + res.stderr
    root = ET.parse(f.project / "ci" / "junit.xml").getroot()
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    assert suite.get("name").startswith("concurdeploy push haproxy")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["h1", "h2", "h3"]
    assert {c.get("classname") for c in cases} == {"concurdeploy.push"}
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == \
        ("3", "1", "0", "2")
    failure = cases[0].find("failure")
    assert failure is not None and "ValidateFailed" in failure.get("message")
    assert failure.get("message").startswith("failed: ")
    assert "nope" in cases[0].find("system-out").text
    assert float(cases[0].get("time")) > 0
    for c in cases[1:]:
        assert c.find("skipped") is not None and c.find("failure") is None
    doc = json.loads((f.project / "ci" / "run.json").read_text())
    assert doc["stopped"].startswith("--fail-fast")
    assert doc["totals"]["skipped"] == 2 and doc["failed_hosts"] == ["h1"]


def test_junit_unreachable_host_is_a_failure(fleet):
    f = fleet(2)
    f.servers[1].stop()
    res = f.run("push", "haproxy", "--junit", "junit.xml")
    assert res.returncode == 1
    suite = ET.parse(f.project / "junit.xml").getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("2", "1", "0")
    h1, h2 = suite.findall("testcase")
    assert h1.find("failure") is None and h1.find("system-out") is not None
    failure = h2.find("failure")
    assert failure.get("message").startswith("unreachable: ")
    assert failure.get("type")                 # the error kind, e.g. HostUnreachable


def _validating_beacon(f, tmp_path) -> Beacon:
    """Every host's validate says "validating" on a :class:`Beacon`, then runs 5 s."""
    beacon = Beacon(tmp_path / "validating.fifo")
    f.write_inventory(files=[{**FILE, "validate": f"{beacon.command('validating')}; sleep 5; test -s {{tmp}}"}])
    return beacon


def test_interrupted_run_still_writes_complete_reports(fleet, tmp_path):
    f = fleet(2)
    beacon = _validating_beacon(f, tmp_path)
    (f.project / "r").mkdir()  # a report's folder must exist
    proc = subprocess.Popen([sys.executable, "-m", "concurdeploy", "push", "haproxy",
                             "--report-json", "r/run.json", "--junit", "r/junit.xml"],
                            cwd=f.project, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)
    try:
        try:
            beacon.wait(len(f.names), timeout=60, proc=proc)   # every host is inside validate
        except ChildProcessError:
            raise AssertionError(f"concurdeploy exited before validate started: {proc.communicate()}") from None
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        beacon.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, out + err
    doc = json.loads((f.project / "r" / "run.json").read_text())   # complete JSON
    assert not list(_validator().iter_errors(doc))
    assert doc["signal"] == 2 and doc["exit_code"] == 130
    assert "SIGINT" in (doc["stopped"] or "")
    assert len(doc["hosts"]) == 2
    assert all(h["status"] != "changed" for h in doc["hosts"])
    ET.parse(f.project / "r" / "junit.xml")                          # complete XML
    assert not [p for p in (f.project / "r").iterdir() if p.name.startswith(".")]  # no temp files


# -- terminal output -------------------------------------------------------------------------

def _run_in_pty(f, *args, timeout: float = 90, cols: int = 120,
                interrupt_after: tuple[Beacon, int] | None = None) -> tuple[int, str]:
    """Run ``concurdeploy ARGS`` with stdout/stderr on a pseudo-terminal; return (exit code, output).

    :param interrupt_after: ``(beacon, n)``: SIGINT is sent (once) as soon as ``beacon`` has
        received ``n`` lines; the wait for them is the same ``select`` as the terminal's output.
    """
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, cols, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES")}
    env["TERM"] = "xterm-256color"
    proc = subprocess.Popen([sys.executable, "-m", "concurdeploy", *args], cwd=f.project,
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env,
                            start_new_session=True)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            if interrupt_after is not None and len(interrupt_after[0].read()) >= interrupt_after[1]:
                proc.send_signal(signal.SIGINT)
                interrupt_after = None
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no EOF from the pty within {timeout} s: {b''.join(chunks)!r}")
            watched = [master] + ([interrupt_after[0]] if interrupt_after is not None else [])
            ready, _, _ = select.select(watched, [], [], left)
            if master not in ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError as e:       # EIO: every writer closed the terminal
                if e.errno == errno.EIO:
                    break
                raise
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return code, b"".join(chunks).decode("utf-8", "replace")


def _slow_validate(f, seconds: float = 1.0):
    f.write_inventory(files=[{**FILE, "validate": f"sleep {seconds}; test -s {{tmp}}"}])


def test_pty_run_shows_live_progress_and_coloured_recap(fleet):
    f = fleet(2)
    _slow_validate(f)
    code, out = _run_in_pty(f, "push", "haproxy")
    assert code == 0, out
    assert "\x1b[?25l" in out and "\x1b[?25h" in out    # rich hid the cursor for the live display, then restored it
    assert re.search(r"[0-2]/2", out)                    # hosts done / total
    assert "hosts" in out and "changed" in out and "failed" in out
    assert "\x1b[33m" in out or "\x1b[38;5;" in out     # coloured status
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)
    assert "RECAP  2 hosts" in plain
    for n in f.names:
        assert re.search(rf"\b{n}\b.*changed", plain)


def test_pty_run_interrupted_closes_the_display_and_writes_the_report(fleet, tmp_path):
    f = fleet(2)
    with _validating_beacon(f, tmp_path) as beacon:
        code, out = _run_in_pty(f, "push", "haproxy", "--report-json", "run.json",
                                interrupt_after=(beacon, len(f.names)))
    assert code == 130, out
    assert out.rfind("\x1b[?25h") > out.rfind("\x1b[?25l")       # cursor shown again at the end
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)
    assert "SIGINT: stopping" in plain and "stopped early: interrupted (SIGINT)" in plain
    doc = json.loads((f.project / "run.json").read_text())
    assert doc["signal"] == 2 and doc["exit_code"] == 130


def test_pty_run_with_no_progress_is_plain(fleet):
    f = fleet(2)
    code, out = _run_in_pty(f, "push", "haproxy", "--no-progress")
    assert code == 0, out
    assert "\x1b" not in out
    assert _status_lines(out.replace("\r\n", "\n")) == {"h1": "changed", "h2": "changed"}


def test_piped_run_is_plain_lines_without_escape_codes(fleet):
    f = fleet(2)
    _failing_second_host(f)
    res = f.run("push", "haproxy", env={"TERM": "xterm-256color", "FORCE_COLOR": "1"})
    assert res.returncode == 1
    assert "\x1b" not in res.stdout and "\x1b" not in res.stderr
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", res.stdout)
    lines = res.stdout.splitlines()
    assert lines[0] == "push haproxy: 2 hosts, forks 2"
    assert any(re.match(r"h1 +changed +.*haproxy\.cfg created, reloaded", ln) for ln in lines)
    assert any(re.match(r"h2 +failed +ValidateFailed", ln) for ln in lines)
    assert "    | bad line 7" in lines
    assert _status_lines(res.stdout) == {"h1": "changed", "h2": "failed"}


def test_remote_escape_sequences_are_shown_escaped(fleet):
    f = fleet(1)
    f.write_inventory(files=[{**FILE, "validate": "printf 'x\\033[31mred\\007\\n'; exit 2; test -s {tmp}"}])
    res = f.run("push", "haproxy")
    assert res.returncode == 1
    assert "\x1b" not in res.stdout and "\x07" not in res.stdout
    assert "x\\x1b[31mred\\x07" in res.stdout


def test_quiet_prints_only_failures_and_recap(fleet):
    f = fleet(2)
    _failing_second_host(f)
    res = f.run("push", "haproxy", "-q")
    assert res.returncode == 1
    before_recap = res.stdout.split("RECAP", 1)[0].splitlines()
    assert before_recap[0].startswith("h2 ") and "ValidateFailed" in before_recap[0]
    assert not any(ln.startswith("h1") for ln in before_recap)
    assert "push haproxy:" not in res.stdout
    assert _status_lines(res.stdout) == {"h1": "changed", "h2": "failed"}


def test_verbose_levels_and_conflict_with_quiet(fleet):
    f = fleet(1)
    normal = f.run("push", "haproxy")
    assert normal.returncode == 0, normal.stdout + normal.stderr
    assert "sha256" not in normal.stdout
    f.dest("h1").write_bytes(b"older\n")
    very = f.run("push", "haproxy", "-vv")
    assert very.returncode == 0, very.stdout + very.stderr
    digest = hashlib.sha256(b"older\n").hexdigest()[:12]
    assert f"sha256 {digest} -> {hashlib.sha256(HAPROXY_CFG).hexdigest()[:12]}" in very.stdout
    ran = f.run("run", "haproxy", "echo hello from $(hostname)", "-v")
    assert ran.returncode == 0 and "h1 | hello from" in ran.stdout
    assert ran.stdout.count("hello from") == 1, ran.stdout  # streamed live, not printed again under the line
    both = f.run("push", "haproxy", "-v", "-q")
    assert both.returncode == 2 and "exclude each other" in both.stderr


def test_help_imports_neither_rich_nor_paramiko(tmp_path):
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "concurdeploy", "--help"],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    imported = re.findall(r"\|\s+([\w.]+)\s*$", res.stderr, re.MULTILINE)
    assert imported, res.stderr[:500]
    assert not [m for m in imported if m.split(".")[0] in ("rich", "paramiko")]


def test_output_past_the_cap_is_in_a_0600_file_named_in_the_report_byte_for_byte(fleet):
    from concurdeploy.ssh.remote import KEEP_BYTES

    f = fleet(1)
    f.host_vars = {"h1": {"api_token": "tok-3f9a1c"}}
    f.write_inventory()
    whole = b"token tok-3f9a1c\n" + "".join(f"{i}\n" for i in range(1, 500_001)).encode()  # 3.4 MB
    report = f.project / "run.json"
    res = f.run("run", "haproxy", "echo token tok-3f9a1c; seq 1 500000; echo err-line >&2",
                "--report-json", str(report))
    assert res.returncode == 0, res.stderr[-2000:]
    files = list((f.project / ".concurdeploy-output").glob("*/h1-stdout.out"))
    assert len(files) == 1, files
    path = files[0]
    assert path.read_bytes() == whole[:len(whole) - KEEP_BYTES].replace(b"tok-3f9a1c", b"********")
    assert os.stat(path).st_mode & 0o777 == 0o600 and os.stat(path.parent).st_mode & 0o777 == 0o700
    assert list(path.parent.iterdir()) == [path]  # stderr stayed under the cap: no file
    h1 = json.loads(report.read_text())["hosts"][0]
    assert [w for w in h1["warnings"] if str(path) in w], h1["warnings"]
    assert f"warning: {len(whole) - KEEP_BYTES} bytes of stdout" in res.stdout and str(path) in res.stdout
    assert "tok-3f9a1c" not in res.stdout + report.read_text()
