"""Machine-readable reports of a run: JSON (``--report-json``) and JUnit XML (``--junit``).

Both are built from a :class:`~concurdeploy.records.RunRecord` and written atomically: the
document goes to a temporary file in the destination's directory, is flushed to disk, then
``os.replace``-d over the destination, so a reader (a CI step, a later ``--retry-failed``)
sees the previous file or the complete new one, never a truncated one. The destination's
folder must exist: a missing one is refused (:func:`check_writable`, before any host is
touched), never created.

**JSON** (schema ``concurdeploy.report/1``, described by ``report.schema.json`` beside this
module, JSON Schema draft 2020-12)::

    {"schema": "concurdeploy.report/1", "concurdeploy_version": "0.1.0",
     "command": "concurdeploy push haproxy", "task": "push",
     "started": "2026-11-29T09:00:00.123Z", "ended": "2026-11-29T09:00:02.456Z",
     "duration_s": 2.333, "stopped": null, "signal": 0, "exit_code": 1,
     "totals": {"hosts": 2, "ok": 0, "changed": 1, "failed": 1, "unreachable": 0, "skipped": 0},
     "failed_hosts": ["lb2"],
     "hosts": [{"host": "lb1", "status": "changed", "batch": null, "duration_s": 0.41,
                "changes": [{"dest": "/etc/haproxy/haproxy.cfg", "sha256_before": "…",
                             "sha256_after": "…", "size": 1234, "action": "replaced",
                             "path": "/etc/haproxy/haproxy.cfg", "method": "replace"}],
                "reloaded": true, "rolled_back": false, "error_kind": null, "error": null,
                "exit_status": null, "output": "", "warnings": [], "data": {}}, …]}

``exit_code`` is the CLI's: 128 + signal when interrupted (130, 143), else 1 when any
host is ``failed`` or ``unreachable``, else 0.

**JUnit XML**: ``<testsuites>`` holding one ``<testsuite name="concurdeploy push haproxy">``
with one ``<testcase name=HOST classname="concurdeploy.push">`` per host, ``time`` in
seconds. A ``failed`` host *and* an ``unreachable`` one carry a ``<failure>`` (CI systems
count both as failed tests; ``type`` is the error kind, e.g. ``HostUnreachable``, and the
message starts with the status); nothing is reported as ``<error>``. A ``skipped`` host
(not started: the run stopped first) carries ``<skipped message=…>``. The host's output
tail is the test case's ``<system-out>``, its warnings ``<system-err>``.

This module imports no SSH code.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shlex
import stat
import socket
import tempfile
import time
from collections import Counter

from concurdeploy import __version__
from concurdeploy.exceptions import UsageError
from concurdeploy.inputs import read_bounded_text
from concurdeploy.records import HostResult, RunRecord, Status
from concurdeploy.report.text import change_text

__all__ = [
    "SCHEMA_ID",
    "exit_code",
    "failed_hosts",
    "read_json",
    "schema",
    "task_name",
    "to_dict",
    "write_json",
    "write_junit",
]

#: The value of a JSON report's ``"schema"`` key; the number changes only on an incompatible change.
SCHEMA_ID = "concurdeploy.report/1"

_STATUSES = [s.value for s in Status]
_FAILURES = {s.value for s in Status if s.is_failure}

# Core options of the ``concurdeploy`` program that take a value (skipped when finding the task name).
_VALUED_CORE = {"-c", "--collection", "-r", "--search-root", "-f", "--config", "-T", "--command-timeout",
                "--print-completion-script", "--hide", "-D", "--list-depth", "-F", "--list-format"}


def exit_code(record: RunRecord) -> int:
    """The CLI's exit code for this run: 128+signal if interrupted, 1 if a host failed, else 0."""
    if record.signal:
        return 128 + record.signal
    return 1 if any(r.status.is_failure for r in record.results) else 0


def task_name(command: str) -> str:
    """The task of a recorded command line: ``"concurdeploy -r . push haproxy"`` → ``"push"``."""
    words = command.split()[1:]
    i = 0
    while i < len(words):
        w = words[i]
        if w in _VALUED_CORE:
            i += 2
            continue
        if not w.startswith("-"):
            return w
        i += 1
    return "run"


