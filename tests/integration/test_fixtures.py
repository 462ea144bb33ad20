"""Prove that the SSH test fixtures in tests/conftest.py and tests/sshd.py work.

Talks to real sshd processes and to mockssh on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import paramiko
import pytest

from tests import sshd as sshd_helpers
from tests.sshd import OpenSSHServer, login_user

pytestmark = pytest.mark.integration

#: Per-operation timeout for clients in these tests (seconds).
TIMEOUT = 5.0


def connect(host: str, port: int, key_filename: str, known_hosts: str,
            username: str | None = None, timeout: float = TIMEOUT,
            banner_timeout: float = TIMEOUT) -> paramiko.SSHClient:
    """A strict paramiko client: only known_hosts, RejectPolicy, one key, no agent.

    ``timeout`` (TCP connect) and ``banner_timeout`` are in seconds.
    """
    client = paramiko.SSHClient()
    client.load_host_keys(known_hosts)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(
            host,
            port=port,
            # The account sshd can log in is the one it runs as; getpass.getuser()
            # would trust $USER/$LOGNAME, which may disagree with the uid.
            username=username or login_user(),
            key_filename=key_filename,
            look_for_keys=False,
            allow_agent=False,
            timeout=timeout,
            banner_timeout=banner_timeout,
            auth_timeout=TIMEOUT,
        )
    except BaseException:
        client.close()
        raise
    return client


def run(client: paramiko.SSHClient, command: str) -> tuple[int, str, str]:
    """Run ``command``; return (exit status, stdout, stderr)."""
    _, stdout, stderr = client.exec_command(command, timeout=TIMEOUT)
    out = stdout.read().decode()
    err = stderr.read().decode()
    return stdout.channel.recv_exit_status(), out, err


# --------------------------------------------------------------------------
# environment isolation
# --------------------------------------------------------------------------

def test_fake_home_isolates_environment(fake_home: Path):
    assert os.environ["HOME"] == str(fake_home)
    assert os.path.expanduser("~") == str(fake_home)
    assert list((fake_home / ".ssh").iterdir()) == []
    assert "SSH_AUTH_SOCK" not in os.environ
    assert not [k for k in os.environ if k.startswith("CONCURDEPLOY_")]


def test_missing_openssh_fails_on_ci_and_skips_elsewhere(monkeypatch):
    from tests.conftest import _openssh_missing

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y openssh-server"):
        _openssh_missing("sshd")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y openssh-server"):
        _openssh_missing("sshd")


# --------------------------------------------------------------------------
# on CI a skip is a failure (hooks in tests/conftest.py)
# --------------------------------------------------------------------------

_SKIP_CASES = """
import pytest

@pytest.fixture
def missing_tool():
    pytest.skip("tool not found")

def test_skip_in_body():
    pytest.skip("no tool")

@pytest.mark.skipif(True, reason="needs root")
def test_skipif():
    pass

def test_skip_in_fixture(missing_tool):
    pass

def test_importorskip():
    pytest.importorskip("concurdeploy_no_such_module")

@pytest.mark.allow_skip("differs by platform, on purpose")
def test_allowed():
    pytest.skip("allowed")

@pytest.mark.allow_skip(reason="   ")
def test_allowed_without_a_reason():
    pytest.skip("blank reason")

@pytest.mark.xfail(reason="known bug", strict=True)
def test_xfail():
    assert False

def test_passes():
    pass
"""


def _run_cases(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Run a pytest session in ``pytester.path`` with tests/conftest.py's hooks loaded."""
    return pytester.runpytest("-p", "tests.conftest", "-p", "no:cacheprovider", "-rA", *args)


