"""Host (and group) names holding control or format characters are printed escaped, as ``ls``
escapes file names, wherever a name reaches a terminal: ``hosts``, ``inventory``, a run's host
lines, streamed output and the recap. Raw, an ESC would let an inventory repaint the screen, a
bidi override reorder the line, a newline forge a host line."""

from __future__ import annotations

import io
import re

import pytest

from concurdeploy.records import FileChange, HostResult, Status
from concurdeploy.report import text
from concurdeploy.reporting import Streamer

from . import test_cli_edge
from .test_cli_edge import run

project = test_cli_edge.project  # a sandbox project as the working directory

NAMES = {"web\x1b]0;pwned\x07": r"web\x1b]0;pwned\x07", "a\tb": r"a\x09b", "c\u202ed": r"c\u202ed",
         "new\nline": r"new\x0aline", "caf\u00e9": "caf\u00e9"}
_RAW = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u202e]")  # newline: only as a line end


def _no_raw(out: str) -> None:
    for ln in out.splitlines():
        assert not _RAW.search(ln) and "\t" not in ln, repr(ln)


def test_name_escapes_what_is_not_printable_and_keeps_the_rest():
    for raw, shown in NAMES.items():
        assert text.name(raw) == shown


@pytest.fixture
def odd_inventory(project):
    lines = ["all:", "  children:", '    "grp\\e[2J":', "      hosts:"]
    for raw in NAMES:
        quoted = raw.encode("unicode_escape").decode().replace("\\x1b", "\\e").replace("\\x07", "\\a")
        lines.append(f'        "{quoted}": {{host: 127.0.0.1}}')
    path = project / "odd.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_hosts_listing_escapes_names(odd_inventory, capsys):
    code, out, err = run(["hosts", "-i", str(odd_inventory), "--vars"], capsys)
    assert code == 0, err
    _no_raw(out)
    for shown in NAMES.values():
        assert re.search(rf"(?m)^{re.escape(shown)} +127\.0\.0\.1:22 ", out), (shown, out)
    assert r"groups=grp\x1b[2J" in out


def test_inventory_graph_escapes_names(odd_inventory, capsys):
    code, out, err = run(["inventory", "-i", str(odd_inventory)], capsys)
    assert code == 0, err
    _no_raw(out)
    assert r"@grp\x1b[2J:" in out
    for shown in NAMES.values():
        assert f"|--{shown}" in out


def test_host_lines_recap_and_streamed_output_escape_names():
    raw = "web\x1b[31m\u202e\nx"
    r = HostResult(raw, Status.CHANGED, changes=(FileChange("/etc/a", None, "0" * 64, 1),), duration_s=0.5)
    line = text.host_line(r, 20)
    assert line.startswith(r"web\x1b[31m\u202e\x0ax ") and "\n" not in line, line
    recap = text.recap([r, HostResult("lb1", Status.OK)], 1.0)
    _no_raw(recap)
    assert r"  web\x1b[31m\u202e\x0ax  changed" in recap, recap

    class Out:
        def __init__(self):
            self.lines = []

        def line(self, s):
            self.lines.append(s)

    out = Out()
    stream = Streamer(out, 20)
    stream(raw, "stdout", b"hello\n")
    assert out.lines == [f"{text.name(raw):<20}| hello"]
    buf = io.StringIO()
    text.Printer(buf, width=20)(r)
    _no_raw(buf.getvalue())
