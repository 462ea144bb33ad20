"""Fault-injection tools for the integration tests (loopback only, every wait bounded).

* :class:`Run`: ``concurdeploy push haproxy --report-json …`` started in the background;
  :meth:`Run.finish` bounds it, :meth:`Run.consistent` checks report ↔ exit code.
* :class:`Relay`: a TCP relay 127.0.0.1:port → an sshd, which the test cuts on cue
  (:meth:`Relay.cut`) or once N bytes went towards the server (``cut_after``).
* :class:`BannerServer`: accepts, sends an SSH banner, then says nothing more.
* :func:`freeze` / :func:`thaw`: SIGSTOP / SIGCONT an sshd's session processes.
* :func:`workers_of`: the pool's worker processes of a controller (via /proc).
* :func:`session_processes` / :func:`remote_leftovers`: the processes an sshd's sessions
  started (their ``SSH_CONNECTION``), and those still there after a bounded wait.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.sshd import _children_map, _descendants, _wait_pids_gone

#: Strings that must never reach an operator: a library's internals or a raw exception.
LEAKS = ("Traceback", "site-packages", "paramiko/", ".py:", "EOFError", "SSHException")


def cmdline(pid: int) -> str:
    """``/proc/PID/cmdline`` with spaces, or "" if gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def workers_of(controller: int) -> list[int]:
    """The pool's worker processes of ``controller``: the children of its fork server (a
    child of the controller whose command line runs ``multiprocessing.forkserver``)."""
    children = _children_map()
    servers = [p for p in children.get(controller, []) if "multiprocessing.forkserver" in cmdline(p)]
    return [w for s in servers for w in children.get(s, [])]


def freeze(server) -> list[int]:
    """SIGSTOP every session process of ``server`` (an OpenSSHServer; not its listener)."""
    pids = _descendants(server.pid)
    for p in pids:
        os.kill(p, signal.SIGSTOP)
    return pids


def thaw(pids) -> None:
    """SIGCONT ``pids`` (those still there)."""
    for p in pids:
        try:
            os.kill(p, signal.SIGCONT)
        except ProcessLookupError:
            pass


class Run:
    """A ``concurdeploy push haproxy --report-json REPORT ARGS`` started in the background.

    :param python: interpreter flags (e.g. ``("-X", "importtime")``).
    """

    def __init__(self, f, *args: str, env: dict | None = None, python: tuple = (), task: tuple = ("push", "haproxy"),
                 stdout_file=None):
        self.f, self.report = f, f.project / "report.json"
        self.t0 = time.monotonic()
        self._stdout_file = stdout_file  # a path: stdout goes there (a flood never blocks the command)
        out = open(stdout_file, "w") if stdout_file else subprocess.PIPE
        try:
            self.proc = subprocess.Popen([sys.executable, *python, "-m", "concurdeploy", *task,
                                          "--report-json", str(self.report), *args],
                                         cwd=f.project, stdout=out, stderr=subprocess.PIPE,
                                         text=True, env={**os.environ, **(env or {})})
        finally:
            if stdout_file:
                out.close()
        self.out = self.err = ""
        self.took = 0.0

    def finish(self, timeout: float = 60) -> int:
        """Wait for the exit (at most ``timeout`` s, then kill and fail); return the exit code."""
        try:
            self.out, self.err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.out, self.err = self.proc.communicate()
            pytest.fail(f"concurdeploy did not exit within {timeout} s:\n{self.out}{self.err}")
        self.took = time.monotonic() - self.t0
        if self._stdout_file:
            with open(self._stdout_file, errors="replace") as fh:
                self.out = fh.read(1 << 20)
        return self.proc.returncode

    def wait_stderr(self, text: str) -> str:
        """Read stderr lines until one holds ``text`` (bounded by the process's output)."""
        line = self.proc.stderr.readline()
        while line and text not in line:
            line = self.proc.stderr.readline()
        assert text in line, f"{text!r} never appeared on stderr"
        return line

    def doc(self) -> dict:
        assert self.report.exists(), f"no JSON report written:\n{self.out}{self.err}"
        return json.loads(self.report.read_text())

    def host(self, name: str) -> dict:
        return next(h for h in self.doc()["hosts"] if h["host"] == name)

    def statuses(self) -> dict:
        return {h["host"]: h["status"] for h in self.doc()["hosts"]}

    def consistent(self, code: int) -> dict:
        """The report exists, its exit code is the process's, nothing internal leaked."""
        doc = self.doc()
        assert doc["exit_code"] == code == self.proc.returncode, (doc["exit_code"], code, self.out, self.err)
        text = self.out + self.err + self.report.read_text()
        assert not [w for w in LEAKS if w in text], (self.out, self.err)
        return doc


