#!/usr/bin/env python3
"""A loopback TCP proxy that adds a fixed one-way delay: an emulated WAN without ``tc netem``.

Used by ``bench/run.py --wan`` and by its round-trip count, because this machine's kernel has
no ``sch_netem`` (``CONFIG_NET_SCH_NETEM`` is not set and modules cannot be loaded), so the
network-namespace + veth + netem set-up cannot add delay here. Everything stays on 127.0.0.1.

Model, per proxied connection, with ``d`` = one-way delay (RTT = 2d):

- the TCP handshake is charged: the upstream connection to the server is opened 3d after the
  client connected (SYN, SYN-ACK, ACK), so the server's banner reaches the client 2 RTT after
  ``connect()`` as on a real link;
- every chunk read from either side is written to the other side ``d`` after it was read
  (client bytes are held until the upstream connection exists). Reading goes on while earlier
  chunks wait, so the delay does not throttle bandwidth: only latency is emulated. TCP's own
  congestion window is not (the proxy absorbs it); SSH's channel windows, which are end to end,
  still apply;
- per connection it counts "turns": a client→server flight that follows server→client data,
  i.e. the times the client had to wait for an answer before it could go on (a lower bound on
  the round trips it waited for).

Usage (prints one JSON line ``{"ports": {"<target>": <listen>, ...}}`` when listening)::

    python bench/delayproxy.py --delay-ms 25 --targets 40001,40002 --max-seconds 3600

It exits by itself after ``--max-seconds`` or on SIGTERM/SIGINT, or when stdin reaches EOF
(so it dies with the benchmark). Send ``stats`` + newline on stdin to get a JSON line with the
per-connection turn counts of the connections closed so far (and reset them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys


class Stats:
    def __init__(self):
        self.closed: list[dict] = []


async def _reader(src: asyncio.StreamReader, q: asyncio.Queue, d: float, state: dict, side: str):
    loop = asyncio.get_running_loop()
    while True:
        try:
            data = await src.read(262144)
        except (ConnectionError, OSError):
            data = b""
        now = loop.time()
        if data:
            state["bytes_" + side] += len(data)
            if side == "c2s" and state["last"] == "s2c":
                state["turns"] += 1
            state["last"] = side
        q.put_nowait((now + d, data))
        if not data:
            return


async def _writer(q: asyncio.Queue, dst_fut: asyncio.Future, closing: list):
    loop = asyncio.get_running_loop()
    dst = await dst_fut
    if dst is None:
        return
    while True:
        due, data = await q.get()
        wait = due - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        try:
            if not data:
                if dst.can_write_eof():
                    dst.write_eof()
                return
            dst.write(data)
            await dst.drain()
        except (ConnectionError, OSError, RuntimeError):
            return


async def _handle(client_r, client_w, target: int, d: float, stats: Stats):
    loop = asyncio.get_running_loop()
    state = {"turns": 0, "last": None, "bytes_c2s": 0, "bytes_s2c": 0, "target": target,
             "opened": loop.time()}
    up_fut: asyncio.Future = loop.create_future()
    c2s: asyncio.Queue = asyncio.Queue()
    s2c: asyncio.Queue = asyncio.Queue()
    client_fut: asyncio.Future = loop.create_future()
    client_fut.set_result(client_w)
    t_read_c = asyncio.create_task(_reader(client_r, c2s, d, state, "c2s"))
    t_write_s = asyncio.create_task(_writer(c2s, up_fut, []))
    up_w = None
    try:
        await asyncio.sleep(3 * d)  # TCP three-way handshake
        try:
            up_r, up_w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", target), 10)
        except (TimeoutError, OSError):
            up_fut.set_result(None)
            t_read_c.cancel()
            client_w.close()
            return
        up_fut.set_result(up_w)
        t_read_s = asyncio.create_task(_reader(up_r, s2c, d, state, "s2c"))
        t_write_c = asyncio.create_task(_writer(s2c, client_fut, []))
        await asyncio.gather(t_read_c, t_write_s, t_read_s, t_write_c, return_exceptions=True)
    except asyncio.CancelledError:
        pass
    finally:
        for w in (client_w, up_w):
            if w is not None:
                try:
                    w.close()
                except Exception:
                    pass
        state["seconds"] = round(loop.time() - state.pop("opened"), 4)
        state.pop("last", None)
        stats.closed.append(state)


async def main_async(args) -> None:
    d = args.delay_ms / 1000.0
    stats = Stats()
    servers = []
    ports = {}
    for target in args.targets:
        srv = await asyncio.start_server(
            lambda r, w, t=target: _handle(r, w, t, d, stats), "127.0.0.1", 0, backlog=1024)
        servers.append(srv)
        ports[str(target)] = srv.sockets[0].getsockname()[1]
    print(json.dumps({"ports": ports}), flush=True)
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))

    async def watch_stdin():
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:
            line = await reader.readline()
            if not line:
                break
            if line.strip() == b"stats":
                print(json.dumps({"closed": stats.closed}), flush=True)
                stats.closed = []
        if not stop.done():
            stop.set_result(None)

    stdin_task = asyncio.create_task(watch_stdin())
    try:
        await asyncio.wait_for(stop, args.max_seconds)
    except TimeoutError:
        pass
    stdin_task.cancel()
    for srv in servers:
        srv.close()
    for task in asyncio.all_tasks():
        if task is not asyncio.current_task():
            task.cancel()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--delay-ms", type=float, required=True, help="one-way delay in ms (RTT = 2x)")
    ap.add_argument("--targets", required=True,
                    help="comma-separated 127.0.0.1 ports to proxy to, one listener each")
    ap.add_argument("--max-seconds", type=float, default=3600.0)
    args = ap.parse_args()
    args.targets = [int(p) for p in args.targets.split(",") if p]
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
