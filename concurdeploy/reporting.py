"""What a run writes besides the host lines: streamed output, the reports (JSON, JUnit, HTML).

Used by :func:`concurdeploy.api.fan_out` only; split from it to keep each module small. Reports
are checked for writability before any host is touched (:func:`check_reports`) and written
after the run (:func:`write_reports`), also when hosts failed.
"""

from __future__ import annotations

import os
import sys

from concurdeploy.exceptions import UsageError
from concurdeploy.options import RunOptions
from concurdeploy.records import RunRecord

__all__ = ["Null", "Streamer", "check_reports", "with_output_dir", "write_reports"]

_REPORTS = (("report_json", "--report-json", "JSON report"), ("junit", "--junit", "JUnit report"),
            ("report_html", "--report-html", "HTML report"))


class Null:
    """A stream that drops everything (the console of a run from Python, by default)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False



class Streamer:
    """Prints streamed output line by line as ``host | line``, holding partial lines per host."""

    def __init__(self, out, width: int):
        self.out, self.width, self.partial = out, width, {}

    def __call__(self, host: str, stream: str, data: bytes) -> None:
        from concurdeploy.report import text as report

        text = self.partial.pop((host, stream), "") + data.decode("utf-8", "replace")
        *lines, rest = text.split("\n")
        if rest:
            self.partial[(host, stream)] = rest
        for ln in lines:
            self.out.line(f"{report.name(host):<{self.width}}| {report.clean(ln)}")

    def flush(self, host: str) -> None:
        from concurdeploy.report import text as report

        for key in [k for k in self.partial if k[0] == host]:
            self.out.line(f"{report.name(host):<{self.width}}| {report.clean(self.partial.pop(key))}")


def with_output_dir(specs: list, project_dir: str) -> list:
    """``specs`` (:class:`~concurdeploy.ssh.specs.ConnectSpec`) with this run's output folder,
    ``<project_dir>/.concurdeploy-output/<UTC time>-<6 hex>/``: where a command's output past
    the in-memory cap is written (:mod:`concurdeploy.ssh.spill`). Nothing is created here: the
    folder appears only when some output does pass the cap."""
    import secrets
    import time
    from dataclasses import replace

    run = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)
    from concurdeploy.ssh.spill import OUTPUT_FOLDER

    folder = os.path.join(os.path.abspath(project_dir), OUTPUT_FOLDER, run)
    return [replace(s, output_dir=folder) for s in specs]


def check_reports(opts: RunOptions) -> None:
    """Refuse the run now, before any host is touched, if a requested report could not be
    written (:func:`concurdeploy.report.files.check_writable`), or two reports name one file.

    :raises UsageError: names the flag(s) and the path.
    """
    asked = [(getattr(opts, name), flag) for name, flag, _ in _REPORTS if getattr(opts, name)]
    seen: dict[str, str] = {}
    for path, flag in asked:
        full = os.path.abspath(path)
        if full in seen:
            raise UsageError(f"{seen[full]} and {flag} name the same file ({path}): one would "
                             f"overwrite the other; give two paths")
        seen[full] = flag
    if asked:
        from concurdeploy.report import files as reports

        for path, flag in asked:
            try:
                reports.check_writable(path)
            except UsageError as e:
                raise UsageError(f"{flag}: {e}") from None


def write_reports(record: RunRecord, opts: RunOptions, stdout) -> str | None:
    """Write the requested reports (JSON, JUnit, HTML). The hosts have been touched by now, so a
    failure is not "bad input": it is returned (and said on stderr) for :attr:`RunResult.report_error`.

    :returns: the errors joined by ``"; "``, or None when every report was written.
    """
    if not any(getattr(opts, name) for name, _, _ in _REPORTS):
        return None
    from concurdeploy.report import files as reports
    from concurdeploy.report import html

    writers = {"report_json": reports.write_json, "junit": reports.write_junit, "report_html": html.write_html}
    errors = []
    for name, _, what in _REPORTS:
        path = getattr(opts, name)
        if not path:
            continue
        try:
            writers[name](path, record)
            print(f"{what}: {path}", file=stdout)
        except UsageError as e:
            errors.append(str(e))
            print(f"concurdeploy: error: {e} (the run itself finished: see the recap above)", file=sys.stderr)
    return "; ".join(errors) or None
