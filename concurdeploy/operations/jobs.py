"""What to put on a host: picklable records of one push (:class:`PushJob`) and its files
(:class:`FileSpec`), built in the controller by :mod:`concurdeploy.operations.service` and sent to
the workers. Parameters only: no live objects, no secret values beyond those to mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["FileSpec", "PushJob"]


@dataclass(frozen=True)
class FileSpec:
    """One file of a service, resolved for one host.

    :param src: absolute local path of the source (for messages and streaming).
    :param dest: absolute remote destination path.
    :param sha256: hex SHA-256 of the content to install.
    :param size: bytes of the content.
    :param mode: permission bits (``int``, e.g. ``0o644``), or None = keep the replaced
        file's mode (``0o644`` for a new file).
    :param validate: shell command run on the uploaded temporary file, ``{tmp}`` replaced by
        its quoted path, run from the destination's directory; None = no validation.
    :param create_dirs: create a missing destination directory (``mkdir -p``) instead of failing.
    :param content: the bytes to install when rendered in memory (templates); None = read ``src``.
    :param replace: ``"atomic"`` (rename over the destination) or ``"in-place"`` (rewrite the
        existing file's content: NOT atomic, for destinations that cannot be renamed over,
        such as a file bind-mounted into a container).
    :param follow: a symlinked destination: False = replace the link itself by the file
        (Ansible's default); True = write the file it points to (atomically, beside it).
    :param owner, group: user and group (names or numeric ids) the file must have; None =
        the replaced file's (a host where the connecting user cannot keep them fails).
    """

    src: str
    dest: str
    sha256: str
    size: int
    mode: int | None = None
    validate: str | None = None
    create_dirs: bool = False
    content: bytes | None = None
    replace: str = "atomic"
    follow: bool = False
    owner: str | None = None
    group: str | None = None


@dataclass(frozen=True)
class PushJob:
    """The push of one service to one host: its files and the reload (handler) to run once if any changed.

    :param check: check mode: compare and report, write nothing, run nothing with side effects.
    :param diff: compute a unified diff of each changed file (``--diff``).
    :param healthcheck: command run after the reload; failing → roll back like a failed reload.
    :param backups: backups kept per file after a successful push (0 = none kept; a backup
        always exists while the push runs, for rollback).
    :param lock_timeout: seconds to wait for another run's lock on a destination directory.
    :param secrets: values to mask as ``********`` in diffs and output.
    :param service: the service (group) name: it names the owed-reload marker on the host.
    :param become: a :class:`concurdeploy.operations.become.Become` to run every remote step as root
        through sudo (var ``become: true``), or None.
    """

    files: tuple[FileSpec, ...]
    reload: str | None = None
    check: bool = False
    diff: bool = False
    healthcheck: str | None = None
    backups: int = 3
    lock_timeout: float = 30.0
    secrets: tuple[str, ...] = field(default=(), repr=False)  # never in a repr (logs, errors)
    service: str = ""
    become: object = None  # concurdeploy.operations.become.Become, or None: run remote steps through sudo
