"""Jump hosts (``spec.jump``): one shared connection per bastion and process, and the
``direct-tcpip`` tunnels through it.

The first hop is connected to directly, each next hop and finally the host through a
``direct-tcpip`` channel of the previous one, passed as the socket of the next
``paramiko.Transport`` (:func:`tunnel`). Every hop's host key is verified under its own
known_hosts and policy, exactly like a host's. A bastion connection is shared by all the
hosts behind it in the process (:class:`_Bastions`: keyed by the bastion's full spec,
including the hops before it; thread-safe; kept for the life of the process, replaced if
it drops, closed at process exit or by :func:`close_bastions`). A failure on a hop is
reported on the host behind it, with the same class (``unreachable``, auth, host key…) and
a message that starts with ``bastion NAME (user@addr:port)`` (just the address when the
hop was written as one).

Nothing here talks to paramiko's transport or translates its errors: opening and
authenticating a bastion and opening a channel on it are
:class:`~concurdeploy.ssh.connection.Connection`'s (passed in as ``connect``).
"""

from __future__ import annotations

import copy
import errno
import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from concurdeploy.exceptions import HostError, HostUnreachable
from concurdeploy.ssh.specs import ConnectSpec

if TYPE_CHECKING:
    from concurdeploy.ssh.connection import Connection

__all__ = ["TunnelSocket", "close_bastions", "hop_label", "tunnel"]

#: ``connect(spec) -> Connection``: an open, authenticated connection to a bastion.
Connect = Callable[[ConnectSpec], "Connection"]


class TunnelSocket:
    """The socket a tunnelled host's ``paramiko.Transport`` reads and writes: its
    ``direct-tcpip`` channel, closed only once no send or receive on it is in progress.

    paramiko closes a transport's socket from the thread that closes the transport, while
    the transport's own thread may be half-way through a write (e.g. its answer to the
    host closing a session channel). On a channel that write would follow our
    CHANNEL_CLOSE, and once OpenSSH has freed the channel it answers such a packet by
    dropping the whole connection ("data packet referred to nonexistent channel"): every
    other host's tunnel through the same bastion with it. So :meth:`close` marks the
    tunnel closing (later sends fail, later receives see end-of-file), wakes a receive
    waiting for data, waits for a send or receive in progress to finish (at most
    ``close_timeout`` seconds), and only then closes the channel.

    Other attributes (``get_transport``, ``getpeername``…) are the channel's.
    """

    def __init__(self, chan, close_timeout: float):
        self._chan = chan
        self._cv = threading.Condition()
        self._busy = 0
        self._closing = False
        self._close_timeout = close_timeout

    def __getattr__(self, name):
        return getattr(self._chan, name)

    @property
    def _closed(self) -> bool:  # what paramiko's Transport.stop_thread looks at
        return self._closing or self._chan.closed

    def settimeout(self, timeout: float | None) -> None:
        self._chan.settimeout(timeout)

    def _enter(self) -> bool:
        with self._cv:
            if self._closing:
                return False
            self._busy += 1
            return True

    def _leave(self) -> None:
        with self._cv:
            self._busy -= 1
            if not self._busy:
                self._cv.notify_all()

    def send(self, data: bytes) -> int:
        """Send what the channel's window allows; :raises OSError: the tunnel is closing."""
        if not self._enter():
            raise OSError(errno.EPIPE, "tunnel closed")
        try:
            return self._chan.send(data)
        finally:
            self._leave()

    def recv(self, nbytes: int) -> bytes:
        """Up to ``nbytes``; ``b""`` at end-of-file or once closing; ``socket.timeout`` if none came."""
        if not self._enter():
            return b""
        try:
            return self._chan.recv(nbytes)
        finally:
            self._leave()

    def close(self) -> None:
        """Close the channel once no send or receive is in progress. Idempotent; never raises."""
        with self._cv:
            self._closing = True
            self._chan.in_buffer.close()  # a receive waiting for data returns at once
            self._cv.wait_for(lambda: self._busy == 0, timeout=self._close_timeout)
        try:
            self._chan.close()
        except Exception:
            pass


