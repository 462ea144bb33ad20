"""The atomic replace: how one host's files go from "uploaded" to "in place", and back.

Per file, in this order (:func:`~concurdeploy.operations.push.push` drives it):

1. **temporary name** — the upload goes to :func:`temp_name` beside its target,
   ``.<name>.concurdeploy-<uuid>.<suffix>`` (same directory, so same filesystem, so a
   rename works; suffix kept for validators; a dot-file so ``conf.d/*.conf`` globs skip it);
2. **prepare** — one command (:func:`prepare_script`) checks each upload's size and SHA-256
   on the host (a full disk fails here), sets the owner (the replaced file's, where
   permitted) and the mode (declared, else the replaced file's, else 0644), runs
   ``validate`` from the destination's directory, then keeps a **backup** of each file to
   be replaced (``<name>.concurdeploy-<UTC time>-<run id>.bak``, a hard link where possible)
   and records the reload as owed. Any failure → :func:`prepare_failure`, destinations
   untouched;
3. **replace** — :func:`install`: :func:`replace_atomically` renames the upload over its
   target (``rename(2)``: readers see the old file or the new one, never a mix), or, for
   ``replace: in-place``, rewrites the file's content (not atomic: bind mounts);
4. **rollback** — when the reload or healthcheck fails, :func:`rollback` restores the
   replaced files from their backups (atomically, by the same rename), reloads again and
   raises; a failed restore is :class:`~concurdeploy.exceptions.RollbackFailed`;
5. **pruning** — backups beyond ``backups`` per file are removed (:func:`prune_line`,
   oldest first: names sort by time).

A destination is only ever the old file or the new one. Every remote command goes through
the host's :class:`~concurdeploy.operations.become.Privilege` (login user, or sudo).
"""

from __future__ import annotations

import errno
import os
import posixpath
import uuid

from concurdeploy.exceptions import (
    DestinationError,
    HostError,
    ReloadFailed,
    RemoteCommandFailed,
    RenameUnsupported,
    RollbackFailed,
    UploadCorrupted,
    ValidateFailed,
)
from concurdeploy.operations.become import AsLoginUser, Privilege
from concurdeploy.operations.facts import DestFacts
from concurdeploy.operations.handler import reload_command
from concurdeploy.operations.jobs import FileSpec, PushJob
from concurdeploy.operations.shell import BACKUP, FAIL, WARN, q
from concurdeploy.records import tail
from concurdeploy.ssh.connection import Connection

__all__ = ["install", "prepare_failure", "prepare_script", "prune_backups", "prune_line",
           "replace_atomically", "rollback", "temp_name"]

#: ``(file, its facts, its temporary path)``: one file being replaced.
Item = tuple[FileSpec, DestFacts, str]


def temp_name(target: str) -> str:
    """A unique temporary path beside ``target``: ``dir/.<stem>.concurdeploy-<uuid hex>[.<suffix>]``.

    The suffix (at most 32 characters) is kept for validators that look at it; the name
    stays within NAME_MAX (255 bytes).
    """
    directory, base = posixpath.split(target)
    stem, dot, suffix = base.rpartition(".")
    if not stem:  # no suffix (or a dot-file such as .bashrc)
        stem, dot, suffix = base, "", ""
    if len(suffix) > 32:  # not a suffix a validator cares about
        stem, dot, suffix = base, "", ""
    stem = stem.lstrip(".")[:255 - 48 - len(suffix)]  # stay within NAME_MAX (255 bytes)
    return posixpath.join(directory, f".{stem}.concurdeploy-{uuid.uuid4().hex}{dot}{suffix}")


