"""The resource tracker that multiprocessing starts for the pool gets our -W filter, so its
occasional "leaked semaphore objects" warning never lands in an operator's output."""

from __future__ import annotations

import subprocess
import sys


def test_the_resource_tracker_runs_with_the_warning_filter():
    # ensure_running() returns right after the fork: until the child's exec, its cmdline is
    # still this interpreter's, so the test reads it once the exec has happened (bounded).
    code = (
        "import os\n"
        "from concurdeploy.executors.local import QUIET_TRACKER, WorkerPool\n"
        "from multiprocessing import resource_tracker\n"
        "pool = WorkerPool(forks=1)\n"
        "resource_tracker.ensure_running()\n"
        "pid = resource_tracker._resource_tracker._pid\n"
        "import time\n"
        "end = time.monotonic() + 10\n"
        "args = []\n"
        "while b'multiprocessing.resource_tracker' not in b' '.join(args) and time.monotonic() < end:\n"
        "    args = open(f'/proc/{pid}/cmdline', 'rb').read().split(b'\\0')  # until its exec is done\n"
        "    time.sleep(0.01)\n"
        "print(('-W' + QUIET_TRACKER).encode() in args)\n"
        "pool.close()\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "True", res.stdout + res.stderr
