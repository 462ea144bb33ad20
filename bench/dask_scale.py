#!/usr/bin/env python3
"""Scale benchmark of ``--executor dask`` (issue 7): the same rollout to as many real OpenSSH hosts
as this machine holds, through the local process pool and through a local Dask cluster of 2
workers, side by side; then a paper estimate for 10,000 and 100,000 hosts from the measured
per-host costs. Writes ``bench/DASK_RESULTS.md`` and ``bench/dask_results.json``.

    python bench/dask_scale.py                      # 1024 hosts (64 sshd x 16 ports), 2 runs each
    python bench/dask_scale.py --hosts 128 --runs 1 # quicker

Needs ``pip install -e '.[dask]'`` and OpenSSH (``bash bench/setup.sh`` creates the login user
``cdbench``; without it the hosts log in as the current user).

What it does
    * starts ``ceil(hosts / 16)`` sshd processes on 127.0.0.1, each listening on 16 ports (sshd's
      limit, MAX_LISTEN_SOCKS); every port is one inventory host with its own destination folder;
    * starts a ``distributed.LocalCluster`` (2 worker processes with 2 threads each, loopback) in
      this process: its scheduler runs in this process's event-loop thread;
    * for each run, in alternating order, resets every destination to an older 23 KB haproxy.cfg and
      runs ``concurdeploy push bench --forks F`` with ``--executor local`` and with ``--executor dask``;
      checks afterwards that every destination holds the new bytes (SHA-256) and no temporary file
      is left (a run failing this is reported, not timed);
    * measures wall time, controller CPU (user+sys of the command's whole process tree: for the
      local pool that includes its worker processes) and controller peak memory (summed RSS of the
      tree, see bench/measure.py); for the Dask rows also the CPU of the 2 Dask workers and of the
      scheduler (the threads of this process other than the main one, which only waits).
      The command runs under a small launcher (``--launch``, this file) that is the *child
      subreaper* of the command's tree only and reports that tree's CPU: this benchmark itself is
      no subreaper, so processes orphaned on the sshd side (session processes whose privileged
      parent exited first) are not counted as the controller's, as they would be otherwise;
    * also runs each executor on one host (fixed costs: start-up, connecting to the scheduler) and
      takes that host's duration as the uncontended per-host latency;
    * estimates, on paper, the wall time for 10,000 and 100,000 hosts (model in the report).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH))

from measure import become_subreaper, run_measured  # noqa: E402 (after the sys.path lines)

from tests.sshd import OpenSSHServer, find_sshd, generate_client_keys  # noqa: E402

PORTS_PER_SSHD = 16  # OpenSSH's MAX_LISTEN_SOCKS
BENCH_USER = "cdbench"
REL = "etc/haproxy/haproxy.cfg"
#: Round trips one push waits for (bench/RESULTS.md, "Where the time goes": 18.5 at RTT 100 ms).
ROUND_TRIPS = 18.5


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def haproxy(maxconn: int) -> bytes:
    from run import haproxy_cfg  # the same 23 KB file as bench/run.py

    return haproxy_cfg(maxconn=maxconn)


class Lab:
    """sshd processes (16 ports each), per-host roots, keys, known_hosts, a project."""

    def __init__(self, n_hosts: int, keep: bool):
        self.n, self.keep = n_hosts, keep
        self.dir = Path(tempfile.mkdtemp(prefix="cddask-", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        self.user, self.uid, self.gid = self._login_user()
        self.keys = generate_client_keys(self.dir / "keys")
        self.servers: list[OpenSSHServer] = []
        self.ports: list[int] = []
        self.project = self.dir / "project"
        self.new, self.old = haproxy(20000), haproxy(10000)

    @staticmethod
    def _login_user():
        try:
            pw = pwd.getpwnam(BENCH_USER)
            if os.geteuid() == 0:
                return pw.pw_name, pw.pw_uid, pw.pw_gid
        except KeyError:
            pass
        pw = pwd.getpwuid(os.getuid())
        return pw.pw_name, pw.pw_uid, pw.pw_gid

    def start(self) -> None:
        n_servers = math.ceil(self.n / PORTS_PER_SSHD)
        log(f"starting {n_servers} sshd x {PORTS_PER_SSHD} ports = {self.n} hosts on 127.0.0.1 "
            f"(work folder {self.dir}, login user {self.user})")
        left = self.n
        for k in range(n_servers):
            srv = OpenSSHServer(self.dir / "sshd" / f"s{k}", self.keys, n_ports=min(PORTS_PER_SSHD, left))
            srv.start(timeout=30)
            self.servers.append(srv)
            self.ports += srv.ports
            left -= len(srv.ports)
        (self.dir / "known_hosts").write_text("".join(ln + "\n" for s in self.servers
                                                      for ln in s.known_hosts_lines()))
        for i in range(self.n):
            (self.root(i) / "etc" / "haproxy").mkdir(parents=True, exist_ok=True)
        if self.uid != os.getuid():
            subprocess.run(["chown", "-R", f"{self.uid}:{self.gid}", str(self.dir / "roots")], check=True)
        (self.project / "files").mkdir(parents=True)
        (self.project / "files" / "haproxy.cfg").write_bytes(self.new)
        hosts = {f"h{i + 1}": {"host": "127.0.0.1", "port": self.ports[i], "root": str(self.root(i))}
                 for i in range(self.n)}
        inv = {"all": {"vars": {"user": self.user, "key_file": self.keys.ed25519,
                                "known_hosts": str(self.dir / "known_hosts"),
                                "connect_timeout": 120, "command_timeout": 600},
                       "children": {"bench": {"hosts": hosts, "vars": {
                           "backups": 0,
                           "files": [{"src": "files/haproxy.cfg", "dest": "{{ root }}/" + REL}]}}}}}
        (self.project / "inventory.yaml").write_text(json.dumps(inv, indent=1))  # YAML ⊃ JSON

    def root(self, i: int) -> Path:
        return self.dir / "roots" / f"h{i + 1}"

    def reset(self, n: int) -> None:
        """Every destination of the first ``n`` hosts back to the old file (owned by the login user)."""
        for i in range(n):
            dest = self.root(i) / REL
            dest.write_bytes(self.old)
            if self.uid != os.getuid():
                os.chown(dest, self.uid, self.gid)

    def check(self, n: int) -> str | None:
        """None when the first ``n`` hosts hold the new bytes and no temporary file is left."""
        want = hashlib.sha256(self.new).hexdigest()
        bad = [i for i in range(n) if hashlib.sha256((self.root(i) / REL).read_bytes()).hexdigest() != want]
        temps = [p for p in (self.dir / "roots").rglob(".*concurdeploy-*")]
        if bad or temps:
            return f"{len(bad)} destinations not new, {len(temps)} temporary files left"
        return None

    def server_pids(self) -> set[int]:
        return {s.pid for s in self.servers if s.pid}

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Until no sshd has a session child left (the previous run's connections are gone)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            busy = False
            for pid in self.server_pids():
                try:
                    with open(f"/proc/{pid}/task/{pid}/children") as f:
                        busy = busy or bool(f.read().strip())
                except OSError:
                    pass
            if not busy:
                return
            time.sleep(0.1)

    def stop(self) -> None:
        for s in self.servers:
            s.stop()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def _cpu_of(pid: int) -> float:
    import psutil

    try:
        t = psutil.Process(pid).cpu_times()
        return t.user + t.system
    except psutil.Error:
        return float("nan")


def _thread_cpu() -> dict[int, float]:
    """CPU seconds per thread of this process (the scheduler's event loop lives in one of them)."""
    import psutil

    return {t.id: t.user_time + t.system_time for t in psutil.Process().threads()}


def launch(out: str, cmd: list[str]) -> int:
    """``--launch OUT -- CMD``: run CMD as this process's child, being the subreaper of its tree,
    reap every process of that tree, and write the tree's CPU seconds (user+sys) to OUT."""
    import resource

    become_subreaper()
    proc = subprocess.Popen(cmd)
    code = proc.wait()
    end = time.monotonic() + 30
    while time.monotonic() < end:  # orphans of the tree (forkserver, its workers) are ours now
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            time.sleep(0.02)
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open("/proc/self/statm") as f:  # the launcher's own RSS (steady): not the controller's
        me = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    Path(out).write_text(json.dumps({"cpu_s": ru.ru_utime + ru.ru_stime, "launcher_rss": me}))
    return code


def _concurdeploy() -> list[str]:
    exe = Path(sys.executable).parent / "concurdeploy"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "concurdeploy"]