def replace_atomically(conn: Connection, tmp: str, dest: str, privilege: Privilege | None = None) -> str:
    """Rename ``tmp`` over ``dest`` in one step (``rename(2)``): readers see old or new, never a mix.

    ``tmp`` must sit in ``dest``'s directory (same filesystem). Uses OpenSSH's
    ``posix-rename@openssh.com`` SFTP extension (paramiko ``posix_rename``): plain SFTP
    ``rename`` refuses an existing target. Where the server lacks the extension (e.g.
    mock-ssh-server, some appliances) it falls back to ``mv -f`` over the same connection,
    which is the same ``rename(2)`` on the same filesystem (and always ``mv`` under
    :class:`~concurdeploy.operations.become.Sudo`: SFTP acts as the login user, not root).
    It never deletes ``dest`` first.

    :param privilege: who renames; None = the login user.
    :returns: ``"posix-rename"`` or ``"mv"``: which way was used.
    :raises DestinationError: the target is busy (EBUSY: a bind mount) or not writable.
    :raises RenameUnsupported: neither way is available; ``dest`` untouched.
    :raises AuthFailed: sudo refused.
    """
    privilege = privilege if privilege is not None else AsLoginUser()
    try:
        if privilege.sftp_rename(conn, tmp, dest):
            return "posix-rename"
    except OSError as e:
        if getattr(e, "errno", None) in (errno.EACCES, errno.ENOENT):
            raise DestinationError(f"cannot rename into {dest}: {os.strerror(e.errno)}") from None
    res = privilege.run(conn, f"mv -f -- {q(tmp)} {q(dest)}")
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


def prepare_script(items: list[Item], marker: str | None = None, run_id: str = "",
                   staged: dict | None = None, keep: int = 3) -> str:
    """Verify, chown/chmod and validate every upload; then back up the files to be replaced and
    record the owed reload. Exits at the first failure with a ``FAIL <index> <step>`` line;
    prints ``WARN <index> owner`` when an owner cannot be kept and ``BACKUP <index> <path>``
    per backup.

    :param marker: the owed-reload marker to create, or None.
    :param run_id: names this run's backups (with the UTC time).
    :param staged: temporary path → staging upload to copy there first (sudo).
    :param keep: backups kept per file, this run's included (at least this run's is kept
        here: it is needed for a rollback).
    """
    lines = ["set -u", "ts=$(date -u +%Y%m%dT%H%M%SZ)"]
    for i, (f, fact, tmp) in enumerate(items):
        fail = f"{{ echo '{FAIL} {i}'"
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
                         f"|| echo '{WARN} {i} owner'")
        lines.append(f"chmod {mode:04o} -- {q(tmp)} || {fail} chmod; exit 1; }}")
        if f.validate:
            cmd = f.validate.replace("{tmp}", q(tmp))
            lines.append(f"(cd {q(posixpath.dirname(fact.target) or '/')} && {cmd}) "
                         f"|| {fail} validate $?; exit 1; }}")
    for i, (_f, fact, _tmp) in enumerate(items):
        if fact.state == "file":
            b = f"{q(fact.target)}.concurdeploy-\"$ts\"-{run_id}.bak"
            lines.append(f"{{ ln -f -- {q(fact.target)} {b} 2>/dev/null || cp -p -- {q(fact.target)} {b}; }} "
                         f"|| {{ echo '{FAIL} {i}' backup; exit 1; }}")
            lines.append(f"echo {BACKUP} {i} {b}")
            lines.append(prune_line(fact.target, max(keep, 1)))
    if marker:
        lines.append(f": > {q(marker)} || {{ echo '{FAIL} 0' marker; exit 1; }}")
    return "\n".join(lines) + "\n"


def prepare_failure(res, items: list[Item]) -> HostError:
    """The error for a failed :func:`prepare_script` run (``res``: its ``CommandResult``).

    :returns: :class:`ValidateFailed`, :class:`UploadCorrupted`, :class:`DestinationError`,
        or :class:`RemoteCommandFailed` when no ``FAIL`` line says which step failed.
    """
    marker = next((ln for ln in reversed(res.stdout.splitlines()) if ln.startswith(FAIL)), None)
    output = "\n".join(ln for ln in (res.stdout + res.stderr).splitlines()
                       if not ln.startswith((FAIL, WARN, BACKUP)))
    if marker is None:
        return RemoteCommandFailed("preparing the uploaded files failed", output=tail(output),
                                   exit_status=res.exited)
    _, index, step, *rest = marker.split()
    f, fact, tmp = items[int(index)]
    if step == "validate":
        code = int(rest[0]) if rest and rest[0].isdigit() else None
        ran = f.validate.replace("{tmp}", q(tmp))  # as run: the temporary file's real name
        return ValidateFailed(f"validate failed for {f.dest} (exit {code}): {ran}; "
                              f"destination left unchanged", output=tail(output), exit_status=code)
    if step in ("upload", "size", "checksum"):
        return UploadCorrupted(f"{f.dest}: the uploaded copy differs from {f.src} "
                               f"({step} mismatch; disk full?); destination left unchanged",
                               output=tail(output))
    if step == "backup":
        return DestinationError(f"{f.dest}: cannot write a backup beside it; destination left unchanged",
                                output=tail(output))
    if step == "marker":
        return DestinationError("cannot record the pending reload beside the destination; "
                                "destinations left unchanged", output=tail(output))
    return DestinationError(f"{f.dest}: cannot set mode on the uploaded file", output=tail(output))


