"""Hosts and host vars given on the command line: ad-hoc targets (``-H``) and vars that beat
the inventory's (``-e``, ``-u``, ``--private-key``, ``-b``).

- :func:`adhoc_inventory`: ``-H deploy@10.0.0.5:2222,web1.example`` → an :class:`Inventory`
  of those hosts (group ``all``; each named by its address, ``address-port`` when one address
  comes with several ports), read through the same :class:`~concurdeploy.inventory.builder.Builder`
  as a file, so every var is checked as in one. No known_hosts or policy var is set: the
  defaults hold (``~/.ssh/known_hosts``, ``strict``).
- :func:`extra_vars`: ``-e`` items → one mapping. ``KEY=VALUE`` (a string, as Ansible's
  ``key=value``; the first ``=`` splits), ``@FILE.yaml`` (a YAML mapping), ``{...}`` (an inline
  YAML/JSON mapping, as ``ansible -e '{"a": 1}'``), or a mapping (from Python). Later items win.
- :func:`override_vars`: those vars set on every host above every inventory layer (Ansible's
  extra vars: the highest precedence); connection aliases (``ansible_user``) resolved and checked
  as in an inventory, plain-text passwords refused. ``Host.origins`` names the flag.

Every refusal is :class:`~concurdeploy.exceptions.UsageError` naming the flag and what to give.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

import yaml

from concurdeploy.exceptions import InventoryError, UsageError
from concurdeploy.inputs import AliasBomb, read_bounded_text, safe_load
from concurdeploy.inventory.builder import Builder
from concurdeploy.inventory.model import Host, Inventory, YamlMapping, where
from concurdeploy.inventory.vars import ALIASES, CONNECTION_VARS, is_template, normalise_vars

__all__ = ["adhoc_inventory", "command_line_vars", "extra_vars", "override_vars", "parse_targets"]

_TARGET = re.compile(r"^(?:(?P<user>[^@\s:]+)@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::(?P<port>\d+))?$")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_targets(spec: str) -> list[tuple[str, dict]]:
    """``user@host:port,host2`` → ``[(name, vars), …]`` in the order given.

    :returns: per target its inventory name (the address; ``address-port`` when the address
        is listed with several ports) and vars (``host``, and ``user``/``port`` when given).
    :raises UsageError: an empty list, a malformed target, a port outside 1-65535, a target twice.
    """
    items = [t.strip() for t in spec.split(",")]
    if not any(items):
        raise UsageError("-H/--hosts is empty: give user@host:port,... (user and port optional)")
    parsed = []
    for item in items:
        m = _TARGET.match(item)
        if not item or not m:
            raise UsageError(f"-H/--hosts {item!r}: give [user@]host[:port] (an IPv6 address in brackets: "
                             f"[::1]:2222), targets separated by commas")
        port = int(m["port"]) if m["port"] else 22
        if not 1 <= port <= 65535:
            raise UsageError(f"-H/--hosts {item!r}: port {port} is not in 1-65535")
        parsed.append((m["host"].strip("[]"), port, m["user"], item))
    ports: dict[str, set] = {}
    for host, port, _, _ in parsed:
        ports.setdefault(host, set()).add(port)
    out, seen = [], {}
    for host, port, user, item in parsed:
        name = host if len(ports[host]) == 1 else f"{host}-{port}"
        if name in seen:
            raise UsageError(f"-H/--hosts lists {seen[name]!r} and {item!r}: the same host twice; give it once")
        seen[name] = item
        hv = {"host": host, "port": port}
        if user:
            hv["user"] = user
        out.append((name, hv))
    return out


def adhoc_inventory(spec: str) -> Inventory:
    """The inventory of ``-H`` targets (group ``all``, hosts ungrouped).

    :raises UsageError: see :func:`parse_targets`; a var refused as an inventory's would be.
    """
    here = ("-H/--hosts", 1)

    def located(mapping: dict) -> YamlMapping:
        out = YamlMapping.at(*here)
        for key, value in mapping.items():
            out.put(key, located(value) if isinstance(value, dict) else value, here)
        return out

    doc = located({"all": {"hosts": dict(parse_targets(spec))}})
    builder = Builder()
    try:
        builder.add_document(doc, "-H/--hosts")
        return builder.build("-H/--hosts", ())
    except InventoryError as e:
        raise UsageError(f"-H/--hosts: {e}") from None


def extra_vars(items: Iterable, cwd: str | None = None) -> dict:
    """The ``-e`` items as one mapping, later items winning.

    :param items: strings (``KEY=VALUE``, ``@FILE``, ``{inline YAML}``) or mappings.
    :param cwd: the project root: a relative ``@FILE`` missing from the current directory is read there.
    :raises UsageError: a malformed item, an unreadable file, a file that is not a mapping.
    """
    out: dict = {}
    for item in items:
        if isinstance(item, Mapping):
            data, label = dict(item), "extra_vars"
        elif item.startswith("@"):
            path = os.path.abspath(os.path.expanduser(item[1:]))
            if not os.path.exists(path) and cwd and not os.path.isabs(os.path.expanduser(item[1:])):
                path = os.path.join(cwd, item[1:])  # as an inventory path: from the project root
            try:
                data = safe_load(read_bounded_text(path))
            except OSError as e:
                raise UsageError(f"-e {item}: cannot read {path}: {e.strerror or e}") from None
            except UnicodeDecodeError:
                raise UsageError(f"-e {item}: {path} is not UTF-8 text") from None
            except AliasBomb as e:
                at = f"{path}:{e.line}" if e.line else path
                raise UsageError(f"-e {item}: {at}: {e}") from None
            except yaml.YAMLError as e:
                raise UsageError(f"-e {item}: {path} is not YAML: {str(e).splitlines()[0]}") from None
            label = f"-e {item}"
            if not isinstance(data, dict):
                raise UsageError(f"{label}: {path} must hold a mapping (key: value lines), not "
                                 f"{type(data).__name__}")
        elif item.lstrip().startswith("{"):
            try:
                data = safe_load(item)
            except AliasBomb as e:
                raise UsageError(f"-e {item[:40]!r}…: {e}") from None
            except yaml.YAMLError as e:
                raise UsageError(f"-e {item!r}: not a YAML/JSON mapping: {str(e).splitlines()[0]}") from None
            label = f"-e {item!r}"
            if not isinstance(data, dict):
                raise UsageError(f"{label}: give a mapping")
        else:
            key, eq, value = item.partition("=")
            if not eq:
                raise UsageError(f"-e {item!r}: give KEY=VALUE (or @FILE.yaml); to set an empty value: {item}=")
            data, label = {key.strip(): value}, f"-e {item!r}"
        for key in data:
            if not isinstance(key, str) or not _KEY.match(key):
                raise UsageError(f"{label}: {key!r} is not a var name (letters, digits, _; not starting with a digit)")
        out.update(data)
    return out


def override_vars(hosts: list[Host], values: Mapping, label: str, drop: tuple[str, ...] = ()) -> list[Host]:
    """``hosts`` with ``values`` set above every inventory layer (``label`` as their origin).

    A connection var's other spellings are dropped (``-e ansible_user=x`` replaces ``user``);
    so are the vars named in ``drop`` (any spelling).

    :raises UsageError: a plain-text password var, a connection var of the wrong type or
        written as a template (give the value itself).
    """
    if not values and not drop:
        return hosts
    try:
        checked = normalise_vars(YamlMapping(values), label)
    except InventoryError as e:
        raise UsageError(str(e)) from None
    resolved = {}
    for key, value in checked.items():
        name = ALIASES.get(key, key)
        if name in CONNECTION_VARS:
            if is_template(value):
                raise UsageError(f"{label}: {key} = {value!r} is a template; give the value itself")
            value = CONNECTION_VARS[name](key, value)
        resolved[name] = value
    gone = set(resolved) | set(drop)
    out = []
    for h in hosts:
        merged = YamlMapping.at(*where(h.vars))
        for key, value in h.vars.items():
            if key not in gone:
                merged.put(key, value, where(h.vars, key))
        origins = {k: v for k, v in h.origins.items() if k not in gone}
        raw = {k: v for k, v in h.raw_vars.items() if ALIASES.get(k, k) not in gone}
        for name, value in resolved.items():
            merged.put(name, value, (label, None))
            origins[name] = label
            raw[name] = value
        out.append(Host(h.name, merged, h.groups, origins, h.source, raw))
    return out


def command_line_vars(hosts: list[Host], *, extra: Iterable = (), user: str | None = None,
                      private_key: str | None = None, become: bool = False,
                      project_dir: str | None = None) -> list[Host]:
    """``hosts`` with the command line's vars on top: ``-e`` items (``extra``: the highest of
    the inventory's precedence), then ``-u``, ``--private-key``, ``-b`` (each beats the same
    var given with ``-e``: one flag, one meaning).

    :param private_key: path (``~`` allowed); sets ``key_file`` and clears ``key_env``.
    :param project_dir: where a relative ``-e @FILE`` is read from.
    :raises UsageError: a bad ``-e`` item, a missing ``--private-key`` file (names the flag).
    """
    hosts = override_vars(hosts, extra_vars(extra, project_dir), "-e/--extra-vars")
    if user:
        hosts = override_vars(hosts, {"user": user}, "-u/--user")
    if private_key:
        path = os.path.abspath(os.path.expanduser(private_key))
        if not os.path.isfile(path):
            from concurdeploy.inventory.pathkind import kind_of

            kind = kind_of(path)
            what = "no such file" if kind == "missing" else f"{kind}, not a private key file"
            raise UsageError(f"--private-key {private_key}: {what} ({path}); give the private "
                             f"key's path; no host was contacted")
        hosts = override_vars(hosts, {"key_file": path}, "--private-key", drop=("key_env", "passphrase_env"))
    if become:
        hosts = override_vars(hosts, {"become": True}, "-b/--become")
    return hosts
