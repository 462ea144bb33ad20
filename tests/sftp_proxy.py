#!/usr/bin/env python3
"""An SFTP server WITHOUT ``posix-rename@openssh.com``, for sshd's ``Subsystem sftp``.

Runs OpenSSH's own ``sftp-server`` behind a small proxy on stdin/stdout that removes the
extension from the VERSION packet and answers every ``posix-rename@openssh.com`` request
with ``SSH_FX_OP_UNSUPPORTED``, as a server that lacks the extension does (older OpenSSH,
appliances, other SFTP servers). Every other packet passes through unchanged.

Usage (sshd_config): ``Subsystem sftp /usr/bin/python3 /path/sftp_proxy.py [--keep] [--log FILE]
[--swap VICTIM [--hardlink]] [--beacon FIFO --hold SECONDS] SFTP_SERVER``.
``--keep`` keeps the extension (a plain pass-through); ``--log FILE`` appends one line per OPEN
request, ``<pflags hex> <permissions octal or -> <path>``, so a test can see how files are created,
then per opened file ``fsetstat <path> <uid:gid or -> <permissions octal or ->`` for each
FSETSTAT on its handle and ``write <path>`` for its first WRITE. ``--swap VICTIM``: when the
client closes a temporary upload (a name holding ``.concurdeploy-``), the file is removed and a
symlink to VICTIM (``--hardlink``: a hard link) put at its path before the CLOSE goes on: another
user swapping the path. ``--beacon FIFO --hold SECONDS`` writes ``rename`` to the FIFO (a
:class:`tests.sshd.Beacon`) at each rename request (plain or ``posix-rename@openssh.com``), then
holds it SECONDS before passing it on: the rename step of a push, reached as an event (the fault
matrix).
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import threading
import time

EXT = b"posix-rename@openssh.com"
FXP_VERSION, FXP_STATUS, FXP_EXTENDED = 2, 101, 200
FX_OP_UNSUPPORTED = 8
FXP_OPEN, FXP_CLOSE, FXP_WRITE, FXP_FSETSTAT, FXP_HANDLE = 3, 4, 6, 10, 102
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


def _log_line(path: str | None, line: str) -> None:
    if path:
        with open(path, "a", encoding="utf-8", errors="surrogateescape") as fh:
            fh.write(line + "\n")


def _attrs(body: bytes, at: int) -> str:
    """``<uid:gid or -> <permissions octal or ->`` of an ATTRS block at ``at``."""
    flags, at = struct.unpack_from(">I", body, at)[0], at + 4
    at += 8 if flags & ATTR_SIZE else 0
    ids = "-"
    if flags & ATTR_UIDGID:
        ids = "%d:%d" % struct.unpack_from(">II", body, at)
        at += 8
    perm = f"{struct.unpack_from('>I', body, at)[0]:o}" if flags & ATTR_PERMISSIONS else "-"
    return f"{ids} {perm}"


def main() -> int:
    args = sys.argv[1:]
    keep = "--keep" in args
    log = args[args.index("--log") + 1] if "--log" in args else None
    victim = args[args.index("--swap") + 1] if "--swap" in args else None
    beacon = args[args.index("--beacon") + 1] if "--beacon" in args else None
    hold = float(args[args.index("--hold") + 1]) if "--hold" in args else 0.0
    values = {args[args.index(o) + 1] for o in ("--log", "--beacon", "--hold", "--swap") if o in args}
    server = args[-1] if args and not args[-1].startswith("-") and args[-1] not in values \
        else "/usr/lib/openssh/sftp-server"
    opening: dict[bytes, str] = {}  # OPEN request id -> path
    handles: dict[bytes, str] = {}  # handle -> path
    written: set[bytes] = set()
    proc = subprocess.Popen([server], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    out, lock = sys.stdout.buffer, threading.Lock()

    def upstream() -> None:  # server -> client
        first = True
        while (body := _packet(proc.stdout)) is not None:
            if first and body[:1] == bytes([FXP_VERSION]) and not keep:
                body = _strip_version(body)
            first = False
            if body[:1] == bytes([FXP_HANDLE]) and body[1:5] in opening:
                handles[_string(body, 5)[0]] = opening.pop(body[1:5])
            with lock:
                out.write(_frame(body))
                out.flush()
        out.close()

    t = threading.Thread(target=upstream, daemon=True)
    t.start()
    stdin = sys.stdin.buffer
    while (body := _packet(stdin)) is not None:
        kind = body[:1]
        if kind == bytes([FXP_OPEN]):
            opening[body[1:5]] = _string(body, 5)[0].decode("utf-8", "surrogateescape")
            if log:
                _log_open(log, body)
        elif kind in (bytes([FXP_WRITE]), bytes([FXP_FSETSTAT]), bytes([FXP_CLOSE])):
            handle, at = _string(body, 5)
            path = handles.get(handle)
            if path is not None and kind == bytes([FXP_FSETSTAT]):
                _log_line(log, f"fsetstat {path} {_attrs(body, at)}")
            elif path is not None and kind == bytes([FXP_WRITE]) and handle not in written:
                written.add(handle)
                _log_line(log, f"write {path}")
            elif path is not None and kind == bytes([FXP_CLOSE]):
                handles.pop(handle, None)
                written.discard(handle)
                if victim and ".concurdeploy-" in os.path.basename(path):
                    os.unlink(path)
                    (os.link if "--hardlink" in args else os.symlink)(victim, path)
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
