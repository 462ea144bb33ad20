"""A throw-away concurdeploy project wired to real SSH servers on loopback.

``fleet(n)`` starts ``n`` OpenSSH ``sshd`` processes (one per host, so one can be stopped
alone), writes a project (``files/haproxy/haproxy.cfg``, ``inventories/hosts.yaml``,
``known_hosts``) where host ``hN`` connects to its own sshd and receives its files under
its own folder ``roots/hN/``, and runs the real ``concurdeploy`` command in it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

HAPROXY_CFG = b"global\n    maxconn 2000\n\nfrontend web\n    bind :80\n    default_backend app\n"


def statuses(out: str) -> dict:
    """Map host -> status from the plain recap block (``RECAP …`` then ``  host  status``;
    check mode: ``would change``)."""
    lines = out.split("RECAP", 1)[1].splitlines()[1:]
    return {ln.split()[0]: "would change" if ln.split()[1:3] == ["would", "change"] else ln.split()[1]
            for ln in lines
            if ln.strip() and not ln.strip().startswith(("batch", "stopped", "JSON report", "JUnit report"))}


@dataclass
class Fleet:
    project: Path
    servers: list
    names: list
    key_file: str
    known_hosts: str
    group_vars: dict = field(default_factory=dict)
    host_vars: dict = field(default_factory=dict)

    def root(self, name: str) -> Path:
        return self.project / "roots" / name

    def dest(self, name: str) -> Path:
        return self.root(name) / "etc" / "haproxy" / "haproxy.cfg"

    def write_inventory(self, **group_vars) -> Path:
        """(Re)write ``inventories/hosts.yaml``; ``group_vars`` replace the haproxy group's vars."""
        gv = {
            "files": [{"src": "files/haproxy/haproxy.cfg",
                       "dest": "{{ root }}/etc/haproxy/haproxy.cfg"}],
            "reload": "echo reloaded >> '{{ root }}/reload.log'",
        }
        gv.update(self.group_vars)
        gv.update(group_vars)
        hosts = {}
        for name, srv in zip(self.names, self.servers):
            hosts[name] = {"host": "127.0.0.1", "port": srv.port, "root": str(self.root(name)),
                           **self.host_vars.get(name, {})}
        inv = {"all": {"vars": {"key_file": self.key_file, "known_hosts": self.known_hosts,
                                "connect_timeout": 5, "command_timeout": 20},
                       "children": {"haproxy": {"hosts": hosts, "vars": gv}}}}
        path = self.project / "inventories" / "hosts.yaml"
        path.write_text(yaml.safe_dump(inv, sort_keys=False))
        return path

    def run(self, *args: str, timeout: float = 120, env: dict | None = None,
            stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess:
        """Run ``concurdeploy ARGS`` in the project; returns the completed process (text)."""
        full_env = {**os.environ, **(env or {})}
        return subprocess.run([sys.executable, "-m", "concurdeploy", *args], cwd=self.project,
                              capture_output=True, text=True, timeout=timeout, env=full_env,
                              stdin=stdin)

    def temp_files(self) -> list[Path]:
        """Every concurdeploy temporary upload left anywhere under ``roots/`` (backups excluded)."""
        return [p for p in (self.project / "roots").rglob("*")
                if ".concurdeploy-" in p.name and p.name.startswith(".") and not p.name.endswith(".bak")
                and not p.name.startswith(".concurdeploy-reload-pending.")]


@pytest.fixture
def fleet(sshd_factory, client_keys, known_hosts_file, tmp_path):
    """``make(n=8, make_dirs=True, extra_config="") -> Fleet``: n real sshd hosts (``extra_config``
    appended to each sshd_config), a project, an inventory, directories ready."""

    def make(n: int = 8, make_dirs: bool = True, extra_config: str = "") -> Fleet:
        servers = sshd_factory(n, extra_config=extra_config)
        project = tmp_path / "project"
        (project / "files" / "haproxy").mkdir(parents=True)
        (project / "inventories").mkdir()
        (project / "files" / "haproxy" / "haproxy.cfg").write_bytes(HAPROXY_CFG)
        names = [f"h{i + 1}" for i in range(n)]
        kh = known_hosts_file(servers, str(project / "known_hosts"))
        f = Fleet(project, servers, names, client_keys.ed25519, kh)
        if make_dirs:
            for name in names:
                (f.root(name) / "etc" / "haproxy").mkdir(parents=True)
        f.write_inventory()
        return f

    return make
