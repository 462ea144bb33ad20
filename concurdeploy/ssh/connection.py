"""One SSH connection to one host (paramiko), shared by its commands and its SFTP session.

This is the only module that talks to paramiko's transport and the only place where
paramiko and socket errors become concurdeploy errors:

- refused / timed out / reset / unresolvable / banner never came → :class:`HostUnreachable`
- every credential refused → :class:`AuthFailed` (never retried)
- ``key_env``/``password_env`` unset, key file missing or encrypted without passphrase →
  :class:`CredentialsMissing`
- host key unknown or changed → :class:`HostKeyUnknown` / :class:`HostKeyMismatch`
- a remote command past its timeout → :class:`CommandTimeout`

Secret values (passwords, key text, passphrases) are read from the environment here, in
the worker, and never appear in a message.

Jump hosts (``spec.jump``): the first hop is connected to directly, each next hop and
finally the host through a ``direct-tcpip`` channel of the previous one, passed as the
socket of the next ``Transport``. Every hop's host key is verified under its own
known_hosts and policy, exactly like a host's. A bastion connection is shared by all the
hosts behind it in the process (:class:`_Bastions`: keyed by the bastion's full spec,
including the hops before it; thread-safe; kept for the life of the process, replaced if
it drops, closed at process exit or by :func:`close_bastions`). A failure on a hop is
reported on the host behind it, with the same class (``unreachable``, auth, host key…) and
a message that starts with ``bastion NAME (user@addr:port)`` (just the address when the
hop was written as one).
"""

from __future__ import annotations

import contextlib
import copy
import getpass
import io
import os
import select
import socket
import threading
import time
from dataclasses import replace

import paramiko

from concurdeploy.exceptions import (
    AuthFailed,
    CommandTimeout,
    CredentialsMissing,
    HostError,
    HostUnreachable,
    Interrupted,
)
from concurdeploy.records import CommandResult
from concurdeploy.ssh import hostkeys
from concurdeploy.ssh.specs import ConnectSpec

__all__ = ["Connection", "close_bastions", "load_private_key"]

_KEY_CLASSES = (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey)
_DEFAULT_IDENTITIES = ("~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa")
#: Key exchange preferred first: curve25519 is ≈6x cheaper for the controller than
#: OpenSSH 9's default sntrup761x25519 (see bench/), and is what OpenSSH offers everywhere.
_KEX_FIRST = ("curve25519-sha256@libssh.org", "curve25519-sha256")
#: Host key algorithms that verify an "ssh-rsa" known_hosts entry, best first.
_RSA_HOST_KEY_ALGS = ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")
#: Ciphers preferred first: AES-GCM is hardware-accelerated and needs no separate MAC.
_CIPHERS_FIRST = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes256-ctr")


