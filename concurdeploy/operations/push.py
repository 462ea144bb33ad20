"""What runs on one host over one :class:`~concurdeploy.ssh.connection.Connection`.

Each operation takes ``(conn, payload)`` and returns a :class:`HostResult`, or raises a
:class:`HostError` that the fan-out turns into one. The remote side needs a POSIX ``sh``
and coreutils (``sha256sum``, ``stat``, ``readlink``, ``mv``), as on every Linux host.

The push (:func:`push`), per host:

1. **lock and facts** — one command takes an exclusive ``flock`` on each destination
   directory (waiting at most ``lock_timeout`` seconds; held until the push ends, so two
   runs never interleave on a host) and reports, per destination, whether it exists, its
   resolved target (a symlink is followed: the file it points to is replaced, the link
   kept), its mode, owner, size and SHA-256, and whether a reload is still owed;
2. **compare** — files whose SHA-256 (and mode, when one is declared) already match are
   left alone; nothing to do → ``ok``; check mode stops here and reports ``changed``;
3. **upload** each changed file over SFTP to a unique name beside its target,
   ``.<name>.concurdeploy-<uuid>.<suffix>`` (same directory, so same filesystem; suffix
   kept for validators; a dot-file so ``conf.d/*.conf`` globs skip it);
4. **prepare** — one command checks each upload's size and SHA-256 on the host (a full
   disk fails here), sets the mode (declared, else the replaced file's, else 0644) and the
   replaced file's owner where permitted, and runs ``validate`` from the destination's
   directory; any failure → every temporary file removed, destinations untouched. Then it
   keeps a backup of each file to be replaced (``<name>.concurdeploy-<UTC time>-<id>.bak``,
   a hard link where possible) and records the reload as owed;
5. **replace** each target atomically (:func:`replace_atomically`);
6. **reload** once, if anything changed (the handler), then the optional ``healthcheck``;
   if either fails, the backups are restored atomically and the reload runs again
   (``rolled back``); a failed restore is reported as :class:`RollbackFailed`;
7. old backups beyond ``backups`` (default 3) per file are removed.

Any error removes the temporary files that remain; a destination is only ever the old
file or the new one.
"""

from __future__ import annotations

import errno
import hashlib
import os
import posixpath
import re
import shlex
import uuid
from dataclasses import dataclass

from concurdeploy.exceptions import (
    CommandTimeout,
    DestinationError,
    HostError,
    HostUnreachable,
    LockBusy,
    ReloadFailed,
    RemoteCommandFailed,
    RenameUnsupported,
    RollbackFailed,
    UploadCorrupted,
    ValidateFailed,
)
from concurdeploy.operations.become import BecomeShell
from concurdeploy.operations.jobs import FileSpec, PushJob
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
_FAIL = "@@concurdeploy-fail"
_WARN = "@@concurdeploy-warn"
_BUSY = "@@concurdeploy-busy"
_READY = "@@concurdeploy-ready"
_PENDING = "@@concurdeploy-pending"
_BACKUP = "@@concurdeploy-backup"

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
    """Ask the host about every destination in one command (one round trip), without locking.

    :raises RemoteCommandFailed: the facts command failed (no POSIX shell/coreutils?).
    """
    res = conn.run(_FACTS_FN + "".join(f"cd_fact {q(d)}\n" for d in dests))
    if res.exited != 0:
        raise RemoteCommandFailed(
            "could not read the destinations' state (the host needs sh, sha256sum, stat, readlink)",
            output=tail(res.stdout + res.stderr, 2000), exit_status=res.exited)
    return _parse_facts(dests, res.stdout)[0]


def temp_name(target: str) -> str:
    """A unique temporary path beside ``target``: ``dir/.<stem>.concurdeploy-<uuid hex>[.<suffix>]``."""
    directory, base = posixpath.split(target)
    stem, dot, suffix = base.rpartition(".")
    if not stem:  # no suffix (or a dot-file such as .bashrc)
        stem, dot, suffix = base, "", ""
    if len(suffix) > 32:  # not a suffix a validator cares about
        stem, dot, suffix = base, "", ""
    stem = stem.lstrip(".")[:255 - 48 - len(suffix)]  # stay within NAME_MAX (255 bytes)
    return posixpath.join(directory, f".{stem}.concurdeploy-{uuid.uuid4().hex}{dot}{suffix}")


