"""OpenSSH client configuration (``~/.ssh/config``), read as ``ssh -G`` reads it.

The reader is :mod:`concurdeploy.ssh.openssh_config` (OpenSSH's rules: ``Include``,
``Match``, tokens, comments, quoting, first value wins), checked against ``ssh -G`` by
``tests/differential/test_sshconfig_vs_openssh.py``. It is used whether or not an OpenSSH
client is installed, so a host resolves the same everywhere; the installed ``ssh`` is
asked only about a keyword the reader does not know (:func:`~concurdeploy.ssh.
openssh_config.ssh_knows`: a newer OpenSSH's). Not ``ssh -G`` for every host, on purpose:
its output cannot tell a value the file sets from a default (``Port 22``, ``User`` = you),
which the precedence below needs; it takes ``~`` from the passwd entry, not ``$HOME``; it
would run ``Match exec`` commands a second time; and it would cost a process per host.

Which file
    ``--ssh-config PATH`` (a task flag; ``overrides["ssh_config"]`` for
    :func:`concurdeploy.ssh.specs.connect_spec`) > the ``ssh_config`` var (any inventory level)
    > ``~/.ssh/config``. A file given explicitly (flag or var) that does not exist is an
    error (exit code 2); a missing ``~/.ssh/config`` just means no OpenSSH settings (but
    one writable by group or others is refused, as ssh refuses it). ``ssh_config: none``
    (or ``--ssh-config none``) reads no file at all. ``~`` is expanded; a relative path is
    relative to the current directory. ``/etc/ssh/ssh_config`` is not read (as with
    ``ssh -F``). Hosts with ``connection: sandbox`` never read it.

Which name is looked up
    The host's ``host`` var, i.e. what you would type after ``ssh`` (it defaults to the
    inventory name), so ``Host`` aliases work: ``web1: {host: web1-prod}`` with a ``Host
    web1-prod`` block, or simply an inventory host named like the alias. The inventory's
    (or the flags') ``user`` and ``port`` are set first, like ``ssh -l``/``-p``: ``Match
    user`` and ``%r``/``%p`` see them. Lookups are cached per file and name, so a ``Match
    exec`` command runs once per name in a run, not once per host.

Keywords honoured (others are checked as ssh checks them, then ignored)
    ==================  ===========================================================
    ``HostName``        the address connected to (``%h`` expanded; the name when absent)
    ``Port``            ``port``
    ``User``            ``user``
    ``IdentityFile``    ``key_file``: the first listed file that exists (``~``, ``${ENV}``,
                        ``%h %p %r %u %n %d %C %L %l %i %k %%`` expanded); none = not set
    ``ProxyJump``       ``jump``: comma-separated ``[user@]host[:port]`` hops, or ``none``
    ``ConnectTimeout``  ``connect_timeout`` (seconds; ``1m30s`` forms; 0 is refused)
    ``IdentitiesOnly``  ``yes``: no agent keys (only the key files)
    ``HostKeyAlias``    ``host_key_alias``: the name known_hosts is checked (and written) for
    ``IdentityAgent``   ``none``: no agent; ``SSH_AUTH_SOCK``: the usual agent; a socket
                        path (``~``, ``%`` tokens, ``${ENV}``) or ``$NAME``: that agent
    ==================  ===========================================================

    ``ProxyCommand``: run as ssh runs it (``/bin/sh -c "exec CMD"``, ``%h %p %r %n %k %%``
    expanded for the host as finally resolved) and used as the connection
    (:mod:`concurdeploy.ssh.proxycommand`: minimal environment, killed with the
    connection). Honoured on a host and on the first hop of a ``ProxyJump`` chain, as
    ``ssh -J`` does; on a later hop ssh would silently ignore it, so it is refused (exit 2,
    file, line and keyword named), as is ``ProxyUseFdpass yes``. As in OpenSSH, the first
    of ``ProxyJump``/``ProxyCommand`` wins (the later one is ignored); the inventory's
    ``jump`` var replaces both.

Precedence, lowest first, for every connection setting
    1. built-in defaults (:data:`concurdeploy.ssh.specs.DEFAULTS`) and concurdeploy settings
       (``concurdeploy.yaml``, ``CONCURDEPLOY_*``: the ``defaults`` of ``connect_spec``);
    2. ssh_config (the blocks matching the looked-up name);
    3. inventory vars (host > child group > parent group > ``all``);
    4. task flags (``--host-key-policy``, ``--connect-timeout``, ``--known-hosts`` …).

    The ``host`` var is the looked-up name, so ssh_config's ``HostName`` replaces it; to
    bypass an alias write the address itself in ``host``.

Jump hosts (``jump`` var or ``ProxyJump``)
    One hop or a list of them (a YAML list, or commas), first hop first. A hop is either
    the name of an inventory host (its own connection vars are used) or
    ``[user@]host[:port]``, looked up in the same ssh_config (its ``HostName``, ``Port``,
    ``User``, ``IdentityFile``, ``ProxyJump``, ``ConnectTimeout``, ``IdentitiesOnly``,
    ``IdentityAgent`` apply, and its ``ProxyCommand`` if it is the first hop); what such a hop does not set itself
    (user, key and password settings, known_hosts, host_key_policy, timeouts) it inherits
    from the host behind it. The first hop's own jump hosts (its ``jump`` var or
    ``ProxyJump``) come before it; later hops are reached through the hop written before
    them. ``jump: none`` turns off a ``ProxyJump`` from ssh_config. A hop naming the host
    itself is skipped (so ``jump: bastion`` set on group ``all`` does not make the bastion
    jump through itself); a real cycle is an error. At most 8 hops.

The file is read in the controller, once per file and name (re-read if it changes), when the
:class:`~concurdeploy.ssh.specs.ConnectSpec` objects are built: the specs carry the resolved
values and worker processes never read it.
"""