class Relay:
    """A TCP relay from 127.0.0.1:``port`` to 127.0.0.1:``target`` (threads, loopback only).

    :param cut_after: close every connection once this many bytes went client → server.
    :param hold: on accepting a connection, set :attr:`accepted` and wait for
        :meth:`release` (at most 30 s) before connecting to the target: the client is then
        in its connect step.
    :param pause_after: once this many bytes went client → server, set :attr:`paused` and
        stop forwarding until :meth:`release` (at most 30 s): the client is mid-upload.
    :ivar sent: bytes relayed client → server so far.
    :ivar was_cut: set when the relay cut its connections.
    """

    def __init__(self, target: int, cut_after: int | None = None, hold: bool = False,
                 pause_after: int | None = None):
        self.target, self.cut_after, self.hold, self.pause_after = target, cut_after, hold, pause_after
        self.sent = 0
        self.was_cut, self.accepted, self.paused = threading.Event(), threading.Event(), threading.Event()
        self._go = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def release(self) -> None:
        """Let a held connection go on to the target, or a paused one go on forwarding."""
        self._go.set()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        with self._lock:
            self._socks.append(client)
        self.accepted.set()
        if self.hold:
            self._go.wait(30)
        try:
            server = socket.create_connection(("127.0.0.1", self.target), timeout=5)
        except OSError:  # the target is gone: the client sees its connection closed
            client.close()
            return
        server.settimeout(None)
        with self._lock:
            self._socks.append(server)
            if self.was_cut.is_set():
                self._close_all()
                return
        threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
        threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        while True:
            try:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
            except OSError:
                break
            if upstream:
                with self._lock:
                    self.sent += len(data)
                    over = self.cut_after is not None and self.sent >= self.cut_after
                    pause = self.pause_after is not None and self.sent >= self.pause_after \
                        and not self.paused.is_set()
                if over:
                    self.cut()
                    return
                if pause:
                    self.paused.set()
                    self._go.wait(30)
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _close_all(self) -> None:
        for s in self._socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def cut(self) -> None:
        """Close every relayed connection now (both sides see it at once); later ones too."""
        with self._lock:
            self.was_cut.set()
            self._close_all()

    def close(self) -> None:
        self.release()
        self.cut()
        self._listener.close()


class BannerServer:
    """Accepts TCP connections on 127.0.0.1, sends ``SSH-2.0-OpenSSH_9.6\\r\\n``, then nothing.

    :ivar connections: connections accepted so far.
    """

    def __init__(self):
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.connections = 0
        self.times: list[float] = []
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            self.times.append(time.monotonic())
            try:
                conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
            except OSError:
                pass
            self._held.append(conn)  # held open, silent, until close()

    def close(self) -> None:
        self._listener.close()
        for c in self._held:
            c.close()


def session_processes(port: int) -> list[int]:
    """PIDs of the processes started by a session of the sshd listening on ``port``: those whose
    environment holds ``SSH_CONNECTION=… <port>`` (sshd sets it in every session; children
    inherit it, also once re-parented after their session ended). Root reads every environ."""
    found = []
    suffix = f" {port}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                env = fh.read()
        except OSError:  # gone, or not ours to read
            continue
        if any(v.startswith(b"SSH_CONNECTION=") and v.endswith(suffix) for v in env.split(b"\0")):
            found.append(int(entry))
    return found


def remote_leftovers(port: int, timeout: float) -> list[str]:
    """Wait up to ``timeout`` s (on pidfds) for every process of the sshd on ``port``'s sessions
    to end (:func:`session_processes`; those that start meanwhile too); returns
    ``"PID command line"`` of the ones still there."""
    deadline = time.monotonic() + timeout
    while True:  # bounded by the deadline: each turn waits for the processes seen, or returns
        pids = session_processes(port)
        left = deadline - time.monotonic()
        if not pids or left <= 0:
            return [f"{p} {cmdline(p)}" for p in pids]
        _wait_pids_gone(pids, left)
