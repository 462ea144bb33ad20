"""Remote output past the in-memory cap, written to a file rather than dropped (issue #14.4).

Of each stream of each remote command, the worker keeps the last
:data:`~concurdeploy.ssh.remote.KEEP_BYTES` in memory (:class:`~concurdeploy.ssh.remote.Demux`).
The bytes before those go, in order, to one file per host and stream in the run's output folder
(``ConnectSpec.output_dir``, set by the fan-out: ``<project>/.concurdeploy-output/<run>/``):
``<host>-stdout.out`` (``<host>-stdout-2.out``, … for a later command of the same run), created
new (``O_EXCL``, never through a symlink) with mode 0600 in a 0700 folder, and only when a
command's output does pass the cap. The file and the kept end together are the stream's output,
byte for byte; secret values (:attr:`Spill.secrets`) are masked as ``********`` in the file as
everywhere else. When the file cannot be written (read-only folder, disk full) the bytes are
dropped and counted, as before, and the reason is given.
"""

from __future__ import annotations

import os
import re

from concurdeploy.secretset import mask

__all__ = ["MAX_SPILL_BYTES", "OUTPUT_FOLDER", "Spill", "notes", "settle", "spill_for"]

#: The folder, under the project, holding one folder per run whose output passed the cap.
OUTPUT_FOLDER = ".concurdeploy-output"

#: Bytes written to one output file at most (a command printing without end must not fill the
#: controller's disk): past it the bytes are counted, not kept (:attr:`Spill.full`).
MAX_SPILL_BYTES = 256 << 20

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_MAX_FILES = 1000  # files per host and stream in one run (each a command over the cap)


class Spill:
    """The file receiving one stream's output past the cap: opened at the first :meth:`write`.

    :param folder: the run's output folder (created 0700 when first needed).
    :param host: the inventory name (characters other than letters, digits, ``._-`` become ``_``).
    :param stream: ``"stdout"`` or ``"stderr"``.
    :param secrets: values masked in what is written (a secret split between two writes is
        still caught: a partial last line is held back, up to :data:`LINE_LIMIT` bytes).

    After :meth:`close`: ``path`` (None: nothing was written), ``error`` (why the bytes could
    not be written, or None), ``written`` (bytes received), ``full`` (the file reached
    :data:`MAX_SPILL_BYTES`: what came after is not in it).
    """

    LINE_LIMIT = 65536

    def __init__(self, folder: str, host: str, stream: str, secrets: tuple[str, ...] = ()):
        self.folder, self.stream = folder, stream
        self.host = _UNSAFE.sub("_", host) or "host"
        self.secrets = tuple(s for s in secrets if s)
        self.path: str | None = None
        self.error: str | None = None
        self.written = 0
        self.stored = 0
        self.full = False
        self._fd: int | None = None
        self._partial = b""

    def write(self, data: bytes) -> None:
        """Append ``data`` (the next bytes of the stream that are not kept in memory)."""
        if not data:
            return
        self.written += len(data)
        if self.error is not None:
            return
        if self.secrets:  # whole lines only, so that a secret is never cut in two
            data = self._partial + data
            head, sep, rest = data.rpartition(b"\n")
            if len(rest) > self.LINE_LIMIT:
                head, sep, rest = data, b"", b""
            self._partial = rest
            data = head + sep
        self._put(data)

    def close(self) -> None:
        """Write what is held back and close the file (idempotent)."""
        if self._partial:
            data, self._partial = self._partial, b""
            self._put(data)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _put(self, data: bytes) -> None:
        if not data or self.error is not None:
            return
        if self.secrets:
            data = mask(data.decode("utf-8", "surrogateescape"), self.secrets).encode("utf-8", "surrogateescape")
        if self.stored + len(data) > MAX_SPILL_BYTES:
            self.full = True
            data = data[:max(0, MAX_SPILL_BYTES - self.stored)]
            if not data:
                return
        self.stored += len(data)
        try:
            if self._fd is None:
                self._fd = self._create()
            view = memoryview(data)
            while view:  # bounded: each write takes ≥ 1 byte or raises
                view = view[os.write(self._fd, view):]
        except OSError as e:
            self.error = f"could not write them to {self.path or self.folder}: {e.strerror or e}"
            self.close()

    def _create(self) -> int:
        os.makedirs(self.folder, mode=0o700, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        for n in range(1, _MAX_FILES + 1):
            name = f"{self.host}-{self.stream}{'' if n == 1 else f'-{n}'}.out"
            path = os.path.join(self.folder, name)
            try:
                fd = os.open(path, flags, 0o600)
            except FileExistsError:
                continue
            self.path = path
            return fd
        raise OSError(f"{_MAX_FILES} output files for {self.host} already")


def spill_for(spec, stream: str, secrets: tuple[str, ...] = ()) -> Spill | None:
    """Where ``stream``'s output past the cap goes for the host of ``spec`` (a
    :class:`~concurdeploy.ssh.specs.ConnectSpec`): a :class:`Spill` in its ``output_dir``, or
    None (no folder: the bytes are counted, not kept)."""
    folder = getattr(spec, "output_dir", None)
    return Spill(folder, spec.name, stream, secrets) if folder else None


def settle(streams, spilled: list) -> None:
    """A command is over: settle each :class:`~concurdeploy.ssh.remote.Demux` in ``streams``
    (its spill file closed) and append ``(stream, bytes, path)`` to ``spilled`` for each file
    written."""
    for d in streams:
        d.settle()
        if d.spill is not None and d.spill.path:
            spilled.append((d.spill.stream, d.spill.written, d.spill.path))


def notes(spilled) -> tuple[str, ...]:
    """One warning per output file written: ``N bytes of stdout past the 1 MiB kept are in PATH``.

    :param spilled: ``(stream, bytes, path)`` items (``Connection.spilled``).
    """
    from concurdeploy.ssh.remote import KEEP_BYTES

    return tuple(f"{n} bytes of {stream} before the last {KEEP_BYTES // (1 << 20)} MiB kept of a command's "
                 f"output are in {path}" for stream, n, path in spilled)
