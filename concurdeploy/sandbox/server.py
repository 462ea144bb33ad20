"""Sandbox hosts: in-process SSH servers on loopback, for trying concurdeploy for real.

The README's first command (``concurdeploy push haproxy`` against the example
inventory) needs SSH hosts to talk to. :class:`Sandbox` provides them without
root, without ``sshd`` and without configuration: for every sandbox host name it
binds one TCP port on ``127.0.0.1`` and serves SSH there from threads of the
current process, using paramiko in server mode.

What a sandbox host is
    * A genuine SSH-2 server. The client side is ordinary paramiko
      ``SSHClient`` code with *strict* host key checking against
      :attr:`Sandbox.known_hosts_path` and key authentication with
      :attr:`Sandbox.client_key_path`; it cannot tell it talks to a sandbox.
    * ``exec`` requests run ``/bin/sh -c COMMAND`` in a subprocess (working
      directory and environment of this process), with the channel's stdin,
      stdout and stderr wired to the command and its exit status reported.
      Several commands on several channels of one connection run concurrently.
    * The ``sftp`` subsystem works on the real filesystem: paths are used
      exactly as the client sends them (relative ones resolve against this
      process's working directory). Plain ``rename`` refuses to replace an
      existing target, as OpenSSH's does; the OpenSSH extension
      ``posix-rename@openssh.com`` replaces atomically (``os.replace``).
    * All hosts of one sandbox share one ed25519 host key and accept one client
      key, both kept in the state directory and reused across runs, so
      ``known_hosts`` entries only change when ports do.

What a sandbox host is not
    * **Not a security boundary.** Commands and file operations run as the user
      who started the sandbox, with that user's permissions, on that user's
      filesystem. The sandbox does not translate or confine paths: the
      inventory gives each sandbox host its own absolute destination folder.
      Anyone holding the client key (``id_ed25519`` in the state directory,
      mode 0600) can run arbitrary commands as you for as long as the sandbox
      runs; it listens on loopback only.
    * Not a full sshd: no interactive shells, no pseudo-terminals, no port or
      agent forwarding, no ``env`` requests, no password or keyboard-interactive
      auth, no per-user home directory (the "home" is this process's cwd).
    * A command killed by signal N is reported as exit status ``128 + N`` (as a
      shell would), not as an SSH ``exit-signal`` message. A command still
      running when its channel closes (client gave up, connection dropped,
      :meth:`Sandbox.stop`) gets ``SIGTERM`` sent to its process group.

Logging: paramiko's server-side messages (including the errors it logs when a
client disconnects abruptly) go to the logger ``concurdeploy.sandbox.server.ssh``,
which has a ``NullHandler`` and does not propagate, so the sandbox prints
nothing to stderr. To debug, set ``logging.getLogger("concurdeploy.sandbox.server.ssh")
.propagate = True`` (and configure logging). The sandbox's own few messages go to
the loggers ``concurdeploy.sandbox.server`` and ``concurdeploy.sandbox.commands`` at
DEBUG level.

This module keeps the lifecycle (ports, listener and connection threads, stop);
the SSH server interface is in :mod:`~concurdeploy.sandbox.ssh`, commands in
:mod:`~concurdeploy.sandbox.commands`, SFTP in :mod:`~concurdeploy.sandbox.sftp`,
key files in :mod:`~concurdeploy.sandbox.keys`.
"""

from __future__ import annotations

import getpass
import logging
import os
import signal
import socket
import subprocess
import threading
import time

import paramiko

from concurdeploy.sandbox.commands import STOP_TIMEOUT, kill_group
from concurdeploy.sandbox.keys import (
    CLIENT_KEY_FILE,
    HOST_KEY_FILE,
    KNOWN_HOSTS_FILE,
    load_or_create_key,
    write_known_hosts,
)
from concurdeploy.sandbox.sftp import SFTPInterface, SFTPServer
from concurdeploy.sandbox.ssh import ServerTransport, SSHServer

__all__ = ["Sandbox"]

log = logging.getLogger(__name__)

#: Log channel of the server-side paramiko transports (and, as ``….sftp``, of SFTP).
SSH_LOG_CHANNEL = __name__ + ".ssh"
_ssh_logger = logging.getLogger(SSH_LOG_CHANNEL)
_ssh_logger.addHandler(logging.NullHandler())
_ssh_logger.propagate = False