def load_private_key(text: str | None = None, path: str | None = None,
                     passphrase: str | None = None, what: str = "key") -> paramiko.PKey:
    """Load an Ed25519, ECDSA or RSA private key from ``text`` (PEM/OpenSSH) or a file ``path``.

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
            from concurdeploy.ssh.passphrases import env_name

            passphrase = os.environ.get(env_name(path))
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
            note = hostkeys.verify(spec.known_hosts, spec.host_key_policy, spec.hostname,
                                   spec.port, server_key)
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
        via = f" (via bastion {spec.jump[-1].name})" if spec.jump else ""
        return f"{spec.hostname}:{spec.port}{via}"

    def _socket(self):
        """A connected socket to the host, or a ``direct-tcpip`` channel through its last hop."""
        spec = self.spec
        if spec.jump:
            return _tunnel(spec, self.warnings)
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
        self._prefer_algorithms(t)
        try:
            t.start_client(timeout=spec.connect_timeout)
            # start_client returns quietly (no exception) when its timeout passes before the
            # banner or the key exchange completed: check that it did.
            server_key = t.get_remote_server_key() if t.is_active() and t.initial_kex_done else None
        except (paramiko.SSHException, EOFError, OSError) as e:
            self.close()
            if not _timed_out(e):
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

    # -- set-up helpers --------------------------------------------------------
    def _prefer_algorithms(self, t: paramiko.Transport) -> None:
        opts = t.get_security_options()
        known = hostkeys.known_key_types(self.spec.known_hosts, self.spec.hostname, self.spec.port)
        # known_hosts names every RSA key "ssh-rsa", but it is negotiated as rsa-sha2-512/256
        # (OpenSSH ≥ 8.8 and paramiko ≥ 4 no longer offer SHA-1 "ssh-rsa" at all).
        known = list(dict.fromkeys(a for k in known for a in (_RSA_HOST_KEY_ALGS if k == "ssh-rsa" else (k,))))
        if known:
            opts.key_types = tuple(k for k in known if k in opts.key_types) + tuple(
                k for k in opts.key_types if k not in known)
        opts.kex = tuple(k for k in _KEX_FIRST if k in opts.kex) + tuple(
            k for k in opts.kex if k not in _KEX_FIRST)
        opts.ciphers = tuple(c for c in _CIPHERS_FIRST if c in opts.ciphers) + tuple(
            c for c in opts.ciphers if c not in _CIPHERS_FIRST)

    def _credentials(self):
        """Yield ``(label, pkey_or_None, password_or_None)`` in the order OpenSSH would try them."""
        spec = self.spec
        passphrase = None
        if spec.passphrase_env:
            passphrase = os.environ.get(spec.passphrase_env)
            if passphrase is None:
                raise CredentialsMissing(f"passphrase_env {spec.passphrase_env} is not set")
        explicit = False
        if spec.key_env:
            text = os.environ.get(spec.key_env)
            if not text:
                raise CredentialsMissing(
                    f"key_env {spec.key_env} is not set (it must hold a private key, e.g. a CI secret)")
            explicit = True
            label = f"key_env {spec.key_env}"
            yield label, load_private_key(text=text, passphrase=passphrase, what=label), None
        if spec.key_file:
            explicit = True
            label = f"key_file {spec.key_file}"
            yield label, load_private_key(path=spec.key_file, passphrase=passphrase, what=label), None
        if spec.allow_agent:
            try:
                agent = paramiko.Agent()
            except paramiko.SSHException:
                agent = None
            try:  # close the agent's socket once its keys are done with (not at some GC)
                for i, key in enumerate(agent.get_keys() if agent else ()):
                    yield f"agent key {i + 1} ({key.get_name()})", key, None
            finally:
                if agent is not None:
                    agent.close()
        if not explicit:
            for path in _DEFAULT_IDENTITIES:
                if os.path.isfile(os.path.expanduser(path)):
                    try:
                        yield path, load_private_key(path=path, passphrase=passphrase, what=path), None
                    except CredentialsMissing:
                        continue
        if spec.password_env:
            password = os.environ.get(spec.password_env)
            if password is None:
                raise CredentialsMissing(f"password_env {spec.password_env} is not set")
            yield f"password_env {spec.password_env}", None, password

    def _authenticate(self, t: paramiko.Transport) -> None:
        user = self.spec.user or getpass.getuser()
        tried = []
        credentials = self._credentials()
        try:
            for label, pkey, password in credentials:
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
                except (paramiko.SSHException, EOFError, OSError) as e:
                    raise HostUnreachable(f"connection dropped during authentication: {_one_line(e)}") from None
                if t.is_authenticated():
                    return
        finally:
            credentials.close()  # runs the generator's clean-up (closes the agent) now
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
        except (paramiko.SSHException, EOFError, OSError) as e:
            raise HostUnreachable(f"cannot open a session: {_one_line(e)}") from None

    def run(self, command: str, *, stdin: bytes | None = None, timeout: float | None = None,
            on_output=None) -> CommandResult:
        """Run ``command`` through the login shell of the remote user (SSH ``exec``).

        :param stdin: bytes sent to the command's standard input, then EOF (keeps secrets
            off the remote command line); None = EOF at once.
        :param timeout: seconds before the channel is closed; None = ``spec.command_timeout``.
        :param on_output: optional ``callable(stream: str, data: bytes)`` for live output.
        :returns: :class:`CommandResult`; output decoded as UTF-8, invalid bytes replaced.
        :raises CommandTimeout: ran past ``timeout`` (the channel is closed).
        :raises HostUnreachable: the transport dropped.
        """
        timeout = self.spec.command_timeout if timeout is None else timeout
        self.check_abort()
        start = time.monotonic()
        deadline = start + timeout
        chan = self._channel()
        out, err = bytearray(), bytearray()
        try:
            chan.exec_command(command)
            if stdin:
                chan.sendall(stdin)
            chan.shutdown_write()
            while True:
                got = False
                if chan.recv_ready():
                    data = chan.recv(65536)
                    out += data
                    got = True
                    if on_output and data:
                        on_output("stdout", data)
                if chan.recv_stderr_ready():
                    data = chan.recv_stderr(65536)
                    err += data
                    got = True
                    if on_output and data:
                        on_output("stderr", data)
                if got:
                    continue
                if chan.exit_status_ready() and (chan.eof_received or chan.closed):
                    if not chan.recv_ready() and not chan.recv_stderr_ready():
                        break
                    continue
                if chan.closed and not chan.exit_status_ready():
                    raise HostUnreachable(f"connection dropped while running: {_short(command)}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise CommandTimeout(
                        f"command timed out after {timeout:g} s: {_short(command)}",
                        output=_decode(bytes(out + err))[-4096:])
                if not self.transport.is_active():
                    raise HostUnreachable(f"connection dropped while running: {_short(command)}")
                self.check_abort()
                _wait(chan, min(remaining, 0.5))
            status = chan.recv_exit_status()
            if status == -1 and (self.transport is None or not self.transport.is_active()):
                # The channel closed because the transport died, not because the command ended.
                raise HostUnreachable(f"connection dropped while running: {_short(command)}")
        except HostUnreachable:
            raise  # (an OSError too) already says what happened
        except (paramiko.SSHException, EOFError, OSError) as e:
            raise HostUnreachable(f"connection dropped while running {_short(command)}: {_one_line(e)}") from None
        finally:
            chan.close()
        return CommandResult(command=command, exited=None if status == -1 else status,
                             stdout=_decode(bytes(out)), stderr=_decode(bytes(err)),
                             duration_s=time.monotonic() - start)

    def hold(self, command: str, ready: str, timeout: float,
             stdin: bytes | None = None) -> tuple[HeldCommand, str]:
        """Start ``command`` and read its stdout until a line equal to ``ready`` appears.

        The command keeps running (e.g. holding a lock) until :meth:`HeldCommand.release`
        closes its stdin, or the connection closes.

        :param timeout: seconds to wait for ``ready``.
        :param stdin: bytes sent first (e.g. a sudo password line); stdin then stays open.
        :returns: ``(held, stdout_before_ready)``.
        :raises CommandTimeout: ``ready`` did not come in time (the command is closed).
        :raises RemoteCommandFailed: the command exited before ``ready``; its output attached.
        """
        from concurdeploy.exceptions import RemoteCommandFailed

        self.check_abort()
        chan = self._channel()
        marker = ready.encode() + b"\n"
        buf, err = bytearray(), bytearray()
        deadline = time.monotonic() + timeout
        try:
            chan.exec_command(command)
            if stdin:
                chan.sendall(stdin)
            while marker not in buf:
                if chan.recv_ready():
                    buf += chan.recv(65536)
                    continue
                if chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                    continue
                if chan.exit_status_ready() or chan.closed:
                    status = chan.recv_exit_status()
                    raise RemoteCommandFailed(f"remote step exited {status} early", exit_status=status,
                                              output=_decode(bytes(buf + err)))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise CommandTimeout(f"no answer within {timeout:g} s: {_short(command)}",
                                         output=_decode(bytes(buf + err))[-4096:])
                self.check_abort()
                select.select([chan], [], [], min(remaining, 0.5))
        except BaseException as e:
            chan.close()
            if isinstance(e, (paramiko.SSHException, EOFError, OSError)) and not isinstance(e, HostUnreachable):
                raise HostUnreachable(f"connection dropped: {_one_line(e)}") from None
            raise
        before = bytes(buf[:buf.index(marker)])
        return HeldCommand(chan), _decode(before)

    @property
    def sftp(self) -> paramiko.SFTPClient:
        """The host's SFTP session, opened on first use over the same transport.

        Requests time out after ``spec.command_timeout`` seconds.
        :raises HostUnreachable: the transport dropped or the server has no SFTP subsystem.
        """
        with self._sftp_lock:
            if self._sftp is None:
                if self.transport is None:
                    raise HostUnreachable("connection is closed")
                try:
                    sftp = paramiko.SFTPClient.from_transport(self.transport)
                except (paramiko.SSHException, EOFError, OSError) as e:
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
                self.sftp
            except Exception:
                pass
        if self._sftp is None and self._sftp_thread is None:
            self._sftp_thread = threading.Thread(target=opener, daemon=True, name="sftp-prefetch")
            self._sftp_thread.start()


class HeldCommand:
    """A remote command left running on purpose (see :meth:`Connection.hold`)."""

    def __init__(self, chan: paramiko.Channel):
        self._chan = chan

    def release(self) -> None:
        """Send a newline, close the command's stdin and its channel (it then exits).

        The newline ends a ``read`` even on servers that never pass on end-of-input
        (mock-ssh-server). Idempotent; never raises.
        """
        try:
            if not self._chan.closed:
                self._chan.sendall(b"\n")
        except Exception:
            pass
        try:
            self._chan.shutdown_write()
        except Exception:
            pass
        try:
            self._chan.close()
        except Exception:
            pass


def _wait(chan: paramiko.Channel, seconds: float) -> None:
    """Wait for the channel's next event. Once EOF has arrived paramiko's event pipe stays
    readable, so ``select`` would spin: wait for the exit status instead."""
    if chan.eof_received:
        chan.status_event.wait(seconds)
    else:
        select.select([chan], [], [], seconds)


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _short(command: str, limit: int = 120) -> str:
    first = command.strip().splitlines()[0] if command.strip() else ""
    return first if len(first) <= limit else first[:limit] + "…"


def _timed_out(e: BaseException | None) -> bool:
    """True if ``e`` is, or was raised while handling, a timeout.

    paramiko reports a banner that never came as ``SSHException("Error reading SSH protocol
    banner")``, the same text as for a closed connection; only its ``__context__`` tells.
    """
    for _ in range(10):
        if e is None:
            return False
        if isinstance(e, socket.timeout) or "timeout" in str(e).lower():
            return True
        e = e.__context__
    return False


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


# -- jump hosts --------------------------------------------------------------------

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

    def get(self, spec: ConnectSpec, warnings: list) -> Connection:
        """The open, authenticated connection to bastion ``spec`` (``spec.jump`` = its own hops).

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
            if conn is not None and conn.transport is not None and conn.transport.is_active():
                return conn
            if entry.error is not None and entry.failed_at >= asked:
                raise copy.copy(entry.error)
            if conn is not None:
                conn.close()
                entry.conn = None
            conn = Connection(spec)
            try:
                conn.open()
            except HostError as e:
                entry.error, entry.failed_at = _bastion_error(spec, e), time.monotonic()
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


def _bastion_error(spec: ConnectSpec, e: HostError) -> HostError:
    """``e`` (raised connecting to bastion ``spec``), its message naming the bastion."""
    if e.message.startswith("bastion "):
        return e  # from an earlier hop: already names it
    err = copy.copy(e)
    err.message = f"bastion {_hop_label(spec)}: {e.message}"
    err.args = (err.message, *e.args[1:])
    return err


def _hop_label(spec: ConnectSpec) -> str:
    """``NAME (user@addr:port)``, or just the address when the name is the address."""
    return spec.name if spec.name in (spec.address, f"{spec.hostname}:{spec.port}") \
        else f"{spec.name} ({spec.address})"


def _tunnel(spec: ConnectSpec, warnings: list) -> paramiko.Channel:
    """A ``direct-tcpip`` channel from ``spec``'s last hop to ``spec.hostname:spec.port``."""
    hop = replace(spec.jump[-1], jump=spec.jump[:-1])
    target = (spec.hostname, spec.port)
    for attempt in (1, 2):
        bastion = _BASTIONS.get(hop, warnings)
        try:
            return bastion.transport.open_channel("direct-tcpip", target, ("127.0.0.1", 0),
                                                  timeout=spec.connect_timeout)
        except paramiko.ChannelException as e:
            reason = {1: "forwarding administratively prohibited (AllowTcpForwarding/PermitOpen)",
                      2: "connect failed", 4: "resource shortage"}.get(e.code, e.text)
            raise HostUnreachable(f"bastion {_hop_label(hop)} could not open a tunnel to "
                                  f"{spec.hostname}:{spec.port}: {reason}") from None
        except (paramiko.SSHException, EOFError, OSError) as e:
            dead = bastion.transport is None or not bastion.transport.is_active()
            if dead:  # the shared connection dropped: forget it; reconnect once
                _BASTIONS.drop(hop, bastion)
            if attempt == 2 or not dead:
                raise HostUnreachable(f"bastion {_hop_label(hop)}: no tunnel to "
                                      f"{spec.hostname}:{spec.port}: {_one_line(e)}") from None
    raise AssertionError("not reached")
