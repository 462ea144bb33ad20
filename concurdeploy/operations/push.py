"""The push: one service's files to one host over one
:class:`~concurdeploy.ssh.connection.Connection`, then its reload once.

:func:`push` takes ``(conn, job)`` and returns a :class:`HostResult`, or raises a
:class:`HostError` that the fan-out turns into one. The remote side needs a POSIX ``sh``
and coreutils (``sha256sum``, ``stat``, ``readlink``, ``mv``), as on every Linux host.

Per host, the steps and where each lives:

1. **lock and facts** (:mod:`~concurdeploy.operations.facts`) — one held command resolves
   each destination to the real directory written and takes an exclusive ``flock`` on each
   one, once (waiting at most ``lock_timeout``
   seconds; held until the push ends, so two runs never interleave on a host) and reports
   each destination's state, and whether a reload is still owed;
2. **compare** — files whose SHA-256 (and mode, when one is declared) already match are
   left alone; nothing to do → ``ok``; check mode stops here and reports ``changed``;
3. **upload** each changed file over SFTP to its temporary name beside its target;
4. **prepare, replace, roll back, prune** — the atomic replace
   (:mod:`~concurdeploy.operations.replace`);
5. **reload** once, if anything changed, then the optional ``healthcheck``
   (:mod:`~concurdeploy.operations.handler`); if either fails, the backups are restored and
   the reload runs again (``rolled back``).

Any error removes the temporary files that remain; a destination is only ever the old
file or the new one. Who runs the remote steps (the login user, or root through sudo) is
the job's :class:`~concurdeploy.operations.become.Privilege`, chosen once here.

The names :func:`replace_atomically`, :func:`temp_name`, :func:`gather_facts`,
:class:`DestFacts` and :func:`mask` are re-exported from their modules.
"""

from __future__ import annotations

import errno
import posixpath
import uuid

from concurdeploy.exceptions import (
    CommandTimeout,
    DestinationError,
    HostError,
    HostUnreachable,
    LockBusy,
    ReloadFailed,
    RemoteCommandFailed,
    UploadCorrupted,
)
from concurdeploy.operations.become import Privilege, privilege_for
from concurdeploy.operations.facts import DestFacts, gather_facts, lock_and_facts_script, owner_of, parse_facts
from concurdeploy.operations.handler import marker_path, reload_and_check
from concurdeploy.operations.jobs import FileSpec, PushJob
from concurdeploy.operations.masking import mask, masked
from concurdeploy.operations.paths import dest_problem
from concurdeploy.operations.timing import phase
from concurdeploy.operations.replace import (
    install,
    prepare_failure,
    prepare_script,
    prune_backups,
    replace_atomically,
    rollback,
    temp_name,
)
from concurdeploy.operations.shell import BACKUP, BUSY, READY, q
from concurdeploy.records import FileChange, HostResult, Status, tail
from concurdeploy.ssh.connection import Connection

__all__ = [
    "DestFacts",
    "gather_facts",
    "mask",
    "push",
    "replace_atomically",
    "temp_name",
]

#: Bytes per SFTP write request: 32 KiB less the SFTP write header, so that each request
#: fits one 32 KiB SSH channel packet instead of spilling into a second (bench/: 100 MB
#: to one host 1.09 → 0.83 s).
CHUNK = 32768 - 29
DIFF_LIMIT = 1 << 20  # bytes: larger files are not diffed
PROGRESS_MIN = 4 << 20  # bytes: a larger upload reports its progress (``conn.emit("progress", …)``)
PROGRESS_STEP = 1 << 20  # bytes between two progress reports


def push(conn: Connection, job: PushJob) -> HostResult:
    """Push ``job.files`` to the host, atomically per file, then reload once if any changed.

    Steps (see the module docstring): lock the destination directories and read facts
    (one held command) → compare → upload → verify/validate/back up (one command) →
    replace → reload (+ healthcheck) → on reload failure, restore the backups and reload
    again (``rolled back``) → prune old backups → unlock.

    A reload owed by an earlier run that changed files but did not reload (failure,
    interrupt) is remembered on the host (a marker beside the first destination) and
    run now even when nothing changed. Secret values are masked in the result and errors
    (:func:`~concurdeploy.operations.masking.masked`).

    :returns: ``ok`` (nothing to do), or ``changed`` with a :class:`FileChange` per file
        replaced (in check mode: that would be).
    :raises LockBusy, DestinationError, UploadCorrupted, ValidateFailed, ReloadFailed,
        RollbackFailed, Interrupted, HostUnreachable, AuthFailed (sudo refused):
    """
    return masked(_push, conn, job)


