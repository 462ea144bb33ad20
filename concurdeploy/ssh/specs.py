"""How to reach a host: the picklable :class:`ConnectSpec` (what to put there is
:mod:`concurdeploy.operations.jobs`).

Specs carry *parameters*, never live objects or secret values: a worker process builds
its own connection from a ``ConnectSpec`` and reads ``key_env``/``password_env`` from its
own environment. No paramiko import here, so building specs costs no start-up time
(:mod:`concurdeploy.ssh.sshconfig` imports it only when an ssh_config file exists).

:func:`connect_spec` resolves everything in the controller: the OpenSSH client config
(``~/.ssh/config``, ``--ssh-config``), jump hosts (``jump`` var, ``ProxyJump``) and the
precedence between defaults, ssh_config, inventory vars and flags, documented in
:mod:`concurdeploy.ssh.sshconfig`. A worker never reads ssh_config.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from concurdeploy.exceptions import InventoryError
from concurdeploy.ssh import sshconfig

__all__ = ["DEFAULTS", "ConnectSpec", "connect_spec"]

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
    :param allow_agent: offer keys from ssh-agent (``identity_agent``, else ``SSH_AUTH_SOCK``).
    :param connect_retries: extra attempts after a transient connect failure (reset or
        dropped during the handshake, as at sshd's ``MaxStartups``); never after auth or
        host key failures.
    :param jump: the jump hosts (bastions) to tunnel through, first hop first, each a
        ``ConnectSpec`` whose own ``jump`` is empty (the chain is this tuple). The first
        hop is connected to directly (or through its ``proxy_command``), each next one (and
        finally this host) through a ``direct-tcpip`` channel of the previous one. Empty =
        connect directly.
    :param host_key_alias: ssh_config's ``HostKeyAlias``: the name looked up in (and written
        to) known_hosts instead of ``hostname``/``port`` (:attr:`known_hosts_name`).
    :param identity_agent: the ssh-agent socket ssh_config's ``IdentityAgent`` names, when
        it is not ``$SSH_AUTH_SOCK``'s (None: ``$SSH_AUTH_SOCK``).
    :param proxy_command: ssh_config's ``ProxyCommand``, tokens expanded: run with
        ``/bin/sh`` and used as the connection instead of a TCP socket
        (:mod:`concurdeploy.ssh.proxycommand`). Only on a host without ``jump`` or on the
        first hop of a chain.
    :param output_dir: the run's output folder: a command's output past the in-memory cap is
        written there (:mod:`concurdeploy.ssh.spill`); None = counted, not kept.
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
    jump: tuple[ConnectSpec, ...] = ()
    proxy_command: str | None = None
    identity_agent: str | None = None
    host_key_alias: str | None = None
    output_dir: str | None = None

    @property
    def known_hosts_name(self) -> tuple[str, int]:
        """``(name, port)`` that known_hosts lines are matched against and written for:
        ``(host_key_alias, 22)`` (the alias alone, no ``[…]:port``, as ssh does) or
        ``(hostname, port)``."""
        return (self.host_key_alias, 22) if self.host_key_alias else (self.hostname, self.port)

    @property
    def address(self) -> str:
        """``user@host:port`` for messages."""
        user = f"{self.user}@" if self.user else ""
        return f"{user}{self.hostname}:{self.port}"

    @property
    def route(self) -> str:
        """``user@host:port``, followed by `` via hop1, hop2`` when it has jump hosts."""
        if not self.jump:
            return self.address
        return f"{self.address} via {', '.join(h.address for h in self.jump)}"


def _opt(value, kind):
    return None if value is None else kind(value)


#: Settings a ``[user@]host[:port]`` jump hop takes from the host behind it unless the
#: hop (its string or its ssh_config block) sets them itself.
INHERITED_BY_HOPS = ("user", "key_file", "key_env", "passphrase_env", "password_env",
                     "known_hosts", "host_key_policy", "connect_timeout", "command_timeout",
                     "connect_retries", "allow_agent")

#: Most jump hops a host may have (a longer chain is surely a configuration loop).
MAX_HOPS = 8

#: ``overrides`` keys that are not connection vars.
_OVERRIDE_ONLY = ("ssh_config",)


def connect_spec(name: str, hvars: dict, overrides: dict | None = None, *,
                 defaults: dict | None = None, inventory=None) -> ConnectSpec:
    """Build a :class:`ConnectSpec` from a host's merged vars.

    Precedence (lowest first): :data:`DEFAULTS` < ``defaults`` (concurdeploy settings,
    e.g. config ``connect_timeout``; None values ignored) < the host's ssh_config block
    (see :mod:`concurdeploy.ssh.sshconfig`) < host vars < ``overrides`` (CLI flags, only keys
    whose value is not None).

    :param overrides: CLI-level values; besides connection vars it may hold
        ``ssh_config`` (``--ssh-config PATH``: the OpenSSH client config to read instead of
        the ``ssh_config`` var / ``~/.ssh/config``; ``"none"`` = read none).
    :param defaults: concurdeploy settings below ssh_config (pass them here rather than
        merged into ``hvars``, or they would beat ssh_config's ``ConnectTimeout``).
    :param inventory: an :class:`~concurdeploy.inventory.model.Inventory` (or a mapping of host
        name to ``Host``/vars dict) so that a ``jump`` naming an inventory host uses that
        host's connection vars; None = every hop is read as ``[user@]host[:port]``.
    :raises InventoryError: ``host_key_policy`` is not one of strict / accept-new / off, a
        var has the wrong type, a jump chain loops; ``ssh_config`` var names a missing file.
    :raises UsageError: ``--ssh-config`` names a missing file.
    :raises InventoryError: (naming the ssh_config file, line and keyword) ssh would refuse
        the file; a ``ProxyCommand`` on a jump host that is not the first hop;
        ``ProxyUseFdpass yes``.
    """
    return _Resolver(overrides, defaults, inventory).host(name, hvars, ())


class _Resolver:
    def __init__(self, overrides, defaults, inventory):
        self.overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
        self.defaults = {k: v for k, v in (defaults or {}).items() if v is not None}
        hosts = getattr(inventory, "hosts", inventory) or {}
        self.inventory = {n: getattr(h, "vars", h) for n, h in hosts.items()}
        self.proxy_where: dict = {}  # (spec name, command) -> ((file, line), alias)

    def _config(self, name: str, hvars: dict):
        from concurdeploy.inventory import where

        path, explicit, origin = sshconfig.choose(name, hvars, self.overrides)
        location = where(hvars, "ssh_config") if origin.startswith("host ") else (None, None)
        return sshconfig.load(path, explicit, origin, location), path

    def host(self, name: str, hvars: dict, stack: tuple) -> ConnectSpec:
        """The spec of an inventory host (or a host described by a vars dict)."""
        hv = {k: v for k, v in hvars.items() if v is not None}
        ov = {k: v for k, v in self.overrides.items() if k not in _OVERRIDE_ONLY}
        alias = str(hv.get("host") or name)
        if hv.get("connection", "ssh") == "sandbox":
            config, path, found = None, None, {}
        else:
            config, path = self._config(name, hvars)  # hvars: a YamlMapping knows its lines
            given = {**hv, **ov}
            found = sshconfig.settings(config, alias, path or "", user=_opt(given.get("user"), str),
                                       port=_opt(given.get("port"), int))
        merged = {**DEFAULTS, **self.defaults, **_vars(found), **hv, **ov}
        hostname = found.get("host") or alias
        jump = merged.get("jump")
        spec = _spec(name, hostname, merged)
        if "jump" not in hv and "jump" not in ov and found.get("proxycommand"):
            spec = self._proxied(spec, found, alias)
        hops = self.hops(name, alias, jump, merged, config, path, stack + (name,))
        return replace(spec, jump=hops) if hops else spec

    def _proxied(self, spec: ConnectSpec, found: dict, alias: str) -> ConnectSpec:
        """``spec`` with ssh_config's ProxyCommand (expanded for it); remembers its file:line."""
        command = sshconfig.proxy_command(found, spec.hostname, spec.port, spec.user, alias)
        spec = replace(spec, proxy_command=command)
        self.proxy_where[(spec.name, command)] = (found["where"]["proxycommand"], alias)
        return spec

    def hops(self, owner: str, alias: str, jump, merged: dict, config, path, stack: tuple) -> tuple:
        """Resolve a ``jump`` value into a flat tuple of hop specs (first hop first)."""
        if jump is None or (isinstance(jump, str) and jump.strip().lower() == sshconfig.NONE):
            return ()
        if isinstance(jump, str) or (isinstance(jump, (list, tuple))
                                     and all(isinstance(j, str) for j in jump)):
            texts = sshconfig.split_jump(jump)
        else:
            raise InventoryError(f"host {owner}: jump must be a host ('user@bastion:port' or an "
                                 f"inventory host name) or a list of them, got {jump!r}", key="jump")
        chain: list = []
        for text in texts:
            if text in (owner, alias):
                continue  # a host never jumps through itself (e.g. "jump" set on group all)
            if text in stack:
                raise InventoryError(f"host {owner}: jump hosts loop: "
                                     f"{' -> '.join(stack + (text,))}", key="jump")
            if text in self.inventory:
                hop = self.host(text, self.inventory[text], stack)
            else:
                hop = self.hop(owner, text, merged, config, path, stack)
            # The first hop's own jump hosts come before it; a later hop is reached through
            # the hop written before it, whatever its own jump var says.
            chain += [*(() if chain else hop.jump), replace(hop, jump=())]
        for later in chain[1:]:
            if later.proxy_command:  # OpenSSH ignores it there (-J wins): surely not meant
                (path_line, hop_alias) = self.proxy_where[(later.name, later.proxy_command)]
                raise InventoryError(
                    f"host {owner}: jump host {later.name} is not the first hop, but its ssh_config "
                    f"sets ProxyCommand for {hop_alias!r}: only the first hop can be reached through "
                    f"a ProxyCommand (ssh would ignore this one); put that hop first, or use "
                    f"ProxyJump there", *path_line, key="ProxyCommand")
        if len(chain) > MAX_HOPS:
            raise InventoryError(f"host {owner}: more than {MAX_HOPS} jump hosts "
                                 f"({', '.join(h.name for h in chain)}): a loop?", key="jump")
        return tuple(chain)

    def hop(self, owner: str, text: str, behind: dict, config, path, stack: tuple) -> ConnectSpec:
        """The spec of a ``[user@]host[:port]`` hop, looked up in the owner's ssh_config."""
        try:
            user, host, port = sshconfig.parse_hop(text)
        except ValueError as e:
            raise InventoryError(f"host {owner}: {e}", key="jump") from None
        found = sshconfig.settings(config, host, path or "", user=user, port=port)
        merged = {**DEFAULTS, **{k: behind[k] for k in INHERITED_BY_HOPS if k in behind},
                  **{k: v for k, v in _vars(found).items() if k != "jump"}}
        if user:
            merged["user"] = user
        if port:
            merged["port"] = port
        spec = _spec(text, found.get("host") or host, merged, owner=owner)
        if found.get("proxycommand"):
            spec = self._proxied(spec, found, host)
        hops = self.hops(text, host, found.get("jump"), merged, config, path, stack + (text,))
        return replace(spec, jump=hops) if hops else spec


def _vars(found: dict) -> dict:
    """ssh_config's settings as connection vars (without ``host``, ``where``, ``proxycommand``)."""
    return {k: v for k, v in found.items() if k not in ("host", "where", "proxycommand")}


def _spec(name: str, hostname: str, merged: dict, owner: str | None = None) -> ConnectSpec:
    who = f"host {name}" if owner is None else f"host {owner}: jump host {name}"
    policy = merged["host_key_policy"]
    policy = str(policy).lower() if policy is not False else "off"
    if policy not in HOST_KEY_POLICIES:
        raise InventoryError(
            f"{who}: host_key_policy {policy!r} is not one of {', '.join(HOST_KEY_POLICIES)}",
            key="host_key_policy")
    try:
        return _build(name, hostname, merged, policy)
    except (TypeError, ValueError) as e:
        raise InventoryError(f"{who}: a connection var has the wrong type ({e}); ports, "
                             f"timeouts and retries are numbers") from None


def _build(name: str, hostname: str, merged: dict, policy: str) -> ConnectSpec:
    return ConnectSpec(
        name=name,
        hostname=str(hostname),
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
        allow_agent=bool(merged.get("allow_agent", True)) and (
            "SSH_AUTH_SOCK" in os.environ or bool(merged.get("identity_agent"))),
        identity_agent=_opt(merged.get("identity_agent"), str),
        host_key_alias=_opt(merged.get("host_key_alias"), str),
        connect_retries=int(merged["connect_retries"]),
    )
