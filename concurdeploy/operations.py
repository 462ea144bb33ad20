"""What runs on one host over one :class:`~concurdeploy.connection.Connection`.

Each operation takes ``(conn, payload)`` and returns a :class:`HostResult`, or raises a
:class:`HostError` that the fan-out turns into one. The remote side needs a POSIX ``sh``
and coreutils (``sha256sum``, ``stat``, ``readlink``, ``mv``), as on every Linux host.

The push (:func:`push`), per host:

1. **facts** — one command reports, per destination, whether it exists, its resolved
   target (a symlink is followed: the file it points to is replaced, the link kept), its
   mode, owner, size and SHA-256;
2. **compare** — files whose SHA-256 (and mode, when one is declared) already match are
   left alone; nothing to do → ``ok``; check mode stops here and reports ``changed``;
3. **upload** each changed file over SFTP to a unique name beside its target,
   ``.<name>.concurdeploy-<uuid>.<suffix>`` (same directory, so same filesystem; suffix
   kept for validators; a dot-file so ``conf.d/*.conf`` globs skip it);
4. **prepare** — one command checks each upload's size and SHA-256 on the host (a full
   disk fails here), sets the mode (declared, else the replaced file's, else 0644) and the
   replaced file's owner where permitted, and runs ``validate`` from the destination's
   directory; any failure → every temporary file removed, destinations untouched;
5. **replace** each target atomically (:func:`replace_atomically`);
6. **reload** once, if anything changed (the handler).

Any error removes the temporary files that remain; a destination is only ever the old
file or the new one.
"""

from __future__ import annotations

import errno
import os
import posixpath
import shlex
import uuid
from dataclasses import dataclass

from .connection import Connection
from .exceptions import (DestinationError, HostUnreachable, ReloadFailed, RemoteCommandFailed,
                         RenameUnsupported, UploadCorrupted, ValidateFailed)
from .results import FileChange, HostResult, Status, tail
from .specs import FileSpec, PushJob

__all__ = ["DestFacts", "gather_facts", "push", "replace_atomically", "temp_name",
           "RunJob", "run_command", "GetJob", "get_file"]

CHUNK = 32768  # bytes per SFTP write request (OpenSSH's sftp-server limit is 256 KiB)
_FAIL = "@@concurdeploy-fail"
_WARN = "@@concurdeploy-warn"

_FACTS_FN = r"""cd_fact() {
  t=$1
  if [ -L "$t" ]; then t=$(readlink -f -- "$1") || t=$1; fi
  dir=${t%/*}; [ -n "$dir" ] || dir=/
  if [ ! -d "$dir" ]; then printf 'nodir\t%s\n' "$t"; return 0; fi
  if [ -d "$t" ]; then printf 'isdir\t%s\n' "$t"; return 0; fi
  if [ ! -e "$t" ]; then printf 'absent\t%s\n' "$t"; return 0; fi
  if [ ! -f "$t" ]; then printf 'notreg\t%s\n' "$t"; return 0; fi
  s=$(sha256sum < "$t") || { printf 'unreadable\t%s\n' "$t"; return 0; }
  printf 'file\t%s\t%s\t%s\n' "$(stat -c '%a:%u:%g:%s' -- "$t")" "${s%% *}" "$t"
}
"""


@dataclass(frozen=True)
class DestFacts:
    """What the host says about one destination.

    :param state: ``file`` | ``absent`` | ``nodir`` (parent directory missing) | ``isdir`` |
        ``notreg`` (device, fifo, …) | ``unreadable``.
    :param target: the path that will be replaced: ``dest``, or what it links to.
    :param mode: permission bits (``int``) of an existing file, else None.
    """

    dest: str
    state: str
    target: str
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    size: int | None = None
    sha256: str | None = None


def q(arg: str) -> str:
    """Quote one argument for the remote POSIX shell."""
    return shlex.quote(arg)


def gather_facts(conn: Connection, dests: list[str]) -> list[DestFacts]:
    """Ask the host about every destination in one command (one round trip).

    :raises RemoteCommandFailed: the facts command failed (no POSIX shell/coreutils?).
    """
    script = _FACTS_FN + "".join(f"cd_fact {q(d)}\n" for d in dests)
    res = conn.run(script)
    lines = [ln for ln in res.stdout.splitlines() if ln]
    if res.exited != 0 or len(lines) != len(dests):
        raise RemoteCommandFailed(
            "could not read the destinations' state (the host needs sh, sha256sum, stat, readlink)",
            output=tail(res.stdout + res.stderr, 2000), exit_status=res.exited)
    facts = []
    for dest, line in zip(dests, lines):
        parts = line.split("\t")
        if parts[0] == "file" and len(parts) == 4:
            mode, uid, gid, size = parts[1].split(":")
            facts.append(DestFacts(dest, "file", parts[3], int(mode, 8), int(uid), int(gid),
                                   int(size), parts[2]))
        else:
            facts.append(DestFacts(dest, parts[0], parts[-1]))
    return facts


