"""The atomic replace: how one host's files go from "uploaded" to "in place", and back.

Per file, in this order (:func:`~concurdeploy.operations.push.push` drives it):

1. **temporary name** — the upload goes to :func:`temp_name` beside its target (created new,
   with its final mode, before any byte),
   ``.<name>.concurdeploy-<uuid>.<suffix>`` (same directory, so same filesystem, so a
   rename works; suffix kept for validators; a dot-file so ``conf.d/*.conf`` globs skip it);
2. **prepare** — one command (:func:`prepare_script`) checks each upload's size and SHA-256
   on the host (a full disk fails here) and its owner/group (declared, else the replaced
   file's: kept, or the host fails here, before any rename) and mode (declared, else the
   replaced file's, else 0644): set through the upload's open SFTP handle by the login
   user (checked here, never set by path), or by root in a private directory (sudo); then
   the replaced file's ACL (``getfacl | setfacl``; a host without them fails here) and
   SELinux label (``chcon --reference`` where ``selinuxenabled``), runs ``validate`` from
   the destination's directory, then keeps a **backup** of each file to be replaced
   (``<name>.concurdeploy-<UTC time>-<run id>.bak``, a real copy; of a symlink being
   replaced, the bytes it points to) and records the reload as owed. Any failure → :func:`prepare_failure`, destinations
   untouched;
3. **replace** — :func:`install`: :func:`replace_atomically` renames the upload over its
   target (``rename(2)``: readers see the old file or the new one, never a mix), or, for
   ``replace: in-place``, rewrites the file's content (not atomic: bind mounts);
4. **rollback** — when the reload or healthcheck fails, :func:`rollback` restores the
   replaced files from their backups (atomically, by the same rename; a replaced symlink is
   made again with its own text), reloads again and
   raises; a failed restore is :class:`~concurdeploy.exceptions.RollbackFailed`;
5. **pruning** — backups beyond ``backups`` per file are removed (:func:`prune_line`,
   oldest first: names sort by time).

A destination is only ever the old file or the new one. Every remote command goes through
the host's :class:`~concurdeploy.operations.become.Privilege` (login user, or sudo).
"""

from __future__ import annotations

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


def temp_name(target: str, owner: int | None = None) -> str:
    """A unique temporary path beside ``target``:
    ``dir/.<stem>.concurdeploy-<uuid hex>[-<owner>][.<suffix>]``.

    ``owner``: the PID on the host of the run's lock-holding command (alive as long as the
    run holds its locks), so that a later run can tell a leftover of a run that died (its
    PID gone: removed at once, :func:`~concurdeploy.operations.facts.lock_and_facts_script`)
    from a live run's upload. The suffix (at most 32 characters) is kept for validators that
    look at it; the name stays within NAME_MAX (255 bytes).
    """
    directory, base = posixpath.split(target)
    stem, dot, suffix = base.rpartition(".")
    if not stem:  # no suffix (or a dot-file such as .bashrc)
        stem, dot, suffix = base, "", ""
    if len(suffix) > 32:  # not a suffix a validator cares about
        stem, dot, suffix = base, "", ""
    stem = stem.lstrip(".")[:255 - 60 - len(suffix)]  # stay within NAME_MAX (255 bytes)
    pid = f"-{owner}" if owner else ""
    return posixpath.join(directory, f".{stem}.concurdeploy-{uuid.uuid4().hex}{pid}{dot}{suffix}")


