"""concurdeploy.sandbox: real SSH over loopback, paramiko client with strict host keys, no mocks."""

from __future__ import annotations

import ast
import configparser
import importlib.metadata
import os
import re
import select
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import paramiko
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

import concurdeploy.sandbox
from concurdeploy.exceptions import UsageError
from concurdeploy.sandbox.server import Sandbox

TIMEOUT = 15  # seconds: upper bound on any single network wait in these tests
REPO = Path(__file__).resolve().parents[2]
SANDBOX_DIR = REPO / "concurdeploy" / "sandbox"
EXTRA_MESSAGE = "the sandbox needs the 'sandbox' extra: pip install 'concurdeploy[sandbox]'"


@pytest.fixture
def sandbox(tmp_path):
    sb = Sandbox(tmp_path / "state")
    yield sb
    sb.stop()


@pytest.fixture
def port(sandbox):
    return sandbox.start(["web1"])["web1"]


def connect(sb: Sandbox, port: int, *, key_filename: str | None = None,
            username: str | None = None, known_hosts: str | None = None) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.load_host_keys(known_hosts or sb.known_hosts_path)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(
            "127.0.0.1", port=port, username=username or sb.user,
            key_filename=key_filename or sb.client_key_path,
            look_for_keys=False, allow_agent=False,
            timeout=TIMEOUT, banner_timeout=TIMEOUT, auth_timeout=TIMEOUT,
        )
    except BaseException:
        client.close()
        raise
    return client


def run(client: paramiko.SSHClient, command: str) -> tuple[str, str, int]:
    _stdin, stdout, stderr = client.exec_command(command, timeout=TIMEOUT)
    out = stdout.read().decode()
    err = stderr.read().decode()
    return out, err, stdout.channel.recv_exit_status()


def start_long_command(client: paramiko.SSHClient) -> tuple[paramiko.Channel, int]:
    """Start ``sleep 60`` on a new channel; return the channel and the command's pid.

    The command prints its pid first: reading that line (bounded by ``TIMEOUT``)
    is the event "the command is running".
    """
    chan = client.get_transport().open_session(timeout=TIMEOUT)
    chan.settimeout(TIMEOUT)
    chan.exec_command("echo $$; exec sleep 60")
    line = chan.makefile("rb").readline()
    return chan, int(line)


def other_key_file(tmp_path) -> str:
    path = tmp_path / "other_ed25519"
    path.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()))
    path.chmod(0o600)
    return str(path)


