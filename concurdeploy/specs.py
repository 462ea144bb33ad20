"""Picklable descriptions of work: how to reach a host (:class:`ConnectSpec`) and what to
put there (:class:`FileSpec`, :class:`PushJob`).

Specs carry *parameters*, never live objects or secret values: a worker process builds
its own connection from a ``ConnectSpec`` and reads ``key_env``/``password_env`` from its
own environment. No paramiko import here, so building specs costs no start-up time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .exceptions import InventoryError

__all__ = ["ConnectSpec", "FileSpec", "PushJob", "DEFAULTS", "connect_spec"]

#: Built-in defaults for connection settings (seconds for timeouts).
DEFAULTS = {
    "port": 22,
    "known_hosts": "~/.ssh/known_hosts",
    "host_key_policy": "strict",
    "connect_timeout": 10.0,
    "command_timeout": 60.0,
    "connect_retries": 2,
}

HOST_KEY_POLICIES = ("strict", "accept-new", "off")


@dataclass(frozen=True)
class ConnectSpec:
    """How to reach one host. Built from a host's merged vars by :func:`connect_spec`.

    :param name: inventory name (used in messages and results).
    :param hostname: address or DNS name to connect to (var ``host``).
    :param port: TCP port (var ``port``, default 22).
    :param user: login name; None = the local user.
    :param key_file: path of a private key file (``~`` expanded in the worker).
    :param key_env: name of an environment variable holding a private key (PEM/OpenSSH text).
    :param passphrase_env: name of an environment variable holding the key's passphrase.
    :param password_env: name of an environment variable holding the password.
    :param known_hosts: OpenSSH known_hosts file checked (and appended to under ``accept-new``).
    :param host_key_policy: ``strict`` | ``accept-new`` | ``off``
        (after OpenSSH's ``StrictHostKeyChecking`` yes / accept-new / no).
    :param connect_timeout: seconds for TCP connect, SSH banner, key exchange and auth, each.
    :param command_timeout: seconds a remote command or SFTP request may take.
    :param allow_agent: offer keys from ssh-agent (``SSH_AUTH_SOCK``).
    :param connect_retries: extra attempts after a transient connect failure (reset or
        dropped during the handshake, as at sshd's ``MaxStartups``); never after auth or
        host key failures.
    """

    name: str
    hostname: str
    port: int = 22
    user: str | None = None
    key_file: str | None = None
    key_env: str | None = None
    passphrase_env: str | None = None
    password_env: str | None = None
    known_hosts: str = DEFAULTS["known_hosts"]
    host_key_policy: str = "strict"
    connect_timeout: float = DEFAULTS["connect_timeout"]
    command_timeout: float = DEFAULTS["command_timeout"]
    allow_agent: bool = True
    connect_retries: int = 2

    @property
    def address(self) -> str:
        """``user@host:port`` for messages."""
        user = f"{self.user}@" if self.user else ""
        return f"{user}{self.hostname}:{self.port}"


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
    :param become: a :class:`concurdeploy.become.Become` to run every remote step as root
        through sudo (var ``become: true``), or None.
    """

    files: tuple[FileSpec, ...]
    reload: str | None = None
    check: bool = False
    diff: bool = False
    healthcheck: str | None = None
    backups: int = 3
    lock_timeout: float = 30.0
    secrets: tuple[str, ...] = ()
    service: str = ""
    become: object = None  # concurdeploy.become.Become, or None: run remote steps through sudo


def _opt(value, kind):
    return None if value is None else kind(value)


def connect_spec(name: str, hvars: dict, overrides: dict | None = None) -> ConnectSpec:
    """Build a :class:`ConnectSpec` from a host's merged vars.

    Precedence (lowest first): :data:`DEFAULTS` < host vars < ``overrides`` (CLI flags, only
    keys whose value is not None).

    :raises InventoryError: ``host_key_policy`` is not one of strict / accept-new / off.
    """
    merged = dict(DEFAULTS)
    merged.update({k: v for k, v in hvars.items() if v is not None})
    merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
    policy = str(merged["host_key_policy"]).lower() if merged["host_key_policy"] is not False else "off"
    if policy not in HOST_KEY_POLICIES:
        raise InventoryError(
            f"host {name}: host_key_policy {policy!r} is not one of {', '.join(HOST_KEY_POLICIES)}",
            key="host_key_policy")
    try:
        return _build(name, merged, policy)
    except (TypeError, ValueError) as e:
        raise InventoryError(f"host {name}: a connection var has the wrong type ({e}); ports, "
                             f"timeouts and retries are numbers") from None


def _build(name: str, merged: dict, policy: str) -> ConnectSpec:
    return ConnectSpec(
        name=name,
        hostname=str(merged.get("host") or name),
        port=int(merged["port"]),
        user=_opt(merged.get("user"), str),
        key_file=_opt(merged.get("key_file"), str),
        key_env=_opt(merged.get("key_env"), str),
        passphrase_env=_opt(merged.get("passphrase_env"), str),
        password_env=_opt(merged.get("password_env"), str),
        known_hosts=str(merged["known_hosts"]),
        host_key_policy=policy,
        connect_timeout=float(merged["connect_timeout"]),
        command_timeout=float(merged["command_timeout"]),
        allow_agent=bool(merged.get("allow_agent", True)) and "SSH_AUTH_SOCK" in os.environ,
        connect_retries=int(merged["connect_retries"]),
    )