from __future__ import annotations

import os
import threading

from concurdeploy.exceptions import InventoryError, UsageError
from concurdeploy.ssh import openssh_config
from concurdeploy.ssh.openssh_lex import hop_texts, parse_hop

__all__ = ["DEFAULT_PATH", "NONE", "Config", "choose", "load", "parse_hop", "proxy_command", "settings",
           "split_jump"]

#: The file read when neither ``--ssh-config`` nor the ``ssh_config`` var names one.
DEFAULT_PATH = "~/.ssh/config"
#: The value that turns ssh_config (or a jump) off.
NONE = "none"

_lock = threading.Lock()
_cache: dict = {}


def choose(name: str, hvars: dict, overrides: dict | None) -> tuple[str | None, bool, str]:
    """Which ssh_config file applies to host ``name``.

    :returns: ``(path or None, explicit, origin)``; ``origin`` names the flag or var for
        messages; ``path`` is None for ``none``.
    """
    flag = (overrides or {}).get("ssh_config")
    if flag:
        path, explicit, origin = str(flag), True, "--ssh-config"
    elif hvars.get("ssh_config"):
        path, explicit, origin = str(hvars["ssh_config"]), True, f"host {name}: ssh_config"
    else:
        path, explicit, origin = DEFAULT_PATH, False, DEFAULT_PATH
    if path.strip().lower() == NONE:
        return None, explicit, origin
    return path, explicit, origin


class Config:
    """One ssh_config file, ready for lookups (:func:`load` makes it; cached per file).

    Lookups are cached per (name, user, port): a ``Match exec`` command runs once per
    distinct lookup in a process, never again for the next host with the same name.
    """

    def __init__(self, path: str, check_perm: bool):
        self.path = path
        self.check_perm = check_perm
        self._found: dict = {}
        self._lock = threading.Lock()

    def lookup(self, name: str, user: str | None = None, port: int | None = None) -> openssh_config.Found:
        """What the file says for ``name`` (see :func:`concurdeploy.ssh.openssh_config.lookup`).

        :raises InventoryError: ssh would refuse the file (file, line and keyword named).
        """
        key = (name, user, port)
        with self._lock:
            if key not in self._found:
                self._found[key] = openssh_config.lookup(self.path, name, user=user, port=port,
                                                         check_perm=self.check_perm)
            return self._found[key]


