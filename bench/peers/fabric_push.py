"""Fabric 3 peer: a ThreadPoolExecutor around Connection.put (SFTP) + run("mv"), one host per thread.

Run by bench/run.py with bench/.venv's python: ``python fabric_push.py SPEC.json``.
Host keys ARE verified (known_hosts loaded, RejectPolicy), as concurdeploy does.
"""
import json
import sys
from concurrent.futures import ThreadPoolExecutor

import paramiko
from fabric import Connection


def one(spec, h):
    c = Connection("127.0.0.1", user=spec["user"], port=h["port"], connect_timeout=120,
                   connect_kwargs={"key_filename": spec["key"], "look_for_keys": False,
                                   "allow_agent": False})
    c.client.load_host_keys(spec["known_hosts"])
    c.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        c.put(spec["src"], h["tmp"])
        c.run(f"mv -f {h['tmp']} {h['dest']}", hide=True, in_stream=False)
    finally:
        c.close()


def main():
    spec = json.load(open(sys.argv[1]))
    with ThreadPoolExecutor(max_workers=spec["workers"]) as ex:
        futs = [ex.submit(one, spec, h) for h in spec["hosts"]]
        errors = [f.exception() for f in futs if f.exception() is not None]
    if errors:
        print(f"{len(errors)} hosts failed; first: {errors[0]!r}", file=sys.stderr)
        sys.exit(1)


main()