def _plain(value):
    """``value`` as plain JSON data (unknown objects become their ``str``)."""
    return json.loads(json.dumps(value, default=str))


def _host(r: HostResult) -> dict:
    return {
        "host": r.host,
        "status": r.status.value,
        "batch": r.batch,
        "duration_s": round(float(r.duration_s or 0.0), 3),
        "changes": [{"dest": c.dest, "sha256_before": c.sha256_before, "sha256_after": c.sha256_after,
                     "size": c.size, "action": c.action, "path": c.written, "method": c.method or None}
                    for c in r.changes],
        "reloaded": bool(r.reloaded),
        "rolled_back": bool(r.rolled_back),
        "error_kind": r.error_kind,
        "error": r.error,
        "exit_status": r.exit_status,
        "output": r.output or "",
        "warnings": list(r.warnings),
        "data": _plain(dict(r.data or {})),
    }


def to_dict(record: RunRecord) -> dict:
    """The JSON report of ``record`` as a ``dict`` (see the module docstring and the schema)."""
    counts = Counter(r.status.value for r in record.results)
    totals = {"hosts": len(record.results), **{s: counts.get(s, 0) for s in _STATUSES}}
    return {
        "schema": SCHEMA_ID,
        "concurdeploy_version": __version__,
        "command": record.command,
        "task": task_name(record.command),
        "started": record.started,
        "ended": record.ended,
        "duration_s": record.duration_s,
        "stopped": record.stopped,
        "signal": int(record.signal or 0),
        "exit_code": exit_code(record),
        "totals": totals,
        "failed_hosts": [r.host for r in record.results if r.status.is_failure],
        "hosts": [_host(r) for r in record.results],
    }


def _target(path) -> tuple[str, bool]:
    """Where a report for ``path`` goes: ``(file, stream)``. ``stream`` is True for an existing
    path that is not a regular file (``/dev/stdout``, a FIFO, a character device): it is
    written through, never replaced. A symlink to a regular file is followed, so that the
    link stays and its target gets the report."""
    path = os.path.abspath(os.fspath(path))
    try:
        st = os.stat(path)  # follows symlinks
    except (FileNotFoundError, NotADirectoryError):  # missing (or under a file: the probe says so)
        return path, False
    except OSError:
        return path, True  # e.g. a dangling /proc link: let the open say why
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, "is a directory", path)
    if not stat.S_ISREG(st.st_mode):
        return path, True
    return os.path.realpath(path), False


#: Marks found in the first bytes of each kind of report this tool writes (JSON's schema id,
#: JUnit's testsuite name, the HTML page's title): an existing file holding none is not replaced.
_REPORT_MARKS = (b'"schema": "concurdeploy.report/', b'<testsuite name="concurdeploy', b"<title>concurdeploy: ")


def _replaceable(target: str) -> bool:
    """True when a report may replace ``target``: it does not exist, is empty, or is a report
    this tool wrote (one of :data:`_REPORT_MARKS` in its first 8 KiB)."""
    try:
        with open(target, "rb") as fh:
            head = fh.read(8192)
    except FileNotFoundError:
        return True
    return not head or any(mark in head for mark in _REPORT_MARKS)


#: Seconds a report waits for a reader to open the FIFO it is given.
FIFO_READER_WAIT_S = 10.0


def _open_stream(path: str):
    """Open an existing non-regular file (``/dev/stdout``, a device, a FIFO) for writing. A FIFO
    gets :data:`FIFO_READER_WAIT_S` seconds for a reader to open it (looked at every 50 ms), then
    ``ENXIO``: a FIFO nobody reads never blocks the run (and its signals) for ever.

    :raises OSError: ``ENXIO`` (no reader), or what the open says."""
    end = time.monotonic() + FIFO_READER_WAIT_S
    while True:  # bounded by FIFO_READER_WAIT_S
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as e:
            if e.errno != errno.ENXIO or time.monotonic() > end:
                raise OSError(e.errno, f"{e.strerror} (a FIFO nobody reads)"
                              if e.errno == errno.ENXIO else e.strerror, path) from None
            time.sleep(0.05)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "wb")


