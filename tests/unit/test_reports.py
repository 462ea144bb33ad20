"""JSON and JUnit reports from a RunRecord: schema, exit codes, atomic writes, reading back."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET

import pytest

from concurdeploy.exceptions import UsageError
from concurdeploy.records import FileChange, HostResult, RunRecord, Status
from concurdeploy.report import files as reports

A, B = "a" * 64, "b" * 64


def _record(signal: int = 0, stopped: str | None = None, results=None) -> RunRecord:
    if results is None:
        results = (
            HostResult("lb1", Status.CHANGED, changes=(FileChange("/etc/haproxy/haproxy.cfg", A, B, 120),),
                       reloaded=True, duration_s=0.4123, warnings=("owner not kept",)),
            HostResult("lb2", Status.OK, duration_s=0.2, batch=None, data={"check": False}),
            HostResult("lb3", Status.FAILED, error_kind="ValidateFailed", error="validate failed (exit 4)",
                       output="line 3: bad \x1b[31mthing\x1b[0m\n", exit_status=4, duration_s=0.3),
            HostResult("lb4", Status.UNREACHABLE, error_kind="HostUnreachable", error="connection refused"),
            HostResult("lb5", Status.SKIPPED, error_kind="NotStarted", error="not started: --fail-fast"),
        )
    return RunRecord("concurdeploy push haproxy --junit out.xml", "2026-11-29T09:00:00.000Z",
                     "2026-11-29T09:00:02.500Z", tuple(results), stopped, signal)


@pytest.fixture(scope="module")
def validator():
    jsonschema = pytest.importorskip("jsonschema")
    schema = reports.schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_schema_is_draft_2020_12_and_shipped_beside_the_module():
    schema = reports.schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["properties"]["schema"]["const"] == reports.SCHEMA_ID == "concurdeploy.report/1"
    here = os.path.dirname(reports.__file__)
    assert os.path.isfile(os.path.join(here, "report.schema.json"))
    with open(os.path.join(here, os.pardir, os.pardir, "setup.cfg")) as f:
        setup_cfg = f.read()
    assert "report.schema.json" in setup_cfg.split("[options.package_data]", 1)[1]


def test_json_document_validates_and_carries_every_field(validator):
    doc = reports.to_dict(_record())
    assert not [e.message for e in validator.iter_errors(doc)]
    assert doc["command"] == "concurdeploy push haproxy --junit out.xml"
    assert doc["task"] == "push"
    assert (doc["started"], doc["ended"], doc["duration_s"]) == \
        ("2026-11-29T09:00:00.000Z", "2026-11-29T09:00:02.500Z", 2.5)
    assert doc["totals"] == {"hosts": 5, "ok": 1, "changed": 1, "failed": 1, "unreachable": 1, "skipped": 1}
    assert doc["failed_hosts"] == ["lb3", "lb4"]
    assert doc["exit_code"] == 1 and doc["signal"] == 0 and doc["stopped"] is None
    lb1 = doc["hosts"][0]
    assert lb1["changes"] == [{"dest": "/etc/haproxy/haproxy.cfg", "sha256_before": A, "sha256_after": B,
                               "size": 120, "action": "replaced", "path": "/etc/haproxy/haproxy.cfg",
                               "method": None}]
    assert lb1["reloaded"] is True and lb1["duration_s"] == 0.412 and lb1["warnings"] == ["owner not kept"]
    lb3 = doc["hosts"][2]
    assert (lb3["error_kind"], lb3["exit_status"], lb3["rolled_back"]) == ("ValidateFailed", 4, False)
    assert "bad" in lb3["output"]


@pytest.mark.parametrize("signal, results, code", [
    (0, (HostResult("a", Status.OK), HostResult("b", Status.CHANGED)), 0),
    (0, (HostResult("a", Status.OK), HostResult("b", Status.SKIPPED)), 0),
    (0, (HostResult("a", Status.OK), HostResult("b", Status.UNREACHABLE)), 1),
    (2, (HostResult("a", Status.OK),), 130),
    (15, (HostResult("a", Status.FAILED),), 143),
])
def test_exit_code_is_the_clis(signal, results, code, validator):
    record = _record(signal=signal, results=results, stopped="interrupted (SIGINT)" if signal else None)
    assert reports.exit_code(record) == code
    doc = reports.to_dict(record)
    assert doc["exit_code"] == code and doc["signal"] == signal
    assert not list(validator.iter_errors(doc))


def test_created_file_has_null_before_checksum(validator):
    r = HostResult("h", Status.CHANGED, changes=(FileChange("/x", None, B, 0),))
    doc = reports.to_dict(_record(results=(r,)))
    assert doc["hosts"][0]["changes"][0]["sha256_before"] is None
    assert doc["hosts"][0]["changes"][0]["action"] == "created"
    assert not list(validator.iter_errors(doc))


def test_non_json_data_values_become_strings(validator):
    r = HostResult("h", Status.OK, data={"path": object.__new__(type("P", (), {"__str__": lambda s: "/p"}))})
    doc = reports.to_dict(_record(results=(r,)))
    assert doc["hosts"][0]["data"] == {"path": "/p"}
    json.dumps(doc)


@pytest.mark.parametrize("command, task", [
    ("concurdeploy push haproxy", "push"),
    ("concurdeploy -r /srv/project -c tasks run web 'uptime'", "run"),
    ("concurdeploy --search-root=x get web /etc/hosts out", "get"),
    ("concurdeploy -d deploy-all", "deploy-all"),
])
def test_task_name(command, task):
    assert reports.task_name(command) == task


def test_write_json_round_trips(tmp_path):
    path = tmp_path / "a" / "b" / "run.json"
    path.parent.mkdir(parents=True)
    reports.write_json(path, _record())
    doc = json.loads(path.read_text())
    assert doc == reports.to_dict(_record())
    assert reports.failed_hosts(path) == ["lb3", "lb4"]
    assert reports.failed_hosts(str(path)) == ["lb3", "lb4"]
    assert os.listdir(path.parent) == ["run.json"]         # no temporary file left
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask   # like any new file, not mkstemp's 0600


def test_write_replaces_an_existing_report(tmp_path):
    path = tmp_path / "run.json"
    path.write_text("old")
    reports.write_json(path, _record())
    assert json.loads(path.read_text())["schema"] == reports.SCHEMA_ID


@pytest.mark.parametrize("writer", [reports.write_json, reports.write_junit])
def test_failed_replace_leaves_no_partial_file(tmp_path, monkeypatch, writer):
    path = tmp_path / "reports" / "out"
    path.parent.mkdir()

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(UsageError, match="No space left on device"):
        writer(path, _record())
    assert not path.exists()
    assert os.listdir(path.parent) == []                    # the temporary file was removed


@pytest.mark.parametrize("writer", [reports.write_json, reports.write_junit])
def test_failed_replace_keeps_the_previous_report_whole(tmp_path, monkeypatch, writer):
    path = tmp_path / "out"
    path.write_text("previous report\n")
    monkeypatch.setattr(os, "replace", lambda s, d: (_ for _ in ()).throw(OSError(5, "I/O error")))
    with pytest.raises(UsageError):
        writer(path, _record())
    assert path.read_text() == "previous report\n"
    assert os.listdir(tmp_path) == ["out"]


def test_unwritable_destination_is_a_usage_error(tmp_path):
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(UsageError, match="cannot write the JSON report .*dir.json"):
        reports.write_json(tmp_path / "dir.json", _record())
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="cannot write the JUnit report"):
        reports.write_junit(tmp_path / "file" / "junit.xml", _record())


def test_junit_parsed_back(tmp_path):
    path = tmp_path / "junit.xml"
    reports.write_junit(path, _record())
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "concurdeploy push haproxy --junit out.xml"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == \
        ("5", "2", "0", "1")
    assert suite.get("time") == "2.500"
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert list(cases) == ["lb1", "lb2", "lb3", "lb4", "lb5"]
    assert {c.get("classname") for c in cases.values()} == {"concurdeploy.push"}
    assert cases["lb1"].get("time") == "0.412"
    assert cases["lb1"].find("failure") is None and cases["lb1"].find("skipped") is None
    assert "reloaded" in cases["lb1"].find("system-out").text
    assert "owner not kept" in cases["lb1"].find("system-err").text
    f3 = cases["lb3"].find("failure")
    assert f3.get("message") == "failed: ValidateFailed: validate failed (exit 4)"
    assert f3.get("type") == "ValidateFailed"
    assert "\\x1b[31mthing" in cases["lb3"].find("system-out").text   # control chars escaped: valid XML
    f4 = cases["lb4"].find("failure")                                  # unreachable → <failure>, not <error>
    assert f4.get("message") == "unreachable: HostUnreachable: connection refused"
    assert cases["lb4"].find("error") is None
    assert cases["lb5"].find("skipped").get("message") == "not started: --fail-fast"
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["exit_code"] == "1" and props["schema"] == reports.SCHEMA_ID


def test_junit_of_an_interrupted_run(tmp_path):
    path = tmp_path / "j.xml"
    reports.write_junit(path, _record(signal=2, stopped="interrupted (SIGINT)"))
    suite = ET.parse(path).getroot().find("testsuite")
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert (props["exit_code"], props["signal"], props["stopped"]) == ("130", "2", "interrupted (SIGINT)")


def test_failed_hosts_missing_file(tmp_path):
    with pytest.raises(UsageError, match=r"report .*nope\.json does not exist"):
        reports.failed_hosts(tmp_path / "nope.json")


@pytest.mark.parametrize("content, message", [
    ("{not json", "not a concurdeploy JSON report: not JSON"),
    ("[1, 2]", "not a concurdeploy JSON report"),
    ('{"hosts": []}', "not a concurdeploy JSON report"),
    ('{"schema": "concurdeploy.report/9", "hosts": []}', "schema 'concurdeploy.report/9'"),
    ('{"schema": "concurdeploy.report/1", "hosts": [{"host": "a"}]}', "not a complete"),
    ('{"schema": "concurdeploy.report/1"}', "not a complete"),
])
def test_failed_hosts_rejects_what_is_not_a_report(tmp_path, content, message):
    path = tmp_path / "r.json"
    path.write_text(content)
    with pytest.raises(UsageError, match=message):
        reports.failed_hosts(path)


def test_failed_hosts_of_a_clean_run_is_empty(tmp_path):
    path = tmp_path / "r.json"
    reports.write_json(path, _record(results=(HostResult("a", Status.OK),)))
    assert reports.failed_hosts(path) == []
