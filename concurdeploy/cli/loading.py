"""Where a project's ``tasks.py`` may be loaded from (issue #15.4).

invoke's ``FilesystemLoader`` looks for ``tasks.py`` (or a ``tasks/`` package) in the start
directory (the current directory, or ``-r/--search-root``) and then in each parent up to ``/``,
and *imports* the first one it finds: its code runs with the operator's rights, before any
task. A ``tasks.py`` left in ``/tmp`` or in a shared parent folder by another user would run
as whoever types ``concurdeploy`` below it.

:class:`ProjectLoader` finds the file the same way but refuses, before importing anything, a
``tasks.py`` found in a *parent* of the start directory unless it is trusted as OpenSSH's
``StrictModes`` trusts a file: the file (and, for a ``tasks/`` package, its folder) and the
folder holding it are owned by the user running concurdeploy or by root, and are neither
group- nor world-writable. A ``tasks.py`` in the start directory itself is the project's: the
operator chose that directory (to use a parent's ``tasks.py`` on purpose, name the folder with
``-r/--search-root``).
"""

from __future__ import annotations

import os
import pwd
import stat
from importlib.machinery import ModuleSpec

from invoke import FilesystemLoader

from concurdeploy.exceptions import UsageError

__all__ = ["ProjectLoader", "UntrustedTasks", "untrusted_reason"]


class UntrustedTasks(UsageError):
    """A ``tasks.py`` found in a parent folder that another user could have written (exit 2)."""


def _owner(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def untrusted_reason(path: str, uid: int | None = None) -> str | None:
    """Why ``path`` (a file or folder) is not trusted, or None when it is: owned by ``uid``
    (default: this process's effective uid) or root, and not group/world-writable.

    :returns: e.g. ``"/srv/x is owned by nobody (uid 65534)"``; ``"… cannot be read: …"``
        when it cannot be stat-ed.
    """
    uid = os.geteuid() if uid is None else uid
    try:
        st = os.stat(path)
    except OSError as e:
        return f"{path} cannot be checked: {e.strerror}"
    if st.st_uid not in (uid, 0):
        return f"{path} is owned by {_owner(st.st_uid)}"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = "group- and world-" if st.st_mode & stat.S_IWGRP and st.st_mode & stat.S_IWOTH \
            else "world-" if st.st_mode & stat.S_IWOTH else "group-"
        return f"{path} is {who}writable (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


class ProjectLoader(FilesystemLoader):
    """invoke's ``FilesystemLoader`` that refuses an untrusted ``tasks.py`` found in a parent
    folder (see the module docstring) before it is imported.

    :raises UntrustedTasks: from :meth:`find` (and so from ``load``), naming the file, the
        reason and what to do.
    """

    def find(self, name: str) -> ModuleSpec | None:
        spec = super().find(name)
        if spec is None or not spec.origin:
            return spec
        origin = os.path.abspath(spec.origin)
        found_in = os.path.dirname(origin)
        if spec.submodule_search_locations:  # tasks/__init__.py: the package's folder is above
            found_in = os.path.dirname(found_in)
        start = os.path.abspath(self.start)
        if os.path.realpath(found_in) == os.path.realpath(start):
            return spec
        checked = [origin, found_in]
        if spec.submodule_search_locations:
            checked.insert(1, os.path.dirname(origin))
        for path in checked:
            why = untrusted_reason(path)
            if why is not None:
                me = _owner(os.geteuid())
                raise UntrustedTasks(
                    f"refusing to load {origin}: it was found in {found_in}, a parent of the "
                    f"directory concurdeploy runs in ({start}), and {why}; a tasks.py there "
                    f"could run another user's code as {me}. Nothing was run. Put the project's "
                    f"tasks.py in the directory you run concurdeploy from, or make that file "
                    f"and folder yours (or root's) and not group/world-writable, or name the "
                    f"folder on purpose with -r/--search-root {found_in}")
        return spec
