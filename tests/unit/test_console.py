"""The terminal side: plain lines when not a terminal, a rich live display on one."""

from __future__ import annotations

import io
import re
import subprocess
import sys

import pytest

from concurdeploy.exceptions import UsageError
from concurdeploy.records import FileChange, HostResult, Status
from concurdeploy.report import console
from concurdeploy.report import text as report

A, B = "a" * 64, "b" * 64
RESULTS = [
    HostResult("lb1", Status.CHANGED, changes=(FileChange("/etc/haproxy/haproxy.cfg", A, B, 120),),
               reloaded=True, duration_s=0.41, output="config ok\n"),
    HostResult("lb2", Status.OK, duration_s=0.2, output="config ok\n", warnings=("owner not kept",)),
    HostResult("lb3", Status.FAILED, error_kind="ValidateFailed", error="validate failed (exit 4)",
               output="line 3: bad\n", exit_status=4, duration_s=0.3),
    HostResult("lb4", Status.UNREACHABLE, error_kind="HostUnreachable", error="connection refused"),
]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run(stream, **kw) -> None:
    with console.Console(len(RESULTS), width=5, stream=stream, **kw) as out:
        out.line("push haproxy: 4 hosts, forks 4")
        out.batch_started("-- batch 1/1: lb1, lb2, lb3, lb4")
        for r in RESULTS:
            out.host_done(r)
        out.finish(RESULTS, 1.23)


def test_plain_output_is_exactly_the_printer_lines_and_recap():
    got = io.StringIO()
    _run(got)
    want = io.StringIO()
    want.write("push haproxy: 4 hosts, forks 4\n-- batch 1/1: lb1, lb2, lb3, lb4\n")
    printer = report.Printer(want, width=5)
    for r in RESULTS:
        printer(r)
    want.write(report.recap(RESULTS, 1.23) + "\n")
    assert got.getvalue() == want.getvalue()
    assert "\x1b" not in got.getvalue()
    assert "    | line 3: bad" in got.getvalue() and "config ok" not in got.getvalue()


def test_no_progress_on_a_terminal_is_plain(monkeypatch):
    monkeypatch.setenv("TERM", "xterm-256color")
    tty = FakeTTY()
    _run(tty, progress=False)
    assert "\x1b" not in tty.getvalue() and "RECAP  4 hosts in 1.2 s" in tty.getvalue()


def test_dumb_terminal_is_plain(monkeypatch):
    monkeypatch.setenv("TERM", "dumb")
    assert not console.wants_live(FakeTTY())
    monkeypatch.setenv("TERM", "xterm")
    assert console.wants_live(FakeTTY())
    assert not console.wants_live(FakeTTY(), progress=False)
    assert not console.wants_live(io.StringIO())


def test_quiet_prints_failures_and_recap_only():
    out = io.StringIO()
    _run(out, verbosity=-1)
    text = out.getvalue()
    head = text.split("RECAP", 1)[0].splitlines()
    assert [ln.split()[0] for ln in head if not ln.startswith(" ")] == ["lb3", "lb4"]
    assert "push haproxy" not in text and "batch 1/1" not in text and "owner not kept" not in text
    assert "    | line 3: bad" in text
    assert "  lb1   changed" in text                  # the recap still lists every host


def test_verbose_shows_every_hosts_output_and_vv_checksums():
    out = io.StringIO()
    _run(out, verbosity=1)
    assert out.getvalue().count("    | config ok") == 2
    assert "sha256" not in out.getvalue()
    out = io.StringIO()
    _run(out, verbosity=2)
    assert f"    /etc/haproxy/haproxy.cfg: sha256 {A[:12]} -> {B[:12]}, 120 bytes" in out.getvalue()


def test_verbosity_flags():
    assert console.verbosity() == 0
    assert console.verbosity(2) == 2
    assert console.verbosity(0, True) == -1
    with pytest.raises(UsageError, match="exclude each other"):
        console.verbosity(1, True)


def test_show_diff_and_escape_sequences_in_remote_output_plain():
    r = HostResult("h", Status.CHANGED, diff="--- a\n+++ b\n+new \x1b[2J line\n", output="\x1b]0;title\x07x\n")
    out = io.StringIO()
    with console.Console(1, width=2, stream=out, show_diff=True, verbosity=1) as c:
        c.host_done(r)
        c.finish([r], 0.1)
    text = out.getvalue()
    assert "\x1b" not in text and "\x07" not in text
    assert "    +new \\x1b[2J line" in text and "\\x1b]0;title\\x07x" in text


