"""Secrets never leak (issue 4 item 6), against real OpenSSH sshd on loopback.

Secrets in play: a passphrase-protected private key given as text in ``key_env`` with its
passphrase in ``passphrase_env``, a ``password_env`` offered to a server that refuses
passwords, a ``secret_vars`` var rendered into a template, and the sudo password of
``become_password_env``. Whatever runs (push, check, diff, ``run``, at every verbosity,
with reports) and whatever fails (wrong passphrase, refused password, wrong sudo password,
a validate or reload that prints the rendered file), none of the values appears in stdout,
stderr, the JSON report, the JUnit XML or an exception's message or traceback.

Decision (documented in the README's security section): a command that itself prints a
secret var's value (validate, reload, healthcheck, ``run``) prints the operator's output,
but every ``secret_vars`` value — and the password, passphrase and sudo password — is
masked as ``********`` in all host output (output, streamed ``run`` lines, diff, error,
data) in the worker, before the result leaves it.
"""

from __future__ import annotations

import json
import os
import pickle
import secrets
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import yaml

from .test_become import PW_ENV, USER, sudo_fleet, sudo_user  # noqa: F401  (fixtures)

pytestmark = pytest.mark.integration

APP = "{{ root }}/etc/haproxy/app.cfg"
TEMPLATE = "user = app\npassword = {{ db_password }}\n"


def _encrypted_key(directory: Path, passphrase: str) -> Path:
    path = directory / "id_enc"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", "enc", "-f", str(path)],
                   check=True, capture_output=True, timeout=60)
    return path


def _key_fragments(key_text: str) -> list[str]:
    """The key text and distinctive slices of its base64 body (any of them would be a leak)."""
    body = [ln for ln in key_text.splitlines() if ln and not ln.startswith("-----")]
    return [key_text, key_text.strip(), body[0][10:50], body[-1][-30:]] + [ln for ln in body if len(ln) > 20]


def _assert_clean(text: str, values: dict, where: str) -> None:
    for name, value in values.items():
        for v in (value if isinstance(value, list) else [value]):
            assert v not in text, f"{name} leaked into {where}"


def _run_cli(project: Path, *args: str, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "concurdeploy", *args], cwd=project, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **env})


# --------------------------------------------------------------------------------------------
# hosts --vars (no connection)
# --------------------------------------------------------------------------------------------

def test_hosts_vars_masks_secret_vars_and_secret_names(tmp_path):
    api = f"Api-{secrets.token_hex(6)}"
    pw = f"Pw-{secrets.token_hex(6)}"
    tok = f"Tok-{secrets.token_hex(6)}"
    nested = f"Nested-{secrets.token_hex(6)}"
    inv = {"all": {"vars": {"password_env": "CD_PASSWORD", "passphrase_env": "CD_PASSPHRASE"},
                   "children": {"app": {
                       "vars": {"secret_vars": ["api_key"], "api_key": api, "db_password": pw,
                                "vault_token": tok, "creds": {"user": "app", "password": nested},
                                "dsn": f"https://app:{api}@db.example/"},
                       "hosts": {"h1": {"host": "127.0.0.1", "port": 2222}}}}}}
    (tmp_path / "inventories").mkdir()
    (tmp_path / "inventories" / "hosts.yaml").write_text(yaml.safe_dump(inv))
    res = _run_cli(tmp_path, "hosts", "--limit", "h1", "--vars", env={})
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout + res.stderr
    _assert_clean(out, {"secret_vars value": api, "db_password": pw, "vault_token": tok,
                        "nested password": nested}, "hosts --vars")
    lines = {ln.split("=", 1)[0].strip(): ln.split("=", 1)[1] for ln in res.stdout.splitlines()
             if ln.startswith("    ") and "=" in ln}
    for name in ("api_key", "db_password", "vault_token"):
        assert lines[name].strip().startswith("'********'"), lines[name]
    assert "'user': 'app'" in lines["creds"] and "'password': '********'" in lines["creds"]
    assert "https://app:********@db.example/" in lines["dsn"]
    assert "CD_PASSWORD" in lines["password_env"] and "CD_PASSPHRASE" in lines["passphrase_env"]
    assert "api_key" in lines["secret_vars"]  # the names are not secret


