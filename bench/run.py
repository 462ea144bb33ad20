#!/usr/bin/env python3
"""concurdeploy benchmark: real OpenSSH sshd hosts on loopback, concurdeploy side by side with its peers.

One command (after ``bash bench/setup.sh`` once, as root)::

    python bench/run.py --quick      # ~3-4 min subset: N = 1, 8, 32, start-up; writes RESULTS.md
    python bench/run.py              # full: N = 1..256, 100 MB, second pass, emulated WAN,
                                     # round trips, profile (~35-40 min)

Options: ``--runs K`` (default 5; 3 in --quick), ``--ns 1,8,64``, ``--tools openssh,concurdeploy``,
``--no-wan``, ``--no-big``, ``--no-profile``, ``--keep`` (keep the work folder),
``--out-md``/``--out-json``.

What it does
    * starts one ``sshd`` (OpenSSH, from tests/sshd.py) per host on 127.0.0.1, each host with its
      own destination folder; logs in as the unprivileged user ``cdbench`` (created by setup.sh)
      so that no login-shell rc file (e.g. root's pyenv init, ~100 ms) sits on every command;
    * for each workload runs every tool on the same hosts, interleaved run by run (the order
      rotates), resetting each destination to an older file before each changing run and checking
      afterwards that every destination holds the new bytes and no temporary file is left;
    * measures wall time, controller CPU (user+sys of the tool's whole process tree) and controller
      peak memory (summed RSS over its processes), see bench/measure.py;
    * writes ``bench/results.json`` (raw) and ``bench/RESULTS.md`` (tables, targets of issue 6).

Rows (all push the same file to a temporary name beside the destination, then rename it over):
    openssh       ``xargs -P N`` × ``ssh -o KexAlgorithms=curve25519-sha256 host
                  'cat > tmp && sha256 check && mv -f tmp dest' < file``: one connection per host
                  (the baseline row; ratios are against it, same run, same hosts)
    concurdeploy  ``concurdeploy push bench -i INVENTORY --forks N``
    fabric        Fabric 3: ThreadPoolExecutor(N) around Connection.put + run("mv"), host keys checked
    pssh          parallel-ssh ParallelSSHClient(pool_size=N): copy_file + run_command mv (no host key check)
    ansible       ansible-core ad-hoc ``copy`` module, forks=N, generated INI inventory
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import pwd
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH))

from measure import Measurement, become_subreaper, cgroup2_root, run_measured  # noqa: E402 (after the sys.path lines)

from tests.sshd import OpenSSHServer, find_sshd, generate_client_keys  # noqa: E402

VENV_PY = BENCH / ".venv" / "bin" / "python"
BENCH_USER = "cdbench"
ALL_TOOLS = ["openssh", "concurdeploy", "fabric", "pssh", "ansible"]
#: Experiment rows (not peers): concurdeploy with a change applied from outside, see bench/experiments/.
EXPERIMENTS = {"cd+nodelay": BENCH / "experiments" / "nodelay", "cd+fixes": BENCH / "experiments" / "fixes"}
#: Rows of concurdeploy with a setting: ``cd+pool`` = worker processes (one per CPU) at every
#: size, where the automatic choice runs up to 64 hosts in the controller's threads.
SETTING_ROWS = {"cd+pool": {"CONCURDEPLOY_PROCESSES": str(os.cpu_count() or 1)}}
SSH_OPTS_COMMON = ["-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                   "-o", "GlobalKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes",
                   "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=120"]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------------------
# content
# ------------------------------------------------------------------------------------------

def haproxy_cfg(target: int = 23 * 1024, seed: int = 6, maxconn: int = 20000) -> bytes:
    """A realistic haproxy.cfg of about ``target`` bytes (global, defaults, frontends, backends)."""
    rnd = random.Random(seed)
    out = [f"""# Managed by concurdeploy -- do not edit by hand
global
    log /dev/log local0
    log /dev/log local1 notice
    chroot /var/lib/haproxy
    stats socket /run/haproxy/admin.sock mode 660 level admin expose-fd listeners
    stats timeout 30s
    user haproxy
    group haproxy
    daemon
    maxconn {maxconn}
    nbthread 4
    ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256
    ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets
    tune.ssl.default-dh-param 2048

defaults
    log     global
    mode    http
    option  httplog
    option  dontlognull
    option  forwardfor
    option  http-server-close
    timeout connect 5s
    timeout client  50s
    timeout server  50s
    timeout http-request 10s
    errorfile 400 /etc/haproxy/errors/400.http
    errorfile 403 /etc/haproxy/errors/403.http
    errorfile 408 /etc/haproxy/errors/408.http
    errorfile 500 /etc/haproxy/errors/500.http
    errorfile 502 /etc/haproxy/errors/502.http
    errorfile 503 /etc/haproxy/errors/503.http
    errorfile 504 /etc/haproxy/errors/504.http

frontend stats
    bind 127.0.0.1:8404
    stats enable
    stats uri /stats
    stats refresh 10s

frontend https_in
    bind :443 ssl crt /etc/haproxy/certs/ alpn h2,http/1.1
    bind :80
    http-request redirect scheme https unless {{ ssl_fc }}
    http-request set-header X-Forwarded-Proto https
