"""Benchmark experiment: 100 MB to ONE host over concurdeploy's Connection, by transfer method.

    python bench/experiments/upload_chunk.py [MB] [REPS]

Starts one sshd on 127.0.0.1 (tests/sshd.py; logs in as user cdbench when run as root), then
times, per method, the upload of the same random file and reports wall and process CPU
(median of REPS): SFTP with pipelined writes of CHUNK bytes (concurdeploy's ``_upload`` does
32768), and the file streamed into ``cat > tmp`` over one exec channel. OpenSSH's client
(``ssh host 'cat > tmp' < file``, default cipher) is timed as the reference.
"""
import os
import pwd
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from concurdeploy.ssh.connection import Connection  # noqa: E402 (after the sys.path line)
from concurdeploy.ssh.specs import ConnectSpec  # noqa: E402
from tests.sshd import OpenSSHServer, generate_client_keys  # noqa: E402


def main():
    mb = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    d = Path(tempfile.mkdtemp(prefix="cdbench-up-", dir="/tmp"))
    os.chmod(d, 0o755)
    user = "cdbench" if os.geteuid() == 0 else pwd.getpwuid(os.getuid()).pw_name
    keys = generate_client_keys(d / "keys")
    srv = OpenSSHServer(d / "sshd", keys)
    srv.start()
    try:
        out = d / "out"
        out.mkdir()
        if os.geteuid() == 0:
            pw = pwd.getpwnam(user)
            os.chown(out, pw.pw_uid, pw.pw_gid)
        src = d / "blob.bin"
        src.write_bytes(os.urandom(mb * 1000 * 1000))
        kh = d / "known_hosts"
        kh.write_text(f"[127.0.0.1]:{srv.port} {srv.host_public_key_line}\n")
        spec = ConnectSpec("h", "127.0.0.1", srv.port, user=user, key_file=keys.ed25519, known_hosts=str(kh))

        def sftp(chunk):
            def f(conn):
                with conn.sftp.open(str(out / "t.bin"), "wb") as fh:
                    fh.set_pipelined(True)
                    with open(src, "rb") as s:
                        for block in iter(lambda: s.read(chunk), b""):
                            fh.write(block)
            return f

        def exec_cat(conn):
            chan = conn.transport.open_session()
            chan.exec_command(f"cat > {out / 't.bin'}")
            with open(src, "rb") as s:
                for block in iter(lambda: s.read(1 << 18), b""):
                    chan.sendall(block)
            chan.shutdown_write()
            assert chan.recv_exit_status() == 0

        methods = [("SFTP, 32768-byte writes (concurdeploy now)", sftp(32768)),
                   ("SFTP, 32 KiB minus SFTP header (32739-byte writes)", sftp(32768 - 29)),
                   ("SFTP, 256 KiB writes", sftp(262144)),
                   ("exec 'cat > tmp', stdin streamed", exec_cat)]
        rows = []
        for name, fn in methods:
            walls, cpus = [], []
            for _ in range(reps):
                with Connection(spec) as conn:
                    w0, c0 = time.perf_counter(), time.process_time()
                    fn(conn)
                    walls.append(time.perf_counter() - w0)
                    cpus.append(time.process_time() - c0)
                assert (out / "t.bin").stat().st_size == src.stat().st_size
                (out / "t.bin").unlink()
            cipher = None
            with Connection(spec) as conn:
                cipher = conn.transport.remote_cipher
            rows.append((name, statistics.median(walls), statistics.median(cpus), cipher))
        walls = []
        for _ in range(reps):
            w0 = time.perf_counter()
            subprocess.run(["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={kh}",
                            "-o", "KexAlgorithms=curve25519-sha256", "-i", keys.ed25519, "-p", str(srv.port),
                            f"{user}@127.0.0.1", f"cat > {out / 't.bin'}"], stdin=open(src, "rb"), check=True)
            walls.append(time.perf_counter() - w0)
        rows.append(("OpenSSH client: ssh host 'cat > tmp' < file", statistics.median(walls), None, "default (chacha20-poly1305)"))
        print(f"| method ({mb} MB to one host, median of {reps}) | wall s | controller CPU s | cipher |")
        print("|---|---|---|---|")
        for name, w, c, ci in rows:
            print(f"| {name} | {w:.2f} | {'—' if c is None else f'{c:.2f}'} | {ci} |")
    finally:
        srv.stop()
        subprocess.run(["rm", "-rf", str(d)])


main()
