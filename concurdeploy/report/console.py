"""The terminal side of a run: plain lines for logs and CI, a live progress display for people.

:class:`Console` is the one object :func:`concurdeploy.api.fan_out` talks to. It picks
its mode once:

* **plain** — stdout is not a terminal (CI, a pipe, a file), ``TERM=dumb``, or
  ``--no-progress``: exactly the lines of :mod:`concurdeploy.report.text` (one per host event,
  then the ``RECAP`` block), no control characters at all;
* **live** — stdout is a terminal: a progress line (hosts done / total, changed, failed,
  elapsed) drawn with `rich <https://rich.readthedocs.io>`_ at the bottom of the screen,
  host lines (status in colour) printed above it as hosts finish, and a coloured recap
  table at the end. Anything else printed while the display is up (``print``, and stderr
  when it is the same terminal) is routed above it, so nothing interleaves with the bar.

Verbosity: ``-q`` (``verbosity=-1``) prints only failed/unreachable hosts and the recap;
``-v`` (1) prints every host's remote output, not only failed ones'; ``-vv`` (2) also each
changed file's checksums and size. ``rich`` is imported only when the live display starts,
so ``concurdeploy --help`` and plain runs never load it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import TextIO

from concurdeploy.exceptions import UsageError
from concurdeploy.records import HostResult, Status
from concurdeploy.report import text as report

__all__ = ["Console", "verbosity", "wants_live"]

#: rich style of each status word.
STYLES = {
    Status.OK: "green",
    Status.CHANGED: "yellow",
    Status.FAILED: "bold red",
    Status.UNREACHABLE: "bold magenta",
    Status.SKIPPED: "cyan",
}


def verbosity(verbose: int = 0, quiet: bool = False) -> int:
    """``-v`` count and ``-q`` as one number: -1 quiet, 0 normal, 1 ``-v``, 2 ``-vv``.

    :raises UsageError: both ``-v`` and ``-q`` were given.
    """
    verbose = int(verbose or 0)
    if quiet and verbose:
        raise UsageError("-q/--quiet and -v/--verbose exclude each other: give one of them")
    return -1 if quiet else verbose


def wants_live(stream: TextIO, progress: bool = True) -> bool:
    """True when a live display belongs on ``stream``: allowed, a terminal, and not ``TERM=dumb``."""
    if not progress:
        return False
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False
    return bool(tty) and os.environ.get("TERM", "").lower() not in ("dumb", "unknown")


class Console:
    """Prints a run's host events and recap, plainly or with a live progress display.

    :param total: hosts in the run (the progress bar's total).
    :param width: width of the host-name column.
    :param show_output: print every host's remote output (e.g. ``run``), not only failed ones'.
    :param show_diff: print each host's diff (``--diff``).
    :param progress: False forces plain output (``--no-progress``); True means live when
        ``stream`` is a terminal.
    :param verbosity: see :func:`verbosity`.
    :param stream: where to print (default: ``sys.stdout`` at construction).
    :param streamed: the hosts' output is printed live as it arrives (``run``, prefixed by
        host): it is not printed again under each host's line (except with ``-q``, which
        hides the live lines: a failed host's output then shows under its line).

    Use as a context manager: leaving it (normally or by an exception) closes the live
    display and restores the cursor. ``host_done`` etc. are called from one thread.
    """

    def __init__(self, total: int, width: int = 12, show_output: bool = False, show_diff: bool = False,
                 progress: bool = True, verbosity: int = 0, stream: TextIO | None = None,
                 streamed: bool = False, check: bool = False):
        self.total = total
        self.check = check
        self.streamed = streamed and verbosity >= 0
        self.width = width
        self.verbosity = verbosity
        self.show_output = show_output or verbosity >= 1
        self.show_diff = show_diff
        self.stream = stream or sys.stdout
        self.live = wants_live(self.stream, progress)
        self.done = self.changed = self.failed = 0
        self._printer = report.Printer(self.stream, show_output=self.show_output, width=width,
                                       show_diff=show_diff)
        self._rich = None       # rich.console.Console, live mode only
        self._progress = None   # rich.progress.Progress while the display is up
        self._task = None

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Console:
        if self.live:
            self._start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self) -> None:
        from rich.console import Console as RichConsole
        from rich.progress import (
            BarColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self._rich = RichConsole(file=self.stream, highlight=False, emoji=False, markup=False)
        self._progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}", markup=False), BarColumn(),
            _amount_column()(), _counts_column()(), TimeElapsedColumn(),
            console=self._rich, transient=True, redirect_stdout=True,
            redirect_stderr=_isatty(sys.stderr),
        )
        self._task = self._progress.add_task("running", total=self.total, changed=0, failed=0, check=self.check)
        self._progress.start()

    def close(self) -> None:
        """Take the live display down (idempotent); plain mode: nothing to do."""
        if self._progress is not None:
            progress, self._progress = self._progress, None
            progress.stop()

    # -- events --------------------------------------------------------------------------------

    def line(self, text: str, style: str | None = None) -> None:
        """Print one line of the run's own (a title, a note); not in quiet mode."""
        if self.verbosity < 0:
            return
        self._emit([(report.clean(text), style)])

    def batch_started(self, text: str) -> None:
        """A batch begins (``-- batch 2/3: h3, h4``): print it, show it on the progress line."""
        if self._progress is not None:
            self._progress.update(self._task, description=text.lstrip("- ").split(":")[0])
        self.line(text, style="bold")

    def upload_progress(self, host: str, data: bytes) -> None:
        """A large upload's progress, ``b"SENT TOTAL DEST"`` (bytes): on a terminal, a line
        ``HOST FILE  SENT/TOTAL MB`` with its bar under the hosts' bar, until the host is done;
        plain output shows nothing (its lines are for logs)."""
        if self._progress is None:
            return
        try:
            sent, total, dest = data.decode("utf-8", "replace").split(" ", 2)
            sent, total = int(sent), int(total)
        except ValueError:
            return  # not ours: never let a progress line break the run
        key = (host, dest)
        tasks = self.__dict__.setdefault("_uploads", {})
        if key not in tasks:
            label = report.clean(f"{report.name(host)} {os.path.basename(dest)}")
            tasks[key] = self._progress.add_task(label, total=total, kind="bytes")
        self._progress.update(tasks[key], completed=sent, refresh=True)

    def host_done(self, r: HostResult) -> None:
        """A host finished (or was settled without contact): count it and print its lines."""
        for key in [k for k in self.__dict__.get("_uploads", {}) if k[0] == r.host]:
            if self._progress is not None:
                self._progress.remove_task(self._uploads.pop(key))
        self.done += 1
        self.changed += r.status is Status.CHANGED
        self.failed += r.status.is_failure
        if self._progress is not None:
            self._progress.update(self._task, advance=1, changed=self.changed, failed=self.failed)
        if self.verbosity < 0 and not r.status.is_failure:
            return
        if self.streamed and r.output:  # already printed, line by line, as it came
            from dataclasses import replace

            r = replace(r, output="")
        if not self.live:
            self._printer(r)
            if self.verbosity >= 2:
                self._plain(report.detail_lines(r))
            return
        self._emit(self._styled_lines(r))

    def finish(self, results: Iterable[HostResult], elapsed_s: float, stopped: str | None = None) -> None:
        """Close the live display and print the recap (plain ``RECAP`` block, or a coloured table)."""
        results = list(results)
        self.close()
        if self._rich is None:
            self._plain([report.recap(results, elapsed_s, stopped=stopped, check=self.check)])
        else:
            self._rich.print(_recap_table(results, elapsed_s, stopped, self.check))

    # -- output --------------------------------------------------------------------------------

    def _plain(self, lines: list[str]) -> None:
        for ln in lines:
            print(ln, file=self.stream)
        self.stream.flush()

    def _emit(self, lines: list) -> None:
        """Print ``(text, style)`` pairs: ``text`` a ``str`` (or a rich ``Text`` in live mode)."""
        if self._rich is None:
            self._plain([text for text, _ in lines])
            return
        from rich.text import Text

        for text, style in lines:
            if isinstance(text, str):
                text = Text(text, style=style or "")
            self._rich.print(text, soft_wrap=True)

    def _styled_lines(self, r: HostResult) -> list:
        """The same lines as plain mode, for rich: ``(text, style)``, the status word coloured."""
        from rich.text import Text

        head = Text(report.host_line(r, self.width))
        start = self.width + 1
        head.stylize(STYLES[r.status], start, start + len(report.status_word(r.status, bool(r.data.get("check")))))
        out: list = [(head, None)]
        if r.output and (self.show_output or r.status.is_failure):
            out += [(ln, "dim") for ln in report.output_lines(r)]
        if self.show_diff and r.diff:
            for ln in report.diff_lines(r):
                body = ln.lstrip()
                style = ("bold" if body.startswith(("+++", "---")) else "green" if body.startswith("+")
                         else "red" if body.startswith("-") else "cyan" if body.startswith("@@") else None)
                out.append((ln, style))
        out += [(report.clean(f"{'':<{self.width}} warning: {w}"), "yellow") for w in r.warnings]
        if self.verbosity >= 2:
            out += [(ln, "dim") for ln in report.detail_lines(r)]
        return out


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _amount_column():
    """A rich progress column: ``3/8 hosts`` for the run, ``12.6/41.9 MB`` for an upload."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class AmountColumn(ProgressColumn):
        def render(self, task) -> Text:
            total = int(task.total or 0)
            if task.fields.get("kind") == "bytes":
                return Text(f"{task.completed / 1e6:.1f}/{total / 1e6:.1f} MB")
            return Text(f"{int(task.completed)}/{total} hosts")

    return AmountColumn


def _counts_column():
    """A rich progress column ``3 changed  1 failed`` (built lazily: rich is imported here)."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class CountsColumn(ProgressColumn):
        def render(self, task) -> Text:
            changed, failed = task.fields.get("changed", 0), task.fields.get("failed", 0)
            text = Text()
            if task.fields.get("kind") == "bytes":
                return text
            word = "would change" if task.fields.get("check") else "changed"
            text.append(f"{changed} {word}", style="yellow" if changed else "dim")
            text.append("  ")
            text.append(f"{failed} failed", style="bold red" if failed else "dim")
            return text

    return CountsColumn


