#!/usr/bin/env python3
"""An SFTP server WITHOUT ``posix-rename@openssh.com``, for sshd's ``Subsystem sftp``.

Runs OpenSSH's own ``sftp-server`` behind a small proxy on stdin/stdout that removes the
extension from the VERSION packet and answers every ``posix-rename@openssh.com`` request
with ``SSH_FX_OP_UNSUPPORTED``, as a server that lacks the extension does (older OpenSSH,
appliances, other SFTP servers). Every other packet passes through unchanged.

Usage (sshd_config): ``Subsystem sftp /usr/bin/python3 /path/sftp_proxy.py [--keep] [--log FILE]
[--beacon FIFO --hold SECONDS] SFTP_SERVER``.
``--keep`` keeps the extension (a plain pass-through); ``--log FILE`` appends one line per OPEN
request, ``<pflags hex> <permissions octal or -> <path>``, so a test can see how files are created;
``--beacon FIFO --hold SECONDS`` writes ``rename`` to the FIFO (a :class:`tests.sshd.Beacon`) at
each rename request (plain or ``posix-rename@openssh.com``), then holds it SECONDS before passing
it on: the rename step of a push, reached as an event (the fault matrix).
"""

from __future__ import annotations

import struct
import subprocess
import sys
import threading
import time

EXT = b"posix-rename@openssh.com"
FXP_VERSION, FXP_STATUS, FXP_EXTENDED = 2, 101, 200
FX_OP_UNSUPPORTED = 8
FXP_OPEN = 3
FXP_RENAME = 18
ATTR_SIZE, ATTR_UIDGID, ATTR_PERMISSIONS = 0x1, 0x2, 0x4


def _read_exact(stream, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = stream.read(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def _packet(stream) -> bytes | None:
    head = _read_exact(stream, 4)
    if head is None:
        return None
    return _read_exact(stream, struct.unpack(">I", head)[0])


def _frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def _string(data: bytes, at: int) -> tuple[bytes, int]:
    n = struct.unpack_from(">I", data, at)[0]
    return data[at + 4:at + 4 + n], at + 4 + n


def _strip_version(body: bytes) -> bytes:
    """The VERSION packet without the posix-rename extension pair."""
    out, at = body[:5], 5
    while at < len(body):
        name, at = _string(body, at)
        data, at = _string(body, at)
        if name != EXT:
            out += struct.pack(">I", len(name)) + name + struct.pack(">I", len(data)) + data
    return out


def _log_open(path: str, body: bytes) -> None:
    name, at = _string(body, 5)
    pflags, aflags = struct.unpack_from(">II", body, at)
    at += 8 + (8 if aflags & ATTR_SIZE else 0) + (8 if aflags & ATTR_UIDGID else 0)
    perm = f"{struct.unpack_from('>I', body, at)[0]:o}" if aflags & ATTR_PERMISSIONS else "-"
    with open(path, "a", encoding="utf-8", errors="surrogateescape") as fh:
        fh.write(f"{pflags:x} {perm} {name.decode('utf-8', 'surrogateescape')}\n")


def main() -> int:
    args = sys.argv[1:]
    keep = "--keep" in args
    log = args[args.index("--log") + 1] if "--log" in args else None
    beacon = args[args.index("--beacon") + 1] if "--beacon" in args else None
    hold = float(args[args.index("--hold") + 1]) if "--hold" in args else 0.0
    values = {args[args.index(o) + 1] for o in ("--log", "--beacon", "--hold") if o in args}
    server = args[-1] if args and not args[-1].startswith("-") and args[-1] not in values else "/usr/lib/openssh/sftp-server"
    proc = subprocess.Popen([server], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    out, lock = sys.stdout.buffer, threading.Lock()

    def upstream() -> None:  # server -> client
        first = True
        while (body := _packet(proc.stdout)) is not None:
            if first and body[:1] == bytes([FXP_VERSION]) and not keep:
                body = _strip_version(body)
            first = False
            with lock:
                out.write(_frame(body))
                out.flush()
        out.close()

    t = threading.Thread(target=upstream, daemon=True)
    t.start()
    stdin = sys.stdin.buffer
    while (body := _packet(stdin)) is not None:
        if log and body[:1] == bytes([FXP_OPEN]):
            _log_open(log, body)
        if beacon and (body[:1] == bytes([FXP_RENAME]) or body[:1] == bytes([FXP_EXTENDED])
                       and _string(body, 5)[0] == EXT):
            with open(beacon, "w") as fh:  # the test holds the FIFO's read end open
                fh.write("rename\n")
            time.sleep(hold)
        if body[:1] == bytes([FXP_EXTENDED]) and not keep:
            req_id = body[1:5]
            name, _ = _string(body, 5)
            if name == EXT:
                msg = b"Operation unsupported"
                reply = (bytes([FXP_STATUS]) + req_id + struct.pack(">I", FX_OP_UNSUPPORTED)
                         + struct.pack(">I", len(msg)) + msg + struct.pack(">I", 0))
                with lock:
                    out.write(_frame(reply))
                    out.flush()
                continue
        proc.stdin.write(_frame(body))
        proc.stdin.flush()
    proc.stdin.close()
    t.join(timeout=10)
    return proc.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
