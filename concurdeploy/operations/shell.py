"""The remote-shell vocabulary the host operations share: quoting, and the marker lines
the remote scripts print for the controller to read (each is ``@@concurdeploy-<word>``,
never a word a validate or reload command is likely to print)."""

from __future__ import annotations

import shlex

__all__ = ["BACKUP", "BUSY", "FAIL", "ID", "OWNER", "PENDING", "READY", "WARN", "q"]

FAIL = "@@concurdeploy-fail"        # "<FAIL> <file index> <step> [detail]": a prepare step failed
WARN = "@@concurdeploy-warn"        # "<WARN> <file index> owner" / "<WARN> - noflock": a note
BUSY = "@@concurdeploy-busy"        # "<BUSY> <dir>": another run holds the directory's lock
READY = "@@concurdeploy-ready"      # locks taken, facts printed: the held command waits
PENDING = "@@concurdeploy-pending"  # a reload owed by an earlier run (its marker file exists)
BACKUP = "@@concurdeploy-backup"    # "<BACKUP> <file index> <path>": the backup kept
ID = "@@concurdeploy-id"            # "<ID> u|g <name> <number>": a declared owner/group's id on the host
OWNER = "@@concurdeploy-owner"      # "<OWNER> <PID>": the process holding this run's locks


def q(arg: str) -> str:
    """Quote one argument for the remote POSIX shell."""
    return shlex.quote(arg)
