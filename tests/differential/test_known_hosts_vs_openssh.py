"""known_hosts decisions of concurdeploy vs OpenSSH's own (issue #15.2), on a corpus of files ×
host/port spellings (``known_hosts_corpus.py``).

For every case, three references:

- ``ssh-keygen -F NAME -f FILE``: which lines match the name (line numbers), against
  :func:`concurdeploy.ssh.knownhosts.matching_lines`.
- a real ``ssh -o StrictHostKeyChecking=yes`` to one loopback sshd holding ed25519, ecdsa and
  rsa host keys, the key type forced with ``HostKeyAlgorithms`` and the spelling given as
  ``HostKeyAlias`` (OpenSSH lower-cases it and looks it up verbatim; the TCP connection goes
  to 127.0.0.1 only): its verdict (accepted / unknown / changed / revoked) against
  :func:`concurdeploy.ssh.hostkeys.verify` ``strict``. The client offers no user
  authentication (``PreferredAuthentications=none``): the host key verdict is final before
  authentication starts, so "accepted" is ssh going on to ``Permission denied``; a full login
  costs ~0.14 s of sshd CPU per run (the login shell's start-up), too much for every run.
  Each case OpenSSH accepts this way is then run once more with a real login and ``true``,
  which must exit 0.
- the same with ``StrictHostKeyChecking=accept-new`` on a copy of the file, against ``verify``
  ``accept-new`` on another copy: accepted / recorded / changed / revoked. When both record,
  each recorded file is checked by the other side: ``ssh`` strict must accept the file we
  wrote, and we must accept the file ``ssh`` wrote.

One deliberate difference, documented in the README: a host that only ``@cert-authority``
lines vouch for, offering a plain key. OpenSSH's accept-new records the plain key; we refuse
(paramiko cannot check host certificates, and recording the plain key would put it beside the
CA for good). Those cases are counted as ``refused on purpose``, and each must be one where
OpenSSH's strict verdict is ``unknown`` and a ``@cert-authority`` line matches.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paramiko
import pytest

from concurdeploy.exceptions import HostKeyMismatch, HostKeyUnknown
from concurdeploy.ssh import hostkeys, knownhosts
from tests.differential.known_hosts_corpus import KEY_TYPES, Case, all_cases, render
from tests.sshd import find_ssh_keygen, login_user

pytestmark = [pytest.mark.differential, pytest.mark.timeout(300)]

_THREADS = 12


@pytest.fixture
def server(sshd_factory, client_keys, tmp_path):
    """(sshd, server keys, other keys): one sshd with an ed25519, an ecdsa and an rsa host key."""
    if shutil.which("ssh") is None or find_ssh_keygen() is None:  # a failure on CI (tests/conftest.py)
        pytest.skip("openssh-client is not installed: apt-get install -y openssh-client")
    keygen = find_ssh_keygen()
    extra = []
    for kt, bits in (("ecdsa", "256"), ("rsa", "2048")):
        path = tmp_path / f"host_{kt}"
        subprocess.run([keygen, "-q", "-t", kt, "-b", bits, "-N", "", "-f", str(path)],
                       check=True, capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
        extra.append(f"HostKey {path}")
    (srv,) = sshd_factory(extra_config="\n".join(extra))
    server_keys = {"ed25519": srv.host_public_key_line}
    for kt in ("ecdsa", "rsa"):
        server_keys[kt] = " ".join((tmp_path / f"host_{kt}.pub").read_text().split()[:2])
    other = {kt: client_keys.public_line(getattr(client_keys, field))
             for kt, field in (("ed25519", "other"), ("ecdsa", "ecdsa"), ("rsa", "rsa"))}
    return srv, server_keys, other


def _pkey(line: str) -> paramiko.PKey:
    kt, b64 = line.split()[:2]
    return paramiko.PKey.from_type_string(kt, base64.b64decode(b64))


def _ssh(srv, case: Case, path: Path, policy: str, login_key: str | None = None) -> tuple[str, str]:
    """OpenSSH's verdict for ``case`` with known_hosts ``path`` and ``policy`` (yes|accept-new).

    :param login_key: log in with this key and run ``true`` (verdict ``accepted`` on exit 0);
        None: offer no user authentication (``accepted`` = ``Permission denied`` after kex).
    """
    auth = ["-o", "PreferredAuthentications=none"] if login_key is None else \
        ["-o", "IdentitiesOnly=yes", "-i", login_key]
    cmd = [shutil.which("ssh"), "-F", "/dev/null", "-o", f"StrictHostKeyChecking={policy}",
           "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={path}",
           "-o", "GlobalKnownHostsFile=/dev/null", "-o", f"HostKeyAlgorithms={KEY_TYPES[case.key_type][0]}",
           "-o", f"HostKeyAlias={case.alias}", "-o", "CheckHostIP=no", "-o", "UpdateHostKeys=no",
           "-o", "KexAlgorithms=curve25519-sha256", "-o", "ConnectTimeout=20",
           *auth, "-l", login_user(),
           "-p", str(srv.port), "127.0.0.1", "true"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL)
    err = proc.stderr
    if "REVOKED HOST KEY" in err:
        return "revoked", err
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in err:
        return "changed", err
    if "host key is known for" in err:
        return "unknown", err
    if "Permission denied" in err and login_key is None:  # host key accepted; no user auth offered
        return ("recorded" if "Permanently added" in err else "accepted"), err
    if proc.returncode == 0 and login_key is not None:
        return ("recorded" if "Permanently added" in err else "accepted"), err
    return f"error rc={proc.returncode}", err


def _ours(path: Path, policy: str, case: Case, key: paramiko.PKey) -> str:
    try:
        note = hostkeys.verify(str(path), policy, case.host, case.port, key)
    except HostKeyMismatch as e:
        return "revoked" if "marks @revoked" in str(e) else "changed"
    except HostKeyUnknown as e:
        return "refused-ca" if policy == "accept-new" and "@cert-authority" in str(e) else "unknown"
    return "recorded" if note else "accepted"


#: Key type names OpenSSH 9.x knows (``sshkey_type_from_name``: full names, and the short names
#: of plain keys compared case-insensitively). ``ssh-keygen -F`` lists a line whose host field
#: matches only when its type token is one of these and something follows it (it does not
#: parse the key itself).
_OPENSSH_TYPE_NAMES = {
    "ssh-ed25519", "ssh-rsa", "ssh-dss", "rsa-sha2-256", "rsa-sha2-512", "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "sk-ecdsa-sha2-nistp256@openssh.com",
    "sk-ssh-ed25519@openssh.com", "ssh-xmss@openssh.com",
}
_OPENSSH_SHORT_NAMES = {"ed25519", "rsa", "dsa", "ecdsa", "ecdsa-sk", "ed25519-sk", "xmss"}


def _listed_by_keygen(line: knownhosts.Line) -> bool:
    fields = line.rest.split()
    if len(fields) < 2:
        return False
    token = fields[0]
    if token.endswith("-cert-v01@openssh.com"):
        return True
    return token in _OPENSSH_TYPE_NAMES or token.lower() in _OPENSSH_SHORT_NAMES


def _keygen_lines(case: Case, path: Path) -> set:
    """Line numbers ``ssh-keygen -F`` finds for the name ssh looks up (lower case: ssh lowers
    the name, ``ssh-keygen -F`` does not, so a hashed line would differ on ``WEB1``)."""
    out = subprocess.run([find_ssh_keygen(), "-F", case.lookup, "-f", str(path)],
                         capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL).stdout
    return {int(line.split("found: line ")[1].split()[0]) for line in out.splitlines()
            if line.startswith("# Host ") and "found: line " in line}


def _run_case(srv, login_key: str, server_keys: dict, other: dict, case: Case, d: Path) -> dict:
    """Every comparison of one case; returns a dict of ours/theirs per check."""
    d.mkdir()
    text = render(case, server_keys, other)
    key = _pkey(server_keys[case.key_type])
    strict, an_theirs, an_ours = d / "strict", d / "an_openssh", d / "an_ours"
    for p in (strict, an_theirs, an_ours):
        p.write_text(text, encoding="utf-8", newline="")
    res = {"case": case, "text": text}
    lines = knownhosts.parse_text(text, str(strict))
    res["lines"] = ({ln.lineno for ln in lines
                     if knownhosts.host_matches(ln, case.lookup) and _listed_by_keygen(ln)},
                    _keygen_lines(case, strict))
    res["strict"] = (_ours(strict, "strict", case, key), *_ssh(srv, case, strict, "yes"))
    if res["strict"][1] == "accepted":  # and the whole connection works: log in, run true
        res["login"] = _ssh(srv, case, strict, "yes", login_key=login_key)[0]
    theirs, err = _ssh(srv, case, an_theirs, "accept-new")
    res["accept-new"] = (_ours(an_ours, "accept-new", case, key), theirs, err)
    res["ca"] = any(ln.marker == knownhosts.MARKER_CA for ln, _, _ in
                    knownhosts.matching_lines(lines, case.lookup))
    if res["accept-new"][0] == "recorded":  # OpenSSH must accept the file we wrote
        res["ours-file"] = _ssh(srv, case, an_ours, "yes")[0]
    if theirs == "recorded":  # we must accept the file OpenSSH wrote
        res["their-file"] = _ours(an_theirs, "strict", case, key)
    return res


def _problems(res: dict) -> list[str]:
    out = []
    ours, theirs = res["lines"]
    if ours != theirs:
        out.append(f"matching lines: ours {sorted(ours)}, ssh-keygen -F {sorted(theirs)}")
    o, t, err = res["strict"]
    if o != t:
        out.append(f"strict: ours {o}, ssh {t}: {err.strip()[-300:]}")
    o, t, err = res["accept-new"]
    on_purpose = o == "refused-ca" and t == "recorded" and res["strict"][1] == "unknown" and res["ca"]
    if o != t and not on_purpose:
        out.append(f"accept-new: ours {o}, ssh {t}: {err.strip()[-300:]}")
    if res.get("login", "accepted") != "accepted":
        out.append(f"ssh strict with a login and 'true': {res['login']}")
    if res.get("ours-file", "accepted") != "accepted":
        out.append(f"ssh strict on the file we recorded: {res['ours-file']}")
    if res.get("their-file", "accepted") != "accepted":
        out.append(f"ours strict on the file ssh recorded: {res['their-file']}")
    return out


def test_known_hosts_agree_with_openssh(server, client_keys, tmp_path, monkeypatch, capsys):
    """Every case of the corpus: the same matching lines as ``ssh-keygen -F`` and the same
    verdict as a real ``ssh`` under strict and accept-new."""
    srv, server_keys, other = server
    monkeypatch.setattr(hostkeys, "SYSTEM_KNOWN_HOSTS", str(tmp_path / "no_system_known_hosts"))
    cases = all_cases()
    assert len({c.name for c in cases}) == len(cases)
    with ThreadPoolExecutor(_THREADS) as pool:
        results = list(pool.map(
            lambda c: _run_case(srv, client_keys.ed25519, server_keys, other, c, tmp_path / c.name),
            cases))
    failures = []
    for res in results:
        for problem in _problems(res):
            failures.append(f"{res['case'].name} ({res['case'].alias}, {res['case'].key_type}): "
                            f"{problem}\n    file: {res['text']!r}")
    on_purpose = sum(r["accept-new"][0] == "refused-ca" for r in results)
    verdicts = {}
    for r in results:
        verdicts[r["strict"][1]] = verdicts.get(r["strict"][1], 0) + 1
    bad_cases = {f.split(" ", 1)[0] for f in failures}
    n = len(cases)
    with capsys.disabled():
        print(f"\nknown_hosts corpus: {n} cases, agreement {n - len(bad_cases)}/{n} "
              f"(ssh-keygen -F lines, ssh strict, ssh accept-new; {on_purpose} accept-new "
              f"@cert-authority refusals on purpose); OpenSSH strict verdicts: "
              f"{dict(sorted(verdicts.items()))}")
        for f in failures[:60]:
            print(f)
    assert not failures, f"{len(bad_cases)} of {n} cases differ from OpenSSH (first ones printed above)"
    assert n >= 300
    assert set(verdicts) == {"accepted", "unknown", "changed", "revoked"}
