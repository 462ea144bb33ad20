"""Where a report goes: a regular file is replaced atomically, a symlink keeps pointing at its
(updated) target, a device or a FIFO is written through and never replaced; the up-front
probe refuses what the write would fail on, and leaves nothing behind."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from concurdeploy.exceptions import UsageError
from concurdeploy.records import HostResult, RunRecord, Status
from concurdeploy.report import files as reports
from concurdeploy.report import html


def _record() -> RunRecord:
    return RunRecord("concurdeploy push haproxy", "2026-12-02T00:00:00.000Z", "2026-12-02T00:00:01.000Z",
                     (HostResult("lb1", Status.OK),), None, 0)


def test_a_missing_folder_is_refused_never_created(tmp_path):
    path = tmp_path / "a" / "b" / "run.json"
    with pytest.raises(UsageError, match="its folder .*/a/b does not exist; create it first") as e:
        reports.check_writable(path)
    assert "nothing was touched" in str(e.value)
    with pytest.raises(UsageError, match="No such file or directory"):
        reports.write_json(path, _record())
    assert not (tmp_path / "a").exists()  # neither the probe nor the write creates a folder


def test_a_regular_file_is_replaced(tmp_path):
    path = tmp_path / "a" / "b" / "run.json"
    path.parent.mkdir(parents=True)
    reports.check_writable(path)
    assert os.listdir(path.parent) == []  # the probe leaves nothing
    reports.write_json(path, _record())
    assert '"lb1"' in path.read_text()
    assert sorted(os.listdir(path.parent)) == ["run.json"]  # no temporary file left


def test_a_symlink_is_kept_and_its_target_gets_the_report(tmp_path):
    target = tmp_path / "target.json"
    target.write_text("")  # empty (or an earlier report): may be replaced
    link = tmp_path / "link.json"
    link.symlink_to(target)
    reports.check_writable(link)
    reports.write_json(link, _record())
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert '"lb1"' in target.read_text()


def test_a_character_device_is_written_through_not_replaced():
    reports.check_writable("/dev/null")
    reports.write_junit("/dev/null", _record())
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_a_fifo_is_written_through_not_replaced(tmp_path):
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    reports.write_json(fifo, _record())
    reader.join(timeout=10)
    assert not reader.is_alive()
    assert b'"lb1"' in got[0]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def _under_a_file(tmp):
    (tmp / "file").write_text("x")
    return str(tmp / "file" / "sub" / "r.json")


@pytest.mark.parametrize("make, why", [
    (lambda tmp: "/proc/concurdeploy-nope.json", ""),
    (_under_a_file, "is not a folder"),
    (lambda tmp: str(tmp), "is a directory"),
])
def test_the_probe_refuses_what_the_write_would_fail_on(tmp_path, make, why):
    path = make(tmp_path)
    with pytest.raises(UsageError, match="cannot write a report to") as e:
        reports.check_writable(path)
    assert why in str(e.value) and "nothing was touched" in str(e.value)
    with pytest.raises(UsageError):
        reports.write_json(path, _record())


@pytest.mark.parametrize("write, other", [
    (reports.write_json, b"global\n    maxconn 2000\n"),          # the config being pushed
    (reports.write_junit, b"all:\n  hosts:\n    lb1:\n"),         # an inventory
    (reports.write_json, b"-----BEGIN OPENSSH PRIVATE KEY-----\n"),  # a key
])
def test_an_existing_file_that_is_not_a_report_is_refused_and_kept(tmp_path, write, other):
    path = tmp_path / "precious"
    path.write_bytes(other)
    with pytest.raises(UsageError, match="not a concurdeploy report"):
        reports.check_writable(path)
    assert path.read_bytes() == other


@pytest.mark.parametrize("write", [reports.write_json, reports.write_junit, html.write_html])
def test_a_report_may_replace_an_earlier_report(tmp_path, write):
    path = tmp_path / "report"
    write(path, _record())
    reports.check_writable(path)  # the run's own report of last time: replaced
    write(path, _record())


def test_a_fifo_nobody_reads_fails_instead_of_hanging(tmp_path, monkeypatch):
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    monkeypatch.setattr(reports, "FIFO_READER_WAIT_S", 0.2)
    with pytest.raises(UsageError, match="a FIFO nobody reads"):
        reports.write_json(fifo, _record())