def replace_atomically(conn: Connection, tmp: str, dest: str, privilege: Privilege | None = None) -> str:
    """Rename ``tmp`` over ``dest`` in one step (``rename(2)``): readers see old or new, never a mix.

    ``tmp`` must sit in ``dest``'s directory (same filesystem). Uses OpenSSH's
    ``posix-rename@openssh.com`` SFTP extension (paramiko ``posix_rename``): plain SFTP
    ``rename`` refuses an existing target, and renaming the old file aside first would leave
    a moment without one. Where the server lacks the extension, or refuses it (older or
    non-OpenSSH servers, ``sftp-server -P``), it falls back to ``mv -T -f`` run over the
    same connection's exec channel: the same ``rename(2)`` of ``tmp`` onto ``dest`` itself
    (``-T``: never into a directory ``dest`` names, never through a symlink ``dest`` is).
    Under :class:`~concurdeploy.operations.become.Sudo` it is always ``mv`` (SFTP acts as
    the login user, not root). It never deletes ``dest`` first.

    :param privilege: who renames; None = the login user.
    :returns: ``"posix-rename"`` or ``"mv"``: which way was used.
    :raises DestinationError: the target is busy (EBUSY: a bind mount) or not writable.
    :raises RenameUnsupported: neither way is available; ``dest`` untouched.
    :raises AuthFailed: sudo refused.
    """
    privilege = privilege if privilege is not None else AsLoginUser()
    if privilege.sftp_rename(conn, tmp, dest):
        return "posix-rename"
    res = privilege.run(conn, f"mv -T -f -- {q(tmp)} {q(dest)}")
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


def _declared_owner(f: FileSpec) -> str | None:
    """``owner:group``, ``owner`` or ``:group`` for ``chown``, or None when neither is declared."""
    if f.owner is None and f.group is None:
        return None
    return (f.owner or "") + (f":{f.group}" if f.group is not None else "")


def prepare_script(items: list[Item], marker: str | None = None, run_id: str = "",
                   staged: dict | None = None, keep: int = 3) -> str:
    """Verify, chown/chmod and validate every upload; then back up the files to be replaced and
    record the owed reload. Exits at the first failure with a ``FAIL <index> <step>`` line
    (``FAIL <index> owner <file's user:group> <upload's user:group>`` when the replaced file's
    owner or group cannot be kept: the host fails before any rename); prints
    ``BACKUP <index> <path>`` per backup.

    :param marker: the owed-reload marker to create, or None.
    :param run_id: names this run's backups (with the UTC time).
    :param staged: temporary path → staging upload (sudo): root checks it and sets its owner
        and mode in a private ``mktemp -d`` directory, then copies it (``cp -p``: a new file,
        owner and mode set through its descriptor) to the temporary path; nothing root does
        follows a link the destination directory's owner may plant.
    :param keep: backups kept per file, this run's included (at least this run's is kept
        here: it is needed for a rollback).
    """
    # Nanoseconds and the run id: two runs in the same second never share a backup name,
    # and names still sort by time.
    lines = ["set -u", "ts=$(date -u +%Y%m%dT%H%M%S.%NZ)", "p=", "trap '[ -z \"$p\" ] || rm -rf -- \"$p\"' EXIT"]
    for i, (f, fact, tmp) in enumerate(items):
        mode = _mode_of(f, fact)
        fail = f"{{ echo '{FAIL} {i}'"  # fixed words and stat's user:group only: echo is safe
        private = bool(staged and tmp in staged)
        if private:  # sudo: checked, chown'ed and chmod'ed in a private root-owned directory
            w = '"$p/f"'
            lines.append(f"p=$(umask 077 && mktemp -d) && cp -- {q(staged[tmp])} {w} && "
                         f"rm -f -- {q(staged[tmp])} || {fail} upload; exit 1; }}")
        else:  # the login user's own upload: still a regular file, not a (hard) link put in its place
            w = q(tmp)
            lines.append(f"[ -f {w} ] && [ ! -L {w} ] && [ \"$(stat -c %h -- {w})\" = 1 ] || {fail} swapped; exit 1; }}")
        lines += [
            f"s=$(stat -c %s -- {w}) || {fail} upload; exit 1; }}",
            f"[ \"$s\" = {f.size} ] || {fail} size $s; exit 1; }}",
            f"h=$(sha256sum < {w}) || {fail} checksum; exit 1; }}",
            f"[ \"${{h%% *}}\" = {f.sha256} ] || {fail} checksum; exit 1; }}",
        ]
        lines += _owner_lines(f, fact, w, mode, fail, private)
        if fact.state == "file" and f.replace != "in-place":  # an ACL ('+' after the mode) is kept too
            t = q(fact.target)
            lines.append(f"case $(ls -ld -- {t}) in ??????????+*) if command -v setfacl >/dev/null "
                         f"&& command -v getfacl >/dev/null; then {{ a=$(getfacl -p -- {t}) && printf '%s\\n' \"$a\" "
                         f"| setfacl --set-file=- -- {w}; }} || {fail} acl; exit 1; }}; else {fail} acl-tools; exit 1; }}; fi ;; esac")
        if private:  # a new file beside the target (O_EXCL), owner and mode set through its fd
            lines.append(f"(umask 077 && cp -p --remove-destination -- {w} {q(tmp)}) && rm -rf -- \"$p\" "
                         f"&& p= || {fail} upload; exit 1; }}")
        if fact.state == "file" and f.replace != "in-place":  # the SELinux label kept (untested here)
            lines.append(f"if command -v selinuxenabled >/dev/null 2>&1 && selinuxenabled; then chcon -h "
                         f"--reference={q(fact.target)} -- {q(tmp)} || {fail} selinux; exit 1; }}; fi")
        if f.validate:
            # Its own sh, the command a quoted argument (a '#' or a newline in it is its own);
            # its output goes to stderr, so stdout carries only the lines of this script.
            cmd = f.validate.replace("{tmp}", q(tmp))
            lines.append(f"(cd {q(posixpath.dirname(fact.target) or '/')} && exec /bin/sh -c {q(cmd)}) "
                         f"</dev/null >&2 || {{ printf '%s %s\\n' '{FAIL} {i} validate' \"$?\"; exit 1; }}")
    for i, (_f, fact, _tmp) in enumerate(items):
        if _has_bytes(fact):
            # A real copy (never a hard link: an in-place rewrite would change it too), checked
            # against the hash read under the lock; of a symlink being replaced, the bytes it
            # points to (cp -L: a regular file, counted and pruned like any backup).
            b = f"{q(fact.target)}.concurdeploy-\"$ts\"-{run_id}.bak"
            keep_old = (f"[ ! -e {b} ] && [ ! -L {b} ] && cp {'-L ' if fact.state == 'link' else ''}-p -- "
                        f"{q(fact.target)} {b} && h=$(sha256sum < {b}) && [ \"${{h%% *}}\" = {fact.sha256} ]")
            lines.append(f"{{ {keep_old}; }} || {{ printf '%s\\n' '{FAIL} {i} backup'; exit 1; }}")
            lines.append(f"printf '%s %s %s\\n' {BACKUP} {i} {b}")
            lines.append(prune_line(fact.target, max(keep, 1)))
    if marker:  # a symlink to nothing: made by symlink(2), never through a link planted there
        lines.append(f"ln -sfT -- reload-owed {q(marker)} || {{ printf '%s\\n' '{FAIL} 0 marker'; exit 1; }}")
    return "\n".join(lines) + "\n"


