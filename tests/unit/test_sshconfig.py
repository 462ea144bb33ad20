"""OpenSSH client config, jump host resolution and plain-text password refusal (no network).

``connect_spec`` is called as the controller calls it; ``~`` is the empty fake home of
``tests/conftest.py``, so the developer's own ``~/.ssh/config`` is never read.
"""

from __future__ import annotations

import os
import pickle
import textwrap
from pathlib import Path

import pytest

from concurdeploy.exceptions import InventoryError, UsageError
from concurdeploy.inventory import load
from concurdeploy.ssh import sshconfig
from concurdeploy.ssh.specs import DEFAULTS, ConnectSpec, connect_spec


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return str(path)


@pytest.fixture
def key(tmp_path) -> str:
    """An existing file used as IdentityFile (connect_spec only checks that it exists)."""
    p = tmp_path / "keys" / "id_deploy"
    p.parent.mkdir()
    p.write_text("not read here")
    return str(p)


@pytest.fixture
def cfg(tmp_path, key) -> str:
    return write(tmp_path / "ssh_config", f"""
        Host web1-alias
            HostName 127.0.0.1
            Port 2201
            User alice
            IdentityFile {tmp_path}/keys/missing
            IdentityFile {key}
            ConnectTimeout 7
        Host behind
            HostName 10.9.9.9
            ProxyJump jumper@bastion-alias:2022,second
        Host bastion-alias
            HostName 127.0.0.1
            Port 2300
        Host legacy
            ProxyCommand nc %h %p
        Host *
            User fallback
        """)


# --------------------------------------------------------------------------- ssh_config

def test_alias_hostname_port_user_identityfile_connecttimeout(cfg, key):
    spec = connect_spec("web1", {"host": "web1-alias"}, {"ssh_config": cfg})
    assert (spec.name, spec.hostname, spec.port, spec.user) == ("web1", "127.0.0.1", 2201, "alice")
    assert spec.key_file == key  # the first IdentityFile that exists
    assert spec.connect_timeout == 7.0
    assert spec.jump == ()


def test_inventory_name_is_looked_up_when_no_host_var(cfg):
    spec = connect_spec("web1-alias", {}, {"ssh_config": cfg})
    assert (spec.hostname, spec.port) == ("127.0.0.1", 2201)


def test_precedence_defaults_ssh_config_vars_flags(cfg):
    """built-in defaults < concurdeploy settings < ssh_config < inventory vars < CLI flags."""
    base = connect_spec("other", {}, {"ssh_config": cfg})
    assert base.port == DEFAULTS["port"] and base.connect_timeout == DEFAULTS["connect_timeout"]
    assert base.user == "fallback"  # "Host *" from ssh_config beats "no user"
    # ssh_config beats concurdeploy settings (config files, CONCURDEPLOY_*):
    spec = connect_spec("web1", {"host": "web1-alias"}, {"ssh_config": cfg},
                        defaults={"connect_timeout": 30.0, "command_timeout": 45.0})
    assert (spec.connect_timeout, spec.command_timeout) == (7.0, 45.0)
    # inventory vars beat ssh_config:
    spec = connect_spec("web1", {"host": "web1-alias", "port": 2299, "user": "bob",
                                 "key_file": "/k", "connect_timeout": 3}, {"ssh_config": cfg})
    assert (spec.hostname, spec.port, spec.user, spec.key_file, spec.connect_timeout) == \
        ("127.0.0.1", 2299, "bob", "/k", 3.0)
    # flags beat inventory vars:
    spec = connect_spec("web1", {"host": "web1-alias", "connect_timeout": 3},
                        {"ssh_config": cfg, "connect_timeout": 1.5, "host_key_policy": "accept-new"})
    assert (spec.connect_timeout, spec.host_key_policy) == (1.5, "accept-new")


def test_flag_beats_ssh_config_var(tmp_path, cfg):
    other = write(tmp_path / "other_config", "Host web1-alias\n  Port 2444\n")
    spec = connect_spec("web1", {"host": "web1-alias", "ssh_config": other}, {})
    assert spec.port == 2444
    spec = connect_spec("web1", {"host": "web1-alias", "ssh_config": other}, {"ssh_config": cfg})
    assert spec.port == 2201


