"""Every error concurdeploy raises, in one tree.

::

    ConcurdeployError
    ├── UsageError (ValueError)         bad input: CLI, config, inventory → exit code 2
    │   ├── InventoryError              names file, line and key
    │   │   ├── UnknownGroup (KeyError)
    │   │   └── NoHostsMatched (LookupError)
    │   └── ServiceError                a group's ``files``/``reload`` declaration is wrong
    └── HostError                       one host's failure; becomes that host's HostResult
        ├── HostUnreachable (OSError)   refused, timed out, reset, name not resolved → "unreachable"
        ├── AuthFailed                  never retried
        ├── CredentialsMissing          key_env / password_env names an unset variable
        ├── HostKeyError
        │   ├── HostKeyUnknown          not in known_hosts under the ``strict`` policy
        │   └── HostKeyMismatch         known_hosts holds another key: never accepted
        ├── CommandTimeout              a remote command ran past ``command_timeout``
        ├── RemoteCommandFailed         a remote command exited non-zero
        │   ├── ValidateFailed          the ``validate`` command rejected the uploaded file
        │   └── ReloadFailed            the ``reload`` command failed
        ├── DestinationError            missing directory, not a regular file, …
        ├── UploadCorrupted             size or SHA-256 on the host differs from what was sent
        ├── RenameUnsupported           no atomic rename available; destination untouched
        ├── LockBusy                    another run holds the destination's lock past lock_timeout
        ├── RollbackFailed              a failed reload could not be undone: the host needs a person
        └── Interrupted                 the run was interrupted; this host stopped at a safe point
    HostsFailed (ConcurdeployError)     the run ended with failed/unreachable hosts → exit code 1
    RunInterrupted (ConcurdeployError)  SIGINT/SIGTERM: recap printed → exit code 130 / 143

Every class pickles, whatever its constructor takes (``__reduce__`` below), so an
error raised in a worker process can be sent to the controller as plain data.
This module imports nothing of concurdeploy's.
"""

from __future__ import annotations

__all__ = [
    "AuthFailed",
    "CommandTimeout",
    "ConcurdeployError",
    "CredentialsMissing",
    "DestinationError",
    "HostError",
    "HostKeyError",
    "HostKeyMismatch",
    "HostKeyUnknown",
    "HostUnreachable",
    "HostsFailed",
    "Interrupted",
    "InventoryError",
    "LockBusy",
    "NoHostsMatched",
    "ReloadFailed",
    "RemoteCommandFailed",
    "RenameUnsupported",
    "RollbackFailed",
    "RunInterrupted",
    "ServiceError",
    "UnknownGroup",
    "UploadCorrupted",
    "UsageError",
    "ValidateFailed",
]


def _restore(cls, args, state):
    obj = cls.__new__(cls)
    obj.args = args
    obj.__dict__.update(state)
    return obj


class ConcurdeployError(Exception):
    """Root of every concurdeploy error. ``str(e)`` is a complete, one-paragraph message."""

    def __reduce__(self):
        return (_restore, (type(self), self.args, dict(self.__dict__)))


class UsageError(ConcurdeployError, ValueError):
    """Bad input from the operator (flags, config, inventory). The CLI exits with code 2."""


class InventoryError(UsageError):
    """An inventory file is wrong.

    :param message: what is wrong and what to do about it.
    :param path: the inventory file (``str``), or None.
    :param line: 1-based line number in ``path``, or None.
    :param key: the offending key (e.g. ``"port"``), or None.
    """

    def __init__(self, message: str, path: str | None = None, line: int | None = None,
                 key: str | None = None):
        super().__init__(message, path, line, key)
        self.message, self.path, self.line, self.key = message, path, line, key

    def __str__(self) -> str:
        where = ""
        if self.path:
            where = f"{self.path}:{self.line}: " if self.line else f"{self.path}: "
        key = f"key {self.key!r}: " if self.key else ""
        return f"{where}{key}{self.message}"


