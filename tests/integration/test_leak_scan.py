"""Leak scan (issue #15 point 1): every output of runs at ``-vv`` searched for every secret.

Secrets in play, all at once: a ``secret_vars`` var written ``"{{ vault_db }}"`` (its rendered
value is the secret), a multi-line PEM secret in ``secret_vars``, an encrypted private key from
``key_env`` and its passphrase from ``passphrase_env``, and the sudo password of
``become_password_env``. A "secret" below is each value *and each of its lines* (4 characters
or more; the ``-----BEGIN/END …-----`` armour lines are not secret).

Outputs searched: the terminal (stdout and stderr) of ``push --check --diff``, ``push``, ``run``
(streamed, then ``--collect``) and ``hosts --vars``; the JSON report, JUnit XML and HTML
report of each run; concurdeploy writes no log file. And, while a ``run`` is blocked on the
remote host (it waits on a FIFO the test releases), ``/proc/<pid>/cmdline`` and
``/proc/<pid>/environ`` of the controller's descendants (fork server, resource tracker, workers)
and the controller's own ``cmdline``. The controller's own ``environ`` is where the operator
put ``key_env``/``passphrase_env``/``become_password_env``: those three variables are the
sources and are left out; any *other* secret there (the vault value, the PEM lines) is a hit.

Needs root: it logs in as a real user that becomes root with a sudo password (``sudo_fleet``).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import yaml

from tests.sshd import Beacon

from .test_become import PW_ENV, USER, sudo_fleet, sudo_user  # noqa: F401  (fixtures)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                       reason="creates a user and a sudoers drop-in: needs root"),
]

APP = "{{ root }}/etc/haproxy/app.cfg"
TEMPLATE = "user = app\npassword = {{ db_password }}\n{{ tls_key }}\n"


def _lines(value: str) -> list[str]:
    """The value and each of its lines of 4+ characters, armour lines left out."""
    return list(dict.fromkeys([value.strip()] + [ln.strip() for ln in value.splitlines()
                                                  if len(ln.strip()) >= 4 and not ln.startswith("-----")]))


def _encrypted_key(directory: Path, passphrase: str) -> Path:
    path = directory / "id_enc"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", "enc", "-f", str(path)],
                   check=True, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    return path


def _proc_texts(pid: int, sources: set[str]) -> dict[str, str]:
    """``where → text`` for the controller ``pid`` (cmdline; environ without the ``sources``
    variables) and every live descendant (cmdline and environ)."""
    out = {}

    def read(p: int, what: str) -> str | None:
        try:
            return Path(f"/proc/{p}/{what}").read_bytes().decode("utf-8", "replace")
        except OSError:  # gone meanwhile
            return None

    env = read(pid, "environ") or ""
    out["controller environ (sources left out)"] = "\0".join(
        e for e in env.split("\0") if e.split("=", 1)[0] not in sources)
    out["controller cmdline"] = read(pid, "cmdline") or ""
    children = psutil.Process(pid).children(recursive=True)
    # the fork server and the workers forked from it (same command line), and the tracker
    forked = [c for c in children if "forkserver" in (read(c.pid, "cmdline") or "")]
    assert len(forked) >= 2, f"no worker process among the controller's children: {children}"
    for child in children:
        for what in ("cmdline", "environ"):
            text = read(child.pid, what)
            if text is not None:
                out[f"{what} of descendant {child.pid} ({child.name()})"] = text
    return out


def test_leak_scan_every_output_every_secret(sudo_fleet, tmp_path, capsys):  # noqa: F811
    f, env = sudo_fleet
    vault = f"Vault-{secrets.token_hex(8)}-db"
    pem = "-----BEGIN PRIVATE KEY-----\n" + "\n".join(secrets.token_urlsafe(48) for _ in range(4)) \
        + "\n-----END PRIVATE KEY-----"
    passphrase = f"Pass-{secrets.token_hex(8)}-phrase"
    key_path = _encrypted_key(tmp_path, passphrase)
    key_text = key_path.read_text()
    home = Path(os.path.expanduser(f"~{USER}"))
    with open(home / ".ssh" / "authorized_keys", "a") as fh:
        fh.write(" ".join(Path(f"{key_path}.pub").read_text().split()[:2]) + "\n")
    sudo_pw = env[PW_ENV]
    values = {"vault value": vault, "PEM secret_var": pem, "key_env key": key_text,
              "passphrase": passphrase, "sudo password": sudo_pw}
    needles = [(name, s) for name, v in values.items() for s in _lines(v)]

    (f.project / "files" / "app.cfg.j2").write_text(TEMPLATE)
    f.group_vars = {"user": USER, "become": True, "become_password_env": PW_ENV,
                    "key_env": "CD_KEY", "passphrase_env": "CD_PASSPHRASE",
                    "vault_db": vault, "db_password": "{{ vault_db }}", "tls_key": pem,
                    "secret_vars": ["db_password", "tls_key"]}
    inv_path = f.write_inventory(files=[{"src": "files/app.cfg.j2", "dest": APP, "mode": "0600"}])
    inv = yaml.safe_load(inv_path.read_text())
    del inv["all"]["vars"]["key_file"]  # the key comes from key_env only
    inv_path.write_text(yaml.safe_dump(inv, sort_keys=False))
    run_env = {**os.environ, **env, "CD_KEY": key_text, "CD_PASSPHRASE": passphrase}
    app = f.root("h1") / "etc" / "haproxy" / "app.cfg"
    outputs: dict[str, str] = {}

    def cli(tag: str, *args: str, reports: bool = True) -> str:
        extra = [] if args[0] == "hosts" else ["--no-progress"]
        if reports:
            paths = {k: tmp_path / f"{tag}.{k}" for k in ("json", "xml", "html")}
            extra += ["--report-json", str(paths["json"]), "--junit", str(paths["xml"]),
                     "--report-html", str(paths["html"])]
        res = subprocess.run([sys.executable, "-m", "concurdeploy", *args, *extra],
                             cwd=f.project, capture_output=True, text=True, timeout=120, env=run_env)
        outputs[f"{tag} terminal"] = res.stdout + res.stderr
        if reports:
            for k, p in paths.items():
                outputs[f"{tag} {k} report"] = p.read_text()
        assert res.returncode == 0, res.stdout + res.stderr
        return res.stdout

    out = cli("check-diff", "push", "haproxy", "--check", "--diff", "-vv")
    assert "+password = ********" in out  # the diff was shown, masked
    cli("push", "push", "haproxy", "-vv")
    assert app.read_text() == f"user = app\npassword = {vault}\n{pem}\n"  # the host got the secrets
    out = cli("run-collect", "run", "haproxy", f"cat '{app}'", "--sudo", "--collect", "-vv")
    assert "password = ********" in out
    out = cli("hosts-vars", "hosts", "--vars", reports=False)
    assert "db_password" in out

    # a streamed run, blocked on the host while /proc is read
    paths = {k: tmp_path / f"run.{k}" for k in ("json", "xml", "html")}
    release = tmp_path / "release"
    os.mkfifo(release, 0o600)
    with Beacon(tmp_path / "beacon") as beacon:
        cmd = f"cat '{app}'; {beacon.command('reached')}; read x < '{release}'; echo done"
        proc = subprocess.Popen(
            [sys.executable, "-m", "concurdeploy", "run", "haproxy", cmd, "--sudo", "-vv", "--no-progress",
             "--report-json", str(paths["json"]), "--junit", str(paths["xml"]),
             "--report-html", str(paths["html"])],
            # worker processes (a run of one host would use the controller's threads): their
            # environments and command lines are what this scan reads
            cwd=f.project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**run_env, "CONCURDEPLOY_PROCESSES": "2"})
        try:
            beacon.wait(1, timeout=60, proc=proc)
            outputs.update(_proc_texts(proc.pid, {"CD_KEY", "CD_PASSPHRASE", PW_ENV}))
        finally:
            fd = os.open(release, os.O_RDWR)  # never blocks (Linux); the host's read gets the line
            try:
                os.write(fd, b"go\n")
                stdout, stderr = proc.communicate(timeout=120)
            finally:
                os.close(fd)
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=10)
    assert proc.returncode == 0, stdout + stderr
    assert "h1 | password = ********" in stdout and "h1 | done" in stdout
    outputs["run terminal"] = stdout + stderr
    for k, p in paths.items():
        outputs[f"run {k} report"] = p.read_text()

    hits = [f"{name} ({s[:6]}…) in {where}" for where, text in outputs.items() for name, s in needles
            if s in text]
    with capsys.disabled():
        print(f"\nleak scan: {len(outputs)} outputs × {len(needles)} secrets, {len(hits)} hits")
    assert hits == [], "\n".join(hits)
    assert len(outputs) >= 20