def _atomic_write(path, data: bytes, what: str) -> None:
    """Write ``data`` to ``path``: a regular file (or a new one) through a temporary file in the
    same directory + ``os.replace`` (a missing folder is not created: an error); an existing device,
    FIFO or ``/dev/stdout`` written through as it is (see :func:`_target`).

    :raises UsageError: the file or its directory cannot be written (the message names it).
    """
    tmp = None
    try:
        path, stream = _target(path)
        if stream:
            with _open_stream(path) as f:
                f.write(data)
            return
        parent = os.path.dirname(path)
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise UsageError(f"cannot write the {what} {os.fspath(path)}: {e.strerror or e}") from e
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def check_writable(path) -> None:
    """Fail now, before any host is touched, if a report could not be written to ``path``:
    the same rules as the write (:func:`_target`), probed without leaving anything behind
    (a temporary file is created and removed in its folder, which must exist: a missing
    folder is refused, never created).

    :raises UsageError: names the path and the reason.
    """
    shown = os.fspath(path)
    try:
        target, stream = _target(path)
        if stream:
            if not os.access(target, os.W_OK):
                raise PermissionError(errno.EACCES, "not writable", target)
            return
        folder = existing = os.path.dirname(target)
        for _ in range(target.count(os.sep) + 1):  # bounded: one step per path level
            if os.path.lexists(existing) or existing == os.path.dirname(existing):
                break
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing):
            raise NotADirectoryError(errno.ENOTDIR, "is not a folder", existing)
        if existing != folder:  # a typo in a path must not grow folders silently
            raise UsageError(f"cannot write a report to {shown}: its folder {folder} does not exist; "
                             f"create it first (mkdir -p {shlex.quote(folder)}) or give a path in an "
                             f"existing folder; nothing was touched")
        if not _replaceable(target):
            raise UsageError(f"cannot write a report to {shown}: it is an existing file that is not a "
                             f"concurdeploy report (a report replaces the file it is given; this one "
                             f"may be a config, an inventory, a key or tasks.py); give a new path or a "
                             f"report's own; nothing was touched")
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".concurdeploy-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        where = f" ({e.filename})" if e.filename and e.filename != shown else ""
        raise UsageError(f"cannot write a report to {shown}: {e.strerror or e}{where}; give a path "
                         f"in a writable folder; nothing was touched") from None


def write_json(path, record: RunRecord) -> None:
    """Write the JSON report of ``record`` to ``path``, atomically (its folder must exist).

    :raises UsageError: the file cannot be written.
    """
    text = json.dumps(to_dict(record), indent=2, ensure_ascii=False) + "\n"
    _atomic_write(path, text.encode("utf-8"), "JSON report")


# Characters XML 1.0 cannot carry at all (even escaped): C0 controls but tab/LF/CR, surrogates, U+FFFE/F.
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_text(text) -> str:
    """``text`` with characters XML cannot hold shown as ``\\xNN`` (e.g. a remote ESC → ``\\x1b``)."""
    return _XML_BAD.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                        else f"\\u{ord(m.group()):04x}", "" if text is None else str(text))


def _failure_message(r: HostResult) -> str:
    detail = f"{r.error_kind}: {r.error}" if r.error_kind and r.error else (r.error or r.error_kind or "")
    if not detail and r.exit_status is not None:
        detail = f"exit {r.exit_status}"
    return f"{r.status.value}: {detail}" if detail else r.status.value


