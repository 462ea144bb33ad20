"""``concurdeploy.ssh.connection.Connection`` against real SSH servers on 127.0.0.1.

Authentication (every key type, ``key_env``, passphrases, ssh-agent, passwords), host key
policies (strict / accept-new / off, hashed and ``[host]:port`` entries, concurrent
trust-on-first-use), timeouts and output decoding. Servers: real OpenSSH ``sshd``
(``sshd_factory``), a TCP listener that never talks (``stalling_server``) and, for
passwords only, a small paramiko server defined here (a test sshd cannot check a password
without a system account password). Nothing here talks to any address but 127.0.0.1.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import paramiko
import pytest

from concurdeploy.exceptions import (
    AuthFailed,
    CommandTimeout,
    CredentialsMissing,
    HostKeyMismatch,
    HostKeyUnknown,
    HostUnreachable,
)
from concurdeploy.executors.local import Job, run_host, run_jobs
from concurdeploy.operations.commands import RunJob, run_command
from concurdeploy.records import Status
from concurdeploy.ssh.remote import BOOTSTRAP
from concurdeploy.ssh.connection import Connection
from concurdeploy.ssh.hostkeys import fingerprint
from concurdeploy.ssh.specs import ConnectSpec
from tests.sshd import find_ssh_keygen, free_port, login_user

pytestmark = pytest.mark.integration

LOOPBACK = "127.0.0.1"
PASSPHRASE = "secretpass"


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def make_spec(port: int, known_hosts: str, **kw) -> ConnectSpec:
    """A spec for 127.0.0.1:port as the login user; no agent unless asked; short timeouts."""
    kw.setdefault("user", login_user())
    kw.setdefault("allow_agent", False)
    kw.setdefault("connect_timeout", 5.0)
    kw.setdefault("command_timeout", 10.0)
    return ConnectSpec(name=kw.pop("name", "h1"), hostname=LOOPBACK, port=port,
                       known_hosts=known_hosts, **kw)


def keygen(path: Path, key_type: str, passphrase: str = "", fmt: str | None = None) -> str:
    """Create ``path`` / ``path.pub`` with ssh-keygen; return the private key path."""
    cmd = [find_ssh_keygen(), "-q", "-t", key_type, "-N", passphrase, "-C", f"test-{key_type}"]
    if key_type == "rsa":
        cmd += ["-b", "2048"]
    if fmt:
        cmd += ["-m", fmt]
    cmd += ["-f", str(path)]
    subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    return str(path)


def keygen_fingerprint(pub_path: str) -> str:
    """``SHA256:…`` as ``ssh-keygen -lf`` prints it."""
    out = subprocess.run([find_ssh_keygen(), "-lf", pub_path], check=True, capture_output=True,
                         text=True, timeout=30).stdout
    return out.split()[1]


def pub_line(private_path: str) -> str:
    """``keytype base64`` of ``private_path.pub``."""
    return " ".join(Path(private_path + ".pub").read_text().split()[:2])


def secret_lines(private_path: str) -> list[str]:
    """The base64 body lines of a private key file: none may ever appear in a message."""
    return [ln for ln in Path(private_path).read_text().splitlines()
            if ln and not ln.startswith("-----")]


def assert_no_secret(text: str, *secrets: str) -> None:
    for s in secrets:
        assert s not in text, "a secret leaked into a message"


def echo_ok(conn: Connection) -> None:
    res = conn.run("echo ok")
    assert (res.exited, res.stdout, res.stderr) == (0, "ok\n", "")


@pytest.fixture(scope="module")
def extra_keys(tmp_path_factory) -> dict:
    """Host keys (rsa, ecdsa) for servers with several, and a passphrase-protected client key."""
    if find_ssh_keygen() is None:
        pytest.skip("ssh-keygen not found")
    d = tmp_path_factory.mktemp("extra-keys")
    return {
        "rsa_host": keygen(d / "rsa_host", "rsa"),
        "ecdsa_host": keygen(d / "ecdsa_host", "ecdsa"),
        "ed25519_host_other": keygen(d / "ed25519_host_other", "ed25519"),
        "encrypted": keygen(d / "id_encrypted", "ed25519", PASSPHRASE),
        "encrypted_rsa_pem": keygen(d / "id_encrypted_rsa", "rsa", PASSPHRASE, fmt="PEM"),
    }


@pytest.fixture
def server(sshd_factory):
    return sshd_factory(1)[0]


@pytest.fixture
def kh(server, known_hosts_file) -> str:
    """known_hosts holding ``server``'s key as ``[127.0.0.1]:PORT ssh-ed25519 …``."""
    return known_hosts_file([server])


# --------------------------------------------------------------------------
# 1. public key authentication, every key type
# --------------------------------------------------------------------------