def install(conn: Connection, privilege: Privilege, f: FileSpec, fact: DestFacts, tmp: str) -> None:
    """Put one prepared upload in place: :func:`replace_atomically`, or (``replace: in-place``)
    rewrite the existing file's content.

    :raises DestinationError: the rename or the rewrite failed (a busy target: the message
        suggests ``replace: in-place``).
    :raises RenameUnsupported: see :func:`replace_atomically`.
    """
    if f.replace == "in-place" and fact.state == "file":
        chmod = f" && chmod {f.mode:04o} -- {q(fact.target)}" if f.mode is not None else ""
        res = privilege.run(conn, f"cat -- {q(tmp)} > {q(fact.target)}{chmod} && rm -f -- {q(tmp)}")
        if res.exited != 0:
            raise DestinationError(f"in-place write of {f.dest} failed; the file may be partly "
                                   f"written (restore it from its backup)",
                                   output=tail(res.stdout + res.stderr))
        return
    try:
        replace_atomically(conn, tmp, fact.target, privilege)
    except DestinationError as e:
        if "busy" in e.message:
            raise DestinationError(e.message + ". Set 'replace: in-place' on this file to rewrite "
                                   "it in place instead (not atomic)", output=e.output) from None
        raise


def rollback(conn: Connection, privilege: Privilege, done: list[tuple[int, Item]], backups: dict[int, str],
             job: PushJob, why: str, output: str, marker: str | None = None):
    """Restore the files replaced by this run from their backups, reload, and raise.

    :param done: ``(index, item)`` of each file replaced, in order; ``backups``: index → backup
        path (no entry: the file did not exist before, so it is removed).
    :param why: what failed (the reload or healthcheck message); ``output``: its output.
    :raises ReloadFailed: always when the restore (and its reload) worked; ``rolled_back`` is True.
    :raises RollbackFailed: a file could not be restored, or reloading the restored files failed.
    """
    lines = ["set -u", "rc=0"]
    for i, (f, fact, _tmp) in done:
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
        res = privilege.run(conn, "\n".join(lines) + "\n")
        restored = res.exited == 0
        detail = tail(res.stdout + res.stderr, 2000)
    except HostError as e:
        restored, detail = False, str(e)
    if not restored:
        raise RollbackFailed(f"{why}; ROLLBACK FAILED: the previous files could not all be restored "
                             f"— this host needs attention", output=tail(output + "\n" + detail))
    if job.reload:
        res = privilege.run(conn, reload_command(job, marker))
        if res.exited != 0:
            raise RollbackFailed(f"{why}; previous files restored but reloading them failed too "
                                 f"(exit {res.exited}) — this host needs attention",
                                 output=tail(output + "\n" + res.stdout + res.stderr))
    err = ReloadFailed(f"{why}; rolled back: previous files restored"
                       f"{' and reloaded' if job.reload else ''}", output=tail(output))
    err.rolled_back = True
    raise err


def prune_line(target: str, keep: int) -> str:
    """Shell line removing all but the newest ``keep`` backups of ``target`` (names sort by time)."""
    d, base = posixpath.split(target)
    return (f'set -- {q(d)}/{q(base)}.concurdeploy-*.bak; n=$#; '
            f'for b; do [ $n -gt {keep} ] && [ -e "$b" ] && rm -f -- "$b"; n=$((n-1)); done')


def prune_backups(conn: Connection, privilege: Privilege, items: list[Item], keep: int) -> None:
    """Remove all but the newest ``keep`` backups of each replaced existing file."""
    lines = [prune_line(fact.target, keep) for f, fact, _ in items if fact.state == "file"]
    if lines:
        privilege.run(conn, "\n".join(lines) + "\ntrue\n")
