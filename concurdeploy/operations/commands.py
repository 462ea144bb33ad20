"""Ad-hoc host operations: run a command (``concurdeploy run``) and fetch a file
(``concurdeploy get``), each over one :class:`~concurdeploy.ssh.connection.Connection`."""

from __future__ import annotations

import errno
import os
import stat
import uuid
from dataclasses import dataclass, field

from concurdeploy.exceptions import DestinationError, HostUnreachable
from concurdeploy.operations.become import Become, privilege_for
from concurdeploy.operations.masking import mask, masked, secrets_of
from concurdeploy.operations.timing import phase
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
    secrets: tuple[str, ...] = field(default=(), repr=False)  # never in a repr (logs, errors)


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
        with phase(conn, "command"):
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


def _open_dirs(local_dir: str, parts: list[str]) -> int:
    """A directory fd of ``local_dir/parts[0]/…/parts[-1]``, each part created (0755) if missing
    and opened with ``O_NOFOLLOW``: a part that is a symlink (planted to lead elsewhere) or not
    a directory is refused. ``local_dir`` itself is the operator's choice and is followed.

    :raises DestinationError: a part is a symlink or not a directory, or cannot be created.
    """
    fd = os.open(local_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts:
            try:
                os.mkdir(part, 0o755, dir_fd=fd)
            except FileExistsError:
                pass
            try:
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise DestinationError(
                        f"local folder {os.path.join(local_dir, *parts[:parts.index(part) + 1])} is a "
                        f"symlink or not a folder: refused (get never writes through a symlink); "
                        f"remove it or choose another local folder") from None
                raise
            os.close(fd)
            fd = nxt
        return fd
    except BaseException:
        os.close(fd)
        raise


def get_file(conn: Connection, job: GetJob) -> HostResult:
    """Download one file over SFTP into ``local_dir/<host>/<remote path>``, safely:

    - no symlink is followed below ``local_dir``: the host folder, each intermediate folder
      (opened ``O_NOFOLLOW``) and the file itself (a symlink there is refused, nothing written);
    - the data goes to a temporary file beside the target, created ``O_EXCL|O_NOFOLLOW`` with
      mode 0600 (never readable by others, even briefly), set to the remote file's permission
      bits (``st_mode & 0o777``: a 0600 file stays 0600) and renamed over the target atomically.

    :returns: ``ok`` with ``data = {"local_path": str, "size": bytes, "mode": "0600"}``.
    :raises DestinationError: the remote file is missing or unreadable, or the local target is
        a symlink, a folder, or lies under a symlinked folder.
    :raises HostUnreachable: the transfer was interrupted.
    """
    host_dir = conn.spec.name.replace(os.sep, "_")
    if host_dir in (".", ".."):
        host_dir = f"_{host_dir}"
    rel = [p for p in os.path.normpath("/" + job.remote_path).split("/") if p not in ("", ".", "..")]
    if not rel:
        raise DestinationError(f"cannot download {job.remote_path}: not a file path")
    local = os.path.join(job.local_dir, host_dir, *rel)
    name, tmp = rel[-1], f"{rel[-1]}.concurdeploy-{uuid.uuid4().hex}"
    try:
        mode = conn.sftp.stat(job.remote_path).st_mode
        os.makedirs(job.local_dir, exist_ok=True)
        dfd = _open_dirs(job.local_dir, [host_dir, *rel[:-1]])
    except OSError as e:
        if isinstance(e, (ConnectionError, TimeoutError)):
            raise HostUnreachable(f"download of {job.remote_path} interrupted: {e}") from None
        raise DestinationError(f"cannot download {job.remote_path}: {e.strerror or e}") from None
    if mode is not None and stat.S_ISDIR(mode):
        os.close(dfd)
        raise DestinationError(f"cannot download {job.remote_path}: it is a folder on the host")
    perms = (mode & 0o777) if mode is not None else 0o600
    written = False
    try:
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise DestinationError(f"local target {local} is a symlink or not a regular file: refused "
                                   f"(get never writes through a symlink); remove it first")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=dfd)
        written = True
        with os.fdopen(fd, "wb") as fh, phase(conn, "download"):
            size = conn.sftp.getfo(job.remote_path, fh)
            fh.flush()
            os.fchmod(fh.fileno(), perms)
        os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        written = False
    except OSError as e:
        if isinstance(e, (ConnectionError, TimeoutError)):
            raise HostUnreachable(f"download of {job.remote_path} interrupted: {e}") from None
        raise DestinationError(f"cannot download {job.remote_path}: {e.strerror or e}") from None
    finally:
        if written:
            try:
                os.unlink(tmp, dir_fd=dfd)
            except OSError:
                pass
        os.close(dfd)
    return HostResult(conn.spec.name, Status.OK, warnings=tuple(conn.warnings),
                      data={"local_path": local, "size": size, "mode": f"{perms:04o}"})