def replace_atomically(conn: Connection, tmp: str, dest: str) -> str:
    """Rename ``tmp`` over ``dest`` in one step (``rename(2)``): readers see old or new, never a mix.

    ``tmp`` must sit in ``dest``'s directory (same filesystem). Uses OpenSSH's
    ``posix-rename@openssh.com`` SFTP extension (paramiko ``posix_rename``): plain SFTP
    ``rename`` refuses an existing target. Where the server lacks the extension (e.g.
    mock-ssh-server, some appliances) it falls back to ``mv -f`` over the same connection,
    which is the same ``rename(2)`` on the same filesystem (and always ``mv`` under
    ``become``, as root). It never deletes ``dest`` first.

    :returns: ``"posix-rename"`` or ``"mv"``: which way was used.
    :raises DestinationError: the target is busy (EBUSY: a bind mount) or not writable.
    :raises RenameUnsupported: neither way is available; ``dest`` untouched.
    """
    if not isinstance(conn, BecomeShell):  # as root through sudo, SFTP (the login user) cannot
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
        raise DestinationError(f"{f.dest}: cannot be read by the connecting user (permission denied; "
                               f"its checksum is needed): connect as its owner, or set 'become: true' "
                               f"to push as root through sudo")


def _upload(conn: Connection, f: FileSpec, tmp: str) -> None:
    conn.check_abort()
    target = tmp
    if isinstance(conn, BecomeShell):  # the login user writes a private staging file
        target = f"/tmp/.concurdeploy-stage-{uuid.uuid4().hex}"
        conn.staged[tmp] = target
    try:
        with conn.sftp.open(target, "wb") as fh:
            if target != tmp:
                fh.chmod(0o600)
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
        if getattr(e, "errno", None) in (errno.EACCES, errno.EPERM):
            raise DestinationError(f"cannot write {tmp} beside {f.dest}: permission denied for the "
                                   f"connecting user; set 'become: true' to push as root through "
                                   f"sudo") from None
        raise UploadCorrupted(f"upload of {f.dest} to {tmp} failed: {e.strerror or e}") from None


def _marker_path(job: PushJob) -> str | None:
    """Where a host remembers a reload it owes: beside the first destination, one per service
    (so a reload command fixed between runs still runs)."""
    if not job.reload:
        return None
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", job.service) or hashlib.sha1(job.reload.encode()).hexdigest()[:12]
    return posixpath.join(posixpath.dirname(job.files[0].dest), f".concurdeploy-reload-pending.{name}")


def _lock_and_facts_script(job: PushJob) -> str:
    """Lock each destination directory (``flock``, held until we close stdin), then report facts."""
    dirs = sorted({posixpath.dirname(f.dest) or "/" for f in job.files})
    lines = ["set -u", _FACTS_FN, "if command -v flock >/dev/null 2>&1; then"]
    for fd, d in zip(range(3, 10), dirs):
        lines.append(f"  [ -d {q(d)} ] && {{ exec {fd}<{q(d)} && flock -w {job.lock_timeout:g} {fd} "
                     f"|| {{ echo {_BUSY} {q(d)}; exit 75; }}; }}")
    lines.append(f"else echo '{_WARN} - noflock'; fi")
    # Temporary uploads older than 10 minutes in a directory we now hold locked are
    # leftovers of a run whose connection died (a live run would hold the lock): remove them.
    hexes = "[0-9a-f]" * 32
    for d in dirs:
        lines.append(f"[ -d {q(d)} ] && find {q(d)} -maxdepth 1 -type f -name '.*.concurdeploy-{hexes}*' "
                     f"-mmin +10 -exec rm -f -- {{}} + 2>/dev/null")
    lines += [f"cd_fact {q(f.dest)}" for f in job.files]
    marker = _marker_path(job)
    if marker:
        lines.append(f"[ -e {q(marker)} ] && echo {_PENDING}")
    # Hold the locks until the controller sends a line or closes stdin (or the connection dies).
    lines += [f"echo {_READY}", "exec head -n 1 >/dev/null"]
    return "\n".join(lines) + "\n"


