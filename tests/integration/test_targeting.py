"""Issue #12 end to end: the real ``concurdeploy`` command, real sshd hosts on loopback, and
then a look at the hosts.

- a host in two services gets, from ``push S``, S's files and S's reload only;
- an ambiguous declaration, a name or ``--limit`` that selects nothing: exit 2, one paragraph,
  nothing written on any host;
- the sandbox inventory beside a real one: exit 2 naming the file to remove, nothing written,
  no ``.sandbox/`` created; the sandbox alone still works (the quickstart).

Each test here fails on the code before issue #12 (there: the other service's files and
reload with exit 0; ``push HOST`` and ``push PATTERN`` accepted; the sandbox connection
applied to every host of every file, exit 0).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import HAPROXY_CFG, statuses

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
WEB_CFG = b"server {\n    listen 8080;\n}\n"


def haproxy_dest(f, name: str) -> Path:
    return f.root(name) / "etc" / "haproxy" / "haproxy.cfg"


def web_dest(f, name: str) -> Path:
    return f.root(name) / "etc" / "web" / "web.cfg"


def reload_log(f, name: str) -> str:
    path = f.root(name) / "reload.log"
    return path.read_text() if path.exists() else ""


def two_services(f, host_vars: dict | None = None, extra_groups: dict | None = None) -> Path:
    """Hosts of the fleet in two services, ``haproxy`` and ``web`` ("web" sorts last: in the
    merged vars its files and reload win for every host)."""
    (f.project / "files" / "web.cfg").write_bytes(WEB_CFG)
    hosts = {n: {"host": "127.0.0.1", "port": s.port, "root": str(f.root(n)), **(host_vars or {}).get(n, {})}
             for n, s in zip(f.names, f.servers)}
    groups = {
        "haproxy": {"hosts": hosts, "vars": {
            "files": [{"src": "files/haproxy/haproxy.cfg", "dest": "{{ root }}/etc/haproxy/haproxy.cfg"}],
            "reload": "echo haproxy >> '{{ root }}/reload.log'"}},
        "web": {"hosts": {n: None for n in f.names}, "vars": {
            "files": [{"src": "files/web.cfg", "dest": "{{ root }}/etc/web/web.cfg", "create_dirs": True}],
            "reload": "echo web >> '{{ root }}/reload.log'"}},
        **(extra_groups or {}),
    }
    inv = {"all": {"vars": {"key_file": f.key_file, "known_hosts": f.known_hosts,
                            "connect_timeout": 5, "command_timeout": 20},
                   "children": groups}}
    path = f.project / "inventories" / "hosts.yaml"
    path.write_text(yaml.safe_dump(inv, sort_keys=False))
    return path


def written(f) -> list[Path]:
    """Every file under the hosts' roots (the fixture makes only empty directories)."""
    return sorted(p for p in (f.project / "roots").rglob("*") if p.is_file())