"""]
    apps = ["api", "web", "auth", "billing", "search", "media", "admin", "reports", "events",
            "orders", "catalog", "inventory", "payments", "users", "notify", "export"]
    for app in apps:
        out.append(f"    acl host_{app} hdr(host) -i {app}.example.com\n"
                   f"    use_backend be_{app} if host_{app}\n")
    out.append("    default_backend be_web\n")
    i = 0
    while sum(len(s) for s in out) < target:
        app = apps[i % len(apps)]
        block = [f"\nbackend be_{app}{'' if i < len(apps) else f'_{i}'}\n",
                 "    balance roundrobin\n",
                 f"    option httpchk GET /healthz HTTP/1.1\\r\\nHost:\\ {app}.example.com\n",
                 "    http-check expect status 200\n",
                 "    default-server inter 3s fall 3 rise 2 maxconn 256\n"]
        for s in range(rnd.randint(6, 12)):
            block.append(f"    server {app}{s:02d} 10.{rnd.randint(0, 255)}.{rnd.randint(0, 255)}."
                         f"{rnd.randint(1, 254)}:{rnd.choice([8080, 8443, 9000])} check weight "
                         f"{rnd.randint(10, 100)}\n")
        out.append("".join(block))
        i += 1
    text = "".join(out).encode()
    return text[:target].rsplit(b"\n", 1)[0] + b"\n"


# ------------------------------------------------------------------------------------------
# hosts
# ------------------------------------------------------------------------------------------

class Lab:
    """The work folder, keys, sshd hosts, per-host roots, and (for --wan) the delay proxy."""

    def __init__(self, n_hosts: int, keep: bool):
        self.keep = keep
        self.dir = Path(tempfile.mkdtemp(prefix="cdbench-", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        self.user, self.uid, self.gid = self._login_user()
        self.keys = generate_client_keys(self.dir / "keys")
        self.key = self.keys.ed25519
        self.servers: list[OpenSSHServer] = []
        self.n_hosts = n_hosts
        self.proxies: dict[float, tuple[subprocess.Popen, dict[int, int]]] = {}

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
        log(f"starting {self.n_hosts} sshd on 127.0.0.1 (work folder {self.dir}, login user {self.user})")
        t0 = time.monotonic()

        def mk(i):
            srv = OpenSSHServer(self.dir / "sshd" / f"h{i + 1}", self.keys)
            srv.start(timeout=30)
            return srv

        with ThreadPoolExecutor(8) as ex:
            self.servers = list(ex.map(mk, range(self.n_hosts)))
        for i in range(self.n_hosts):
            self.root(i).mkdir(parents=True, exist_ok=True)
            for sub in ("etc/haproxy", "data"):
                (self.root(i) / sub).mkdir(parents=True, exist_ok=True)
        if self.uid != os.getuid():
            subprocess.run(["chown", "-R", f"{self.uid}:{self.gid}", str(self.dir / "roots")], check=True)
        self.write_known_hosts(self.dir / "known_hosts", {})
        log(f"{self.n_hosts} sshd ready in {time.monotonic() - t0:.1f} s")

    def root(self, i: int) -> Path:
        return self.dir / "roots" / f"h{i + 1}"

    def server_pids(self) -> set[int]:
        pids = {s.pid for s in self.servers if s.pid}
        pids |= {p.pid for p, _ in self.proxies.values()}
        return pids

    def write_known_hosts(self, path: Path, portmap: dict[int, int]) -> Path:
        lines = []
        for s in self.servers:
            port = portmap.get(s.port, s.port)
            lines.append(f"[127.0.0.1]:{port} {s.host_public_key_line}\n")
        path.write_text("".join(lines))
        return path

    def proxy(self, one_way_ms: float) -> dict[int, int]:
        """Start (once per delay) the delay proxy in front of every sshd; return {sshd port: proxy port}."""
        if one_way_ms in self.proxies:
            return self.proxies[one_way_ms][1]
        targets = ",".join(str(s.port) for s in self.servers)
        p = subprocess.Popen([sys.executable, str(BENCH / "delayproxy.py"), "--delay-ms", str(one_way_ms),
                              "--targets", targets, "--max-seconds", "7200"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = p.stdout.readline()
        ports = {int(k): v for k, v in json.loads(line)["ports"].items()}
        self.proxies[one_way_ms] = (p, ports)
        return ports

    def proxy_stats(self, one_way_ms: float) -> list[dict]:
        p, _ = self.proxies[one_way_ms]
        p.stdin.write("stats\n")
        p.stdin.flush()
        return json.loads(p.stdout.readline())["closed"]

    def stop_proxies(self) -> None:
        for p, _ in self.proxies.values():
            try:
                p.stdin.close()
            except OSError:
                pass
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        self.proxies = {}

    def wait_idle(self, timeout: float = 15.0) -> None:
        """Wait until no sshd has a session child left (the previous run's connections are gone)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            busy = False
            for s in self.servers:
                if s.pid:
                    try:
                        with open(f"/proc/{s.pid}/task/{s.pid}/children") as f:
                            if f.read().strip():
                                busy = True
                                break
                    except OSError:
                        pass
            if not busy:
                return
            time.sleep(0.05)

    def close(self) -> None:
        self.stop_proxies()
        with ThreadPoolExecutor(8) as ex:
            list(ex.map(lambda s: s.stop(), self.servers))
        for d in _TEMP_DIRS:
            shutil.rmtree(d, ignore_errors=True)
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


# ------------------------------------------------------------------------------------------
# workloads and tools
# ------------------------------------------------------------------------------------------

class Workload:
    def __init__(self, lab: Lab, name: str, n: int, content: bytes, old: bytes, kind: str,
                 wan_ms: float = 0.0, second_pass: bool = False):
        self.lab, self.name, self.n, self.kind = lab, name, n, kind
        self.content, self.old = content, old
        self.sha = hashlib.sha256(content).hexdigest()
        self.wan_ms = wan_ms  # one-way delay; 0 = plain loopback
        self.second_pass = second_pass
        self.rel = "etc/haproxy/haproxy.cfg" if kind == "cfg" else "data/blob.bin"
        self.dir = lab.dir / "w" / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.src = self.dir / ("haproxy.cfg" if kind == "cfg" else "blob.bin")
        if not self.src.exists():
            self.src.write_bytes(content)
        portmap = lab.proxy(wan_ms) if wan_ms else {}
        self.ports = [portmap.get(s.port, s.port) for s in lab.servers[:n]]
        self.known_hosts = str(lab.write_known_hosts(self.dir / "known_hosts", portmap))

    def dest(self, i: int) -> Path:
        return self.lab.root(i) / self.rel

    def reset(self) -> None:
        for i in range(self.n):
            d = self.dest(i)
            for p in d.parent.iterdir():  # concurdeploy's backups of earlier runs
                if p.name != d.name and _is_backup(p.name):
                    p.unlink(missing_ok=True)
            d.write_bytes(self.old)
            if self.lab.uid != os.getuid():
                os.chown(d, self.lab.uid, self.lab.gid)

    def verify(self) -> tuple[int, int]:
        """(destinations with wrong content, temporary files left) over this workload's hosts."""
        bad = left = 0
        for i in range(self.n):
            d = self.dest(i)
            try:
                if d.stat().st_size != len(self.content) or _sha_file(d) != self.sha:
                    bad += 1
            except OSError:
                bad += 1
            extra = [p.name for p in d.parent.iterdir()
                     if p.name not in (d.name, LOCK_NAME) and not _is_backup(p.name)]
            left += len(extra)
            if extra:
                self.left_names = extra
        return bad, left

    def cleanup_temps(self) -> None:
        for i in range(self.n):
            d = self.dest(i)
            for p in d.parent.iterdir():
                if p.name != d.name:
                    if p.is_dir():
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        p.unlink(missing_ok=True)


#: concurdeploy's per-folder run lock (operations.facts.LOCK_NAME, empty, 0600): it stays, by design.
LOCK_NAME = ".concurdeploy.lock"


def _is_backup(name: str) -> bool:
    """concurdeploy keeps ``<name>.concurdeploy-<UTC time>-<id>.bak`` backups: not a leftover."""
    return ".concurdeploy-" in name and name.endswith(".bak") and not name.startswith(".")


def _sha_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("SSH_AUTH_SOCK",) and not k.startswith("CONCURDEPLOY_")}
    env["PYTHONUNBUFFERED"] = "1"
    # the concurdeploy measured is this checkout's (not another editable install of the package)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    # This machine sets PYTHONDONTWRITEBYTECODE=1; an operator's shell does not. Without it the
    # warm-up run writes each tool's .pyc files and later runs load them, as on a workstation.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _tmpname(w: Workload, i: int, tool: str) -> str:
    d = w.dest(i)
    return str(d.parent / f".{d.name}.bench-{tool}-{os.getpid()}")


_TEMP_DIRS: list[Path] = []


def concurdeploy_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "concurdeploy"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "concurdeploy"]


