"""Connection vars: Ansible aliases, value checks, and the refusal of plain-text passwords.

Connection aliases are renamed at load time: ``ansible_host`` → ``host``, ``ansible_port``
→ ``port``, ``ansible_user`` → ``user``, ``ansible_ssh_private_key_file`` → ``key_file``
(:data:`ALIASES`). Connection vars are type-checked (:data:`CONNECTION_VARS`); other vars
are free-form, except that a password written in plain text (``password``,
``ansible_password``, ``ansible_ssh_pass``, ``ansible_become_pass`` …, see
:data:`PLAINTEXT_PASSWORD_VARS`) is refused: the error names file, line and the ``*_env``
var to use, never the value.

:func:`normalise_vars` applies all of this to one host's or group's vars mapping; every
inventory reader calls it on each vars mapping it reads.
"""

from __future__ import annotations

from concurdeploy.exceptions import InventoryError
from concurdeploy.inventory.model import Location, YamlMapping, where

__all__ = ["ALIASES", "CONNECTION_VARS", "HOST_KEY_POLICIES", "PLAINTEXT_PASSWORD_VARS", "describe",
           "normalise_vars"]

#: Ansible spelling -> concurdeploy spelling.
ALIASES = {
    "ansible_host": "host",
    "ansible_port": "port",
    "ansible_user": "user",
    "ansible_ssh_private_key_file": "key_file",
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


def _check_policy(name, value):
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
}


def _refuse_plaintext_password(key, value, owner: str, location: Location) -> None:
    """:raises InventoryError: ``key`` is a password var with a literal value. The value
    itself is never put in the message."""
    fix = PLAINTEXT_PASSWORD_VARS.get(key)
    if fix is None or value is None or value == "":
        return
    raise InventoryError(
        f"{owner}: {key!r} holds a password in plain text, which the inventory must not "
        f"(it is read by everyone who can read the repository); put it in an environment "
        f"variable and set {fix}: NAME (the variable's name) instead",
        *location, key=str(key))


# --------------------------------------------------------------------------- one vars mapping

def normalise_vars(mapping, owner: str) -> YamlMapping:
    """Rename connection aliases and check connection var types.

    :param mapping: a vars ``YamlMapping`` (not modified).
    :param owner: ``"group 'web'"`` or ``"host 'lb1'"``, for messages.
    :returns: a new ``YamlMapping`` with the same locations.
    :raises InventoryError: bad type or value; a plain-text password; an alias and its
        target given with different values.
    """
    out = YamlMapping.at(*where(mapping))
    spelled = {}
    for key, value in mapping.items():
        location = where(mapping, key)
        _refuse_plaintext_password(key, value, owner, location)
        name = ALIASES.get(key, key)
        check = CONNECTION_VARS.get(name)
        if check is not None:
            try:
                value = check(key, value)
            except ValueError as err:
                raise InventoryError(f"{owner}: {err}", *location, key=str(key)) from None
        if name in out and out[name] != value:
            raise InventoryError(
                f"{owner} sets both {spelled[name]!r} and {key!r} with different values "
                f"({out[name]!r} vs {value!r}); both mean {name!r}: keep one",
                *location, key=str(key))
        if name not in out:
            out.put(name, value, location)
            spelled[name] = key
    return out