def _push(conn: Connection, job: PushJob) -> HostResult:
    privilege = privilege_for(job.become)
    marker = marker_path(job)
    dests = [f.dest for f in job.files]
    wait = job.lock_timeout + conn.spec.command_timeout
    if not job.check:
        conn.prefetch_sftp()  # its round trips overlap the lock-and-facts command
    try:
        with phase(conn, "compare"):  # lock the destinations, read what is there
            held, text = privilege.hold(conn, lock_and_facts_script(job, marker), READY, timeout=wait)
    except RemoteCommandFailed as e:
        busy = next((ln for ln in e.output.splitlines() if ln.startswith(BUSY)), None)
        if busy:
            raise LockBusy(f"{busy.split(' ', 1)[1]} is locked by another concurdeploy run "
                           f"(waited {job.lock_timeout:g} s, lock_timeout); try again when it "
                           f"has finished") from None
        raise
    privilege.owner = owner_of(text) or held.pid  # named in this run's temporary files: see temp_name
    try:
        return _push_locked(conn, privilege, job, marker, *parse_facts(dests, text))
    finally:
        held.release()


def _check_dest(f: FileSpec, fact: DestFacts) -> None:
    """:raises DestinationError: the destination cannot be replaced by a file."""
    if fact.state == "nodir" and not f.create_dirs:
        raise DestinationError(
            f"{f.dest}: directory {posixpath.dirname(fact.target)} does not exist on the host; "
            f"create it, or add 'create_dirs: true' to this file's entry")
    if fact.state == "isdir":
        raise DestinationError(f"{f.dest}: is a directory on the host; dest must name a file")
    if fact.state == "notreg":
        raise DestinationError(f"{f.dest}: exists but is not a regular file; refusing to replace it")
    if fact.state == "dangling":
        raise DestinationError(f"{f.dest}: is a symlink whose target does not exist, and 'follow: true' "
                               f"writes the file a link points to; fix the link, or remove 'follow' "
                               f"to replace the link itself by the file")
    if fact.state == "badpath":
        raise DestinationError(f"{f.dest}: its real path on the host (through a symlinked folder or link) "
                               f"contains a line break; refusing to write it")
    problem = dest_problem(fact.target) if fact.target != f.dest else None
    if problem:
        raise DestinationError(f"{f.dest}: is written at {fact.target!r} on the host (through a symlinked "
                               f"folder or link), and that path is refused: {problem}")
    if fact.state == "linkdir":
        raise DestinationError(f"{f.dest}: is a symlink to a directory; dest must name a file "
                               f"(refusing to replace the link)")
    if fact.mount and f.replace != "in-place":
        raise DestinationError(f"{f.dest}: {fact.target} is a mount point (a file bind-mounted, e.g. "
                               f"into a container): a rename cannot replace it, and whoever sees the "
                               f"mount would keep the old file. Set 'replace: in-place' on this file "
                               f"to rewrite its content in place instead (not atomic)")
    if fact.state == "unreadable":
        raise DestinationError(f"{f.dest}: cannot be read by the connecting user (permission denied; "
                               f"its checksum is needed): connect as its owner, or set 'become: true' "
                               f"to push as root through sudo")


def _same_file(files: tuple[FileSpec, ...], facts: list[DestFacts]) -> None:
    """:raises DestinationError: two entries write one real file (one reached through a symlinked
    folder or link): the second would silently replace the first."""
    seen: dict[str, str] = {}
    for f, fact in zip(files, facts):
        if fact.target in seen:
            raise DestinationError(f"{seen[fact.target]} and {f.dest} are the same file on the host "
                                   f"({fact.target}, reached through a symlinked folder or link): only "
                                   f"one entry may write it; remove the other from the service's files")
        seen[fact.target] = f.dest


def _unchanged(f: FileSpec, fact: DestFacts) -> bool:
    """The host's file already is what ``f`` declares: content, and the mode/owner/group declared."""
    return (fact.state == "file" and fact.sha256 == f.sha256 and (f.mode is None or f.mode == fact.mode)
            and (f.owner is None or f.owner in (fact.owner, str(fact.uid)))
            and (f.group is None or f.group in (fact.group, str(fact.gid))))


def _change(f: FileSpec, fact: DestFacts) -> FileChange:
    """The :class:`FileChange` ``f`` makes: the path written, and replace / in-place / create."""
    if fact.state in ("absent", "nodir"):
        method = "create"
    elif f.replace == "in-place" and fact.state == "file":
        method = "in-place"
    else:
        method = "replace"
    return FileChange(f.dest, fact.sha256, f.sha256, f.size, fact.target, method)