def test_default_file_is_home_ssh_config(fake_home, key):
    write(fake_home / ".ssh" / "config", "Host web1-alias\n  HostName 127.0.0.1\n  Port 2555\n")
    assert connect_spec("web1", {"host": "web1-alias"}).port == 2555
    # "none" reads no file, from the flag or the var:
    assert connect_spec("web1", {"host": "web1-alias"}, {"ssh_config": "none"}).port == 22
    assert connect_spec("web1", {"host": "web1-alias", "ssh_config": "none"}).port == 22


def test_missing_home_ssh_config_is_silently_none(fake_home):
    assert not (fake_home / ".ssh" / "config").exists()
    spec = connect_spec("web1", {"host": "web1"})
    assert (spec.hostname, spec.port, spec.user) == ("web1", 22, None)


def test_missing_explicit_file_is_a_usage_error(tmp_path):
    missing = str(tmp_path / "nope")
    with pytest.raises(UsageError, match=r"--ssh-config .*nope"):
        connect_spec("web1", {}, {"ssh_config": missing})
    with pytest.raises(InventoryError, match=r"ssh_config .*nope") as e:
        connect_spec("web1", {"ssh_config": missing}, {})
    assert e.value.key == "ssh_config"


def test_missing_ssh_config_var_names_inventory_file_and_line(tmp_path):
    inv = write(tmp_path / "inv.yaml", f"""
        all:
          hosts:
            web1:
              ssh_config: {tmp_path}/nope
        """)
    host = load(inv).hosts["web1"]
    with pytest.raises(InventoryError) as e:
        connect_spec("web1", host.vars)
    assert str(e.value).startswith(f"{inv}:5: key 'ssh_config'")


