"""``--check --detailed-exitcode`` (drift detection for scheduled CI) and ``--report-html``
(issue #17 points 3 and 4), against real sshd hosts."""

from __future__ import annotations

import html.parser
import json
import re
import shutil
import subprocess

import pytest

from .conftest import HAPROXY_CFG


def test_detailed_exitcode_3_on_drift_0_when_in_sync_and_host_untouched(fleet):
    f = fleet(2)
    res = f.run("push", "haproxy", "--check", "--detailed-exitcode")
    assert res.returncode == 3, res.stdout + res.stderr
    for name in f.names:
        assert not f.dest(name).exists()  # check mode wrote nothing
    res = f.run("push", "haproxy")
    assert res.returncode == 0, res.stdout + res.stderr
    res = f.run("push", "haproxy", "--check", "--detailed-exitcode")
    assert res.returncode == 0, res.stdout + res.stderr
    for name in f.names:
        assert f.dest(name).read_bytes() == HAPROXY_CFG


def test_detailed_exitcode_failure_wins_over_drift(fleet):
    f = fleet(2)
    f.servers[1].stop()
    res = f.run("push", "haproxy", "--check", "--detailed-exitcode")
    assert res.returncode == 1, res.stdout + res.stderr


def test_detailed_exitcode_without_check_is_refused(fleet):
    f = fleet(1)
    res = f.run("push", "haproxy", "--detailed-exitcode")
    assert res.returncode == 2
    assert "--check" in res.stderr and "Traceback" not in res.stderr
    assert not f.dest("h1").exists()


class _Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.urls, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]

    def handle_data(self, data):
        self.text.append(data)


def test_report_html_is_self_contained_and_names_each_host(fleet, tmp_path):
    f = fleet(2)
    f.servers[1].stop()
    page_path, json_path = tmp_path / "run.html", tmp_path / "run.json"
    res = f.run("push", "haproxy", "--report-html", str(page_path), "--report-json", str(json_path))
    assert res.returncode == 1, res.stdout + res.stderr
    page = _Page()
    page.feed(page_path.read_text())
    text = " ".join(page.text)
    assert "script" not in page.tags and page.urls == []  # no network, no scripts
    assert "svg" in page.tags  # the timeline picture
    report = json.loads(json_path.read_text())
    for host in report["hosts"]:
        assert host["host"] in text and host["status"] in text


# -- the page as a browser draws it (headless Chromium, Debian's chromium package) -----------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: No network at all: every name resolves to nothing, every http(s) request goes to a closed
#: loopback port, background services (updates, safe browsing, metrics) are off.
_OFFLINE = ["--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-default-apps", "--no-default-browser-check", "--no-first-run", "--no-pings",
            "--disable-domain-reliability", "--disable-client-side-phishing-detection",
            "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication"]


