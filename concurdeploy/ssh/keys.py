"""Private keys and the credentials a connection offers, in the order OpenSSH tries them.

:func:`load_private_key` reads an Ed25519, ECDSA or RSA key from text (``key_env``) or a
file (``key_file``, ``~/.ssh/id_*``); :func:`credentials` lists what a host's
:class:`~concurdeploy.ssh.specs.ConnectSpec` lets us offer (explicit key, agent keys,
default identities, password). Secret values are read from the environment here, in the
worker, and never appear in a message. Authentication itself (and the translation of
paramiko's errors) is :meth:`concurdeploy.ssh.connection.Connection.open`'s.
"""

from __future__ import annotations

import io
import os
import socket
from collections.abc import Iterator

import paramiko
import paramiko.agent

from concurdeploy.exceptions import CredentialsMissing
from concurdeploy.ssh import envsecrets
from concurdeploy.ssh.specs import ConnectSpec

__all__ = ["DEFAULT_IDENTITIES", "credentials", "load_private_key"]

_KEY_CLASSES = (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey)
#: Tried, in this order, when no ``key_file``/``key_env`` is set (as OpenSSH does).
DEFAULT_IDENTITIES = ("~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa")


def load_private_key(text: str | None = None, path: str | None = None,
                     passphrase: str | None = None, what: str = "key") -> paramiko.PKey:
    """Load an Ed25519, ECDSA or RSA private key from ``text`` (PEM/OpenSSH) or a file ``path``.

    :param passphrase: for an encrypted key; None = for a file, the passphrase asked on the
        controller's terminal (:mod:`concurdeploy.ssh.passphrases`), if any.
    :param what: how to name the key in errors (e.g. ``"key_env DEPLOY_KEY"``); never the key itself.
    :raises CredentialsMissing: unreadable, not a key, or encrypted and no (or a wrong) passphrase.
    """
    if path is not None:
        try:
            with open(os.path.expanduser(path), encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError as e:
            raise CredentialsMissing(f"{what}: cannot read {path}: {e.strerror}") from None
        if passphrase is None:  # asked on the controller's terminal (concurdeploy.ssh.passphrases)
            from concurdeploy.ssh.passphrases import lookup

            passphrase = lookup(path)
    for cls in _KEY_CLASSES:
        try:
            return cls.from_private_key(io.StringIO(text or ""), password=passphrase)
        except paramiko.PasswordRequiredException:
            raise CredentialsMissing(
                f"{what} is encrypted: set passphrase_env to the name of an environment "
                f"variable holding its passphrase (or run on a terminal to be asked)") from None
        except (paramiko.SSHException, ValueError, TypeError, IndexError):
            continue
    raise CredentialsMissing(f"{what} is not a usable Ed25519, ECDSA or RSA private key "
                             f"(or its passphrase is wrong)")


class _SocketAgent(paramiko.agent.AgentSSH):
    """The ssh-agent listening at ``path`` (ssh_config's ``IdentityAgent``), not ``$SSH_AUTH_SOCK``'s.

    :raises OSError: nothing listens there. :raises paramiko.SSHException: not an agent.
    """

    def __init__(self, path: str):
        super().__init__()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            self._connect(sock)
        except BaseException:
            sock.close()
            raise

    def close(self) -> None:
        """Close the connection to the agent."""
        self._close()


def credentials(spec: ConnectSpec) -> Iterator[tuple[str, paramiko.PKey | None, str | None]]:
    """Yield ``(label, pkey_or_None, password_or_None)`` in the order OpenSSH would try them:
    ``key_env``, ``key_file``, the agent's keys (``spec.identity_agent``'s socket, else
    ``$SSH_AUTH_SOCK``'s), the default identities (only when neither
    ``key_env`` nor ``key_file`` is set; unusable ones skipped), ``password_env``.

    Close the generator when done (the agent's socket is closed then, not at some GC).

    :raises CredentialsMissing: ``passphrase_env``/``key_env``/``password_env`` names an unset
        variable, or an explicit key cannot be loaded (raised when that credential is reached).
    """
    passphrase = None
    if spec.passphrase_env:
        passphrase = envsecrets.getenv(spec.passphrase_env)
        if passphrase is None:
            raise CredentialsMissing(f"passphrase_env {spec.passphrase_env} is not set")
    explicit = False
    if spec.key_env:
        text = envsecrets.getenv(spec.key_env)
        if not text:
            raise CredentialsMissing(
                f"key_env {spec.key_env} {'is not set' if text is None else 'is set but empty'} "
                f"(it must hold a private key, e.g. a CI secret)")
        explicit = True
        label = f"key_env {spec.key_env}"
        yield label, load_private_key(text=text, passphrase=passphrase, what=label), None
    if spec.key_file:
        explicit = True
        label = f"key_file {spec.key_file}"
        yield label, load_private_key(path=spec.key_file, passphrase=passphrase, what=label), None
    if spec.allow_agent:
        try:
            agent = _SocketAgent(spec.identity_agent) if spec.identity_agent else paramiko.Agent()
        except (paramiko.SSHException, OSError):  # a dangling socket: no agent keys, not an error
            agent = None
        try:  # close the agent's socket once its keys are done with (not at some GC)
            for i, key in enumerate(agent.get_keys() if agent else ()):
                yield f"agent key {i + 1} ({key.get_name()})", key, None
        finally:
            if agent is not None:
                agent.close()
    if not explicit:
        for path in DEFAULT_IDENTITIES:
            if os.path.isfile(os.path.expanduser(path)):
                try:
                    yield path, load_private_key(path=path, passphrase=passphrase, what=path), None
                except CredentialsMissing:
                    continue
    if spec.password_env:
        password = envsecrets.getenv(spec.password_env)
        if password is None:
            raise CredentialsMissing(f"password_env {spec.password_env} is not set")
        yield f"password_env {spec.password_env}", None, password