def test_cli_exits_2_for_a_missing_ssh_config_var(tmp_path):
    import subprocess
    import sys
    write(tmp_path / "inventories" / "hosts.yaml", f"""
        all:
          hosts:
            web1: {{ssh_config: {tmp_path}/nope}}
        """)
    proc = subprocess.run([sys.executable, "-m", "concurdeploy", "keyscan", "all"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, proc.stderr
    assert "nope" in proc.stderr and "Traceback" not in proc.stderr


def test_identityfile_none_existing_is_not_set(tmp_path):
    cfg = write(tmp_path / "c", f"Host x\n  IdentityFile {tmp_path}/missing1\n")
    assert connect_spec("x", {}, {"ssh_config": cfg}).key_file is None


def test_bad_port_or_timeout_in_ssh_config(tmp_path):
    """ssh refuses the whole file for a bad value, in any block: so do we, naming file and line."""
    cfg = write(tmp_path / "c", "Host x\n  Port abc\n")
    with pytest.raises(InventoryError, match=r"/c:2: key 'Port': .*'abc'"):
        connect_spec("x", {}, {"ssh_config": cfg})
    with pytest.raises(InventoryError, match=r"/c:2: key 'Port'"):
        connect_spec("other", {}, {"ssh_config": cfg})
    cfg = write(tmp_path / "d", "Host y\n  ConnectTimeout soon\nHost z\n  ConnectTimeout 0\n")
    with pytest.raises(InventoryError, match=r"/d:2: key 'ConnectTimeout': .*'soon'"):
        connect_spec("y", {}, {"ssh_config": cfg})
    cfg = write(tmp_path / "e", "Host z\n  ConnectTimeout 0\n")
    with pytest.raises(InventoryError, match=r"/e:2: key 'ConnectTimeout': .*positive"):
        connect_spec("z", {}, {"ssh_config": cfg})


def test_proxycommand_is_expanded_into_the_spec_unless_jump_set(cfg):
    spec = connect_spec("legacy", {"user": "deploy", "port": 2022}, {"ssh_config": cfg})
    assert spec.proxy_command == "nc legacy 2022" and spec.jump == ()
    assert connect_spec("legacy", {"jump": "none"}, {"ssh_config": cfg}).proxy_command is None


def test_proxycommand_tokens_and_refusals(tmp_path):
    cfg = write(tmp_path / "c", """
        Host pc
            HostName 127.0.0.9
            User ops
            Port 2201
            HostKeyAlias pc-key
            ProxyCommand relay %h %p %r %n %k 100%%
        Host badtoken
            ProxyCommand relay %C
        Host fdpass
            ProxyUseFdpass yes
            ProxyCommand relay %h
        """)
    spec = connect_spec("x", {"host": "pc"}, {"ssh_config": cfg})
    assert spec.proxy_command == "relay 127.0.0.9 2201 ops pc pc-key 100%"
    assert spec.known_hosts_name == ("pc-key", 22)  # HostKeyAlias: the known_hosts name, no port
    with pytest.raises(InventoryError, match=r"/c:9: key 'ProxyCommand': .*%C"):
        connect_spec("x", {"host": "badtoken"}, {"ssh_config": cfg})
    with pytest.raises(InventoryError, match=r"/c:11: key 'ProxyUseFdpass'"):
        connect_spec("x", {"host": "fdpass"}, {"ssh_config": cfg})


def test_sandbox_hosts_ignore_ssh_config(fake_home):
    write(fake_home / ".ssh" / "config", "Host *\n  Port 2555\n  ProxyJump b\n")
    spec = connect_spec("sb", {"connection": "sandbox", "host": "127.0.0.1", "port": 4000})
    assert (spec.port, spec.jump) == (4000, ())


def test_config_is_cached_and_reread_when_changed(tmp_path):
    path = tmp_path / "c"
    write(path, "Host x\n  Port 2001\n")
    assert sshconfig.load(str(path), True) is sshconfig.load(str(path), True)
    assert connect_spec("x", {}, {"ssh_config": str(path)}).port == 2001
    write(path, "Host x\n  Port 2002\n  User someone\n")
    assert connect_spec("x", {}, {"ssh_config": str(path)}).port == 2002


# --------------------------------------------------------------------------- jump hosts

def test_proxyjump_from_ssh_config(cfg):
    spec = connect_spec("b", {"host": "behind", "user": "deploy", "known_hosts": "/kh",
                              "key_env": "K", "host_key_policy": "accept-new"},
                        {"ssh_config": cfg})
    assert spec.hostname == "10.9.9.9"
    first, second = spec.jump
    # the hop's own string and ssh_config block win; the rest is inherited from the host
    assert (first.hostname, first.port, first.user) == ("127.0.0.1", 2022, "jumper")
    assert (second.hostname, second.port, second.user) == ("second", 22, "fallback")
    for hop in spec.jump:
        assert (hop.known_hosts, hop.key_env, hop.host_key_policy) == ("/kh", "K", "accept-new")
        assert hop.jump == ()
    assert spec.route == "deploy@10.9.9.9:22 via jumper@127.0.0.1:2022, fallback@second:22"


def test_jump_var_beats_proxyjump_and_none_turns_it_off(cfg):
    spec = connect_spec("b", {"host": "behind", "jump": "root@127.0.0.1:2400"}, {"ssh_config": cfg})
    assert [(h.user, h.hostname, h.port) for h in spec.jump] == [("root", "127.0.0.1", 2400)]
    assert connect_spec("b", {"host": "behind", "jump": "none"}, {"ssh_config": cfg}).jump == ()


@pytest.mark.parametrize("text, parsed", [
    ("bastion", (None, "bastion", None)),
    ("u@bastion:2222", ("u", "bastion", 2222)),
    ("ssh://u@b.example:2200", ("u", "b.example", 2200)),
    ("[::1]:2022", (None, "::1", 2022)),
    ("u@::1", ("u", "::1", None)),
])
def test_parse_hop(text, parsed):
    assert sshconfig.parse_hop(text) == parsed


def test_bad_hop_port_is_an_inventory_error():
    with pytest.raises(InventoryError, match="port 'x'"):
        connect_spec("h", {"jump": "b:x"})


def test_jump_list_and_comma_string_are_the_same(tmp_path):
    a = connect_spec("h", {"jump": ["a@b1:1", "c@b2:2"]}, {"ssh_config": "none"})
    b = connect_spec("h", {"jump": "a@b1:1, c@b2:2"}, {"ssh_config": "none"})
    assert a == b and [h.name for h in a.jump] == ["a@b1:1", "c@b2:2"]


def test_jump_naming_an_inventory_host_uses_its_vars(tmp_path):
    inv = load(write(tmp_path / "inv.yaml", """
        all:
          vars: {jump: bastion, known_hosts: /kh, user: deploy}
          hosts:
            bastion: {host: 127.0.0.1, port: 2300, user: jumpuser, key_file: /bkey}
            inner: {host: 127.0.0.1, port: 2400, jump: [bastion, inner-gw]}
            inner-gw: {host: 127.0.0.1, port: 2500}
            web1: {host: 10.0.0.1}
        """))
    spec = connect_spec("web1", inv.hosts["web1"].vars, {"ssh_config": "none"}, inventory=inv)
    (hop,) = spec.jump
    assert (hop.name, hop.hostname, hop.port, hop.user, hop.key_file, hop.known_hosts) == \
        ("bastion", "127.0.0.1", 2300, "jumpuser", "/bkey", "/kh")
    # the bastion itself gets "jump: bastion" from group all: it does not jump through itself
    assert connect_spec("bastion", inv.hosts["bastion"].vars, {"ssh_config": "none"},
                        inventory=inv).jump == ()
    # hops listed after the first are reached through the one before (their own jump var,
    # here "bastion" from group all, is not prepended again)
    spec = connect_spec("inner", inv.hosts["inner"].vars, {"ssh_config": "none"}, inventory=inv)
    assert [h.name for h in spec.jump] == ["bastion", "inner-gw"]


def test_jump_loop_is_an_inventory_error(tmp_path):
    inv = load(write(tmp_path / "inv.yaml", """
        all:
          hosts:
            a: {jump: b}
            b: {jump: a}
        """))
    with pytest.raises(InventoryError, match="loop"):
        connect_spec("a", inv.hosts["a"].vars, {"ssh_config": "none"}, inventory=inv)


def test_proxyjump_chain_in_ssh_config_and_host_star_self_reference(tmp_path):
    cfg = write(tmp_path / "c", """
        Host inner
            ProxyJump gw
        Host gw
            ProxyJump edge
        Host *
            ProxyJump edge
        """)
    spec = connect_spec("x", {"host": "inner"}, {"ssh_config": cfg})
    assert [h.hostname for h in spec.jump] == ["edge", "gw"]
    assert [h.hostname for h in connect_spec("e", {"host": "edge"}, {"ssh_config": cfg}).jump] == []


def test_spec_with_jump_pickles_and_hashes(cfg):
    spec = connect_spec("b", {"host": "behind"}, {"ssh_config": cfg})
    assert pickle.loads(pickle.dumps(spec)) == spec
    assert hash(spec) == hash(pickle.loads(pickle.dumps(spec)))
    assert isinstance(spec.jump[0], ConnectSpec)


def test_inventory_validates_jump_and_ssh_config(tmp_path):
    for bad in ("jump: 5", "jump: []", "jump: [ok, 3]", "ssh_config: 7"):
        path = write(tmp_path / "bad.yaml", f"all:\n  hosts:\n    h1: {{{bad}}}\n")
        with pytest.raises(InventoryError, match=r"bad.yaml:3"):
            load(path)
    path = write(tmp_path / "ok.yaml", "all:\n  hosts:\n    h1: {jump: [a, 'u@b:2'], ssh_config: x}\n")
    assert load(path).hosts["h1"].vars["jump"] == ["a", "u@b:2"]


# --------------------------------------------------------------------------- passwords

SECRET = "Sup3r-s3cret!value"


@pytest.mark.parametrize("var, fix", [
    ("password", "password_env"),
    ("ansible_password", "password_env"),
    ("ansible_ssh_pass", "password_env"),
    ("ansible_become_pass", "become_password_env"),
])
@pytest.mark.parametrize("level", ["host", "group"])
def test_plaintext_password_is_refused_without_showing_it(tmp_path, var, fix, level):
    if level == "host":
        text = f"all:\n  hosts:\n    web1:\n      host: 10.0.0.1\n      {var}: '{SECRET}'\n"
        line = 5
    else:
        text = f"all:\n  children:\n    web:\n      hosts: {{web1: }}\n      vars:\n        {var}: {SECRET}\n"
        line = 6
    path = write(tmp_path / "inv.yaml", text)
    with pytest.raises(InventoryError) as e:
        load(path)
    message = str(e.value)
    assert message.startswith(f"{path}:{line}: key '{var}'")
    assert "environment variable" in message and f"{fix}: NAME" in message
    assert SECRET not in message and SECRET not in repr(e.value.args)
    assert SECRET not in repr(pickle.loads(pickle.dumps(e.value)).__dict__)


def test_password_env_and_empty_password_are_fine(tmp_path):
    path = write(tmp_path / "inv.yaml",
                 "all:\n  hosts:\n    web1: {password_env: DEPLOY_PW, password: , "
                 "ansible_become_pass: ''}\n")
    assert load(path).hosts["web1"].vars["password_env"] == "DEPLOY_PW"


def test_cli_exits_2_on_a_plaintext_password(tmp_path):
    import subprocess
    import sys
    write(tmp_path / "inventories" / "hosts.yaml",
          f"all:\n  hosts:\n    web1: {{ansible_ssh_pass: {SECRET}}}\n")
    proc = subprocess.run([sys.executable, "-m", "concurdeploy", "keyscan", "all"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2
    assert "password_env" in proc.stderr
    assert SECRET not in proc.stdout + proc.stderr


# --------------------------------------------------------------------------- as ssh -G reads it

def test_include_relative_to_home_ssh_glob_and_inside_host(fake_home, tmp_path):
    write(fake_home / ".ssh" / "conf.d" / "10-web.conf", "Host web1-alias\n  Port 2301\n  User inc\n")
    write(fake_home / ".ssh" / "conf.d" / "20-all.conf", "Host *\n  Port 2399\n")
    write(fake_home / ".ssh" / "db.conf", "HostName 127.0.0.3\nPort 2302\n")
    cfg = write(tmp_path / "c", "Include conf.d/*.conf\nHost db-alias\n  Include db.conf\n")
    spec = connect_spec("w", {"host": "web1-alias"}, {"ssh_config": cfg})
    assert (spec.port, spec.user) == (2301, "inc")
    spec = connect_spec("d", {"host": "db-alias"}, {"ssh_config": cfg})
    assert (spec.hostname, spec.port) == ("127.0.0.3", 2399)  # conf.d's Host * came first
    # an Include inside a Host block that does not match adds nothing
    assert connect_spec("o", {"host": "other"}, {"ssh_config": cfg}).hostname == "other"


def test_trailing_comment_quotes_equals_and_keyword_case(tmp_path):
    cfg = write(tmp_path / "c", 'HOST=web1-alias\n  hostname 127.0.0.4 # primary\n  PORT = 2303\n'
                                '  User "deploy"\n')
    spec = connect_spec("w", {"host": "web1-alias"}, {"ssh_config": cfg})
    assert (spec.hostname, spec.port, spec.user) == ("127.0.0.4", 2303, "deploy")


def test_match_host_final_and_user_from_the_inventory(tmp_path):
    cfg = write(tmp_path / "c", """
        Host web1-alias
            HostName real.example
        Match host real.example
            Port 2304
        Match final host real.example
            ConnectTimeout 4
        Match user ops
            IdentitiesOnly yes
        """)
    spec = connect_spec("w", {"host": "web1-alias"}, {"ssh_config": cfg})
    assert (spec.hostname, spec.port, spec.connect_timeout) == ("real.example", 2304, 4.0)
    found = sshconfig.settings(sshconfig.load(cfg, True), "web1-alias", user="ops")
    assert found["allow_agent"] is False  # Match user sees the inventory's user, as with ssh -l
    assert "allow_agent" not in sshconfig.settings(sshconfig.load(cfg, True), "web1-alias")


def test_identityfile_tokens(tmp_path, fake_home):
    key = tmp_path / "keys" / "web1-alias_2305_deploy"
    key.parent.mkdir()
    key.write_text("x")
    cfg = write(tmp_path / "c", f"Host web1-alias\n  Port 2305\n  User deploy\n"
                                f"  IdentityFile ~/none_%h\n  IdentityFile {tmp_path}/keys/%n_%p_%r\n")
    assert connect_spec("w", {"host": "web1-alias"}, {"ssh_config": cfg}).key_file == str(key)


def test_match_exec_runs_once_per_name_without_secrets_in_its_environment(tmp_path, monkeypatch):
    log = tmp_path / "exec.log"
    monkeypatch.setenv("DEPLOY_KEY_TEXT", "s3cret-key-material")
    cfg = write(tmp_path / "c", f"""
        Match exec "echo %h:${{DEPLOY_KEY_TEXT:-unset}} >> {log}"
            Port 2306
        """)
    hosts = {f"h{i}": {"host": "same-alias"} for i in range(5)}
    for name, hv in hosts.items():
        assert connect_spec(name, hv, {"ssh_config": cfg}).port == 2306
    assert log.read_text() == "same-alias:unset\n"  # once, and the secret never reached it


def test_proxycommand_on_the_first_hop_is_used_on_a_later_hop_refused(tmp_path):
    """The first hop is reached through its ProxyCommand, as ``ssh -J`` does; on a later hop
    ssh would silently ignore it, so it is refused, naming file and line."""
    cfg = write(tmp_path / "c", """
        Host inner
            ProxyJump gw
        Host gw
            ProxyCommand nc -X connect -x proxy.example:3128 %h %p
        Host deep
            ProxyJump edge,gw
        """)
    spec = connect_spec("web1", {"host": "inner"}, {"ssh_config": cfg})
    (hop,) = spec.jump
    assert (hop.hostname, hop.proxy_command) == ("gw", "nc -X connect -x proxy.example:3128 gw 22")
    assert spec.proxy_command is None
    with pytest.raises(InventoryError) as e:
        connect_spec("web1", {"host": "deep"}, {"ssh_config": cfg})
    assert str(e.value).startswith(f"{cfg}:5: key 'ProxyCommand': host web1: jump host gw is not "
                                   f"the first hop")
    assert "3128" not in str(e.value)  # the command is not echoed: it may hold a secret
    # the jump var bypasses ssh_config's ProxyJump on purpose: no ProxyCommand involved then
    assert [h.hostname for h in connect_spec("web1", {"host": "inner", "jump": "127.0.0.1:2200"},
                                             {"ssh_config": cfg}).jump] == ["127.0.0.1"]


def test_proxycommand_after_proxyjump_is_ignored_as_ssh_does(tmp_path):
    cfg = write(tmp_path / "c", "Host x\n  ProxyJump j1\n  ProxyCommand nc %h %p\n")
    assert [h.hostname for h in connect_spec("x", {}, {"ssh_config": cfg}).jump] == ["j1"]


def test_unknown_keyword_and_extra_values_are_refused(tmp_path):
    cfg = write(tmp_path / "c", "Host nomatch\n  Prot 2222\n")
    with pytest.raises(InventoryError, match=r"/c:2: key 'Prot': .*not an OpenSSH client keyword"):
        connect_spec("x", {}, {"ssh_config": cfg})
    cfg = write(tmp_path / "d", "IgnoreUnknown Prot\nHost *\n  Prot 2222\n  HostName a b\n")
    with pytest.raises(InventoryError, match=r"/d:4: key 'HostName': .*one value"):
        connect_spec("x", {}, {"ssh_config": cfg})


def test_identityagent(tmp_path, monkeypatch, fake_home):
    cfg = write(tmp_path / "c", "Host none-agent\n  IdentityAgent none\nHost other-agent\n"
                                "  IdentityAgent ~/.agents/%h.sock\nHost env-agent\n"
                                "  IdentityAgent SSH_AUTH_SOCK\nHost var-agent\n  IdentityAgent $MY_AGENT\n"
                                "Host unset-agent\n  IdentityAgent $NOT_SET_AGENT\n")
    monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "agent.sock"))
    monkeypatch.setenv("MY_AGENT", str(tmp_path / "mine.sock"))
    spec = connect_spec("a", {"host": "none-agent"}, {"ssh_config": cfg})
    assert (spec.allow_agent, spec.identity_agent) == (False, None)
    spec = connect_spec("a", {"host": "env-agent"}, {"ssh_config": cfg})
    assert (spec.allow_agent, spec.identity_agent) == (True, None)
    spec = connect_spec("a", {"host": "other-agent"}, {"ssh_config": cfg})
    assert (spec.allow_agent, spec.identity_agent) == (True, f"{fake_home}/.agents/other-agent.sock")
    assert connect_spec("a", {"host": "var-agent"}, {"ssh_config": cfg}).identity_agent == f"{tmp_path}/mine.sock"
    assert connect_spec("a", {"host": "unset-agent"}, {"ssh_config": cfg}).allow_agent is False
    monkeypatch.delenv("SSH_AUTH_SOCK")  # an IdentityAgent socket is used without SSH_AUTH_SOCK
    assert connect_spec("a", {"host": "other-agent"}, {"ssh_config": cfg}).allow_agent is True


def test_group_writable_default_config_is_refused_like_ssh(fake_home):
    path = fake_home / ".ssh" / "config"
    write(path, "Host *\n  Port 2307\n")
    path.chmod(0o664)
    with pytest.raises(InventoryError, match="writable by group or others"):
        connect_spec("x", {})
    path.chmod(0o600)
    assert connect_spec("x", {}).port == 2307


def test_cli_exits_2_for_a_proxycommand_on_a_later_jump_host(tmp_path):
    import subprocess
    import sys
    cfg = write(tmp_path / "ssh_config", "Host gw\n  ProxyCommand nc %h %p\n")
    write(tmp_path / "inventories" / "hosts.yaml", f"""
        all:
          hosts:
            web1: {{host: 127.0.0.1, jump: [edge, gw], ssh_config: {cfg}}}
        """)
    proc = subprocess.run([sys.executable, "-m", "concurdeploy", "keyscan", "all"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{cfg}:2: key 'ProxyCommand'" in proc.stderr and "Traceback" not in proc.stderr


def test_a_keyword_of_a_newer_openssh_is_asked_of_the_installed_ssh(tmp_path, monkeypatch):
    """Ambiguous for the reader, so the installed ssh decides: ignored if it knows the
    keyword, refused (naming file and line) if it does not or if there is no ssh."""
    import shutil

    from concurdeploy.ssh import openssh_config

    cfg = write(tmp_path / "c", "Host *\n  FutureKeyword yes\n  Port 2308\n")
    real_ssh = shutil.which("ssh")
    stub = tmp_path / "bin" / "ssh"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\necho \"$@\" >> \"$(dirname \"$0\")/argv\"\nexit 0\n")
    stub.chmod(0o755)
    monkeypatch.setattr(openssh_config, "_known", {})
    monkeypatch.setenv("PATH", f"{stub.parent}:/usr/bin:/bin")
    assert connect_spec("x", {}, {"ssh_config": cfg}).port == 2308
    argv = (stub.parent / "argv").read_text()
    assert argv.startswith("-F ") and argv.rstrip().endswith("-G probe.invalid") and cfg not in argv
    monkeypatch.setattr(openssh_config, "_known", {})
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(InventoryError, match=r"/c:2: key 'FutureKeyword'"):
        sshconfig.settings(sshconfig.Config(cfg, False), "x")
    if real_ssh:  # OpenSSH 9.x itself does not know it
        monkeypatch.setattr(openssh_config, "_known", {})
        monkeypatch.setenv("PATH", os.path.dirname(real_ssh))
        with pytest.raises(InventoryError, match=r"/c:2: key 'FutureKeyword'"):
            sshconfig.settings(sshconfig.Config(cfg, False), "x")


def test_canonicalizehostname_is_refused_not_ignored(tmp_path):
    cfg = write(tmp_path / "c", "Host short\n  CanonicalizeHostname yes\n  CanonicalDomains example\n"
                                "Host *\n  CanonicalizeHostname no\n")
    with pytest.raises(InventoryError, match=r"/c:2: key 'CanonicalizeHostname'"):
        connect_spec("x", {"host": "short"}, {"ssh_config": cfg})
    assert connect_spec("x", {"host": "other"}, {"ssh_config": cfg}).hostname == "other"
