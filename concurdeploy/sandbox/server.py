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
``concurdeploy.sandbox.server`` at DEBUG level.
"""

from __future__ import annotations

import errno
import getpass
import logging
import os
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable

import paramiko
import paramiko.sftp as _paramiko_sftp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)
from paramiko.channel import Channel
from paramiko.common import MSG_CHANNEL_REQUEST
from paramiko.message import Message
from paramiko.sftp import CMD_INIT, CMD_VERSION, SFTPError

__all__ = ["Sandbox"]

_SFTP_VERSION = getattr(_paramiko_sftp, "_VERSION", 3)

log = logging.getLogger(__name__)

#: Log channel of the server-side paramiko transports (and, as ``….sftp``, of SFTP).
SSH_LOG_CHANNEL = __name__ + ".ssh"
_ssh_logger = logging.getLogger(SSH_LOG_CHANNEL)
_ssh_logger.addHandler(logging.NullHandler())
_ssh_logger.propagate = False

#: Seconds a listener's ``accept()`` waits before re-checking for :meth:`Sandbox.stop`.
ACCEPT_POLL = 0.2
#: Seconds :meth:`Sandbox.stop` waits, in total, for threads and commands to finish.
STOP_TIMEOUT = 5.0
#: Bytes moved per read between a channel and a command's pipes.
CHUNK = 32768

HOST_KEY_FILE = "host_key"
CLIENT_KEY_FILE = "id_ed25519"
KNOWN_HOSTS_FILE = "known_hosts"


# --------------------------------------------------------------------------
# files in the state directory
# --------------------------------------------------------------------------

def _load_or_create_key(path: str) -> paramiko.Ed25519Key:
    """Load the ed25519 key at ``path``, creating it (mode 0600) first if absent.

    Creation is atomic and never overwrites: the key is written to a temporary
    file and hard-linked into place, so two processes racing on a fresh state
    directory end up sharing whichever key landed first.
    """
    if not os.path.exists(path):
        pem = Ed25519PrivateKey.generate().private_bytes(
            Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()
        )
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-key-")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
        finally:
            os.unlink(tmp)
    return paramiko.Ed25519Key.from_private_key_file(path)


def _write_atomically(path: str, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-kh-")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# --------------------------------------------------------------------------
# transport: run deferred work only after a channel request has been answered
# --------------------------------------------------------------------------

def _handle_request_then_run_deferred(chan: Channel, m: Message) -> None:
    Channel._handle_request(chan, m)  # answers MSG_CHANNEL_SUCCESS / FAILURE
    server = chan.transport.server_object
    if isinstance(server, _SSHServer):
        server.run_after_reply(chan.get_id())


class _Transport(paramiko.Transport):
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
_CAN_DEFER = paramiko.Transport._channel_handler_table.get(MSG_CHANNEL_REQUEST) is (
    Channel._handle_request
)


# --------------------------------------------------------------------------
# SFTP on the real filesystem
# --------------------------------------------------------------------------

def _sftp_error(e: OSError) -> int:
    return paramiko.SFTPServer.convert_errno(e.errno)


def _apply_attrs(target: str | int, attr: paramiko.SFTPAttributes, *, mode: bool = True) -> None:
    """Apply the fields present in ``attr`` to a path or an open file descriptor."""
    if mode and attr.st_mode is not None:
        os.chmod(target, stat.S_IMODE(attr.st_mode))
    if attr.st_uid is not None and attr.st_gid is not None:
        os.chown(target, attr.st_uid, attr.st_gid)
    if attr.st_atime is not None and attr.st_mtime is not None:
        os.utime(target, (attr.st_atime, attr.st_mtime))
    if attr.st_size is not None:
        os.truncate(target, attr.st_size)


class _SFTPHandle(paramiko.SFTPHandle):
    def __init__(self, flags: int, path: str, fileobj) -> None:
        super().__init__(flags)
        self.filename = path
        self.readfile = fileobj
        self.writefile = fileobj

    def stat(self):
        try:
            return paramiko.SFTPAttributes.from_stat(os.fstat(self.readfile.fileno()))
        except OSError as e:
            return _sftp_error(e)

    def chattr(self, attr):
        try:
            self.writefile.flush()
            _apply_attrs(self.writefile.fileno(), attr)
        except OSError as e:
            return _sftp_error(e)
        return paramiko.SFTP_OK


class _SFTPInterface(paramiko.SFTPServerInterface):
    """SFTP requests mapped one-to-one onto ``os`` calls, paths used as given."""

    def list_folder(self, path):
        try:
            out = []
            for name in os.listdir(path):
                try:
                    st = os.lstat(os.path.join(path, name))
                except FileNotFoundError:
                    continue  # vanished meanwhile
                out.append(paramiko.SFTPAttributes.from_stat(st, name))
            return out
        except OSError as e:
            return _sftp_error(e)

    def stat(self, path):
        try:
            return paramiko.SFTPAttributes.from_stat(os.stat(path))
        except OSError as e:
            return _sftp_error(e)

    def lstat(self, path):
        try:
            return paramiko.SFTPAttributes.from_stat(os.lstat(path))
        except OSError as e:
            return _sftp_error(e)

    def open(self, path, flags, attr):
        # ``flags`` are already os.O_* flags (SFTPServer converts them).
        mode = stat.S_IMODE(attr.st_mode) if attr.st_mode is not None else 0o666
        try:
            fd = os.open(path, flags, mode)
        except OSError as e:
            return _sftp_error(e)
        if flags & os.O_WRONLY:
            fmode = "ab" if flags & os.O_APPEND else "wb"
        elif flags & os.O_RDWR:
            fmode = "a+b" if flags & os.O_APPEND else "r+b"
        else:
            fmode = "rb"
        try:
            fileobj = os.fdopen(fd, fmode)
        except OSError as e:
            os.close(fd)
            return _sftp_error(e)
        return _SFTPHandle(flags, path, fileobj)

    def remove(self, path):
        try:
            os.remove(path)
        except OSError as e:
            return _sftp_error(e)
        return paramiko.SFTP_OK

    def rename(self, oldpath, newpath):
        # Plain SFTP rename never replaces: like OpenSSH, link()+unlink() for
        # regular files (atomic no-clobber), otherwise check-then-rename.
        try:
            st = os.lstat(oldpath)
            if stat.S_ISREG(st.st_mode):
                try:
                    os.link(oldpath, newpath)
                except OSError as e:
                    if e.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV, errno.EPERM):
                        raise
                    self._rename_if_absent(oldpath, newpath)
                else:
                    try:
                        os.unlink(oldpath)
                    except OSError:
                        os.unlink(newpath)
                        raise
            else:
                self._rename_if_absent(oldpath, newpath)
        except OSError as e:
            return _sftp_error(e)
        return paramiko.SFTP_OK

    @staticmethod
    def _rename_if_absent(oldpath: str, newpath: str) -> None:
        if os.path.lexists(newpath):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), newpath)
        os.rename(oldpath, newpath)

    def posix_rename(self, oldpath, newpath):
        try:
            os.replace(oldpath, newpath)
        except OSError as e:
            return _sftp_error(e)
        return paramiko.SFTP_OK

    def mkdir(self, path, attr):
        mode = stat.S_IMODE(attr.st_mode) if attr.st_mode is not None else 0o777
        try:
            os.mkdir(path, mode)
            _apply_attrs(path, attr, mode=False)
        except OSError as e:
            return _sftp_error(e)
        return paramiko.SFTP_OK

    def rmdir(self, path):
        try:
            os.rmdir(path)
        except OSError as e:
            return _sftp_error(e)
        return paramiko.SFTP_OK

    def chattr(self, path, attr):
        try:
            _apply_attrs(path, attr)
        except OSError as e:
            return _sftp_error(e)
        return paramiko.SFTP_OK

    def readlink(self, path):
        try:
            return os.readlink(path)
        except OSError as e:
            return _sftp_error(e)

    def symlink(self, target_path, path):
        try:
            os.symlink(target_path, path)
        except OSError as e:
            return _sftp_error(e)
        return paramiko.SFTP_OK

    def canonicalize(self, path):
        # Must return a str: SFTPServer sends whatever comes back as the name.
        return os.path.realpath(path or ".")


class _SFTPServer(paramiko.SFTPServer):
    """paramiko's SFTP server, also advertising ``posix-rename@openssh.com``.

    paramiko's server implements the extension but only advertises
    ``check-file`` in its VERSION packet; clients that look for the extension
    before using it (OpenSSH's ``sftp``) would otherwise not use it.
    """

    def _send_server_version(self):
        t, data = self._read_packet()
        if t != CMD_INIT:
            raise SFTPError("Incompatible sftp protocol")
        msg = Message()
        msg.add_int(_SFTP_VERSION)
        msg.add("posix-rename@openssh.com", "1", "check-file", "md5,sha1")
        self._send_packet(CMD_VERSION, msg)
        return int.from_bytes(data[:4], "big")


# --------------------------------------------------------------------------
# exec: one subprocess per channel
# --------------------------------------------------------------------------

def _spawn(target: Callable[[], None], name: str, *, start: bool = True) -> threading.Thread:
    """A daemon thread running ``target``; exceptions are logged at DEBUG, never printed."""
    def run() -> None:
        try:
            target()
        except Exception:
            log.debug("sandbox thread %s failed", name, exc_info=True)

    t = threading.Thread(target=run, name=name, daemon=True)
    if start:
        t.start()
    return t


def _kill_group(proc: subprocess.Popen, sig: int) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


class _ExecSession:
    """``/bin/sh -c COMMAND`` connected to one channel."""

    def __init__(self, sandbox: Sandbox, chan: Channel, command: bytes) -> None:
        self.sandbox = sandbox
        self.chan = chan
        self.command = command
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        t = _spawn(self._run, f"sandbox-exec-{self.chan.get_id()}", start=False)
        self.sandbox._track_thread(t, add=True)
        t.start()

    def _run(self) -> None:
        chan = self.chan
        try:
            try:
                self.proc = proc = subprocess.Popen(
                    [b"/bin/sh", b"-c", self.command],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    env=os.environ, start_new_session=True,
                )
            except OSError as e:
                self._finish(127, f"sandbox: cannot run /bin/sh: {e}\n".encode())
                return
            self.sandbox._track_proc(proc, add=True)
            try:
                t_in = _spawn(self._pump_stdin, "sandbox-stdin")
                t_err = _spawn(lambda: self._pump_out(proc.stderr, chan.sendall_stderr),
                               "sandbox-stderr")
                self._pump_out(proc.stdout, chan.sendall)
                t_err.join()
                rc = proc.wait()
                self._finish(rc if rc >= 0 else 128 - rc)
                t_in.join(STOP_TIMEOUT)
            finally:
                self.sandbox._track_proc(proc, add=False)
        finally:
            self.sandbox._track_thread(threading.current_thread(), add=False)

    def _finish(self, code: int, stderr: bytes = b"") -> None:
        try:
            if stderr:
                self.chan.sendall_stderr(stderr)
            self.chan.send_exit_status(code)
        except Exception:
            pass  # channel already gone
        self.chan.close()

    def _pump_out(self, stream, send: Callable[[bytes], None]) -> None:
        fd = stream.fileno()
        sending = True
        try:
            while True:
                data = os.read(fd, CHUNK)
                if not data:
                    return
                if sending:
                    try:
                        send(data)
                    except Exception:
                        sending = False  # channel closed: drain and discard
        finally:
            stream.close()

    def _pump_stdin(self) -> None:
        chan, proc = self.chan, self.proc
        writing = True
        while True:
            data = chan.recv(CHUNK)  # b"" on EOF from the client or channel closed
            if not data:
                break
            if writing:
                try:
                    proc.stdin.write(data)
                    proc.stdin.flush()
                except (OSError, ValueError):
                    writing = False  # command closed its stdin: discard the rest
        try:
            proc.stdin.close()
        except (OSError, ValueError):
            pass
        # Wait for the channel to close: by _finish() after the command exited,
        # or earlier by the client / a dropped connection / stop(): then hang up.
        chan.status_event.wait()
        if proc.poll() is None:
            _kill_group(proc, signal.SIGTERM)


# --------------------------------------------------------------------------
# the SSH server interface
# --------------------------------------------------------------------------

class _SSHServer(paramiko.ServerInterface):
    def __init__(self, sandbox: Sandbox, host: str) -> None:
        self.sandbox = sandbox
        self.host = host
        self._after_reply: dict[int, Callable[[], None]] = {}
        self._lock = threading.Lock()

    def run_after_reply(self, chanid: int) -> None:
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
        session = _ExecSession(self.sandbox, channel, bytes(command))
        if _CAN_DEFER and isinstance(channel.get_transport(), _Transport):
            with self._lock:
                self._after_reply[channel.get_id()] = session.start
        else:
            session.start()
        return True

    # shell, pty, env, forwarding: ServerInterface's defaults refuse them.
    # subsystem: the default dispatches to Transport.set_subsystem_handler ("sftp").


# --------------------------------------------------------------------------
# the public class
# --------------------------------------------------------------------------

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
        self._host_key = _load_or_create_key(os.path.join(self._state_dir, HOST_KEY_FILE))
        self._client_key_path = os.path.join(self._state_dir, CLIENT_KEY_FILE)
        self._client_key = _load_or_create_key(self._client_key_path)
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
                key_line = f"{self._host_key.get_name()} {self._host_key.get_base64()}"
                _write_atomically(
                    self._known_hosts_path,
                    "".join(f"[127.0.0.1]:{h.port} {key_line}\n" for h in all_hosts),
                )
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
            _kill_group(p, signal.SIGTERM)
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
            _kill_group(p, signal.SIGKILL)
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
            transport = _Transport(conn)
            transport.set_log_channel(SSH_LOG_CHANNEL)
            transport.add_server_key(self._host_key)
            transport.set_subsystem_handler("sftp", _SFTPServer, _SFTPInterface)
            with self._lock:
                if host.stop_event.is_set():
                    raise EOFError("sandbox stopping")
                self._transports = {t for t in self._transports if t.is_active()}
                self._transports.add(transport)
            transport.start_server(server=_SSHServer(self, host.name))
        except Exception:  # bad client, abrupt disconnect, stop(): all quiet
            log.debug("sandbox %s: connection ended during handshake", host.name, exc_info=True)
            if transport is not None:
                transport.close()  # a no-op unless the transport got active
            conn.close()
        finally:
            self._track_thread(threading.current_thread(), add=False)