def test_live_display_on_a_terminal(monkeypatch):
    pytest.importorskip("rich")
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("NO_COLOR", raising=False)
    stdout = sys.stdout
    tty = FakeTTY()
    with console.Console(len(RESULTS), width=5, stream=tty) as out:
        assert out.live
        assert sys.stdout is not stdout                # print() is routed above the display
        print("a stray print")
        for r in RESULTS:
            out.host_done(r)
        assert (out.done, out.changed, out.failed) == (4, 1, 2)
        out.finish(RESULTS, 1.23)
    assert sys.stdout is stdout
    raw = tty.getvalue()
    assert "\x1b[?25l" in raw and "\x1b[?25h" in raw  # cursor hidden for the display, then shown
    text = ANSI.sub("", raw)
    assert "a stray print" in text
    assert "4/4" in text and "1 changed" in text and "2 failed" in text
    assert "RECAP  4 hosts in 1.2 s: 1 ok, 1 changed, 1 failed, 1 unreachable, 0 skipped" in text
    assert re.search(r"lb3\s+failed\s+-\s+0\.30 s\s+ValidateFailed", text)   # the recap table row
    assert "    | line 3: bad" in text


def test_live_display_is_closed_when_the_run_raises(monkeypatch):
    pytest.importorskip("rich")
    monkeypatch.setenv("TERM", "xterm-256color")
    stdout = sys.stdout
    tty = FakeTTY()
    with pytest.raises(KeyboardInterrupt), console.Console(2, stream=tty) as out:
        out.host_done(RESULTS[0])
        raise KeyboardInterrupt
    assert sys.stdout is stdout
    assert tty.getvalue().rstrip().endswith("\x1b[?25h") or "\x1b[?25h" in tty.getvalue()
    out.close()                                        # idempotent


def test_plain_run_never_imports_rich():
    code = (
        "import io, sys\n"
        "from concurdeploy.report import console\n"
        "from concurdeploy.records import HostResult, Status\n"
        "r = [HostResult('a', Status.OK)]\n"
        "with console.Console(1, stream=io.StringIO()) as c:\n"
        "    c.host_done(r[0]); c.finish(r, 0.1)\n"
        "assert 'rich' not in sys.modules, 'rich imported'\n"
        "assert 'paramiko' not in sys.modules, 'paramiko imported'\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr


def test_change_text_names_the_path_written_and_how():
    from concurdeploy.records import FileChange
    from concurdeploy.report.text import change_text

    assert change_text(FileChange("/etc/a", None, "b" * 64, 1, "/etc/a", "create")) == "/etc/a created"
    assert change_text(FileChange("/etc/a", "a" * 64, "b" * 64, 1, "/srv/a", "replace"), "would be ") == \
        "/etc/a (written: /srv/a) would be replaced"
    assert change_text(FileChange("/etc/a", "a" * 64, "b" * 64, 1, "/etc/a", "in-place")) == \
        "/etc/a rewritten in place"
    assert change_text(FileChange("/etc/a", None, "b" * 64, 1)) == "/etc/a created"  # older records


def test_upload_progress_on_a_terminal_and_never_in_plain_output(monkeypatch):
    """Byte progress of a large upload (issue #17): a line with the file and its megabytes under
    the hosts' bar on a terminal, gone once the host is done; nothing in plain output."""
    pytest.importorskip("rich")
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("NO_COLOR", raising=False)
    tty = FakeTTY()
    with console.Console(1, width=5, stream=tty) as out:
        out.upload_progress("lb1", b"3145728 41943040 /etc/big/blob.bin")
        assert "3.1/41.9 MB" in ANSI.sub("", tty.getvalue()) and "lb1 blob.bin" in ANSI.sub("", tty.getvalue())
        out.upload_progress("lb1", b"41943040 41943040 /etc/big/blob.bin")
        out.upload_progress("lb1", b"not progress")  # ignored, never an error
        out.host_done(RESULTS[0])
        assert out._uploads == {}
        out.finish(RESULTS[:1], 1.0)
    assert "41.9/41.9 MB" in ANSI.sub("", tty.getvalue())
    plain = io.StringIO()
    with console.Console(1, width=5, stream=plain) as out:
        out.upload_progress("lb1", b"3145728 41943040 /etc/big/blob.bin")
        out.host_done(RESULTS[0])
    assert "MB" not in plain.getvalue() and "blob" not in plain.getvalue()