def _recap_table(results: list[HostResult], elapsed_s: float, stopped: str | None, check: bool = False):
    """The recap for a terminal: a coloured header of counts and a table, one row per host
    (in check mode ``would change``, never ``changed``)."""
    from collections import Counter

    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    check = check or any(r.data.get("check") for r in results)
    counts = Counter(r.status for r in results)
    head = Text(f"RECAP  {len(results)} host{'s' if len(results) != 1 else ''} in {elapsed_s:.1f} s: ",
                style="bold")
    for i, s in enumerate(report.ORDER):
        if i:
            head.append(", ")
        head.append(f"{counts.get(s, 0)} {report.status_word(s, check)}", style=STYLES[s] if counts.get(s) else "dim")
    parts: list = [head]
    if stopped:
        parts.append(Text(f"  stopped early: {report.clean(stopped)}", style="bold yellow"))
    for n in sorted({r.batch for r in results if r.batch is not None}):
        members = [r for r in results if r.batch == n]
        parts.append(Text(f"  batch {n}: {len(members)} host{'s' if len(members) != 1 else ''}: "
                          f"{report._counts(members, check)}"))
    batched = any(r.batch is not None for r in results)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    table.add_column("host", no_wrap=True)
    table.add_column("status", no_wrap=True)
    if batched:
        table.add_column("batch", justify="right")
    table.add_column("files", justify="right")
    table.add_column("time", justify="right", no_wrap=True)
    table.add_column("note", overflow="fold")
    for r in results:
        if r.status.is_failure or (r.status is Status.SKIPPED and r.error):
            note = f"{r.error_kind}: {r.error}" if r.error_kind and r.status.is_failure else (r.error or "")
        elif r.reloaded:
            note = "reloaded"
        elif r.exit_status is not None:
            note = f"exit {r.exit_status}"
        else:
            note = ""
        if r.rolled_back:
            note = f"rolled back; {note}" if note else "rolled back"
        row = [Text(report.name(r.host)), Text(report.status_word(r.status, check), style=STYLES[r.status])]
        if batched:
            row.append(Text(str(r.batch) if r.batch is not None else "-"))
        row += [Text(str(len(r.changes)) if r.changes else "-"),
                Text(f"{r.duration_s:.2f} s" if r.duration_s else "-"),
                Text(report.clean(note), style="red" if r.status.is_failure else "")]
        table.add_row(*row)
    parts.append(table)
    return Group(*parts)
