"""Benchmark experiment, never shipped: concurdeploy's push with every host in threads of ONE process.

Row ``cd-1proc`` of bench/run.py: the same library calls as ``concurdeploy push`` (inventory →
push jobs → ``fanout.run_host`` → ``operations.push``), but the hosts run in a thread pool inside
the controller instead of the fork server + worker processes. ``invoke`` is imported too, so the
start-up cost of the CLI is still paid. It measures what the process machinery costs at a given N.

Usage: python inprocess.py INVENTORY GROUP N   (run from the project folder)
"""
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import invoke  # noqa: F401  (the CLI pays for it)

from concurdeploy.executors.local import Job, run_host
from concurdeploy.inventory import load
from concurdeploy.operations.push import push
from concurdeploy.operations.service import push_job
from concurdeploy.ssh.specs import connect_spec


def main():
    inv_path, group, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    project = os.getcwd()
    hosts = load(inv_path).select(group)
    jobs = [Job(connect_spec(h.name, h.vars), push, push_job(h, project)) for h in hosts]
    with ThreadPoolExecutor(n) as ex:
        results = list(ex.map(run_host, jobs))
    bad = [r for r in results if r.status.value not in ("ok", "changed")]
    for r in bad[:3]:
        print(r.host, r.status.value, r.error, file=sys.stderr)
    sys.exit(1 if bad else 0)


main()
