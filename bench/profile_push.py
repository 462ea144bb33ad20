#!/usr/bin/env python3
"""Where one host's push spends its time, and how many round trips it waits for.

Run by ``bench/run.py`` (full mode) against its sshd hosts; can be run alone with a spec
JSON written by it (``python bench/profile_push.py phases SPEC.json``).

``phases``: pushes the 23 KB config to ONE host K times in this process through the real
library path (``Connection.open`` → ``operations.push`` → ``close``), with timers wrapped
around each step (exclusive of nested steps; wall and process CPU, which includes paramiko's
transport thread), and counts the SSH messages and SFTP requests of each push. Then it repeats
the pushes through ``delayproxy.py`` at RTT 100 ms: a step's extra wall time / RTT is the
number of round trips that step waited for.

``classify RAW``: summarises a ``py-spy record -f raw`` file (collapsed stacks, one sample
per line) into categories (imports, key exchange, authentication, SFTP, ...).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

BENCH = Path(__file__).resolve().parent


# ------------------------------------------------------------------------------------------
# step timers
# ------------------------------------------------------------------------------------------

class Timers:
    def __init__(self):
        self.local = threading.local()
        self.wall = defaultdict(float)
        self.cpu = defaultdict(float)
        self.count = Counter()
        self.enabled = True

    def reset(self):
        self.wall.clear()
        self.cpu.clear()
        self.count.clear()

    def wrap(self, owner, name: str, label, kind: str = "method"):
        orig = getattr(owner, name, None)
        if orig is None:
            return False
        func = orig.__func__ if kind == "classmethod" else orig
        timers = self

        def wrapper(*a, **kw):
            lab = label(*a, **kw) if callable(label) else label
            stack = getattr(timers.local, "stack", None)
            if stack is None or not timers.enabled or threading.current_thread() is not threading.main_thread():
                return func(*a, **kw)
            frame = [lab, 0.0, 0.0]  # label, child wall, child cpu
            stack.append(frame)
            w0, c0 = time.perf_counter(), time.process_time()
            try:
                return func(*a, **kw)
            finally:
                dw, dc = time.perf_counter() - w0, time.process_time() - c0
                stack.pop()
                timers.wall[lab] += dw - frame[1]
                timers.cpu[lab] += dc - frame[2]
                timers.count[lab] += 1
                if stack:
                    stack[-1][1] += dw
                    stack[-1][2] += dc

        wrapper.__wrapped__ = func
        setattr(owner, name, classmethod(wrapper) if kind == "classmethod" else wrapper)
        return True


def _cmd_label(self, command, *a, **kw):
    c = command if isinstance(command, str) else ""
    if "sha256sum" in c and "chmod" in c:
        return "prepare command (size+sha256 check, chmod, backup)"
    if ".bak" in c and "set --" in c:
        return "prune-backups command"
    if c.startswith("rm -f"):
        return "remove-temps command"
    if c.startswith("mkdir"):
        return "mkdir command"
    if c.startswith("mv -f"):
        return "mv fallback command"
    return "other command: " + c.strip().splitlines()[0][:40] if c.strip() else "other command"


NODELAY = {"on": False}


def install_nodelay_switch():
    """socket.create_connection that sets TCP_NODELAY while NODELAY["on"] (an experiment: what
    would concurdeploy gain from disabling Nagle's algorithm on its SSH sockets?)."""
    import socket
    orig = socket.create_connection

    def create_connection(*a, **kw):
        s = orig(*a, **kw)
        if NODELAY["on"]:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    socket.create_connection = create_connection


def instrument(timers: Timers):
    import socket

    import paramiko

    from concurdeploy.operations import push as operations, replace
    from concurdeploy.ssh import channels, connection, hostkeys, keys

    timers.wrap(paramiko.Transport, "__init__", "paramiko Transport object set-up")
    timers.wrap(connection.Connection, "open", "Connection.open glue (own code)")
    timers.wrap(operations, "push", "push() glue (own code)")
    timers.wrap(operations, "_push_locked", "push logic: compare, scripts, results (own code)")
    timers.wrap(socket, "create_connection", "TCP connect")
    timers.wrap(paramiko.Transport, "start_client", "SSH banner + key exchange (start_client)")
    timers.wrap(hostkeys, "known_key_types", "known_hosts read for algorithm order")
    timers.wrap(hostkeys, "verify", "host key check (known_hosts read + compare)")
    timers.wrap(connection.Connection, "_authenticate", "user authentication (key load + publickey)")
    timers.wrap(keys, "load_private_key", "private key load (parse file)")
    timers.wrap(connection.Connection, "hold", "lock + facts command (held channel)")
    timers.wrap(paramiko.SFTPClient, "from_transport", "SFTP session open (channel + subsystem + init)",
                kind="classmethod")
    timers.wrap(operations, "_upload", "SFTP upload (open, pipelined writes, close)")
    timers.wrap(connection.Connection, "run", _cmd_label)
    timers.wrap(replace, "replace_atomically", "rename (SFTP posix-rename)")
    if hasattr(connection, "HeldCommand"):
        timers.wrap(channels.HeldCommand, "release", "release lock (close held channel)")
    timers.wrap(connection.Connection, "close", "close (SFTP + transport)")


class Counts:
    """SSH messages sent/received and SFTP requests by type, for the main push; and how often
    concurdeploy.ssh.connection's wait loops called select() and how many of those returned at once
    because the channel had EOF but no exit status yet (busy-wait)."""

    def __init__(self):
        self.sent = Counter()
        self.recv = Counter()
        self.sftp = Counter()
        self.chan_req = Counter()
        self.select = Counter()

    def reset(self):
        for counter in (self.sent, self.recv, self.sftp, self.chan_req, self.select):
            counter.clear()

    def install(self):
        import select as _select

        import paramiko
        from paramiko import common, sftp
        from paramiko.packet import Packetizer

        from concurdeploy.ssh import connection
        counts = self

        class SelectCounter:
            def __getattr__(self, name):
                return getattr(_select, name)

            @staticmethod
            def select(r, w, x, timeout=None):
                counts.select["calls"] += 1
                if any(getattr(ch, "eof_received", False) and hasattr(ch, "status_event")
                       and not ch.status_event.is_set() for ch in r):
                    counts.select["after EOF, before exit-status (returns at once)"] += 1
                return _select.select(r, w, x, timeout)

        connection.select = SelectCounter()
        names = common.MSG_NAMES
        orig_send, orig_read = Packetizer.send_message, Packetizer.read_message

        def send_message(self, data):
            b = data.asbytes()
            counts.sent[names.get(b[0], str(b[0]))] += 1
            if b[0] == common.cMSG_CHANNEL_REQUEST[0]:
                try:
                    m = paramiko.Message(b[1:])
                    m.get_int()
                    counts.chan_req[m.get_text()] += 1
                except Exception:
                    pass
            return orig_send(self, data)

        def read_message(self):
            cmd, m = orig_read(self)
            counts.recv[names.get(cmd, str(cmd))] += 1
            return cmd, m

        Packetizer.send_message, Packetizer.read_message = send_message, read_message
        orig_async = paramiko.SFTPClient._async_request

        def _async_request(self, fileobj, t, *args):
            counts.sftp[sftp.CMD_NAMES.get(t, str(t))] += 1
            return orig_async(self, fileobj, t, *args)

        paramiko.SFTPClient._async_request = _async_request


# ------------------------------------------------------------------------------------------
# the push loop
# ------------------------------------------------------------------------------------------

def _load(spec):
    from dataclasses import replace

    from concurdeploy.inventory import load
    from concurdeploy.operations.service import push_job
    from concurdeploy.ssh.specs import connect_spec
    inv = load(os.path.join(spec["project"], spec["inventory"]))
    host = inv.select("bench")[0]
    job = push_job(host, spec["project"])
    cs = connect_spec(host.name, host.vars)
    return cs, job, replace


def push_loop(spec, k: int, port: int | None, known_hosts: str | None, timers: Timers | None,
              counts: Counts | None):
    from concurdeploy.operations.push import push
    from concurdeploy.ssh.connection import Connection
    cs, job, replace = _load(spec)
    if port:
        cs = replace(cs, port=port, known_hosts=known_hosts)
    old = Path(spec["old"]).read_bytes()
    per_iter = []
    for _ in range(k):
        Path(spec["dest"]).write_bytes(old)
        os.chown(spec["dest"], spec["uid"], spec["gid"])
        for p in Path(spec["dest"]).parent.iterdir():
            if p.name.endswith(".bak"):
                p.unlink()
        if timers:
            timers.reset()
            timers.local.stack = []
        if counts:
            counts.reset()
        w0, c0 = time.perf_counter(), time.process_time()
        conn = Connection(cs)
        try:
            conn.open()
            res = push(conn, job)
        finally:
            conn.close()
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        if timers:
            timers.local.stack = None
        assert res.status.value == "changed", res
        rec = {"wall": wall, "cpu": cpu}
        if timers:
            rec["steps"] = {lab: {"wall": timers.wall[lab], "cpu": timers.cpu[lab], "n": timers.count[lab]}
                            for lab in timers.wall}
        if counts:
            rec["sent"], rec["recv"] = dict(counts.sent), dict(counts.recv)
            rec["sftp"], rec["chan_req"] = dict(counts.sftp), dict(counts.chan_req)
            rec["select"] = dict(counts.select)
        per_iter.append(rec)
        time.sleep(0.05)
    return per_iter


def _median_steps(iters):
    labels = []
    for it in iters:
        for lab in it["steps"]:
            if lab not in labels:
                labels.append(lab)
    out = {}
    for lab in labels:
        vals = [it["steps"].get(lab, {"wall": 0, "cpu": 0, "n": 0}) for it in iters]
        # means, not medians, so that the steps add up to the total (stalls land in different steps)
        out[lab] = {"wall_ms": statistics.fmean(v["wall"] for v in vals) * 1000,
                    "cpu_ms": statistics.fmean(v["cpu"] for v in vals) * 1000,
                    "calls": statistics.median(v["n"] for v in vals)}
    return out


def phases(spec_path: str) -> dict:
    spec = json.load(open(spec_path))
    timers, counts = Timers(), Counts()
    install_nodelay_switch()
    instrument(timers)
    counts.install()
    push_loop(spec, 3, None, None, None, None)  # warm-up
    k = spec.get("k", 30)
    plain = push_loop(spec, k, None, None, timers, counts)
    NODELAY["on"] = True
    nodelay = push_loop(spec, k, None, None, timers, None)
    NODELAY["on"] = False
    one_way = spec.get("one_way_ms", 50.0)
    proxy = subprocess.Popen([sys.executable, str(BENCH / "delayproxy.py"), "--delay-ms", str(one_way),
                              "--targets", str(spec["port"]), "--max-seconds", "600"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        pport = json.loads(proxy.stdout.readline())["ports"][str(spec["port"])]
        kh_line = next(ln for ln in open(spec["known_hosts"]) if ln.startswith(f"[127.0.0.1]:{spec['port']} "))
        kh = os.path.join(os.path.dirname(spec_path), "known_hosts_proxy")
        Path(kh).write_text(kh_line.replace(f":{spec['port']} ", f":{pport} ", 1))
        delayed = push_loop(spec, spec.get("k_delayed", 7), pport, kh, timers, None)
        NODELAY["on"] = True
        delayed_nd = push_loop(spec, spec.get("k_delayed", 7), pport, kh, timers, None)
        NODELAY["on"] = False
        time.sleep(4 * one_way / 1000 + 0.2)
        proxy.stdin.write("stats\n")
        proxy.stdin.flush()
        conns = json.loads(proxy.stdout.readline())["closed"]
    finally:
        proxy.stdin.close()
        proxy.wait(10)
    rtt_ms = 2 * one_way
    sp, sd = _median_steps(plain), _median_steps(delayed)
    spn, sdn = _median_steps(nodelay), _median_steps(delayed_nd)
    zero = {"wall_ms": 0.0, "cpu_ms": 0.0}
    steps = []
    for lab in sp:
        d, pn, dn = sd.get(lab, zero), spn.get(lab, zero), sdn.get(lab, zero)
        steps.append({"step": lab, "calls": sp[lab]["calls"], "wall_ms": round(sp[lab]["wall_ms"], 2),
                      "cpu_ms": round(sp[lab]["cpu_ms"], 2),
                      "wall_ms_at_rtt": round(d["wall_ms"], 1),
                      "round_trips": round((d["wall_ms"] - sp[lab]["wall_ms"]) / rtt_ms, 2),
                      "wall_ms_nodelay": round(pn["wall_ms"], 2),
                      "round_trips_nodelay": round((dn["wall_ms"] - pn["wall_ms"]) / rtt_ms, 2)})

    def mean(it) -> float:
        return statistics.fmean(i["wall"] for i in it) * 1000

    tot_plain = mean(plain)
    tot_cpu = statistics.fmean(i["cpu"] for i in plain) * 1000
    tot_del = mean(delayed)
    first = plain[-1]
    nodelay_cmp = {"wall_ms": round(mean(nodelay), 2),
                   "wall_ms_median": round(statistics.median(i["wall"] for i in nodelay) * 1000, 2),
                   "cpu_ms": round(statistics.fmean(i["cpu"] for i in nodelay) * 1000, 2),
                   "wall_ms_at_rtt": round(mean(delayed_nd), 1),
                   "round_trips": round((mean(delayed_nd) - mean(nodelay)) / rtt_ms, 2)}
    return {"k": k, "k_delayed": len(delayed), "rtt_ms": rtt_ms,
            "total": {"wall_ms_median": round(statistics.median(i["wall"] for i in plain) * 1000, 2),
                      "wall_ms": round(tot_plain, 2), "cpu_ms": round(tot_cpu, 2),
                      "wall_ms_at_rtt": round(tot_del, 1), "round_trips": round((tot_del - tot_plain) / rtt_ms, 2)},
            "steps": steps, "nodelay": nodelay_cmp, "ssh_sent": first["sent"], "ssh_recv": first["recv"], "sftp_requests": first["sftp"],
            "channel_requests": first["chan_req"],
            "select_calls_mean": {k: statistics.fmean(i.get("select", {}).get(k, 0) for i in plain)
                                  for k in ("calls", "after EOF, before exit-status (returns at once)")},
            "proxy_turns": statistics.median(c["turns"] for c in conns) if conns else None}


# ------------------------------------------------------------------------------------------
# py-spy raw output → categories
# ------------------------------------------------------------------------------------------

WAIT_LEAVES = ("Condition.wait", "Event.wait", "select (", "poll (", "read_all (", "SemLock.__enter__",
               "_wait_for_tstate_lock", "recv (", "accept (", "sleep (", "BufferedPipe.read (", "Queue.get (",
               "_recv_bytes", "_recv (", "wait (")

RULES = [  # (category, substrings of a frame); frames are tried from the leaf up, first match wins
    ("start-up: imports + bytecode", ["_find_and_load", "_handle_fromlist", "_compile_bytecode",
                                      "exec_module", "_call_with_frames_removed"]),
    ("key exchange (X25519, hashes, host key signature)", ["kex_curve25519", "kex_group", "kex_ecdh",
                                                            "_parse_kex", "_verify_key", "_activate_outbound",
                                                            "_activate_inbound", "_compute_key",
                                                            "_negotiate_keys", "_parse_newkeys",
                                                            "_send_kex_init", "_parse_kex_init", "ed25519.py"]),
    ("user authentication (key load, ed25519 sign)", ["auth_handler", "sign_ssh_data", "from_private_key",
                                                       "load_private_key"]),
    ("host key check / known_hosts parsing", ["hostkeys.py"]),
    ("SFTP client", ["sftp_client.py", "sftp_file.py", "sftp.py"]),
    ("packet crypto + framing (cipher, MAC)", ["packet.py", "cryptography/hazmat", "message.py"]),
    ("channels / remote commands", ["channel.py", "buffered_pipe.py", "connection.py"]),
    ("transport thread (dispatch)", ["transport.py"]),
    ("concurdeploy push logic", ["push.py", "replace.py", "facts.py", "handler.py"]),
    ("inventory + service build (controller)", ["inventory.py", "service.py", "yaml/", "specs.py", "jinja2/"]),
    ("invoke CLI (parse, config, collection)", ["invoke/"]),
    ("worker pool: processes, queues, pickling", ["multiprocessing/", "pickle", "fanout.py", "forkserver"]),
    ("report / printing", ["report.py", "results.py"]),
]


def classify(raw_path: str) -> dict:
    cats = Counter()
    funcs = Counter()
    total = 0
    for line in open(raw_path, errors="replace"):
        line = line.rstrip("\n")
        if not line:
            continue
        stack, _, n = line.rpartition(" ")
        try:
            n = int(n)
        except ValueError:
            continue
        frames = [f for f in stack.split(";") if not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        total += n
        leaf = frames[-1]
        if any(w in leaf for w in WAIT_LEAVES):
            cats["(blocked: recv, select, locks, sleeps)"] += n
        else:
            for fr in reversed(frames):
                cat = next((c for c, keys in RULES if any(k in fr for k in keys)), None)
                if cat:
                    cats[cat] += n
                    break
            else:
                cats["other"] += n
        name, _, where = leaf.partition(" (")
        funcs[f"{name} ({where.split(':')[0].split('/')[-1]}"] += n
    return {"samples": total, "categories": cats.most_common(),
            "top_functions": [(f + ")", n) for f, n in funcs.most_common(15)]}


def main():
    if sys.argv[1] == "phases":
        out = phases(sys.argv[2])
        print(json.dumps(out))
    elif sys.argv[1] == "loop":  # for py-spy: the plain push loop, no timers
        spec = json.load(open(sys.argv[2]))
        push_loop(spec, int(sys.argv[3]), None, None, None, None)
    elif sys.argv[1] == "classify":
        print(json.dumps(classify(sys.argv[2]), indent=1))


if __name__ == "__main__":
    main()