def load(path: str | None, explicit: bool = False, origin: str = "ssh_config",
         location: tuple = (None, None)) -> Config | None:
    """The OpenSSH client config file ``path`` (cached until the file changes).

    :param explicit: the operator named this file: missing is an error. Otherwise (the
        default ``~/.ssh/config``) missing means None; it must then not be writable by
        group/others, as ssh requires.
    :param location: ``(path, line)`` of the var that named it, for the error.
    :returns: a :class:`Config`, or None.
    :raises UsageError: (``InventoryError`` when named by a var) missing or unreadable
        explicit file.
    """
    if path is None:
        return None
    full = os.path.abspath(os.path.expanduser(path))
    try:
        st = os.stat(full)
        if not os.access(full, os.R_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as e:
        if not explicit:
            return None
        _fail(f"{origin} {path}: {e.strerror or e} (give an existing OpenSSH client config "
              f"file, or 'none' to read none)", origin, location)
    key = (full, st.st_mtime_ns, st.st_size, os.path.expanduser("~"))
    with _lock:
        cfg = _cache.get(full)
        if cfg is None or cfg[0] != key:
            cfg = _cache[full] = (key, Config(full, check_perm=not explicit))
        return cfg[1]


def _fail(message: str, origin: str, location: tuple):
    if origin.startswith("host "):
        raise InventoryError(message, *location, key="ssh_config")
    raise UsageError(message)


def settings(config: Config | None, alias: str, path: str = "ssh_config", user: str | None = None,
             port: int | None = None) -> dict:
    """The concurdeploy connection vars that ssh_config sets for ``alias``.

    :param user: / :param port: the values the inventory or flags give (ssh's ``-l``/``-p``):
        ``Match user`` and the ``%r``/``%p`` tokens see them.
    :returns: a subset of ``host`` (from HostName), ``port``, ``user``, ``key_file`` (the
        first IdentityFile that exists, tokens and ``~`` expanded), ``jump`` (a list of hops,
        or ``"none"``), ``connect_timeout``, ``allow_agent`` (False for ``IdentitiesOnly
        yes`` or ``IdentityAgent none``), ``identity_agent`` (another agent socket),
        ``proxycommand``, ``host_key_alias``; and ``where``: keyword →
        ``(file, line)``.
    :raises InventoryError: ssh would refuse the file, or a value concurdeploy cannot honour
        (``ConnectTimeout 0``, ``ProxyUseFdpass yes``).
    """
    if config is None:
        return {}
    found = config.lookup(alias, user, port)
    opts, where = found.options, found.where
    out: dict = {"where": where}
    if "hostname" in where:
        out["host"] = found.host
    for key in ("port", "user"):
        if key in where:
            out[key] = opts[key]
    for candidate, line in zip(opts.get("identityfile", ()), found.identity_where):
        expanded = openssh_config.expand(candidate, found, where=line)
        if os.path.isfile(expanded):
            out["key_file"] = expanded
            break
    if "proxyjump" in opts:
        out["jump"] = NONE if opts["proxyjump"] == NONE else split_jump(hop_texts(opts["proxyjump"]))
    if opts.get("proxycommand", NONE) != NONE:
        if opts.get("proxyusefdpass") == "yes":
            raise InventoryError(f"ssh_config: ProxyUseFdpass yes for {alias!r}: concurdeploy cannot take "
                                 f"a socket from its ProxyCommand; use ProxyUseFdpass no (the command "
                                 f"relays the connection on its stdin/stdout)",
                                 *where["proxyusefdpass"], key="ProxyUseFdpass")
        out["proxycommand"] = opts["proxycommand"]
    if opts.get("hostkeyalias"):
        out["host_key_alias"] = opts["hostkeyalias"]
    if "connecttimeout" in opts:
        if opts["connecttimeout"] <= 0:
            raise InventoryError(f"ssh_config: ConnectTimeout {opts['connecttimeout']} for {alias!r}: "
                                 f"concurdeploy needs a positive number of seconds",
                                 *where["connecttimeout"], key="ConnectTimeout")
        out["connect_timeout"] = float(opts["connecttimeout"])
    if opts.get("identitiesonly") == "yes":
        out["allow_agent"] = False
    agent = opts.get("identityagent")
    if agent is not None and agent != "SSH_AUTH_SOCK":  # SSH_AUTH_SOCK: the usual agent
        if agent == NONE:
            path = None
        elif agent.startswith("$") and not agent.startswith("${"):  # $NAME: that variable's socket
            path = os.environ.get(agent[1:]) or None
        else:
            path = openssh_config.expand(agent, found, where=where["identityagent"], keyword="IdentityAgent")
        if path is None:
            out["allow_agent"] = False  # as ssh: IdentityAgent none, or $NAME unset
        elif path != os.environ.get("SSH_AUTH_SOCK"):
            out["identity_agent"] = path
    return out


def proxy_command(found: dict, hostname: str, port: int, user: str | None, alias: str) -> str:
    """The expanded ``ProxyCommand`` of ``found`` (from :func:`settings`) for the host as
    finally resolved (``user`` None = the local user, as ssh's ``%r``).

    :raises InventoryError: a token ssh does not know there (file and line named).
    """
    import pwd

    return openssh_config.proxy_command(found["proxycommand"], host=hostname, port=port,
                                        user=user or pwd.getpwuid(os.getuid()).pw_name, original=alias,
                                        keyalias=found.get("host_key_alias"),
                                        where=found["where"]["proxycommand"])


def split_jump(value) -> list[str]:
    """A ``jump`` value (string with commas, or list of strings) as a list of hop strings."""
    items = value if isinstance(value, (list, tuple)) else [value]
    hops = []
    for item in items:
        hops += [part.strip() for part in str(item).split(",") if part.strip()]
    return hops
