"""What counts as the connection going away (executors/liveness.py), without a network."""

from __future__ import annotations

import paramiko

from concurdeploy.executors.liveness import connection_lost, lost_sentence, plain
from concurdeploy.ssh.specs import ConnectSpec


class _Transport:
    def __init__(self, active: bool):
        self.active = active

    def is_active(self) -> bool:
        return self.active


class _Conn:
    def __init__(self, transport):
        self.transport = transport


def test_end_of_stream_and_resets_are_always_a_lost_connection():
    live = _Conn(_Transport(True))
    assert connection_lost(EOFError(), live)
    assert connection_lost(ConnectionResetError(104, "Connection reset by peer"), live)


def test_paramiko_and_socket_errors_count_only_once_the_transport_is_down():
    e = paramiko.SSHException("Server connection dropped: ")
    assert not connection_lost(e, _Conn(_Transport(True)))  # e.g. an action's own BadHostKeyException
    assert connection_lost(e, _Conn(_Transport(False)))
    assert connection_lost(OSError("Socket is closed"), _Conn(None))
    assert not connection_lost(ValueError("a bug"), _Conn(None))


def test_the_sentence_names_the_host_the_step_and_no_library():
    spec = ConnectSpec(name="h1", hostname="10.0.0.1", port=22)
    text = lost_sentence(f"the connection dropped ({plain(EOFError())})", "upload", spec)
    assert text.startswith("10.0.0.1:22: the connection dropped (end of stream) during the upload;")
    assert "\n" not in text and "EOFError" not in text
    assert plain(paramiko.SSHException("/usr/lib/python3/site-packages/paramiko/x.py")) == "closed"