class _Entry:
    """One bastion connection of the cache, with its own lock (one connect at a time)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.conn: Connection | None = None
        self.failed_at = 0.0
        self.error: HostError | None = None


class _Bastions:
    """Process-wide cache of open bastion connections, keyed by the bastion's full spec.

    Threads of a worker that go through the same bastion share one authenticated
    transport (one TCP connection, one login on the bastion), each host using its own
    ``direct-tcpip`` channel. A connection that dropped is replaced on next use. When
    several threads wait for the same bastion and the attempt fails, they all get that
    failure instead of trying again one after the other (a later retry tries afresh).
    Connections are kept for the life of the process and closed at its exit
    (``multiprocessing.util.Finalize``, which also runs in worker processes).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._entries: dict[ConnectSpec, _Entry] = {}
        self._pid = os.getpid()
        self._finalizer = None

    def get(self, spec: ConnectSpec, warnings: list, connect: Connect) -> Connection:
        """The open, authenticated connection to bastion ``spec`` (``spec.jump`` = its own hops).

        :param warnings: the host's notes; a new bastion connection's notes are added,
            prefixed ``bastion NAME:``.
        :param connect: ``connect(spec) -> Connection``, open and authenticated.
        :raises HostError: the bastion's error, message prefixed ``bastion NAME (addr):``.
        """
        asked = time.monotonic()
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's transports are not ours
                self._entries, self._pid, self._finalizer = {}, os.getpid(), None
            if self._finalizer is None:
                import multiprocessing.util
                self._finalizer = multiprocessing.util.Finalize(None, self.close_all, exitpriority=10)
            entry = self._entries.setdefault(spec, _Entry())
        with entry.lock:
            conn = entry.conn
            if conn is not None and conn.is_open():
                return conn
            if entry.error is not None and entry.failed_at >= asked:
                raise copy.copy(entry.error)
            if conn is not None:
                conn.close()
                entry.conn = None
            try:
                conn = connect(spec)
            except HostError as e:
                entry.error, entry.failed_at = bastion_error(spec, e), time.monotonic()
                raise copy.copy(entry.error) from None
            entry.conn, entry.error = conn, None
            warnings.extend(f"bastion {spec.name}: {w}" for w in conn.warnings)
            return conn

    def drop(self, spec: ConnectSpec, conn: Connection) -> None:
        """Forget ``conn`` (it failed to open a channel) so the next use reconnects."""
        with self._lock:
            entry = self._entries.get(spec)
        if entry is not None:
            with entry.lock:
                if entry.conn is conn:
                    entry.conn = None
        conn.close()

    def close_all(self) -> None:
        """Close every cached bastion connection (idempotent; never raises)."""
        with self._lock:
            entries, self._entries = list(self._entries.values()), {}
        for entry in entries:
            if entry.conn is not None:
                entry.conn.close()


_BASTIONS = _Bastions()


def close_bastions() -> None:
    """Close every bastion connection this process holds (they are also closed at exit)."""
    _BASTIONS.close_all()


def bastion_error(spec: ConnectSpec, e: HostError) -> HostError:
    """``e`` (raised connecting to bastion ``spec``), its message naming the bastion."""
    if e.message.startswith("bastion "):
        return e  # from an earlier hop: already names it
    err = copy.copy(e)
    err.message = f"bastion {hop_label(spec)}: {e.message}"
    err.args = (err.message, *e.args[1:])
    return err


def hop_label(spec: ConnectSpec) -> str:
    """``NAME (user@addr:port)``, or just the address when the name is the address."""
    return spec.name if spec.name in (spec.address, f"{spec.hostname}:{spec.port}") \
        else f"{spec.name} ({spec.address})"


def tunnel(spec: ConnectSpec, warnings: list, connect: Connect) -> TunnelSocket:
    """A ``direct-tcpip`` tunnel from ``spec``'s last hop to ``spec.hostname:spec.port``.

    The last hop's shared connection is used (made with ``connect`` if there is none yet);
    if it turns out to have dropped, it is replaced once.

    :raises HostUnreachable: the bastion refused the tunnel (message names the reason, e.g.
        ``forwarding administratively prohibited``) or its connection dropped.
    :raises HostError: from connecting to a hop (see :meth:`_Bastions.get`).
    """
    hop = replace(spec.jump[-1], jump=spec.jump[:-1])
    where = f"{spec.hostname}:{spec.port}"
    for attempt in (1, 2):
        bastion = _BASTIONS.get(hop, warnings, connect)
        try:
            chan = bastion.open_tunnel(spec.hostname, spec.port, timeout=spec.connect_timeout)
        except HostUnreachable as e:
            if getattr(e, "refused", False):
                raise HostUnreachable(f"bastion {hop_label(hop)} could not open a tunnel to "
                                      f"{where}: {e.message}") from None
            dead = not bastion.is_open()
            if dead:  # the shared connection dropped: forget it; reconnect once
                _BASTIONS.drop(hop, bastion)
            if attempt == 2 or not dead:
                raise HostUnreachable(f"bastion {hop_label(hop)}: no tunnel to {where}: "
                                      f"{e.message}") from None
            continue
        return TunnelSocket(chan, close_timeout=spec.connect_timeout)
    raise AssertionError("not reached")
