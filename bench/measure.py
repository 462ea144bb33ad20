"""Measuring one command: wall time, controller CPU (user+sys of its whole process tree) and
controller peak memory (RSS summed over its processes, sampled every ~20 ms).

- CPU, cgroup method (used when this process may create cgroups, i.e. as root with a cgroup v2
  hierarchy mounted): the command starts inside a fresh cgroup v2 group of its own (a tiny
  ``sh`` writes its PID into ``cgroup.procs`` and ``exec``s the command), so it and every process
  it starts — fork server, workers, resource tracker, ssh masters, however they are parented —
  are counted in that group's ``cpu.stat`` (``usage_usec``, user+system), read once nothing is
  left in the group (leftovers are killed through ``cgroup.kill``). sshd and the delay relay are
  not in it (they run before, outside it).
- CPU, rusage method (always measured too; the only one without cgroups): ``resource.getrusage(RUSAGE_CHILDREN)`` before and after. This process is made a
  *child subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``), so processes that the tool leaves
  behind (multiprocessing's fork server, ssh ControlPersist masters) are re-parented to us;
  they are stopped and reaped after the wall time is taken, so their CPU is counted too.
- Memory: a sampler thread walks the process tree below this process every ~20 ms through
  ``/proc/PID/task/TID/children`` (only the subtree, not all of /proc), skipping the
  servers' (sshd, delay proxy) subtrees, and sums ``/proc/PID/statm`` resident pages.
  Summed RSS counts pages shared between processes (e.g. forked workers) once per process.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field

PAGE = os.sysconf("SC_PAGE_SIZE")
SAMPLE_S = 0.02


def cgroup2_root() -> str | None:
    """Where a cgroup v2 hierarchy is mounted (``/sys/fs/cgroup`` or, on a hybrid layout,
    ``/sys/fs/cgroup/unified``), if this process can create a group in it; else None."""
    try:
        with open("/proc/mounts") as f:
            mounts = [line.split()[1] for line in f if line.split()[2:3] == ["cgroup2"]]
    except OSError:
        return None
    for root in mounts:
        probe = os.path.join(root, f"cdbench-probe-{os.getpid()}")
        try:
            os.mkdir(probe)
            os.rmdir(probe)
            return root
        except OSError:
            continue
    return None


class CpuCgroup:
    """One cgroup v2 group for one measured command (see the module doc)."""

    _n = 0

    def __init__(self, root: str):
        CpuCgroup._n += 1
        self.path = os.path.join(root, f"cdbench-{os.getpid()}-{CpuCgroup._n}")
        os.mkdir(self.path)

    def wrap(self, cmd: list[str]) -> list[str]:
        """``cmd`` started inside this group (a ``sh`` moves itself in, then ``exec``s it)."""
        return ["/bin/sh", "-c", f'echo $$ > {self.path}/cgroup.procs && exec "$@"', "sh", *cmd]

    def procs(self) -> list[int]:
        try:
            with open(os.path.join(self.path, "cgroup.procs")) as f:
                return [int(x) for x in f.read().split()]
        except OSError:
            return []

    def kill(self) -> None:
        try:
            with open(os.path.join(self.path, "cgroup.kill"), "w") as f:
                f.write("1")
        except OSError:
            for p in self.procs():
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def cpu(self) -> tuple[float, float]:
        """(user s, system s) of everything that ever ran in the group."""
        st = {}
        with open(os.path.join(self.path, "cpu.stat")) as f:
            for line in f:
                k, v = line.split()
                st[k] = int(v)
        return st.get("user_usec", 0) / 1e6, st.get("system_usec", 0) / 1e6

    def close(self, timeout: float = 5.0) -> None:
        end = time.monotonic() + timeout
        while True:
            try:
                os.rmdir(self.path)
                return
            except OSError:
                if time.monotonic() > end:
                    return
                time.sleep(0.02)


def become_subreaper() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except Exception:
        return False


def _children(pid: int, all_threads: bool) -> list[int]:
    out: list[int] = []
    tids = [pid]
    if all_threads:
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            continue
    return out


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


class Sampler(threading.Thread):
    """Peak of summed RSS over the descendants of this process, minus ``exclude`` subtrees.

    A child caught between fork/vfork and exec still shows *this* process's RSS (≈45 MiB);
    such pre-exec clones (same command line as ours) are not counted.
    """

    def __init__(self, exclude: set[int]):
        super().__init__(daemon=True)
        self.exclude = exclude
        self._mine = _cmdline(os.getpid())
        self._execd: set[int] = set()
        self.peak = 0
        self.peak_procs = 0
        self._stop_evt = threading.Event()
        self._known: set[int] = set()

    def run(self) -> None:
        me = os.getpid()
        n = 0
        while not self._stop_evt.is_set():
            full = n % 10 == 0  # every ~0.2 s also look at children forked by non-main threads
            seen = set()
            todo = [p for p in _children(me, True) if p not in self.exclude]
            todo += [p for p in self._known if p not in self.exclude]
            while todo:
                p = todo.pop()
                if p in seen or p in self.exclude:
                    continue
                seen.add(p)
                todo += _children(p, full)
            total = 0
            alive = set()
            for p in seen:
                if p not in self._execd:
                    if _cmdline(p) == self._mine:
                        continue
                    self._execd.add(p)
                r = _rss(p)
                if r:
                    total += r
                    alive.add(p)
            if full:
                self._known = alive
            if total > self.peak:
                self.peak = total
                self.peak_procs = len(alive)
            n += 1
            self._stop_evt.wait(SAMPLE_S)

    def stop(self) -> None:
        self._stop_evt.set()
        self.join(2)


@dataclass
class Measurement:
    wall_s: float
    cpu_s: float
    peak_rss: int
    peak_procs: int
    returncode: int
    stdout: str = ""
    stderr: str = ""
    leftovers: int = 0
    extra: dict = field(default_factory=dict)
    cpu_rusage_s: float = 0.0   # the rusage method's figure (cpu_s is the cgroup's when measured)
    cpu_method: str = "rusage"


def _orphans(exclude: set[int]) -> list[int]:
    return [p for p in _children(os.getpid(), True) if p not in exclude]


def _reap(pids: list[int], timeout: float) -> list[int]:
    """waitpid each (they are our children as subreaper); return those still alive after timeout."""
    end = time.monotonic() + timeout
    left = list(pids)
    while left:
        still = []
        for p in left:
            try:
                got, _ = os.waitpid(p, os.WNOHANG)
            except ChildProcessError:
                continue
            if got == 0:
                still.append(p)
        left = still
        if not left or time.monotonic() > end:
            break
        time.sleep(0.01)
    return left


_CG_ROOT: list = []  # [root or None], probed once


def run_measured(cmd: list[str], *, exclude: set[int], env: dict | None = None, cwd: str | None = None,
                 timeout: float = 1800, stdin_path: str | None = None,
                 linger_ok: float = 5.0) -> Measurement:
    """Run ``cmd`` to completion and measure it (see module doc).

    :param exclude: PIDs of long-running servers below us (their subtrees are not the controller's).
    :param linger_ok: seconds to let left-behind processes exit by themselves before SIGTERM.
    """
    if not _CG_ROOT:
        _CG_ROOT.append(cgroup2_root())
    group = CpuCgroup(_CG_ROOT[0]) if _CG_ROOT[0] else None
    if group:
        cmd = group.wrap(cmd)
    already = set(_children(os.getpid(), True))  # servers etc.: never treated as left-behind
    exclude = set(exclude) | already
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    sampler = Sampler(exclude)
    stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
    sampler.start()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=stdin, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        err += b"\n[bench] killed after timeout"
    wall = time.perf_counter() - t0
    if stdin_path:
        stdin.close()
    orphans = _orphans(exclude | {proc.pid})
    left = _reap(orphans, linger_ok)
    for p in left:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    left = _reap(left, 5.0)
    for p in left:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _reap(left, 2.0)
    sampler.stop()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    m = Measurement(wall, cpu, sampler.peak, sampler.peak_procs, proc.returncode,
                    out.decode(errors="replace"), err.decode(errors="replace"), cpu_rusage_s=cpu)
    if group:
        if group.procs():  # left in the group however they were parented: end them, count them
            m.leftovers = len(group.procs())
            group.kill()
            end = time.monotonic() + 5
            while group.procs() and time.monotonic() < end:
                time.sleep(0.02)
            _reap(_orphans(exclude | {proc.pid}), 1.0)
        user, system = group.cpu()
        m.cpu_s, m.cpu_method = user + system, "cgroup"
        group.close()
    return m