def prepare(tool: str, w: Workload) -> dict:
    """Files a tool needs for workload ``w``; returns {"cmd": [...], "env": {...}, "cwd": ...}."""
    lab = w.lab
    tdir = w.dir / tool
    tdir.mkdir(exist_ok=True)
    env = _env()
    if tool == "openssh":
        lines = [f"{w.ports[i]} {_tmpname(w, i, tool)} {w.dest(i)}\n" for i in range(w.n)]
        (tdir / "hosts.txt").write_text("".join(lines))
        ssh = " ".join(["ssh", *SSH_OPTS_COMMON, "-o", "KexAlgorithms=curve25519-sha256",
                        "-o", f"UserKnownHostsFile={w.known_hosts}", "-o", f"IdentityFile={lab.key}"])
        script = (f'exec {ssh} -p "$1" {lab.user}@127.0.0.1 '
                  f'"cat > $2 && echo \'{w.sha}  $2\' | sha256sum -c --status && mv -f $2 $3" < {w.src}')
        cmd = ["xargs", "-a", str(tdir / "hosts.txt"), "-P", str(w.n), "-L", "1", "sh", "-c", script, "sh"]
        return {"cmd": cmd, "env": env, "cwd": str(tdir)}
    if tool == "cd-1proc":
        prep = prepare("concurdeploy", w)
        prep["cmd"] = [sys.executable, str(BENCH / "experiments" / "inprocess.py"), "inventory.yaml", "bench", str(w.n)]
        return prep
    if tool in SETTING_ROWS:
        prep = prepare("concurdeploy", w)
        prep["env"] = dict(prep["env"], **SETTING_ROWS[tool])
        return prep
    if tool in EXPERIMENTS:
        prep = prepare("concurdeploy", w)
        prep["env"] = dict(prep["env"], PYTHONPATH=os.pathsep.join(
            filter(None, [str(EXPERIMENTS[tool]), prep["env"].get("PYTHONPATH", "")])))
        return prep
    if tool == "concurdeploy":
        (tdir / "files").mkdir(exist_ok=True)
        src = tdir / "files" / w.src.name
        if not src.exists():
            os.link(w.src, src)
        hosts = {f"h{i + 1}": {"host": "127.0.0.1", "port": w.ports[i], "root": str(lab.root(i))}
                 for i in range(w.n)}
        inv = {"all": {"vars": {"user": lab.user, "key_file": lab.key, "known_hosts": w.known_hosts,
                                "connect_timeout": 120, "command_timeout": 600},
                       "children": {"bench": {"hosts": hosts, "vars": {
                           "files": [{"src": f"files/{w.src.name}", "dest": "{{ root }}/" + w.rel}]}}}}}
        (tdir / "inventory.json").write_text(json.dumps(inv))
        # YAML is a superset of JSON: the Ansible-YAML inventory loader reads this file as is.
        (tdir / "inventory.yaml").write_text(json.dumps(inv, indent=1))
        cmd = [*concurdeploy_cmd(), "push", "bench", "-i", "inventory.yaml", "--forks", str(w.n)]
        return {"cmd": cmd, "env": env, "cwd": str(tdir)}
    if tool in ("fabric", "pssh"):
        spec = {"user": lab.user, "key": lab.key, "known_hosts": w.known_hosts, "src": str(w.src),
                "workers": w.n,
                "hosts": [{"port": w.ports[i], "tmp": _tmpname(w, i, tool), "dest": str(w.dest(i))}
                          for i in range(w.n)]}
        (tdir / "spec.json").write_text(json.dumps(spec))
        script = BENCH / "peers" / ("fabric_push.py" if tool == "fabric" else "pssh_push.py")
        return {"cmd": [str(VENV_PY), str(script), str(tdir / "spec.json")], "env": env, "cwd": str(tdir)}
    if tool == "ansible":
        lines = ["[bench]\n"]
        for i in range(w.n):
            lines.append(f"h{i + 1} ansible_host=127.0.0.1 ansible_port={w.ports[i]} dest={w.dest(i)}\n")
        ssh_args = " ".join(["-o", "KexAlgorithms=curve25519-sha256", "-o", f"UserKnownHostsFile={w.known_hosts}",
                             "-o", "GlobalKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes"])
        lines.append(f"[bench:vars]\nansible_user={lab.user}\nansible_ssh_private_key_file={lab.key}\n"
                     f"ansible_python_interpreter=/usr/bin/python3\nansible_ssh_common_args={ssh_args}\n")
        (tdir / "hosts.ini").write_text("".join(lines))
        cp = Path(tempfile.mkdtemp(prefix="cdb-cp-", dir="/tmp"))  # short: ControlPath is a unix socket
        _TEMP_DIRS.append(cp)
        (tdir / "ansible.cfg").write_text(
            "[defaults]\nhost_key_checking = True\nretry_files_enabled = False\ndeprecation_warnings = False\n"
            f"local_tmp = {tdir}/.ansible-local\nforks = {w.n}\ninterpreter_python = /usr/bin/python3\n"
            "[ssh_connection]\n"
            f"control_path_dir = {cp}\n")
        env.update(ANSIBLE_CONFIG=str(tdir / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_HOME=str(tdir / ".ansible-home"))
        cmd = [str(BENCH / ".venv" / "bin" / "ansible"), "bench", "-i", "hosts.ini", "-f", str(w.n),
               "-m", "ansible.builtin.copy", "-a", f"src={w.src} dest={{{{ dest }}}}"]
        return {"cmd": cmd, "env": env, "cwd": str(tdir), "linger_ok": 0.0}
    raise ValueError(tool)


def peer_status() -> dict[str, str]:
    """Which peers can run here: {tool: "" (ok) or "n/a (reason)"}."""
    st = {"openssh": "" if shutil.which("ssh") and shutil.which("xargs") else "n/a (ssh or xargs missing)",
          "concurdeploy": "", "cd-1proc": "", **{e: "" for e in (*EXPERIMENTS, *SETTING_ROWS)}}
    if not VENV_PY.exists():
        for t in ("fabric", "pssh", "ansible"):
            st[t] = "n/a (bench/.venv missing: run bash bench/setup.sh)"
        return st
    for t, mod in (("fabric", "fabric"), ("pssh", "pssh.clients"), ("ansible", "ansible")):
        r = subprocess.run([str(VENV_PY), "-c", f"import {mod}"], capture_output=True, text=True)
        st[t] = "" if r.returncode == 0 else f"n/a (not installed: {r.stderr.strip().splitlines()[-1][:80]})"
    if not st["ansible"] and not (BENCH / ".venv" / "bin" / "ansible").exists():
        st["ansible"] = "n/a (ansible command missing)"
    return st


def versions() -> dict:
    v = {"python": platform.python_version()}
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "concurdeploy"],
                               capture_output=True, text=True).stdout.strip()
        v["git"] = head + (" + uncommitted changes in concurdeploy/" if dirty else "")
    except OSError:
        v["git"] = "?"
    try:
        v["openssh"] = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    except OSError:
        v["openssh"] = "?"
    for mod in ("paramiko", "invoke", "cryptography"):
        try:
            v[mod] = __import__(mod).__version__
        except Exception:
            v[mod] = "?"
    try:
        from importlib.metadata import version
        v["concurdeploy"] = version("concurdeploy")
    except Exception:
        v["concurdeploy"] = "?"
    if VENV_PY.exists():
        code = ("import importlib.metadata as m, json; out={}\n"
                "for p in ['fabric','parallel-ssh','ssh2-python','ansible-core','paramiko','gevent','py-spy','pyinstrument']:\n"
                "    try: out[p]=m.version(p)\n"
                "    except Exception: out[p]=None\n"
                "print(json.dumps(out))")
        r = subprocess.run([str(VENV_PY), "-c", code], capture_output=True, text=True)
        if r.returncode == 0:
            v["bench_venv"] = json.loads(r.stdout)
    return v