class UnknownGroup(InventoryError, KeyError):
    """A group is named (in ``children``, a pattern or ``push NAME``) but not defined."""

    def __str__(self) -> str:  # KeyError would repr() the message otherwise
        return InventoryError.__str__(self)


class NoHostsMatched(InventoryError, LookupError):
    """A group or ``--limit`` pattern selects no host: never "deployed to zero hosts, exit 0"."""

    def __str__(self) -> str:
        return InventoryError.__str__(self)


class ServiceError(InventoryError):
    """A ``files`` or ``reload`` declaration cannot be used (missing ``src``, bad ``mode``, …)."""


class HostError(ConcurdeployError):
    """A failure on one host. Stops that host only; the run goes on with the others.

    :param message: one line, secrets already masked.
    :param output: the tail of the remote command's stdout+stderr, if any (``str``).
    """

    status = "failed"

    def __init__(self, message: str, output: str = ""):
        super().__init__(message, output)
        self.message, self.output = message, output

    def __str__(self) -> str:
        return self.message


class HostUnreachable(HostError, OSError):
    """The host could not be reached or the connection dropped (status ``unreachable``)."""

    status = "unreachable"

    def __init__(self, message: str, output: str = ""):
        HostError.__init__(self, message, output)

    def __str__(self) -> str:
        return self.message


class AuthFailed(HostError):
    """The server refused every credential offered. Never retried."""


class CredentialsMissing(HostError):
    """``key_env``/``password_env`` names an environment variable that is not set, or a key file is unreadable."""


class HostKeyError(HostError):
    """The server's host key could not be trusted."""


class HostKeyUnknown(HostKeyError):
    """The host has no entry in known_hosts and the policy is ``strict``."""


class HostKeyMismatch(HostKeyError):
    """known_hosts holds a different key for this host: possible man-in-the-middle. Never accepted."""


class CommandTimeout(HostError):
    """A remote command ran longer than its timeout (seconds); its channel was closed."""


class RemoteCommandFailed(HostError):
    """A remote command exited non-zero. ``exit_status`` is its code (int) or None."""

    def __init__(self, message: str, output: str = "", exit_status: int | None = None):
        ConcurdeployError.__init__(self, message, output, exit_status)
        self.message, self.output, self.exit_status = message, output, exit_status


class ValidateFailed(RemoteCommandFailed):
    """The ``validate`` command rejected the uploaded temporary file; it was removed, destination untouched."""


class ReloadFailed(RemoteCommandFailed):
    """The ``reload`` command failed after the files were replaced."""


class DestinationError(HostError):
    """The destination cannot be written: its directory is missing, it is a directory, …"""


class UploadCorrupted(HostError):
    """The uploaded temporary file's size or SHA-256 differs from the local file (e.g. disk full)."""


class RenameUnsupported(HostError):
    """Neither ``posix-rename@openssh.com`` nor a shell ``mv`` is available; destination untouched."""


class HostsFailed(ConcurdeployError):
    """The run finished but some hosts failed or were unreachable (the CLI exits 1).

    :param hosts: their inventory names (``list[str]``).
    """

    def __init__(self, hosts):
        super().__init__(list(hosts))
        self.hosts = list(hosts)

    def __str__(self) -> str:
        return f"{len(self.hosts)} host(s) failed or unreachable: {', '.join(self.hosts)}"


class LockBusy(HostError):
    """Another run holds the lock of a destination directory for longer than ``lock_timeout`` seconds."""


class RollbackFailed(HostError):
    """The reload failed and restoring the previous files (or reloading them) failed too.

    The host may now run on, or hold, a configuration its own reload rejected: look at it.
    """


class Interrupted(HostError):
    """The run was interrupted (SIGINT/SIGTERM); this host stopped between two steps.

    Destinations are either untouched or fully replaced; temporary files were removed.
    """


class RunInterrupted(ConcurdeployError):
    """The controller received SIGINT or SIGTERM; the CLI exits ``128 + signum`` (130 / 143).

    :param signum: the signal number (``int``).
    """

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    def __str__(self) -> str:
        return f"interrupted by signal {self.signum}"