@pytest.mark.parametrize("key_type", ["ed25519", "ecdsa", "rsa"])
def test_auth_with_each_key_type(server, kh, client_keys, key_type):
    spec = make_spec(server.port, kh, key_file=getattr(client_keys, key_type))
    with Connection(spec) as conn:
        echo_ok(conn)
        assert conn.warnings == []


def test_rsa_key_uses_sha2_signatures_when_server_refuses_sha1(sshd_factory, known_hosts_file,
                                                               client_keys):
    # OpenSSH 9 already refuses ssh-rsa (SHA-1) by default; say so explicitly so this test
    # means the same on any OpenSSH version.
    srv = sshd_factory(1, extra_config="PubkeyAcceptedAlgorithms rsa-sha2-512,rsa-sha2-256\n")[0]
    spec = make_spec(srv.port, known_hosts_file([srv]), key_file=client_keys.rsa)
    with Connection(spec) as conn:
        echo_ok(conn)
    # ... and an Ed25519 key is refused by that server: the setting is in force.
    with pytest.raises(AuthFailed):
        Connection(make_spec(srv.port, known_hosts_file([srv]), key_file=client_keys.ed25519)).open()


def test_unauthorised_key_is_auth_failed_without_key_text(server, kh, client_keys):
    spec = make_spec(server.port, kh, key_file=client_keys.other)
    with pytest.raises(AuthFailed) as ei:
        Connection(spec).open()
    msg = str(ei.value)
    assert f"key_file {client_keys.other}" in msg and login_user() in msg
    assert f"{LOOPBACK}:{server.port}" in msg
    assert_no_secret(msg, *secret_lines(client_keys.other))


def test_missing_key_file_is_credentials_missing(server, kh, tmp_path):
    missing = str(tmp_path / "no-such-key")
    with pytest.raises(CredentialsMissing, match="cannot read .*no-such-key"):
        Connection(make_spec(server.port, kh, key_file=missing)).open()


def test_run_host_reports_auth_failure_as_failed_result(server, kh, client_keys):
    spec = make_spec(server.port, kh, key_file=client_keys.other)
    res = run_host(Job(spec, run_command, RunJob("echo ok")))
    assert res.status is Status.FAILED and res.error_kind == "AuthFailed"
    assert_no_secret(res.error + res.output, *secret_lines(client_keys.other))

    ok = run_host(Job(make_spec(server.port, kh, key_file=client_keys.ed25519), run_command,
                      RunJob("echo ok")))
    assert ok.status is Status.OK and ok.output == "ok\n" and ok.error is None


# --------------------------------------------------------------------------
# 2. key_env
# --------------------------------------------------------------------------

@pytest.mark.parametrize("key_type", ["ed25519", "rsa"])
def test_key_env_holds_the_private_key_text(server, kh, client_keys, monkeypatch, key_type):
    monkeypatch.setenv("CD_TEST_DEPLOY_KEY", Path(getattr(client_keys, key_type)).read_text())
    with Connection(make_spec(server.port, kh, key_env="CD_TEST_DEPLOY_KEY")) as conn:
        echo_ok(conn)


def test_key_env_unset_names_the_variable(server, kh, monkeypatch):
    monkeypatch.delenv("CD_TEST_DEPLOY_KEY", raising=False)
    with pytest.raises(CredentialsMissing) as ei:
        Connection(make_spec(server.port, kh, key_env="CD_TEST_DEPLOY_KEY")).open()
    assert "key_env CD_TEST_DEPLOY_KEY is not set" in str(ei.value)


def test_key_env_garbage_or_wrong_key_never_shows_its_content(server, kh, client_keys,
                                                             monkeypatch):
    monkeypatch.setenv("CD_TEST_DEPLOY_KEY", "hunter2-not-a-key-at-all")
    with pytest.raises(CredentialsMissing) as ei:
        Connection(make_spec(server.port, kh, key_env="CD_TEST_DEPLOY_KEY")).open()
    assert "CD_TEST_DEPLOY_KEY" in str(ei.value)
    assert_no_secret(str(ei.value), "hunter2")

    monkeypatch.setenv("CD_TEST_DEPLOY_KEY", Path(client_keys.other).read_text())
    spec = make_spec(server.port, kh, key_env="CD_TEST_DEPLOY_KEY")
    with pytest.raises(AuthFailed) as ei:
        Connection(spec).open()
    assert "key_env CD_TEST_DEPLOY_KEY" in str(ei.value)
    assert_no_secret(str(ei.value), *secret_lines(client_keys.other))
    res = run_host(Job(spec, run_command, RunJob("true")))
    assert res.error_kind == "AuthFailed"
    assert_no_secret(repr(res), *secret_lines(client_keys.other))