# --------------------------------------------------------------------------------------------
# output of commands that print a secret var (any user: logs in as the test's own user)
# --------------------------------------------------------------------------------------------

def test_secret_var_printed_by_validate_reload_and_run_is_masked(fleet, tmp_path):
    f = fleet(1)
    secret = f"Vault-{secrets.token_hex(8)}-secret"
    (f.project / "files" / "app.cfg.j2").write_text(TEMPLATE)
    f.group_vars = {"db_password": secret, "secret_vars": ["db_password"]}
    files = [{"src": "files/app.cfg.j2", "dest": APP, "validate": "cat {tmp}; exit 3"}]
    f.write_inventory(files=files)
    report, junit = tmp_path / "r.json", tmp_path / "j.xml"
    res = f.run("push", "haproxy", "-vv", "--report-json", str(report), "--junit", str(junit))
    assert res.returncode == 1, res.stdout + res.stderr
    assert "ValidateFailed" in res.stdout and "password = ********" in res.stdout  # shown, masked
    everything = res.stdout + res.stderr + report.read_text() + junit.read_text()
    assert "password = ********" in json.loads(report.read_text())["hosts"][0]["output"]
    outputs = [everything]

    # a failing reload that prints the new file: rolled back, its output masked too
    f.write_inventory(files=[{"src": "files/app.cfg.j2", "dest": APP}],  # fails while the new file is there
                      reload="f='{{ root }}/etc/haproxy/app.cfg'; if [ -e \"$f\" ]; then cat \"$f\"; exit 1; fi")
    res = f.run("push", "haproxy", "-vv", "--report-json", str(report), "--junit", str(junit))
    assert res.returncode == 1 and "rolled back" in res.stdout, res.stdout + res.stderr
    assert "password = ********" in res.stdout
    outputs.append(res.stdout + res.stderr + report.read_text() + junit.read_text())

    f.write_inventory(files=[{"src": "files/app.cfg.j2", "dest": APP}])
    res = f.run("push", "haproxy", "--diff", "-vv")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "+password = ********" in res.stdout
    outputs.append(res.stdout + res.stderr)
    assert secret in f.dest("h1").with_name("app.cfg").read_text()  # the host does get the value

    app = str(f.dest("h1").with_name("app.cfg"))
    for extra in ([], ["--collect"]):  # streamed lines, and collected output
        res = f.run("run", "haproxy", f"cat '{app}'; grep password '{app}' >&2; exit 4",
                    "-vv", "--report-json", str(report), "--junit", str(junit), *extra)
        assert res.returncode == 1, res.stdout + res.stderr
        assert "password = ********" in res.stdout
        doc = json.loads(report.read_text())
        assert "********" in doc["hosts"][0]["data"]["stdout"] and "********" in doc["hosts"][0]["data"]["stderr"]
        outputs.append(res.stdout + res.stderr + report.read_text() + junit.read_text())
    for i, text in enumerate(outputs):
        _assert_clean(text, {"secret var": secret}, f"run {i}")


# --------------------------------------------------------------------------------------------
# exception messages and tracebacks (in-process)
# --------------------------------------------------------------------------------------------

