"""Human-readable output of a run: one line per host as it finishes, and the recap.

Pure formatting from :class:`~concurdeploy.records.HostResult` records: no SSH, no I/O
beyond the stream it is given.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Iterable
from typing import TextIO

from concurdeploy.records import HostResult, Status

__all__ = ["Printer", "clean", "detail_lines", "host_line", "name", "output_lines", "recap", "status_word"]

ORDER = (Status.OK, Status.CHANGED, Status.FAILED, Status.UNREACHABLE, Status.SKIPPED)

# Control characters (C0 but tab, DEL, C1) that remote output may carry: shown escaped, never sent
# to the terminal or a CI log as is (a host's ESC sequences could otherwise repaint the screen).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(text: str) -> str:
    r"""``text`` with control characters shown as ``\xNN`` (ESC ``[31m`` → ``\x1b[31m``); tab, newline kept."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _escaped(ch: str) -> str:
    n = ord(ch)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def name(text) -> str:
    r"""A name (host, group, address) as printed on a terminal: every character that is not
    printable as itself shown escaped, ``\xNN``/``\uNNNN``, as ``ls`` escapes file names: controls
    (tab and newline too: a name holds none), format characters (a bidi override ``\u202e``
    that would reorder the line), line/paragraph separators, surrogates, unassigned code points."""
    text = str(text)
    if text.isprintable():  # the common case: nothing to do
        return text
    return "".join(ch if ch.isprintable() else _escaped(ch) for ch in text)


#: How a :class:`~concurdeploy.records.FileChange` was written, in words.
_METHOD_WORDS = {"replace": "replaced", "in-place": "rewritten in place", "create": "created"}


def change_text(c, verb: str = "") -> str:
    """``/etc/a.cfg replaced``, ``/etc/a.cfg rewritten in place``, ``/etc/a.cfg (written:
    /srv/a.cfg) replaced``: the destination, the path actually written when it differs
    (a followed symlink), and how (``verb``: ``"would be "`` in check mode)."""
    where = c.dest if c.written == c.dest else f"{c.dest} (written: {c.written})"
    return f"{where} {verb}{_METHOD_WORDS.get(c.method, c.action)}"


#: How a status reads in check mode, where nothing was done: what would be.
CHECK_WORDS = {Status.CHANGED: "would change"}


def status_word(status: Status, check: bool = False) -> str:
    """``status`` in words: its value (``changed``), or in check mode what it would be
    (``would change``): a check-mode run never says it changed anything."""
    return CHECK_WORDS.get(status, status.value) if check else status.value


def host_line(r: HostResult, width: int = 12) -> str:
    """``lb1          changed      /etc/haproxy/haproxy.cfg replaced, reloaded  (0.41 s)``."""
    if r.status.is_failure or (r.status is Status.SKIPPED and r.error):
        detail = f"{r.error_kind}: {r.error}" if r.error_kind else (r.error or "")
        if r.status is Status.SKIPPED:
            detail = r.error or ""
        elif r.changes:  # replaced before the failure (e.g. a connection dropped at the reload)
            detail += "; already " + ", ".join(change_text(c) for c in r.changes)
    elif r.changes:
        verb = "would be " if r.data.get("check") else ""
        detail = ", ".join(change_text(c, verb) for c in r.changes)
        if r.reloaded:
            detail += ", reloaded"
    elif r.reloaded:
        detail = "reloaded (owed by an earlier run)"
    elif r.exit_status is not None:
        detail = f"exit {r.exit_status}"
    elif r.data.get("local_path"):
        detail = f"saved {r.data['local_path']} ({r.data.get('size', 0)} bytes)"
    else:
        detail = "up to date" if r.status is Status.OK else ""
    timing = f"  ({r.duration_s:.2f} s)" if r.duration_s else ""
    word = status_word(r.status, bool(r.data.get("check")))
    return clean(f"{name(r.host):<{width}} {word:<12} {detail}{timing}".rstrip())


def output_lines(r: HostResult, prefix: str = "    | ") -> list[str]:
    """The host's remote output (validator or command output), one prefixed line each."""
    return [f"{prefix}{clean(ln)}" for ln in r.output.splitlines()]


def diff_lines(r: HostResult, prefix: str = "    ") -> list[str]:
    """The host's unified diff (``--diff``), one prefixed line each."""
    return [f"{prefix}{clean(ln)}" for ln in r.diff.splitlines()]


def detail_lines(r: HostResult, prefix: str = "    ") -> list[str]:
    """Extra lines for ``-vv``: each changed file's checksums and size, the batch, the exit status."""
    lines = [f"{prefix}{clean(c.dest)}: sha256 {(c.sha256_before or '-')[:12]} -> {c.sha256_after[:12]}, "
             f"{c.size} bytes" for c in r.changes]
    if r.batch is not None:
        lines.append(f"{prefix}batch {r.batch}")
    if r.exit_status is not None and r.changes:
        lines.append(f"{prefix}exit status {r.exit_status}")
    return lines


def _counts(results, check: bool = False) -> str:
    counts = Counter(r.status for r in results)
    return ", ".join(f"{counts.get(s, 0)} {status_word(s, check)}" for s in ORDER)


def recap(results: Iterable[HostResult], elapsed_s: float, stopped: str | None = None,
          check: bool = False) -> str:
    """Multi-line recap: counts per status, per batch when batched, then every host's status.

    :param stopped: why the run stopped early (``--max-fail``, ``--fail-fast``, a signal), if it did.
    :param check: a check-mode run: ``would change``, never ``changed`` (:func:`status_word`).
    """
    results = list(results)
    check = check or any(r.data.get("check") for r in results)
    width = max([len(name(r.host)) for r in results] + [4])
    lines = [f"RECAP  {len(results)} host{'s' if len(results) != 1 else ''} in {elapsed_s:.1f} s: "
             + _counts(results, check)]
    if stopped:
        lines.append(f"  stopped early: {stopped}")
    numbers = sorted({r.batch for r in results if r.batch is not None})
    for n in numbers:
        members = [r for r in results if r.batch == n]
        lines.append(f"  batch {n}: {len(members)} host{'s' if len(members) != 1 else ''}: {_counts(members, check)}")
    for r in results:
        note = " (rolled back)" if r.rolled_back else ""
        lines.append(f"  {name(r.host):<{width}}  {status_word(r.status, check)}{note}")
    return clean("\n".join(lines))


class Printer:
    """Prints one line per host event to ``stream`` (plain text, no control characters).

    :param show_output: also print each host's remote output under its line
        (always for failed hosts, for every host when True, e.g. ``run``).
    """

    def __init__(self, stream: TextIO | None = None, show_output: bool = False, width: int = 12,
                 show_diff: bool = False):
        self.stream = stream or sys.stdout
        self.show_output = show_output
        self.show_diff = show_diff
        self.width = width

    def __call__(self, r: HostResult) -> None:
        print(host_line(r, self.width), file=self.stream)
        if r.output and (self.show_output or r.status.is_failure):
            for ln in output_lines(r):
                print(ln, file=self.stream)
        if self.show_diff and r.diff:
            for ln in diff_lines(r):
                print(ln, file=self.stream)
        for w in r.warnings:
            print(clean(f"{'':<{self.width}} warning: {w}"), file=self.stream)
        self.stream.flush()
