"""``concurdeploy inventory --list`` through the real command (a subprocess in a throw-away
project with its own empty ``tasks.py``), compared with the real ``ansible-inventory --list``;
and the refusals of issue #12 as the operator sees them (exit 2, one paragraph, file:line)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.unit.test_inventory_listing import ansible_inventory

REPO = str(Path(__file__).resolve().parents[2])

INVENTORY = """\
all:
  vars:
    ansible_user: deploy
    domain: example
    ansible_host: "{{ inventory_hostname }}.{{ domain }}"
  children:
    web:
      vars: {ansible_group_priority: 5, color: web}
      hosts:
        web1: {ansible_ssh_port: 2222}
        web2:
    db:
      vars: {color: db}
      hosts:
        web1: {opts: {a: 1}}
        db1: {ansible_become: true, ansible_become_user: postgres}
    prod:
      children:
        db:
    empty:
"""


@pytest.fixture
def project(tmp_path):
    """A project folder with an empty tasks.py (no other tasks.py is found from here)."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "tasks.py").write_text("")
    return root


def concurdeploy(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("CONCURDEPLOY_INVENTORY", None)
    return subprocess.run([sys.executable, "-m", "concurdeploy", *args], cwd=project, capture_output=True,
                          text=True, timeout=120, env=env, check=False)


def inventory_file(project: Path, text: str, name: str = "hosts.yaml") -> Path:
    path = project / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_list_is_ansible_inventory_list(project):
    path = inventory_file(project, INVENTORY)
    done = concurdeploy(project, "inventory", "--list", "-i", str(path))
    assert done.returncode == 0, done.stderr
    theirs = ansible_inventory(path)
    assert json.loads(done.stdout) == json.loads(theirs)
    assert done.stdout == theirs                               # byte for byte
    web1 = json.loads(done.stdout)["_meta"]["hostvars"]["web1"]
    assert web1["ansible_host"] == "{{ inventory_hostname }}.{{ domain }}"   # as written
    assert web1["color"] == "db"        # db is deeper (all > prod > db): depth beats web's priority 5


def test_list_with_options_before_the_task_name(project):
    path = inventory_file(project, INVENTORY)
    before = concurdeploy(project, "-i", str(path), "inventory", "--list")
    after = concurdeploy(project, "inventory", "-i", str(path), "--list")
    assert before.returncode == after.returncode == 0, before.stderr + after.stderr
    assert before.stdout == after.stdout and before.stdout.startswith("{")


def test_core_list_still_lists_the_tasks(project):
    done = concurdeploy(project, "--list")
    assert done.returncode == 0 and "inventory" in done.stdout and not done.stdout.startswith("{")


def test_host_and_group_with_one_name_exit_2(project):
    path = inventory_file(project, """\
        all:
          children:
            db:
              hosts: {web1: }
            web:
              hosts:
                db:
        """)
    done = concurdeploy(project, "inventory", "--list", "-i", str(path))
    assert done.returncode == 2 and done.stdout == ""
    assert f"{path}:7:" in done.stderr and f"{path}:3" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_vault_value_exit_2_at_its_line(project):
    path = inventory_file(project, """\
        all:
          hosts:
            h1:
              ansible_password: !vault |
                $ANSIBLE_VAULT;1.1;AES256
                6231336539
        """)
    done = concurdeploy(project, "inventory", "--list", "-i", str(path))
    assert done.returncode == 2
    assert f"{path}:4:" in done.stderr and "password_env" in done.stderr and "ansible-vault" in done.stderr


def test_secret_vars_are_masked_key_files_are_not(project):
    path = inventory_file(project, """\
        all:
          hosts:
            h1: {motd: hello, secret_vars: [motd], api_token: t0k, ansible_ssh_private_key_file: /k/id}
        """)
    done = concurdeploy(project, "inventory", "--list", "-i", str(path))
    assert done.returncode == 0, done.stderr
    hv = json.loads(done.stdout)["_meta"]["hostvars"]["h1"]
    assert hv["motd"] == hv["api_token"] == "********" and hv["ansible_ssh_private_key_file"] == "/k/id"
    assert "hello" not in done.stdout and "t0k" not in done.stdout


def test_the_source_of_a_secret_var_is_masked_too(project):
    """``api_tok: "{{ lookup_val }}"`` with ``secret_vars: [api_tok]``: the var holding the
    secret (``lookup_val``) must not show it either (as ``hosts --vars`` masks it)."""
    path = inventory_file(project, """\
        all:
          hosts:
            h1: {lookup_val: s3cr3t-v4lue, api_tok: "{{ lookup_val }}", secret_vars: [api_tok]}
        """)
    done = concurdeploy(project, "inventory", "--list", "-i", str(path))
    assert done.returncode == 0, done.stderr
    hv = json.loads(done.stdout)["_meta"]["hostvars"]["h1"]
    assert hv["api_tok"] == hv["lookup_val"] == "********"
    assert "s3cr3t-v4lue" not in done.stdout


def test_list_and_graph_together_exit_2(project):
    path = inventory_file(project, INVENTORY)
    done = concurdeploy(project, "inventory", "--list", "--graph", "-i", str(path))
    assert done.returncode == 2 and "not both" in done.stderr


def test_list_of_an_inventory_script(project):
    path = project / "cloud.py"
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent("""\
        import json, sys
        assert sys.argv[1:] == ["--list"], sys.argv
        print(json.dumps({"web": {"hosts": ["w1"], "vars": {"ansible_user": "deploy"}},
                          "_meta": {"hostvars": {"w1": {"ansible_host": "192.0.2.7"}}}}))
        """))
    path.chmod(0o755)
    done = concurdeploy(project, "inventory", "--list", "-i", str(path))
    assert done.returncode == 0, done.stderr
    assert done.stdout == ansible_inventory(path)