# --------------------------------------------------------------------------
# 3. passphrase-protected keys
# --------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["encrypted", "encrypted_rsa_pem"])
def test_encrypted_key_with_passphrase_env(server, kh, extra_keys, monkeypatch, which):
    server.authorize(extra_keys[which])
    monkeypatch.setenv("CD_TEST_PASSPHRASE", PASSPHRASE)
    spec = make_spec(server.port, kh, key_file=extra_keys[which], passphrase_env="CD_TEST_PASSPHRASE")
    with Connection(spec) as conn:
        echo_ok(conn)
    # The same key, as text in key_env.
    monkeypatch.setenv("CD_TEST_DEPLOY_KEY", Path(extra_keys[which]).read_text())
    spec = make_spec(server.port, kh, key_env="CD_TEST_DEPLOY_KEY", passphrase_env="CD_TEST_PASSPHRASE")
    with Connection(spec) as conn:
        echo_ok(conn)


def test_encrypted_key_without_passphrase_env(server, kh, extra_keys):
    server.authorize(extra_keys["encrypted"])
    with pytest.raises(CredentialsMissing) as ei:
        Connection(make_spec(server.port, kh, key_file=extra_keys["encrypted"])).open()
    msg = str(ei.value)
    assert "encrypted" in msg and "passphrase_env" in msg and extra_keys["encrypted"] in msg
    assert_no_secret(msg, PASSPHRASE, *secret_lines(extra_keys["encrypted"]))


def test_passphrase_env_unset_or_wrong(server, kh, extra_keys, monkeypatch):
    server.authorize(extra_keys["encrypted"])
    monkeypatch.delenv("CD_TEST_PASSPHRASE", raising=False)
    spec = make_spec(server.port, kh, key_file=extra_keys["encrypted"], passphrase_env="CD_TEST_PASSPHRASE")
    with pytest.raises(CredentialsMissing, match="passphrase_env CD_TEST_PASSPHRASE is not set"):
        Connection(spec).open()

    wrong = "wrong-" + PASSPHRASE
    monkeypatch.setenv("CD_TEST_PASSPHRASE", wrong)
    with pytest.raises(CredentialsMissing) as ei:
        Connection(spec).open()
    msg = str(ei.value)
    assert "passphrase is wrong" in msg
    assert_no_secret(msg, wrong, PASSPHRASE, *secret_lines(extra_keys["encrypted"]))
    res = run_host(Job(spec, run_command, RunJob("true")))
    assert res.error_kind == "CredentialsMissing"
    assert_no_secret(repr(res), wrong, PASSPHRASE)


# --------------------------------------------------------------------------
# 4. ssh-agent
# --------------------------------------------------------------------------

@pytest.fixture
def ssh_agent(request):
    """Start ``ssh-agent -D -a SOCK`` on a short temp path; return ``add(key_path) -> sock``.

    The agent is killed (by its PID) and its directory removed at teardown.
    """
    agent_bin = subprocess.run(["sh", "-c", "command -v ssh-agent"], capture_output=True,
                               text=True).stdout.strip()
    if not agent_bin:
        pytest.skip("ssh-agent not found")
    d = tempfile.mkdtemp(prefix="cd-agent-", dir="/tmp")  # AF_UNIX paths must stay short
    sock = os.path.join(d, "agent.sock")
    proc = subprocess.Popen([agent_bin, "-D", "-a", sock], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            start_new_session=True)

    def stop():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for name in os.listdir(d):
            os.unlink(os.path.join(d, name))
        os.rmdir(d)

    request.addfinalizer(stop)
    # ssh-agent -D prints "SSH_AUTH_SOCK=...; export SSH_AUTH_SOCK;" once it listens.
    ready, _, _ = select.select([proc.stdout], [], [], 10)
    line = proc.stdout.readline().decode() if ready else ""
    assert line.startswith(f"SSH_AUTH_SOCK={sock};"), f"ssh-agent not ready: {line!r} (exit {proc.poll()})"
    proc.stdout.close()

    def add(key_path: str) -> str:
        subprocess.run(["ssh-add", key_path], check=True, capture_output=True, timeout=10,
                       env={**os.environ, "SSH_AUTH_SOCK": sock}, stdin=subprocess.DEVNULL)
        return sock

    return add


def agent_sockets(path: str) -> int:
    """Unix sockets bound to ``path`` (the agent's listener + one per open client), from /proc."""
    with open("/proc/net/unix") as f:
        return sum(1 for line in f if line.rstrip().endswith(" " + path))


