"""Rolling batches (``--serial``) and failure limits (``--max-fail``): pure functions, no I/O.

``--serial`` takes a size (``2``), a share of the hosts (``25%``), or a comma list of
either, as Ansible's ``serial``: ``1,10%,100%`` is a canary of one host, then 10% of the
hosts, then all the rest; the last value repeats until every host is in a batch.
Percentages round up and are at least 1 host.

``--max-fail`` takes a count (``2``: stop once more than 2 hosts have failed) or a share
(``10%``: stop once more than 10% of the hosts tried so far have failed). It is checked
after each batch; hosts in later batches are reported ``skipped``.
"""

from __future__ import annotations

import math

from concurdeploy.exceptions import UsageError

__all__ = ["exceeded", "parse_max_fail", "parse_serial", "split"]


def _size(term: str, total: int, flag: str) -> int:
    term = term.strip()
    try:
        if term.endswith("%"):
            pct = float(term[:-1])
            if not 0 < pct <= 100:
                raise ValueError
            return max(1, math.ceil(total * pct / 100))
        n = int(term)
        if n < 1:
            raise ValueError
        return n
    except ValueError:
        raise UsageError(f"{flag} {term!r}: give a host count ≥ 1 (e.g. 2) or a share "
                         f"(e.g. 25%), or a comma list such as 1,10%,100%") from None


def parse_serial(spec: str | None, total: int) -> list[int]:
    """Batch sizes for ``total`` hosts; they sum to ``total``. None/"" → one batch of all.

    :raises UsageError: a term is not a positive count or a share in (0, 100]%.
    """
    if not spec:
        return [total] if total else []
    sizes = [_size(t, total, "--serial") for t in str(spec).split(",")]
    out, left, i = [], total, 0
    while left > 0:
        n = min(sizes[min(i, len(sizes) - 1)], left)
        out.append(n)
        left -= n
        i += 1
    return out


def split(items: list, spec: str | None) -> list[list]:
    """``items`` cut into consecutive batches by :func:`parse_serial`."""
    out, start = [], 0
    for n in parse_serial(spec, len(items)):
        out.append(items[start:start + n])
        start += n
    return out


def parse_max_fail(spec: str | None) -> tuple[int | None, float | None]:
    """``"2"`` → ``(2, None)``; ``"10%"`` → ``(None, 10.0)``; None/"" → ``(None, None)``.

    :raises UsageError: not a count ≥ 0 or a share in [0, 100]%.
    """
    if spec in (None, ""):
        return None, None
    text = str(spec).strip()
    try:
        if text.endswith("%"):
            pct = float(text[:-1])
            if not 0 <= pct <= 100:
                raise ValueError
            return None, pct
        n = int(text)
        if n < 0:
            raise ValueError
        return n, None
    except ValueError:
        raise UsageError(f"--max-fail {text!r}: give a count ≥ 0 (e.g. 1) or a share (e.g. 10%)") from None


def exceeded(failed: int, tried: int, limit: tuple[int | None, float | None]) -> bool:
    """True when ``failed`` hosts out of ``tried`` is past the ``limit`` from :func:`parse_max_fail`."""
    count, pct = limit
    if count is not None:
        return failed > count
    if pct is not None and tried:
        return failed * 100.0 / tried > pct
    return False