def temp_name(target: str) -> str:
    """A unique temporary path beside ``target``: ``dir/.<stem>.concurdeploy-<uuid hex>[.<suffix>]``."""
    directory, base = posixpath.split(target)
    stem, dot, suffix = base.rpartition(".")
    if not stem:  # no suffix (or a dot-file such as .bashrc)
        stem, dot, suffix = base, "", ""
    return posixpath.join(directory, f".{stem.lstrip('.')}.concurdeploy-{uuid.uuid4().hex}{dot}{suffix}")


def replace_atomically(conn: Connection, tmp: str, dest: str) -> str:
    """Rename ``tmp`` over ``dest`` in one step (``rename(2)``): readers see old or new, never a mix.

    ``tmp`` must sit in ``dest``'s directory (same filesystem). Uses OpenSSH's
    ``posix-rename@openssh.com`` SFTP extension (paramiko ``posix_rename``): plain SFTP
    ``rename`` refuses an existing target. Where the server lacks the extension (e.g.
    mock-ssh-server, some appliances) it falls back to ``mv -f`` over the same connection,
    which is the same ``rename(2)`` on the same filesystem. It never deletes ``dest`` first.

    :returns: ``"posix-rename"`` or ``"mv"``: which way was used.
    :raises DestinationError: the target is busy (EBUSY: a bind mount) or not writable.
    :raises RenameUnsupported: neither way is available; ``dest`` untouched.
    """
    try:
        conn.sftp.posix_rename(tmp, dest)
        return "posix-rename"
    except OSError as e:
        if getattr(e, "errno", None) in (errno.EACCES, errno.ENOENT):
            raise DestinationError(f"cannot rename into {dest}: {os.strerror(e.errno)}") from None
    res = conn.run(f"mv -f -- {q(tmp)} {q(dest)}")
    if res.exited == 0:
        return "mv"
    text = (res.stdout + res.stderr).strip()
    if "busy" in text.lower():
        raise DestinationError(
            f"{dest} cannot be replaced by a rename: it is busy (a bind mount, e.g. a file "
            f"mounted into a container). The atomic replace cannot work there", output=text)
    if res.exited == 127:
        raise RenameUnsupported(f"{dest}: the server offers neither posix-rename nor mv; "
                                f"destination left untouched", output=text)
    raise DestinationError(f"cannot rename into {dest}", output=text)


def _check_dest(f: FileSpec, fact: DestFacts) -> None:
    if fact.state == "nodir" and not f.create_dirs:
        raise DestinationError(
            f"{f.dest}: directory {posixpath.dirname(fact.target)} does not exist on the host; "
            f"create it, or add 'create_dirs: true' to this file's entry")
    if fact.state == "isdir":
        raise DestinationError(f"{f.dest}: is a directory on the host; dest must name a file")
    if fact.state == "notreg":
        raise DestinationError(f"{f.dest}: exists but is not a regular file; refusing to replace it")
    if fact.state == "unreadable":
        raise DestinationError(f"{f.dest}: cannot be read by the connecting user (checksum needed)")


def _upload(conn: Connection, f: FileSpec, tmp: str) -> None:
    try:
        with conn.sftp.open(tmp, "wb") as fh:
            fh.set_pipelined(True)
            if f.content is not None:
                for i in range(0, len(f.content), CHUNK):
                    fh.write(f.content[i:i + CHUNK])
            else:
                with open(f.src, "rb") as src:
                    for chunk in iter(lambda: src.read(CHUNK), b""):
                        fh.write(chunk)
    except OSError as e:
        if isinstance(e, (ConnectionError, TimeoutError)) or getattr(e, "errno", None) is None \
                and not str(e):
            raise HostUnreachable(f"upload of {f.dest} interrupted: {e}") from None
        raise UploadCorrupted(f"upload of {f.dest} to {tmp} failed: {e.strerror or e}") from None


def _prepare_script(items: list[tuple[FileSpec, DestFacts, str]]) -> str:
    lines = ["set -u"]
    for i, (f, fact, tmp) in enumerate(items):
        fail = f"{{ echo '{_FAIL} {i}'"
        mode = f.mode if f.mode is not None else (fact.mode if fact.mode is not None else 0o644)
        lines += [
            f"s=$(stat -c %s -- {q(tmp)}) || {fail} upload; exit 1; }}",
            f"[ \"$s\" = {f.size} ] || {fail} size $s; exit 1; }}",
            f"h=$(sha256sum < {q(tmp)}) || {fail} checksum; exit 1; }}",
            f"[ \"${{h%% *}}\" = {f.sha256} ] || {fail} checksum; exit 1; }}",
            f"chmod {mode:04o} -- {q(tmp)} || {fail} chmod; exit 1; }}",
        ]
        if fact.uid is not None:
            lines.append(f"chown {fact.uid}:{fact.gid} -- {q(tmp)} 2>/dev/null "
                         f"|| echo '{_WARN} {i} owner'")
        if f.validate:
            cmd = f.validate.replace("{tmp}", q(tmp))
            lines.append(f"(cd {q(posixpath.dirname(fact.target) or '/')} && {cmd}) "
                         f"|| {fail} validate $?; exit 1; }}")
    return "\n".join(lines) + "\n"