def _has_bytes(fact: DestFacts) -> bool:
    """The destination holds bytes a replace takes away (a file, or a symlink to one): backed up."""
    return fact.state == "file" or (fact.state == "link" and fact.sha256 is not None)


def _owner_lines(f: FileSpec, fact: DestFacts, w: str, mode: int, fail: str, private: bool) -> list[str]:
    """Owner, group and mode of the upload ``w``: set by root (``private``: in its private
    directory, by path), else checked — the login user's upload got them through its open SFTP
    handle (:meth:`~concurdeploy.operations.become.AsLoginUser.open_upload`), never by a path
    that could be swapped; a mismatch (the owner could not be given) fails the host here."""
    own = _declared_owner(f)
    was = f"\"$(stat -c %U:%G -- {q(fact.target)})\""
    if private:
        if own is not None:  # chown first: it clears setuid/setgid bits that chmod sets
            return [f"chown -- {q(own)} {w} || {fail} owner-declared; exit 1; }}",
                    f"chmod {mode:04o} -- {w} || {fail} chmod; exit 1; }}"]
        lines = []
        if fact.uid is not None:  # kept, or the host fails here: never a silent change
            lines.append(f"chown {fact.uid}:{fact.gid} -- {w} 2>/dev/null "
                         f"|| {fail} owner {was} \"$(stat -c %U:%G -- {w})\"; exit 1; }}")
        return lines + [f"chmod {mode:04o} -- {w} || {fail} chmod; exit 1; }}"]
    lines = [f"o=$(stat -c '%u %g %U %G %a' -- {w}) && set -- $o || {fail} upload; exit 1; }}"]
    if own is not None:
        checks = [f"{{ [ \"$1\" = {q(f.owner)} ] || [ \"$3\" = {q(f.owner)} ]; }}"] if f.owner else []
        checks += [f"{{ [ \"$2\" = {q(f.group)} ] || [ \"$4\" = {q(f.group)} ]; }}"] if f.group else []
        lines.append(f"{' && '.join(checks)} || {fail} owner-declared; exit 1; }}")
    elif fact.uid is not None:
        lines.append(f"[ \"$1:$2\" = {fact.uid}:{fact.gid} ] || {fail} owner {was} \"$3:$4\"; exit 1; }}")
    lines.append(f"[ \"$5\" = {mode:o} ] || {fail} chmod; exit 1; }}")
    return lines


