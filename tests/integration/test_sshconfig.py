"""OpenSSH client config (``~/.ssh/config`` / ``ssh_config`` var) against real sshd on 127.0.0.1.

The config files are written in tmp (``~`` is the empty fake home of ``tests/conftest.py``)
and use ``Host`` aliases that resolve nowhere: a connection only works if the alias's
``HostName 127.0.0.1``, ``Port``, ``User`` and ``IdentityFile`` were really used (the fake
home holds no default key, and no key is given in the inventory).
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from concurdeploy.exceptions import HostKeyUnknown, HostUnreachable
from concurdeploy.executors.local import Job, run_host
from concurdeploy.operations.commands import RunJob, run_command
from concurdeploy.records import Status
from concurdeploy.ssh.connection import Connection
from concurdeploy.ssh.specs import connect_spec
from tests.sshd import free_port, login_user

pytestmark = pytest.mark.integration


def config_for(port: int, key: str, alias: str = "web1-alias", extra: str = "") -> str:
    return textwrap.dedent(f"""
        Host {alias}
            HostName 127.0.0.1
            Port {port}
            User {login_user()}
            IdentityFile ~/.ssh/does-not-exist
            IdentityFile {key}
        {extra}
        """)


@pytest.fixture
def server(sshd_factory):
    return sshd_factory(1)[0]


def test_alias_from_home_ssh_config_is_used(server, client_keys, known_hosts_file, fake_home):
    kh = known_hosts_file([server])
    hvars = {"host": "web1-alias", "known_hosts": kh, "connect_timeout": 5}
    with pytest.raises(HostUnreachable, match="cannot resolve web1-alias"):  # without the config
        Connection(connect_spec("web1", hvars)).open()
    (fake_home / ".ssh" / "config").write_text(config_for(server.port, client_keys.ed25519))
    spec = connect_spec("web1", hvars)
    assert (spec.hostname, spec.port, spec.user, spec.key_file) == \
        ("127.0.0.1", server.port, login_user(), client_keys.ed25519)
    with Connection(spec) as conn:
        assert conn.run("echo $SSH_CONNECTION").stdout.split()[-1] == str(server.port)


def test_ssh_config_var_and_flag(server, client_keys, known_hosts_file, tmp_path):
    kh = known_hosts_file([server])
    right = tmp_path / "right_config"
    right.write_text(config_for(server.port, client_keys.ed25519))
    wrong = tmp_path / "wrong_config"
    wrong.write_text(config_for(free_port(), client_keys.ed25519))
    hvars = {"host": "web1-alias", "known_hosts": kh, "connect_timeout": 5, "connect_retries": 0,
             "ssh_config": str(wrong)}
    r = run_host(Job(connect_spec("web1", hvars), run_command, RunJob("true")))
    assert r.status is Status.UNREACHABLE and "Connection refused" in r.error
    # --ssh-config (overrides["ssh_config"]) beats the var
    r = run_host(Job(connect_spec("web1", hvars, {"ssh_config": str(right)}), run_command,
                     RunJob("echo ok")))
    assert r.status is Status.OK, r.error


def test_inventory_vars_beat_ssh_config(server, client_keys, known_hosts_file, tmp_path):
    """ssh_config says a closed port and an unauthorised key; the inventory corrects both."""
    kh = known_hosts_file([server])
    cfg = tmp_path / "config"
    cfg.write_text(config_for(free_port(), client_keys.other))
    hvars = {"host": "web1-alias", "known_hosts": kh, "ssh_config": str(cfg),
             "port": server.port, "key_file": client_keys.ed25519, "connect_timeout": 5}
    with Connection(connect_spec("web1", hvars)) as conn:
        assert conn.run("echo ok").stdout == "ok\n"


def test_connecttimeout_from_ssh_config(stalling_server, client_keys, tmp_path):
    cfg = tmp_path / "config"
    cfg.write_text(config_for(stalling_server.port, client_keys.ed25519,
                              extra="Host web1-alias\n    ConnectTimeout 1\n"))
    spec = connect_spec("web1", {"host": "web1-alias", "known_hosts": str(tmp_path / "kh"),
                                 "ssh_config": str(cfg)},
                        defaults={"connect_timeout": 10.0, "command_timeout": 60.0})
    assert spec.connect_timeout == 1.0
    t0 = time.monotonic()
    with pytest.raises(HostUnreachable, match="timed out after 1 s"):
        Connection(spec).open()
    assert time.monotonic() - t0 < 6  # ssh_config's 1 s, not the default 10 s


def test_cli_run_uses_the_alias_in_worker_processes(server, client_keys, known_hosts_file,
                                                    fake_home, tmp_path):
    """The CLI path: ``~/.ssh/config`` read by the controller, the host run by a worker."""
    import subprocess
    import sys

    (fake_home / ".ssh" / "config").write_text(config_for(server.port, client_keys.ed25519))
    kh = known_hosts_file([server])
    (tmp_path / "inventories").mkdir()
    (tmp_path / "inventories" / "hosts.yaml").write_text(textwrap.dedent(f"""
        all:
          vars: {{known_hosts: {kh}, connect_timeout: 5}}
          hosts:
            web1-alias:
        """))
    proc = subprocess.run([sys.executable, "-m", "concurdeploy", "run", "all", "echo $SSH_CONNECTION"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"127.0.0.1 {server.port}" in proc.stdout


def test_resolved_in_the_controller_the_worker_never_reads_it(server, client_keys,
                                                              known_hosts_file, tmp_path):
    from concurdeploy.executors.local import run_jobs

    cfg = tmp_path / "config"
    cfg.write_text(config_for(server.port, client_keys.ed25519))
    spec = connect_spec("web1", {"host": "web1-alias", "known_hosts": known_hosts_file([server]),
                                 "ssh_config": str(cfg), "connect_timeout": 5})
    cfg.unlink()  # gone before any worker starts: the spec must carry everything
    (result,) = run_jobs([Job(spec, run_command, RunJob("echo ok"))], forks=1, processes=1)
    assert result.status is Status.OK, result.error


def test_include_and_match_pick_the_port_and_user_that_connect(sshd_factory, client_keys,
                                                                known_hosts_file, fake_home, tmp_path):
    """The right port comes from an Include under ~/.ssh, the user and key from a Match block
    (``Match originalhost`` + ``Match exec`` on a flag file); the wrong values sit in a later
    ``Host *`` block, which loses because the first value wins. Before the OpenSSH-faithful
    reader, the Include was ignored and Match exec was paramiko's: the connection went to the
    wrong port."""
    right, wrong = sshd_factory(2)
    kh = known_hosts_file([right, wrong])
    flag = tmp_path / "use-deploy-key"
    flag.write_text("")
    (fake_home / ".ssh" / "conf.d").mkdir()
    (fake_home / ".ssh" / "conf.d" / "web.conf").write_text(
        f"Host web1-alias\n    HostName 127.0.0.1\n    Port {right.port}\n")
    cfg = tmp_path / "config"
    cfg.write_text(textwrap.dedent(f"""
        Include conf.d/*.conf   # relative to ~/.ssh
        Match originalhost web1-alias exec "test -e {flag}"
            User {login_user()}
            IdentityFile {client_keys.ed25519}
        Host *
            Port {wrong.port}
            User nobody-such
            IdentityFile {client_keys.other}
        """))
    spec = connect_spec("web1", {"host": "web1-alias", "known_hosts": kh, "ssh_config": str(cfg),
                                 "connect_timeout": 5})
    assert (spec.hostname, spec.port, spec.user, spec.key_file) == \
        ("127.0.0.1", right.port, login_user(), client_keys.ed25519)
    with Connection(spec) as conn:
        assert conn.run("echo $SSH_CONNECTION").stdout.split()[-1] == str(right.port)
    # without the flag file, Match exec fails: Host * gives the wrong user and key, and the
    # server says no (the Include's port still wins). A second file: lookups are cached per
    # file, so that a Match exec command runs once per host name, not once per host.
    flag.unlink()
    cfg2 = tmp_path / "config2"
    cfg2.write_text(cfg.read_text())
    spec = connect_spec("web1", {"host": "web1-alias", "known_hosts": kh, "ssh_config": str(cfg2),
                                 "connect_timeout": 5, "connect_retries": 0})
    assert (spec.port, spec.user, spec.key_file) == (right.port, "nobody-such", client_keys.other)
    r = run_host(Job(spec, run_command, RunJob("true")))
    assert r.status is Status.FAILED and r.error_kind == "AuthFailed", (r.status, r.error_kind, r.error)


# --------------------------------------------------------------------------- ProxyCommand

RELAY = Path(__file__).with_name("stdio_relay.py")


def test_proxycommand_is_the_connection_and_leaves_nothing_running(server, client_keys, known_hosts_file,
                                                                    tmp_path, monkeypatch):
    """ssh_config's ProxyCommand carries the SSH connection (a relay process that reports its
    pid and environment); no secret variable reaches it; closing kills it."""
    monkeypatch.setenv("DEPLOY_PASSWORD", "s3cret-pass")
    report = tmp_path / "relay.json"
    cfg = tmp_path / "config"
    cfg.write_text(config_for(server.port, client_keys.ed25519, alias="pc-alias",
                              extra=f"Host pc-alias\n    ProxyCommand {sys.executable} {RELAY} %h %p {report}\n"))
    spec = connect_spec("web1", {"host": "pc-alias", "known_hosts": known_hosts_file([server]),
                                 "ssh_config": str(cfg), "connect_timeout": 5, "password_env": "DEPLOY_PASSWORD"})
    assert spec.proxy_command == f"{sys.executable} {RELAY} 127.0.0.1 {server.port} {report}"
    with Connection(spec) as conn:
        assert conn.run("echo $SSH_CONNECTION").stdout.split()[-1] == str(server.port)
        relay = json.loads(report.read_text())
        assert Path(f"/proc/{relay['pid']}").exists()
        assert "DEPLOY_PASSWORD" not in relay["env"] and "PATH" in relay["env"]
    assert not Path(f"/proc/{relay['pid']}").exists()  # reaped by close(), not left running


def test_failing_proxycommand_is_unreachable_with_its_reason(tmp_path):
    cfg = tmp_path / "config"
    # "exec " is put before the command, as ssh does: hence the inner sh for "; exit 3"
    cfg.write_text("Host pc-alias\n    ProxyCommand sh -c 'echo no route to %h >&2; exit 3'\n")
    spec = connect_spec("web1", {"host": "pc-alias", "known_hosts": str(tmp_path / "kh"),
                                 "ssh_config": str(cfg), "connect_timeout": 5})
    with pytest.raises(HostUnreachable) as e:
        Connection(spec).open()
    assert str(e.value).endswith("ProxyCommand exited with status 3: no route to pc-alias")
    assert "via ssh_config's ProxyCommand" in str(e.value)


def test_first_jump_host_reached_through_its_proxycommand(sshd_factory, client_keys, known_hosts_file,
                                                          tmp_path):
    """``Host inner / ProxyJump gw`` and ``Host gw / ProxyCommand relay``: the bastion is
    reached through the relay (it reports), the host through the bastion's tunnel."""
    from concurdeploy.ssh.bastions import close_bastions

    bastion, target = sshd_factory(2)
    report = tmp_path / "relay.json"
    cfg = tmp_path / "config"
    cfg.write_text(textwrap.dedent(f"""
        Host inner
            HostName 127.0.0.1
            Port {target.port}
            ProxyJump gw
        Host gw
            HostName 127.0.0.1
            Port {bastion.port}
            ProxyCommand {sys.executable} {RELAY} %h %p {report}
        Host *
            User {login_user()}
            IdentityFile {client_keys.ed25519}
        """))
    spec = connect_spec("web1", {"host": "inner", "known_hosts": known_hosts_file([bastion, target]),
                                 "ssh_config": str(cfg), "connect_timeout": 5})
    assert spec.jump[0].proxy_command.endswith(f"127.0.0.1 {bastion.port} {report}")
    try:
        with Connection(spec) as conn:
            assert conn.run("echo $SSH_CONNECTION").stdout.split()[-1] == str(target.port)
        relay = json.loads(report.read_text())
    finally:
        close_bastions()
    assert not Path(f"/proc/{relay['pid']}").exists()


# --------------------------------------------------------------------------- IdentityAgent

@pytest.fixture
def agent_socket(tmp_path, client_keys):
    """A real ssh-agent (started here, stopped by its pid) holding the test's Ed25519 key,
    listening on a socket that is NOT $SSH_AUTH_SOCK (the fake home unsets that)."""
    import subprocess

    path = tmp_path / "agent.sock"
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True)
    try:
        first = proc.stdout.readline()  # printed once the socket is bound: the event to wait for
        assert first.startswith(f"SSH_AUTH_SOCK={path};"), first
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SSH_AUTH_SOCK": str(path)}
        subprocess.run(["ssh-add", "-q", client_keys.ed25519], env=env, check=True, timeout=30,
                       stdin=subprocess.DEVNULL, capture_output=True)
        yield str(path)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_identityagent_socket_from_ssh_config_authenticates(server, known_hosts_file, agent_socket,
                                                            tmp_path):
    """No key file anywhere and no $SSH_AUTH_SOCK: only the agent ssh_config names can log in."""
    assert "SSH_AUTH_SOCK" not in os.environ
    cfg = tmp_path / "config"
    cfg.write_text(textwrap.dedent(f"""
        Host agent-alias
            HostName 127.0.0.1
            Port {server.port}
            User {login_user()}
            IdentityAgent {agent_socket}
        Host no-agent-alias
            HostName 127.0.0.1
            Port {server.port}
            User {login_user()}
            IdentityAgent none
        """))
    hvars = {"known_hosts": known_hosts_file([server]), "ssh_config": str(cfg), "connect_timeout": 5,
             "connect_retries": 0}
    spec = connect_spec("web1", {"host": "agent-alias", **hvars})
    assert (spec.key_file, spec.identity_agent, spec.allow_agent) == (None, agent_socket, True)
    with Connection(spec) as conn:
        assert conn.run("echo ok").stdout == "ok\n"
    r = run_host(Job(connect_spec("web1", {"host": "no-agent-alias", **hvars}), run_command, RunJob("true")))
    assert r.status is not Status.OK and r.error_kind in ("AuthFailed", "CredentialsMissing"), r


def test_hostkeyalias_is_the_known_hosts_name(server, client_keys, known_hosts_file, tmp_path):
    """known_hosts holds the server's key only under the alias (as ssh would look it up):
    strict checking passes with HostKeyAlias, and says unknown without it."""
    lines = Path(known_hosts_file([server])).read_text().splitlines()
    kh = tmp_path / "known_hosts_alias"
    kh.write_text("".join("web-alias-key " + line.split(None, 1)[1] + "\n" for line in lines))
    cfg = tmp_path / "config"
    cfg.write_text(config_for(server.port, client_keys.ed25519, extra="Host web1-alias\n    HostKeyAlias web-alias-key\n"))
    hvars = {"host": "web1-alias", "known_hosts": str(kh), "ssh_config": str(cfg), "connect_timeout": 5}
    spec = connect_spec("web1", hvars)
    assert spec.known_hosts_name == ("web-alias-key", 22)
    with Connection(spec) as conn:
        assert conn.run("echo ok").stdout == "ok\n"
    cfg2 = tmp_path / "config2"
    cfg2.write_text(config_for(server.port, client_keys.ed25519))
    with pytest.raises(HostKeyUnknown):
        Connection(connect_spec("web1", {**hvars, "ssh_config": str(cfg2)})).open()
