"""Ad-hoc host operations: run a command (``concurdeploy run``) and fetch a file
(``concurdeploy get``), each over one :class:`~concurdeploy.ssh.connection.Connection`."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

from concurdeploy.exceptions import DestinationError, HostUnreachable
from concurdeploy.operations.become import Become, privilege_for
from concurdeploy.operations.masking import mask, masked, secrets_of
from concurdeploy.records import HostResult, Status, tail
from concurdeploy.ssh.connection import Connection

__all__ = ["RunJob", "run_command", "GetJob", "get_file"]


@dataclass(frozen=True)
class RunJob:
    """An ad-hoc command.

    :param timeout: seconds, None = the host's ``command_timeout``.
    :param become: run it through sudo (``--sudo``), or None.
    :param stream: send output to the controller as it comes (``conn.emit``), not only at the end.
    :param secrets: values to mask as ``********`` in the output (the host's ``secret_vars``).
    """

    command: str
    timeout: float | None = None
    become: Become | None = None
    stream: bool = False
    secrets: tuple[str, ...] = ()


class _MaskedEmit:
    """Streams output on to ``emit`` whole lines at a time, secrets masked (a secret split
    across two chunks is still caught); :meth:`flush` sends what is left."""

    LIMIT = 65536  # bytes held at most without a newline

    def __init__(self, emit, secrets: tuple[str, ...]):
        self.emit, self.secrets, self.partial = emit, secrets, {}

    def __call__(self, stream: str, data: bytes) -> None:
        buf = self.partial.pop(stream, b"") + data
        head, sep, rest = buf.rpartition(b"\n")
        if len(rest) > self.LIMIT:
            head, sep, rest = buf, b"", b""
        if rest:
            self.partial[stream] = rest
        if head or sep:
            self._send(stream, head + sep)

    def _send(self, stream: str, data: bytes) -> None:
        self.emit(stream, mask(data.decode("utf-8", "replace"), self.secrets).encode("utf-8"))

    def flush(self) -> None:
        for stream in list(self.partial):
            self._send(stream, self.partial.pop(stream))


def run_command(conn: Connection, job: RunJob) -> HostResult:
    """Run ``job.command`` on the host; exit 0 → ``ok``, else ``failed`` with the exit status.

    The result's ``output`` holds the tail of stdout followed by stderr; ``data`` holds
    ``{"stdout": …, "stderr": …}`` tails separately. Secret values (``job.secrets``, the
    connection's password/passphrase, the sudo password) are masked in all of it, streamed
    output included.
    """
    return masked(_run_command, conn, job)


def _run_command(conn: Connection, job: RunJob) -> HostResult:
    emit = getattr(conn, "emit", None) if job.stream else None
    if emit is not None:
        secrets = secrets_of(conn, job)
        emit = _MaskedEmit(emit, secrets) if secrets else emit
    privilege = privilege_for(job.become)
    try:
        res = privilege.run(conn, job.command, timeout=job.timeout, on_output=emit)
    finally:
        if isinstance(emit, _MaskedEmit):
            emit.flush()
    status = Status.OK if res.exited == 0 else Status.FAILED
    output = res.stdout + res.stderr
    return HostResult(conn.spec.name, status, output=tail(output), exit_status=res.exited,
                      error=None if status is Status.OK else f"command exited {res.exited}",
                      error_kind=None if status is Status.OK else "RemoteCommandFailed",
                      warnings=tuple(conn.warnings),
                      data={"stdout": tail(res.stdout), "stderr": tail(res.stderr)})


@dataclass(frozen=True)
class GetJob:
    """Download ``remote_path`` into ``local_dir/<host>/<remote_path without leading />``."""

    remote_path: str
    local_dir: str


def get_file(conn: Connection, job: GetJob) -> HostResult:
    """Download one file over SFTP to a temporary local name, then rename it into place.

    :raises DestinationError: the remote file is missing or unreadable.
    """
    host_dir = conn.spec.name.replace(os.sep, "_")
    if host_dir in (".", ".."):
        host_dir = f"_{host_dir}"
    local = os.path.join(job.local_dir, host_dir, os.path.normpath("/" + job.remote_path).lstrip("/"))
    os.makedirs(os.path.dirname(local), exist_ok=True)
    tmp = f"{local}.concurdeploy-{uuid.uuid4().hex}"
    try:
        conn.sftp.get(job.remote_path, tmp)
        os.replace(tmp, local)
    except OSError as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, (ConnectionError, TimeoutError)):
            raise HostUnreachable(f"download of {job.remote_path} interrupted: {e}") from None
        raise DestinationError(f"cannot download {job.remote_path}: {e.strerror or e}") from None
    return HostResult(conn.spec.name, Status.OK, warnings=tuple(conn.warnings),
                      data={"local_path": local, "size": os.path.getsize(local)})
