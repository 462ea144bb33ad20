"""What the host says about each destination, read in one command (one round trip).

Per destination: whether it exists, the path that will be written (``target``: its directory
resolved to the real path on the host, so a folder reached through a symlink is the folder it
points to), its mode, owner, size and SHA-256, and whether it is a mount point (a file
bind-mounted, e.g. into a container: a rename cannot replace it). A symlinked destination is not
followed (state ``link``: the link itself is replaced by the file, as Ansible does; its own text
and the bytes it points to are read, for the backup, the diff and a rollback) unless the file's
entry says ``follow: true``: then its real target (``readlink -e``) is the path written, and a
dangling link is state ``dangling``. The push reads them under a lock
(:func:`lock_and_facts_script`: an exclusive ``flock`` on a 0600 ``.concurdeploy.lock`` in
every real directory written, each once, taken in sorted order and held until the push ends,
so two runs never interleave on a host, and a user who cannot write the directory cannot
hold it); :func:`gather_facts` reads them without one. The remote side needs a POSIX ``sh``
and coreutils (``sha256sum``, ``stat``, ``readlink``, ``base64``, ``sort``).
"""
from __future__ import annotations

import base64
import posixpath
from dataclasses import dataclass

from concurdeploy.exceptions import RemoteCommandFailed
from concurdeploy.operations.jobs import PushJob
from concurdeploy.operations.shell import BUSY, ID, OWNER, PENDING, READY, WARN, q
from concurdeploy.records import tail
from concurdeploy.ssh.connection import Connection

__all__ = ["DestFacts", "facts_script", "gather_facts", "lock_and_facts_script", "owner_of", "parse_facts"]

_FACTS_FN = r"""cd_mounts=$(cut -d' ' -f5 /proc/self/mountinfo 2>/dev/null) || cd_mounts=ALL
cd_nl='
'
cd_real() {
  if cd_r=$(readlink -e -- "$1" && echo x); then cd_r=${cd_r%??}; else cd_r=; fi
}
cd_where() {
  cd_s=; cd_w=$1; cd_r=${3-}
  if [ "$2" = 1 ] && [ -L "$1" ] && cd_real "$1" && [ -n "$cd_r" ]; then
    cd_w=$cd_r
  else
    [ "$2" = 1 ] && [ -L "$1" ] && cd_s=dangling
    d=${1%/*}; [ -n "$d" ] || d=/
    [ -n "$cd_r" ] || cd_real "$d"  # ($3: its real path, resolved once; "-": none, it is missing)
    [ -z "$cd_r" ] || [ "$cd_r" = - ] || cd_w=${cd_r%/}/${1##*/}
  fi
  case $cd_w in *"$cd_nl"*) cd_s=badpath; cd_w=$1; cd_ld= ; return 0 ;; esac
  cd_ld=${cd_w%/*}; [ -n "$cd_ld" ] || cd_ld=/
}
cd_fact() {
  t=$3
  if [ -n "$2" ]; then printf '%s\t%s\n' "$2" "$t"; return 0; fi
  if [ -L "$t" ]; then
    if [ -d "$t" ]; then printf 'linkdir\t%s\n' "$t"; return 0; fi
    l=$(readlink -- "$t" | base64 -w0)
    if [ -f "$t" ] && s=$(sha256sum < "$t") && z=$(stat -L -c %s -- "$t"); then
      printf 'link\t%s\t%s\t%s\t%s\n' "${l:--}" "$z" "${s%% *}" "$t"
    else printf 'link\t%s\t-\t-\t%s\n' "${l:--}" "$t"
    fi
    return 0
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
        ``linkdir`` (a symlink to a directory, not followed) | ``dangling`` (``follow``, no target) |
        ``badpath`` (the real path holds a line break).
    :param target: the path that will be written, its directory resolved to its real path on
        the host (``readlink -e``: a symlinked folder is the folder it points to): ``dest``
        there, or (``follow``) the file it links to.
    :param mode: permission bits (``int``) of an existing file, else None.
    :param uid, gid: numeric owner and group; ``owner``, ``group``: their names (existing file).
    :param size: bytes; ``sha256``: hex digest (an existing file; for ``link``, the file the link
        points to, when it is one: the bytes a replace takes away).
    :param mount: the existing file is a mount point (bind mount: cannot be renamed over).
    :param link: for ``link``, the symlink's own text (``readlink``), to put the link back on a
        rollback; None when unknown.
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
    link: str | None = None


def _where_lines(dests: list[str], follows: list[bool]) -> list[str]:
    """Shell lines setting, per destination ``i``, ``cd_s<i>`` (a state decided already, or
    empty), ``cd_w<i>`` (the path written) and ``cd_d<i>`` (its real directory, to lock). Each
    declared directory is resolved once (one ``readlink`` for all its files)."""
    dirs = {d: j for j, d in enumerate(dict.fromkeys(posixpath.dirname(d) or "/" for d in dests))}
    lines = [f"cd_real {q(d)}; cd_r{j}=${{cd_r:--}}" for d, j in dirs.items()]
    for i, (dest, follow) in enumerate(zip(dests, follows)):
        j = dirs[posixpath.dirname(dest) or "/"]
        lines.append(f"cd_where {q(dest)} {1 if follow else 0} \"$cd_r{j}\"; cd_s{i}=$cd_s; cd_w{i}=$cd_w; cd_d{i}=$cd_ld")
    return lines


def _fact_lines(dests: list[str]) -> list[str]:
    """Shell lines printing one fact line per destination (after :func:`_where_lines`)."""
    return [f"cd_fact {q(dest)} \"$cd_s{i}\" \"$cd_w{i}\"" for i, dest in enumerate(dests)]


def facts_script(dests: list[str], follows: list[bool]) -> str:
    """The script printing each destination's fact line, without locking (:func:`gather_facts`)."""
    return "\n".join([_FACTS_FN, *_where_lines(dests, follows), *_fact_lines(dests)]) + "\n"