def one_paragraph_exit_2(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr and res.stderr.startswith("concurdeploy: error: "), res.stderr
    assert "\n\n" not in res.stderr.strip()
    return res.stderr


# ---------------------------------------------------------------------------- 1. a service is its group's

def test_host_in_two_services_gets_only_the_pushed_services_files_and_reload(fleet):
    f = fleet(2)
    two_services(f)
    res = f.run("push", "haproxy")
    assert res.returncode == 0, res.stdout + res.stderr
    assert statuses(res.stdout) == {"h1": "changed", "h2": "changed"}
    for n in f.names:
        assert haproxy_dest(f, n).read_bytes() == HAPROXY_CFG
        assert not web_dest(f, n).parent.exists()          # web's files: not sent
        assert reload_log(f, n) == "haproxy\n"              # web's reload: not run

    res = f.run("push", "web")
    assert res.returncode == 0, res.stdout + res.stderr
    for n in f.names:
        assert web_dest(f, n).read_bytes() == WEB_CFG
        assert haproxy_dest(f, n).read_bytes() == HAPROXY_CFG
        assert reload_log(f, n) == "haproxy\nweb\n"

    res = f.run("push", "haproxy")                          # nothing changed: no reload
    assert res.returncode == 0 and statuses(res.stdout) == {"h1": "ok", "h2": "ok"}
    assert all(reload_log(f, n) == "haproxy\nweb\n" for n in f.names)
    assert f.temp_files() == []


def test_scoped_host_override_applies_to_its_service_only(fleet):
    f = fleet(2)
    other = "{{ root }}/etc/haproxy/h1-only.cfg"
    two_services(f, host_vars={"h1": {"services": {"haproxy": {
        "files": [{"src": "files/haproxy/haproxy.cfg", "dest": other}]}}}})
    res = f.run("push", "haproxy")
    assert res.returncode == 0, res.stdout + res.stderr
    assert (f.root("h1") / "etc" / "haproxy" / "h1-only.cfg").read_bytes() == HAPROXY_CFG
    assert not haproxy_dest(f, "h1").exists() and haproxy_dest(f, "h2").read_bytes() == HAPROXY_CFG
    res = f.run("push", "web")
    assert res.returncode == 0, res.stdout + res.stderr
    assert web_dest(f, "h1").read_bytes() == WEB_CFG        # h1's haproxy override is haproxy's only
    assert reload_log(f, "h1") == "haproxy\nweb\n"


def test_plain_host_files_on_a_host_in_two_services_is_exit_2_and_nothing_written(fleet):
    f = fleet(2)
    two_services(f, host_vars={"h1": {"files": [{"src": "files/web.cfg", "dest": "{{ root }}/x.cfg"}]}})
    for service in ("haproxy", "web"):
        err = one_paragraph_exit_2(f.run("push", service))
        assert "inventories/hosts.yaml:" in err and "'files'" in err and "two services" in err
        assert "haproxy" in err and "web" in err and f"services: {{{service}: {{files: ...}}}}" in err
    assert written(f) == []


# ---------------------------------------------------------------------------- 3. names selecting nothing

@pytest.mark.parametrize("args, needle", [
    (("push", "nope"), "matches no host or group"),
    (("push", "haproxy", "--limit", "nope"), "--limit 'nope' selects nothing"),
    (("push", "haproxy", "--limit", "db1"), "leaves no host of 'haproxy'"),
    (("push", "h1"), "'h1' is a host"),
    (("push", "haproxy:!h1"), "not the host pattern"),
    (("push", "db"), "declares no files"),
    (("run", "haproxy:&db", "true"), "matches no host"),
    (("run", "haproxy", "true", "--limit", "db*"), "leaves no host of 'haproxy'"),
    (("put", "nope*", "files/web.cfg", "/tmp/x"), "matches no host"),
])
def test_a_target_that_selects_nothing_or_is_no_service_is_exit_2(fleet, args, needle):
    f = fleet(2)
    two_services(f, extra_groups={"db": {"hosts": {"db1": {"host": "db1.example"}}}})
    err = one_paragraph_exit_2(f.run(*args))
    assert needle in err
    assert written(f) == []


# ---------------------------------------------------------------------------- 4. the sandbox

def _run(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "concurdeploy", *args, "--no-progress"], cwd=project,
                          capture_output=True, text=True, timeout=120, env=dict(os.environ),
                          stdin=subprocess.DEVNULL)


def sandbox_project(tmp_path: Path) -> Path:
    project = tmp_path / "sandboxed"
    (project / "inventories").mkdir(parents=True)
    shutil.copytree(REPO / "files", project / "files")
    shutil.copy(REPO / "inventories" / "sandbox.yaml", project / "inventories" / "sandbox.yaml")
    return project


def test_sandbox_alone_still_pushes_locally(tmp_path):
    project = sandbox_project(tmp_path)
    res = _run(project, "push", "haproxy")
    assert res.returncode == 0, res.stdout + res.stderr
    for n in ("lb1", "lb2", "lb3", "lb4"):
        cfg = project / ".sandbox" / n / "etc" / "haproxy" / "haproxy.cfg"
        assert cfg.read_bytes() == (REPO / "files" / "haproxy" / "haproxy.cfg").read_bytes()


@pytest.mark.parametrize("service", ["web", "haproxy"])
def test_sandbox_beside_a_real_inventory_is_exit_2_nothing_written_no_sandbox_started(tmp_path, service):
    project = sandbox_project(tmp_path)
    out = project / "out"
    (project / "inventories" / "production.yaml").write_text(yaml.safe_dump({"web": {
        "hosts": {"web1.example": {"host": "web1.example"}, "web2.example": None},
        "vars": {"files": [{"src": "files/haproxy/haproxy.cfg", "create_dirs": True,
                            "dest": f"{out}/{{{{ inventory_hostname }}}}/haproxy.cfg"}]}}}))
    err = one_paragraph_exit_2(_run(project, "push", service))
    assert "remove inventories/sandbox.yaml" in err and "-i inventories/production.yaml" in err
    assert not (project / ".sandbox").exists() and not out.exists()