def wait_process_gone(pid: int, timeout: float = TIMEOUT) -> bool:
    """Wait (at most ``timeout`` s) for process ``pid`` to end: a pidfd polls readable on exit."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True  # already ended and reaped
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


# ---------------------------------------------------------------- state files

def test_state_dir_files(sandbox, tmp_path):
    ports = sandbox.start(["a", "b"])
    state = tmp_path / "state"
    assert sandbox.known_hosts_path == str(state / "known_hosts")
    assert sandbox.client_key_path == str(state / "id_ed25519")
    assert stat.S_IMODE(os.stat(sandbox.client_key_path).st_mode) == 0o600
    assert (state / "host_key").read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    lines = (state / "known_hosts").read_text().splitlines()
    assert [int(re.fullmatch(r"\[127\.0\.0\.1\]:(\d+) ssh-ed25519 AAAA\S+", line).group(1))
            for line in lines] == [ports["a"], ports["b"]]


def test_start_rejects_bad_names(sandbox):
    with pytest.raises(ValueError):
        sandbox.start(["x", "x"])
    with pytest.raises(ValueError):
        sandbox.start([""])
    sandbox.start(["x"])
    with pytest.raises(ValueError):
        sandbox.start(["x"])


# ------------------------------------------------------------------------ exec

def test_exec_stdout_stderr_exit_status(sandbox, port):
    with connect(sandbox, port) as client:
        assert run(client, "echo hi; echo err >&2; exit 3") == ("hi\n", "err\n", 3)
        assert run(client, "true") == ("", "", 0)


def test_exec_stdin_piped_until_eof(sandbox, port, tmp_path):
    target = tmp_path / "piped.txt"
    data = os.urandom(300_000)  # larger than a channel window's worth of packets
    with connect(sandbox, port) as client:
        chan = client.get_transport().open_session(timeout=TIMEOUT)
        chan.settimeout(TIMEOUT)
        chan.exec_command(f"cat > '{target}'")
        chan.sendall(data)
        chan.shutdown_write()
        assert chan.recv_exit_status() == 0
    assert target.read_bytes() == data


def test_commands_on_one_connection_run_concurrently(sandbox, port):
    with connect(sandbox, port) as client:
        transport = client.get_transport()
        blocked = transport.open_session(timeout=TIMEOUT)
        blocked.settimeout(TIMEOUT)
        blocked.exec_command("cat")  # runs until its stdin ends
        # while `cat` waits, other channels of the same connection complete
        for i in range(3):
            assert run(client, f"echo {i}") == (f"{i}\n", "", 0)
        assert not blocked.exit_status_ready()
        blocked.sendall(b"late\n")
        blocked.shutdown_write()
        assert blocked.makefile("rb").read() == b"late\n"
        assert blocked.recv_exit_status() == 0


def test_closing_channel_ends_running_command(sandbox, port):
    with connect(sandbox, port) as client:
        chan, pid = start_long_command(client)
        chan.close()
        assert wait_process_gone(pid)


def test_shell_pty_and_other_channel_types_refused(sandbox, port):
    with connect(sandbox, port) as client:
        transport = client.get_transport()
        chan = transport.open_session(timeout=TIMEOUT)
        with pytest.raises(paramiko.SSHException):
            chan.get_pty()
        chan = transport.open_session(timeout=TIMEOUT)
        with pytest.raises(paramiko.SSHException):
            chan.invoke_shell()
        with pytest.raises(paramiko.ChannelException):
            transport.open_channel("direct-tcpip", ("127.0.0.1", 1), ("127.0.0.1", 0),
                                   timeout=TIMEOUT)
        assert run(client, "echo still-fine")[0] == "still-fine\n"


# ------------------------------------------------------------------------ sftp

def test_sftp_put_stat_rename_and_posix_rename(sandbox, port, tmp_path):
    local = tmp_path / "local.cfg"
    local.write_bytes(b"new content\n")
    remote_dir = tmp_path / "host"
    remote_dir.mkdir()
    tmp_remote = str(remote_dir / ".haproxy.cfg.tmp")
    dest = remote_dir / "haproxy.cfg"
    dest.write_bytes(b"old content\n")
    with connect(sandbox, port) as client, client.open_sftp() as sftp:
        attrs = sftp.put(str(local), tmp_remote)
        assert attrs.st_size == len(b"new content\n")
        assert sftp.stat(tmp_remote).st_size == len(b"new content\n")
        # plain SFTP rename never replaces an existing file
        with pytest.raises(IOError):
            sftp.rename(tmp_remote, str(dest))
        assert dest.read_bytes() == b"old content\n"
        assert os.path.exists(tmp_remote)
        # posix-rename@openssh.com does, atomically
        sftp.posix_rename(tmp_remote, str(dest))
        assert dest.read_bytes() == b"new content\n"
        assert not os.path.exists(tmp_remote)
        # plain rename to a free name works
        sftp.rename(str(dest), str(remote_dir / "moved.cfg"))
        assert (remote_dir / "moved.cfg").read_bytes() == b"new content\n"


def test_sftp_filesystem_operations(sandbox, port, tmp_path):
    root = tmp_path / "fs"
    root.mkdir()
    with connect(sandbox, port) as client, client.open_sftp() as sftp:
        sftp.mkdir(str(root / "d"), mode=0o750)
        assert stat.S_IMODE(os.stat(root / "d").st_mode) == 0o750 & ~_umask()
        with sftp.open(str(root / "d" / "f"), "w") as f:
            f.write(b"one\n")
        with sftp.open(str(root / "d" / "f"), "a") as f:
            f.write(b"two\n")
        with sftp.open(str(root / "d" / "f"), "r") as f:
            assert f.read() == b"one\ntwo\n"
        with pytest.raises(IOError):
            sftp.open(str(root / "d" / "f"), "x")  # O_EXCL on an existing file
        sftp.chmod(str(root / "d" / "f"), 0o640)
        assert stat.S_IMODE(sftp.stat(str(root / "d" / "f")).st_mode) == 0o640
        sftp.utime(str(root / "d" / "f"), (1_000_000_000, 1_000_000_000))
        assert os.stat(root / "d" / "f").st_mtime == 1_000_000_000
        sftp.symlink("f", str(root / "d" / "link"))
        assert sftp.readlink(str(root / "d" / "link")) == "f"
        assert stat.S_ISLNK(sftp.lstat(str(root / "d" / "link")).st_mode)
        assert sorted(sftp.listdir(str(root / "d"))) == ["f", "link"]
        assert sftp.normalize(str(root / "d" / ".." / "d")) == os.path.realpath(root / "d")
        with pytest.raises(FileNotFoundError):
            sftp.stat(str(root / "missing"))
        with pytest.raises(IOError):
            sftp.rmdir(str(root / "d"))  # not empty
        sftp.remove(str(root / "d" / "link"))
        sftp.remove(str(root / "d" / "f"))
        sftp.rmdir(str(root / "d"))
    assert list(root.iterdir()) == []


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ------------------------------------------------------------------------ auth

def test_wrong_client_key_refused(sandbox, port, tmp_path):
    with pytest.raises(paramiko.AuthenticationException):
        connect(sandbox, port, key_filename=other_key_file(tmp_path))


def test_wrong_username_refused(sandbox, port):
    with pytest.raises(paramiko.AuthenticationException):
        connect(sandbox, port, username=sandbox.user + "-not")


def test_another_sandboxs_host_key_is_rejected(sandbox, port, tmp_path):
    other = Sandbox(tmp_path / "other-state")
    try:
        other.start(["web1"])
        # other's known_hosts lists a different key (and port); strict check fails
        mismatched = tmp_path / "mismatched_known_hosts"
        key_part = open(other.known_hosts_path).read().split(" ", 1)[1]
        mismatched.write_text(f"[127.0.0.1]:{port} {key_part}")
        with pytest.raises(paramiko.BadHostKeyException):
            connect(sandbox, port, known_hosts=str(mismatched))
    finally:
        other.stop()


def test_keys_persist_across_sandboxes(tmp_path):
    state = tmp_path / "state"
    with Sandbox(state) as first:
        port = first.start(["h"])["h"]
        with connect(first, port) as client:
            key1 = client.get_transport().get_remote_server_key()
    host_key_file = (state / "host_key").read_bytes()
    client_key_file = (state / "id_ed25519").read_bytes()
    with Sandbox(state) as second:
        port2 = second.start(["h"])["h"]
        with connect(second, port2) as client:  # the same client key still works
            key2 = client.get_transport().get_remote_server_key()
    assert key1 == key2
    assert (state / "host_key").read_bytes() == host_key_file
    assert (state / "id_ed25519").read_bytes() == client_key_file


# ------------------------------------------------------------------- lifecycle

def test_stop_closes_port_and_sessions_quickly(sandbox, port):
    client = connect(sandbox, port)
    try:
        _chan, pid = start_long_command(client)
        started = time.monotonic()
        sandbox.stop()
        assert time.monotonic() - started < 8
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        transport = client.get_transport()
        transport.join(TIMEOUT)  # the client's transport thread ends when the server hangs up
        assert not transport.is_active()
        assert wait_process_gone(pid)
        sandbox.stop()  # idempotent
    finally:
        client.close()


def test_context_manager_stops(tmp_path):
    with Sandbox(tmp_path / "state") as sb:
        port = sb.start(["h"])["h"]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_four_hosts_each_reachable(sandbox):
    names = ["web1", "web2", "web3", "lb1"]
    ports = sandbox.start(names)
    assert list(ports) == names and len(set(ports.values())) == 4
    assert len(open(sandbox.known_hosts_path).read().splitlines()) == 4
    for name, port in ports.items():
        with connect(sandbox, port) as client:
            assert run(client, f"echo {name}") == (f"{name}\n", "", 0)


def test_ten_concurrent_connections(sandbox, tmp_path):
    ports = sandbox.start([f"h{i}" for i in range(2)])
    results: dict[int, object] = {}

    def worker(i: int) -> None:
        try:
            with connect(sandbox, ports[f"h{i % 2}"]) as client:
                out = run(client, f"sleep 0.2; echo {i}")
                with client.open_sftp() as sftp:
                    path = str(tmp_path / f"f{i}")
                    with sftp.open(path, "w") as f:
                        f.write(f"{i}\n".encode())
                    sftp.posix_rename(path, path + ".final")
                results[i] = out
        except Exception as e:  # reported below
            results[i] = e

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == {i: (f"{i}\n", "", 0) for i in range(10)}
    assert all((tmp_path / f"f{i}.final").read_text() == f"{i}\n" for i in range(10))


# Run in a child process: pytest attaches logging handlers to the root logger,
# which would hide exactly the stderr noise (paramiko tracebacks) checked for.
_RUDE_CLIENTS = r"""
import os, select, socket, struct, sys
import paramiko
from concurdeploy.sandbox.server import Sandbox

