"""One SSH connection to one host (paramiko), shared by its commands and its SFTP session.

This is the paramiko boundary: the only module that drives paramiko's ``Transport`` and
its channels, and the only place where paramiko and socket errors become concurdeploy
errors:

- refused / timed out / reset / unresolvable / banner never came → :class:`HostUnreachable`
  (``transient`` = worth another try: reset, or dropped during the handshake)
- every credential refused (paramiko ``AuthenticationException``) → :class:`AuthFailed`
  (never retried)
- ``key_env``/``password_env`` unset, key file missing or encrypted without passphrase →
  :class:`CredentialsMissing` (:mod:`concurdeploy.ssh.keys`)
- host key unknown or changed → :class:`HostKeyUnknown` / :class:`HostKeyMismatch`
  (:mod:`concurdeploy.ssh.hostkeys`; paramiko's own ``BadHostKeyException`` is never
  raised: keys are checked by us)
- a remote command past its timeout → :class:`CommandTimeout`
- a tunnel a bastion cannot open → :class:`HostUnreachable` (:meth:`Connection.open_tunnel`)

Secret values (passwords, key text, passphrases) are read from the environment in the
worker (:mod:`concurdeploy.ssh.keys`) and never appear in a message.

Jump hosts (``spec.jump``) go through :func:`concurdeploy.ssh.bastions.tunnel`: a shared
connection per bastion and process, a ``direct-tcpip`` channel per host. A host (or first
hop) with ``spec.proxy_command`` is reached through that command's stdin/stdout
(:class:`~concurdeploy.ssh.proxycommand.ProxySocket`); when it ends before the handshake,
:class:`HostUnreachable` says with which status and its last stderr line.
"""

from __future__ import annotations

import contextlib
import getpass
import select
import socket
import threading
import time

import paramiko

from concurdeploy.exceptions import (
    AuthFailed,
    CommandTimeout,
    HostUnreachable,
    Interrupted,
    RemoteCommandFailed,
)
from concurdeploy.records import CommandResult
from concurdeploy.ssh import hostkeys, remote
from concurdeploy.ssh.algorithms import prefer_algorithms
from concurdeploy.ssh.bastions import close_bastions, tunnel
from concurdeploy.ssh.channels import HeldCommand, decode, short
from concurdeploy.ssh.channels import one_line as _one_line
from concurdeploy.ssh.channels import timed_out as _timed_out
from concurdeploy.ssh.channels import wait_event as _wait
from concurdeploy.ssh.keys import credentials, load_private_key
from concurdeploy.ssh.specs import ConnectSpec
from concurdeploy.ssh.spill import settle, spill_for

# close_bastions, HeldCommand and load_private_key live in bastions, channels and keys;
# they stay importable from here, where callers have always found them.
__all__ = ["Connection", "HeldCommand", "close_bastions", "load_private_key"]

#: What paramiko raises when a connection breaks (``socket.timeout`` is an ``OSError``).
_TRANSPORT_ERRORS = (paramiko.SSHException, EOFError, OSError)


