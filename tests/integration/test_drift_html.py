"""``--check --detailed-exitcode`` (drift detection for scheduled CI) and ``--report-html``
(issue #17 points 3 and 4), against real sshd hosts."""

from __future__ import annotations

import html.parser
import json

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