class Bench:
    def __init__(self, lab: Lab, forks: int, threads: int):
        import distributed

        self.lab, self.forks = lab, forks
        log("starting a LocalCluster: 2 worker processes, loopback")
        self.cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=threads,
                                                host="127.0.0.1", dashboard_address=None,
                                                local_directory=str(lab.dir / "dask"), silence_logs=50)
        self.client = distributed.Client(self.cluster.scheduler_address, set_as_default=False)
        self.client.wait_for_workers(2, timeout=60)
        self.worker_pids = list(self.client.run(os.getpid).values())
        import psutil

        self.cluster_pids = set(self.worker_pids) | {psutil.Process(p).ppid() for p in self.worker_pids}

    def one(self, mode: str, n: int) -> dict:
        lab = self.lab
        lab.reset(n)
        lab.wait_idle()
        rep = lab.dir / f"report-{mode}.json"
        cmd = [*_concurdeploy(), "push", "bench", "-i", "inventory.yaml", "--forks", str(self.forks),
               "--no-progress", "-q", "--report-json", str(rep), "--executor", mode]
        if n < lab.n:
            cmd += ["--limit", ",".join(f"h{i + 1}" for i in range(n))]
        if mode == "dask":
            cmd += ["--scheduler", self.cluster.scheduler_address]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONCURDEPLOY_")}
        load = os.getloadavg()[0]
        w0 = [_cpu_of(p) for p in self.worker_pids]
        t0 = _thread_cpu()
        cpu_file = lab.dir / "tree-cpu.json"
        cpu_file.unlink(missing_ok=True)
        m = run_measured([sys.executable, __file__, "--launch", str(cpu_file), "--", *cmd],
                         exclude=lab.server_pids() | self.cluster_pids, cwd=str(lab.project), env=env,
                         timeout=3600)
        if cpu_file.exists():
            tree = json.loads(cpu_file.read_text())
            m.cpu_s = tree["cpu_s"]
            m.peak_rss -= tree["launcher_rss"]
            m.peak_procs -= 1
        t1 = _thread_cpu()
        w1 = [_cpu_of(p) for p in self.worker_pids]
        main = threading.main_thread().native_id
        sched = sum(t1[t] - t0[t] for t in t1 if t in t0 and t != main)
        problem = None if m.returncode == 0 else f"exit {m.returncode}: {(m.stderr or m.stdout)[-400:]}"
        problem = problem or lab.check(n)
        durations = []
        if rep.exists():
            durations = [h["duration_s"] for h in json.loads(rep.read_text())["hosts"]]
        row = {"mode": mode, "hosts": n, "wall_s": round(m.wall_s, 3), "cpu_s": round(m.cpu_s, 3),
               "peak_rss_mib": round(m.peak_rss / 2**20, 1), "peak_procs": m.peak_procs,
               "host_median_s": round(statistics.median(durations), 3) if durations else None,
               "host_max_s": round(max(durations), 3) if durations else None,
               "load_before": round(load, 1), "problem": problem}
        if mode == "dask":
            row["workers_cpu_s"] = round(sum(b - a for a, b in zip(w0, w1)), 3)
            row["scheduler_cpu_s"] = round(sched, 3)
        log(f"{mode:5} {n:4} hosts: wall {m.wall_s:6.2f} s, controller CPU {m.cpu_s:6.2f} s, "
            f"peak {row['peak_rss_mib']:6.1f} MiB"
            + (f", workers CPU {row['workers_cpu_s']:.2f} s, scheduler CPU {row['scheduler_cpu_s']:.2f} s"
               if mode == "dask" else "") + (f"  PROBLEM: {problem}" if problem else ""))
        return row

    def close(self) -> None:
        self.client.close()
        self.cluster.close(timeout=30)


