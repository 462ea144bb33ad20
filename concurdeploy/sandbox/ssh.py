"""The sandbox's SSH side: paramiko's ``ServerInterface`` and a server Transport.

:class:`SSHServer` accepts public-key auth for one user and one key, ``session``
channels, and one ``exec`` request per channel (run by
:class:`~concurdeploy.sandbox.commands.ExecSession`); the ``sftp`` subsystem is
dispatched by paramiko to the handler the server installed. Shells,
pseudo-terminals, ``env`` requests, port and agent forwarding, password and
keyboard-interactive auth are refused (paramiko's defaults).

:class:`ServerTransport` makes sure a command starts only after the ``exec``
request has been answered (see its docstring).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

import paramiko
from paramiko.channel import Channel
from paramiko.common import MSG_CHANNEL_REQUEST
from paramiko.message import Message

from concurdeploy.sandbox.commands import ExecSession, Tracker

__all__ = ["CAN_DEFER", "SSHServer", "ServerTransport"]


class Accepts(Tracker, Protocol):
    """What :class:`SSHServer` needs of the ``Sandbox``: whom to let in, and a :class:`Tracker`."""

    _client_key: paramiko.PKey

    @property
    def user(self) -> str: ...


def _handle_request_then_run_deferred(chan: Channel, m: Message) -> None:
    Channel._handle_request(chan, m)  # answers MSG_CHANNEL_SUCCESS / FAILURE
    server = chan.transport.server_object
    if isinstance(server, SSHServer):
        server.run_after_reply(chan.get_id())


class ServerTransport(paramiko.Transport):
    """A server Transport that starts exec commands only after replying to ``exec``.

    paramiko calls ``check_channel_exec_request`` *before* it sends the
    ``MSG_CHANNEL_SUCCESS`` reply. A command started from there can finish and
    close the channel first; the paramiko client then sees the close before the
    success and ``exec_command`` raises "Channel closed." Wrapping the channel
    request handler lets the server start the command right after the reply.
    """

    _channel_handler_table = dict(paramiko.Transport._channel_handler_table)
    _channel_handler_table[MSG_CHANNEL_REQUEST] = _handle_request_then_run_deferred


#: False if a future paramiko drops the handler table: commands then start at once.
CAN_DEFER = paramiko.Transport._channel_handler_table.get(MSG_CHANNEL_REQUEST) is (
    Channel._handle_request
)


class SSHServer(paramiko.ServerInterface):
    """The server side of one sandbox connection.

    :param sandbox: gives the accepted user (``sandbox.user``) and client key
        (``sandbox._client_key``), and tracks the exec sessions' threads and processes.
    :param host: the sandbox host name this connection came in on.
    """

    def __init__(self, sandbox: Accepts, host: str) -> None:
        self.sandbox = sandbox
        self.host = host
        self._after_reply: dict[int, Callable[[], None]] = {}
        self._lock = threading.Lock()

    def run_after_reply(self, chanid: int) -> None:
        """Start the command deferred for channel ``chanid``, if any (called after the reply)."""
        with self._lock:
            callback = self._after_reply.pop(chanid, None)
        if callback is not None:
            callback()

    def get_allowed_auths(self, username):
        return "publickey"

    def check_auth_publickey(self, username, key):
        if username == self.sandbox.user and key == self.sandbox._client_key:
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind, chanid):
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel, command):
        if getattr(channel, "_sandbox_exec", False):
            return False  # one command per channel
        channel._sandbox_exec = True
        session = ExecSession(self.sandbox, channel, bytes(command))
        if CAN_DEFER and isinstance(channel.get_transport(), ServerTransport):
            with self._lock:
                self._after_reply[channel.get_id()] = session.start
        else:
            session.start()
        return True

    # shell, pty, env, forwarding: ServerInterface's defaults refuse them.
    # subsystem: the default dispatches to Transport.set_subsystem_handler ("sftp").