def _push_locked(conn: Connection, privilege: Privilege, job: PushJob, marker: str | None,
                 facts: list[DestFacts], pending: bool, notes: list[str], ids: dict) -> HostResult:
    todo, changes, warnings = [], [], list(conn.warnings) + notes
    _same_file(job.files, facts)
    for f, fact in zip(job.files, facts):
        _check_dest(f, fact)
        if _unchanged(f, fact):
            continue
        todo.append((f, fact))
        changes.append(_change(f, fact))
    if pending:
        warnings.append("a reload owed by an earlier run that did not finish is run now")
    name = conn.spec.name
    if not todo and not pending:
        return HostResult(name, Status.OK, warnings=tuple(warnings))
    diff = "".join(_diff(conn, privilege, f, fact, job.secrets) for f, fact in todo) if job.diff else ""
    if job.check:
        return HostResult(name, Status.CHANGED, changes=tuple(changes), warnings=tuple(warnings),
                          data={"check": True, "reload_pending": pending}, diff=diff)
    items: list[tuple[FileSpec, DestFacts, str]] = []
    done: list = []
    backups: dict[int, str] = {}
    run_id = uuid.uuid4().hex[:6]
    try:
        missing_dirs = sorted({posixpath.dirname(fact.target) for f, fact in todo if fact.state == "nodir"})
        if missing_dirs:
            res = privilege.run(conn, "mkdir -p -- " + " ".join(q(d) for d in missing_dirs))
            if res.exited != 0:
                raise DestinationError(f"cannot create {', '.join(missing_dirs)}",
                                       output=tail(res.stdout + res.stderr))
        with phase(conn, "upload"):
            for f, fact in todo:
                tmp = temp_name(fact.target, privilege.owner)
                items.append((f, fact, tmp))
                _upload(conn, privilege, f, tmp, _final_mode(f, fact), _owner_ids(f, fact, ids))
        if items or marker:
            with phase(conn, "validate"):
                res = privilege.run(conn, prepare_script(items, marker, run_id, privilege.staged, job.backups))
            if res.exited != 0:
                raise prepare_failure(res, items)
            for ln in res.stdout.splitlines():
                if ln.startswith(BACKUP):
                    _, i, path = ln.split(" ", 2)
                    backups[int(i)] = path
        conn.check_abort()  # last safe point: from here on the host is finished, not abandoned
        with conn.shielded():
            try:
                shown = _install_and_reload(conn, privilege, job, marker, pending, items, done, backups)
            except BaseException as e:
                _tell_replaced(e, [changes[i] for i, _ in done])
                raise
    finally:
        installed = {it[2] for _, it in done}
        leftovers = [it[2] for it in items if it[2] not in installed]
        _remove_quietly(conn, privilege, leftovers + list(privilege.staged.values()))
    return HostResult(name, Status.CHANGED, changes=tuple(changes), reloaded=bool(job.reload),
                      warnings=tuple(warnings), diff=diff, output=tail(mask(shown, job.secrets)))


def _install_and_reload(conn: Connection, privilege: Privilege, job: PushJob, marker: str | None,
                        pending: bool, items: list, done: list, backups: dict[int, str]) -> str:
    """Replace each uploaded file (appending ``(index, item)`` to ``done``), reload and check,
    roll back if either fails, prune this run's backup when none are kept.

    :returns: the reload/healthcheck output shown in the result.
    """
    with phase(conn, "rename"):
        for i, (f, fact, tmp) in enumerate(items):
            try:
                install(conn, privilege, f, fact, tmp)
            except HostError:
                if not done and marker and not pending:  # nothing replaced: no reload owed
                    _remove_quietly(conn, privilege, [marker])
                raise
            done.append((i, (f, fact, tmp)))
    shown = ""
    try:
        shown = reload_and_check(conn, privilege, job, marker)
    except (ReloadFailed, CommandTimeout) as e:
        rollback(conn, privilege, done, backups, job, e.message, e.output, marker)
    if job.backups == 0:  # the prepare step kept this run's backup for a rollback
        prune_backups(conn, privilege, [it for _, it in done], 0)
    return shown


def _tell_replaced(e: BaseException, replaced: list[FileChange]) -> None:
    """Attach to ``e`` (as ``e.changes``) the files this run had replaced when it raised, so
    that the host's result lists them even when the connection then dropped (e.g. during the
    reload). Not when the files were put back: a rollback that restored them says so itself
    (``rolled_back``, or ``changes`` already set to ``()``)."""
    if not replaced or getattr(e, "rolled_back", False) or getattr(e, "changes", None) is not None:
        return
    try:
        e.changes = tuple(replaced)
    except (AttributeError, TypeError):  # an exception type without attributes: nothing to say
        pass


def _final_mode(f: FileSpec, fact: DestFacts) -> int:
    """The mode the file will have: declared, else the replaced file's, else 0644."""
    return f.mode if f.mode is not None else (fact.mode if fact.mode is not None else 0o644)


