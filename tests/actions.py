"""Module-level actions for fan-out tests.

Worker processes receive actions by reference (pickle stores ``tests.actions.NAME``), so
they must live in an importable module, not inside a test function. Each takes
``(conn, payload)`` like every concurdeploy action and returns a ``HostResult``.

The ``time.sleep`` calls here wait for nothing: they are the slow or hung host that the
test is about (a deadline, completion order, a worker dying while others are busy).
"""

from __future__ import annotations

import os
import sys
import time

import paramiko

from concurdeploy.records import HostResult, Status


def _ok(conn, **data) -> HostResult:
    return HostResult(conn.spec.name, Status.OK, data={"pid": os.getpid(), **data})


def echo_pid(conn, payload) -> HostResult:
    """Run a real remote command (proves the connection works); report the worker's pid."""
    res = conn.run("echo alive")
    return _ok(conn, remote=res.stdout.strip())


def sleep_then_ok(conn, seconds) -> HostResult:
    """Sleep ``seconds`` (float) in the worker, then ``ok`` with the worker's pid."""
    time.sleep(seconds)
    return _ok(conn, slept=seconds)


def write_pid_then_sleep(conn, payload) -> HostResult:
    """``payload = (pid_file, seconds)``: record the worker's pid, then sleep."""
    pid_file, seconds = payload
    with open(pid_file, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)
    return _ok(conn)


def public_key(pub_path: str) -> paramiko.PKey:
    """Load an OpenSSH ``.pub`` file as a public ``PKey``."""
    import base64
    kind, blob = open(pub_path).read().split()[:2]
    return paramiko.PKey.from_type_string(kind, base64.b64decode(blob))


def raise_bad_host_key(conn, payload) -> HostResult:
    """``payload`` = path of an RSA ``.pub`` file: raise paramiko's BadHostKeyException
    (got the server's key, expected that RSA key).

    An RSA ``PKey`` wraps a ``cryptography`` key object that cannot be pickled, so this
    exception cannot cross a process boundary as it is. ``payload`` None: ``ok``.
    """
    if payload:
        raise paramiko.BadHostKeyException(conn.spec.hostname, conn.transport.get_remote_server_key(),
                                           public_key(payload))
    return _ok(conn)


def die_if_told(conn, payload) -> HostResult:
    """``payload == "die"``: kill the worker process outright (no cleanup, no result).

    Other hosts work for 0.2 s, so they are still in flight when a worker dies.
    """
    if payload == "die":
        os._exit(3)
    time.sleep(0.2)
    return _ok(conn)


def sys_exit_if_told(conn, payload) -> HostResult:
    """``payload == "exit"``: ``sys.exit(5)`` (a BaseException, not an Exception)."""
    if payload == "exit":
        sys.exit(5)
    return _ok(conn)


def unpicklable_result(conn, payload) -> HostResult:
    """Return a result whose ``data`` cannot be pickled (a lock) when told to."""
    if payload == "bad":
        import threading
        return HostResult(conn.spec.name, Status.OK, data={"lock": threading.Lock()})
    return _ok(conn)
