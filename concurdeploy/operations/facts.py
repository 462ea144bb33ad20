"""What the host says about each destination, read in one command (one round trip).

Per destination: whether it exists, the path that will be written (``target``), its mode,
owner, size and SHA-256, and whether it is a mount point (a file bind-mounted, e.g. into a
container: a rename cannot replace it). A symlinked destination is not followed (state
``link``: the link itself is replaced by the file, as Ansible does) unless the file's entry
says ``follow: true``: then its real target (``readlink -e``) is the path written, and a
dangling link is state ``dangling``. The push reads
them under a lock (:func:`lock_and_facts_script`: an exclusive ``flock`` on a 0600
``.concurdeploy.lock`` in every destination directory, taken in sorted order and held until
the push ends, so two runs never interleave on a host, and a user who cannot write the
directory cannot hold it);
:func:`gather_facts` reads them without one. The remote side needs a POSIX ``sh`` and
coreutils (``sha256sum``, ``stat``, ``readlink``).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from concurdeploy.exceptions import RemoteCommandFailed
from concurdeploy.operations.jobs import PushJob
from concurdeploy.operations.shell import BUSY, OWNER, PENDING, READY, WARN, q
from concurdeploy.records import tail
from concurdeploy.ssh.connection import Connection

__all__ = ["DestFacts", "gather_facts", "lock_and_facts_script", "owner_of", "parse_facts"]

_FACTS_FN = r"""cd_mounts=$(cut -d' ' -f5 /proc/self/mountinfo 2>/dev/null) || cd_mounts=ALL
cd_fact() {
  t=$1
  if [ -L "$t" ]; then
    if [ "$2" = 1 ]; then
      t=$(readlink -e -- "$1") || { printf 'dangling\t%s\n' "$1"; return 0; }
    elif [ -d "$t" ]; then printf 'linkdir\t%s\n' "$t"; return 0
    else printf 'link\t%s\n' "$t"; return 0
    fi
  fi
  dir=${t%/*}; [ -n "$dir" ] || dir=/
  if [ ! -d "$dir" ]; then printf 'nodir\t%s\n' "$t"; return 0; fi
  if [ -d "$t" ]; then printf 'isdir\t%s\n' "$t"; return 0; fi
  if [ ! -e "$t" ]; then printf 'absent\t%s\n' "$t"; return 0; fi
  if [ ! -f "$t" ]; then printf 'notreg\t%s\n' "$t"; return 0; fi
  s=$(sha256sum < "$t") || { printf 'unreadable\t%s\n' "$t"; return 0; }
  m=file  # a mount point? mountpoint(1) only for paths in mountinfo (or with escaped characters)
  case $t in
    *[[:space:]\\]*) mountpoint -q -- "$t" 2>/dev/null && m=mount ;;
    *) case $cd_mounts in ALL|*"$t"*) mountpoint -q -- "$t" 2>/dev/null && m=mount ;; esac ;;
  esac
  printf '%s\t%s\t%s\t%s\n' "$m" "$(stat -c '%a:%u:%g:%s:%U:%G' -- "$t")" "${s%% *}" "$t"
}
"""


@dataclass(frozen=True)
class DestFacts:
    """What the host says about one destination.

    :param state: ``file`` | ``absent`` | ``nodir`` (parent directory missing) | ``isdir`` |
        ``notreg`` (device, fifo, …) | ``unreadable`` | ``link`` (a symlink, not followed) |
        ``linkdir`` (a symlink to a directory, not followed) | ``dangling`` (``follow``, no target).
    :param target: the path that will be written: ``dest``, or (``follow``) the file it links to.
    :param mode: permission bits (``int``) of an existing file, else None.
    :param uid, gid: numeric owner and group; ``owner``, ``group``: their names (existing file).
    :param size: bytes; ``sha256``: hex digest (existing file only).
    :param mount: the existing file is a mount point (bind mount: cannot be renamed over).
    """

    dest: str
    state: str
    target: str
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    size: int | None = None
    sha256: str | None = None
    owner: str | None = None
    group: str | None = None
    mount: bool = False


def _fact_line(dest: str, follow: bool) -> str:
    return f"cd_fact {q(dest)} {1 if follow else 0}\n"


def gather_facts(conn: Connection, dests: list[str], follow: list[bool] | None = None) -> list[DestFacts]:
    """Ask the host about every destination in one command (one round trip), without locking.

    :param dests: absolute remote paths.
    :param follow: per destination, follow a symlink to its target (default: no).
    :returns: one :class:`DestFacts` per destination, in order.
    :raises RemoteCommandFailed: the facts command failed (no POSIX shell/coreutils?).
    """
    follow = follow or [False] * len(dests)
    res = conn.run(_FACTS_FN + "".join(_fact_line(d, fl) for d, fl in zip(dests, follow)))
    if res.exited != 0:
        raise RemoteCommandFailed(
            "could not read the destinations' state (the host needs sh, sha256sum, stat, readlink)",
            output=tail(res.stdout + res.stderr, 2000), exit_status=res.exited)
    return parse_facts(dests, res.stdout)[0]


#: The lock file in each destination directory: created 0600 by the pushing user (root with
#: become), so a user who cannot write there cannot open it, let alone hold its lock.
LOCK_NAME = ".concurdeploy.lock"

#: File descriptors a batch of locks is taken on (POSIX sh redirects only 0-9).
_LOCK_FDS = range(3, 10)


def _lock_lines(dirs: list[str], wait: float, create: bool = True) -> list[str]:
    """Shell lines taking an exclusive ``flock`` on ``<dir>/.concurdeploy.lock`` for every
    directory, in the given (sorted) order, so two runs never deadlock.

    Locks are taken up to seven at a time on fds 3-9; each batch is then handed to a holder
    process (``tail --pid``) that keeps the fds open until the script's shell exits (also when
    it is killed), and the fds are reused. A directory where the lock file cannot be created
    (not writable by the connecting user) is locked itself, with a ``WARN - nolockfile`` note.
    With ``create`` False (check mode: nothing is written on the host) an existing lock file is
    locked, else the directory itself, without a note.
    """
    lines = ["cd_holders="]
    for start in range(0, len(dirs), len(_LOCK_FDS)):
        batch = dirs[start:start + len(_LOCK_FDS)]
        for fd, d in zip(_LOCK_FDS, batch):
            lf = q(posixpath.join(d, LOCK_NAME))
            busy = f"{{ printf '%s %s\\n' {BUSY} {q(d)}; kill $cd_holders 2>/dev/null; exit 75; }}"
            if create:
                take = (f"if [ ! -L {lf} ] && {{ (umask 077; : >> {lf}) && command exec {fd}>>{lf}; }} 2>/dev/null; "
                        f"then :; else printf '%s - nolockfile %s\\n' {WARN} {q(d)}; command exec {fd}<{q(d)}; fi; ")
            else:
                take = (f"if [ -f {lf} ] && [ ! -L {lf} ] && {{ command exec {fd}<{lf}; }} 2>/dev/null; "
                        f"then :; else command exec {fd}<{q(d)}; fi; ")
            lines.append(f"if [ -d {q(d)} ]; then {take}"
                         f"flock -w {wait:g} {fd} || {busy}; else exec {fd}<&-; fi")
        fds = " ".join(f"{fd}>&-" for fd in _LOCK_FDS[:len(batch)])
        lines.append("tail --pid=$$ -s 0.2 -f /dev/null </dev/null >/dev/null 2>&1 & "
                     f"cd_holders=\"$cd_holders $!\"; exec {fds}")
    return lines


_HEX32 = "[0-9a-f]" * 32

#: ``cd_sweep LABEL FILE…``: remove each FILE (a temporary upload or staging file of this tool)
#: left by a run that is over: its name ends ``-<PID>`` (before any suffix) of the process
#: that held the run's locks (:func:`owner_of`), and that process has ended (gone, or a zombie
#: nobody reaps: its locks went with its exit); a name without a PID (older versions) once it
#: is 10 minutes old. Prints ``WARN - swept N LABEL`` when it removed any. ``cd_alive PID``:
#: the process runs (without ``/proc``: ``kill -0``).
_SWEEP_FN = r"""cd_alive() {
  if [ -d /proc/self ]; then
    cd_s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    cd_s=${cd_s##*) }; cd_s=${cd_s%% *}
    [ "$cd_s" != Z ] && [ "$cd_s" != X ]
  else kill -0 "$1" 2>/dev/null; fi
}
cd_sweep() {
  cd_l=$1; cd_n=0; shift
  for cd_f do
    [ -f "$cd_f" ] && [ ! -L "$cd_f" ] || continue
    cd_p=${cd_f##*/}; cd_p=${cd_p#*-HEX32}
    case $cd_p in
      -[0-9]*) cd_p=${cd_p#-}; cd_p=${cd_p%%[!0-9]*}
               if [ "$cd_p" -le 1 ] || cd_alive "$cd_p"; then continue; fi ;;
      *) [ -n "$(find "$cd_f" -maxdepth 0 -mmin +10 2>/dev/null)" ] || continue ;;
    esac
    rm -f -- "$cd_f" 2>/dev/null && cd_n=$((cd_n+1))
  done
  [ "$cd_n" -eq 0 ] || printf '%s - swept %s %s\n' WARN "$cd_n" "$cd_l"
}
""".replace("HEX32", _HEX32).replace("WARN", WARN)


def _sweep_lines(job: PushJob, dirs: list[str]) -> list[str]:
    """Shell lines removing what runs that died left (:data:`_SWEEP_FN`): temporary uploads in
    each destination directory (now locked) and beside each followed link's target, and this
    tool's staging files in ``/tmp`` (``become``). A file whose run is still alive is kept."""
    temps = f".*.concurdeploy-{_HEX32}*"
    lines = [_SWEEP_FN.rstrip("\n")]
    lines += [f"cd_sweep {q(d)} {q(d)}/{temps}" for d in dirs]
    for f in job.files:
        if f.follow:
            lines.append(f"cd_t=$(readlink -e -- {q(f.dest)} 2>/dev/null) && "
                         f"cd_sweep \"${{cd_t%/*}}\" \"${{cd_t%/*}}\"/{temps}")
    lines.append(f"cd_sweep /tmp /tmp/.concurdeploy-stage-{_HEX32}*")
    return lines


