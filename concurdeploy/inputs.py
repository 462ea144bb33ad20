"""Input files are read with a size limit (issue #14.4).

Every file the operator names or the project holds — inventories (YAML, INI, JSON),
``group_vars``/``host_vars`` files, ``--limit @file`` pattern files, the JSON report given to
``--retry-failed``, ``concurdeploy.yaml`` — is read through :func:`read_bounded`: at most
:data:`MAX_INPUT_BYTES` bytes are read, so ``--limit @/dev/zero`` or a runaway generated
inventory is refused at once with a clear error instead of filling memory.

The error is an ``OSError`` (:class:`InputTooLarge`), so every reader's existing "cannot
read FILE" handling turns it into its usual one-paragraph usage error (exit 2).

A small YAML file can still stand for a huge document: an alias (``*name``) repeats a whole
anchored value, so ten lines of ten aliases each make 10^9 values in 1.4 KB (an "alias bomb"),
which every later walk over the vars would take hours on. Every YAML input is therefore
checked, before it is turned into Python values, by :func:`check_alias_expansion`: the values
that aliases add beyond those written must stay under :data:`MAX_ALIAS_EXPANSION`
(:func:`safe_load` does the check for plain ``yaml.safe_load`` readers).
"""

from __future__ import annotations

import errno
import os

__all__ = ["MAX_ALIAS_EXPANSION", "MAX_INPUT_BYTES", "AliasBomb", "InputTooLarge", "check_alias_expansion",
           "read_bounded", "read_bounded_text", "safe_load"]

#: Largest input file read, in bytes (16 MiB): far above any real inventory or report
#: (a 10 000-host inventory is ≈1 MiB), far below what would hurt the controller.
MAX_INPUT_BYTES = 16 * 1024 * 1024

#: Most YAML values that aliases may add to a document beyond those written in the file
#: (an alias counts as everything it repeats). Real files use a few aliases for a few
#: shared lists; a million repeated values is far above them and far below a hang.
MAX_ALIAS_EXPANSION = 1_000_000

_CHUNK = 1 << 20


class InputTooLarge(OSError):
    """An input file is larger than :data:`MAX_INPUT_BYTES` (or an endless device/pipe).

    ``str()`` and ``strerror`` are one sentence naming the file and the limit.
    """

    def __init__(self, path: str, limit: int):
        sentence = (f"{path} is larger than {limit // (1024 * 1024)} MiB, the limit for an input "
                    f"file (concurdeploy.inputs.MAX_INPUT_BYTES): is it the right file? "
                    f"(a device such as /dev/zero or an endless pipe never ends)")
        super().__init__(errno.EFBIG, sentence)
        self.filename, self.limit = path, limit

    def __str__(self) -> str:
        return self.strerror

    def __reduce__(self):
        return (type(self), (self.filename, self.limit))


def read_bounded(path, limit: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of ``path``, read in 1 MiB chunks, at most ``limit`` of them.

    :param path: ``str`` or path-like; a regular file, a device or a FIFO.
    :raises InputTooLarge: more than ``limit`` bytes (found after reading ``limit + 1``).
    :raises OSError: the file cannot be opened or read.
    """
    name = os.fspath(path)
    parts, total = [], 0
    with open(name, "rb") as stream:
        while total <= limit:  # bounded: each turn reads ≥ 1 byte or ends
            chunk = stream.read(min(_CHUNK, limit + 1 - total))
            if not chunk:
                return b"".join(parts)
            parts.append(chunk)
            total += len(chunk)
    raise InputTooLarge(str(name), limit)


def read_bounded_text(path, limit: int = MAX_INPUT_BYTES, errors: str = "strict") -> str:
    """:func:`read_bounded` decoded as UTF-8 (``errors`` as for ``bytes.decode``).

    :raises InputTooLarge, OSError: as :func:`read_bounded`; ``UnicodeDecodeError``: not UTF-8.
    """
    return read_bounded(path, limit).decode("utf-8", errors)


class AliasBomb(ValueError):
    """A YAML document whose aliases expand to more than :data:`MAX_ALIAS_EXPANSION` values
    beyond those written.

    :param line: 1-based line of the smallest value that is over the limit by itself (the
        place to look), or None. ``str()``: one sentence, without the file name (the reader
        adds it).
    """

    def __init__(self, total: int, written: int, line: int | None, limit: int):
        self.total, self.written, self.line, self.limit = total, written, line, limit
        size = f"{total:,}" if total < 10**15 else f"about 10^{len(str(total)) - 1}"
        super().__init__(f"YAML aliases (*name) expand this document to {size} values from "
                         f"{written:,} written, over the limit of {limit:,} values added by "
                         f"aliases (concurdeploy.inputs.MAX_ALIAS_EXPANSION): an alias bomb? "
                         f"Write the values out, or repeat fewer of them through aliases")

    def __reduce__(self):
        return (type(self), (self.total, self.written, self.line, self.limit))


def _children(node) -> list:
    if node.id == "mapping":
        return [n for pair in node.value for n in pair]
    if node.id == "sequence":
        return list(node.value)
    return []


def check_alias_expansion(root, limit: int = MAX_ALIAS_EXPANSION) -> None:
    """Refuse a composed YAML document (``yaml.compose``'s node graph, where an alias is the
    anchored node itself, shared) whose aliases would expand it by more than ``limit`` values.

    Each distinct node is visited once (sizes memoised), so the check is linear in the file
    however large the expansion; a recursive alias (a value containing itself) counts once.

    :param root: a ``yaml.Node`` or None (an empty document).
    :raises AliasBomb: the expanded size minus the distinct nodes is over ``limit``.
    """
    if root is None:
        return
    size: dict[int, int] = {}
    first_over = None
    stack = [(root, False)]
    on_path: set[int] = set()
    while stack:  # bounded: each distinct node is expanded once, so pushes <= edges + 1
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            total = 1 + sum(size.get(id(c), 1) for c in _children(node))
            size[key] = total
            if first_over is None and total > limit:
                first_over = node
            continue
        if key in size or key in on_path:
            continue
        on_path.add(key)
        stack.append((node, True))
        for c in _children(node):
            if c.id == "scalar":
                size[id(c)] = 1
            elif id(c) not in size and id(c) not in on_path:
                stack.append((c, False))
    total, written = size[id(root)], len(size)
    if total - written > limit:
        mark = getattr(first_over, "start_mark", None)
        raise AliasBomb(total, written, mark.line + 1 if mark is not None else None, limit)


def safe_load(text: str):
    """``yaml.safe_load(text)`` with :func:`check_alias_expansion` between composing and
    constructing. :raises yaml.YAMLError: malformed; :raises AliasBomb: too many aliased values."""
    import yaml  # only the YAML readers need it

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        check_alias_expansion(node)
        return None if node is None else loader.construct_document(node)
    finally:
        loader.dispose()
