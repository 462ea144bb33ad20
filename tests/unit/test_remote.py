"""The remote-command protocol (:mod:`concurdeploy.ssh.remote`) with the real local shells:
the bootstrap under each login shell installed, the framing of script and stdin, and the
header that separates start-up noise from the command's output."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from concurdeploy.ssh.remote import BOOTSTRAP, Demux, bootstrap, frame, kill_script, new_nonce, prelude

SHELLS = [s for s in ("sh", "dash", "bash", "tcsh", "fish", "zsh", "ksh") if shutil.which(s)]


def _run(shell: str, script: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    """What sshd does: ``<login shell> -c <exec request>``, the framed script on stdin."""
    return subprocess.run([shell, "-c", BOOTSTRAP], input=frame(script, stdin), capture_output=True,
                          timeout=60)


@pytest.mark.parametrize("shell", SHELLS)
def test_bootstrap_runs_the_script_under_every_installed_login_shell(shell):
    nonce = new_nonce()
    script = prelude(nonce) + "printf '%s|' \"$1\" 'a\\b' \"it's\"; cat; exit 5"
    res = _run(shell, script, b"rest of stdin\x00\xff")
    assert res.returncode == 5, res.stderr
    out, err = Demux(nonce, True), Demux(nonce, False)
    out.feed(res.stdout)
    err.feed(res.stderr)
    assert out.pid is not None and out.pid > 1
    # "$1" unset (no argument ever reaches the script); backslash and quote kept exactly
    assert out.text() == b"|a\\b|it's|rest of stdin\x00\xff"
    assert err.text() == b""


def test_a_script_larger_than_the_argument_limit_runs():
    big = "".join(f": line {i} {'x' * 200}\n" for i in range(5000))  # ~1 MB: argv would refuse
    assert len(big) > 1 << 20
    res = _run("sh", big + "printf done; exit 0")
    assert res.returncode == 0 and res.stdout == b"done", res.stderr[-500:]


def test_stdin_after_the_script_is_not_eaten_by_the_reader():
    # dd reads exactly the script's bytes: the rest is the command's, byte for byte
    data = bytes(range(256)) * 1000
    res = _run("sh", "cat", data)
    assert res.returncode == 0 and res.stdout == data


def test_noise_before_the_header_is_dropped_whatever_it_looks_like():
    nonce = new_nonce()
    d = Demux(nonce, True)
    noise = f"motd line\n{nonce[:-1]}x 123\nno newline".encode()  # even a near-copy of the header
    chunks = [noise, b"\n" + nonce[:7].encode(), nonce[7:].encode() + b" 4242", b"\nout", b"put\n"]
    shown = b"".join(d.feed(c) for c in chunks)
    assert d.pid == 4242 and shown == b"output\n" and d.text() == b"output\n"


def test_header_inside_the_output_is_just_output():
    nonce = new_nonce()
    d = Demux(nonce, True)
    d.feed(f"\n{nonce} 7\n{nonce} 8\n".encode())
    assert d.pid == 7 and d.text() == f"{nonce} 8\n".encode()


def test_output_kept_is_capped_and_the_rest_counted():
    nonce = new_nonce()
    d = Demux(nonce, False, keep=1000)
    d.feed(f"\n{nonce}\n".encode())
    for _ in range(100):
        d.feed(b"y" * 999 + b"\n")
    assert len(d.data) <= 2000
    first, rest = d.text().split(b"\n", 1)
    assert first == b"[99000 bytes of output before this not kept]" and len(rest) == 1000


def test_no_header_shows_what_came():
    d = Demux(new_nonce(), True)
    d.feed(b"/bin/sh: 1: dd: not found\n")
    assert d.pid is None and d.text() == b"/bin/sh: 1: dd: not found\n"


def test_kill_script_finds_the_group_by_nonce_before_any_header():
    """A command whose login shell is still in its start-up files has printed no PID yet:
    the kill finds its process group by the nonce on its command line."""
    nonce = new_nonce()
    marker = f"300.{int(nonce[3:15], 16) % 10**9:09d}"
    proc = subprocess.Popen(["bash", "-c", bootstrap(nonce)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        proc.stdin.write(frame(f"sleep {marker} & sleep {marker} & echo ready; wait"))
        proc.stdin.close()
        assert proc.stdout.readline() == b"ready\n"  # both sleeps forked: wait for that line
        res = subprocess.run(["sh", "-c", kill_script(None, nonce)], capture_output=True, timeout=30)
        assert res.returncode == 0, res.stderr
        assert proc.wait(timeout=10) != 0  # ended by the signal
        assert subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True).stdout == b""
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
