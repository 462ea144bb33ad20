"""A ProxyCommand for tests: ``python3 stdio_relay.py HOST PORT REPORT`` connects to
HOST:PORT (127.0.0.x only) and relays its stdin/stdout to that socket, like ``nc`` or
``ssh -W``. Before relaying it writes ``REPORT``: JSON with its pid and the names of its
environment variables (so a test can check no secret reached it). Ends when either side
closes.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import sys


def main() -> None:
    host, port, report = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if not host.startswith("127."):
        sys.exit(f"stdio_relay: {host} is not a loopback address")
    sock = socket.create_connection((host, port), timeout=10)
    sock.settimeout(None)
    with open(report, "w", encoding="utf-8") as f:
        json.dump({"pid": os.getpid(), "env": sorted(os.environ)}, f)
    sel = selectors.DefaultSelector()
    sel.register(0, selectors.EVENT_READ, "stdin")
    sel.register(sock, selectors.EVENT_READ, "sock")
    while True:
        for key, _ in sel.select():
            if key.data == "stdin":
                data = os.read(0, 65536)
                if not data:
                    return
                sock.sendall(data)
            else:
                data = sock.recv(65536)
                if not data:
                    return
                os.write(1, data)


if __name__ == "__main__":
    main()