def _median(rows: list[dict], key: str) -> float:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else float("nan")


def estimate(rows: list[dict], singles: list[dict], n: int) -> dict:
    """Marginal per-host costs ((big run - one-host run) / (n - 1)), fixed costs and the
    uncontended latency from the one-host runs."""
    ok = [r for r in rows if not r["problem"]]
    local = [r for r in ok if r["mode"] == "local"]
    dask = [r for r in ok if r["mode"] == "dask"]
    one = {r["mode"]: r for r in singles if not r["problem"]}

    def per_host(rs: list[dict], mode: str, key: str) -> float:
        base = one.get(mode, {}).get(key, 0.0) or 0.0
        return 1000 * (_median(rs, key) - base) / max(1, n - 1)

    return {
        "hosts": n,
        "local_cpu_ms_per_host": per_host(local, "local", "cpu_s"),
        "dask_controller_cpu_ms_per_host": per_host(dask, "dask", "cpu_s"),
        "dask_scheduler_cpu_ms_per_host": per_host(dask, "dask", "scheduler_cpu_s"),
        "dask_workers_cpu_ms_per_host": per_host(dask, "dask", "workers_cpu_s"),
        "local_fixed_s": one.get("local", {}).get("wall_s", float("nan")),
        "dask_fixed_s": one.get("dask", {}).get("wall_s", float("nan")),
        "host_latency_s": statistics.median([r["host_median_s"] for r in one.values()]) if one else float("nan"),
        "local_mem_mib": _median(local, "peak_rss_mib"),
        "dask_mem_mib": _median(dask, "peak_rss_mib"),
    }