def gather_facts(conn: Connection, dests: list[str], follow: list[bool] | None = None) -> list[DestFacts]:
    """Ask the host about every destination in one command (one round trip), without locking.

    :param dests: absolute remote paths.
    :param follow: per destination, follow a symlink to its target (default: no).
    :returns: one :class:`DestFacts` per destination, in order.
    :raises RemoteCommandFailed: the facts command failed (no POSIX shell/coreutils?).
    """
    follow = follow or [False] * len(dests)
    res = conn.run(facts_script(dests, follow))
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


def _lock_lines(wait: float, create: bool = True) -> list[str]:
    """Shell lines taking an exclusive ``flock`` on ``<dir>/.concurdeploy.lock`` for every
    directory in ``$cd_dirs`` (real paths, one a line, sorted and unique: a folder reached
    through two symlinked paths is locked once, and two runs take locks in one order, so
    they never deadlock).

    Locks are taken up to seven at a time on fds 3-9; each batch is then handed to a holder
    process (``tail --pid``) that keeps the fds open until the script's shell exits (also when
    it is killed), and the fds are reused. A directory where the lock file cannot be created
    (not writable by the connecting user) is locked itself, with a ``WARN - nolockfile`` note.
    With ``create`` False (check mode: nothing is written on the host) an existing lock file is
    locked, else the directory itself, without a note.
    """
    busy = f"{{ printf '%s %s\\n' {BUSY} \"$d\"; kill $cd_holders 2>/dev/null; exit 75; }}"
    if create:
        take = ("if [ ! -L \"$lf\" ] && { (umask 077; : >> \"$lf\") && eval \"command exec $cd_fd>>\\\"\\$lf\\\"\"; } "
                f"2>/dev/null; then :; else printf '%s - nolockfile %s\\n' {WARN} \"$d\"; "
                "eval \"command exec $cd_fd<\\\"\\$d\\\"\"; fi")
    else:
        take = ("if [ -f \"$lf\" ] && [ ! -L \"$lf\" ] && { eval \"command exec $cd_fd<\\\"\\$lf\\\"\"; } "
                "2>/dev/null; then :; else eval \"command exec $cd_fd<\\\"\\$d\\\"\"; fi")
    fds = " ".join(f"{fd}>&-" for fd in _LOCK_FDS)
    return [
        "cd_holders=; cd_fd=3",
        "cd_hold() { tail --pid=$$ -s 0.2 -f /dev/null </dev/null >/dev/null 2>&1 & "
        f"cd_holders=\"$cd_holders $!\"; exec {fds}; cd_fd=3; }}",
        "set -f; IFS=$cd_nl",
        "for d in $cd_dirs; do IFS=$cd_ifs",
        f"  if [ -d \"$d\" ]; then lf=${{d%/}}/{LOCK_NAME}; {take}",
        f"    flock -w {wait:g} $cd_fd || {busy}",
        f"    cd_fd=$((cd_fd+1)); [ $cd_fd -le {_LOCK_FDS[-1]} ] || cd_hold",
        "  fi",
        "done",
        "IFS=$cd_ifs; set +f",
        "[ $cd_fd -eq 3 ] || cd_hold",
    ]


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


def _sweep_lines() -> list[str]:
    """Shell lines removing what runs that died left (:data:`_SWEEP_FN`): temporary uploads in
    each real directory written (``$cd_dirs``, now locked; with ``follow`` the link target's),
    and this tool's staging files in ``/tmp`` (``become``). A file whose run is still alive is kept."""
    temps = f".*.concurdeploy-{_HEX32}*"
    return [_SWEEP_FN.rstrip("\n"),
            "set -f; IFS=$cd_nl",
            "for d in $cd_dirs; do IFS=$cd_ifs",
            f"  [ -d \"$d\" ] && {{ set +f; cd_sweep \"$d\" \"${{d%/}}\"/{temps}; set -f; }}",
            "done", "IFS=$cd_ifs; set +f",
            f"cd_sweep /tmp /tmp/.concurdeploy-stage-{_HEX32}*"]


