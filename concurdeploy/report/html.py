"""``--report-html PATH``: one self-contained HTML page of a run.

The page holds the recap (counts per status), a timeline picture of every host's phases
(an inline SVG: one row per host, one bar per phase, seconds from the start of the run on the
x axis) and a table of each host's outcome, changed files and error. Nothing is loaded from
the network: no external URL, script, font or stylesheet (styles are inline, no JavaScript).

The data is the JSON report's (:func:`concurdeploy.report.files.to_dict`): errors and output
come as the run recorded them, secrets already masked; every text is HTML-escaped. A host's
phases come from :attr:`HostResult.timings <concurdeploy.records.HostResult.timings>`; a host
without timings is drawn as one bar of its ``duration_s`` ending when its result arrived (unknown:
starting at 0).

Reads records only (import-linter contract ``report-reads-records``).
"""

from __future__ import annotations

from html import escape

from concurdeploy.records import RunRecord
from concurdeploy.report import files

__all__ = ["PHASE_COLOURS", "STATUS_COLOURS", "render", "write_html"]

#: Fill colour of each phase's bar (``#rrggbb``); the tests look for these pixels.
PHASE_COLOURS = {
    "connect": "#1f77b4",
    "compare": "#bcbd22",
    "upload": "#ff7f0e",
    "validate": "#9467bd",
    "rename": "#8c564b",
    "reload": "#e377c2",
    "healthcheck": "#17becf",
    "command": "#7f7f7f",
    "download": "#aec7e8",
    "task": "#98df8a",
}
#: Colour of a host's whole-run bar (phase ``host``) by status, and of the status word.
STATUS_COLOURS = {
    "ok": "#2e7d32",
    "changed": "#f9a825",
    "failed": "#c62828",
    "unreachable": "#6a1b9a",
    "skipped": "#9e9e9e",
}

_ROW, _LABEL, _PLOT, _TOP = 22, 160, 640, 24  # px: row height, label column, plot width, axis band


def _bars(host: dict, timings) -> list[tuple[str, float, float]]:
    if timings:
        return [(str(p), max(0.0, float(s)), max(0.0, float(d))) for p, s, d in timings]
    if host["status"] == "skipped":
        return []
    return [("host", 0.0, float(host["duration_s"] or 0.0))]


def _timeline(doc: dict, timings: dict) -> str:
    """The SVG picture: one row per host, bars positioned by seconds from the run's start."""
    rows = [(h, _bars(h, timings.get(h["host"]))) for h in doc["hosts"]]
    end = max([s + d for _, bars in rows for _, s, d in bars] + [float(doc["duration_s"] or 0), 0.001])
    scale = _PLOT / end
    height = _TOP + _ROW * len(rows) + 8
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_LABEL + _PLOT + 20}" height="{height}" '
           f'role="img" aria-label="timeline of every host\'s phases">']
    for i in range(5):  # axis ticks: 0 .. end seconds
        x = _LABEL + _PLOT * i / 4
        out.append(f'<line x1="{x:.1f}" y1="{_TOP - 6}" x2="{x:.1f}" y2="{height - 4}" stroke="#ddd"/>'
                   f'<text x="{x:.1f}" y="{_TOP - 10}" font-size="11" text-anchor="middle">'
                   f'{end * i / 4:.2f} s</text>')
    for n, (h, bars) in enumerate(rows):
        y = _TOP + n * _ROW
        out.append(f'<text x="{_LABEL - 6}" y="{y + 15}" font-size="12" text-anchor="end">'
                   f'{escape(h["host"])}</text>')
        # the narrowest last: a rename of a few ms, widened to 3 px, is drawn over its neighbours
        for phase, s, d in sorted(bars, key=lambda b: -b[2]):
            colour = STATUS_COLOURS.get(h["status"], "#9e9e9e") if phase == "host" \
                else PHASE_COLOURS.get(phase, "#607d8b")
            w = max(d * scale, 3.0)
            out.append(f'<rect class="bar" data-host="{escape(h["host"])}" data-phase="{escape(phase)}" '
                       f'x="{_LABEL + s * scale:.1f}" y="{y + 3}" width="{w:.1f}" height="{_ROW - 6}" '
                       f'fill="{colour}"><title>{escape(h["host"])} {escape(phase)}: {d:.3f} s from '
                       f'{s:.3f} s</title></rect>')
    out.append("</svg>")
    return "".join(out)