RST = struct.pack("ii", 1, 0)

def read_banner(s):
    data = b""
    for _ in range(64):  # bounded: the server's banner is one short line
        chunk = s.recv(256)
        data += chunk
        if not chunk or b"\n" in data:
            return data
    return data

with Sandbox(sys.argv[1]) as sb:
    port = sb.start(["h"])["h"]
    # 1. connect and vanish
    socket.create_connection(("127.0.0.1", port), timeout=10).close()
    # 2. garbage instead of a banner (close once the server has answered with its own)
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"garbage\r\n" * 3)
    assert read_banner(s).startswith(b"SSH-2.0-")
    s.close()
    # 3. a banner and half a packet, then a TCP reset
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"SSH-2.0-rude\r\n\x00\x00\x01")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RST)
    s.close()
    # 4. an authenticated session reset mid-command
    c = paramiko.SSHClient()
    c.load_host_keys(sb.known_hosts_path)
    c.set_missing_host_key_policy(paramiko.RejectPolicy())
    c.connect("127.0.0.1", port=port, username=sb.user, key_filename=sb.client_key_path,
              look_for_keys=False, allow_agent=False, timeout=10)
    chan = c.get_transport().open_session(timeout=10)
    chan.settimeout(10)
    chan.exec_command("echo $$; exec sleep 30")
    pidfd = os.pidfd_open(int(chan.makefile("rb").readline()))
    c.get_transport().sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RST)
    c.get_transport().sock.shutdown(socket.SHUT_RDWR)
    # the server noticed the reset: it hung up the command (its pidfd turns readable)
    assert select.select([pidfd], [], [], 10)[0], "command outlived its reset connection"
    # the server still serves others
    c2 = paramiko.SSHClient()
    c2.load_host_keys(sb.known_hosts_path)
    c2.set_missing_host_key_policy(paramiko.RejectPolicy())
    c2.connect("127.0.0.1", port=port, username=sb.user, key_filename=sb.client_key_path,
               look_for_keys=False, allow_agent=False, timeout=10)
    _, out, _ = c2.exec_command("echo ok", timeout=10)
    print(out.read().decode(), end="")
    # our clients hang up before stop(): a client still talking when the server closes
    # would get a TCP reset, and paramiko's *client* logs that to stderr (not ours to test)
    c2.close()
    c.close()