def _parse_facts(dests: list[str], text: str) -> tuple[list[DestFacts], bool, list[str]]:
    facts, pending, notes = [], False, []
    rows = []
    for ln in text.splitlines():
        if ln == _PENDING:
            pending = True
        elif ln.startswith(_WARN):
            notes.append("flock is not installed on the host: concurrent runs are not kept apart")
        elif ln:
            rows.append(ln)
    if len(rows) != len(dests):
        raise RemoteCommandFailed(
            "could not read the destinations' state (the host needs sh, sha256sum, stat, readlink)",
            output=tail(text, 2000))
    for dest, line in zip(dests, rows):
        parts = line.split("\t")
        if parts[0] == "file" and len(parts) == 4:
            mode, uid, gid, size = parts[1].split(":")
            facts.append(DestFacts(dest, "file", parts[3], int(mode, 8), int(uid), int(gid),
                                   int(size), parts[2]))
        else:
            facts.append(DestFacts(dest, parts[0], parts[-1]))
    return facts, pending, notes


def _prepare_script(items: list[tuple[FileSpec, DestFacts, str]], marker: str | None = None,
                    run_id: str = "", staged: dict | None = None, keep: int = 3) -> str:
    """Verify, chmod/chown and validate every upload; then back up the files to be replaced and
    record the owed reload. Exits at the first failure with a ``@@concurdeploy-fail`` line.

    :param staged: temporary path → staging upload to copy there first (``become``).
    :param keep: backups kept per file, this run's included (at least this run's is kept
        here: it is needed for a rollback).
    """
    lines = ["set -u", "ts=$(date -u +%Y%m%dT%H%M%SZ)"]
    for i, (f, fact, tmp) in enumerate(items):
        fail = f"{{ echo '{_FAIL} {i}'"
        mode = f.mode if f.mode is not None else (fact.mode if fact.mode is not None else 0o644)
        if staged and tmp in staged:
            lines.append(f"cp -- {q(staged[tmp])} {q(tmp)} && rm -f -- {q(staged[tmp])} "
                         f"|| {fail} upload; exit 1; }}")
        lines += [
            f"s=$(stat -c %s -- {q(tmp)}) || {fail} upload; exit 1; }}",
            f"[ \"$s\" = {f.size} ] || {fail} size $s; exit 1; }}",
            f"h=$(sha256sum < {q(tmp)}) || {fail} checksum; exit 1; }}",
            f"[ \"${{h%% *}}\" = {f.sha256} ] || {fail} checksum; exit 1; }}",
        ]
        if fact.uid is not None:  # chown first: it clears setuid/setgid bits that chmod sets
            lines.append(f"chown {fact.uid}:{fact.gid} -- {q(tmp)} 2>/dev/null "
                         f"|| echo '{_WARN} {i} owner'")
        lines.append(f"chmod {mode:04o} -- {q(tmp)} || {fail} chmod; exit 1; }}")
        if f.validate:
            cmd = f.validate.replace("{tmp}", q(tmp))
            lines.append(f"(cd {q(posixpath.dirname(fact.target) or '/')} && {cmd}) "
                         f"|| {fail} validate $?; exit 1; }}")
    for i, (f, fact, tmp) in enumerate(items):
        if fact.state == "file":
            b = f"{q(fact.target)}.concurdeploy-\"$ts\"-{run_id}.bak"
            lines.append(f"{{ ln -f -- {q(fact.target)} {b} 2>/dev/null || cp -p -- {q(fact.target)} {b}; }} "
                         f"|| {{ echo '{_FAIL} {i}' backup; exit 1; }}")
            lines.append(f"echo {_BACKUP} {i} {b}")
            lines.append(_prune_line(fact.target, max(keep, 1)))
    if marker:
        lines.append(f": > {q(marker)} || {{ echo '{_FAIL} 0' marker; exit 1; }}")
    return "\n".join(lines) + "\n"


def _raise_prepare_failure(res, items) -> None:
    marker = next((ln for ln in reversed(res.stdout.splitlines()) if ln.startswith(_FAIL)), None)
    output = "\n".join(ln for ln in (res.stdout + res.stderr).splitlines()
                       if not ln.startswith((_FAIL, _WARN, _BACKUP)))
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
    if step == "backup":
        raise DestinationError(f"{f.dest}: cannot write a backup beside it; destination left unchanged",
                               output=tail(output))
    if step == "marker":
        raise DestinationError("cannot record the pending reload beside the destination; "
                               "destinations left unchanged", output=tail(output))
    raise DestinationError(f"{f.dest}: cannot set mode on the uploaded file", output=tail(output))