def _legend(doc: dict, timings: dict) -> str:
    phases = {p for t in timings.values() for p, _, _ in t}
    items = [(p, c) for p, c in PHASE_COLOURS.items() if p in phases]
    whole = {h["status"] for h in doc["hosts"]
             if h["status"] != "skipped" and (not timings.get(h["host"])
                                              or any(p == "host" for p, _, _ in timings[h["host"]]))}
    items += [(f"whole host, {s}", c) for s, c in STATUS_COLOURS.items() if s in whole]
    return " ".join(f'<span class="key"><span class="sw" style="background:{c}"></span>{escape(n)}</span>'
                    for n, c in items)


def _check_mode(record: RunRecord) -> bool:
    """Whether ``record`` is a check-mode run: a host says so, or the command line has ``--check``/``-C``."""
    import shlex

    if any(r.data.get("check") for r in record.results):
        return True
    try:
        words = shlex.split(record.command or "")
    except ValueError:
        words = (record.command or "").split()
    return any(w in ("--check", "-C", "--dry", "-R") for w in words)


def render(record: RunRecord) -> str:
    """The page for ``record`` as a ``str`` (UTF-8 HTML5, no external resources)."""
    doc = files.to_dict(record)
    timings = {r.host: tuple(r.timings) for r in record.results if r.timings}
    totals = doc["totals"]
    check = _check_mode(record)
    word = {"changed": "would change"} if check else {}  # a check-mode run never says it changed anything
    counts = ", ".join(f"{totals[s]} {word.get(s, s)}" for s in STATUS_COLOURS)
    stopped = f'<p class="stopped">Stopped early: {escape(doc["stopped"])}</p>' if doc["stopped"] else ""
    rows = []
    for h in doc["hosts"]:
        changes = "<br>".join(f'{escape(c["dest"])} ({"would be " if check else ""}{escape(c["action"])}'
                              + (f', written: {escape(c["path"])}' if c.get("path", c["dest"]) != c["dest"] else "")
                              + (f', {escape(c["method"])}' if c.get("method") == "in-place" else "") + ")"
                              for c in h["changes"])
        error = ": ".join(escape(x) for x in (h["error_kind"], h["error"]) if x)
        extra = (" reloaded" if h["reloaded"] else "") + (" rolled back" if h["rolled_back"] else "")
        rows.append(f'<tr><td>{escape(h["host"])}</td><td class="st" style="color:'
                    f'{STATUS_COLOURS.get(h["status"], "#000")}">{escape(word.get(h["status"], h["status"]))}</td>'
                    f'<td>{h["duration_s"]:.2f} s</td><td class="ch">{changes}{escape(extra)}</td>'
                    f'<td class="err">{error}</td></tr>')
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>concurdeploy: {escape(doc["command"])}</title>
<style>
body {{ font-family: sans-serif; margin: 16px; color: #222; background: #fff; }}
h1 {{ font-size: 18px; margin: 0 0 4px 0; }} p {{ margin: 4px 0; }}
table {{ border-collapse: collapse; margin-top: 12px; }}
td, th {{ white-space: nowrap; border: 1px solid #ccc; padding: 3px 8px; font-size: 13px; text-align: left; vertical-align: top; }}
.st {{ font-weight: bold; }} .stopped {{ color: #e65100; }}
td.err {{ color: #b71c1c; white-space: pre-wrap; overflow-wrap: anywhere; min-width: 16em; max-width: 44em; }}
td.ch {{ white-space: normal; overflow-wrap: anywhere; max-width: 36em; }}
.key {{ margin-right: 12px; font-size: 12px; }}
.sw {{ display: inline-block; width: 10px; height: 10px; margin-right: 4px; }}
</style></head><body>
<h1>{escape(doc["command"])}</h1>
<p id="recap">RECAP {totals["hosts"]} host{"s" if totals["hosts"] != 1 else ""} in {doc["duration_s"]:.1f} s:
{escape(counts)} &middot; exit code {doc["exit_code"]} &middot; {escape(doc["started"])} to {escape(doc["ended"])}</p>
{stopped}
<div id="timeline">{_timeline(doc, timings)}</div>
<p>{_legend(doc, timings)}</p>
<table id="hosts"><tr><th>host</th><th>status</th><th>time</th><th>changes</th><th>error</th></tr>
{"".join(rows)}
</table>
</body></html>
"""


def write_html(path, record: RunRecord) -> None:
    """Write the HTML page of ``record`` to ``path`` atomically (its folder must exist).

    :raises UsageError: the file cannot be written (the message names it).
    """
    files._atomic_write(path, render(record).encode("utf-8"), "HTML report")
