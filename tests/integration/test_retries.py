"""Transient connect failures are retried with backoff; auth failures never are (issue 3 §6).

A loopback proxy in front of a real sshd resets its first connections — as sshd itself
does past its ``MaxStartups`` limit — and forwards the later ones byte for byte.
"""

from __future__ import annotations

import getpass
import socket
import struct
import threading

import pytest

from concurdeploy.executors.local import Job, run_host
from concurdeploy.records import HostResult, Status
from concurdeploy.ssh.specs import ConnectSpec

pytestmark = pytest.mark.integration


def ok_action(conn, payload):  # module level: may be pickled
    return HostResult(conn.spec.name, Status.OK, data={"out": conn.run("echo up").stdout})


class ResettingProxy:
    """Resets the first ``resets`` connections, then forwards to 127.0.0.1:``target``."""

    def __init__(self, target: int, resets: int):
        self.target, self.resets, self.accepted = target, resets, 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._serve, daemon=True)]
        self._threads[0].start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            if self.accepted <= self.resets:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()  # RST, like a server shedding load
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            for a, b in ((conn, upstream), (upstream, conn)):
                t = threading.Thread(target=self._pipe, args=(a, b), daemon=True)
                t.start()
                self._threads.append(t)

    def _pipe(self, src, dst):
        try:
            while not self._stop.is_set():
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self._stop.set()
        self.sock.close()
        for t in self._threads:
            t.join(2)


@pytest.fixture
def one_sshd(sshd_factory, known_hosts_file, tmp_path):
    server = sshd_factory(1)[0]
    return server, tmp_path


def _spec(port, kh, key, retries):
    return ConnectSpec(name="h1", hostname="127.0.0.1", port=port, user=getpass.getuser(),
                       key_file=key, known_hosts=kh, connect_timeout=5, command_timeout=10,
                       allow_agent=False, connect_retries=retries)


def _known_hosts_for_port(server, port, path):
    key_part = server.host_public_key_line.split()[:2]
    path.write_text(f"[127.0.0.1]:{port} {' '.join(key_part)}\n")
    return str(path)


def test_reset_connections_are_retried_until_one_succeeds(one_sshd, client_keys):
    server, tmp = one_sshd
    proxy = ResettingProxy(server.port, resets=2)
    try:
        kh = _known_hosts_for_port(server, proxy.port, tmp / "kh")
        result = run_host(Job(_spec(proxy.port, kh, client_keys.ed25519, retries=2), ok_action))
        assert result.status is Status.OK, result
        assert result.data["out"] == "up\n"
        assert proxy.accepted == 3  # two resets, then the retry that got through
    finally:
        proxy.close()


def test_without_retries_a_reset_is_unreachable(one_sshd, client_keys):
    server, tmp = one_sshd
    proxy = ResettingProxy(server.port, resets=1)
    try:
        kh = _known_hosts_for_port(server, proxy.port, tmp / "kh")
        result = run_host(Job(_spec(proxy.port, kh, client_keys.ed25519, retries=0), ok_action))
        assert result.status is Status.UNREACHABLE and proxy.accepted == 1
    finally:
        proxy.close()


def test_authentication_failures_are_never_retried(one_sshd, client_keys):
    server, tmp = one_sshd
    proxy = ResettingProxy(server.port, resets=0)
    try:
        kh = _known_hosts_for_port(server, proxy.port, tmp / "kh")
        result = run_host(Job(_spec(proxy.port, kh, client_keys.other, retries=3), ok_action))
        assert result.status is Status.FAILED and result.error_kind == "AuthFailed"
        assert proxy.accepted == 1
    finally:
        proxy.close()


def test_host_key_mismatch_is_never_retried(one_sshd, client_keys, tmp_path):
    server, tmp = one_sshd
    proxy = ResettingProxy(server.port, resets=0)
    try:
        other = tmp_path / "kh-wrong"
        pub = open(client_keys.ed25519 + ".pub").read().split()[:2]  # a key that is not the host's
        other.write_text(f"[127.0.0.1]:{proxy.port} {' '.join(pub)}\n")
        result = run_host(Job(_spec(proxy.port, str(other), client_keys.ed25519, retries=3), ok_action))
        assert result.error_kind == "HostKeyMismatch" and proxy.accepted == 1
    finally:
        proxy.close()