#: Seconds a listener's ``accept()`` waits before re-checking for :meth:`Sandbox.stop`.
ACCEPT_POLL = 0.2


class _Host:
    def __init__(self, name: str, sock: socket.socket, stop_event: threading.Event) -> None:
        self.name = name
        self.sock = sock
        self.port: int = sock.getsockname()[1]
        self.stop_event = stop_event
        self.thread: threading.Thread | None = None


class Sandbox:
    """In-process SSH servers on 127.0.0.1, one listening port per sandbox host.

    :param state_dir: directory for the sandbox's keys and ``known_hosts``
        (typically ``<project>/.sandbox``). Created (mode 0700) if missing. It
        holds ``host_key`` (the servers' ed25519 host key) and ``id_ed25519``
        (the client key, mode 0600), both OpenSSH private-key format without
        passphrase, created once and reused; and ``known_hosts``, rewritten by
        every :meth:`start`.
    :raises OSError: the directory or a key file cannot be created or read.
    :raises paramiko.SSHException: an existing key file is not a valid key.

    Usable as a context manager; leaving the block calls :meth:`stop`::

        with Sandbox(".sandbox") as sb:
            ports = sb.start(["web1", "web2"])
            # connect to ("127.0.0.1", ports["web1"]) as sb.user with
            # sb.client_key_path, verifying against sb.known_hosts_path
    """

    def __init__(self, state_dir: str | os.PathLike) -> None:
        self._state_dir = os.path.abspath(os.fspath(state_dir))
        os.makedirs(self._state_dir, mode=0o700, exist_ok=True)
        self._host_key = load_or_create_key(os.path.join(self._state_dir, HOST_KEY_FILE))
        self._client_key_path = os.path.join(self._state_dir, CLIENT_KEY_FILE)
        self._client_key = load_or_create_key(self._client_key_path)
        self._known_hosts_path = os.path.join(self._state_dir, KNOWN_HOSTS_FILE)
        self._user = getpass.getuser()
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._hosts: dict[str, _Host] = {}
        self._transports: set[paramiko.Transport] = set()
        self._threads: set[threading.Thread] = set()
        self._procs: set[subprocess.Popen] = set()

    # -- properties ---------------------------------------------------------

    @property
    def known_hosts_path(self) -> str:
        """Absolute path of the ``known_hosts`` file listing every running host.

        One line per host, ``[127.0.0.1]:PORT ssh-ed25519 AAAA…``; rewritten
        (atomically) by each :meth:`start`.
        """
        return self._known_hosts_path

    @property
    def client_key_path(self) -> str:
        """Absolute path of the only client private key the hosts accept (ed25519, 0600)."""
        return self._client_key_path

    @property
    def user(self) -> str:
        """The only username the hosts accept: ``getpass.getuser()`` of this process."""
        return self._user

    @property
    def ports(self) -> dict[str, int]:
        """Host name → port of every host currently listening."""
        with self._lock:
            return {name: h.port for name, h in self._hosts.items()}

    # -- lifecycle ----------------------------------------------------------

    def start(self, names: list[str]) -> dict[str, int]:
        """Start listening for the given sandbox hosts and return their ports.

        Binds ``127.0.0.1:0`` once per name (the kernel picks free ports),
        rewrites :attr:`known_hosts_path` with every running host, and starts
        one accept thread per host. Returns as soon as the ports are bound.
        May be called again (after :meth:`stop`, or to add more hosts).

        :param names: sandbox host names, non-empty strings, no duplicates,
            none already running.
        :return: ``{name: port}`` for ``names``, in the order given.
        :raises ValueError: a name is empty, repeated or already running.
        :raises TypeError: ``names`` is a single ``str``.
        :raises OSError: binding a socket or writing ``known_hosts`` failed
            (no host of this call is left listening).
        """
        if isinstance(names, str):
            raise TypeError("start() takes a list of host names, not a single str")
        names = list(names)
        for name in names:
            if not isinstance(name, str) or not name:
                raise ValueError(f"sandbox host names must be non-empty strings, got {name!r}")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"sandbox host names repeated: {', '.join(dupes)}")
        new: list[_Host] = []
        with self._lock:
            running = sorted(set(names) & set(self._hosts))
            if running:
                raise ValueError(f"sandbox hosts already running: {', '.join(running)}")
            try:
                for name in names:
                    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    try:
                        sock.bind(("127.0.0.1", 0))
                        sock.listen(64)
                        sock.settimeout(ACCEPT_POLL)
                    except OSError:
                        sock.close()
                        raise
                    new.append(_Host(name, sock, self._stop_event))
                all_hosts = list(self._hosts.values()) + new
                write_known_hosts(self._known_hosts_path, self._host_key, [h.port for h in all_hosts])
            except BaseException:
                for h in new:
                    h.sock.close()
                raise
            for h in new:
                self._hosts[h.name] = h
                h.thread = threading.Thread(
                    target=self._serve, args=(h,), name=f"sandbox-{h.name}", daemon=True
                )
                self._threads.add(h.thread)
                h.thread.start()
        log.debug("sandbox hosts started: %s", {h.name: h.port for h in new})
        return {h.name: h.port for h in new}

    def stop(self) -> None:
        """Stop every host: close listeners and live sessions, end running commands.

        Closes the listening sockets (connecting afterwards is refused), closes
        every SSH connection, sends ``SIGTERM`` to the process group of every
        command still running, and joins the sandbox's threads, waiting at most
        about :data:`STOP_TIMEOUT` seconds in total (commands still alive then
        get ``SIGKILL``). Idempotent; never raises for an already stopped or
        never started sandbox.
        """
        with self._lock:
            stop_event = self._stop_event
            stop_event.set()
            self._stop_event = threading.Event()  # for a later start()
            hosts = list(self._hosts.values())
            self._hosts.clear()
        deadline = time.monotonic() + STOP_TIMEOUT
        for h in hosts:
            try:
                h.sock.close()
            except OSError:
                pass
        with self._lock:
            transports = list(self._transports)
            self._transports.clear()
        for t in transports:
            try:
                t.close()
            except Exception:
                log.debug("closing a sandbox transport failed", exc_info=True)
        with self._lock:
            procs = list(self._procs)
        for p in procs:
            kill_group(p, signal.SIGTERM)
        while True:
            with self._lock:
                threads = [t for t in self._threads if t.is_alive()]
                self._threads = set(threads)
            threads = [t for t in threads if t is not threading.current_thread()]
            remaining = deadline - time.monotonic()
            if not threads or remaining <= 0:
                break
            threads[0].join(min(remaining, 0.1))
        with self._lock:
            procs = list(self._procs)
        for p in procs:
            kill_group(p, signal.SIGKILL)
        if hosts:
            log.debug("sandbox hosts stopped: %s", [h.name for h in hosts])

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- internals ------------------------------------------------------------

    def _track_thread(self, t: threading.Thread, *, add: bool) -> None:
        with self._lock:
            (self._threads.add if add else self._threads.discard)(t)

    def _track_proc(self, p: subprocess.Popen, *, add: bool) -> None:
        with self._lock:
            (self._procs.add if add else self._procs.discard)(p)

    def _serve(self, host: _Host) -> None:
        try:
            while not host.stop_event.is_set():
                try:
                    conn, _addr = host.sock.accept()
                except TimeoutError:
                    continue
                except OSError:
                    break  # listener closed by stop()
                if host.stop_event.is_set():
                    conn.close()
                    break
                t = threading.Thread(
                    target=self._handle_connection, args=(host, conn),
                    name=f"sandbox-{host.name}-conn", daemon=True,
                )
                self._track_thread(t, add=True)
                t.start()
        finally:
            self._track_thread(threading.current_thread(), add=False)

    def _handle_connection(self, host: _Host, conn: socket.socket) -> None:
        transport = None
        try:
            conn.settimeout(None)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            transport = ServerTransport(conn)
            transport.set_log_channel(SSH_LOG_CHANNEL)
            transport.add_server_key(self._host_key)
            transport.set_subsystem_handler("sftp", SFTPServer, SFTPInterface)
            with self._lock:
                if host.stop_event.is_set():
                    raise EOFError("sandbox stopping")
                self._transports = {t for t in self._transports if t.is_active()}
                self._transports.add(transport)
            transport.start_server(server=SSHServer(self, host.name))
        except Exception:  # bad client, abrupt disconnect, stop(): all quiet
            log.debug("sandbox %s: connection ended during handshake", host.name, exc_info=True)
            if transport is not None:
                transport.close()  # a no-op unless the transport got active
            conn.close()
        finally:
            self._track_thread(threading.current_thread(), add=False)
