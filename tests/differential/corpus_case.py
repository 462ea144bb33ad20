"""One case of the inventory corpus (:class:`Case`, :class:`Refusal`) and writing it to disk.

A :class:`Case` is a small tree of files (relative path → text) and the path given to ``-i``
(``entry``, relative to the case's root; ``"."`` = the folder itself). Cases are pure data;
:func:`materialise` writes one under a directory.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Case", "Refusal", "line_of", "materialise"]


@dataclass(frozen=True)
class Refusal:
    """concurdeploy must exit 2 naming ``file`` (relative to the case root) and one of ``lines``
    as ``file:line`` (``lines=()``: the refusal is about a whole file or folder; its path is enough)."""

    file: str
    lines: tuple[int, ...]
    why: str


@dataclass(frozen=True)
class Case:
    """One inventory of the corpus.

    :param name: unique id, used as the folder name and the test id.
    :param files: relative path → file text (UTF-8).
    :param entry: the path given to ``-i``, relative to the case root (``"."``: the folder).
    :param executable: files to ``chmod 0755`` (inventory scripts).
    :param refuse: set when concurdeploy refuses the case on purpose.
    :param about: one line: what the case exercises.
    :param source: a folder to copy instead of ``files`` (hand-written cases).
    """

    name: str
    files: dict = field(default_factory=dict)
    entry: str = "."
    executable: frozenset = frozenset()
    refuse: Refusal | None = None
    about: str = ""
    source: Path | None = None


def line_of(text: str, needle: str) -> int:
    """1-based number of the first line of ``text`` containing ``needle`` (ValueError if none)."""
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return number
    raise ValueError(f"{needle!r} not in text")


def materialise(case: Case, root: Path) -> Path:
    """Write ``case`` under ``root/case.name``; return the path to give to ``-i``."""
    base = root / case.name
    if case.source is not None:
        shutil.copytree(case.source, base)
    else:
        for rel, text in case.files.items():
            path = base / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    base.mkdir(parents=True, exist_ok=True)
    for rel in case.executable:
        os.chmod(base / rel, 0o755)
    return base if case.entry == "." else base / case.entry