def paper(e: dict, N: int, K: int, rtt_far: float = 0.100, rtt_near: float = 0.001,
          cores: int = 2, forks_local: int = 500, forks_per_worker: int = 200) -> dict:
    """Wall-time model (seconds), see the report for the reasoning."""
    lat_far = e["host_latency_s"] + ROUND_TRIPS * rtt_far
    lat_near = e["host_latency_s"] + ROUND_TRIPS * rtt_near
    def local(cores: int) -> float:
        return e["local_fixed_s"] + max(N * e["local_cpu_ms_per_host"] / 1000 / cores, N * lat_far / forks_local)

    floors = {"workers' CPU": N * e["dask_workers_cpu_ms_per_host"] / 1000 / (K * cores),
              "latency": N * lat_near / (K * forks_per_worker),
              "controller CPU": N * e["dask_controller_cpu_ms_per_host"] / 1000,
              "scheduler CPU": N * e["dask_scheduler_cpu_ms_per_host"] / 1000}
    bound = max(floors, key=floors.get)
    return {"N": N, "K": K, "local_s": local(cores), "local16_s": local(16),
            "dask_s": e["dask_fixed_s"] + floors[bound], "bound": bound}


def _fmt_s(s: float) -> str:
    if s != s:
        return "n/a"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def write_md(path: Path, meta: dict, rows: list[dict], singles: list[dict], e: dict, table: list[dict]) -> None:
    L = ["# concurdeploy on a Dask cluster: scale benchmark (issue 7)", "",
         f"Generated by `python bench/dask_scale.py {meta['args']}` on {meta['date']} "
         f"({meta['minutes']:.1f} min). Raw numbers: `bench/dask_results.json`.", "",
         "## Machine and set-up", "",
         f"- {meta['cores']} cores, {meta['mem_gib']:.1f} GiB RAM, {meta['kernel']}; load average before "
         f"the runs {meta['load']}"
         + (": **other work shared the cores**, so absolute times are upper bounds."
            if float(meta['load'].split(' / ')[0]) > meta['cores'] else
            " (the column *load before* is mostly the previous run's own sshd sessions winding down)."),
         f"- Python {meta['python']}; concurdeploy {meta['version']}; dask/distributed {meta['dask']}; "
         f"paramiko {meta['paramiko']}; {meta['openssh']}",
         f"- **{meta['hosts']} real OpenSSH hosts**: {meta['sshd']} sshd processes on 127.0.0.1, each "
         f"listening on {PORTS_PER_SSHD} ports (sshd's limit); each port is one inventory host with its "
         f"own destination folder; login user `{meta['user']}`; `MaxStartups 200:30:300`.",
         f"- The rollout: `concurdeploy push bench --forks {meta['forks']}` of a 23 KB haproxy.cfg over an "
         f"older one (`backups: 0`); every destination checked (SHA-256) and no temporary file left "
         f"after each run.",
         f"- `local` = `--executor local` (the process pool: one process per core, threads inside). "
         f"`dask` = `--executor dask` against a `distributed.LocalCluster` of **2 worker processes x "
         f"{meta['threads']} threads** on 127.0.0.1 started by the benchmark (the scheduler runs in the "
         f"benchmark's process). The workers, the scheduler, sshd and the command all share the same "
         f"{meta['cores']} cores.",
         "- **controller CPU / memory** = the `concurdeploy` command's whole process tree (user+sys; peak "
         "summed RSS, bench/measure.py). For `local` that includes its worker processes; for `dask` it is "
         "only the controller: the pushes' CPU is on the Dask workers (column *workers CPU*), the "
         "scheduler's in its own column.", "",
         "## Results", "",
         "| executor | hosts | wall s | controller CPU | controller peak mem | workers CPU | scheduler CPU | host median | load before |",
         "|---|---|---|---|---|---|---|---|---|"]
    for r in rows + singles:
        if r["problem"]:
            L.append(f"| {r['mode']} | {r['hosts']} | FAILED: {r['problem']} | | | | | | |")
            continue
        per = 1000 * r["cpu_s"] / r["hosts"]
        wc = f"{r['workers_cpu_s']:.2f} s = {1000 * r['workers_cpu_s'] / r['hosts']:.1f} ms/host" \
            if "workers_cpu_s" in r else "—"
        sc = f"{r['scheduler_cpu_s']:.2f} s = {1000 * r['scheduler_cpu_s'] / r['hosts']:.1f} ms/host" \
            if "scheduler_cpu_s" in r else "—"
        L.append(f"| {r['mode']} | {r['hosts']} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} s = {per:.1f} ms/host | "
                 f"{r['peak_rss_mib']:.0f} MiB ({r['peak_procs']} proc{'s' if r['peak_procs'] != 1 else ''}) | {wc} | {sc} | "
                 f"{r['host_median_s']:.2f} s | {r['load_before']} |")
    L += ["", "Reading: on this machine both executors take about the same wall time, because the 2 cores "
          "are saturated by the SSH work at both ends (sshd and its session processes run here too); "
          "what moves is *where* the CPU is spent: the controller's CPU drops from the whole push "
          "(key exchange, SFTP, hashing in its worker processes) to streaming results, and its memory "
          "from the worker processes to one process. The SSH work moved to the Dask workers, which can "
          "be as many machines as needed, near their hosts.",
          "", "## Measured per-host costs (marginal: (big run - one-host run) / (hosts - 1))", "",
          f"- local pool, controller (all its processes): **{e['local_cpu_ms_per_host']:.1f} ms CPU/host**, "
          f"peak {e['local_mem_mib']:.0f} MiB",
          f"- dask, controller: **{e['dask_controller_cpu_ms_per_host']:.1f} ms CPU/host**, peak "
          f"{e['dask_mem_mib']:.0f} MiB; scheduler: **{e['dask_scheduler_cpu_ms_per_host']:.1f} ms/host**; "
          f"workers: **{e['dask_workers_cpu_ms_per_host']:.1f} ms/host** (the SSH work moved off the controller)",
          f"- fixed cost of one run (one host, wall): local {e['local_fixed_s']:.2f} s, dask {e['dask_fixed_s']:.2f} s "
          f"(importing distributed, connecting, checking the workers)",
          f"- uncontended per-host latency on loopback: {e['host_latency_s']:.2f} s; a push waits for "
          f"{ROUND_TRIPS} round trips (bench/RESULTS.md)", "",
          "## Paper estimate: 10,000 and 100,000 hosts", "",
          "Model, from the per-host costs above (each Python process is one core's worth at most):",
          "",
          "- **one controller** (local pool, 2 or 16 cores, `--forks 500`, hosts 100 ms RTT away): "
          "`fixed + max(N x local CPU/host / cores, N x (latency + 18.5 x RTT) / forks)`;",
          "- **Dask**, K workers of 2 cores each near their hosts (1 ms RTT), 200 hosts in flight per worker "
          "(`--forks 200K`): `fixed + max(N x workers CPU/host / (2K), N x (latency + 18.5 x 1 ms) / (200K), "
          "N x controller CPU/host, N x scheduler CPU/host)` — the last two are serial floors: the "
          "controller and the scheduler are one process each, whatever K.", "",
          "| hosts | K workers | one controller, 2 cores | one controller, 16 cores | Dask, K workers | Dask bound by |",
          "|---|---|---|---|---|---|"]
    for t in table:
        L.append(f"| {t['N']:,} | {t['K']} | {_fmt_s(t['local_s'])} | {_fmt_s(t['local16_s'])} | "
                 f"{_fmt_s(t['dask_s'])} | {t['bound']} |")
    L += ["", "Reading: past a few workers the Dask run is bound by the controller's and the scheduler's "
          "per-host CPU (they stream one result message per host), not by SSH; the local pool is bound "
          "by its CPU (key exchange, SFTP, hashing) and, far from the hosts, by round trips. These are "
          "estimates from a loopback benchmark on a shared 2-core machine, not measurements at that "
          "scale.", ""]
    path.write_text("\n".join(L))