@pytest.mark.parametrize("ci", ["true", "1"])
def test_on_ci_every_skip_fails_unless_allowed_with_a_reason(pytester, monkeypatch, ci):
    pytester.makepyfile(test_cases=_SKIP_CASES)
    monkeypatch.setenv("CI", ci)
    result = _run_cases(pytester)
    # setup-time skips (skipif, a fixture's skip) become errors, call-time skips failures;
    # the allowed skip stays a skip, xfail and passes are untouched
    result.assert_outcomes(passed=1, failed=3, errors=2, skipped=1, xfailed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    for name in ("test_skip_in_body", "test_importorskip", "test_allowed_without_a_reason"):
        result.stdout.fnmatch_lines([f"FAILED test_cases.py::{name}*"])
    for name in ("test_skipif", "test_skip_in_fixture"):
        result.stdout.fnmatch_lines([f"ERROR test_cases.py::{name}*"])
    result.stdout.fnmatch_lines(["SKIPPED *allowed*", "*skipped on CI*which counts as a failure: *tool not found*",
                                 "*@pytest.mark.allow_skip*"])


@pytest.mark.parametrize("ci", [None, ""])
def test_off_ci_skips_stay_skips(pytester, monkeypatch, ci):
    pytester.makepyfile(test_cases=_SKIP_CASES)
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    result = _run_cases(pytester)
    result.assert_outcomes(passed=1, skipped=6, xfailed=1)
    assert result.ret == pytest.ExitCode.OK


def test_on_ci_a_module_skipped_at_import_is_an_error(pytester, monkeypatch):
    pytester.makepyfile(test_gone="""
        import pytest
        pytest.importorskip("concurdeploy_no_such_module")

        def test_never_collected():
            pass
    """)
    monkeypatch.setenv("CI", "true")
    result = _run_cases(pytester)
    result.assert_outcomes(errors=1)
    assert result.ret != pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*skipped on CI*concurdeploy_no_such_module*"])
    monkeypatch.delenv("CI")
    result = _run_cases(pytester)
    result.assert_outcomes(skipped=1)
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_on_ci_a_run_without_pytest_timeout_is_refused(pytester, monkeypatch):
    pytester.makepyfile(test_cases="def test_passes():\n    pass\n")
    monkeypatch.setenv("CI", "true")
    result = _run_cases(pytester, "-p", "no:timeout")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*pytest-timeout is not installed*"])
    assert _run_cases(pytester).ret == pytest.ExitCode.OK


def test_this_session_has_a_per_test_timeout(pytestconfig):
    assert pytestconfig.pluginmanager.hasplugin("timeout")
    assert 60 <= float(pytestconfig.getini("timeout")) <= 600
    assert pytestconfig.getini("timeout_method") == "signal"


def test_a_hung_test_fails_alone_and_its_teardown_runs(pytester, pytestconfig):
    """The timeout method of setup.cfg: the hung test fails, the next one still runs, and
    the hung test's fixture teardown runs (where sshd processes and users are cleaned up)."""
    teardown_marker = pytester.path / "teardown-ran"
    pytester.makepyfile(test_hang=f"""
        import threading
        import pytest

        @pytest.fixture
        def resource():
            yield
            open({str(teardown_marker)!r}, "w").close()

        def test_hangs(resource):
            threading.Event().wait(60)

        def test_after():
            pass
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-o", "timeout=2",
                                           "-o", f"timeout_method={pytestconfig.getini('timeout_method')}")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*Timeout*"])
    assert teardown_marker.exists()


def test_client_keys(client_keys):
    assert client_keys.ed25519 != client_keys.other
    for path in (*client_keys.authorized, client_keys.other):
        assert os.path.isfile(path) and os.path.isfile(path + ".pub")
    assert isinstance(paramiko.PKey.from_path(client_keys.ed25519), paramiko.Ed25519Key)
    assert isinstance(paramiko.PKey.from_path(client_keys.ecdsa), paramiko.ECDSAKey)
    rsa = paramiko.PKey.from_path(client_keys.rsa)
    assert isinstance(rsa, paramiko.RSAKey) and rsa.get_bits() == 2048


# --------------------------------------------------------------------------
# real OpenSSH
# --------------------------------------------------------------------------

@pytest.mark.parametrize("key_name", ["ed25519", "rsa", "ecdsa"])
def test_two_servers_accept_each_authorized_key(sshd_factory, known_hosts_file, client_keys, key_name):
    servers = sshd_factory(2)
    assert len(servers) == 2
    assert len({s.pid for s in servers}) == 2
    assert servers[0].port != servers[1].port
    kh = known_hosts_file(servers)
    assert Path(kh).read_text().splitlines() == [
        line for s in servers for line in s.known_hosts_lines()
    ]
    key = getattr(client_keys, key_name)
    for srv in servers:
        client = connect(srv.host, srv.port, key, kh)
        try:
            assert run(client, "echo ok") == (0, "ok\n", "")
            # the host key we pinned is the one the server presented
            assert client.get_transport().get_remote_server_key().get_base64() == \
                srv.host_public_key_line.split()[1]
        finally:
            client.close()


def test_other_key_is_rejected(sshd_factory, known_hosts_file, client_keys):
    (srv,) = sshd_factory()
    kh = known_hosts_file([srv])
    with pytest.raises(paramiko.AuthenticationException):
        connect(srv.host, srv.port, client_keys.other, kh)


def test_unknown_host_is_rejected(sshd_factory, known_hosts_file, client_keys):
    a, b = sshd_factory(2)
    kh = known_hosts_file([a])  # b is not in it
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        connect(b.host, b.port, client_keys.ed25519, kh)


def test_wrong_host_key_is_rejected(sshd_factory, client_keys, tmp_path):
    a, b = sshd_factory(2)
    # Claim that b's port has a's host key.
    kh = tmp_path / "known_hosts_wrong"
    kh.write_text(f"[127.0.0.1]:{b.port} {a.host_public_key_line}\n")
    with pytest.raises(paramiko.BadHostKeyException):
        connect(b.host, b.port, client_keys.ed25519, str(kh))


def test_one_server_on_several_ports(sshd_factory, known_hosts_file, client_keys):
    (srv,) = sshd_factory(1, ports_per_server=3)
    assert len(set(srv.ports)) == 3
    kh = known_hosts_file([srv])
    assert len(srv.known_hosts_lines()) == 3
    for port in srv.ports:
        client = connect(srv.host, port, client_keys.ed25519, kh)
        try:
            assert run(client, "echo ok")[1] == "ok\n"
        finally:
            client.close()


def test_extra_config_is_applied(sshd_factory, known_hosts_file, client_keys):
    # First value wins in sshd_config, so extra_config can only add keywords
    # the base config does not set; AllowUsers is one.
    (srv,) = sshd_factory(extra_config="AllowUsers no-such-user-concurdeploy\n")
    kh = known_hosts_file([srv])
    with pytest.raises(paramiko.AuthenticationException):
        connect(srv.host, srv.port, client_keys.ed25519, kh)


def test_sshd_starts_fast(sshd_factory):
    t0 = time.monotonic()
    sshd_factory(3)
    assert time.monotonic() - t0 < 20  # ~30 ms each here; the bound only catches a start that waits on a sleep or hangs


def test_openssh_sftp_rename_vs_posix_rename(sshd_factory, known_hosts_file, client_keys, tmp_path):
    (srv,) = sshd_factory()
    kh = known_hosts_file([srv])
    src, dst = tmp_path / "new.conf", tmp_path / "live.conf"
    src.write_text("new\n")
    dst.write_text("old\n")
    client = connect(srv.host, srv.port, client_keys.ed25519, kh)
    try:
        sftp = client.open_sftp()
        # SSH_FXP_RENAME in OpenSSH = link()+unlink(): refuses an existing target.
        with pytest.raises(IOError):
            sftp.rename(str(src), str(dst))
        assert dst.read_text() == "old\n" and src.exists()
        # posix-rename@openssh.com = rename(2): atomically replaces the target.
        sftp.posix_rename(str(src), str(dst))
        assert dst.read_text() == "new\n" and not src.exists()
        sftp.close()
    finally:
        client.close()


def test_stop_refuses_connections_and_reaps_pid(sshd_factory, known_hosts_file, client_keys):
    a, b = sshd_factory(2)
    kh = known_hosts_file([a, b])
    # Keep a session open: its per-connection sshd must go away with stop().
    client = connect(a.host, a.port, client_keys.ed25519, kh)
    assert run(client, "echo ok")[1] == "ok\n"
    pid = a.pid
    children = sshd_helpers._descendants(pid)
    assert children, "expected a per-connection sshd process"

    a.stop()
    assert a.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    for child in children:  # gone (a zombie awaiting PID 1 counts as gone)
        assert not sshd_helpers._pid_alive(child)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((a.host, a.port), timeout=TIMEOUT).close()
    client.close()

    a.stop()  # idempotent

    # The other server is untouched.
    other = connect(b.host, b.port, client_keys.ed25519, kh)
    try:
        assert run(other, "echo ok")[1] == "ok\n"
    finally:
        other.close()


def test_start_failure_reports_sshd_stderr(client_keys, tmp_path):
    srv = OpenSSHServer(tmp_path / "bad", client_keys, extra_config="NoSuchOption yes\n")
    with pytest.raises(RuntimeError, match="Bad configuration option"):
        srv.start(timeout=5)
    assert srv.pid is None
    srv.stop()


# --------------------------------------------------------------------------
# mockssh
# --------------------------------------------------------------------------

def test_mock_ssh_server_exec_and_sftp(mock_ssh_server, mock_ssh_known_hosts_path, client_keys, tmp_path):
    assert mock_ssh_server.host == "127.0.0.1"
    line = Path(mock_ssh_known_hosts_path).read_text().strip()
    assert line.startswith(f"[127.0.0.1]:{mock_ssh_server.port} ssh-rsa ")

    client = connect(mock_ssh_server.host, mock_ssh_server.port, client_keys.ed25519,
                     mock_ssh_known_hosts_path, username="sample-user")
    try:
        assert run(client, "echo hi") == (0, "hi\n", "")
        # mockssh runs commands locally, with the test process's env (fake HOME).
        assert run(client, "echo $HOME")[1] == os.environ["HOME"] + "\n"

        sftp = client.open_sftp()
        src, dst = tmp_path / "new.conf", tmp_path / "live.conf"
        src.write_text("new\n")
        dst.write_text("old\n")
        # Observed with mock-ssh-server 0.9.1 / paramiko 5.1: mockssh's plain
        # SFTP rename is os.rename(), so -- unlike OpenSSH -- it silently
        # REPLACES an existing target; and it does not implement
        # posix-rename@openssh.com (paramiko's default server answers
        # SSH_FX_OP_UNSUPPORTED), so posix_rename raises IOError
        # "Operation unsupported". Test atomic-replace logic against OpenSSH.
        sftp.rename(str(src), str(dst))
        assert dst.read_text() == "new\n" and not src.exists()
        src.write_text("newer\n")
        with pytest.raises(IOError, match="Operation unsupported"):
            sftp.posix_rename(str(src), str(dst))
        assert dst.read_text() == "new\n" and src.exists()
        sftp.close()
    finally:
        client.close()


def test_mock_ssh_server_rejects_other_key(mock_ssh_server, mock_ssh_known_hosts_path, client_keys):
    with pytest.raises(paramiko.AuthenticationException):
        connect(mock_ssh_server.host, mock_ssh_server.port, client_keys.other,
                mock_ssh_known_hosts_path, username="sample-user")


def test_mixed_known_hosts_file(sshd_factory, mock_ssh_server, known_hosts_file):
    (srv,) = sshd_factory()
    kh = known_hosts_file([srv, mock_ssh_server])
    hk = paramiko.HostKeys(kh)
    assert f"[127.0.0.1]:{srv.port}" in hk
    assert f"[127.0.0.1]:{mock_ssh_server.port}" in hk


# --------------------------------------------------------------------------
# stalling server
# --------------------------------------------------------------------------

def test_stalling_server_accepts_but_never_speaks(stalling_server):
    with socket.create_connection(("127.0.0.1", stalling_server.port), timeout=1.0) as s:
        s.settimeout(1.0)
        t0 = time.monotonic()
        with pytest.raises(socket.timeout):
            s.recv(1)
        assert 0.9 <= time.monotonic() - t0 < 6
    assert stalling_server.wait_for_connections(1, timeout=2.0)
    assert stalling_server.connections >= 1


def test_stalling_server_trips_paramiko_banner_timeout(stalling_server, client_keys, tmp_path):
    kh = tmp_path / "known_hosts_empty"
    kh.write_text("")
    t0 = time.monotonic()
    with pytest.raises(paramiko.SSHException, match="banner"):
        connect("127.0.0.1", stalling_server.port, client_keys.ed25519, str(kh),
                timeout=1.0, banner_timeout=0.5)
    assert time.monotonic() - t0 < 6


def test_stalling_server_stop_closes_connections():
    server = sshd_helpers.StallingServer().start()
    s = socket.create_connection(("127.0.0.1", server.port), timeout=1.0)
    assert server.wait_for_connections(1, timeout=2.0)
    server.stop()
    s.settimeout(1.0)
    assert s.recv(1) == b""  # EOF: the server closed its end
    s.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1.0).close()
    server.stop()  # idempotent
