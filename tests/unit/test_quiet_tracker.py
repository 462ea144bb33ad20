"""The resource tracker that multiprocessing starts for the pool gets our -W filter, so its
occasional "leaked semaphore objects" warning never lands in an operator's output."""

from __future__ import annotations

import subprocess
import sys


def test_the_resource_tracker_runs_with_the_warning_filter():
    code = (
        "import os\n"
        "from concurdeploy.executors.local import QUIET_TRACKER, WorkerPool\n"
        "from multiprocessing import resource_tracker\n"
        "pool = WorkerPool(forks=1)\n"
        "resource_tracker.ensure_running()\n"
        "pid = resource_tracker._resource_tracker._pid\n"
        "import time\n"
        "for _ in range(200):  # the tracker was just spawned: its cmdline is empty until its exec\n"
        "    args = open(f'/proc/{pid}/cmdline', 'rb').read().split(b'\\0')\n"
        "    if args != [b'']:\n"
        "        break\n"
        "    time.sleep(0.01)\n"
        "print(('-W' + QUIET_TRACKER).encode() in args)\n"
        "pool.close()\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "True", res.stdout + res.stderr