def _owner_ids(f: FileSpec, fact: DestFacts, ids: dict) -> tuple[int | None, int | None]:
    """``(uid, gid)`` the file must have: declared (a name looked up on the host: ``ids``), else the
    replaced file's; None where neither says (or a declared name the host does not know: the
    prepare step then names the problem)."""
    def one(declared: str | None, kind: str, kept: int | None) -> int | None:
        if declared is None:
            return kept
        return int(declared) if declared.isdigit() else ids.get((kind, declared))
    return one(f.owner, "u", fact.uid), one(f.group, "g", fact.gid)


def _upload(conn: Connection, privilege: Privilege, f: FileSpec, tmp: str, mode: int = 0o600,
            owner: tuple[int | None, int | None] = (None, None)) -> None:
    """Write ``f``'s content over SFTP for ``tmp`` (pipelined, :data:`CHUNK` bytes a request),
    into a new file created with ``mode`` and given ``owner`` (uid, gid) through its open
    handle before any byte is written (:meth:`Privilege.open_upload`); setuid/setgid/sticky
    bits are set on the handle after the last byte (a write by a non-root user clears them).

    :raises HostUnreachable: the link dropped; :raises DestinationError: permission denied;
    :raises UploadCorrupted: any other write failure (disk full, …).
    """
    conn.check_abort()
    emit = getattr(conn, "emit", None) if f.size >= PROGRESS_MIN else None
    sent, told = 0, 0

    def write(chunk: bytes) -> None:  # a large file: "SENT TOTAL DEST" every PROGRESS_STEP bytes
        nonlocal sent, told
        fh.write(chunk)
        sent += len(chunk)
        if emit and (sent - told >= PROGRESS_STEP or sent == f.size):
            told = sent
            emit("progress", f"{sent} {f.size} {f.dest}".encode())

    try:
        with privilege.open_upload(conn, tmp, mode, owner) as fh:
            fh.set_pipelined(True)
            if f.content is not None:
                for i in range(0, len(f.content), CHUNK):
                    write(f.content[i:i + CHUNK])
            else:
                with open(f.src, "rb") as src:
                    for chunk in iter(lambda: src.read(CHUNK), b""):
                        write(chunk)
            if mode & 0o7000 and tmp not in privilege.staged:
                fh.chmod(mode)  # through the handle, never by path
    except OSError as e:
        if isinstance(e, (ConnectionError, TimeoutError)) or getattr(e, "errno", None) is None \
                and not str(e):
            raise HostUnreachable(f"upload of {f.dest} interrupted: {e}") from None
        if getattr(e, "errno", None) in (errno.EACCES, errno.EPERM):
            raise DestinationError(f"cannot write {tmp} beside {f.dest}: permission denied for the "
                                   f"connecting user; set 'become: true' to push as root through "
                                   f"sudo") from None
        raise UploadCorrupted(f"upload of {f.dest} to {tmp} failed: {e.strerror or e}") from None


def _diff(conn: Connection, privilege: Privilege, f: FileSpec, fact: DestFacts,
          secrets: tuple[str, ...]) -> str:
    """Unified diff of the host's file against the new content; binary/oversized files say so."""
    import difflib  # only with --diff: keeps the workers' start-up small

    if (fact.size or 0) > DIFF_LIMIT or f.size > DIFF_LIMIT:
        return f"--- {f.dest}\n(diff not shown: larger than {DIFF_LIMIT} bytes)\n"
    # a symlink replaced by the file: the old side is what it points to (read through it)
    old = privilege.read_bytes(conn, fact.target) if fact.state == "file" or fact.sha256 else b""
    if f.content is not None:
        new = f.content
    else:
        with open(f.src, "rb") as fh:
            new = fh.read()
    try:
        if b"\0" in old or b"\0" in new:
            raise UnicodeDecodeError("utf-8", b"", 0, 1, "NUL")
        a, b = old.decode("utf-8").splitlines(True), new.decode("utf-8").splitlines(True)
    except UnicodeDecodeError:
        return f"--- {f.dest}\n(binary file: {fact.size or 0} → {f.size} bytes; diff not shown)\n"
    text = "".join(difflib.unified_diff(a, b, f"{f.dest} (on host)", f"{f.dest} (new)"))
    if text and not text.endswith("\n"):
        text += "\n"
    return mask(text, secrets)


def _remove_quietly(conn: Connection, privilege: Privilege, paths: list[str]) -> None:
    """Remove leftover temporary files; a dead connection cannot (the caller reports the host)."""
    if not paths or conn.transport is None or not conn.transport.is_active():
        return
    try:
        with conn.shielded():
            privilege.run(conn, "rm -f -- " + " ".join(q(p) for p in paths), timeout=conn.spec.connect_timeout)
    except Exception:
        pass
