"""Input files are read with a size limit (issue #14.4).

Every file the operator names or the project holds — inventories (YAML, INI, JSON),
``group_vars``/``host_vars`` files, ``--limit @file`` pattern files, the JSON report given to
``--retry-failed``, ``concurdeploy.yaml`` — is read through :func:`read_bounded`: at most
:data:`MAX_INPUT_BYTES` bytes are read, so ``--limit @/dev/zero`` or a runaway generated
inventory is refused at once with a clear error instead of filling memory.

The error is an ``OSError`` (:class:`InputTooLarge`), so every reader's existing "cannot
read FILE" handling turns it into its usual one-paragraph usage error (exit 2).
"""

from __future__ import annotations

import errno
import os

__all__ = ["MAX_INPUT_BYTES", "InputTooLarge", "read_bounded", "read_bounded_text"]

#: Largest input file read, in bytes (16 MiB): far above any real inventory or report
#: (a 10 000-host inventory is ≈1 MiB), far below what would hurt the controller.
MAX_INPUT_BYTES = 16 * 1024 * 1024

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