def _install(conn: Connection, f: FileSpec, fact: DestFacts, tmp: str) -> None:
    """Put one validated upload in place: atomic rename, or (``replace: in-place``) a rewrite."""
    if f.replace == "in-place" and fact.state == "file":
        chmod = f" && chmod {f.mode:04o} -- {q(fact.target)}" if f.mode is not None else ""
        res = conn.run(f"cat -- {q(tmp)} > {q(fact.target)}{chmod} && rm -f -- {q(tmp)}")
        if res.exited != 0:
            raise DestinationError(f"in-place write of {f.dest} failed; the file may be partly "
                                   f"written (restore it from its backup)",
                                   output=tail(res.stdout + res.stderr))
        return
    try:
        replace_atomically(conn, tmp, fact.target)
    except DestinationError as e:
        if "busy" in e.message:
            raise DestinationError(e.message + ". Set 'replace: in-place' on this file to rewrite "
                                   "it in place instead (not atomic)", output=e.output) from None
        raise


def _rollback(conn: Connection, done: list, backups: dict, job: PushJob, why: str, output: str,
              marker: str | None = None):
    """Restore the files replaced by this run from their backups, reload, and raise."""
    lines = ["set -u", "rc=0"]
    for i, (f, fact, tmp) in done:
        b = backups.get(i)
        if b is None:  # the file did not exist before this run
            lines.append(f"rm -f -- {q(fact.target)} || rc=1")
        elif f.replace == "in-place":
            lines.append(f"cat -- {q(b)} > {q(fact.target)} || rc=1")
        else:
            r = temp_name(fact.target)
            lines.append(f"{{ cp -p -- {q(b)} {q(r)} && mv -f -- {q(r)} {q(fact.target)}; }} "
                         f"|| {{ rm -f -- {q(r)}; rc=1; }}")
    lines.append("exit $rc")
    try:
        res = conn.run("\n".join(lines) + "\n")
        restored = res.exited == 0
        detail = tail(res.stdout + res.stderr, 2000)
    except HostError as e:
        restored, detail = False, str(e)
    if not restored:
        raise RollbackFailed(f"{why}; ROLLBACK FAILED: the previous files could not all be restored "
                             f"— this host needs attention", output=tail(output + "\n" + detail))
    if job.reload:
        clear = f"\nrc=$?; [ $rc -eq 0 ] && rm -f -- {q(marker)}; exit $rc" if marker else ""
        res = conn.run(f"( {job.reload}\n){clear}")
        if res.exited != 0:
            raise RollbackFailed(f"{why}; previous files restored but reloading them failed too "
                                 f"(exit {res.exited}) — this host needs attention",
                                 output=tail(output + "\n" + res.stdout + res.stderr))
    err = ReloadFailed(f"{why}; rolled back: previous files restored"
                       f"{' and reloaded' if job.reload else ''}", output=tail(output))
    err.rolled_back = True
    raise err


def _reload_and_check(conn: Connection, job: PushJob, marker: str | None) -> None:
    """Run the handler (then the healthcheck); raise ReloadFailed/… on failure (caller rolls back)."""
    if job.reload:
        clear = f"\nrc=$?; [ $rc -eq 0 ] && rm -f -- {q(marker)}; exit $rc" if marker else ""
        res = conn.run(f"( {job.reload}\n){clear}")
        if res.exited != 0:
            raise ReloadFailed(f"reload failed (exit {res.exited}): {job.reload}",
                               output=tail(res.stdout + res.stderr), exit_status=res.exited)
    if job.healthcheck:
        res = conn.run(job.healthcheck)
        if res.exited != 0:
            raise ReloadFailed(f"healthcheck failed (exit {res.exited}): {job.healthcheck}",
                               output=tail(res.stdout + res.stderr), exit_status=res.exited)


