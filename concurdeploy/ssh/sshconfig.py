"""OpenSSH client configuration (``~/.ssh/config``), read with paramiko's ``SSHConfig``.

Which file
    ``--ssh-config PATH`` (a task flag; ``overrides["ssh_config"]`` for
    :func:`concurdeploy.ssh.specs.connect_spec`) > the ``ssh_config`` var (any inventory level)
    > ``~/.ssh/config``. A file given explicitly (flag or var) that does not exist is an
    error (exit code 2); a missing ``~/.ssh/config`` just means no OpenSSH settings.
    ``ssh_config: none`` (or ``--ssh-config none``) reads no file at all. ``~`` is expanded;
    a relative path is relative to the current directory. Hosts with ``connection:
    sandbox`` never read it.

Which name is looked up
    The host's ``host`` var, i.e. what you would type after ``ssh`` (it defaults to the
    inventory name), so ``Host`` aliases work: ``web1: {host: web1-prod}`` with a ``Host
    web1-prod`` block, or simply an inventory host named like the alias. Every matching
    ``Host``/``Match`` block applies, the first value of each keyword winning, as OpenSSH does.

Keywords honoured (others are ignored)
    ===============  ===========================================================
    ``HostName``     the address connected to (the looked-up name when absent)
    ``Port``         ``port``
    ``User``         ``user``
    ``IdentityFile`` ``key_file``: the first listed file that exists (``~``, ``%d``,
                     ``%u``, ``%h``… expanded by paramiko); none existing = not set
    ``ProxyJump``    ``jump``: comma-separated ``[user@]host[:port]`` hops, or ``none``
    ``ConnectTimeout`` ``connect_timeout`` (seconds)
    ===============  ===========================================================

    ``ProxyCommand`` is not supported: a host whose ssh_config sets it (and whose
    inventory sets no ``jump``) is refused with exit code 2 rather than silently connected
    to directly. ``Include`` is not supported by paramiko's parser.

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
    ``User``, ``IdentityFile``, ``ProxyJump`` apply); what such a hop does not set itself
    (user, key and password settings, known_hosts, host_key_policy, timeouts) it inherits
    from the host behind it. The first hop's own jump hosts (its ``jump`` var or
    ``ProxyJump``) come before it; later hops are reached through the hop written before
    them. ``jump: none`` turns off a ``ProxyJump`` from ssh_config. A hop naming the host
    itself is skipped (so ``jump: bastion`` set on group ``all`` does not make the bastion
    jump through itself); a real cycle is an error. At most 8 hops.

The file is read in the controller, once per file (re-read if it changes), when the
:class:`~concurdeploy.ssh.specs.ConnectSpec` objects are built: the specs carry the resolved
values and worker processes never read it.
"""

from __future__ import annotations

import os
import threading

from concurdeploy.exceptions import InventoryError, UsageError
from concurdeploy.ssh.openssh_lex import parse_hop

__all__ = ["DEFAULT_PATH", "NONE", "choose", "load", "parse_hop", "settings", "split_jump"]

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


def load(path: str | None, explicit: bool = False, origin: str = "ssh_config",
         location: tuple = (None, None)):
    """Parse an OpenSSH client config file (cached until the file changes).

    :param explicit: the operator named this file: missing is an error. Otherwise (the
        default ``~/.ssh/config``) missing means None.
    :param location: ``(path, line)`` of the var that named it, for the error.
    :returns: a ``paramiko.SSHConfig``, or None.
    :raises UsageError: (``InventoryError`` when named by a var) missing or unreadable
        explicit file, or a file paramiko cannot parse.
    """
    if path is None:
        return None
    full = os.path.abspath(os.path.expanduser(path))
    try:
        st = os.stat(full)
    except OSError as e:
        if not explicit:
            return None
        _fail(f"{origin} {path}: {e.strerror or e} (give an existing OpenSSH client config "
              f"file, or 'none' to read none)", origin, location)
    key = (full, st.st_mtime_ns, st.st_size)
    with _lock:
        cfg = _cache.get(full)
        if cfg is not None and cfg[0] == key:
            return cfg[1]
    import paramiko  # only when a file exists: the CLI does not pay for it otherwise

    try:
        with open(full, encoding="utf-8", errors="replace") as f:
            parsed = paramiko.SSHConfig()
            parsed.parse(f)
    except OSError as e:
        if not explicit:
            return None
        _fail(f"{origin} {path}: cannot read it: {e.strerror or e}", origin, location)
    except Exception as e:  # paramiko.ConfigParseError and friends
        _fail(f"{origin} {path}: cannot parse it ({_one_line(e)})", origin, location)
    with _lock:
        _cache[full] = (key, parsed)
    return parsed


def _fail(message: str, origin: str, location: tuple):
    if origin.startswith("host "):
        raise InventoryError(message, *location, key="ssh_config")
    raise UsageError(message)


def settings(config, alias: str, path: str = "ssh_config") -> dict:
    """The concurdeploy connection vars that ssh_config sets for ``alias``.

    :param config: a ``paramiko.SSHConfig`` or None (then ``{}``).
    :returns: a subset of ``host`` (from HostName), ``port``, ``user``, ``key_file``,
        ``jump`` (a list of hops, or ``"none"``), ``connect_timeout``, ``proxycommand``.
    :raises UsageError: a value of the wrong type (e.g. ``Port abc``).
    """
    if config is None:
        return {}
    try:
        found = config.lookup(alias)
    except Exception as e:  # e.g. a failing "Match exec"
        raise UsageError(f"ssh_config {path}: looking up {alias!r} failed ({_one_line(e)})") from None
    out: dict = {}
    if found.get("hostname"):
        out["host"] = str(found["hostname"])
    if "port" in found:
        try:
            port = int(found["port"])
        except ValueError:
            port = 0
        if not 1 <= port <= 65535:
            raise UsageError(f"ssh_config {path}: Port {found['port']!r} for {alias!r} is not a "
                             f"port number")
        out["port"] = port
    if found.get("user"):
        out["user"] = str(found["user"])
    for candidate in found.get("identityfile", ()) or ():
        if os.path.isfile(os.path.expanduser(candidate)):
            out["key_file"] = candidate
            break
    if found.get("proxyjump"):
        value = str(found["proxyjump"]).strip()
        out["jump"] = NONE if value.lower() == NONE else split_jump(value)
    if found.get("proxycommand") and str(found["proxycommand"]).strip().lower() != NONE:
        out["proxycommand"] = str(found["proxycommand"])
    if "connecttimeout" in found:
        try:
            seconds = float(found["connecttimeout"])
        except ValueError:
            seconds = 0.0
        if not seconds > 0:
            raise UsageError(f"ssh_config {path}: ConnectTimeout {found['connecttimeout']!r} for "
                             f"{alias!r} is not a positive number of seconds")
        out["connect_timeout"] = seconds
    return out


def split_jump(value) -> list[str]:
    """A ``jump`` value (string with commas, or list of strings) as a list of hop strings."""
    items = value if isinstance(value, (list, tuple)) else [value]
    hops = []
    for item in items:
        hops += [part.strip() for part in str(item).split(",") if part.strip()]
    return hops


def _one_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__