def lock_and_facts_script(job: PushJob, marker: str | None) -> str:
    """Lock every destination directory (:func:`_lock_lines`: ``flock -w lock_timeout`` on its
    ``.concurdeploy.lock``, sorted, held until the controller sends a line or closes stdin),
    remove stale temporary uploads there, then report facts and whether the owed-reload
    ``marker`` exists; prints ``READY`` last.

    Exits 75 with a ``BUSY <dir>`` line when a lock is not had in time.
    """
    dirs = sorted({posixpath.dirname(f.dest) or "/" for f in job.files})
    lines = ["set -u", _FACTS_FN, "if command -v flock >/dev/null 2>&1; then"]
    lines += ["  " + ln for ln in _lock_lines(dirs, job.lock_timeout, create=not job.check)]
    lines.append(f"else printf '%s\\n' '{WARN} - noflock'; fi")
    # the run's owner: the first lock holder (it exits, releasing the locks, when the run
    # ends however it ends), else (no flock) this shell
    lines.append(f"set -- ${{cd_holders:-}}; printf '%s %s\\n' {OWNER} \"${{1:-$$}}\"; set --")
    if not job.check:  # check mode removes nothing either
        lines += _sweep_lines(job, dirs)
    lines += [_fact_line(f.dest, f.follow).rstrip("\n") for f in job.files]
    if marker:
        lines.append(f"{{ [ -L {q(marker)} ] || [ -e {q(marker)} ]; }} && printf '%s\\n' {PENDING}")
    # Hold the locks until the controller sends a line or closes stdin (or the connection
    # dies); the holders also end by themselves once this shell is gone.
    # A few empty lines after READY, 0.1 s apart, for servers that relay a line per read
    # (mock-ssh-server: lines written together would wait there for the next write).
    lines += [f"printf '%s\\n' {READY}",
              "(i=0; while [ $i -lt 20 ]; do sleep 0.1; printf '\\n'; i=$((i+1)); done) 2>/dev/null &",
              "cd_holders=\"${cd_holders:-} $!\"",
              "head -n 1 >/dev/null", "kill $cd_holders 2>/dev/null", "exit 0"]
    return "\n".join(lines) + "\n"