def _prune_line(target: str, keep: int) -> str:
    """Shell line removing all but the newest ``keep`` backups of ``target`` (names sort by time)."""
    d, base = posixpath.split(target)
    return (f'set -- {q(d)}/{q(base)}.concurdeploy-*.bak; n=$#; '
            f'for b; do [ $n -gt {keep} ] && [ -e "$b" ] && rm -f -- "$b"; n=$((n-1)); done')


def _prune_backups(conn: Connection, items, keep: int) -> None:
    lines = [_prune_line(fact.target, keep) for f, fact, _ in items if fact.state == "file"]
    if lines:
        conn.run("\n".join(lines) + "\ntrue\n")


def _diff(conn: Connection, f: FileSpec, fact: DestFacts, secrets: tuple[str, ...]) -> str:
    """Unified diff of the host's file against the new content; binary/oversized files say so."""
    import difflib

    if fact.state == "file" and (fact.size or 0) > DIFF_LIMIT or f.size > DIFF_LIMIT:
        return f"--- {f.dest}\n(diff not shown: larger than {DIFF_LIMIT} bytes)\n"
    old = b""
    if fact.state == "file" and isinstance(conn, BecomeShell):
        import base64

        res = conn.run(f"base64 -- {q(fact.target)}")
        old = base64.b64decode(res.stdout) if res.exited == 0 else b""
    elif fact.state == "file":
        with conn.sftp.open(fact.target, "rb") as fh:
            old = fh.read()
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


def mask(text: str, secrets: tuple[str, ...]) -> str:
    """Replace every occurrence of each secret value (longest first) with ``********``."""
    for value in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(value, "********")
    return text


def _secrets(conn, job) -> tuple[str, ...]:
    """The values to mask in this host's result: the job's ``secret_vars`` values, and the
    password, passphrase and sudo password read from this worker's environment."""
    values = list(getattr(job, "secrets", ()) or ())
    become = getattr(job, "become", None)
    spec = getattr(conn, "spec", None)
    for name in (getattr(spec, "password_env", None), getattr(spec, "passphrase_env", None),
                 getattr(become, "password_env", None)):
        if name and os.environ.get(name):
            values.append(os.environ[name])
    return tuple(dict.fromkeys(v for v in values if v))


