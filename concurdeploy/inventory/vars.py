"""Connection vars: Ansible aliases, value checks, refusals, and their resolution per host.

Two steps, so that the vars stay as written for ``inventory --list`` (``Host.raw_vars``)
while concurdeploy reads its own names (``Host.vars``):

1. :func:`normalise_vars` checks each vars mapping as it is read (every reader calls it):
   connection values have the right type (a ``{{ template }}`` is checked once rendered), a
   password in plain text is refused (:data:`PLAINTEXT_PASSWORD_VARS`: the error names the
   ``*_env`` var to use, never the value), an Ansible var concurdeploy cannot honour is
   refused (:data:`REFUSED`), two spellings of one var with different values in one mapping
   are refused. Every error names file, line and key. Values are kept as written.
2. :func:`resolve_connection_vars` takes one host's merged vars and renames the spellings
   (:data:`SPELLINGS`: ``ansible_host``/``ansible_ssh_host`` → ``host``, …) — the one set by
   the more specific layer wins; two ``ansible_*`` spellings with different values are
   refused (Ansible itself would take the legacy ``ansible_ssh_*`` one whatever the layer,
   which surprises) — renders ``{{ }}`` in connection values with Jinja2 from the host's
   vars (as Ansible does; ``!unsafe`` values are never rendered), converts and checks them.

Decisions (see also the README's Inventory section):

- ``ansible_connection``: ``ssh``, ``paramiko``, ``smart`` → ``connection: ssh``; any other
  value (``local``, ``docker``, …) is kept and refused, naming its file and line, when a run
  selects the host (``inventory --list`` still shows it); ``sandbox`` is concurdeploy's own
  and only as ``connection: sandbox``.
- ``ansible_become_method``: only ``sudo``; anything else is refused where it is written.
- ``ansible_ssh_common_args``, ``ansible_ssh_extra_args``, ``ansible_ssh_args``, scp/sftp
  extra args, ``become_exe``/``become_flags``: refused (concurdeploy speaks SSH with paramiko
  and does not run ``ssh``; the message says which var to use instead).
- :data:`IGNORED` (``ansible_python_interpreter``, pipelining, …): kept as plain vars, no
  effect, harmless for a push.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping

from concurdeploy.exceptions import InventoryError
from concurdeploy.inventory.model import Location, Unsafe, YamlMapping, format_location, where

__all__ = ["ALIASES", "CONNECTION_VARS", "HOST_KEY_POLICIES", "IGNORED", "PLAINTEXT_PASSWORD_VARS", "REFUSED",
           "SPELLINGS", "describe", "normalise_vars", "resolve_connection_vars"]

#: concurdeploy var -> its Ansible spellings, lowest Ansible priority first (Ansible takes the
#: last one set: ``config/manager.py`` ``_loop_entries``; the plugins' ``vars:`` lists).
SPELLINGS = {
    "host": ("ansible_host", "ansible_ssh_host"),
    "port": ("ansible_port", "ansible_ssh_port"),
    "user": ("ansible_user", "ansible_ssh_user"),
    "key_file": ("ansible_private_key_file", "ansible_ssh_private_key_file"),
    "connect_timeout": ("ansible_timeout", "ansible_ssh_timeout"),
    "host_key_policy": ("ansible_host_key_checking", "ansible_ssh_host_key_checking"),
    "connection": ("ansible_connection",),
    "become": ("ansible_become",),
    "become_user": ("ansible_become_user", "ansible_sudo_user"),
    "become_method": ("ansible_become_method",),
}

#: Ansible spelling -> concurdeploy spelling.
ALIASES = {alias: name for name, aliases in SPELLINGS.items() for alias in aliases}

#: Ansible vars with no effect here, on purpose (harmless for a push over SFTP + sh).
IGNORED = ("ansible_python_interpreter", "ansible_pipelining", "ansible_ssh_pipelining",
           "ansible_shell_type", "ansible_shell_executable", "ansible_ssh_executable",
           "ansible_ssh_transfer_method", "ansible_sftp_batch_mode", "ansible_ssh_retries",
           "ansible_control_path", "ansible_control_path_dir", "ansible_ssh_use_tty")

_SSH_ARGS = ("concurdeploy connects with paramiko and runs no ssh command, so ssh options cannot be "
             "passed through: use the jump var for -J/ProxyJump/ProxyCommand, host_key_policy for "
             "StrictHostKeyChecking, known_hosts for UserKnownHostsFile, connect_timeout for "
             "ConnectTimeout, or an ssh_config file (ssh_config var) for the rest")
#: Ansible vars concurdeploy cannot honour -> what to do instead (refused when non-empty).
REFUSED = {
    "ansible_ssh_common_args": _SSH_ARGS,
    "ansible_ssh_extra_args": _SSH_ARGS,
    "ansible_ssh_args": _SSH_ARGS,
    "ansible_scp_extra_args": _SSH_ARGS,
    "ansible_sftp_extra_args": _SSH_ARGS,
    "ansible_paramiko_proxy_command": "use the jump var (a bastion host) instead of a proxy command",
    "ansible_become_exe": "concurdeploy runs sudo itself; remove it",
    "ansible_become_flags": "concurdeploy runs sudo with its own flags; remove it",
    "ansible_sudo_exe": "concurdeploy runs sudo itself; remove it",
    "ansible_sudo_flags": "concurdeploy runs sudo with its own flags; remove it",
}
HOST_KEY_POLICIES = ("strict", "accept-new", "off")


def describe(value) -> str:
    """Describe a YAML value's type for an error message ("a list", "the string 'x'")."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the string {value!r}"
    return f"{type(value).__name__} {value!r}"