def _chromium(profile, *args: str) -> subprocess.CompletedProcess:
    """Run headless Chromium once (bounded), its profile in ``profile``; fails on a non-zero exit."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--force-device-scale-factor=1", f"--user-data-dir={profile}", *_OFFLINE, *args]
    res = subprocess.run(cmd, capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr.decode(errors="replace")[-2000:]
    return res


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))


def _bars(img, colours, min_height: int = 13) -> dict[str, list[tuple[int, int, int]]]:
    """Solid blocks of exactly each of ``colours`` at least ``min_height`` px tall (a timeline bar
    is 16 px; the legend's swatches, 10 px, are not counted): colour -> ``[(top, left, right)]``."""
    width, _ = img.size
    wanted = {_rgb(c): c for c in colours}
    hits: dict[str, set] = {c: set() for c in colours}
    raw = img.tobytes()  # RGB, row by row: one pass over the picture
    for i in range(0, len(raw), 3):
        px = (raw[i], raw[i + 1], raw[i + 2])
        if px in wanted:
            hits[wanted[px]].add((i // 3 % width, i // 3 // width))
    out = {}
    for colour, pts in hits.items():
        blocks: dict[int, list[int]] = {}
        for x, y in pts:
            if (x, y + min_height - 1) in pts and (x, y - 1) not in pts:
                blocks.setdefault(y, []).append(x)
        out[colour] = sorted((top, min(xs), max(xs)) for top, xs in blocks.items())
    return out


class _Table(html.parser.HTMLParser):
    """The rows of ``<table id="hosts">`` as lists of cell texts, and the page's text."""

    def __init__(self):
        super().__init__()
        self.rows, self.text, self._in, self._cell = [], [], False, None

    def handle_starttag(self, tag, attrs):
        if tag == "table" and ("id", "hosts") in attrs:
            self._in = True
        elif self._in and tag == "tr":
            self.rows.append([])
        elif self._in and tag == "td":
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "table":
            self._in = False
        elif tag == "td" and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def test_report_html_rendered_by_chromium_draws_each_hosts_phases_and_outcome(fleet, tmp_path):
    """A real run (h1 changed, h2 fails its validate, h3 unreachable), its page rendered by
    headless Chromium: the picture is not blank, each host's row of the timeline holds the
    colours of the phases it went through, in order; the page's text has each host's outcome
    and error as the JSON report has them."""
    from PIL import Image

    from concurdeploy.report.html import PHASE_COLOURS

    f = fleet(3)
    f.host_vars = {"h2": {"files": [{"src": "files/haproxy/haproxy.cfg", "dest": "{{ root }}/etc/haproxy/haproxy.cfg",
                                     "validate": "echo 'bad line 7' >&2; exit 3; test -s {tmp}"}]}}
    f.write_inventory(healthcheck="true")
    f.servers[2].stop()
    page, report = tmp_path / "run.html", tmp_path / "run.json"
    res = f.run("push", "haproxy", "--report-html", str(page), "--report-json", str(report))
    assert res.returncode == 1, res.stdout + res.stderr
    doc = json.loads(report.read_text())
    assert [(h["host"], h["status"]) for h in doc["hosts"]] == [("h1", "changed"), ("h2", "failed"),
                                                                ("h3", "unreachable")]
    profile = tmp_path / "chromium-profile"
    png = tmp_path / "run.png"
    _chromium(profile, f"--screenshot={png}", "--window-size=1000,700", page.as_uri())
    img = Image.open(png).convert("RGB")
    assert img.size == (1000, 700)
    colours = img.getcolors(maxcolors=1 << 20)
    assert len(colours) > 20 and sum(n for n, c in colours if c != (255, 255, 255)) > 5000  # not blank

    blocks = _bars(img, PHASE_COLOURS.values())
    connect = blocks[PHASE_COLOURS["connect"]]
    assert len(connect) == 3, connect  # one row per host, in inventory order, 22 px apart
    rows = [top for top, _, _ in connect]
    assert all(15 <= b - a <= 30 for a, b in zip(rows, rows[1:])), rows
    went = {"h1": ["connect", "compare", "upload", "validate", "rename", "reload", "healthcheck"],
            "h2": ["connect", "compare", "upload", "validate"], "h3": ["connect"]}
    for host, top in zip(("h1", "h2", "h3"), rows):
        drawn = {p: [b for b in blocks[c] if abs(b[0] - top) <= 1] for p, c in PHASE_COLOURS.items()}
        assert [p for p in PHASE_COLOURS if drawn[p]] == went[host], (host, drawn)
        lefts = [drawn[p][0][1] for p in went[host]]
        assert lefts == sorted(lefts), (host, lefts)  # the phases follow each other left to right
        assert all(drawn[p][0][1] > 150 for p in went[host])  # right of the host names' column

    dom = _chromium(profile, "--dump-dom", page.as_uri()).stdout.decode()
    table = _Table()
    table.feed(dom)
    cells = {row[0]: row for row in table.rows if row}
    assert set(cells) == {"h1", "h2", "h3"}, table.rows
    for h in doc["hosts"]:
        row = cells[h["host"]]
        assert row[1] == h["status"], row
        error = ": ".join(x for x in (h["error_kind"], h["error"]) if x)
        assert row[4] == error, (row, error)
    assert "bad line 7" not in cells["h1"][4] and cells["h2"][4].startswith("ValidateFailed: validate failed")
    assert cells["h3"][4].startswith("HostUnreachable:")
    assert "(created) reloaded" in cells["h1"][3]
    assert "RECAP 3 hosts" in " ".join(" ".join(table.text).split())
    assert "0 ok, 1 changed, 1 failed, 1 unreachable, 0 skipped" in " ".join(" ".join(table.text).split())


def test_report_html_timeline_of_run_and_get_has_their_phases(fleet, tmp_path):
    f = fleet(2)
    for task, args, last in (("run", ["haproxy", "true"], "command"),
                             ("get", ["haproxy", "/etc/hostname", str(tmp_path / "got")], "download")):
        page_path = tmp_path / f"{task}.html"
        res = f.run(task, *args, "--report-html", str(page_path))
        assert res.returncode == 0, res.stdout + res.stderr
        page = page_path.read_text()
        for host in f.names:
            drawn = re.findall(rf'data-host="{host}" data-phase="(\w+)"', page)
            assert sorted(drawn) == sorted(["connect", last]), (task, host, drawn)
