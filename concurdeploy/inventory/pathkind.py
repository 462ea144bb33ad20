"""What a path that should name a file (or folder) really is, in words, for the messages that
refuse it: ``-i /dev/zero`` is "a character device", not "not found".

Reads only ``lstat``/``stat``: nothing is opened (a FIFO or a device would block or never end).
"""

from __future__ import annotations

import os
import stat

__all__ = ["kind_of"]

_KINDS = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISDIR, "a folder"), (stat.S_ISREG, "a regular file"))


def kind_of(path: str) -> str:
    """``path``'s kind in words: ``"a character device"``, ``"a folder"``, ``"a regular file"``,
    ``"a broken symbolic link"``, ``"missing"`` (nothing there), ``"unreadable (…)"``.

    A symbolic link is described by what it points to.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a broken symbolic link" if os.path.islink(path) else "missing"
    except OSError as e:
        return f"unreadable ({e.strerror or e})"
    return next((words for test, words in _KINDS if test(mode)), "not a regular file")