def owner_of(text: str) -> int | None:
    """The PID the facts script names as holding this run's locks (``OWNER`` line), or None.
    Named in the run's temporary files, so that a later run can tell whether their run is
    over (:data:`_SWEEP_FN`)."""
    for ln in text.splitlines():
        if ln.startswith(OWNER + " ") and ln[len(OWNER) + 1:].isdigit():
            return int(ln[len(OWNER) + 1:])
    return None


def parse_facts(dests: list[str], text: str) -> tuple[list[DestFacts], bool, list[str]]:
    """Read the facts script's output.

    :returns: ``(facts per destination, reload pending, notes for the result's warnings)``.
    :raises RemoteCommandFailed: not one fact line per destination.
    """
    facts, pending, notes = [], False, []
    rows = []
    for ln in text.splitlines():
        if ln == PENDING:
            pending = True
        elif ln.startswith(OWNER + " "):
            continue
        elif ln.startswith(f"{WARN} - swept "):
            _, _, _, n, where = ln.split(" ", 4)
            notes.append(f"removed {n} temporary file{'s' if n != '1' else ''} in {where} left by an earlier "
                         f"run that did not finish")
        elif ln.startswith(f"{WARN} - nolockfile "):
            notes.append(f"cannot create {LOCK_NAME} in {ln.split(' ', 3)[3]}: the directory itself is "
                         f"locked (a user who can read it could hold that lock and block pushes)")
        elif ln.startswith(WARN):
            notes.append("flock is not installed on the host: concurrent runs are not kept apart")
        elif ln:
            rows.append(ln)
    if len(rows) != len(dests):
        raise RemoteCommandFailed(
            "could not read the destinations' state (the host needs sh, sha256sum, stat, readlink)",
            output=tail(text, 2000))
    for dest, line in zip(dests, rows):
        parts = line.split("\t")
        if parts[0] in ("file", "mount") and len(parts) == 4:
            mode, uid, gid, size, owner, group = parts[1].split(":", 5)
            facts.append(DestFacts(dest, "file", parts[3], int(mode, 8), int(uid), int(gid),
                                   int(size), parts[2], owner, group, parts[0] == "mount"))
        else:
            facts.append(DestFacts(dest, parts[0], parts[-1]))
    return facts, pending, notes
