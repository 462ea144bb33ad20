"""parallel-ssh peer: ParallelSSHClient (libssh2 via ssh2-python, gevent), copy_file then run_command mv.

Run by bench/run.py with bench/.venv's python: ``python pssh_push.py SPEC.json``.
parallel-ssh does NOT verify host keys (it has no known_hosts check), unlike every other row.
"""
import json
import sys

from gevent import joinall
from pssh.clients import ParallelSSHClient
from pssh.config import HostConfig


def main():
    spec = json.load(open(sys.argv[1]))
    hosts = spec["hosts"]
    client = ParallelSSHClient(
        ["127.0.0.1"] * len(hosts),
        host_config=[HostConfig(port=h["port"], user=spec["user"], private_key=spec["key"])
                     for h in hosts],
        pool_size=spec["workers"], timeout=120, num_retries=1, allow_agent=False,
        identity_auth=False)
    # copy_file takes one remote path for all hosts; each host's tmp name is relative to its
    # own destination folder, so copy via copy_args (per-host arguments).
    cmds = client.copy_file(spec["src"], "%(tmp)s", copy_args=[{"tmp": h["tmp"]} for h in hosts])
    joinall(cmds, raise_error=True)
    out = client.run_command("mv -f %s %s", host_args=[(h["tmp"], h["dest"]) for h in hosts])
    client.join(out)
    bad = [o for o in out if o.exception is not None or o.exit_code != 0]
    if bad:
        print(f"{len(bad)} hosts failed: {bad[0].exception!r} exit {bad[0].exit_code}", file=sys.stderr)
        sys.exit(1)


main()