def test_sandbox_beside_a_loopback_sshd_inventory_never_stands_in_for_it(fleet):
    f = fleet(1)
    inv = {"web": {"hosts": {"h1": {"host": "127.0.0.1", "port": f.servers[0].port, "root": str(f.root("h1"))}},
                   "vars": {"key_file": f.key_file, "known_hosts": f.known_hosts,
                            "files": [{"src": "files/haproxy/haproxy.cfg",
                                       "dest": "{{ root }}/etc/haproxy/haproxy.cfg"}],
                            "reload": "echo reloaded >> '{{ root }}/reload.log'"}}}
    (f.project / "inventories" / "hosts.yaml").write_text(yaml.safe_dump(inv))
    shutil.copy(REPO / "inventories" / "sandbox.yaml", f.project / "inventories" / "sandbox.yaml")
    err = one_paragraph_exit_2(f.run("push", "web"))
    assert "sandbox.yaml" in err and "h1" in err and "another file" in err
    assert written(f) == [] and not (f.project / ".sandbox").exists()
    os.remove(f.project / "inventories" / "sandbox.yaml")  # what the message says to do
    res = f.run("push", "web")
    assert res.returncode == 0, res.stdout + res.stderr
    assert haproxy_dest(f, "h1").read_bytes() == HAPROXY_CFG and reload_log(f, "h1") == "reloaded\n"


def test_a_templated_declaration_renders_with_its_own_groups_vars(fleet):
    """A reviewer's case: both services template ``src``/``dest`` from a var that both groups
    set (``conf_src``); for the host in both, the merged value is the group that sorts last.
    ``push haproxy`` must render with haproxy's value: haproxy's bytes on the host."""
    f = fleet(2)
    (f.project / "files" / "web.cfg").write_bytes(WEB_CFG)
    hosts = {n: {"host": "127.0.0.1", "port": s.port, "root": str(f.root(n))} for n, s in zip(f.names, f.servers)}
    entry = {"src": "{{ conf_src }}", "dest": "{{ root }}/etc/{{ conf_name }}", "create_dirs": True}
    inv = {"all": {"vars": {"key_file": f.key_file, "known_hosts": f.known_hosts, "connect_timeout": 5},
                   "children": {
                       "haproxy": {"hosts": hosts, "vars": {"conf_src": "files/haproxy/haproxy.cfg",
                                                           "conf_name": "haproxy.conf", "files": [entry]}},
                       "web": {"hosts": {"h2": None}, "vars": {"conf_src": "files/web.cfg",
                                                              "conf_name": "web.conf", "files": [entry]}}}}}
    (f.project / "inventories" / "hosts.yaml").write_text(yaml.safe_dump(inv, sort_keys=False))
    res = f.run("push", "haproxy", "--no-progress")
    assert res.returncode == 0, res.stdout + res.stderr
    for name in f.names:
        assert (f.root(name) / "etc" / "haproxy.conf").read_bytes() == HAPROXY_CFG
        assert not (f.root(name) / "etc" / "web.conf").exists()
    res = f.run("push", "web", "--no-progress")
    assert res.returncode == 0, res.stdout + res.stderr
    assert (f.root("h2") / "etc" / "web.conf").read_bytes() == WEB_CFG


def test_sandbox_hosts_whose_connection_another_file_overrides_are_refused(tmp_path):
    """A reviewer's case: ``inventories/group_vars/all.yml`` with ``ansible_connection: ssh``
    beside ``sandbox.yaml`` turned the sandbox hosts into SSH targets named lb1..lb4."""
    project = tmp_path / "project"
    (project / "inventories" / "group_vars").mkdir(parents=True)
    shutil.copytree(REPO / "files", project / "files")
    shutil.copy(REPO / "inventories" / "sandbox.yaml", project / "inventories" / "sandbox.yaml")
    (project / "inventories" / "group_vars" / "all.yml").write_text("ansible_connection: ssh\n")
    (project / "tasks.py").write_text("")
    res = subprocess.run([sys.executable, "-m", "concurdeploy", "push", "haproxy", "--check"], cwd=project,
                         capture_output=True, text=True, timeout=120)
    err = one_paragraph_exit_2(res)
    assert "sandbox.yaml" in err and "overridden for host lb1" in err and "group_vars" in err
    assert not (project / ".sandbox").exists()
