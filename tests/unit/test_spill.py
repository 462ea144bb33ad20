"""Output past the in-memory cap goes to a file (:mod:`concurdeploy.ssh.spill`, issue #14.4):
the file and the kept end are the stream byte for byte, the file is 0600 in a 0700 folder,
secrets are masked in it, a file that cannot be written is said so and nothing breaks."""

from __future__ import annotations

import os
import stat

from concurdeploy.ssh.remote import Demux, new_nonce
from concurdeploy.ssh.spill import Spill, notes, settle


def feed_all(d: Demux, nonce: str, chunks) -> None:
    d.feed(f"noise\n{nonce} 42\n".encode())
    for c in chunks:
        d.feed(c)


def stream_bytes(n: int = 50_000) -> list[bytes]:
    return [f"line {i} \xe9\xff\n".encode("latin-1") for i in range(n)]  # not UTF-8: bytes kept as they are


def test_the_file_and_the_kept_end_are_the_whole_stream_byte_for_byte(tmp_path):
    nonce, chunks = new_nonce(), stream_bytes()
    whole = b"".join(chunks)
    d = Demux(nonce, True, keep=10_000, spill=Spill(str(tmp_path / "run"), "web/1", "stdout"))
    feed_all(d, nonce, chunks)
    spilled = []
    settle([d], spilled)
    first, kept = d.text().split(b"\n", 1)
    path = str(tmp_path / "run" / "web_1-stdout.out")
    assert first.decode() == f"[{len(whole) - 10_000} bytes of output before this not kept here: they are in {path}]"
    assert len(kept) == 10_000
    with open(path, "rb") as fh:
        assert fh.read() + kept == whole
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "run").st_mode) == 0o700
    assert spilled == [("stdout", len(whole) - 10_000, path)]
    assert path in notes(spilled)[0]


def test_output_under_the_cap_writes_no_file(tmp_path):
    nonce = new_nonce()
    d = Demux(nonce, True, keep=10_000, spill=Spill(str(tmp_path / "run"), "h1", "stdout"))
    feed_all(d, nonce, [b"small\n"])
    spilled = []
    settle([d], spilled)
    assert d.text() == b"small\n" and spilled == [] and not (tmp_path / "run").exists()


def test_a_second_command_of_the_run_gets_its_own_file_never_an_existing_one(tmp_path):
    os.mkdir(tmp_path / "run", 0o700)
    os.symlink(tmp_path / "elsewhere", tmp_path / "run" / "h1-stdout.out")  # planted: never followed
    nonce = new_nonce()
    d = Demux(nonce, True, keep=10, spill=Spill(str(tmp_path / "run"), "h1", "stdout"))
    feed_all(d, nonce, [b"x" * 100])
    d.settle()
    assert d.spill.path == str(tmp_path / "run" / "h1-stdout-2.out")
    assert not (tmp_path / "elsewhere").exists()
    assert (tmp_path / "run" / "h1-stdout-2.out").read_bytes() == b"x" * 90


def test_secrets_are_masked_in_the_file_even_split_between_chunks(tmp_path):
    nonce = new_nonce()
    d = Demux(nonce, True, keep=100, spill=Spill(str(tmp_path / "run"), "h1", "stdout", ("hunter2-secret",)))
    feed_all(d, nonce, [b"a" * 5000 + b"\ntoken=hunter2-", b"secret\n" + b"b" * 5000 + b"\n", b"c" * 300])
    d.settle()
    text = (tmp_path / "run" / "h1-stdout.out").read_bytes()
    assert b"hunter2" not in text and b"token=********\n" in text


def test_a_folder_that_cannot_be_written_is_said_and_the_bytes_counted(tmp_path):
    (tmp_path / "afile").write_text("")  # a file where the folder would go: even root cannot
    nonce = new_nonce()
    d = Demux(nonce, True, keep=10, spill=Spill(str(tmp_path / "afile" / "run"), "h1", "stdout"))
    feed_all(d, nonce, [b"x" * 100])
    first, kept = d.text().split(b"\n", 1)
    assert first.decode() == (f"[90 bytes of output before this not kept (could not write them to "
                              f"{tmp_path / 'afile' / 'run'}: Not a directory)]")
    assert kept == b"x" * 10 and d.spill.path is None


def test_a_file_stops_at_its_size_limit_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr("concurdeploy.ssh.spill.MAX_SPILL_BYTES", 500)
    nonce = new_nonce()
    d = Demux(nonce, True, keep=100, spill=Spill(str(tmp_path / "run"), "h1", "stdout"))
    feed_all(d, nonce, [bytes([65 + i % 26]) * 100 for i in range(20)])  # 2000 bytes
    first, kept = d.text().split(b"\n", 1)
    path = tmp_path / "run" / "h1-stdout.out"
    assert first.decode() == f"[1900 bytes of output before this not kept here: the first 500 of them are in {path}]"
    assert path.read_bytes() == b"".join(bytes([65 + i % 26]) * 100 for i in range(5)) and len(kept) == 100
