"""``concurdeploy keyscan`` against real sshd on 127.0.0.1, through the real CLI.

Fingerprints are checked against ``ssh-keygen -lf`` of each server's host key; known_hosts
files are checked byte for byte (append-only, one line per new host, a changed key never
written).
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.sshd import find_ssh_keygen, free_port, login_user

pytestmark = pytest.mark.integration


def fingerprint_of(server) -> str:
    out = subprocess.run([find_ssh_keygen(), "-lf", server.host_key_path + ".pub"], check=True,
                         capture_output=True, text=True, timeout=30).stdout
    return out.split()[1]


class Project:
    def __init__(self, path: Path, servers: list, key: str):
        self.path, self.servers, self.key = path, servers, key
        self.kh = path / "known_hosts"
        self.names = [f"h{i + 1}" for i in range(len(servers))]
        self.write()

    def write(self, host_vars: dict | None = None, extra_hosts: dict | None = None, **all_vars):
        hosts = {n: {"host": "127.0.0.1", "port": s.port, **(host_vars or {}).get(n, {})}
                 for n, s in zip(self.names, self.servers)}
        hosts.update(extra_hosts or {})
        inv = {"all": {"vars": {"key_file": self.key, "known_hosts": str(self.kh),
                                "connect_timeout": 3, **all_vars},
                       "children": {"web": {"hosts": hosts}}}}
        (self.path / "inventories").mkdir(exist_ok=True)
        (self.path / "inventories" / "hosts.yaml").write_text(yaml.safe_dump(inv, sort_keys=False))

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "concurdeploy", *args], cwd=self.path,
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)


@pytest.fixture
def project(sshd_factory, client_keys, tmp_path):
    def make(n: int = 3) -> Project:
        return Project(tmp_path, sshd_factory(n), client_keys.ed25519)
    return make


def line_re(name: str, server, state: str) -> str:
    return (rf"(?m)^{re.escape(name)}\s+\[127\.0\.0\.1\]:{server.port}\s+ssh-ed25519\s+"
            rf"{re.escape(fingerprint_of(server))}\s+{state}$")


# --------------------------------------------------------------------------

def test_without_yes_and_without_a_tty_it_refuses_with_exit_2_and_writes_nothing(project):
    p = project(3)
    proc = p.run("keyscan", "web")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    for name, srv in zip(p.names, p.servers):  # the fingerprints are still shown, to be checked
        assert re.search(line_re(name, srv, "new"), proc.stdout), proc.stdout
    msg = proc.stderr.strip()
    assert msg.startswith("concurdeploy: keyscan: refused") and "\n" not in msg, msg  # one paragraph
    assert "--yes" in msg and "not a terminal" in msg and "at a terminal" in msg and "fingerprints" in msg
    assert "NOT recorded" not in proc.stderr and "Traceback" not in proc.stderr
    assert not p.kh.exists()


def test_yes_creates_a_missing_ssh_folder_0700_and_known_hosts_0644(project, fake_home):
    """As OpenSSH's ssh does: ~/.ssh 0700, known_hosts 0644, whatever a permissive umask says."""
    p = project(1)
    (fake_home / ".ssh").rmdir()
    p.write(known_hosts="~/.ssh/known_hosts")
    proc = subprocess.run([sys.executable, "-m", "concurdeploy", "keyscan", "web", "--yes"], cwd=p.path,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, umask=0)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    kh = fake_home / ".ssh" / "known_hosts"
    assert kh.read_text() == f"[127.0.0.1]:{p.servers[0].port} {p.servers[0].host_public_key_line}\n"
    assert oct(os.stat(fake_home / ".ssh").st_mode & 0o777) == oct(0o700)
    assert oct(os.stat(kh).st_mode & 0o777) == oct(0o644)


