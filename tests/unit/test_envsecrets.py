"""``*_env`` secrets sealed in the controller's memory: a child started while they are scrubbed
has no such variable in its environment, yet reads the value with ``envsecrets.getenv``."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from concurdeploy.ssh import envsecrets

CHILD = ("import os; from concurdeploy.ssh import envsecrets; "
         "print('in-environ' if 'CD_TEST_SECRET' in os.environ else 'not-in-environ'); "
         "print(envsecrets.getenv('CD_TEST_SECRET'))")


@pytest.fixture(autouse=True)
def fresh_state(monkeypatch):
    """Each test seals into its own state (the module keeps the controller's in globals)."""
    monkeypatch.setattr(envsecrets, "_FD", [])
    monkeypatch.setattr(envsecrets, "_VALUES", {})
    monkeypatch.setenv(envsecrets.ENV_VAR, "")  # restored (to unset) after the test
    monkeypatch.delenv(envsecrets.ENV_VAR)
    yield
    for fd in envsecrets._FD:
        os.close(fd)


def test_env_names_walks_nested_vars():
    hvars = {"key_env": "A", "become_password_env": "B", "jump": [{"password_env": "C"}],
             "other": "x", "empty_env": ""}
    assert envsecrets.env_names(hvars) == {"A", "B", "C"}


def test_child_started_while_scrubbed_reads_the_value_but_has_no_variable(monkeypatch):
    value = f"Secret-{secrets.token_hex(8)}"
    monkeypatch.setenv("CD_TEST_SECRET", value)
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2]))
    envsecrets.seal({"CD_TEST_SECRET"})
    with envsecrets.scrubbed({"CD_TEST_SECRET"}):
        assert "CD_TEST_SECRET" not in os.environ
        child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
        environ = Path(f"/proc/{child.pid}/environ").read_bytes()
        out, _ = child.communicate(timeout=60)
    assert os.environ["CD_TEST_SECRET"] == value  # restored for the caller
    assert value.encode() not in environ
    assert out.split() == ["not-in-environ", value]


def test_a_variable_unset_since_an_earlier_seal_is_unset_for_workers(monkeypatch):
    monkeypatch.setenv("CD_TEST_GONE", "first-run")
    envsecrets.seal({"CD_TEST_GONE"})
    monkeypatch.delenv("CD_TEST_GONE")
    envsecrets.seal({"CD_TEST_GONE"})
    assert envsecrets.getenv("CD_TEST_GONE") is None