class Connection:
    """An open SSH transport to one host, used by one worker thread at a time.

    Use as a context manager, or call :meth:`open` and :meth:`close`::

        with Connection(spec) as conn:
            result = conn.run("uname -a")

    :ivar spec: the :class:`ConnectSpec` it was built from.
    :ivar warnings: list of notes for the host's result (e.g. a host key recorded).
    :ivar abort: an ``Event``-like object or None; once set, :meth:`run` and
        :meth:`check_abort` raise :class:`Interrupted`.
    """

    def __init__(self, spec: ConnectSpec, abort=None):
        self.spec = spec
        self.abort = abort
        self.warnings: list[str] = []
        #: Values masked in output written to files (set by the operation: its secrets).
        self.secrets: tuple[str, ...] = ()
        #: ``(stream, bytes, path)`` of each output file written (past the cap: :mod:`.spill`).
        self.spilled: list[tuple[str, int, str]] = []
        self.transport: paramiko.Transport | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._sftp_lock = threading.Lock()
        self._sftp_thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------
    def __enter__(self) -> Connection:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> Connection:
        """Connect (through ``spec.jump`` if any), verify the host key, authenticate.

        Each phase (TCP connect, banner + key exchange, authentication) gets
        ``spec.connect_timeout`` seconds.

        :raises HostUnreachable, HostKeyUnknown, HostKeyMismatch, AuthFailed, CredentialsMissing:
        """
        spec = self.spec
        t, server_key = self._handshake()
        try:
            note = hostkeys.verify(spec.known_hosts, spec.host_key_policy, *spec.known_hosts_name,
                                   server_key, inventory_name=spec.name)
            if note:
                self.warnings.append(note)
            self._authenticate(t)
        except BaseException:
            self.close()
            raise
        return self

    def host_key(self) -> paramiko.PKey:
        """Only connect and exchange keys (no verification, no authentication), close, and
        return the server's host key (for ``keyscan``). Hops are verified as usual.

        :raises HostUnreachable: and, from a jump host, any error of :meth:`open`.
        """
        try:
            return self._handshake()[1]
        finally:
            self.close()

    def _where(self) -> str:
        spec = self.spec
        via = f" (via bastion {spec.jump[-1].name})" if spec.jump else \
            " (via ssh_config's ProxyCommand)" if spec.proxy_command else ""
        return f"{spec.hostname}:{spec.port}{via}"

    def _socket(self):
        """A connected socket to the host, or a ``direct-tcpip`` channel through its last hop."""
        spec = self.spec
        if spec.jump:
            return tunnel(spec, self.warnings, _open_bastion)
        if spec.proxy_command:
            from concurdeploy.ssh.proxycommand import ProxySocket

            return ProxySocket(spec.proxy_command)
        where = f"{spec.hostname}:{spec.port}"
        try:
            sock = socket.create_connection((spec.hostname, spec.port), timeout=spec.connect_timeout)
            # SSH sends many small request/reply packets: Nagle's algorithm plus delayed ACKs
            # would add up to ~40 ms to each round trip (bench/: a push 299 → 157 ms).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except TimeoutError:
            raise HostUnreachable(f"connect to {where} timed out after {spec.connect_timeout:g} s") from None
        except socket.gaierror as e:
            raise HostUnreachable(f"cannot resolve {spec.hostname}: {e.strerror}") from None
        except OSError as e:
            err = HostUnreachable(f"connect to {where}: {e.strerror or e}")
            # accepted, then reset at once: a server shedding load, worth another try
            err.transient = isinstance(e, (ConnectionResetError, ConnectionAbortedError))
            raise err from None

    def _handshake(self) -> tuple[paramiko.Transport, paramiko.PKey]:
        """Connect and run the SSH banner exchange and key exchange; return the transport and
        the server's host key (not yet verified)."""
        spec = self.spec
        where = self._where()
        sock = self._socket()
        t = paramiko.Transport(sock)
        self.transport = t
        t.banner_timeout = t.handshake_timeout = t.auth_timeout = spec.connect_timeout
        prefer_algorithms(t, self.spec)
        try:
            t.start_client(timeout=spec.connect_timeout)
            # start_client returns quietly (no exception) when its timeout passes before the
            # banner or the key exchange completed: check that it did.
            server_key = t.get_remote_server_key() if t.is_active() and t.initial_kex_done else None
        except _TRANSPORT_ERRORS as e:
            failure = getattr(sock, "failure", lambda: None)()  # a ProxyCommand that ended
            self.close()
            if failure:
                raise HostUnreachable(f"SSH handshake with {where} failed: {failure}") from None
            # paramiko's handshake timer (= connect_timeout) ends the transport with a bare
            # EOFError: a timeout racing start_client's own, not a closed connection
            expired = isinstance(e, EOFError) and getattr(t.packetizer, "handshake_timed_out", bool)()
            if not (_timed_out(e) or expired):
                err = HostUnreachable(f"SSH handshake with {where} failed: {_one_line(e) or 'connection closed'}")
                # Reset or closed before/at the banner: typically sshd's MaxStartups shedding load.
                err.transient = True
                raise err from None
            server_key = None  # paramiko's banner timeout: the same as start_client's, below
        if server_key is None:
            self.close()
            err = HostUnreachable(f"SSH handshake with {where} timed out after "
                                  f"{spec.connect_timeout:g} s (no SSH banner or key exchange)")
            err.transient = False
            raise err
        return t, server_key

    def close(self) -> None:
        """Close SFTP and the transport. Idempotent; never raises."""
        for obj in (self._sftp, self.transport):
            try:
                if obj is not None:
                    obj.close()
            except Exception:
                pass
        self._sftp = None
        self.transport = None

    def is_open(self) -> bool:
        """True while the transport is up (it may still drop at any time)."""
        t = self.transport
        return t is not None and t.is_active()

    def open_tunnel(self, hostname: str, port: int, timeout: float) -> paramiko.Channel:
        """A ``direct-tcpip`` channel from this host to ``hostname:port`` (for a host behind it).

        :param timeout: seconds to wait for the server to open it.
        :raises HostUnreachable: the message is just the reason; ``refused`` is True when the
            server refused the tunnel (forwarding prohibited, connect failed…), False when
            this connection is closed or dropped.
        """
        if not self.is_open():
            err = HostUnreachable("connection is closed")
            err.refused = False
            raise err
        try:
            return self.transport.open_channel("direct-tcpip", (hostname, port), ("127.0.0.1", 0),
                                               timeout=timeout)
        except paramiko.ChannelException as e:
            reason = {1: "forwarding administratively prohibited (AllowTcpForwarding/PermitOpen)",
                      2: "connect failed", 4: "resource shortage"}.get(e.code, e.text)
            err = HostUnreachable(reason)
            err.refused = True
        except _TRANSPORT_ERRORS as e:
            err = HostUnreachable(_one_line(e))
            err.refused = False
        raise err

    # -- authentication --------------------------------------------------------
    def _authenticate(self, t: paramiko.Transport) -> None:
        user = self.spec.user or getpass.getuser()
        tried = []
        offers = credentials(self.spec)
        try:
            for label, pkey, password in offers:
                tried.append(label)
                try:
                    if pkey is not None:
                        t.auth_publickey(user, pkey)
                    else:
                        t.auth_password(user, password)
                except paramiko.BadAuthenticationType:
                    continue
                except paramiko.AuthenticationException:
                    continue
                except _TRANSPORT_ERRORS as e:
                    raise HostUnreachable(f"connection dropped during authentication: {_one_line(e)}") from None
                if t.is_authenticated():
                    return
        finally:
            offers.close()  # runs the generator's clean-up (closes the agent) now
        offered = ", ".join(tried) if tried else "no key or password (set key_file, key_env or password_env)"
        raise AuthFailed(f"authentication as {user!r} on {self.spec.hostname}:{self.spec.port} "
                         f"failed; tried: {offered}")

    # -- operations ------------------------------------------------------------
    def check_abort(self) -> None:
        """Raise :class:`Interrupted` if the run is being interrupted (call between steps)."""
        if self.abort is not None and self.abort.is_set():
            raise Interrupted("interrupted; stopped at a safe point (destinations unchanged "
                              "unless reported replaced)")

    @contextlib.contextmanager
    def shielded(self):
        """Within this block, an interrupt does not stop remote steps (used for the short
        critical section: renames, reload, rollback), so a host ends finished, not half-done."""
        abort, self.abort = self.abort, None
        try:
            yield
        finally:
            self.abort = abort

    def _channel(self) -> paramiko.Channel:
        if self.transport is None or not self.transport.is_active():
            raise HostUnreachable("connection is closed")
        try:
            return self.transport.open_session(timeout=self.spec.connect_timeout)
        except _TRANSPORT_ERRORS as e:
            raise HostUnreachable(f"cannot open a session: {_one_line(e)}") from None

    def run(self, command: str, *, stdin: bytes | None = None, timeout: float | None = None,
            on_output=None, kill=None) -> CommandResult:
        """Run the POSIX ``sh`` script ``command`` on the host, whatever the login shell.

        The script goes on the channel's standard input (:mod:`concurdeploy.ssh.remote`),
        never on a command line: no size limit, and output of the login shell's start-up
        files is dropped. On timeout or interrupt the command's whole process group is
        killed from a second channel (TERM, then KILL) before the error is raised.

        :param stdin: bytes sent to the command's standard input, then EOF (keeps secrets
            off the remote command line); None = EOF at once.
        :param timeout: seconds before the command is killed; None = ``spec.command_timeout``.
        :param on_output: optional ``callable(stream: str, data: bytes)`` for live output.
        :param kill: optional ``callable(pid: int | None, nonce: str)`` ending the command's
            process group (e.g. as root through sudo); None = as the login user (:meth:`_kill`).
        :returns: :class:`CommandResult`; output decoded as UTF-8, invalid bytes replaced,
            at most :data:`~concurdeploy.ssh.remote.KEEP_BYTES` per stream kept (the end;
            a first line counts the bytes not kept, and names the file of the run's output
            folder that holds them: :mod:`concurdeploy.ssh.spill`).
        :raises CommandTimeout: ran past ``timeout`` (its process group is killed).
        :raises Interrupted: the run is being interrupted (its process group is killed).
        :raises HostUnreachable: the transport dropped.
        """
        timeout = self.spec.command_timeout if timeout is None else timeout
        self.check_abort()
        start = time.monotonic()
        deadline = start + timeout
        nonce = remote.new_nonce()
        out, err = (remote.Demux(nonce, s == "stdout", spill=spill_for(self.spec, s, self.secrets))
                    for s in ("stdout", "stderr"))
        chan = self._channel()
        look = 0.0  # when the timeout and abort are next looked at while output keeps coming
        try:
            chan.exec_command(remote.bootstrap(nonce))
            chan.sendall(remote.frame(remote.prelude(nonce) + command, stdin))
            chan.shutdown_write()
            while True:
                got = False
                if chan.recv_ready():
                    data = out.feed(chan.recv(65536))
                    got = True
                    if on_output and data:
                        on_output("stdout", data)
                if chan.recv_stderr_ready():
                    data = err.feed(chan.recv_stderr(65536))
                    got = True
                    if on_output and data:
                        on_output("stderr", data)
                if got and time.monotonic() < look:  # a flood of output must not hide the clock
                    continue
                look = time.monotonic() + 0.2
                if chan.exit_status_ready() and (chan.eof_received or chan.closed):
                    if not chan.recv_ready() and not chan.recv_stderr_ready():
                        break
                    continue
                if chan.closed and not chan.exit_status_ready():
                    raise HostUnreachable(f"connection dropped while running: {short(command)}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    (kill or self._kill)(out.pid, nonce)
                    raise CommandTimeout(
                        f"command timed out after {timeout:g} s (its processes were ended): "
                        f"{short(command)}",
                        output=decode(out.text() + err.text())[-4096:])
                if not self.transport.is_active():
                    raise HostUnreachable(f"connection dropped while running: {short(command)}")
                if self.abort is not None and self.abort.is_set():
                    (kill or self._kill)(out.pid, nonce)
                    self.check_abort()
                if not got:
                    _wait(chan, min(remaining, 0.5))
            status = chan.recv_exit_status()
            if status == -1 and (self.transport is None or not self.transport.is_active()):
                # The channel closed because the transport died, not because the command ended.
                raise HostUnreachable(f"connection dropped while running: {short(command)}")
        except HostUnreachable:
            raise  # (an OSError too) already says what happened
        except _TRANSPORT_ERRORS as e:
            raise HostUnreachable(f"connection dropped while running {short(command)}: {_one_line(e)}") from None
        finally:
            chan.close()
            settle((out, err), self.spilled)
        return CommandResult(command=command, exited=None if status == -1 else status,
                             stdout=decode(out.text()), stderr=decode(err.text()),
                             duration_s=time.monotonic() - start)

    def _kill(self, pid: int | None, nonce: str) -> None:
        """End process group ``pid`` (None: the one started with ``nonce``) on the host
        through a second channel (the first may be stuck): TERM, then KILL after a grace.
        Never raises; a dead link cannot."""
        if pid is not None and pid <= 1 or not self.is_open():
            return
        target, nonce = nonce, remote.new_nonce()
        try:
            chan = self.transport.open_session(timeout=self.spec.connect_timeout)
        except _TRANSPORT_ERRORS:
            return
        try:
            chan.settimeout(self.spec.connect_timeout + remote.KILL_GRACE)
            chan.exec_command(remote.bootstrap(nonce))
            chan.sendall(remote.frame(remote.prelude(nonce) + remote.kill_script(pid, target)))
            chan.shutdown_write()
            chan.status_event.wait(self.spec.connect_timeout + remote.KILL_GRACE)
        except _TRANSPORT_ERRORS:
            pass
        finally:
            chan.close()

    def hold(self, command: str, ready: str, timeout: float,
             stdin: bytes | None = None) -> tuple[HeldCommand, str]:
        """Start the ``sh`` script ``command`` (as :meth:`run` does) and read its stdout until
        a line equal to ``ready`` appears.

        The command keeps running (e.g. holding a lock) until :meth:`HeldCommand.release`
        closes its stdin, or the connection closes.

        :param timeout: seconds to wait for ``ready``.
        :param stdin: bytes sent first (e.g. a sudo password line); stdin then stays open.
        :returns: ``(held, stdout_before_ready)`` (start-up noise of the login shell dropped).
        :raises CommandTimeout: ``ready`` did not come in time (the command is ended).
        :raises RemoteCommandFailed: the command exited before ``ready``; its output attached.
        """
        self.check_abort()
        chan = self._channel()
        marker = b"\n" + ready.encode() + b"\n"
        nonce = remote.new_nonce()
        out, err = remote.Demux(nonce, True, keep=1 << 26), remote.Demux(nonce, False)  # facts: all of it
        deadline = time.monotonic() + timeout
        try:
            chan.exec_command(remote.bootstrap(nonce))
            chan.sendall(remote.frame(remote.prelude(nonce) + command, stdin))
            while marker not in b"\n" + out.data:
                if chan.recv_ready():
                    out.feed(chan.recv(65536))
                    continue
                if chan.recv_stderr_ready():
                    err.feed(chan.recv_stderr(65536))
                    continue
                if chan.exit_status_ready() or chan.closed:
                    status = chan.recv_exit_status()
                    raise RemoteCommandFailed(f"remote step exited {status} early", exit_status=status,
                                              output=decode(out.text() + err.text()))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._kill(out.pid, nonce)
                    raise CommandTimeout(f"no answer within {timeout:g} s: {short(command)}",
                                         output=decode(out.text() + err.text())[-4096:])
                if self.abort is not None and self.abort.is_set():
                    self._kill(out.pid, nonce)
                    self.check_abort()
                select.select([chan], [], [], min(remaining, 0.5))
        except BaseException as e:
            chan.close()
            if isinstance(e, _TRANSPORT_ERRORS) and not isinstance(e, HostUnreachable):
                raise HostUnreachable(f"connection dropped: {_one_line(e)}") from None
            raise
        text = b"\n" + out.data
        before = text[1:text.index(marker) + 1]
        return HeldCommand(chan, out.pid), decode(before)

    @property
    def sftp(self) -> paramiko.SFTPClient:
        """The host's SFTP session, opened on first use over the same transport.

        Requests time out after ``spec.command_timeout`` seconds. Where the subsystem's
        stream is garbled by the login shell's start-up output, ``sftp-server`` is started
        through ``/bin/sh`` instead (:func:`~concurdeploy.ssh.remote.sftp_through_sh`).
        :raises HostUnreachable: the transport dropped or the server has no SFTP subsystem.
        """
        with self._sftp_lock:
            if self._sftp is None:
                if self.transport is None:
                    raise HostUnreachable("connection is closed")
                try:
                    try:
                        sftp = paramiko.SFTPClient.from_transport(self.transport)
                    except paramiko.SFTPError:  # login-file noise before the SFTP version
                        sftp = remote.sftp_through_sh(self.transport, self.spec.connect_timeout)
                except (*_TRANSPORT_ERRORS, paramiko.SFTPError) as e:
                    raise HostUnreachable(f"cannot start SFTP: {_one_line(e)}") from None
                if sftp is None:
                    raise HostUnreachable("cannot start SFTP: the server refused the subsystem")
                sftp.get_channel().settimeout(self.spec.command_timeout)
                self._sftp = sftp
            return self._sftp

    def prefetch_sftp(self) -> None:
        """Start opening the SFTP session in a background thread, so that its round trips
        (channel, subsystem, version) overlap other remote work; :attr:`sftp` then finds it
        ready. Errors are left for :attr:`sftp` to raise when it is used."""
        def opener():
            try:
                _ = self.sftp  # the property opens the session
            except Exception:
                pass
        if self._sftp is None and self._sftp_thread is None:
            self._sftp_thread = threading.Thread(target=opener, daemon=True, name="sftp-prefetch")
            self._sftp_thread.start()



def _open_bastion(spec: ConnectSpec) -> Connection:
    """An open, authenticated connection to a bastion (for :func:`bastions.tunnel`)."""
    return Connection(spec).open()