def machine() -> dict:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource
    return {"nproc": os.cpu_count(), "ram_gib": round(mem / 2**30, 1), "cpu": cpu,
            "kernel": platform.release(), "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
            "sshd": find_sshd(), "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "cgroup2": cgroup2_root()}


# ------------------------------------------------------------------------------------------
# running cells
# ------------------------------------------------------------------------------------------

def one_run(tool: str, w: Workload, prep: dict, reset: bool = True) -> dict:
    lab = w.lab
    if reset:
        w.reset()
    lab.wait_idle()
    m: Measurement = run_measured(prep["cmd"], exclude=lab.server_pids(), env=prep["env"], cwd=prep["cwd"],
                                  linger_ok=prep.get("linger_ok", 5.0))
    bad, left = w.verify()
    ok = m.returncode == 0 and bad == 0 and left == 0
    rec = {"wall_s": round(m.wall_s, 4), "cpu_s": round(m.cpu_s, 4), "peak_rss_mib": round(m.peak_rss / 2**20, 1),
           "peak_procs": m.peak_procs, "ok": ok, "cpu_method": m.cpu_method,
           "cpu_rusage_s": round(m.cpu_rusage_s, 4)}
    if not ok:
        rec["error"] = (f"exit {m.returncode}, {bad} wrong destinations, {left} temp files left "
                        f"{getattr(w, 'left_names', [])[:3] if left else ''}; "
                        f"{(m.stderr or m.stdout).strip()[-600:]}")
        w.cleanup_temps()
    if tool == "concurdeploy" and ok:
        rec["recap_ok"] = m.stdout.count(" ok ") if w.second_pass else None
    return rec


def run_cell_group(w: Workload, tools: list[str], runs: int, status: dict, results: list, warm: set,
                   runs_for: dict | None = None) -> None:
    """Run every tool on workload ``w``, interleaved, ``runs`` times each (fewer where runs_for says)."""
    active = [t for t in tools if not status.get(t)]
    load_before = os.getloadavg()[0]
    preps = {t: prepare(t, w) for t in active}
    per_tool = {t: [] for t in active}
    want = {t: (runs_for or {}).get(t, runs) for t in active}
    if w.second_pass:  # each tool: one changing push, then its no-change passes (not interleaved)
        for t in active:
            log(f"  changing push {t} ({w.name})")
            r = one_run(t, w, preps[t], reset=True)
            if not r["ok"]:
                log(f"  {t} changing push FAILED: {r.get('error')}")
            for r_i in range(want[t]):
                rec = one_run(t, w, preps[t], reset=False)
                per_tool[t].append(rec)
                log(f"  {w.name:<22} {t:<12} run {r_i + 1}: {rec['wall_s']:.3f} s  cpu {rec['cpu_s']:.3f} s  "
                    f"mem {rec['peak_rss_mib']:.0f} MiB  {'ok' if rec['ok'] else 'FAILED ' + rec['error'][:300]}")
        active = []
    for t in active:
        if t not in warm:
            log(f"  warm-up {t} ({w.name})")
            r = one_run(t, w, preps[t], reset=True)
            warm.add(t)
            if not r["ok"]:
                log(f"  {t} warm-up FAILED: {r.get('error')}")
    for r_i in range(max(want.values(), default=0)):
        order = active[r_i % len(active):] + active[:r_i % len(active)] if active else []
        for t in order:
            if len(per_tool[t]) >= want[t]:
                continue
            rec = one_run(t, w, preps[t], reset=not w.second_pass)
            per_tool[t].append(rec)
            log(f"  {w.name:<22} {t:<12} run {r_i + 1}: {rec['wall_s']:.3f} s  cpu {rec['cpu_s']:.3f} s  "
                f"mem {rec['peak_rss_mib']:.0f} MiB  {'ok' if rec['ok'] else 'FAILED ' + rec['error'][:300]}")
    for t in tools:
        cell = {"workload": w.name, "kind": w.kind, "n": w.n, "wan_rtt_ms": 2 * w.wan_ms, "tool": t,
                "second_pass": w.second_pass, "bytes": len(w.content), "loadavg_1min_before": load_before}
        if status.get(t):
            cell["na"] = status[t]
        else:
            cell["runs"] = per_tool[t]
            _summarise(cell)
        results.append(cell)


def _summarise(cell: dict) -> None:
    good = [r for r in cell["runs"] if r["ok"]]
    if not good:
        cell["na"] = "n/a (every run failed: " + cell["runs"][0].get("error", "?")[:200] + ")"
        return
    walls = [r["wall_s"] for r in good]
    cpus = [r["cpu_s"] for r in good]
    mems = [r["peak_rss_mib"] for r in good]
    cell.update(wall_median=statistics.median(walls), wall_min=min(walls), wall_max=max(walls),
                cpu_median=statistics.median(cpus), mem_peak_mib=max(mems),
                mem_median_mib=statistics.median(mems), n_ok=len(good), n_failed=len(cell["runs"]) - len(good))


def add_ratios(results: list) -> None:
    base = {}
    for c in results:
        if c["tool"] == "openssh" and "wall_median" in c:
            base[c["workload"]] = c
    for c in results:
        b = base.get(c["workload"])
        if b and "wall_median" in c:
            c["ratio_wall"] = round(c["wall_median"] / b["wall_median"], 3)
            c["ratio_cpu"] = round(c["cpu_median"] / b["cpu_median"], 3) if b["cpu_median"] else None


# ------------------------------------------------------------------------------------------
# start-up
# ------------------------------------------------------------------------------------------

def startup(runs: int, project_dir: Path) -> list[dict]:
    bindir = Path(sys.executable).parent
    cd = concurdeploy_cmd()
    inv = [str(bindir / "invoke")] if (bindir / "invoke").exists() else [sys.executable, "-m", "invoke"]
    cases = [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("python -c 'import invoke'", [sys.executable, "-c", "import invoke"]),
        ("python -c 'import paramiko'", [sys.executable, "-c", "import paramiko"]),
        ("invoke --help", [*inv, "--help"]),
        ("concurdeploy --help", [*cd, "--help"]),
        ("concurdeploy --list", [*cd, "--list"]),
        ("concurdeploy push --help", [*cd, "push", "--help"]),
    ]
    out = []
    for name, cmd in cases:
        for _ in range(2):  # warm-up, hyperfine-style
            subprocess.run(cmd, cwd=project_dir, capture_output=True)
        walls, cpus = [], []
        for _ in range(runs):
            m = run_measured(cmd, exclude=set(), cwd=str(project_dir), env=_env(), linger_ok=1.0)
            walls.append(m.wall_s)
            cpus.append(m.cpu_s)
        out.append({"name": name, "runs": len(walls), "wall_median": statistics.median(walls),
                    "wall_min": min(walls), "wall_max": max(walls), "cpu_median": statistics.median(cpus),
                    "rc": m.returncode})
        log(f"  start-up {name:<30} {statistics.median(walls) * 1000:.0f} ms")
    base = next(c for c in out if c["name"] == "invoke --help")["wall_median"]
    for c in out:
        c["ratio_invoke_help"] = round(c["wall_median"] / base, 3)
    return out


# ------------------------------------------------------------------------------------------
# round trips (delay method): single host, one-way 0 vs D ms
# ------------------------------------------------------------------------------------------

def round_trips(lab: Lab, tools: list[str], status: dict, content: bytes, old: bytes, runs: int,
                one_way_ms: float = 100.0) -> list[dict]:
    out = []
    rtt = 2 * one_way_ms / 1000
    for t in tools:
        if status.get(t):
            out.append({"tool": t, "na": status[t]})
            continue
        walls = {}
        turns = None
        for d in (0.0, one_way_ms):
            w = Workload(lab, f"rt-{t}-{int(d)}", 1, content, old, "cfg", wan_ms=d if d else 0.0)
            prep = prepare(t, w)
            one_run(t, w, prep)  # warm-up
            if d:
                lab.proxy_stats(d)  # reset counters
            ws = [one_run(t, w, prep)["wall_s"] for _ in range(runs)]
            walls[d] = statistics.median(ws)
            if d:
                time.sleep(4 * d / 1000 + 0.3)  # let the last connection close through the proxy
                st = lab.proxy_stats(d)
                turns = sorted(c["turns"] for c in st)
        rt = (walls[one_way_ms] - walls[0.0]) / rtt
        conns = len(turns) // runs if turns else 0
        out.append({"tool": t, "wall_0": walls[0.0], "wall_delay": walls[one_way_ms], "rtt_ms": rtt * 1000,
                    "round_trips": round(rt, 1), "connections_per_push": conns,
                    "turns_per_push": (sum(turns) / runs) if turns else None})
        log(f"  round trips {t:<12} {rt:.1f} (wall {walls[0.0]:.3f} s -> {walls[one_way_ms]:.3f} s at RTT "
            f"{rtt * 1000:.0f} ms; {conns} TCP connections/push)")
    return out


# ------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------

def _fmt_cell(c: dict) -> list[str]:
    if "na" in c:
        return [c["tool"], c["na"], "", "", "", ""]
    n = c["n"]
    per_host = c["cpu_median"] / n * 1000
    ratio = f"×{c['ratio_wall']:.2f}" if c.get("ratio_wall") is not None else "—"
    runs = f"{c['n_ok']}" + (f" (+{c['n_failed']} failed)" if c["n_failed"] else "")
    return [c["tool"], f"{c['wall_median']:.3f} ({c['wall_min']:.3f}–{c['wall_max']:.3f})", ratio,
            f"{c['cpu_median']:.2f} s = {per_host:.0f} ms/host", f"{c['mem_median_mib']:.0f} MiB", runs]


def _fmt_turns(v) -> str:
    return "—" if v is None else f"{v:.0f}"


def write_report(data: dict, md_path: Path) -> None:
    m, v = data["machine"], data["versions"]
    bv = v.get("bench_venv") or {}
    L = []
    L.append("# concurdeploy benchmark results\n")
    L.append(f"Generated by `python bench/run.py {' '.join(data['argv'])}` on {m['date']} "
             f"({data['mode']} mode, {data['elapsed_min']:.1f} min). Raw numbers: `{data.get('json_name', 'bench/results.json')}`.\n")
    L.append("How to run: `bash bench/setup.sh` once (as root), then `python bench/run.py --quick` (≈3 min) or "
             "`python bench/run.py` (full, ≈30 min); `python bench/run.py --report-only` rewrites this file from "
             "results.json and ANALYSIS.md. See bench/README.md.\n")
    L.append("## Machine\n")
    L.append(f"- {m['nproc']} cores ({m['cpu']}), {m['ram_gib']} GiB RAM, Linux {m['kernel']}, "
             f"`ulimit -n` {m['nofile']}")
    L.append(f"- {v.get('openssh')}; sshd {m['sshd']} (one process per host, 127.0.0.1, ed25519 host key, "
             f"`MaxStartups 200:30:300`, `MaxSessions 50`, internal-sftp), login user `{data['login_user']}`")
    L.append(f"- Python {v['python']}; concurdeploy {v.get('concurdeploy')} (git {v.get('git')}) with paramiko {v.get('paramiko')}, "
             f"invoke {v.get('invoke')}, cryptography {v.get('cryptography')}")
    L.append(f"- Peers (bench/.venv): Fabric {bv.get('fabric')} (paramiko {bv.get('paramiko')}), parallel-ssh "
             f"{bv.get('parallel-ssh')} (ssh2-python {bv.get('ssh2-python')}, gevent {bv.get('gevent')}), "
             f"ansible-core {bv.get('ansible-core')}")
    L.append("")
    L.append("## How it was measured\n")
    L.append("- Every tool uploads the same bytes to a temporary name beside the destination and renames it "
             "over the destination (which holds an older version before each changing run); after each run "
             "the benchmark checks every destination's SHA-256 and that no temporary file is left "
             "(a run that fails this is counted as failed, not timed).")
    L.append("- **wall**: median (min–max) seconds over the runs; tools are interleaved run by run, order rotating.")
    methods = {r.get("cpu_method", "rusage") for c in data["cells"] for r in c.get("runs", [])}
    if methods == {"cgroup"}:
        L.append(f"- **controller CPU** (cgroup method): each run starts in a fresh cgroup v2 group of its own "
                 f"(under `{m.get('cgroup2') or '?'}`; a tiny `sh` writes its PID into `cgroup.procs` and `exec`s the "
                 "tool), so the tool and *every* process it starts (fork server, workers, resource tracker, ssh, "
                 "however re-parented) are counted in the group's `cpu.stat` `usage_usec` (user+system), read once "
                 "nothing is left in the group (leftovers killed through `cgroup.kill`). Median. sshd and the delay "
                 "relay run outside the group; they share the same 2 cores, so they are inside every wall time. "
                 "The rusage figure (`getrusage(RUSAGE_CHILDREN)`, child subreaper) is kept in results.json as "
                 "`cpu_rusage_s`.")
    else:
        L.append("- **controller CPU**: user+sys of the tool's whole process tree (`getrusage(RUSAGE_CHILDREN)` "
                 "deltas; left-behind processes such as ssh ControlPersist masters are re-parented to the "
                 "benchmark (child subreaper) and reaped, so they count). Median. sshd's CPU is not included, "
                 "but it runs on the same 2 cores, so it is inside every wall time."
                 + ("" if m.get("cgroup2") else " (No cgroup v2 group could be created here, so the cgroup "
                                                 "method was not used.)"))
    L.append("- **controller memory**: peak over the run of RSS summed over the tool's processes, sampled every "
             "20 ms (shared pages count once per process); the median of the runs' peaks is shown.")
    L.append("- **ratio**: wall median / the `openssh` row's wall median of the same workload in the same run.")
    L.append("- `openssh` = `xargs -P N` running `ssh -o KexAlgorithms=curve25519-sha256 host "
             "'cat > tmp && echo SHA256 tmp | sha256sum -c && mv -f tmp dest' < file` (one connection per host, "
             "host key checked). `concurdeploy` = `concurdeploy push bench --forks N` (facts + compare, SFTP "
             "upload, size/checksum/mode check, posix-rename; no reload declared). `fabric` = threads around "
             "`Connection.put` + `run('mv')`, known_hosts + RejectPolicy. `pssh` = `ParallelSSHClient.copy_file` "
             "+ `run_command('mv')`; **no host key verification** (parallel-ssh has none). `ansible` = "
             "ad-hoc `copy` module, forks=N, default ssh connection plugin settings (ControlPersist, -C) plus "
             "curve25519 and a known_hosts file.")
    notes = data.get("notes") or []
    for n_ in notes:
        L.append(f"- {n_}")
    L.append("")
    groups: dict[str, list] = {}
    for c in data["cells"]:
        groups.setdefault(c["workload"], []).append(c)
    L.append("## Results\n")
    for name, cells in groups.items():
        c0 = cells[0]
        what = ("23 KB haproxy.cfg" if c0["kind"] == "cfg" else f"{c0['bytes'] / 1e6:.0f} MB file")
        wan = f", emulated WAN RTT {c0['wan_rtt_ms']:.0f} ms" if c0["wan_rtt_ms"] else ", loopback"
        sp = ", **second pass, nothing changed**" if c0["second_pass"] else ""
        L.append(f"### {what} → {c0['n']} host{'s' if c0['n'] != 1 else ''}{wan}{sp}  (`{name}`; "
                 f"load average before: {c0.get('loadavg_1min_before', 0):.1f})\n")
        L.append("| tool | wall s median (min–max) | ratio vs openssh | controller CPU | controller peak mem | runs |")
        L.append("|---|---|---|---|---|---|")
        for c in cells:
            L.append("| " + " | ".join(_fmt_cell(c)) + " |")
        L.append("")
    if data.get("summary_table"):
        L.append("## Summary: 23 KB config, loopback, wall median in s (ratio vs openssh)\n")
        L += data["summary_table"]
        L.append("")
    if data.get("startup"):
        L.append("## Start-up (≥10 runs each, 2 warm-ups, median)\n")
        L.append("| command | wall median (min–max) | ratio vs `invoke --help` | CPU |")
        L.append("|---|---|---|---|")
        for c in data["startup"]:
            L.append(f"| `{c['name']}` | {c['wall_median'] * 1000:.0f} ms ({c['wall_min'] * 1000:.0f}–"
                     f"{c['wall_max'] * 1000:.0f}) | ×{c['ratio_invoke_help']:.2f} | {c['cpu_median'] * 1000:.0f} ms |")
        L.append("")
    if data.get("round_trips"):
        rt = data["round_trips"]
        L.append("## Round trips of one host's push (measured)\n")
        L.append("Method: the same single-host push through `bench/delayproxy.py` with no delay and with "
                 f"{rt[0].get('rtt_ms', 200):.0f} ms RTT; round trips = (wall with delay − wall without) / RTT. "
                 "This counts every round trip the client waited for, including the TCP handshake, whatever "
                 "the protocol. \"turns\" = client→server flights that followed server data, counted by the proxy.\n")
        L.append("| tool | wall, no delay | wall, delayed | round trips | TCP connections | turns |")
        L.append("|---|---|---|---|---|---|")
        for r in rt:
            if "na" in r:
                L.append(f"| {r['tool']} | {r['na']} | | | | |")
            else:
                L.append(f"| {r['tool']} | {r['wall_0']:.3f} s | {r['wall_delay']:.3f} s | **{r['round_trips']:.1f}** | "
                         f"{r['connections_per_push']} | {_fmt_turns(r.get('turns_per_push'))} |")
        L.append("")
    if data.get("targets"):
        L.append(f"## Targets of issue {data.get('issue', 6)}\n")
        L.append("| target | measured | verdict |")
        L.append("|---|---|---|")
        for t in data["targets"]:
            L.append(f"| {t['target']} | {t['measured']} | {t['verdict']} |")
        L.append("")
    analysis = BENCH / "ANALYSIS.md"
    if analysis.exists():
        L.append(analysis.read_text())
    prof = BENCH / "profile" / "summary.md"
    if prof.exists():
        L.append(prof.read_text())
    md_path.write_text("\n".join(L) + "\n")


def find_cell(cells, workload, tool):
    return next((c for c in cells if c["workload"] == workload and c["tool"] == tool), None)


def evaluate_targets(data: dict) -> list[dict]:
    cells = data["cells"]
    out = []

    def get(w, t):
        c = find_cell(cells, w, t)
        return c if c and "wall_median" in c else None

    def verdict(ok: bool, miss: str) -> str:
        return "**met**" if ok else f"**missed** by {miss}"

    cd, ps = get("cfg-64", "concurdeploy"), get("cfg-64", "pssh")
    if cd:
        ok = cd["ratio_wall"] <= 1.1
        out.append({"target": "23 KB, 64 hosts, loopback: wall ≤ ×1.1 of openssh",
                    "measured": f"×{cd['ratio_wall']:.2f} ({cd['wall_median']:.2f} s)",
                    "verdict": verdict(ok, f"×{cd['ratio_wall'] / 1.1:.2f} ({cd['wall_median'] - 1.1 * cd['wall_median'] / cd['ratio_wall']:.2f} s)")})
        if ps:
            ok = cd["wall_median"] < ps["wall_median"]
            out.append({"target": "23 KB, 64 hosts: ahead of parallel-ssh",
                        "measured": f"{cd['wall_median']:.2f} s vs {ps['wall_median']:.2f} s",
                        "verdict": verdict(ok, f"{cd['wall_median'] - ps['wall_median']:.2f} s")})
        per = cd["cpu_median"] / 64 * 1000
        out.append({"target": "23 KB, 64 hosts: controller CPU ≤ 20 ms per host",
                    "measured": f"{per:.0f} ms/host", "verdict": verdict(per <= 20, f"{per - 20:.0f} ms/host")})
    wan = get("wan-cfg-64", "concurdeploy")
    if wan:
        ok = wan["ratio_wall"] <= 1.2
        out.append({"target": "50 ms RTT (emulated), 64 hosts: wall ≤ ×1.2 of openssh",
                    "measured": f"×{wan['ratio_wall']:.2f} ({wan['wall_median']:.2f} s)",
                    "verdict": verdict(ok, f"×{wan['ratio_wall'] / 1.2:.2f}")})
    big = get("big-4", "concurdeploy")
    if big:
        ok = big["ratio_wall"] <= 1.25
        out.append({"target": "100 MB to 4 hosts: wall ≤ ×1.25 of openssh",
                    "measured": f"×{big['ratio_wall']:.2f} ({big['wall_median']:.2f} s)",
                    "verdict": verdict(ok, f"×{big['ratio_wall'] / 1.25:.2f}")})
    for w in ("second-64", "second-8"):
        sp = get(w, "concurdeploy")
        ch = get("cfg-" + w.split("-")[1], "concurdeploy")
        if sp and ch:
            r = sp["wall_median"] / ch["wall_median"]
            out.append({"target": f"second pass, nothing changed ({w.split('-')[1]} hosts): ≤ ×0.8 of a changing pass",
                        "measured": f"×{r:.2f} ({sp['wall_median']:.2f} s vs {ch['wall_median']:.2f} s)",
                        "verdict": verdict(r <= 0.8, f"×{r / 0.8:.2f}")})
            break
    for w in ("cfg-256", "cfg-64"):
        c = get(w, "concurdeploy")
        if c:
            mem = c["mem_peak_mib"] * 2**20 / 1e6
            out.append({"target": "controller memory at 256 hosts ≤ 300 MB summed" + ("" if w == "cfg-256" else " (measured at 64: 256 not run)"),
                        "measured": f"{mem:.0f} MB (highest peak of the runs) at {c['n']} hosts",
                        "verdict": verdict(mem <= 300, f"{mem - 300:.0f} MB")})
            break
    mems = [(c["n"], c["mem_peak_mib"]) for c in cells if c["tool"] == "concurdeploy" and c["kind"] == "cfg"
            and not c["second_pass"] and not c["wan_rtt_ms"] and "mem_peak_mib" in c]
    if len(mems) >= 2:
        mems.sort()
        (n1, m1), (n2, m2) = (mems[1] if len(mems) > 2 else mems[0]), mems[-1]
        slope = (m2 - m1) / (n2 - n1) if n2 != n1 else 0.0
        out.append({"target": "memory does not grow linearly with hosts (one paramiko process per host "
                              "would cost ≈40 MiB/host; criterion here: < 1 MiB per extra host)",
                    "measured": f"{m1:.0f} MiB at {n1} → {m2:.0f} MiB at {n2} hosts ({slope:.2f} MiB/host)",
                    "verdict": verdict(slope < 1.0, f"{slope - 1.0:.2f} MiB per extra host")})
    st = {c["name"]: c for c in data.get("startup") or []}
    for name in ("concurdeploy --help", "concurdeploy --list"):
        if name in st:
            r = st[name]["ratio_invoke_help"]
            out.append({"target": f"`{name}` within ×1.1 of `invoke --help`",
                        "measured": f"×{r:.2f} ({st[name]['wall_median'] * 1000:.0f} ms vs "
                                    f"{st['invoke --help']['wall_median'] * 1000:.0f} ms)",
                        "verdict": verdict(r <= 1.1, f"×{r / 1.1:.2f}")})
    return out


def targets_for(data: dict) -> list[dict]:
    """The targets of the issue this run was made for (16 with --issue16, else 6)."""
    return evaluate_targets16(data) if data.get("issue") == 16 else evaluate_targets(data)


def evaluate_targets16(data: dict) -> list[dict]:
    """Issue #16's targets, each with its figure and a verdict (met / missed by how much)."""
    cells = data["cells"]
    out = []

    def get(w, t):
        c = find_cell(cells, w, t)
        return c if c and "wall_median" in c else None

    def verdict(ok: bool, miss: str) -> str:
        return "**met**" if ok else f"**missed** by {miss}"

    for n, goal in ((1, 1.8), (8, 1.3), (64, 1.05)):
        cd = get(f"cfg-{n}", "concurdeploy")
        if not cd:
            continue
        peers = {t: get(f"cfg-{n}", t) for t in ("fabric", "pssh")}
        out.append({"target": f"start/scale: 23 KB to {n} host{'s' if n > 1 else ''}, wall ≤ ×{goal} of OpenSSH",
                    "measured": f"×{cd['ratio_wall']:.2f} ({cd['wall_median']:.2f} s vs {cd['wall_median'] / cd['ratio_wall']:.2f} s)",
                    "verdict": verdict(cd["ratio_wall"] <= goal, f"×{cd['ratio_wall'] / goal:.2f}")})
        for t, p in peers.items():
            if p:
                out.append({"target": f"… ahead of {'Fabric' if t == 'fabric' else 'parallel-ssh'} at {n}",
                            "measured": f"{cd['wall_median']:.2f} s vs {p['wall_median']:.2f} s (×{p['ratio_wall']:.2f})",
                            "verdict": verdict(cd["wall_median"] < p["wall_median"],
                                               f"{cd['wall_median'] - p['wall_median']:.2f} s")})
    rts = {r["tool"]: r for r in data.get("round_trips") or [] if "round_trips" in r}
    if "concurdeploy" in rts:
        others = ", ".join(f"{t} {r['round_trips']:.1f}" for t, r in rts.items() if t != "concurdeploy")
        out.append({"target": "round trips per host, counted and published (one channel per host where possible)",
                    "measured": f"concurdeploy {rts['concurdeploy']['round_trips']:.1f} ({others})",
                    "verdict": "published (no numeric target)"})
    cd = get("cfg-64", "concurdeploy")
    if cd:
        per = cd["cpu_median"] / 64 * 1000
        method = (cd["runs"][0].get("cpu_method") or "rusage") if cd.get("runs") else "?"
        out.append({"target": f"controller CPU ≤ 20 ms per host at 64 hosts ({method} method, all processes)",
                    "measured": f"{per:.0f} ms/host ({cd['cpu_median']:.2f} s)",
                    "verdict": verdict(per <= 20, f"{per - 20:.0f} ms/host (×{per / 20:.2f})")})
    big = get("big-4", "concurdeploy")
    if big:
        out.append({"target": "100 MB to 4 hosts: wall ≤ ×1.25 of OpenSSH",
                    "measured": f"×{big['ratio_wall']:.2f} ({big['wall_median']:.2f} s)",
                    "verdict": verdict(big["ratio_wall"] <= 1.25, f"×{big['ratio_wall'] / 1.25:.2f}")})
    for sw, cw, goal, where in (("second-64", "cfg-64", 0.8, "loopback, 64 hosts"),
                                ("second-8", "cfg-8", 0.8, "loopback, 8 hosts"),
                                ("wan-second-64", "wan-cfg-64", 0.6, "delay relay (RTT 50 ms), 64 hosts")):
        sp, ch = get(sw, "concurdeploy"), get(cw, "concurdeploy")
        if sp and ch:
            r = sp["wall_median"] / ch["wall_median"]
            out.append({"target": f"unchanged second pass ≤ ×{goal} of a changing one ({where})",
                        "measured": f"×{r:.2f} ({sp['wall_median']:.2f} s vs {ch['wall_median']:.2f} s)",
                        "verdict": verdict(r <= goal, f"×{r / goal:.2f}")})
    for n in (1, 8, 64):
        w = get(f"wan-cfg-{n}", "concurdeploy")
        if w:
            out.append({"target": f"WAN (delay relay, RTT 50 ms), {n} host{'s' if n > 1 else ''}: wall ≤ ×1.2 of OpenSSH "
                                  f"through the same relay",
                        "measured": f"×{w['ratio_wall']:.2f} ({w['wall_median']:.2f} s)",
                        "verdict": verdict(w["ratio_wall"] <= 1.2, f"×{w['ratio_wall'] / 1.2:.2f}")})
    for n, goal in ((64, 200), (256, 300)):
        c = get(f"cfg-{n}", "concurdeploy")
        if c:
            mem = c["mem_peak_mib"] * 2**20 / 1e6
            out.append({"target": f"summed RSS ≤ {goal} MB at {n} hosts",
                        "measured": f"{mem:.0f} MB (highest peak of the runs; median {c['mem_median_mib'] * 2**20 / 1e6:.0f} MB)",
                        "verdict": verdict(mem <= goal, f"{mem - goal:.0f} MB")})
    return out


def summary_table(cells: list) -> list[str]:
    ns = sorted({c["n"] for c in cells if c["workload"] == f"cfg-{c['n']}"})
    tools = []
    for c in cells:
        if c["workload"].startswith("cfg-") and c["tool"] not in tools:
            tools.append(c["tool"])
    rows = ["| tool | " + " | ".join(f"N={n}" for n in ns) + " | CPU/host @64 | mem @max N |",
            "|---|" + "---|" * (len(ns) + 2)]
    for t in tools:
        vals = []
        for n in ns:
            c = find_cell(cells, f"cfg-{n}", t)
            if c is None:
                vals.append("—")
            elif "wall_median" not in c:
                vals.append("n/a")
            else:
                vals.append(f"{c['wall_median']:.2f} (×{c.get('ratio_wall', 0):.2f})")
        c64 = find_cell(cells, "cfg-64", t)
        cpu = f"{c64['cpu_median'] / 64 * 1000:.0f} ms" if c64 and "cpu_median" in c64 else "—"
        big = [c for c in cells if c["tool"] == t and c["workload"].startswith("cfg-") and "mem_peak_mib" in c]
        mem = f"{max(big, key=lambda c: c['n'])['mem_median_mib']:.0f} MiB @{max(big, key=lambda c: c['n'])['n']}" if big else "—"
        rows.append(f"| {t} | " + " | ".join(vals) + f" | {cpu} | {mem} |")
    return rows


# ------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description="concurdeploy vs OpenSSH/Fabric/parallel-ssh/Ansible on loopback sshd")
    ap.add_argument("--issue16", action="store_true",
                    help="the workloads of issue #16 against openssh, fabric, pssh in one run (~25-35 min): "
                         "N=1,8,64,256, second pass, 100 MB to 4, WAN at 1/8/64 + its second pass, round trips, "
                         "start-up, profile; targets of issue 16 in RESULTS.md")
    ap.add_argument("--quick", action="store_true", help="~3-4 minute subset (N=1,8,32; 3 runs)")
    ap.add_argument("--runs", type=int, default=None, help="runs per cell (default 5, quick 3)")
    ap.add_argument("--ns", default=None, help="host counts for the 23 KB workload, e.g. 1,8,32,64,256")
    ap.add_argument("--tools", default=None,
                    help=f"rows to run; also available: {', '.join([*EXPERIMENTS, *SETTING_ROWS])}, cd-1proc "
                         "(experiments, see bench/experiments/; cd+pool: CONCURDEPLOY_PROCESSES=<cpus>)")
    ap.add_argument("--runs-256", type=int, default=3, help="runs per cell at N=256 (default 3)")
    ap.add_argument("--ansible-max-n", type=int, default=64, help="skip Ansible above this N (default 64)")
    ap.add_argument("--ansible-runs-large", type=int, default=3,
                    help="runs for Ansible at N>=32 (default 3: ~30-70 s a run)")
    ap.add_argument("--no-wan", action="store_true", help="skip the emulated-WAN workloads")
    ap.add_argument("--no-big", action="store_true", help="skip the 100 MB workload")
    ap.add_argument("--no-profile", action="store_true", help="skip round-trip count and profile")
    ap.add_argument("--startup-runs", type=int, default=15)
    ap.add_argument("--only", default="", help="comma list of steps to run: startup,cfg,second,big,wan,roundtrips,profile")
    ap.add_argument("--keep", action="store_true", help="keep the /tmp work folder")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite RESULTS.md from results.json (e.g. after editing ANALYSIS.md); runs nothing")
    ap.add_argument("--out-md", default=str(BENCH / "RESULTS.md"))
    ap.add_argument("--out-json", default=str(BENCH / "results.json"))
    args = ap.parse_args()

    json_name = os.path.relpath(Path(args.out_json).resolve(), REPO)
    if args.report_only:
        data = json.loads(Path(args.out_json).read_text())
        data["json_name"] = json_name
        prof_json = BENCH / "profile" / "summary.json"
        if prof_json.exists():
            (BENCH / "profile" / "summary.md").write_text(profile_markdown(json.loads(prof_json.read_text())))
        data["targets"] = targets_for(data)
        data["summary_table"] = summary_table(data["cells"])
        write_report(data, Path(args.out_md))
        return 0
    t_start = time.monotonic()
    quick = args.quick
    if args.issue16:
        args.tools = args.tools or "openssh,concurdeploy,fabric,pssh,cd+pool"
        args.ns = args.ns or "1,8,64,256"
    args.tools = args.tools or ",".join(ALL_TOOLS + ["cd+nodelay"])
    runs = args.runs or (3 if quick else 5)
    ns = [int(x) for x in (args.ns or ("1,8,32" if quick else "1,8,32,64,256")).split(",")]
    tools = [t for t in args.tools.split(",") if t]
    wan = not args.no_wan and not quick
    big = not args.no_big and not quick
    prof = not args.no_profile and not quick
    only = set(filter(None, args.only.split(",")))
    def step(name: str) -> bool:
        return not only or name in only
    if only:
        wan, big, prof = wan or "wan" in only, big or "big" in only, prof or bool(only & {"roundtrips", "profile"})
        if not step("cfg"):
            ns = [n for n in ns if n <= 8] if step("second") else [1]
    notes = ["This machine was shared with other work during the run (other sessions' test suites): the "
             "1-minute load average before each workload is shown in its heading. Tools are interleaved run by "
             "run on the same hosts, so ratios suffer less from that than absolute times."]

    import signal
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the sshd hosts are stopped (finally)
    if "cd+pool" in tools:
        notes.append("`cd+pool` = the `concurdeploy` row with `CONCURDEPLOY_PROCESSES="
                     f"{SETTING_ROWS['cd+pool']['CONCURDEPLOY_PROCESSES']}` (worker processes started from a fork "
                     "server, as every run was before this branch); `concurdeploy` itself runs up to 64 hosts in "
                     "its own threads (no worker process) and more in worker processes, so the two rows are the "
                     "same program at 256 hosts.")
    if not become_subreaper():
        notes.append("could not become child subreaper: CPU of processes a tool leaves behind is not counted")
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 8192:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    status = peer_status()
    for t, s in status.items():
        if s and t in tools:
            log(f"{t}: {s}")
    n_hosts = max(ns + ([4] if big else []) + ([64] if wan else []))
    lab = Lab(n_hosts, args.keep)
    if lab.user != BENCH_USER:
        notes.append(f"user {BENCH_USER} missing (run bench/setup.sh as root): logged in as {lab.user}, whose "
                     f"login shell rc files run on every remote command")
    cfg, cfg_old = haproxy_cfg(), haproxy_cfg(maxconn=10000)
    data = {"argv": sys.argv[1:], "mode": "issue16" if args.issue16 else "quick" if quick else "full",
            "issue": 16 if args.issue16 else 6, "json_name": json_name, "machine": machine(),
            "versions": versions(), "login_user": lab.user, "peer_status": status, "cells": [], "notes": notes}
    results = data["cells"]
    warm: set = set()
    try:
        lab.start()
        if step("startup"):
            log("start-up times")
            data["startup"] = startup(args.startup_runs, lab.dir)
        for n in (ns if step("cfg") else []):
            w = Workload(lab, f"cfg-{n}", n, cfg, cfg_old, "cfg")
            st = dict(status)
            if n > args.ansible_max_n and "ansible" in tools:
                st["ansible"] = f"n/a (skipped above N={args.ansible_max_n}: ~1 s of controller CPU and ~60 MiB per host, a run takes minutes)"
            r = args.runs_256 if n >= 256 else runs
            runs_for = {"ansible": min(r, args.ansible_runs_large)} if n >= 32 else {}
            log(f"workload cfg-{n}: 23 KB to {n} hosts, {r} runs")
            run_cell_group(w, tools, r, st, results, warm, runs_for)
            _checkpoint(data, args, t_start)
        for n in ([8, 64] if not quick else [8]):
            if n > len(lab.servers) or not step("second"):
                continue
            w = Workload(lab, f"second-{n}", n, cfg, cfg_old, "cfg", second_pass=True)
            log(f"workload second-{n}: nothing changed, concurdeploy (and ansible at N<=8)")
            sp_tools = [t for t in ("concurdeploy", *EXPERIMENTS, *SETTING_ROWS, "ansible") if t in tools and (t != "ansible" or n <= 8)]
            run_cell_group(w, sp_tools, runs, status, results, warm)
            _checkpoint(data, args, t_start)
        if big and step("big"):
            blob = random.Random(100).randbytes(100 * 1000 * 1000)
            w = Workload(lab, "big-4", 4, blob, b"old\n", "big")
            log("workload big-4: 100 MB to 4 hosts")
            run_cell_group(w, tools, runs, status, results, warm)
            del blob
            _checkpoint(data, args, t_start)
        if wan and step("wan"):
            notes.append("Emulated WAN: `ip netns add` and veth pairs work here (checked, as root), but `tc qdisc add ... netem delay 25ms` fails with \"Specified qdisc kind is unknown\": this kernel (6.18, no /lib/modules) is built without CONFIG_NET_SCH_NETEM and cannot load modules, so namespaces + veth + netem cannot add delay here. The WAN rows go through `bench/delayproxy.py` on 127.0.0.1 instead: 25 ms each "
                         "way per chunk (RTT 50 ms) plus the TCP handshake charged at 1.5 RTT; latency only, "
                         "no bandwidth limit or loss. The proxy runs in its own process on the same 2 cores.")
            for n in (1, 8, 64):
                w = Workload(lab, f"wan-cfg-{n}", n, cfg, cfg_old, "cfg", wan_ms=25.0)
                st = dict(status)
                if n > 8:
                    st["ansible"] = "n/a (skipped in WAN mode above N=8 to bound the run time)"
                log(f"workload wan-cfg-{n}: 23 KB to {n} hosts at RTT 50 ms")
                run_cell_group(w, tools, runs, st, results, warm,
                               {"ansible": min(runs, args.ansible_runs_large)} if n >= 8 else {})
                _checkpoint(data, args, t_start)
            w = Workload(lab, "wan-second-64", 64, cfg, cfg_old, "cfg", wan_ms=25.0, second_pass=True)
            log("workload wan-second-64: nothing changed at RTT 50 ms")
            run_cell_group(w, [t for t in ("concurdeploy", *EXPERIMENTS, *SETTING_ROWS) if t in tools], runs, status,
                           results, warm)
            _checkpoint(data, args, t_start)
        if prof and step("roundtrips"):
            log("round trips per push (one host, RTT 0 vs 200 ms)")
            data["round_trips"] = round_trips(lab, [t for t in tools if t not in SETTING_ROWS], status, cfg,
                                              cfg_old, runs=3)
            _checkpoint(data, args, t_start)
        if prof and step("profile"):
            log("profile of one host's push")
            data["profile"] = profile_step(lab, cfg, cfg_old)
    finally:
        lab.close()
    _checkpoint(data, args, t_start)
    log(f"done in {(time.monotonic() - t_start) / 60:.1f} min: {args.out_md}")
    return 0


def profile_step(lab: Lab, content: bytes, old: bytes) -> dict:
    """Step timings + round trips of one host's push (profile_push.py phases), and py-spy profiles of
    the single-host push loop and of the CLI at N=1 and N=64. Writes bench/profile/summary.{json,md}."""
    import profile_push
    out_dir = BENCH / "profile"
    out_dir.mkdir(exist_ok=True)
    w = Workload(lab, "profile-1", 1, content, old, "cfg")
    prep = prepare("concurdeploy", w)
    one_run("concurdeploy", w, prep)  # sanity + warm-up
    (w.dir / "old.cfg").write_bytes(old)
    spec = {"project": prep["cwd"], "inventory": "inventory.yaml", "dest": str(w.dest(0)),
            "old": str(w.dir / "old.cfg"), "uid": lab.uid, "gid": lab.gid, "port": w.ports[0],
            "known_hosts": w.known_hosts, "k": 30, "k_delayed": 7, "one_way_ms": 50.0}
    spec_path = w.dir / "profile.json"
    spec_path.write_text(json.dumps(spec))
    env = _env()
    env["PYTHONPATH"] = str(REPO)
    summary: dict = {}
    r = subprocess.run([sys.executable, str(BENCH / "profile_push.py"), "phases", str(spec_path)], env=env,
                       capture_output=True, text=True, timeout=900)
    if r.returncode == 0:
        summary["phases"] = json.loads(r.stdout.strip().splitlines()[-1])
        log(f"  phases: {summary['phases']['total']}")
    else:
        log(f"  phases failed: {r.stderr[-1500:]}")
    pyspy = BENCH / ".venv" / "bin" / "py-spy"
    if pyspy.exists():
        runs = [("loop-1host-x30", [sys.executable, str(BENCH / "profile_push.py"), "loop", str(spec_path), "30"],
                 w, False, 250)]
        for n in (1, min(64, len(lab.servers))):
            wn = Workload(lab, f"profile-cli-{n}", n, content, old, "cfg")
            runs.append((f"cli-{n}hosts", prepare("concurdeploy", wn)["cmd"], wn, True, 100 if n > 1 else 250))
        for name, cmd, wk, sub, rate in runs:
            wk.reset()
            lab.wait_idle()
            raw = out_dir / f"{name}.raw"
            cwd = prepare("concurdeploy", wk)["cwd"]
            rr = subprocess.run([str(pyspy), "record", "-f", "raw", "-r", str(rate), "-o", str(raw),
                                 *(["--subprocesses"] if sub else []), "--", *cmd],
                                env=env, cwd=cwd, capture_output=True, text=True, timeout=900)
            if raw.exists():
                summary.setdefault("pyspy", {})[name] = {"rate_hz": rate, **profile_push.classify(str(raw))}
                log(f"  py-spy {name}: {summary['pyspy'][name]['samples']} samples")
            else:
                log(f"  py-spy {name} failed: {rr.stderr[-800:]}")
    else:
        summary["pyspy_na"] = "py-spy not installed in bench/.venv"
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    (out_dir / "summary.md").write_text(profile_markdown(summary))
    return summary


def profile_markdown(s: dict) -> str:
    L = ["## Where one host's push spends its time (profile)\n"]
    ph = s.get("phases")
    if ph:
        t, nd = ph["total"], ph.get("nodelay") or {}
        L.append(f"In-process, one host, {ph['k']} pushes of the 23 KB file through the library path "
                 f"(`Connection.open` → `operations.push` → `close`; `bench/profile_push.py phases`), timers around each "
                 f"step (exclusive of nested steps; **means**, so that steps add up). Per push: **{t['wall_ms']:.1f} ms wall "
                 f"(median {t['wall_ms_median']:.1f}), {t['cpu_ms']:.1f} ms controller CPU** (all threads). "
                 f"Through the delay proxy at RTT {ph['rtt_ms']:.0f} ms: {t['wall_ms_at_rtt']:.0f} ms = "
                 f"**{t['round_trips']:.1f} round trips** waited for.")
        if nd:
            L.append(f"The same loop with `TCP_NODELAY` on the client socket (Nagle off, the experiment of row "
                     f"`cd+nodelay`): **{nd['wall_ms']:.1f} ms wall**, {nd['cpu_ms']:.1f} ms CPU, "
                     f"{nd['round_trips']:.1f} round trips.\n")
        L.append("| step | calls/push | wall ms | CPU ms | round trips | wall ms, TCP_NODELAY | round trips, TCP_NODELAY |")
        L.append("|---|---|---|---|---|---|---|")
        acc = [0.0] * 5
        for st in ph["steps"]:
            L.append(f"| {st['step']} | {st['calls']:g} | {st['wall_ms']:.2f} | {st['cpu_ms']:.2f} | "
                     f"{st['round_trips']:.1f} | {st.get('wall_ms_nodelay', 0):.2f} | {st.get('round_trips_nodelay', 0):.1f} |")
            for j, key in enumerate(("wall_ms", "cpu_ms", "round_trips", "wall_ms_nodelay", "round_trips_nodelay")):
                acc[j] += st.get(key, 0)
        L.append(f"| (between timed steps) | | {t['wall_ms'] - acc[0]:.2f} | {t['cpu_ms'] - acc[1]:.2f} | "
                 f"{t['round_trips'] - acc[2]:.1f} | {nd.get('wall_ms', 0) - acc[3]:.2f} | "
                 f"{nd.get('round_trips', 0) - acc[4]:.1f} |")
        L.append(f"| **total** | | **{t['wall_ms']:.1f}** | **{t['cpu_ms']:.1f}** | **{t['round_trips']:.1f}** | "
                 f"**{nd.get('wall_ms', 0):.1f}** | **{nd.get('round_trips', 0):.1f}** |")
        L.append("")
        L.append(f"SSH messages sent per push: {_fmt_counter(ph['ssh_sent'])}.  ")
        L.append(f"Received: {_fmt_counter(ph['ssh_recv'])}.  ")
        L.append(f"Channel requests: {_fmt_counter(ph['channel_requests'])}.  ")
        L.append(f"SFTP requests: {_fmt_counter(ph['sftp_requests'])}.  ")
        if ph.get("proxy_turns") is not None:
            L.append(f"Client turns seen by the proxy: {ph['proxy_turns']:g} per push.  ")
        sc = ph.get("select_calls_mean")
        if sc:
            busy = sc.get("after EOF, before exit-status (returns at once)", 0)
            L.append(f"`select()` calls in `Connection.run`/`hold` wait loops: {sc.get('calls', 0):.1f} per push, of which "
                     f"{busy:.1f} on a channel that had EOF but no exit status yet (they return at once: busy-wait; "
                     f"one host alone, idle machine; at 64 hosts on 2 loaded cores the gap, and the spinning, grow).")
        L.append("")
    for name, p in (s.get("pyspy") or {}).items():
        tot = p["samples"] or 1
        L.append(f"**py-spy `{name}`** ({p['samples']} samples at {p['rate_hz']} Hz over all processes and threads; "
                 f"py-spy does not tell idle threads apart on this VM, so stacks ending in a blocking call are "
                 f"grouped as \"blocked\"; the rest is CPU):\n")
        L.append("| category (deepest matching frame) | share of samples |")
        L.append("|---|---|")
        for cat, n in p["categories"]:
            L.append(f"| {cat} | {100 * n / tot:.0f}% |")
        L.append("")
        L.append("Top leaf functions: " + "; ".join(f"`{f[:80]}` {100 * n / tot:.0f}%" for f, n in p["top_functions"][:8]))
        L.append("")
    return "\n".join(L) + "\n"


def _fmt_counter(d: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(d.items(), key=lambda kv: -kv[1])) + f" (total {sum(d.values())})"


def _checkpoint(data: dict, args, t_start: float) -> None:
    data["elapsed_min"] = (time.monotonic() - t_start) / 60
    add_ratios(data["cells"])
    data["summary_table"] = summary_table(data["cells"])
    data["targets"] = targets_for(data)
    Path(args.out_json).write_text(json.dumps(data, indent=1))
    write_report(data, Path(args.out_md))


if __name__ == "__main__":
    sys.exit(main())
