"""``concurdeploy.ssh.hostkeys`` without a network: fingerprints, known_hosts parsing, policies."""

from __future__ import annotations

import base64
import subprocess
import threading
from pathlib import Path

import paramiko
import pytest

from concurdeploy.exceptions import HostKeyMismatch, HostKeyUnknown
from concurdeploy.ssh import hostkeys
from tests.sshd import find_ssh_keygen

PORT = 2222
HOST = "127.0.0.1"
NAME = f"[{HOST}]:{PORT}"  # names only: nothing here connects anywhere


def _keygen(path: Path, key_type: str) -> str:
    cmd = [find_ssh_keygen(), "-q", "-t", key_type, "-N", ""]
    if key_type == "rsa":
        cmd += ["-b", "2048"]
    cmd += ["-f", str(path)]
    subprocess.run(cmd, check=True, capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    return str(path)


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict:
    """``{type: (private path, public PKey, "type base64")}`` for ed25519, ecdsa, rsa, and a 2nd ed25519."""
    if find_ssh_keygen() is None:
        pytest.skip("ssh-keygen not found")
    d = tmp_path_factory.mktemp("hostkeys")
    out = {}
    for name, key_type in (("ed25519", "ed25519"), ("ecdsa", "ecdsa"), ("rsa", "rsa"),
                           ("ed25519_b", "ed25519")):
        path = _keygen(d / name, key_type)
        kt, b64 = Path(path + ".pub").read_text().split()[:2]
        out[name] = (path, paramiko.PKey.from_type_string(kt, base64.b64decode(b64)),
                     f"{kt} {b64}")
    return out


@pytest.fixture(autouse=True)
def no_system_known_hosts(monkeypatch, tmp_path):
    """Keep the machine's /etc/ssh/ssh_known_hosts out of these tests; return the stand-in path."""
    path = tmp_path / "system_known_hosts"
    monkeypatch.setattr(hostkeys, "SYSTEM_KNOWN_HOSTS", str(path))
    return path


def test_system_file_is_read_never_written(keys, tmp_path, no_system_known_hosts):
    no_system_known_hosts.write_text(f"{NAME} {keys['ed25519'][2]}\n")
    kh = str(tmp_path / "user_known_hosts")
    assert hostkeys.verify(kh, "strict", HOST, PORT, keys["ed25519"][1]) is None
    assert hostkeys.verify(kh, "accept-new", HOST, PORT, keys["ed25519"][1]) is None
    assert not Path(kh).exists()
    with pytest.raises(HostKeyMismatch):
        hostkeys.verify(kh, "accept-new", HOST, PORT, keys["ed25519_b"][1])
    note = hostkeys.verify(kh, "accept-new", HOST, PORT + 1, keys["ed25519"][1])
    assert "recorded" in note and no_system_known_hosts.read_text() == f"{NAME} {keys['ed25519'][2]}\n"


@pytest.mark.parametrize("name", ["ed25519", "ecdsa", "rsa"])
def test_fingerprint_matches_ssh_keygen(keys, name):
    path, pub, _ = keys[name]
    printed = subprocess.run([find_ssh_keygen(), "-lf", path + ".pub"], check=True,
                             capture_output=True, text=True, timeout=30).stdout.split()[1]
    assert printed.startswith("SHA256:")
    assert hostkeys.fingerprint(pub) == printed
    # The private key gives the same fingerprint as its public half.
    priv = {"ed25519": paramiko.Ed25519Key, "ecdsa": paramiko.ECDSAKey,
            "rsa": paramiko.RSAKey}[name].from_private_key_file(path)
    assert hostkeys.fingerprint(priv) == printed


def test_lookup_name_brackets_only_non_22_ports():
    assert hostkeys._lookup_name("example.org", 22) == "example.org"
    assert hostkeys._lookup_name("127.0.0.1", 2222) == "[127.0.0.1]:2222"


def write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "known_hosts"
    p.write_text(text)
    return str(p)


def test_known_entry_verifies_under_strict(keys, tmp_path):
    kh = write(tmp_path, f"{NAME} {keys['ed25519'][2]}\n")
    assert hostkeys.verify(kh, "strict", HOST, PORT, keys["ed25519"][1]) is None
    assert hostkeys.known_key_types(kh, HOST, PORT) == ["ssh-ed25519"]
    assert hostkeys.known_key_types(kh, HOST, 22) == []


def test_unknown_under_strict(keys, tmp_path):
    kh = write(tmp_path, "")
    with pytest.raises(HostKeyUnknown) as ei:
        hostkeys.verify(kh, "strict", HOST, PORT, keys["ecdsa"][1])
    msg = str(ei.value)
    assert NAME in msg and "ecdsa-sha2-nistp256" in msg
    assert hostkeys.fingerprint(keys["ecdsa"][1]) in msg
    assert "'concurdeploy keyscan HOST'" in msg and "--yes" in msg and "ssh-keyscan" not in msg
    with pytest.raises(HostKeyUnknown, match="'concurdeploy keyscan lb1'"):
        hostkeys.verify(kh, "strict", HOST, PORT, keys["ecdsa"][1], inventory_name="lb1")
    assert "accept-new" in msg


def test_mismatch_same_type_and_other_type(keys, tmp_path):
    kh = write(tmp_path, f"{NAME} {keys['ed25519'][2]}\n")
    with pytest.raises(HostKeyMismatch) as ei:
        hostkeys.verify(kh, "accept-new", HOST, PORT, keys["ed25519_b"][1])
    assert hostkeys.fingerprint(keys["ed25519"][1]) in str(ei.value)
    assert hostkeys.fingerprint(keys["ed25519_b"][1]) in str(ei.value)
    with pytest.raises(HostKeyMismatch, match="HOST KEY CHANGED.*holds ssh-ed25519"):
        hostkeys.verify(kh, "strict", HOST, PORT, keys["rsa"][1])
    assert Path(kh).read_text() == f"{NAME} {keys['ed25519'][2]}\n"


def test_hashed_entry(keys, tmp_path):
    hashed = paramiko.HostKeys.hash_host(NAME)
    kh = write(tmp_path, f"{hashed} {keys['rsa'][2]}\n")
    assert hostkeys.verify(kh, "strict", HOST, PORT, keys["rsa"][1]) is None
    assert hostkeys.known_key_types(kh, HOST, PORT) == ["ssh-rsa"]
    with pytest.raises(HostKeyUnknown):
        hostkeys.verify(kh, "strict", "127.0.0.2", PORT, keys["rsa"][1])


def test_comma_separated_names(keys, tmp_path):
    kh = write(tmp_path, f"web1,{NAME},127.9.9.9 {keys['ed25519'][2]} a comment\n")
    assert hostkeys.verify(kh, "strict", HOST, PORT, keys["ed25519"][1]) is None


def test_comments_markers_and_garbage_lines_are_skipped(keys, tmp_path):
    text = ("# a comment with several words\n"
            "\n"
            f"@cert-authority *.example.org {keys['ed25519_b'][2]}\n"
            "broken-line\n"
            "badhost ssh-ed25519 not@@base64\n"
            "badhost2 ssh-ed25519 AAAA\n"
            "badhost3 ssh-unknown-type AAAAB3NzaC1yc2E=\n"
            f"   {NAME} {keys['ed25519'][2]}   \n")
    kh = write(tmp_path, text)
    assert hostkeys.verify(kh, "strict", HOST, PORT, keys["ed25519"][1]) is None
    # accept-new re-reads the same file under its lock: must not choke either.
    note = hostkeys.verify(kh, "accept-new", "127.0.0.3", PORT, keys["rsa"][1])
    assert note and "recorded" in note
    assert Path(kh).read_text() == text + f"[127.0.0.3]:{PORT} {keys['rsa'][2]}\n"


def test_revoked_key_is_refused(keys, tmp_path):
    kh = write(tmp_path, f"@revoked * {keys['ed25519_b'][2]}\n{NAME} {keys['ed25519'][2]}\n")
    assert hostkeys.verify(kh, "strict", HOST, PORT, keys["ed25519"][1]) is None
    for policy in ("strict", "accept-new"):
        with pytest.raises(HostKeyMismatch, match="revoked"):
            hostkeys.verify(kh, policy, "127.0.0.7", PORT, keys["ed25519_b"][1])
    assert "127.0.0.7" not in Path(kh).read_text()


def test_policy_off_reads_nothing_and_notes(keys, tmp_path):
    note = hostkeys.verify(str(tmp_path / "missing"), "off", HOST, PORT, keys["rsa"][1])
    assert "not verified" in note and hostkeys.fingerprint(keys["rsa"][1]) in note
    assert not (tmp_path / "missing").exists()


def test_accept_new_appends_then_is_known(keys, tmp_path):
    kh = write(tmp_path, "other ssh-ed25519 " + keys["ed25519_b"][2].split()[1])  # no newline
    before = Path(kh).read_bytes()
    note = hostkeys.verify(kh, "accept-new", HOST, PORT, keys["ecdsa"][1])
    assert "recorded" in note and hostkeys.fingerprint(keys["ecdsa"][1]) in note
    after = Path(kh).read_bytes()
    assert after == before + f"\n{NAME} {keys['ecdsa'][2]}\n".encode()
    assert hostkeys.verify(kh, "accept-new", HOST, PORT, keys["ecdsa"][1]) is None
    assert hostkeys.verify(kh, "strict", HOST, PORT, keys["ecdsa"][1]) is None
    assert Path(kh).read_bytes() == after


def test_append_from_many_threads(keys, tmp_path):
    kh = str(tmp_path / "sub" / "known_hosts")
    barrier = threading.Barrier(16, timeout=10)
    errors = []

    def one(i):
        try:
            barrier.wait()
            # Half the threads race for the same name: it must be written once.
            host = HOST if i % 2 else f"127.1.0.{i}"
            hostkeys.verify(kh, "accept-new", host, PORT, keys["ed25519"][1])
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert errors == [] and not any(t.is_alive() for t in threads)
    lines = Path(kh).read_text().splitlines()
    assert len(lines) == 9 and len(set(lines)) == 9
    assert lines.count(f"{NAME} {keys['ed25519'][2]}") == 1
    for ln in lines:
        assert paramiko.hostkeys.HostKeyEntry.from_line(ln) is not None


def test_accept_new_refuses_a_key_recorded_meanwhile(keys, tmp_path):
    """verify read the file before another worker recorded another key: _append re-checks."""
    kh = write(tmp_path, f"{NAME} {keys['ed25519'][2]}\n")
    with pytest.raises(HostKeyMismatch):
        hostkeys._append(kh, NAME, keys["ed25519_b"][1])
    assert Path(kh).read_text() == f"{NAME} {keys['ed25519'][2]}\n"