def main() -> int:
    if sys.argv[1:2] == ["--launch"]:
        return launch(sys.argv[2], sys.argv[4:])
    if sys.argv[1:2] == ["--render"]:  # re-write the report from a results file
        data = json.loads(Path(sys.argv[2]).read_text())
        e = estimate(data["runs"], data["one_host"], data["meta"]["hosts"])
        table = [paper(e, N, K) for N in (10_000, 100_000) for K in (2, 10, 50)]
        data["per_host"], data["estimate"] = e, table
        Path(sys.argv[2]).write_text(json.dumps(data, indent=1))
        write_md(Path(sys.argv[3]) if len(sys.argv) > 3 else BENCH / "DASK_RESULTS.md",
                 data["meta"], data["runs"], data["one_host"], e, table)
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--forks", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2, help="threads per Dask worker")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--out-md", default=str(BENCH / "DASK_RESULTS.md"))
    ap.add_argument("--out-json", default=str(BENCH / "dask_results.json"))
    args = ap.parse_args()
    if find_sshd() is None:
        print("sshd not found: apt-get install -y openssh-server", file=sys.stderr)
        return 2
    try:
        import distributed  # noqa: F401
    except ImportError:
        print("dask is not installed: pip install -e '.[dask]'", file=sys.stderr)
        return 2
    started = time.time()
    load = os.getloadavg()
    lab = Lab(args.hosts, args.keep)
    bench = None
    rows, singles = [], []
    try:
        lab.start()
        bench = Bench(lab, args.forks, args.threads)
        for mode in ("local", "dask"):  # warm-up (page cache, .pyc) and the one-host fixed costs
            bench.one(mode, 1)
            singles.append(bench.one(mode, 1))
        for r in range(args.runs):
            for mode in (("local", "dask") if r % 2 == 0 else ("dask", "local")):
                rows.append(bench.one(mode, args.hosts))
    finally:
        if bench:
            bench.close()
        lab.stop()
    e = estimate(rows, singles, args.hosts)
    table = [paper(e, N, K) for N in (10_000, 100_000) for K in (2, 10, 50)]
    import dask
    import paramiko

    from concurdeploy import __version__

    ssh = subprocess.run(["ssh", "-V"], capture_output=True, text=True)
    meta = {"args": " ".join(sys.argv[1:]), "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "minutes": (time.time() - started) / 60, "cores": os.cpu_count(),
            "mem_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
            "kernel": f"{platform.system()} {platform.release()}", "load": " / ".join(f"{x:.1f}" for x in load),
            "python": platform.python_version(), "version": __version__, "dask": dask.__version__,
            "paramiko": paramiko.__version__, "openssh": (ssh.stderr or ssh.stdout).strip(),
            "hosts": args.hosts, "sshd": len(lab.servers), "user": lab.user, "forks": args.forks,
            "threads": args.threads}
    Path(args.out_json).write_text(json.dumps({"meta": meta, "runs": rows, "one_host": singles,
                                               "per_host": e, "estimate": table}, indent=1))
    write_md(Path(args.out_md), meta, rows, singles, e, table)
    log(f"wrote {args.out_md} and {args.out_json}")
    return 0 if all(not r["problem"] for r in rows + singles) else 1


if __name__ == "__main__":
    sys.exit(main())