def agent_sockets_after_a_round_trip(path: str) -> int:
    """:func:`agent_sockets`, counted once the agent has handled every earlier event.

    A new client asks for the identities and waits for the answer, then the count is taken
    while it is still connected (so it is one of them). The agent serves all ready sockets in
    each turn of its poll loop: a client that closed before this one connected has been seen
    (end-of-file, socket closed) by the time this one is answered. No sleeping, no polling.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(10)
        probe.connect(path)
        probe.sendall(struct.pack(">IB", 1, 11))  # SSH2_AGENTC_REQUEST_IDENTITIES
        header = probe.recv(5, socket.MSG_WAITALL)
        assert len(header) == 5 and header[4] == 12, header  # SSH2_AGENT_IDENTITIES_ANSWER
        count = agent_sockets(path)
    return count - 1  # without the probe


@pytest.mark.parametrize("key_type", ["ed25519", "rsa"])
def test_agent_key_authenticates(server, kh, client_keys, ssh_agent, monkeypatch, key_type):
    sock = ssh_agent(getattr(client_keys, key_type))
    spec = make_spec(server.port, kh, allow_agent=True)
    # Without the agent there is nothing to offer ($HOME/.ssh is empty).
    with pytest.raises(AuthFailed, match="tried: no key"):
        Connection(spec).open()
    monkeypatch.setenv("SSH_AUTH_SOCK", sock)
    with Connection(spec) as conn:
        echo_ok(conn)
        # The agent's socket is closed once authenticated, not left for the garbage collector:
        # the agent then drops its end, leaving only its listening socket.
        assert agent_sockets_after_a_round_trip(sock) == 1
    # allow_agent=False really means no agent.
    with pytest.raises(AuthFailed):
        Connection(make_spec(server.port, kh, allow_agent=False)).open()


def test_agent_with_only_unauthorised_keys_is_auth_failed(server, kh, client_keys, ssh_agent,
                                                          monkeypatch):
    monkeypatch.setenv("SSH_AUTH_SOCK", ssh_agent(client_keys.other))
    with pytest.raises(AuthFailed, match="agent key 1"):
        Connection(make_spec(server.port, kh, allow_agent=True)).open()


def test_dangling_agent_socket_is_not_a_crash(server, kh, client_keys, monkeypatch, tmp_path):
    monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "gone.sock"))
    with Connection(make_spec(server.port, kh, allow_agent=True, key_file=client_keys.ed25519)) as conn:
        echo_ok(conn)


# --------------------------------------------------------------------------
# 5. passwords (a paramiko server: sshd would need a system password)
# --------------------------------------------------------------------------

class _PasswordInterface(paramiko.ServerInterface):
    def __init__(self, user: str, password: str):
        self.user, self.password = user, password
        self.exec_event = threading.Event()
        self.command: bytes | None = None

    def get_allowed_auths(self, username):
        return "password"

    def check_auth_password(self, username, password):
        if (username, password) == (self.user, self.password):
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind, chanid):
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel, command):
        self.command = command
        self.exec_event.set()
        return True


class PasswordServer:
    """A paramiko SSH server on 127.0.0.1 accepting one user/password; every ``exec`` prints ``ok``.

    Each connection is served by one thread; all are bounded and stopped by :meth:`stop`.
    """

    def __init__(self, user: str, password: str):
        self.user, self.password = user, password
        self.host_key = paramiko.ECDSAKey.generate()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind((LOOPBACK, 0))
        self._listener.listen(16)
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._transports: list[paramiko.Transport] = []
        self.commands: list[bytes] = []
        self._accept = threading.Thread(target=self._accept_loop, daemon=True)
        self._accept.start()

    def known_hosts_line(self) -> str:
        return f"[{LOOPBACK}]:{self.port} {self.host_key.get_name()} {self.host_key.get_base64()}"

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, sock: socket.socket) -> None:
        t = paramiko.Transport(sock)
        self._transports.append(t)
        t.add_server_key(self.host_key)
        iface = _PasswordInterface(self.user, self.password)
        try:
            t.start_server(server=iface)
            while not self._stop.is_set() and t.is_active():
                chan = t.accept(timeout=0.2)
                if chan is None:
                    continue
                if not iface.exec_event.wait(5):
                    chan.close()
                    continue
                iface.exec_event.clear()
                self.commands.append(iface.command)
                chan.sendall(b"ok\n")
                chan.send_exit_status(0)
                chan.shutdown_write()
                chan.close()
        except (paramiko.SSHException, EOFError, OSError):
            pass
        finally:
            t.close()

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()
        self._accept.join(2)
        for t in self._transports:
            t.close()
        for th in self._threads:
            th.join(2)


@pytest.fixture
def password_server():
    srv = PasswordServer("deployer", "s3cr3t-Pa55word")
    try:
        yield srv
    finally:
        srv.stop()


def test_password_env_authenticates(password_server, tmp_path, monkeypatch):
    kh = tmp_path / "known_hosts"
    kh.write_text(password_server.known_hosts_line() + "\n")
    monkeypatch.setenv("CD_TEST_PASSWORD", password_server.password)
    spec = make_spec(password_server.port, str(kh), user="deployer", password_env="CD_TEST_PASSWORD")
    with Connection(spec) as conn:
        echo_ok(conn)
    # the exec request is only the bootstrap; the script itself went on stdin
    assert [c[:len(BOOTSTRAP)] for c in password_server.commands] == [BOOTSTRAP.encode()]


def test_wrong_password_is_auth_failed_without_the_password(password_server, tmp_path, monkeypatch):
    kh = tmp_path / "known_hosts"
    kh.write_text(password_server.known_hosts_line() + "\n")
    wrong = "Wr0ng-" + password_server.password
    monkeypatch.setenv("CD_TEST_PASSWORD", wrong)
    spec = make_spec(password_server.port, str(kh), user="deployer", password_env="CD_TEST_PASSWORD")
    with pytest.raises(AuthFailed) as ei:
        Connection(spec).open()
    msg = str(ei.value)
    assert "password_env CD_TEST_PASSWORD" in msg and "'deployer'" in msg
    assert_no_secret(msg, wrong, password_server.password)
    res = run_host(Job(spec, run_command, RunJob("echo ok")))
    assert res.error_kind == "AuthFailed"
    assert_no_secret(repr(res), wrong, password_server.password)
    assert password_server.commands == []

    monkeypatch.delenv("CD_TEST_PASSWORD")
    with pytest.raises(CredentialsMissing, match="password_env CD_TEST_PASSWORD is not set"):
        Connection(spec).open()


# --------------------------------------------------------------------------
# 6. host keys
# --------------------------------------------------------------------------

def test_unknown_host_under_strict_explains_and_the_suggestion_works(server, client_keys, tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    spec = make_spec(server.port, str(kh), key_file=client_keys.ed25519)
    with pytest.raises(HostKeyUnknown) as ei:
        Connection(spec).open()
    msg = str(ei.value)
    fp = keygen_fingerprint(server.host_key_path + ".pub")
    assert LOOPBACK in msg and str(server.port) in msg
    assert "ssh-ed25519" in msg and fp in msg
    assert "accept-new" in msg and "'concurdeploy keyscan " in msg and "ssh-keyscan" not in msg
    assert kh.read_text() == ""  # strict never writes
    # that the suggested command really records the key: tests/integration/test_ux_messages.py


def test_changed_host_key_names_both_fingerprints(server, client_keys, extra_keys, tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[{LOOPBACK}]:{server.port} {pub_line(extra_keys['ed25519_host_other'])}\n")
    for policy in ("strict", "accept-new"):
        before = kh.read_bytes()
        spec = make_spec(server.port, str(kh), key_file=client_keys.ed25519, host_key_policy=policy)
        with pytest.raises(HostKeyMismatch) as ei:
            Connection(spec).open()
        msg = str(ei.value)
        assert keygen_fingerprint(server.host_key_path + ".pub") in msg
        assert keygen_fingerprint(extra_keys["ed25519_host_other"] + ".pub") in msg
        assert "CHANGED" in msg and f"[{LOOPBACK}]:{server.port}" in msg
        assert kh.read_bytes() == before  # never "fixed" silently
    res = run_host(Job(spec, run_command, RunJob("echo ok")))
    assert res.status is Status.FAILED and res.error_kind == "HostKeyMismatch"


def test_hashed_known_hosts_entry_is_honoured(server, kh, client_keys, extra_keys, tmp_path):
    subprocess.run([find_ssh_keygen(), "-H", "-f", kh], check=True, capture_output=True, timeout=30)
    text = Path(kh).read_text()
    assert text.startswith("|1|") and LOOPBACK not in text and str(server.port) not in text
    with Connection(make_spec(server.port, kh, key_file=client_keys.ed25519)) as conn:
        echo_ok(conn)
        assert conn.warnings == []
    # A hashed entry holding another key is still a mismatch.
    other = tmp_path / "kh_other"
    other.write_text(f"[{LOOPBACK}]:{server.port} {pub_line(extra_keys['ed25519_host_other'])}\n")
    subprocess.run([find_ssh_keygen(), "-H", "-f", str(other)], check=True, capture_output=True,
                   timeout=30)
    with pytest.raises(HostKeyMismatch):
        Connection(make_spec(server.port, str(other), key_file=client_keys.ed25519)).open()


def test_bracketed_port_entry_is_needed_for_a_non_22_port(server, client_keys, tmp_path):
    # The bare name is OpenSSH's entry for port 22; another port's entry does not count either.
    kh = tmp_path / "known_hosts"
    kh.write_text(f"{LOOPBACK} {server.host_public_key_line}\n"
                  f"[{LOOPBACK}]:{server.port + 1} {server.host_public_key_line}\n")
    spec = make_spec(server.port, str(kh), key_file=client_keys.ed25519)
    with pytest.raises(HostKeyUnknown):
        Connection(spec).open()
    with open(kh, "a") as f:
        f.write(f"[{LOOPBACK}]:{server.port} {server.host_public_key_line}\n")
    with Connection(spec) as conn:
        echo_ok(conn)


@pytest.mark.parametrize("host_key", ["rsa_host", "ecdsa_host"])
def test_known_hosts_holding_only_a_non_default_key_type(sshd_factory, client_keys, extra_keys,
                                                         tmp_path, host_key):
    """A server with ed25519 + RSA/ECDSA host keys, known_hosts holding only the RSA/ECDSA one.

    OpenSSH's client asks for the type it knows; so must we (an "ssh-rsa" entry means
    rsa-sha2-512/256 today), or the ed25519 key comes back as a false mismatch.
    """
    srv = sshd_factory(1, extra_config=f"HostKey {extra_keys[host_key]}\n")[0]
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[{LOOPBACK}]:{srv.port} {pub_line(extra_keys[host_key])}\n")
    with Connection(make_spec(srv.port, str(kh), key_file=client_keys.ed25519)) as conn:
        echo_ok(conn)
        assert fingerprint(conn.transport.get_remote_server_key()) == \
            keygen_fingerprint(extra_keys[host_key] + ".pub")


def test_accept_new_appends_exactly_one_line_then_nothing(server, client_keys, extra_keys, tmp_path):
    kh = tmp_path / "known_hosts"
    existing = (f"# ops-managed file\n"
                f"@cert-authority *.example.org {pub_line(extra_keys['ed25519_host_other'])}\n"
                f"otherhost.example.org {pub_line(extra_keys['ed25519_host_other'])}\n"
                f"\n")
    kh.write_text(existing)
    before = kh.read_bytes()
    spec = make_spec(server.port, str(kh), key_file=client_keys.ed25519, host_key_policy="accept-new")
    with Connection(spec) as conn:
        echo_ok(conn)
        assert len(conn.warnings) == 1 and "recorded" in conn.warnings[0]
        assert keygen_fingerprint(server.host_key_path + ".pub") in conn.warnings[0]
    after = kh.read_bytes()
    assert after.startswith(before)
    assert after[len(before):].decode() == f"[{LOOPBACK}]:{server.port} {server.host_public_key_line}\n"

    with Connection(spec) as conn:
        echo_ok(conn)
        assert conn.warnings == []
    assert kh.read_bytes() == after
    # What accept-new wrote satisfies strict, and OpenSSH's own parser.
    with Connection(make_spec(server.port, str(kh), key_file=client_keys.ed25519)) as conn:
        echo_ok(conn)
    found = subprocess.run([find_ssh_keygen(), "-F", f"[{LOOPBACK}]:{server.port}", "-f", str(kh)],
                           capture_output=True, text=True, timeout=30)
    assert found.returncode == 0 and server.host_public_key_line in found.stdout


def test_accept_new_without_trailing_newline_or_file(server, client_keys, tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_bytes(b"otherhost ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    before = kh.read_bytes()
    spec = make_spec(server.port, str(kh), key_file=client_keys.ed25519, host_key_policy="accept-new")
    with Connection(spec) as conn:
        echo_ok(conn)
    assert kh.read_bytes() == before + f"\n[{LOOPBACK}]:{server.port} {server.host_public_key_line}\n".encode()

    fresh = tmp_path / "new-dir" / "known_hosts"
    spec = make_spec(server.port, str(fresh), key_file=client_keys.ed25519, host_key_policy="accept-new")
    with Connection(spec) as conn:
        echo_ok(conn)
    assert fresh.read_text() == f"[{LOOPBACK}]:{server.port} {server.host_public_key_line}\n"


def test_revoked_host_key_is_refused_under_every_checking_policy(server, kh, client_keys):
    Path(kh).write_text(f"@revoked * {server.host_public_key_line}\n" + Path(kh).read_text())
    before = Path(kh).read_bytes()
    for policy in ("strict", "accept-new"):
        spec = make_spec(server.port, kh, key_file=client_keys.ed25519, host_key_policy=policy)
        with pytest.raises(HostKeyMismatch, match="revoked"):
            Connection(spec).open()
    assert Path(kh).read_bytes() == before


def test_policy_off_connects_and_warns(server, client_keys, tmp_path):
    kh = tmp_path / "known_hosts"
    spec = make_spec(server.port, str(kh), key_file=client_keys.ed25519, host_key_policy="off")
    with Connection(spec) as conn:
        echo_ok(conn)
        assert len(conn.warnings) == 1
        assert "not verified" in conn.warnings[0]
        assert keygen_fingerprint(server.host_key_path + ".pub") in conn.warnings[0]
    assert not kh.exists()
    res = run_host(Job(spec, run_command, RunJob("echo ok")))
    assert res.status is Status.OK and any("not verified" in w for w in res.warnings)


def _well_formed(lines: list[str]) -> None:
    for ln in lines:
        entry = paramiko.hostkeys.HostKeyEntry.from_line(ln)
        assert entry is not None and len(ln.split(" ")) == 3, ln


def test_accept_new_from_eight_threads_at_once(sshd_factory, client_keys, tmp_path):
    servers = sshd_factory(8)
    kh = tmp_path / "known_hosts"
    kh.write_text("otherhost.example.org ssh-ed25519 "
                  "AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n")
    before = kh.read_bytes()
    barrier = threading.Barrier(8, timeout=10)
    errors: list[BaseException] = []

    def connect(srv):
        spec = make_spec(srv.port, str(kh), key_file=client_keys.ed25519, host_key_policy="accept-new")
        try:
            barrier.wait()
            with Connection(spec) as conn:
                echo_ok(conn)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=connect, args=(s,)) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    after = kh.read_bytes()
    assert after.startswith(before)
    new = after[len(before):].decode().splitlines()
    assert len(new) == 8
    assert sorted(new) == sorted(ln for s in servers for ln in s.known_hosts_lines())
    _well_formed(new)


def test_accept_new_from_worker_processes(sshd_factory, client_keys, tmp_path):
    servers = sshd_factory(6)
    kh = tmp_path / "known_hosts"
    jobs = [Job(make_spec(s.port, str(kh), name=f"h{i}", key_file=client_keys.ed25519,
                          host_key_policy="accept-new"), run_command, RunJob("echo ok"))
            for i, s in enumerate(servers)]
    results = run_jobs(jobs, forks=6, processes=2)
    assert [r.status for r in results] == [Status.OK] * 6
    assert all(any("recorded" in w for w in r.warnings) for r in results)
    lines = kh.read_text().splitlines()
    assert sorted(lines) == sorted(ln for s in servers for ln in s.known_hosts_lines())
    _well_formed(lines)


# --------------------------------------------------------------------------
# 7. timeouts and unreachable hosts
# --------------------------------------------------------------------------

def test_stalling_server_times_out(stalling_server, client_keys, tmp_path):
    spec = make_spec(stalling_server.port, str(tmp_path / "kh"), key_file=client_keys.ed25519,
                     connect_timeout=1)
    start = time.monotonic()
    with pytest.raises(HostUnreachable) as ei:
        Connection(spec).open()
    assert time.monotonic() - start < 6  # bounded by the 1 s timeout, not paramiko's 15 s banner wait
    assert f"{LOOPBACK}:{stalling_server.port}" in str(ei.value) and "timed out" in str(ei.value)
    assert stalling_server.connections >= 1  # TCP got through: it is the banner that never came


def test_stalling_host_is_not_retried(stalling_server, client_keys, tmp_path):
    """A banner that never comes is a timeout, not a transient reset: one attempt only."""
    spec = make_spec(stalling_server.port, str(tmp_path / "kh"), key_file=client_keys.ed25519,
                     connect_timeout=1)
    assert spec.connect_retries >= 1
    res = run_host(Job(spec, run_command, RunJob("echo ok")))
    assert res.status is Status.UNREACHABLE and "timed out" in res.error
    assert res.duration_s < 6
    assert stalling_server.connections == 1


def test_paramiko_banner_timeout_counts_as_a_timeout(stalling_server):
    """paramiko's own banner timeout (racing start_client's) must be told from a reset too."""
    from concurdeploy.ssh.connection import _timed_out

    t = paramiko.Transport(socket.create_connection((LOOPBACK, stalling_server.port), timeout=2))
    t.banner_timeout = 0.3
    try:
        with pytest.raises(paramiko.SSHException) as ei:
            t.start_client(timeout=3)
    finally:
        t.close()
    assert "banner" in str(ei.value) and "timeout" not in str(ei.value).lower()
    assert _timed_out(ei.value)
    assert not _timed_out(paramiko.SSHException("Error reading SSH protocol banner"))


def test_pool_with_one_stalling_host_is_bounded(sshd_factory, known_hosts_file, stalling_server,
                                                client_keys):
    servers = sshd_factory(3)
    kh = known_hosts_file(servers)
    jobs = [Job(make_spec(stalling_server.port, kh, name="stall", key_file=client_keys.ed25519,
                          connect_timeout=1), run_command, RunJob("echo ok"))]
    jobs += [Job(make_spec(s.port, kh, name=f"h{i}", key_file=client_keys.ed25519),
                 run_command, RunJob("echo ok")) for i, s in enumerate(servers)]
    start = time.monotonic()
    results = run_jobs(jobs, forks=4, processes=2)
    elapsed = time.monotonic() - start
    assert elapsed < 10, elapsed  # the stalling host's 1 s timeout, not a hang
    assert [r.host for r in results] == ["stall", "h0", "h1", "h2"]
    assert results[0].status is Status.UNREACHABLE and results[0].error_kind == "HostUnreachable"
    assert results[0].duration_s < 6
    for r in results[1:]:
        assert (r.status, r.output) == (Status.OK, "ok\n")


def test_command_timeout(server, kh, client_keys):
    with Connection(make_spec(server.port, kh, key_file=client_keys.ed25519)) as conn:
        seen = bytearray()
        start = time.monotonic()
        with pytest.raises(CommandTimeout) as ei:
            conn.run("echo partial; sleep 30", timeout=2, on_output=lambda _s, data: seen.extend(data))
        # 2 s, then the kill switch: one more command on a second channel (a login shell's
        # start, slow on a loaded machine), which returns once the sleep is gone
        assert time.monotonic() - start < 15  # not the 30 s sleep
        assert "timed out after 2 s" in str(ei.value) and "sleep 30" in str(ei.value)
        # The output so far is attached (it is "partial\n" unless the host is badly overloaded).
        assert ei.value.output == seen.decode()
        assert seen in (b"partial\n", b"")
        echo_ok(conn)  # the connection survives a command's timeout


def test_command_timeout_from_spec_in_run_host(server, kh, client_keys):
    spec = make_spec(server.port, kh, key_file=client_keys.ed25519, command_timeout=1)
    start = time.monotonic()
    res = run_host(Job(spec, run_command, RunJob("sleep 30")))
    # connect + 1 s + the kill switch; generous for a loaded machine, far below the 30 s sleep
    assert time.monotonic() - start < 15
    assert res.status is Status.FAILED and res.error_kind == "CommandTimeout"


def test_connection_refused(client_keys, tmp_path):
    port = free_port()  # nothing listens there
    spec = make_spec(port, str(tmp_path / "kh"), key_file=client_keys.ed25519, connect_timeout=2)
    start = time.monotonic()
    with pytest.raises(HostUnreachable) as ei:
        Connection(spec).open()
    assert time.monotonic() - start < 5  # refused at once: no wait for the 2 s timeout, no retries
    assert "refused" in str(ei.value).lower() and f"{LOOPBACK}:{port}" in str(ei.value)
    res = run_host(Job(spec, run_command, RunJob("true")))
    assert res.status is Status.UNREACHABLE and "refused" in res.error.lower()


def test_server_stopped_during_a_command_is_unreachable(server, kh, client_keys):
    """A dropped connection is HostUnreachable, not a command that "exited None"."""
    with Connection(make_spec(server.port, kh, key_file=client_keys.ed25519)) as conn:
        echo_ok(conn)
        started = threading.Event()
        # stopped while the command runs: once its first output has arrived
        stopper = threading.Thread(target=lambda: started.wait(10) and server.stop())
        stopper.start()
        try:
            start = time.monotonic()
            with pytest.raises(HostUnreachable) as ei:
                conn.run("echo started; sleep 30", timeout=20, on_output=lambda _s, _d: started.set())
            assert time.monotonic() - start < 10  # the drop is seen at once, not at the 20 s timeout
        finally:
            started.set()
            stopper.join(10)
        msg = str(ei.value)
        assert "connection dropped" in msg and msg.count("sleep 30") == 1
        with pytest.raises(HostUnreachable, match="closed"):
            conn.run("echo ok")


def test_command_killed_by_a_signal_has_no_exit_status(server, kh, client_keys):
    with Connection(make_spec(server.port, kh, key_file=client_keys.ed25519)) as conn:
        res = conn.run("echo before; kill -9 $$")
        assert (res.exited, res.stdout, res.ok) == (None, "before\n", False)
        echo_ok(conn)  # the connection is fine: that was not a drop


# --------------------------------------------------------------------------
# 8. output decoding
# --------------------------------------------------------------------------

def test_invalid_utf8_output_is_replaced(server, kh, client_keys):
    with Connection(make_spec(server.port, kh, key_file=client_keys.ed25519)) as conn:
        res = conn.run(r"printf '\377\376ok'; printf '\377err\n' >&2; printf 'caf\303\251'")
        assert res.exited == 0
        assert res.stdout == "\ufffd\ufffdokcafé"
        assert res.stderr == "\ufffderr\n"


def test_stdin_exit_status_and_large_output(server, kh, client_keys):
    with Connection(make_spec(server.port, kh, key_file=client_keys.ed25519)) as conn:
        res = conn.run("cat; exit 3", stdin=b"from stdin\n")
        assert (res.exited, res.stdout, res.ok) == (3, "from stdin\n", False)
        big = conn.run("head -c 1000000 /dev/zero | tr '\\0' x; echo done >&2")
        assert big.stdout == "x" * 1_000_000 and big.stderr == "done\n"