def test_connection_errors_carry_no_secret(sshd_factory, known_hosts_file, tmp_path, monkeypatch):
    from concurdeploy.exceptions import HostError
    from concurdeploy.executors.local import Job, run_host
    from concurdeploy.operations.commands import RunJob, run_command
    from concurdeploy.ssh.connection import Connection
    from concurdeploy.ssh.specs import connect_spec

    (srv,) = sshd_factory(1)
    kh = known_hosts_file([srv])
    passphrase = f"Pass-{secrets.token_hex(8)}-phrase"
    password = f"Pw-{secrets.token_hex(8)}-word"
    key_text = _encrypted_key(tmp_path, passphrase).read_text()
    srv.authorize(tmp_path / "id_enc")
    monkeypatch.setenv("CD_KEY", key_text)
    monkeypatch.setenv("CD_PASSWORD", password)
    values = {"passphrase": passphrase, "password": password, "key": _key_fragments(key_text)}
    base = {"host": "127.0.0.1", "port": srv.port, "known_hosts": kh, "connect_timeout": 5}

    cases = [
        ({"key_env": "CD_KEY", "passphrase_env": "CD_PASSPHRASE"}, f"Wrong-{secrets.token_hex(6)}"),
        ({"key_env": "CD_KEY"}, None),  # encrypted, no passphrase given
        ({"password_env": "CD_PASSWORD", "key_env": "CD_KEY", "passphrase_env": "CD_PASSPHRASE",
          "user": "nosuchuser"}, passphrase),  # key and password refused
    ]
    for hv, given in cases:
        if given is None:
            monkeypatch.delenv("CD_PASSPHRASE", raising=False)
        else:
            monkeypatch.setenv("CD_PASSPHRASE", given)
            values["given passphrase"] = given
        spec = connect_spec("h1", {**base, **hv})
        with pytest.raises(HostError) as info:
            Connection(spec).open()
        e = info.value
        text = "\n".join([str(e), repr(e), e.output or "", "".join(traceback.format_exception(e)),
                          repr(pickle.loads(pickle.dumps(e)).__dict__)])
        _assert_clean(text, values, f"the {type(e).__name__} of {sorted(hv)}")
        r = run_host(Job(spec, run_command, RunJob("true")))
        assert r.status.is_failure
        _assert_clean(repr(r), values, "the host result")

    # and the right passphrase works (so the cases above failed for the stated reason)
    monkeypatch.setenv("CD_PASSPHRASE", passphrase)
    ok = run_host(Job(connect_spec("h1", {**base, "key_env": "CD_KEY", "passphrase_env": "CD_PASSPHRASE"}),
                      run_command, RunJob("echo ok")))
    assert ok.status.value == "ok", ok


# --------------------------------------------------------------------------------------------
# everything at once (root: a real sudo user)
# --------------------------------------------------------------------------------------------

