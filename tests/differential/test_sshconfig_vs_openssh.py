"""concurdeploy's ssh_config reader (:mod:`concurdeploy.ssh.openssh_config`) must answer as
``ssh -F CONFIG -G HOST`` does, for every (config, host) pair of the corpus
(:mod:`tests.differential.sshconfig_corpus`), on the keywords concurdeploy honours:
HostName, Port, User, IdentityFile, ProxyJump, ProxyCommand, ConnectTimeout,
IdentitiesOnly, IdentityAgent. A config ssh refuses must be refused too.

Homes: ``ssh`` takes ``Include``'s ``~``/relative paths from ``$HOME`` (glob) but ``~`` and
``%d`` in IdentityAgent from the passwd entry; the reader takes one ``home`` for each, so
the test passes the test home for the lookup and the passwd home for the expansion.
``ssh`` runs with ``HOME`` = a fresh test home, ``SHELL=/bin/sh`` (``Match exec``) and a
minimal environment; ``-F`` means no other config file is read.

Run: ``python3 -m pytest -q -p no:cacheprovider tests/differential/test_sshconfig_vs_openssh.py``
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

import pytest

from concurdeploy.exceptions import InventoryError
from concurdeploy.ssh.openssh_config import expand, lookup
from concurdeploy.ssh.sshconfig import parse_hop
from tests.differential.sshconfig_corpus import Case, all_cases, generated_cases, handwritten_cases

pytestmark = pytest.mark.differential

CASES = all_cases()
PASSWD = pwd.getpwuid(os.getuid())
DEFAULT_IDS = ["~/.ssh/id_rsa", "~/.ssh/id_ecdsa", "~/.ssh/id_ecdsa_sk", "~/.ssh/id_ed25519",
               "~/.ssh/id_ed25519_sk", "~/.ssh/id_xmss", "~/.ssh/id_dsa"]
README = Path(__file__).resolve().parents[2] / "README.md"


def _hops(text):
    if text is None or text == "none":
        return None
    return [parse_hop(h) for h in text.split("#", 1)[0].strip().split(",")]


def materialise(case: Case, root: Path) -> tuple[str, str, str]:
    """Write the case under ``root``: ``(config path, home, tmp)``."""
    home, tmp = root / "home", root / "tmp"
    (home / ".ssh").mkdir(parents=True)
    tmp.mkdir()
    fill = lambda text: text.replace("{home}", str(home)).replace("{tmp}", str(tmp))  # noqa: E731
    for rel, text in case.files.items():
        path = home / ".ssh" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(fill(text))
        path.chmod(0o644)
    for flag in case.flags:
        (tmp / flag).write_text("")
    config = root / "config"
    config.write_text(fill(case.config))
    return str(config), str(home), str(tmp)


def ssh_side(case: Case, config: str, home: str, host: str):
    """``ssh -G``'s answer, normalised; or ``("refused", last stderr line)``."""
    argv = ["ssh", "-F", config, "-G"]
    argv += ["-l", case.user] if case.user else []
    argv += ["-p", str(case.port)] if case.port else []
    env = {"HOME": home, "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SHELL": "/bin/sh",
           "USER": PASSWD.pw_name, "LOGNAME": PASSWD.pw_name}
    proc = subprocess.run(argv + [host], env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=30)
    if proc.returncode != 0:
        return ("refused", (proc.stderr.strip().splitlines() or [""])[-1])
    out: dict = {"identityfile": []}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition(" ")
        key = key.lower()
        if key == "identityfile":
            out["identityfile"].append(value)
        else:
            out.setdefault(key, value)
    timeout = out.get("connecttimeout", "none")
    return {"hostname": out["hostname"], "port": int(out["port"]), "user": out["user"],
            "identityfile": out["identityfile"], "proxyjump": _hops(out.get("proxyjump")),
            "proxycommand": out.get("proxycommand"),
            "connecttimeout": None if timeout == "none" else int(timeout),
            "identitiesonly": out["identitiesonly"], "identityagent": out.get("identityagent")}


def our_side(case: Case, config: str, home: str, host: str):
    """The reader's answer in the same shape."""
    try:
        found = lookup(config, host, home=home, user=case.user, port=case.port)
        o = found.options
        agent = o.get("identityagent")
        if agent is not None and agent not in ("none", "SSH_AUTH_SOCK") and not (
                agent.startswith("$") and not agent.startswith("${")):
            agent = expand(agent, found, home=PASSWD.pw_dir, keyword="IdentityAgent")
        command = o.get("proxycommand")
        return {"hostname": found.host, "port": o.get("port", 22), "user": o.get("user", PASSWD.pw_name),
                "identityfile": o.get("identityfile") or DEFAULT_IDS, "proxyjump": _hops(o.get("proxyjump")),
                "proxycommand": None if command == "none" else command,
                "connecttimeout": o.get("connecttimeout"), "identitiesonly": o.get("identitiesonly", "no"),
                "identityagent": agent}
    except InventoryError as e:
        return ("refused", str(e))


def run_corpus(cases, root: Path) -> list[tuple]:
    """``[(case, host, ours, theirs, agree)]`` for every pair."""
    rows = []
    for i, case in enumerate(cases):
        config, home, _ = materialise(case, root / f"{i:03d}")
        for host in case.hosts:
            theirs = ssh_side(case, config, home, host)
            ours = our_side(case, config, home, host)
            both_refused = isinstance(ours, tuple) and isinstance(theirs, tuple)
            rows.append((case, host, ours, theirs, both_refused or ours == theirs))
    return rows


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> list[tuple]:
    if shutil.which("ssh") is None:
        pytest.skip("the OpenSSH client (ssh) is not installed")
    return run_corpus(CASES, tmp_path_factory.mktemp("sshconfig-corpus"))


def summary(rows) -> str:
    configs = len({id(r[0]) for r in rows})
    agree = sum(1 for r in rows if r[4])
    refused = sum(1 for r in rows if r[4] and isinstance(r[3], tuple))
    return (f"corpus: {configs} ssh_config files x host names = {len(rows)} lookups, "
            f"agreement with ssh -G: {agree}/{len(rows)} ({refused} refused by both)")


def test_every_lookup_agrees_with_ssh_G(outcomes, capsys) -> None:
    line = summary(outcomes)
    with capsys.disabled():
        print("\n" + line)
    bad = [r for r in outcomes if not r[4]]
    detail = []
    for case, host, ours, theirs, _ in bad[:15]:
        if isinstance(ours, dict) and isinstance(theirs, dict):
            diff = {k: (ours[k], theirs[k]) for k in ours if ours[k] != theirs[k]}
        else:
            diff = {"ours": ours, "ssh": theirs}
        detail.append(f"{case.name} {host}: {diff}\n--- config:\n{case.config}")
    assert not bad, line + "\n" + "\n".join(detail)


def test_the_figure_is_in_the_readme(outcomes) -> None:
    assert summary(outcomes) in README.read_text(encoding="utf-8")


def test_corpus_is_wide() -> None:
    assert len(CASES) >= 150 and len(handwritten_cases()) >= 50
    assert len({c.name for c in CASES}) == len(CASES)
    text = "\n".join(c.config + "".join(c.files.values()) for c in generated_cases())
    for piece in ("Include", "Match", "exec", "final", "ProxyJump", "ProxyCommand", "IdentityAgent",
                  "IdentitiesOnly", "ConnectTimeout", "%h", "# note", "="):
        assert piece.lower() in text.lower(), piece