def lock_and_facts_script(job: PushJob, marker: str | None) -> str:
    """Resolve every destination to the path written (:data:`_FACTS_FN` ``cd_where``: its
    directory's real path, or with ``follow`` the file its link points to), lock each real
    directory once (:func:`_lock_lines`: ``flock -w lock_timeout`` on its ``.concurdeploy.lock``,
    sorted, held until the controller sends a line or closes stdin), remove stale temporary
    uploads there, then report facts, the numeric ids of declared owner/group names, and
    whether the owed-reload ``marker`` exists; prints ``READY`` last.

    Exits 75 with a ``BUSY <dir>`` line when a lock is not had in time.
    """
    dests = [f.dest for f in job.files]
    lines = ["set -u", _FACTS_FN, "cd_ifs=$IFS", *_where_lines(dests, [f.follow for f in job.files])]
    listed = " ".join(f'"$cd_d{i}"' for i in range(len(job.files)))
    lines.append(f"cd_dirs=$(printf '%s\\n' {listed} | LC_ALL=C sort -u)")
    lines.append("if command -v flock >/dev/null 2>&1; then")
    lines += ["  " + ln for ln in _lock_lines(job.lock_timeout, create=not job.check)]
    lines.append(f"else printf '%s\\n' '{WARN} - noflock'; fi")
    # the run's owner: the first lock holder (it exits, releasing the locks, when the run
    # ends however it ends), else (no flock) this shell
    lines.append(f"set -- ${{cd_holders:-}}; printf '%s %s\\n' {OWNER} \"${{1:-$$}}\"; set --")
    if not job.check:  # check mode removes nothing either
        lines += _sweep_lines()
    lines += _fact_lines(dests)
    for kind, name in sorted({("u", f.owner) for f in job.files if f.owner and not f.owner.isdigit()}
                             | {("g", f.group) for f in job.files if f.group and not f.group.isdigit()}):
        db = "passwd" if kind == "u" else "group"
        lines.append(f"printf '%s %s %s %s\\n' {ID} {kind} {q(name)} \"$(getent {db} {q(name)} | cut -d: -f3)\"")
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


def _fact(dest: str, line: str) -> DestFacts:
    """One fact line (the target, which may hold tabs, is its last field)."""
    state = line.split("\t", 1)[0]
    if state in ("file", "mount"):
        _, stats, sha, target = line.split("\t", 3)
        mode, uid, gid, size, owner, group = stats.split(":", 5)
        return DestFacts(dest, "file", target, int(mode, 8), int(uid), int(gid), int(size), sha, owner, group,
                         state == "mount")
    if state == "link":
        _, text, size, sha, target = line.split("\t", 4)
        link = None if text == "-" else base64.b64decode(text).decode("utf-8", "surrogateescape")
        if link is not None and link.endswith("\n"):  # readlink's own line break
            link = link[:-1]
        return DestFacts(dest, "link", target, size=None if size == "-" else int(size),
                         sha256=None if sha == "-" else sha, link=link)
    return DestFacts(dest, state, line.split("\t", 1)[-1])


def owner_of(text: str) -> int | None:
    """The PID the facts script names as holding this run's locks (``OWNER`` line), or None.
    Named in the run's temporary files, so that a later run can tell whether their run is
    over (:data:`_SWEEP_FN`)."""
    for ln in text.splitlines():
        if ln.startswith(OWNER + " ") and ln[len(OWNER) + 1:].isdigit():
            return int(ln[len(OWNER) + 1:])
    return None


def parse_facts(dests: list[str], text: str) -> tuple[list[DestFacts], bool, list[str], dict]:
    """Read the facts script's output.

    :returns: ``(facts per destination, reload pending, notes for the result's warnings,
        ids)``; ``ids``: ``("u" | "g", name)`` → numeric id (or None: no such user/group on the
        host) for each declared owner/group name.
    :raises RemoteCommandFailed: not one fact line per destination.
    """
    facts, pending, notes, ids = [], False, [], {}
    rows = []
    for ln in text.split("\n"):
        if ln == PENDING:
            pending = True
        elif ln.startswith(f"{ID} "):
            _, kind, name, *num = ln.split(" ")
            ids[(kind, name)] = int(num[0]) if num and num[0].isdigit() else None
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
    try:
        facts = [_fact(dest, line) for dest, line in zip(dests, rows)]
    except ValueError:
        raise RemoteCommandFailed("could not read the destinations' state (unexpected output)",
                                  output=tail(text, 2000)) from None
    return facts, pending, notes, ids