@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="creates a user and a sudoers drop-in: needs root")
def test_every_secret_everywhere_at_every_verbosity_with_failures(sudo_fleet, sudo_user, tmp_path):  # noqa: F811
    f, env = sudo_fleet
    sudo_pw = env[PW_ENV]
    passphrase = f"Pass-{secrets.token_hex(8)}-phrase"
    password = f"Pw-{secrets.token_hex(8)}-word"
    secret = f"Vault-{secrets.token_hex(8)}-secret"
    key_path = _encrypted_key(tmp_path, passphrase)
    key_text = key_path.read_text()
    home = Path(os.path.expanduser(f"~{USER}"))
    with open(home / ".ssh" / "authorized_keys", "a") as fh:
        fh.write(" ".join(Path(f"{key_path}.pub").read_text().split()[:2]) + "\n")
    values = {"private key": _key_fragments(key_text), "passphrase": passphrase, "password": password,
              "secret var": secret, "sudo password": sudo_pw}

    (f.project / "files" / "app.cfg.j2").write_text(TEMPLATE)

    def write(**group_vars):
        """The fleet's inventory without its key_file: h1 authenticates with the encrypted key
        from key_env only, h2 with a password only."""
        path = f.write_inventory(**group_vars)
        inv = yaml.safe_load(path.read_text())
        del inv["all"]["vars"]["key_file"]
        path.write_text(yaml.safe_dump(inv, sort_keys=False))

    f.names, f.servers = ["h1", "h2"], [f.servers[0], f.servers[0]]
    f.root("h2").joinpath("etc", "haproxy").mkdir(parents=True)
    # h2 offers a password; the server refuses passwords
    f.host_vars = {"h1": {"key_env": "CD_KEY", "passphrase_env": "CD_PASSPHRASE"},
                   "h2": {"password_env": "CD_PASSWORD"}}
    f.group_vars = {"user": USER, "become": True, "become_password_env": PW_ENV,
                    "db_password": secret, "secret_vars": ["db_password"]}
    files = [{"src": "files/haproxy/haproxy.cfg", "dest": "{{ root }}/etc/haproxy/haproxy.cfg"},
             {"src": "files/app.cfg.j2", "dest": APP, "mode": "0600"}]
    write(files=files)
    good = {**env, "CD_KEY": key_text, "CD_PASSPHRASE": passphrase, "CD_PASSWORD": password}
    report, junit = tmp_path / "report.json", tmp_path / "junit.xml"
    app = f.root("h1") / "etc" / "haproxy" / "app.cfg"
    seen: list[tuple[str, str]] = []

    def cli(*args, env=good, code=1):
        for p in (report, junit):
            if p.exists():
                p.unlink()
        res = _run_cli(f.project, *args, "--no-progress", "--report-json", str(report), "--junit", str(junit),
                       env=env)
        assert report.exists(), res.stdout + res.stderr
        text = res.stdout + res.stderr + report.read_text() + junit.read_text()
        seen.append((" ".join(args), text))
        assert res.returncode == code, res.stdout + res.stderr
        h2 = next(ln for ln in res.stdout.splitlines() if ln.startswith("h2 "))
        assert "AuthFailed" in h2 and "password_env CD_PASSWORD" in h2, h2  # h2 always fails
        return res

    res = cli("push", "haproxy", "--check", "--diff", "-vv")
    assert "+password = ********" in res.stdout and "would be created" in res.stdout
    res = cli("push", "haproxy", "-v")
    assert " changed " in next(ln for ln in res.stdout.splitlines() if ln.startswith("h1 "))
    assert app.read_text() == f"user = app\npassword = {secret}\n" and app.stat().st_uid == 0
    cli("push", "haproxy", "-vv")  # h1 ok
    res = cli("run", "haproxy", f"cat '{app}'; id -un", "--sudo", "-vv")
    assert "h1 | password = ********" in res.stdout and "h1 | root" in res.stdout
    res = cli("run", "haproxy", f"cat '{app}' >&2; exit 5", "--sudo", "--collect", "-vv")
    assert "password = ********" in res.stdout

    # failures: a validate echoing the rendered file, a reload echoing it, wrong credentials
    (f.project / "files" / "app.cfg.j2").write_text(TEMPLATE + "# v2\n")
    write(files=[files[0], {**files[1], "validate": "cat {tmp}; exit 3"}])
    res = cli("push", "haproxy", "-vv", "--diff")
    assert "ValidateFailed" in res.stdout and "password = ********" in res.stdout
    write(files=files, reload=f"grep -q v2 '{app}' && {{ cat '{app}'; exit 1; }}; true")
    res = cli("push", "haproxy", "-vv")
    assert "rolled back" in res.stdout and "password = ********" in res.stdout
    write(files=files)
    res = cli("push", "haproxy", "-vv", env={**good, "CD_PASSPHRASE": f"Wrong-{secrets.token_hex(6)}"})
    assert "CredentialsMissing" in res.stdout
    wrong_sudo = f"Wrong-{secrets.token_hex(6)}-sudo"
    values["wrong sudo password"] = wrong_sudo
    res = cli("push", "haproxy", "-vv", env={**good, PW_ENV: wrong_sudo})
    assert "AuthFailed: sudo" in res.stdout
    res = cli("run", "haproxy", "id -un", "--sudo", "-vv", env={**good, PW_ENV: wrong_sudo})
    assert "AuthFailed: sudo" in res.stdout

    assert len(seen) == 10
    for what, text in seen:
        _assert_clean(text, values, f"'{what}'")