def _mask_data(value, secrets: tuple[str, ...]):
    if isinstance(value, str):
        return mask(value, secrets)
    if isinstance(value, dict):
        return {k: _mask_data(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_mask_data(v, secrets) for v in value)
    return value


def _masked(action, conn, job) -> HostResult:
    """Run ``action(conn, job)`` with every secret value masked in what leaves the worker:
    the result's output, error, diff, warnings and data, or the raised error's message and
    output (a validate, reload or ``run`` command may print them: the operator's output, masked
    all the same)."""
    secrets = _secrets(conn, job)
    if not secrets:
        return action(conn, job)
    try:
        result = action(conn, job)
    except HostError as e:
        e.message, e.output = mask(e.message, secrets), mask(e.output or "", secrets)
        e.args = _mask_data(e.args, secrets)
        raise
    except Exception as e:  # a bug: its message is still shown
        e.args = _mask_data(e.args, secrets)
        raise
    from dataclasses import replace

    return replace(result, output=mask(result.output, secrets), diff=mask(result.diff, secrets),
                   error=mask(result.error, secrets) if result.error else result.error,
                   warnings=_mask_data(result.warnings, secrets), data=_mask_data(result.data, secrets))


def push(conn: Connection, job: PushJob) -> HostResult:
    """Push ``job.files`` to the host, atomically per file, then reload once if any changed.

    Steps (see the module docstring): lock the destination directories and read facts
    (one held command) → compare → upload → verify/validate/back up (one command) →
    replace → reload (+ healthcheck) → on reload failure, restore the backups and reload
    again (``rolled back``) → prune old backups → unlock.

    A reload owed by an earlier run that changed files but did not reload (failure,
    interrupt) is remembered on the host (a marker beside the first destination) and
    run now even when nothing changed.

    :returns: ``ok`` (nothing to do), or ``changed`` with a :class:`FileChange` per file
        replaced (in check mode: that would be).
    :raises LockBusy, DestinationError, UploadCorrupted, ValidateFailed, ReloadFailed,
        RollbackFailed, Interrupted, HostUnreachable, AuthFailed (sudo refused):
    """
    return _masked(_push, conn, job)


def _push(conn: Connection, job: PushJob) -> HostResult:
    if job.become is not None:
        conn = BecomeShell(conn, job.become)
    marker = _marker_path(job)
    dests = [f.dest for f in job.files]
    wait = job.lock_timeout + conn.spec.command_timeout
    if not job.check:
        conn.prefetch_sftp()  # its round trips overlap the lock-and-facts command
    try:
        held, text = conn.hold(_lock_and_facts_script(job), _READY, timeout=wait)
    except RemoteCommandFailed as e:
        busy = next((ln for ln in e.output.splitlines() if ln.startswith(_BUSY)), None)
        if busy:
            raise LockBusy(f"{busy.split(' ', 1)[1]} is locked by another concurdeploy run "
                           f"(waited {job.lock_timeout:g} s, lock_timeout); try again when it "
                           f"has finished") from None
        raise
    try:
        return _push_locked(conn, job, marker, *_parse_facts(dests, text))
    finally:
        held.release()


def _push_locked(conn, job, marker, facts, pending, notes) -> HostResult:
    todo, changes, warnings = [], [], list(conn.warnings) + notes
    for f, fact in zip(job.files, facts):
        _check_dest(f, fact)
        if fact.state == "file" and fact.sha256 == f.sha256 and (f.mode is None or f.mode == fact.mode):
            continue
        todo.append((f, fact))
        changes.append(FileChange(f.dest, fact.sha256, f.sha256, f.size))
    if pending:
        warnings.append("a reload owed by an earlier run that did not finish is run now")
    name = conn.spec.name
    if not todo and not pending:
        return HostResult(name, Status.OK, warnings=tuple(warnings))
    diff = "".join(_diff(conn, f, fact, job.secrets) for f, fact in todo) if job.diff else ""
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
            res = conn.run("mkdir -p -- " + " ".join(q(d) for d in missing_dirs))
            if res.exited != 0:
                raise DestinationError(f"cannot create {', '.join(missing_dirs)}",
                                       output=tail(res.stdout + res.stderr))
        for f, fact in todo:
            tmp = temp_name(fact.target)
            items.append((f, fact, tmp))
            _upload(conn, f, tmp)
        if items or marker:
            res = conn.run(_prepare_script(items, marker, run_id, getattr(conn, "staged", None),
                                           job.backups))
            if res.exited != 0:
                _raise_prepare_failure(res, items)
            for ln in res.stdout.splitlines():
                if ln.startswith(_WARN):
                    f = items[int(ln.split()[1])][0]
                    warnings.append(f"{f.dest}: owner of the replaced file not kept "
                                    f"(the connecting user may not chown)")
                elif ln.startswith(_BACKUP):
                    _, i, path = ln.split(" ", 2)
                    backups[int(i)] = path
        conn.check_abort()  # last safe point: from here on the host is finished, not abandoned
        with conn.shielded():
            for i, (f, fact, tmp) in enumerate(items):
                try:
                    _install(conn, f, fact, tmp)
                except HostError:
                    if not done and marker and not pending:  # nothing replaced: no reload owed
                        _remove_quietly(conn, [marker])
                    raise
                done.append((i, (f, fact, tmp)))
            try:
                _reload_and_check(conn, job, marker)
            except (ReloadFailed, CommandTimeout) as e:
                _rollback(conn, done, backups, job, e.message, e.output, marker)
            if job.backups == 0:  # the prepare step kept this run's backup for a rollback
                _prune_backups(conn, [it for _, it in done], 0)
    finally:
        installed = {it[2] for _, it in done}
        leftovers = [it[2] for it in items if it[2] not in installed]
        _remove_quietly(conn, leftovers + list(getattr(conn, "staged", {}).values()))
    return HostResult(name, Status.CHANGED, changes=tuple(changes), reloaded=bool(job.reload),
                      warnings=tuple(warnings), diff=diff)


def _remove_quietly(conn: Connection, paths: list[str]) -> None:
    """Remove leftover temporary files; a dead connection cannot (the caller reports the host)."""
    if not paths or conn.transport is None or not conn.transport.is_active():
        return
    try:
        with conn.shielded():
            conn.run("rm -f -- " + " ".join(q(p) for p in paths), timeout=conn.spec.connect_timeout)
    except Exception:
        pass