print("stopped")
"""


def _python(code: str, *args: str, cwd: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=60, env=env, cwd=cwd)


def test_abrupt_disconnects_are_quiet(tmp_path):
    proc = _python(_RUDE_CLIENTS, str(tmp_path / "state"))
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "ok\nstopped\n", "")


# ------------------------------------------------------------ packaging, extra

def test_sandbox_importable_from_package_and_server_module():
    assert concurdeploy.sandbox.Sandbox is Sandbox
    doc = concurdeploy.sandbox.__doc__
    assert all(words in doc for words in ("127.0.0.1", "own user", "never used for real hosts",
                                          "concurdeploy[sandbox]"))
    assert concurdeploy.sandbox.EXTRA_MESSAGE == EXTRA_MESSAGE
    assert issubclass(concurdeploy.sandbox.SandboxExtraMissing, UsageError)
    assert issubclass(concurdeploy.sandbox.SandboxExtraMissing, ImportError)


def _sandbox_imports() -> dict[str, set[str]]:
    """Module → every absolute module name imported by that module of concurdeploy/sandbox/."""
    out = {}
    for path in sorted(SANDBOX_DIR.glob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names.add(node.module)
        out[path.name] = names
    return out


def test_sandbox_imports_only_exceptions_of_concurdeploy():
    imports = _sandbox_imports()
    assert {"__init__.py", "server.py", "ssh.py", "sftp.py", "commands.py", "keys.py"} <= set(imports)
    outside = {mod: sorted(n for n in names if n.split(".")[0] == "concurdeploy"
                           and not n.startswith("concurdeploy.sandbox")
                           and n != "concurdeploy.exceptions")
               for mod, names in imports.items()}
    assert outside == {mod: [] for mod in imports}


def test_sandbox_modules_are_small():
    sizes = {p.name: len(p.read_text().splitlines()) for p in SANDBOX_DIR.glob("*.py")}
    assert max(sizes.values()) <= 500, sizes


def _requirement_names(text: str) -> set[str]:
    return {re.split(r"[\s<>=!~\[;]", line.strip(), maxsplit=1)[0].lower()
            for line in text.splitlines() if line.strip()}


def test_every_third_party_import_is_declared_in_the_sandbox_extra():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    extra = _requirement_names(cfg["options.extras_require"]["sandbox"])
    core = _requirement_names(cfg["options"]["install_requires"])
    test_extra = _requirement_names(cfg["options.extras_require"]["test"])
    assert "cryptography" in extra and extra <= test_extra
    dists = importlib.metadata.packages_distributions()
    third_party = {n for names in _sandbox_imports().values() for n in names
                   if n.split(".")[0] not in sys.stdlib_module_names and n.split(".")[0] != "concurdeploy"}
    assert {n.split(".")[0] for n in third_party} == {"paramiko", "cryptography"}
    for name in third_party:
        declared_as = {d.lower() for d in dists[name.split(".")[0]]}
        assert declared_as & (extra | core), f"{name} ({declared_as}) is not declared"
        # ... and checked up front, so that a missing one gives the one-line message
        assert any(name == m or name.startswith(m + ".") for m in concurdeploy.sandbox.REQUIRED_MODULES), name


_MISSING_EXTRA = r"""
import sys
missing, target = sys.argv[1], sys.argv[2]
if missing != "cryptography":
    import paramiko  # paramiko itself loads fine; only the sandbox's own import is gone