# --------------------------------------------------------------------------- value checks

def _check_str(name, value):
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _check_port(name, value):
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError(f"{name} must be an integer from 1 to 65535, got {value!r}")
    return value


_TRUE = ("y", "yes", "on", "1", "true", "t")
_FALSE = ("n", "no", "off", "0", "false", "f")


def _ansible_bool(name, value) -> bool:
    """Ansible's boolean: true/false, 1/0, or a string among yes/no, on/off, true/false, y/n, t/f, 1/0."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, (str, int, float)) else None
    if text in _TRUE or text == "1.0":
        return True
    if text in _FALSE or text == "0.0":
        return False
    raise ValueError(f"{name} must be a boolean (true/false, yes/no), got {describe(value)}")


def _check_policy(name, value):
    if name in SPELLINGS["host_key_policy"]:  # Ansible's host_key_checking is a boolean
        return "strict" if _ansible_bool(name, value) else "off"
    if value is False:  # YAML 1.1 reads a bare ``off`` as false
        value = "off"
    if value not in HOST_KEY_POLICIES:
        raise ValueError(f"{name} must be one of {', '.join(HOST_KEY_POLICIES)}, got {value!r}")
    return value


def _check_seconds(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return value


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _check_jump(name, value):
    hops = value if isinstance(value, list) else [value]
    if not hops or not all(isinstance(h, str) and h.strip() for h in hops):
        raise ValueError(f"{name} must be a jump host ('user@bastion:port', an inventory host "
                         f"name, or 'none') or a list of them, got {describe(value)}")
    return value


def _check_become(name, value):
    if name == "become":
        return value  # checked where it is used (operations.service.become_of)
    return _ansible_bool(name, value)


def _check_connection(name, value):
    value = _check_str(name, value)
    if name == "ansible_connection":
        if value == "sandbox":
            raise ValueError("sandbox is concurdeploy's own connection: write 'connection: sandbox'")
        if value.rsplit(".", 1)[-1] in ("ssh", "paramiko", "paramiko_ssh", "smart"):
            return "ssh"
    return value


def _check_become_method(name, value):
    if value != "sudo":
        raise ValueError(f"{name} {value!r} is not supported: concurdeploy becomes another user with "
                         "sudo only; set it to sudo or remove it")
    return value


#: Connection var -> checker ``(name, value) -> normalised value``, raising ValueError.
CONNECTION_VARS = {
    "host": _check_str,
    "port": _check_port,
    "user": _check_str,
    "key_file": _check_str,
    "key_env": _check_str,
    "password_env": _check_str,
    "known_hosts": _check_str,
    "host_key_policy": _check_policy,
    "connect_timeout": _check_seconds,
    "command_timeout": _check_seconds,
    "forks": _check_positive_int,
    "ssh_config": _check_str,
    "jump": _check_jump,
    "connection": _check_connection,
    "become": _check_become,
    "become_user": _check_str,
    "become_method": _check_become_method,
}

#: Vars that would hold a password in plain text -> the var to use instead (it names an
#: environment variable holding the password).
PLAINTEXT_PASSWORD_VARS = {
    "password": "password_env",
    "ansible_password": "password_env",
    "ansible_ssh_pass": "password_env",
    "ansible_ssh_password": "password_env",
    "ansible_become_pass": "become_password_env",
    "ansible_become_password": "become_password_env",
    "ansible_sudo_pass": "become_password_env",
    "become_password": "become_password_env",
    "ansible_paramiko_pass": "password_env",
    "ansible_paramiko_password": "password_env",
    "ansible_private_key": "key_env",
    "ansible_ssh_private_key": "key_env",
    "ansible_private_key_passphrase": "passphrase_env",
    "ansible_ssh_private_key_passphrase": "passphrase_env",
}


def _refuse_plaintext_password(key, value, owner: str, location: Location) -> None:
    """:raises InventoryError: ``key`` is a password var with a literal value. The value
    itself is never put in the message."""
    fix = PLAINTEXT_PASSWORD_VARS.get(key)
    if fix is None or value is None or value == "":
        return
    if is_template(value):  # "{{ vault_x }}": a reference to another var, not plain text
        if fix == "become_password_env":
            return  # its rendered value is a secret (masked); operations.service.become_of decides
        raise InventoryError(
            f"{owner}: {key!r} is a reference ({{{{ }}}}), not plain text, but concurdeploy reads "
            f"this secret only from an environment variable: set {fix}: NAME (the variable's "
            f"name) instead", *location, key=str(key))
    raise InventoryError(
        f"{owner}: {key!r} holds a password in plain text, which the inventory must not "
        f"(it is read by everyone who can read the repository); put it in an environment "
        f"variable and set {fix}: NAME (the variable's name) instead",
        *location, key=str(key))


# --------------------------------------------------------------------------- one vars mapping

def is_template(value) -> bool:
    """A string Ansible would render (``{{ }}``/``{% %}``), and not marked ``!unsafe``."""
    return isinstance(value, str) and not isinstance(value, Unsafe) and ("{{" in value or "{%" in value)


def _convert(key, value):
    """``value`` of var ``key`` (any spelling) converted and checked; raises ValueError."""
    check = CONNECTION_VARS.get(ALIASES.get(key, key))
    return value if check is None else check(key, value)


def normalise_vars(mapping, owner: str) -> YamlMapping:
    """Check one vars mapping as read (step 1 of the module docstring); values kept as written.

    :param mapping: a vars ``YamlMapping`` (not modified).
    :param owner: ``"group 'web'"`` or ``"host 'lb1'"``, for messages.
    :returns: a new ``YamlMapping`` with the same keys, values and locations.
    :raises InventoryError: bad type or value; a plain-text password; a refused var; two
        spellings of one var with different values.
    """
    out = YamlMapping.at(*where(mapping))
    seen: dict[str, tuple] = {}  # concurdeploy name -> (spelling, converted value)
    for key, value in mapping.items():
        location = where(mapping, key)
        _refuse_plaintext_password(key, value, owner, location)
        if key in REFUSED and value not in (None, ""):
            raise InventoryError(f"{owner}: {key!r} is not supported: {REFUSED[key]}", *location, key=str(key))
        name = ALIASES.get(key, key)
        if name in CONNECTION_VARS and not is_template(value):
            try:
                converted = _convert(key, value)
            except ValueError as err:
                raise InventoryError(f"{owner}: {err}", *location, key=str(key)) from None
            if name in seen and seen[name][1] != converted:
                raise InventoryError(
                    f"{owner} sets both {seen[name][0]!r} and {key!r} with different values "
                    f"({mapping[seen[name][0]]!r} vs {value!r}); both mean {name!r}: keep one",
                    *location, key=str(key))
            seen.setdefault(name, (key, converted))
        out.put(key, value, location)
    return out


# --------------------------------------------------------------------------- one host's merged vars

class _TemplateVars(Mapping):
    """A host's vars for Jinja2: a string holding ``{{ }}`` is rendered when read (as Ansible's
    lazy templating does), at most :data:`_MAX_DEPTH` levels deep."""

    def __init__(self, data: Mapping, depth: int = 0):
        self.data, self.depth = data, depth

    def __getitem__(self, key):
        value = self.data[key]
        return _render(value, self.data, self.depth + 1) if is_template(value) else value

    def __iter__(self):
        return iter(self.data)

    def __len__(self):
        return len(self.data)


_MAX_DEPTH = 20
_ENV = None


def _render(text: str, data: Mapping, depth: int = 0) -> str:
    """Render ``text`` with Jinja2 (sandboxed, undefined names are errors); raises ValueError."""
    global _ENV
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    if depth > _MAX_DEPTH:
        raise ValueError(f"templates nested more than {_MAX_DEPTH} deep (a var that refers to itself?)")
    if _ENV is None:
        _ENV = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
        _ENV.filters["quote"] = lambda v: shlex.quote("" if v is None else str(v))  # as operations.templating
    try:
        template = _ENV.from_string(text)
        return _ENV.concat(template.root_render_func(template.new_context(_TemplateVars(data, depth), shared=True)))
    except ValueError:
        raise
    except jinja2.TemplateError as err:
        raise ValueError(f"cannot render {text!r}: {err}") from None


def resolve_connection_vars(host: str, merged: YamlMapping, origins: dict, rank: Mapping,
                            context: Mapping) -> YamlMapping:
    """Step 2 of the module docstring for one host.

    :param host: the inventory name, for messages.
    :param merged: the host's merged vars as written (not modified).
    :param origins: var -> where its value came from; updated in place for the renamed vars.
    :param rank: var -> index of the layer that set it (a higher one is more specific).
    :param context: extra names for templates (magic vars: ``inventory_hostname``, …).
    :returns: a new ``YamlMapping``: every spelling of a connection var under concurdeploy's
        name, rendered, converted and checked; other vars as they were.
    :raises InventoryError: two ``ansible_*`` spellings with different values; a template
        that fails; a value of the wrong type once rendered (file, line and key named).
    """
    out = YamlMapping.at(*where(merged))
    for key, value in merged.items():
        if key not in ALIASES and key not in CONNECTION_VARS:
            out.put(key, value, where(merged, key))
    data = {**merged, **{k: v for k, v in context.items() if k not in merged}}
    for name in CONNECTION_VARS:
        present = [s for s in (name, *SPELLINGS.get(name, ())) if s in merged]
        if not present:
            continue
        ansible = [s for s in present if s != name]
        for other in ansible[1:]:
            if merged[other] != merged[ansible[0]]:
                raise InventoryError(
                    f"host {host!r}: {ansible[0]!r} = {merged[ansible[0]]!r} ({origins.get(ansible[0])}) and "
                    f"{other!r} = {merged[other]!r} ({origins.get(other)}) both set {name!r}; Ansible would "
                    f"take {ansible[-1]!r} whatever the group or host it is set on: keep one",
                    *where(merged, other), key=str(other))
        winner = max(present, key=lambda s: rank.get(s, -1))
        location, value = where(merged, winner), merged[winner]
        try:
            if name in SPELLINGS and is_template(value):
                value = _render(value, data)
            value = _convert(winner, value)
        except ValueError as err:
            raise InventoryError(f"host {host!r}: {err}", *location, key=str(winner)) from None
        out.put(name, value, location)
        origins[name] = origins.get(winner, format_location(location))
        for spelling in present:
            if spelling != name:
                origins.pop(spelling, None)
    return out
