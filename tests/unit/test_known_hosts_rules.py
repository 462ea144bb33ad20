"""known_hosts matched as OpenSSH matches it (issue #15): patterns, negation, case, ports,
``@revoked`` under every policy, ``@cert-authority`` refused, and accept-new never recording
a key for a host another line already knows. No network: names only."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import subprocess
from pathlib import Path

import paramiko
import pytest

from concurdeploy.exceptions import HostKeyMismatch, HostKeyUnknown
from concurdeploy.ssh import hostkeys
from tests.sshd import find_ssh_keygen


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict:
    if find_ssh_keygen() is None:
        pytest.skip("ssh-keygen not found")
    d = tmp_path_factory.mktemp("khrules")
    out = {}
    for name in ("a", "b"):
        path = d / name
        subprocess.run([find_ssh_keygen(), "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True,
                       capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
        kt, b64 = Path(str(path) + ".pub").read_text().split()[:2]
        out[name] = (paramiko.PKey.from_type_string(kt, base64.b64decode(b64)), f"{kt} {b64}")
    return out


@pytest.fixture(autouse=True)
def no_system_known_hosts(monkeypatch, tmp_path):
    monkeypatch.setattr(hostkeys, "SYSTEM_KNOWN_HOSTS", str(tmp_path / "system_known_hosts"))


def _hashed(name: str) -> str:
    salt = os.urandom(20)
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


@pytest.mark.parametrize("field, host, port, known", [
    ("web*.example", "web1.example", 22, True),
    ("web?.example", "web12.example", 22, False),
    ("*.example,!db*.example", "db1.example", 22, False),   # a negated match: line does not match
    ("*.example,!db*.example", "web1.example", 22, True),
    ("!db*.example", "web1.example", 22, False),            # only negations never match
    ("WEB1.Example", "web1.example", 22, True),             # names compared in lower case
    ("web1.example", "WEB1.EXAMPLE", 22, True),
    ("[web1.example]:2200", "web1.example", 2200, True),
    ("web1.example", "web1.example", 2200, False),           # port 22 name does not cover 2200
    ("[web*]:2200", "web7", 2200, True),
])
def test_patterns_as_openssh(keys, tmp_path, field, host, port, known):
    kh = tmp_path / "kh"
    kh.write_text(f"{field} {keys['a'][1]}\n")
    if known:
        assert hostkeys.verify(str(kh), "strict", host, port, keys["a"][0]) is None
    else:
        with pytest.raises(HostKeyUnknown):
            hostkeys.verify(str(kh), "strict", host, port, keys["a"][0])


def test_hashed_entry_matches_lowercased_name(keys, tmp_path):
    kh = tmp_path / "kh"
    kh.write_text(f"{_hashed('[localhost]:2200')} {keys['a'][1]}\n")
    assert hostkeys.verify(str(kh), "strict", "LOCALHOST", 2200, keys["a"][0]) is None


def test_accept_new_never_records_a_host_known_under_another_spelling(keys, tmp_path):
    """The security hole of #15: LOCALHOST whose [localhost]:port is known with another key."""
    kh = tmp_path / "kh"
    kh.write_text(f"[localhost]:2200 {keys['a'][1]}\n")
    before = kh.read_text()
    with pytest.raises(HostKeyMismatch):
        hostkeys.verify(str(kh), "accept-new", "LOCALHOST", 2200, keys["b"][0])
    assert kh.read_text() == before


@pytest.mark.parametrize("policy", ["strict", "accept-new", "off"])
def test_revoked_key_is_refused_under_every_policy(keys, tmp_path, policy):
    kh = tmp_path / "kh"
    kh.write_text(f"@revoked * {keys['a'][1]}\n")
    with pytest.raises(HostKeyMismatch):
        hostkeys.verify(str(kh), policy, "web1.example", 22, keys["a"][0])


def test_revoked_line_is_scoped_by_its_pattern(keys, tmp_path):
    kh = tmp_path / "kh"
    kh.write_text(f"@revoked db* {keys['a'][1]}\nweb1.example {keys['a'][1]}\n")
    assert hostkeys.verify(str(kh), "strict", "web1.example", 22, keys["a"][0]) is None


def test_cert_authority_only_is_a_clear_refusal(keys, tmp_path):
    kh = tmp_path / "kh"
    kh.write_text(f"@cert-authority *.example {keys['a'][1]}\n")
    with pytest.raises(HostKeyUnknown) as e:
        hostkeys.verify(str(kh), "accept-new", "web1.example", 22, keys["b"][0])
    assert "cert" in str(e.value).lower()
    assert "web1" not in kh.read_text()


def test_comments_blank_and_malformed_lines_are_skipped(keys, tmp_path):
    kh = tmp_path / "kh"
    kh.write_text(f"# comment\n\nweb1.example ssh-ed25519 !!notbase64\n"
                  f"@bogus web1.example {keys['b'][1]}\nweb1.example {keys['a'][1]}\n")
    assert hostkeys.verify(str(kh), "strict", "web1.example", 22, keys["a"][0]) is None


def test_agrees_with_ssh_keygen_on_which_lines_match(keys, tmp_path):
    """Differential: for each pattern line, ``ssh-keygen -l -F name`` finds it iff we do."""
    cases = ["web*.example", "*.example,!db*.example", "WEB1.Example", "[web1.example]:2200",
             "web?.example", "!web1.example,*", "web1.example"]
    names = ["web1.example", "db1.example", "[web1.example]:2200", "web12.example"]
    agree = total = 0
    for i, field in enumerate(cases):
        kh = tmp_path / f"kh{i}"
        kh.write_text(f"{field} {keys['a'][1]}\n")
        for name in names:
            host, port = (name[1:].split("]:")[0], int(name.split(":")[-1])) if name.startswith("[") \
                else (name, 22)
            ref = subprocess.run([find_ssh_keygen(), "-l", "-F", name.lower(), "-f", str(kh)],
                                 capture_output=True, text=True, timeout=30).returncode == 0
            try:
                ours = hostkeys.verify(str(kh), "strict", host, port, keys["a"][0]) is None
            except HostKeyUnknown:
                ours = False
            total += 1
            agree += ours == ref
    print(f"known_hosts pattern cases: {total}, agreement with ssh-keygen -F: {agree}/{total}")
    assert agree == total


@pytest.mark.parametrize("type_name", ["ED25519", "ed25519"])
def test_short_key_type_names_are_not_usable(keys, tmp_path, type_name):
    """OpenSSH's client never accepts a key written with a short type name (found by the
    differential corpus): strict refuses it as unknown, accept-new records the real key."""
    kh = tmp_path / "kh"
    kh.write_text(f"web1.example {type_name} {keys['a'][1].split()[1]}\n")
    with pytest.raises(HostKeyUnknown):
        hostkeys.verify(str(kh), "strict", "web1.example", 22, keys["a"][0])
    assert hostkeys.verify(str(kh), "accept-new", "web1.example", 22, keys["a"][0]).startswith("host key recorded")