def _fail(i: int, step: str) -> str:
    """The start of a shell group printing ``FAIL <i> <step>`` (the caller closes it)."""
    return f"{{ printf '%s\\n' '{FAIL} {i} {step}'"


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
    if step == "swapped":
        return DestinationError(f"{f.dest}: the uploaded temporary file {tmp} is no longer a regular file "
                                f"of its own (replaced by a link, or removed, before it was checked: someone else can "
                                f"write to {posixpath.dirname(tmp)}); nothing applied to it, destination left "
                                f"unchanged", output=tail(output))
    if step in ("upload", "size", "checksum"):
        return UploadCorrupted(f"{f.dest}: the uploaded copy differs from {f.src} "
                               f"({step} mismatch; disk full?); destination left unchanged",
                               output=tail(output))
    if step == "owner":
        was, would = (rest + ["?", "?"])[:2]
        return DestinationError(
            f"{f.dest}: the file is owned {was}; pushing as {would.split(':')[0]} would make it "
            f"{would} (the connecting user cannot keep its owner/group). Use become (become: true), "
            f"or declare owner/group for the file (owner:, group:); destination left unchanged",
            output=tail(output))
    if step == "owner-declared":
        return DestinationError(
            f"{f.dest}: cannot give the uploaded file owner/group {_declared_owner(f)} (no such "
            f"user/group, or the connecting user may not chown: use become); destination left "
            f"unchanged", output=tail(output))
    if step in ("acl", "acl-tools"):
        why = ("the host has no getfacl/setfacl to copy it (install the acl package there)"
               if step == "acl-tools" else "copying it to the new file failed")
        return DestinationError(f"{f.dest}: has an ACL (extended permissions) that the new file would "
                                f"lose: {why}; or set 'replace: in-place' to keep the file itself; "
                                f"destination left unchanged", output=tail(output))
    if step == "backup":
        return DestinationError(f"{f.dest}: cannot write a backup beside it, or it changed (or became a "
                                f"symlink) since it was checked; destination left unchanged",
                                output=tail(output))
    if step == "selinux":
        return DestinationError(f"{f.dest}: SELinux is enabled and the replaced file's label could not be "
                                f"given to the new file (chcon --reference); destination left unchanged",
                                output=tail(output))
    if step == "marker":
        return DestinationError("cannot record the pending reload beside the destination; "
                                "destinations left unchanged", output=tail(output))
    return DestinationError(f"{f.dest}: cannot give the uploaded file mode {_mode_of(f, fact):04o} (for "
                            f"setgid, the login user must be in the file's group: use become); destination "
                            f"left unchanged", output=tail(output))


def _mode_of(f: FileSpec, fact: DestFacts) -> int:
    return f.mode if f.mode is not None else (fact.mode if fact.mode is not None else 0o644)