def write_junit(path, record: RunRecord) -> None:
    """Write a JUnit XML report of ``record`` to ``path``, atomically (its folder must exist).

    One ``<testcase>`` per host; ``failed`` and ``unreachable`` hosts are ``<failure>``\\ s,
    ``skipped`` ones ``<skipped>`` (see the module docstring).

    :raises UsageError: the file cannot be written.
    """
    import xml.etree.ElementTree as ET

    results = record.results
    counts = Counter(r.status for r in results)
    failures = sum(1 for r in results if r.status.is_failure)
    attrs = {"tests": str(len(results)), "failures": str(failures), "errors": "0",
             "skipped": str(counts.get(Status.SKIPPED, 0)), "time": f"{record.duration_s:.3f}"}
    root = ET.Element("testsuites", {"name": "concurdeploy", **attrs})
    suite = ET.SubElement(root, "testsuite", {"name": _xml_text(record.command), **attrs,
                                              "timestamp": record.started[:19],
                                              "hostname": socket.gethostname()})
    props = ET.SubElement(suite, "properties")
    for name, value in (("schema", SCHEMA_ID), ("exit_code", exit_code(record)),
                        ("signal", record.signal or 0), ("stopped", record.stopped or ""),
                        ("started", record.started), ("ended", record.ended)):
        ET.SubElement(props, "property", {"name": name, "value": _xml_text(value)})
    classname = f"concurdeploy.{task_name(record.command)}"
    for r in results:
        case = ET.SubElement(suite, "testcase", {"name": _xml_text(r.host), "classname": classname,
                                                 "time": f"{float(r.duration_s or 0):.3f}"})
        if r.status.is_failure:
            message = _failure_message(r)
            el = ET.SubElement(case, "failure", {"message": _xml_text(message),
                                                 "type": _xml_text(r.error_kind or r.status.value)})
            body = [message]
            if r.exit_status is not None:
                body.append(f"exit status: {r.exit_status}")
            if r.rolled_back:
                body.append("rolled back: the previous files were restored")
            el.text = _xml_text("\n".join(body))
        elif r.status is Status.SKIPPED:
            ET.SubElement(case, "skipped", {"message": _xml_text(r.error or "not started")})
        out = []
        for c in r.changes:
            out.append(f"{change_text(c)} (sha256 {c.sha256_before or '-'} -> {c.sha256_after}, "
                       f"{c.size} bytes)")
        if r.reloaded:
            out.append("reloaded")
        if r.output:
            out.append(r.output)
        if out:
            ET.SubElement(case, "system-out").text = _xml_text("\n".join(out))
        if r.warnings:
            ET.SubElement(case, "system-err").text = _xml_text("\n".join(f"warning: {w}" for w in r.warnings))
    ET.indent(root)
    data = ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
    _atomic_write(path, data, "JUnit report")


def read_json(path) -> dict:
    """Load a JSON report written by :func:`write_json`.

    :raises UsageError: the file is missing or unreadable, is not JSON, or is not a
        concurdeploy report of a schema version this concurdeploy reads.
    """
    path = os.fspath(path)
    try:
        doc = json.loads(read_bounded_text(path))
    except FileNotFoundError:
        raise UsageError(f"report {path} does not exist (write one with --report-json {path})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read report {path}: {getattr(e, 'strerror', None) or e}") from None
    except json.JSONDecodeError as e:
        raise UsageError(f"{path} is not a concurdeploy JSON report: not JSON ({e})") from None
    schema_id = doc.get("schema") if isinstance(doc, dict) else None
    if not isinstance(schema_id, str) or not schema_id.startswith("concurdeploy.report/"):
        raise UsageError(f"{path} is not a concurdeploy JSON report (no \"schema\": \"{SCHEMA_ID}\"; "
                         f"write one with --report-json)")
    if schema_id != SCHEMA_ID:
        raise UsageError(f"{path} is a report of schema {schema_id!r}; this concurdeploy reads {SCHEMA_ID!r}")
    hosts = doc.get("hosts")
    if not isinstance(hosts, list) or not all(isinstance(h, dict) and isinstance(h.get("host"), str)
                                              and h.get("status") in _STATUSES for h in hosts):
        raise UsageError(f"{path} is not a complete concurdeploy JSON report (bad \"hosts\" list)")
    return doc


def retry_hosts(path) -> list[str]:
    """Hosts a JSON report says did not get the change: ``failed``, ``unreachable``, and
    ``skipped`` (e.g. the rest of a rollout stopped by a failed canary). For ``--retry-failed``.

    :raises UsageError: see :func:`read_json`.
    """
    wanted = set(_FAILURES) | {"skipped"}
    return [h["host"] for h in read_json(path)["hosts"] if h["status"] in wanted]


def failed_hosts(path) -> list[str]:
    """Names of the hosts a JSON report lists as ``failed`` or ``unreachable``, in report order.

    For ``--retry-failed REPORT``. An empty list means the reported run had no failed host.

    :raises UsageError: see :func:`read_json`.
    """
    return [h["host"] for h in read_json(path)["hosts"] if h["status"] in _FAILURES]


def schema() -> dict:
    """The JSON Schema (draft 2020-12) of the JSON report, shipped as ``report.schema.json``."""
    from importlib import resources

    return json.loads(resources.files(__package__).joinpath("report.schema.json").read_text("utf-8"))