def _raise_prepare_failure(res, items) -> None:
    marker = next((ln for ln in reversed(res.stdout.splitlines()) if ln.startswith(_FAIL)), None)
    output = "\n".join(ln for ln in (res.stdout + res.stderr).splitlines()
                       if not ln.startswith((_FAIL, _WARN)))
    if marker is None:
        raise RemoteCommandFailed("preparing the uploaded files failed", output=tail(output),
                                  exit_status=res.exited)
    _, index, step, *rest = marker.split()
    f, fact, tmp = items[int(index)]
    if step == "validate":
        code = int(rest[0]) if rest and rest[0].isdigit() else None
        raise ValidateFailed(f"validate failed for {f.dest} (exit {code}): {f.validate}; "
                             f"destination left unchanged", output=tail(output), exit_status=code)
    if step in ("upload", "size", "checksum"):
        raise UploadCorrupted(f"{f.dest}: the uploaded copy differs from {f.src} "
                              f"({step} mismatch; disk full?); destination left unchanged",
                              output=tail(output))
    raise DestinationError(f"{f.dest}: cannot set mode on the uploaded file", output=tail(output))


def push(conn: Connection, job: PushJob) -> HostResult:
    """Push ``job.files`` to the host, atomically per file, then reload once if any changed.

    :returns: ``ok`` (nothing to do), or ``changed`` with a :class:`FileChange` per file
        replaced (in check mode: that would be).
    :raises DestinationError, UploadCorrupted, ValidateFailed, ReloadFailed, HostUnreachable:
    """
    facts = gather_facts(conn, [f.dest for f in job.files])
    todo, changes, warnings = [], [], list(conn.warnings)
    for f, fact in zip(job.files, facts):
        _check_dest(f, fact)
        if fact.state == "file" and fact.sha256 == f.sha256 and (f.mode is None or f.mode == fact.mode):
            continue
        todo.append((f, fact))
        changes.append(FileChange(f.dest, fact.sha256, f.sha256, f.size))
    if not todo:
        return HostResult(conn.spec.name, Status.OK, warnings=tuple(warnings))
    if job.check:
        return HostResult(conn.spec.name, Status.CHANGED, changes=tuple(changes),
                          warnings=tuple(warnings), data={"check": True})
    items: list[tuple[FileSpec, DestFacts, str]] = []
    try:
        missing_dirs = sorted({posixpath.dirname(fact.target) for f, fact in todo if fact.state == "nodir"})
        if missing_dirs:
            res = conn.run("mkdir -p -- " + " ".join(q(d) for d in missing_dirs))
            if res.exited != 0:
                raise DestinationError(f"cannot create {', '.join(missing_dirs)}",
                                       output=tail(res.stdout + res.stderr))
        for f, fact in todo:
            tmp = temp_name(fact.target)
            items.append((f, fact, tmp))
            _upload(conn, f, tmp)
        res = conn.run(_prepare_script(items))
        if res.exited != 0:
            _raise_prepare_failure(res, items)
        for ln in res.stdout.splitlines():
            if ln.startswith(_WARN):
                f = items[int(ln.split()[1])][0]
                warnings.append(f"{f.dest}: owner of the replaced file not kept "
                                f"(the connecting user may not chown)")
        while items:
            f, fact, tmp = items[0]
            replace_atomically(conn, tmp, fact.target)
            items.pop(0)
    finally:
        _remove_quietly(conn, [tmp for _, _, tmp in items])
    reloaded = False
    if job.reload:
        res = conn.run(job.reload)
        if res.exited != 0:
            raise ReloadFailed(f"reload failed (exit {res.exited}): {job.reload}; "
                               f"the new files are in place", output=tail(res.stdout + res.stderr),
                               exit_status=res.exited)
        reloaded = True
    return HostResult(conn.spec.name, Status.CHANGED, changes=tuple(changes), reloaded=reloaded,
                      warnings=tuple(warnings))


def _remove_quietly(conn: Connection, paths: list[str]) -> None:
    """Remove leftover temporary files; a dead connection cannot, and that is reported by the caller."""
    if not paths or conn.transport is None or not conn.transport.is_active():
        return
    try:
        conn.run("rm -f -- " + " ".join(q(p) for p in paths), timeout=conn.spec.connect_timeout)
    except Exception:
        pass


@dataclass(frozen=True)
class RunJob:
    """An ad-hoc command. :param timeout: seconds, None = the host's ``command_timeout``."""

    command: str
    timeout: float | None = None


def run_command(conn: Connection, job: RunJob) -> HostResult:
    """Run ``job.command`` on the host; exit 0 → ``ok``, else ``failed`` with the exit status.

    The result's ``output`` holds the tail of stdout followed by stderr; ``data`` holds
    ``{"stdout": …, "stderr": …}`` tails separately.
    """
    res = conn.run(job.command, timeout=job.timeout)
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
    local = os.path.join(job.local_dir, conn.spec.name, job.remote_path.lstrip("/"))
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