sys.modules[missing] = None  # "not installed": importing it raises ModuleNotFoundError
from concurdeploy.exceptions import UsageError
try:
    __import__(target)
except UsageError as e:
    print(type(e).__name__, isinstance(e, ImportError), e.missing, sep="|")
    print(e)
"""


@pytest.mark.parametrize("missing", ["cryptography", "cryptography.hazmat.primitives.asymmetric.ed25519"])
@pytest.mark.parametrize("target", ["concurdeploy.sandbox", "concurdeploy.sandbox.server"])
def test_missing_extra_raises_usage_error(missing, target):
    proc = _python(_MISSING_EXTRA, missing, target)
    assert (proc.returncode, proc.stderr) == (0, "")
    first, message = proc.stdout.splitlines()
    kind, is_import_error, missing_name = first.split("|")
    assert (kind, is_import_error, message) == ("SandboxExtraMissing", "True", EXTRA_MESSAGE)
    assert missing_name.startswith("cryptography")  # the module that failed (or its parent)


def test_missing_extra_uncaught_shows_no_module_not_found_traceback():
    proc = _python("import sys; sys.modules['cryptography'] = None; import concurdeploy.sandbox")
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == f"concurdeploy.sandbox.SandboxExtraMissing: {EXTRA_MESSAGE}"
    assert "ModuleNotFoundError" not in proc.stderr


_CLI_WITHOUT_EXTRA = r"""
import sys
import paramiko
sys.modules["cryptography.hazmat.primitives.asymmetric.ed25519"] = None
from concurdeploy.cli.program import program
program.run(["concurdeploy", "push", "haproxy", "-i", sys.argv[1], "--no-progress"])
"""


def test_cli_without_extra_exits_2_with_one_line(tmp_path):
    (tmp_path / "tasks.py").write_text('"""Marks tmp_path as the project root."""\n')
    (tmp_path / "app.cfg").write_text("x = 1\n")
    inventory = tmp_path / "sandbox.yaml"
    inventory.write_text(
        "all:\n  vars:\n    connection: sandbox\n  children:\n    haproxy:\n      hosts:\n        lb1:\n"
        "      vars:\n        files:\n          - src: app.cfg\n"
        f"            dest: {tmp_path}/hosts/lb1/app.cfg\n")
    proc = _python(_CLI_WITHOUT_EXTRA, str(inventory), cwd=str(tmp_path))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == f"concurdeploy: error: {EXTRA_MESSAGE}"  # one line, no traceback
    assert not (tmp_path / ".sandbox").exists() and not (tmp_path / "hosts").exists()