def install(conn: Connection, privilege: Privilege, f: FileSpec, fact: DestFacts, tmp: str) -> None:
    """Put one prepared upload in place: :func:`replace_atomically`, or (``replace: in-place``)
    rewrite the existing file's content.

    :raises DestinationError: the rename or the rewrite failed (a busy target: the message
        suggests ``replace: in-place``).
    :raises RenameUnsupported: see :func:`replace_atomically`.
    """
    if f.replace == "in-place" and fact.state == "file":
        chmod = f" && chmod {f.mode:04o} -- {q(fact.target)}" if f.mode is not None else ""
        own = _declared_owner(f)
        chmod = (f" && chown -- {q(own)} {q(fact.target)}" if own is not None else "") + chmod
        # dd: O_NOFOLLOW (never through a symlink planted since the facts), no O_CREAT
        res = privilege.run(conn, f"dd if={q(tmp)} of={q(fact.target)} oflag=nofollow conv=nocreat "
                                  f"status=none{chmod} && rm -f -- {q(tmp)}")
        if res.exited != 0:
            if "symbolic links" in res.stderr:
                raise DestinationError(f"{f.dest}: became a symlink since it was checked; not written "
                                       f"through it (the file is unchanged)", output=tail(res.stderr))
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
        if fact.state == "link":  # what was there: the link itself, made again with its own text
            r = temp_name(fact.target)
            if fact.link:
                lines.append(f"{{ ln -s -- {q(fact.link)} {q(r)} && mv -T -f -- {q(r)} {q(fact.target)}; }} "
                             f"|| {{ rm -f -- {q(r)}; rc=1; }}")
            else:
                lines.append(f"printf '%s\\n' {q(f'{fact.target}: the symlink it was could not be read')} >&2; rc=1")
        elif b is None:  # the file did not exist before this run
            lines.append(f"rm -f -- {q(fact.target)} || rc=1")
        elif f.replace == "in-place":
            lines.append(f"cat -- {q(b)} > {q(fact.target)} || rc=1")
        else:
            r = temp_name(fact.target)
            lines.append(f"{{ cp -P -p -- {q(b)} {q(r)} && mv -T -f -- {q(r)} {q(fact.target)}; }} "
                         f"|| {{ rm -f -- {q(r)}; rc=1; }}")
        if fact.sha256 is not None:  # the old bytes are back: checked against the hash read under the lock
            lines.append(f"h=$(sha256sum < {q(fact.target)}) && [ \"${{h%% *}}\" = {fact.sha256} ] "
                         f"|| {{ printf '%s\\n' {q(f'{fact.target}: restored content differs from the backup')} >&2; rc=1; }}")
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
            err = RollbackFailed(f"{why}; previous files restored but reloading them failed too "
                                 f"(exit {res.exited}) — this host needs attention",
                                 output=tail(output + "\n" + res.stdout + res.stderr))
            err.changes = ()  # the previous files are back: none of this run's stays
            raise err
    err = ReloadFailed(f"{why}; rolled back: previous files restored"
                       f"{' and reloaded' if job.reload else ''}", output=tail(output))
    err.rolled_back = True
    raise err


def prune_line(target: str, keep: int) -> str:
    """Shell line removing all but the newest ``keep`` backups of ``target``.

    Only real backups count: regular files (not links, not folders) named exactly as this
    tool names them, ``<name>.concurdeploy-<UTC time>-<6 hex>.bak`` (time to the second from
    earlier versions, to the nanosecond since; names sort by time, older style first).
    """
    d, base = posixpath.split(target)
    digits = lambda n: "[0-9]" * n  # noqa: E731
    stem = f"{q(d)}/{q(base)}.concurdeploy-{digits(8)}T{digits(6)}"
    run = "[0-9a-f]" * 6
    globs = f"{stem}Z-{run}.bak {stem}.{digits(9)}Z-{run}.bak"
    real = '[ -f "$b" ] && [ ! -L "$b" ]'
    return (f"(LC_ALL=C; n=0; for b in {globs}; do if {real}; then n=$((n+1)); fi; done; "
            f"for b in {globs}; do if {real} && [ $n -gt {keep} ]; then rm -f -- \"$b\"; n=$((n-1)); fi; done)")


def prune_backups(conn: Connection, privilege: Privilege, items: list[Item], keep: int) -> None:
    """Remove all but the newest ``keep`` backups of each replaced existing file."""
    lines = [prune_line(fact.target, keep) for f, fact, _ in items if _has_bytes(fact)]
    if lines:
        privilege.run(conn, "\n".join(lines) + "\ntrue\n")
