"""An encrypted key with no passphrase_env is asked for on a terminal — and never without one."""

from __future__ import annotations

import os
import subprocess

import pytest

from concurdeploy.ssh.passphrases import is_encrypted

from ..ptyrun import run_on_terminal

pytestmark = pytest.mark.integration
PASSPHRASE = "correct horse battery"


@pytest.fixture
def encrypted_fleet(fleet, tmp_path):
    f = fleet(2)
    key = tmp_path / "enc_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", PASSPHRASE, "-f", str(key)], check=True)
    for server in f.servers:
        server.authorize(str(key))
    f.host_vars = {n: {"key_file": str(key)} for n in f.names}
    f.write_inventory()
    return f, str(key)


def _run_on_pty(f, answer: str, *args, timeout: float = 60) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONCURDEPLOY_PASSPHRASE_")}
    code, out, _typed = run_on_terminal(list(args), cwd=f.project, env=env, prompt=b"Passphrase for",
                                        answer=answer, timeout=timeout)
    return code, out


def test_key_files_are_recognised_as_encrypted_or_not(encrypted_fleet, client_keys):
    _, key = encrypted_fleet
    assert is_encrypted(key) and not is_encrypted(client_keys.ed25519)


def test_encrypted_key_is_asked_for_once_on_a_terminal(encrypted_fleet):
    f, key = encrypted_fleet
    code, out = _run_on_pty(f, PASSPHRASE, "push", "haproxy", "--no-progress")
    assert code == 0, out
    assert out.count("Passphrase for") == 1          # one key, asked once for both hosts
    assert PASSPHRASE not in out                      # not echoed, not printed
    assert all(f.dest(n).exists() for n in f.names)


def test_wrong_answer_fails_the_hosts_without_showing_it(encrypted_fleet):
    f, key = encrypted_fleet
    code, out = _run_on_pty(f, "wrong words", "push", "haproxy", "--no-progress")
    assert code == 1 and "CredentialsMissing" in out and "wrong words" not in out


def test_no_terminal_means_no_prompt_and_a_clear_error(encrypted_fleet):
    f, key = encrypted_fleet
    res = f.run("push", "haproxy")  # stdin is not a terminal
    assert res.returncode == 1
    assert "Passphrase for" not in res.stdout + res.stderr
    assert "passphrase_env" in res.stdout
