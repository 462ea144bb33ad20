"""Secrets named by ``*_env`` vars, kept out of the environment of every child process.

``key_env``, ``passphrase_env``, ``password_env`` and ``become_password_env`` name environment
variables of the controller (a CI secret, typically). The local workers need their values,
but an environment is readable by anyone who can read ``/proc/<pid>/environ`` of that process
for its whole life, and is handed on to every process it starts. So, before the fork server
and the resource tracker start (:func:`scrubbed`), the controller copies the values into an
anonymous in-memory file (``memfd_create``, close-on-exec, mode 0600: :func:`seal`) and starts
those helper processes with the variables *removed* from their environment; only the
``/proc/<controller pid>/fd/<n>`` path of that file travels, in :data:`ENV_VAR`. The
controller's own ``os.environ`` is restored right after, so library callers see no change.

A worker looks a value up with :func:`getenv`: its own environment first (a Dask worker, or a
process that never sealed), else the controller's in-memory file. Remote processes, sudo and
the commands run get neither the values nor the path (the SSH session carries no environment).
The prompted passphrases use the same mechanism (:mod:`concurdeploy.ssh.passphrases`).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator

__all__ = ["ENV_VAR", "env_names", "getenv", "publish", "read_published", "scrubbed", "seal"]

#: Names where the sealed values are (``/proc/<pid>/fd/<n>``); never a secret itself.
ENV_VAR = "CONCURDEPLOY_ENV_SECRETS"
_VALUES: dict[str, str] = {}  # the controller's sealed values: name -> value
_FD: list[int] = []


def env_names(hvars: dict) -> set[str]:
    """The environment variable names that a host's vars point at: the string value of every
    var named ``*_env`` (``key_env``, ``become_password_env``…), nested mappings and lists
    (jump hosts) walked."""
    found: set[str] = set()

    def walk(value) -> None:
        if isinstance(value, dict):
            for k, x in value.items():
                if str(k).endswith("_env") and isinstance(x, str) and x:
                    found.add(x)
                else:
                    walk(x)
        elif isinstance(value, (list, tuple)):
            for x in value:
                walk(x)

    walk(hvars)
    return found


def seal(names: Iterable[str]) -> None:
    """Copy the values of the set environment variables ``names`` into this process's private
    in-memory file (created once, rewritten on each call, values of other names kept) and set
    :data:`ENV_VAR` to its ``/proc`` path. Unset names are dropped (the worker then reports
    the variable as not set, as before).

    :raises OSError: the memfd cannot be created (no ``/proc`` or ``memfd_create``).
    """
    for name in names:
        value = os.environ.get(name)
        if value is not None:
            _VALUES[name] = value
        else:  # unset since an earlier run: the worker must see it unset too
            _VALUES.pop(name, None)
    publish(_FD, _VALUES, ENV_VAR, "concurdeploy-env-secrets")


def publish(fds: list[int], values: dict[str, str], env_var: str, label: str) -> None:
    """Write ``values`` (as JSON) to this process's private in-memory file kept in ``fds``
    (``memfd_create``, close-on-exec, 0600; created on the first call and appended to ``fds``)
    and set environment variable ``env_var`` to its ``/proc/<pid>/fd/<n>`` path.

    :raises OSError: the memfd cannot be created (no ``/proc`` or ``memfd_create``).
    """
    if not fds:
        fds.append(os.memfd_create(label, os.MFD_CLOEXEC))
    fd = fds[0]
    data = json.dumps(values).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fchmod(fd, 0o600)
    os.environ[env_var] = f"/proc/{os.getpid()}/fd/{fd}"


def read_published(env_var: str, key: str, limit: int = 1 << 22) -> str | None:
    """The string stored under ``key`` in the in-memory file another process published
    (:func:`publish`) at the path in ``env_var``; None when unset, unreadable (no such process,
    another user's), malformed, or not there. Reads at most ``limit`` bytes."""
    where = os.environ.get(env_var)
    if not where or not where.startswith("/proc/"):
        return None
    try:
        with open(where, "rb") as f:
            found = json.loads(f.read(limit) or b"{}")
    except (OSError, ValueError):
        return None
    value = found.get(key) if isinstance(found, dict) else None
    return value if isinstance(value, str) else None


@contextlib.contextmanager
def scrubbed(names: Iterable[str]) -> Iterator[None]:
    """While inside, the environment variables ``names`` are removed from ``os.environ`` (so a
    process started meanwhile does not inherit them); put back as they were on leaving."""
    saved = {n: os.environ.pop(n) for n in list(names) if n in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def getenv(name: str) -> str | None:
    """The value of environment variable ``name``.

    In the process that sealed (the controller): its environment, else what it sealed. In any
    other process (a worker): the controller's in-memory file named by :data:`ENV_VAR`
    (re-read on each call, so it holds the values of the controller's latest run, where the
    fork server's environment would be as old as the fork server), else its own environment
    (a Dask worker, or a process that never sealed). None when none of them has it.
    """
    if _FD:
        value = os.environ.get(name)
        return value if value is not None else _VALUES.get(name)
    value = read_published(ENV_VAR, name)
    return value if value is not None else os.environ.get(name)