def test_yes_records_one_line_per_new_host_then_all_known(project):
    p = project(3)
    p.kh.write_text("# mine\n[10.0.0.9]:22 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDj7rSNTAF6hN9ag5U0aGYX3i2GTA5prGWPZQFhgA7oS")
    before = p.kh.read_bytes()  # no trailing newline: keyscan adds one, never rewrites
    proc = p.run("keyscan", "web", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    after = p.kh.read_bytes()
    assert after.startswith(before + b"\n")
    added = after[len(before) + 1:].decode().splitlines()
    assert added == [f"[127.0.0.1]:{s.port} {s.host_public_key_line}" for s in p.servers]
    assert "recorded 3 new host key(s)" in proc.stdout
    proc = p.run("keyscan", "web")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name, srv in zip(p.names, p.servers):
        assert re.search(line_re(name, srv, "known"), proc.stdout)
    assert p.kh.read_bytes() == after
    # and a normal run now verifies them strictly
    proc = p.run("run", "web", "echo hi")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_changed_key_is_never_written_and_exits_1(project, client_keys):
    p = project(2)
    other = " ".join(Path(client_keys.other + ".pub").read_text().split()[:2])
    p.kh.write_text(f"[127.0.0.1]:{p.servers[0].port} {other}\n")
    before = p.kh.read_bytes()
    proc = p.run("keyscan", "web", "--yes")
    assert proc.returncode == 1
    assert re.search(line_re("h1", p.servers[0], "CHANGED"), proc.stdout), proc.stdout
    assert "HOST KEY CHANGED" in proc.stderr and "never replaces" in proc.stderr
    # the new host was still recorded; the changed one was not touched
    after = p.kh.read_text()
    assert after == before.decode() + f"[127.0.0.1]:{p.servers[1].port} {p.servers[1].host_public_key_line}\n"


def test_unreachable_host_is_bounded_and_exits_1(project):
    p = project(1)
    closed = free_port()
    p.write(extra_hosts={"gone": {"host": "127.0.0.1", "port": closed}})
    t0 = time.monotonic()
    proc = p.run("keyscan", "web", "--yes", "--connect-timeout", "2")
    assert time.monotonic() - t0 < 20
    assert proc.returncode == 1
    assert re.search(rf"(?m)^gone\s+\[127\.0\.0\.1\]:{closed}\s+error: HostUnreachable: connect to", proc.stdout)
    assert p.kh.read_text() == f"[127.0.0.1]:{p.servers[0].port} {p.servers[0].host_public_key_line}\n"


def test_known_hosts_flag_and_limit(project, tmp_path):
    p = project(2)
    target = tmp_path / "elsewhere" / "kh"
    proc = p.run("keyscan", "web", "--limit", "h2", "--known-hosts", str(target), "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert target.read_text() == f"[127.0.0.1]:{p.servers[1].port} {p.servers[1].host_public_key_line}\n"
    assert not p.kh.exists()
    # no line for h1 (a plain substring test would trip over a fingerprint such as SHA256:1Xh1…)
    assert not [ln for ln in proc.stdout.split("keyscan:")[0].splitlines() if ln.split()[:1] == ["h1"]]


def test_jump_host_is_scanned_and_recorded_before_the_hosts_behind_it(project, sshd_factory):
    p = project(2)
    bastion = sshd_factory(1)[0]
    p.write(jump=f"{login_user()}@127.0.0.1:{bastion.port}")
    proc = p.run("keyscan", "web")
    assert proc.returncode == 2  # no terminal, no --yes: refused
    hop = f"{login_user()}@127.0.0.1:{bastion.port} (jump host)"
    assert re.search(line_re(hop, bastion, "new"), proc.stdout), proc.stdout
    assert proc.stdout.count("skipped: not scanned: its jump host") == 2
    assert not p.kh.exists()
    proc = p.run("keyscan", "web", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = p.kh.read_text().splitlines()
    assert [ln.split()[0] for ln in lines] == [f"[127.0.0.1]:{s.port}" for s in [bastion, *p.servers]]
    for name, srv in zip(p.names, p.servers):
        assert re.search(line_re(name, srv, "new"), proc.stdout)
    proc = p.run("run", "web", "echo via")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_prompt_on_a_terminal(project):
    """On a TTY (and only there) keyscan asks; 'y' records."""
    p = project(1)
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "concurdeploy", "keyscan", "web"], cwd=p.path,
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 60
    answered = False
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
                if not answered and b"[y/N]" in out:
                    os.write(master, b"y\n")
                    answered = True
            elif proc.poll() is not None:
                break
        assert proc.wait(timeout=30) == 0, out.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        os.close(master)
    assert answered
    assert p.kh.read_text() == f"[127.0.0.1]:{p.servers[0].port} {p.servers[0].host_public_key_line}\n"
