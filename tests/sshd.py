"""Real and fake SSH servers on loopback for concurdeploy's tests.

Plain helper module (no pytest imports): ``tests/conftest.py`` wraps it in
fixtures, but it can be used from a script too.

* :class:`OpenSSHServer` -- one real ``sshd`` process (OpenSSH, found by
  :func:`find_sshd`) on ``127.0.0.1``, listening on one or more TCP ports,
  with its own ed25519 host key and an ``authorized_keys`` file holding the
  session's client keys. It can only log in the user the tests run as (when
  run as root, that is root; as a normal user, sshd can only ever log in
  that user).
* :class:`StallingServer` -- a TCP listener that accepts and then never says
  anything, for connect/banner timeout tests.
* :func:`generate_client_keys` -- ed25519/rsa/ecdsa client keys plus one
  "other" ed25519 key that no server authorises.
* :func:`write_known_hosts` / :func:`mock_ssh_known_hosts` -- known_hosts
  files for the servers above and for ``mockssh.Server``.
* :class:`Beacon` -- a FIFO that remote commands (run by a loopback sshd on this
  machine) write a line to when they reach a point; a test blocks on it instead
  of polling for a marker file.

Everything is bounded in time: no function here waits forever.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import select
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "SSHD_INSTALL_HINT",
    "Beacon",
    "ClientKeys",
    "OpenSSHServer",
    "StallingServer",
    "find_ssh_keygen",
    "find_sshd",
    "free_port",
    "generate_client_keys",
    "known_hosts_file",
    "login_user",
    "mock_ssh_known_hosts",
    "mock_ssh_known_hosts_lines",
    "write_known_hosts",
]

#: Message used when OpenSSH (server or ssh-keygen) is not installed.
SSHD_INSTALL_HINT = "openssh-server is not installed: apt-get install -y openssh-server"

#: Where OpenSSH's privilege-separation chroot directory lives on Debian.
PRIVSEP_DIR = "/run/sshd"

#: sshd's error when one of several ports cannot be bound (it keeps running).
_BIND_FAILED = re.compile(r"Bind to port \d+ on \S+ failed")

_SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd")


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------

def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    Binds a socket to ``("127.0.0.1", 0)``, reads the port the kernel chose,
    and closes the socket. Another process may grab the port before the caller
    binds it; :meth:`OpenSSHServer.start` retries with new ports in that case.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _is_executable_file(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def find_sshd() -> str | None:
    """Return the ABSOLUTE path of the OpenSSH server binary, or ``None``.

    Looks at ``/usr/sbin/sshd`` first (Debian's openssh-server), then a few
    other usual places, then ``$PATH``. sshd refuses to re-exec itself unless
    started with an absolute path, so a relative result is never returned.
    """
    for cand in _SSHD_CANDIDATES:
        if _is_executable_file(cand):
            return cand
    found = shutil.which("sshd")
    if found:
        return os.path.abspath(found)
    return None


def find_ssh_keygen() -> str | None:
    """Return the absolute path of ``ssh-keygen`` (openssh-client), or ``None``."""
    found = shutil.which("ssh-keygen") or (
        "/usr/bin/ssh-keygen" if _is_executable_file("/usr/bin/ssh-keygen") else None
    )
    return os.path.abspath(found) if found else None


def login_user() -> str:
    """Return the name of the account the tests run as (by real uid).

    This is the only user a test sshd can log in when it is not run as root,
    and the user it logs in when run as root. Unlike ``getpass.getuser()`` it
    does not trust ``$USER``/``$LOGNAME``, which can disagree with the uid
    (``sudo -E``, ``setpriv``, containers).
    """
    return pwd.getpwuid(os.getuid()).pw_name


def _ssh_keygen(path: Path, key_type: str, bits: int | None = None, comment: str = "") -> None:
    """Create an unencrypted key pair ``path`` / ``path.pub`` with ssh-keygen."""
    keygen = find_ssh_keygen()
    if keygen is None:
        raise RuntimeError("ssh-keygen not found; " + SSHD_INSTALL_HINT)
    cmd = [keygen, "-q", "-t", key_type]
    if bits is not None:
        cmd += ["-b", str(bits)]
    cmd += ["-N", "", "-C", comment or key_type, "-f", str(path)]
    proc = subprocess.run(
        cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
    )
    if proc.returncode != 0:
        raise RuntimeError(f"ssh-keygen failed ({proc.returncode}): {proc.stderr.strip()}")


def _public_key_line(private_key_path: str | Path) -> str:
    """Return ``"<keytype> <base64>"`` of ``<private_key_path>.pub`` (no comment)."""
    fields = Path(f"{private_key_path}.pub").read_text().split()
    return f"{fields[0]} {fields[1]}"


# --------------------------------------------------------------------------
# client keys
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class ClientKeys:
    """Paths of unencrypted client private keys (OpenSSH format).

    Each ``<path>.pub`` sits next to its private key. ``ed25519``, ``rsa``
    (2048 bits, for speed) and ``ecdsa`` (nistp256) are authorised on every
    :class:`OpenSSHServer`; ``other`` (ed25519) is authorised nowhere and is
    meant for wrong-key tests.
    """

    ed25519: str
    rsa: str
    ecdsa: str
    other: str

    @property
    def authorized(self) -> list[str]:
        """Private key paths that servers accept: ``[ed25519, rsa, ecdsa]``."""
        return [self.ed25519, self.rsa, self.ecdsa]

    def public_line(self, private_key_path: str) -> str:
        """``"<keytype> <base64>"`` of one of these keys."""
        return _public_key_line(private_key_path)


def generate_client_keys(directory: str | Path) -> ClientKeys:
    """Generate the four client keys in ``directory`` (created if missing).

    Takes ~0.1-0.3 s in all (RSA is 2048 bits). Files: ``id_ed25519``,
    ``id_rsa``, ``id_ecdsa``, ``id_other`` and their ``.pub``.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    specs = {
        "ed25519": ("id_ed25519", "ed25519", None),
        "rsa": ("id_rsa", "rsa", 2048),
        "ecdsa": ("id_ecdsa", "ecdsa", 256),
        "other": ("id_other", "ed25519", None),
    }
    paths = {}
    for field, (name, key_type, bits) in specs.items():
        path = d / name
        _ssh_keygen(path, key_type, bits, comment=f"concurdeploy-test-{field}")
        paths[field] = str(path)
    return ClientKeys(**paths)


# --------------------------------------------------------------------------
# process helpers (Linux /proc; degrade to no-ops elsewhere)
# --------------------------------------------------------------------------

def _children_map() -> dict[int, list[int]]:
    """Map ppid -> [pid] read from /proc (empty if /proc is unavailable)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return children
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid ..." -- comm may contain spaces/parens.
        try:
            ppid = int(data[data.rindex(b")") + 2:].split()[1])
        except (ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    return children


def _descendants(pid: int) -> list[int]:
    """All descendant PIDs of ``pid`` (children first level first)."""
    children = _children_map()
    out: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        p = todo.pop(0)
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie.

    Zombies count as gone: once an sshd listener exits, its orphaned
    children are reparented to PID 1, which may take seconds to reap them
    (seen in this project's containers/VMs).
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return data[data.rindex(b")") + 2:data.rindex(b")") + 3] != b"Z"
    except (OSError, ValueError):
        return True


def _signal_pids(pids: Iterable[int], sig: int) -> None:
    for p in pids:
        try:
            os.kill(p, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _pidfd(pid: int) -> int | None:
    """A pidfd for ``pid`` (readable once it has exited), or None: gone, or no pidfd support.

    ``os.pidfd_open`` needs Linux 5.3+; it works for any process, not only our children.
    """
    if not hasattr(os, "pidfd_open"):
        return None
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


def _wait_pids_gone(pids: Iterable[int], timeout: float) -> list[int]:
    """Wait up to ``timeout`` seconds for non-child ``pids`` to vanish; return survivors.

    Waits on each process's pidfd (readable when it exits, zombie or reaped: the same
    "gone" as :func:`_pid_alive`). Only where no pidfd can be had (old kernel, another
    OS) does it fall back to checking every 10 ms, within the same deadline.
    """
    deadline = time.monotonic() + timeout
    fds: dict[int, int] = {}
    unwatched: list[int] = []
    for p in pids:
        if not _pid_alive(p):
            continue
        fd = _pidfd(p)
        if fd is None:
            unwatched.append(p)
        else:
            fds[fd] = p
    try:
        while fds:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select(list(fds), [], [], left)
            for fd in ready:
                os.close(fd)
                del fds[fd]
        while unwatched and time.monotonic() < deadline:  # no event to wait on: bounded poll
            time.sleep(0.01)
            unwatched = [p for p in unwatched if _pid_alive(p)]
    finally:
        for fd in fds:
            os.close(fd)
    return [p for p in (*fds.values(), *unwatched) if _pid_alive(p)]


# --------------------------------------------------------------------------
# real OpenSSH server
# --------------------------------------------------------------------------

def _probe_banner(port: int, timeout: float) -> bool:
    """True if 127.0.0.1:port accepts a TCP connection and sends ``SSH-``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            data = b""
            while b"\n" not in data and len(data) < 256:
                chunk = s.recv(256)
                if not chunk:
                    break
                data += chunk
            if not data.startswith(b"SSH-"):
                return False
            # Answer with a client banner so that sshd's log does not fill with
            # "kex_exchange_identification: Connection closed" errors.
            try:
                s.sendall(b"SSH-2.0-concurdeploy-test-probe\r\n")
            except OSError:
                pass
            return True
    except OSError:
        return False


class OpenSSHServer:
    """One real ``sshd`` process on 127.0.0.1, listening on one or more ports.

    Files live in ``workdir``: ``host_key`` (+ ``.pub``, ed25519),
    ``authorized_keys`` (the ed25519, rsa and ecdsa client public keys, not
    ``other``), ``sshd_config``, ``sshd.pid`` and ``sshd.log`` (sshd's stderr,
    ``-e``, at ``LogLevel ERROR``).

    Attributes:
        ports: TCP ports (ints) sshd listens on; chosen with :func:`free_port`
            when not given (and re-chosen if a port was stolen before sshd
            could bind it).
        host_key_path: path (str) of the server's private host key.
        host_public_key_line: ``"ssh-ed25519 <base64>"`` of the host key.
        pid: PID (int) of the listening sshd while running, else ``None``.
        workdir: the directory above (``Path``).

    Use as a context manager or call :meth:`start` / :meth:`stop`.
    """

    #: Number of times :meth:`start` re-picks ports after "Address already in use".
    bind_retries = 3

    def __init__(
        self,
        workdir: str | Path,
        keys: ClientKeys,
        ports: list[int] | None = None,
        extra_config: str = "",
        *,
        n_ports: int = 1,
        sshd_path: str | None = None,
    ) -> None:
        """Prepare (but do not start) a server.

        Args:
            workdir: empty or new directory for this server's files.
            keys: client keys; their ed25519/rsa/ecdsa public keys are authorised.
            ports: ports to listen on; ``None`` picks ``n_ports`` free ports.
            extra_config: appended verbatim to sshd_config (later lines do not
                override earlier ones in sshd_config: first value wins for most
                keywords, so prefer ``Match`` blocks or keywords not set here); a
                ``Subsystem sftp`` line here replaces the default ``internal-sftp``.
            n_ports: how many ports to pick when ``ports`` is ``None``.
            sshd_path: absolute path of sshd; default :func:`find_sshd`.
        """
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.keys = keys
        self._auto_ports = ports is None
        self.ports: list[int] = list(ports) if ports is not None else [free_port() for _ in range(n_ports)]
        if not self.ports:
            raise ValueError("OpenSSHServer needs at least one port")
        self.extra_config = extra_config
        sshd = sshd_path or find_sshd()
        if sshd is None:
            raise RuntimeError(SSHD_INSTALL_HINT)
        if not os.path.isabs(sshd):
            raise ValueError(f"sshd must be started with an absolute path, got {sshd!r}")
        self.sshd_path = sshd

        self.host_key_path = str(self.workdir / "host_key")
        self.authorized_keys_path = str(self.workdir / "authorized_keys")
        self.config_path = str(self.workdir / "sshd_config")
        self.pid_file = str(self.workdir / "sshd.pid")
        self.log_path = str(self.workdir / "sshd.log")

        if not os.path.exists(self.host_key_path):
            _ssh_keygen(Path(self.host_key_path), "ed25519", comment="concurdeploy-test-host")
        self.host_public_key_line = _public_key_line(self.host_key_path)
        Path(self.authorized_keys_path).write_text(
            "".join(_public_key_line(k) + "\n" for k in keys.authorized)
        )
        self._proc: subprocess.Popen | None = None
        self._log_file = None

    # -- info ---------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """PID of the running sshd listener, or ``None`` when not running."""
        if self._proc is None or self._proc.poll() is not None:
            return None
        return self._proc.pid

    @property
    def host(self) -> str:
        """Always ``"127.0.0.1"``."""
        return "127.0.0.1"

    @property
    def port(self) -> int:
        """The first port (convenience for single-port servers)."""
        return self.ports[0]

    def known_hosts_lines(self) -> list[str]:
        """One ``"[127.0.0.1]:PORT ssh-ed25519 <base64>"`` line per port."""
        return [f"[127.0.0.1]:{p} {self.host_public_key_line}" for p in self.ports]

    def authorize(self, private_key_path: str | Path) -> None:
        """Append the public key ``<private_key_path>.pub`` to ``authorized_keys``.

        sshd reads the file at each login, so this works on a running server too.
        """
        with open(self.authorized_keys_path, "a", encoding="utf-8") as f:
            f.write(_public_key_line(private_key_path) + "\n")

    def stderr_text(self) -> str:
        """What sshd has written to stderr so far (its log, ``LogLevel ERROR``)."""
        try:
            return Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""

    def __repr__(self) -> str:
        return f"<OpenSSHServer ports={self.ports} pid={self.pid}>"

    # -- config ---------------------------------------------------------------

    def render_config(self) -> str:
        """Return the sshd_config text for the current ports and files."""
        lines = [f"Port {p}" for p in self.ports]
        lines += [
            "ListenAddress 127.0.0.1",
            "AddressFamily inet",
            f"HostKey {self.host_key_path}",
            f"AuthorizedKeysFile {self.authorized_keys_path}",
            f"PidFile {self.pid_file}",
            "UsePAM no",
            "StrictModes no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            *(() if "Subsystem sftp" in self.extra_config else ("Subsystem sftp internal-sftp",)),
            "MaxStartups 200:30:300",
            "MaxSessions 50",
            "LogLevel ERROR",
            "PrintMotd no",
            "PrintLastLog no",
            "UseDNS no",
        ]
        text = "\n".join(lines) + "\n"
        if self.extra_config:
            text += self.extra_config.rstrip("\n") + "\n"
        return text

    # -- lifecycle --------------------------------------------------------------

    @staticmethod
    def _ensure_privsep_dir() -> None:
        """Create /run/sshd (mode 0755) if we may.

        sshd only needs it when started as root: it then chroots its
        unprivileged pre-auth child there and insists that it be owned by
        root and not group/world-writable. Started as another user, sshd
        skips the chroot (and the ``sshd`` privsep user), so a
        PermissionError here is harmless and ignored.
        """
        try:
            os.makedirs(PRIVSEP_DIR, mode=0o755, exist_ok=True)
        except OSError:
            if os.geteuid() == 0:
                raise

    def start(self, timeout: float = 10.0) -> None:
        """Start sshd and wait until every port presents an SSH banner.

        Runs ``<sshd_path> -D -e -f <workdir>/sshd_config`` (absolute path;
        ``-D`` stays in the foreground so ``pid`` is the listener, ``-e`` logs
        to ``sshd.log``). Typically ready in 20-50 ms.

        Args:
            timeout: seconds to wait for readiness, in all (per attempt).

        Raises:
            RuntimeError: sshd exited, failed to bind a port, or was not ready
                within ``timeout``; the message includes sshd's stderr.
        """
        if self.pid is not None:
            return
        self._ensure_privsep_dir()
        attempts = 1 + (self.bind_retries if self._auto_ports else 0)
        for attempt in range(attempts):
            err = self._start_once(timeout)
            if err is None:
                return
            bind_race = "Address already in use" in err
            if bind_race and attempt + 1 < attempts:
                self.ports = [free_port() for _ in self.ports]
                continue
            raise RuntimeError(err)

    def _start_once(self, timeout: float) -> str | None:
        """One start attempt; return ``None`` on success or an error message.

        Readiness is an event: sshd is started with ``NOTIFY_SOCKET`` pointing at an
        abstract datagram socket of ours, and Debian's sshd (and upstream's since 9.8)
        sends ``READY=1`` there once it listens (systemd's sd_notify protocol). The wait
        also wakes when sshd exits (its pidfd). Every port is then checked for an SSH
        banner. An sshd without sd_notify support still works: the banner check is then
        repeated every 20 ms until ``timeout``.
        """
        Path(self.config_path).write_text(self.render_config())
        try:
            os.unlink(self.pid_file)
        except FileNotFoundError:
            pass
        self._log_file = open(self.log_path, "wb")
        cmd = [self.sshd_path, "-D", "-e", "-f", self.config_path]
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            name = f"concurdeploy-test-sshd-{os.getpid()}-{secrets.token_hex(6)}"
            notify.bind("\0" + name)  # abstract namespace: no file, no path-length limit
            notify.setblocking(False)
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                close_fds=True,
                start_new_session=True,  # keep Ctrl-C of pytest away from sshd
                env={**os.environ, "NOTIFY_SOCKET": "@" + name},
            )
            exited = _pidfd(self._proc.pid)
            try:
                return self._wait_ready(notify, exited, timeout)
            finally:
                if exited is not None:
                    os.close(exited)
        finally:
            notify.close()

    def _wait_ready(self, notify: socket.socket, exited: int | None, timeout: float) -> str | None:
        """Wait for READY=1 on ``notify`` or sshd's exit (pidfd ``exited``), then for the banners."""
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        pending = list(self.ports)
        ready = False
        while True:
            if self._proc.poll() is not None:
                rc = self._proc.returncode
                self._cleanup_proc()
                return f"sshd exited with status {rc} during start: {self.stderr_text().strip()}"
            if _BIND_FAILED.search(self.stderr_text()):
                msg = f"sshd could not bind all of {self.ports}: {self.stderr_text().strip()}"
                self.stop()
                return msg
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                msg = (
                    f"sshd (pid {self._proc.pid}) not ready on ports {pending} "
                    f"after {timeout:.1f}s: {self.stderr_text().strip()}"
                )
                self.stop()
                return msg
            # Once sshd said READY=1 it listens: each probe may then block until the banner comes.
            probe_timeout = remaining if ready else min(0.25, max(remaining, 0.05))
            pending = [p for p in pending if not _probe_banner(p, probe_timeout)]
            if not pending:
                return None
            # Wait for READY=1 (once), sshd's exit, or 20 ms, whichever comes first.
            events = ([] if ready else [notify]) + ([exited] if exited is not None else [])
            wait = max(0.0, min(deadline - time.monotonic(), 0.02))
            readable, _, _ = select.select(events, [], [], wait)
            if notify in readable:
                try:
                    ready = b"READY=1" in notify.recv(4096)
                except BlockingIOError:
                    pass

    def _cleanup_proc(self) -> None:
        self._proc = None
        if self._log_file is not None:
            try:
                self._log_file.close()
            except OSError:
                pass
            self._log_file = None

    def stop(self, timeout: float = 5.0) -> None:
        """Stop sshd and its per-connection children; idempotent.

        Sends SIGTERM to the listener's descendants (one sshd process per open
        connection; they call setsid() and would otherwise outlive the
        listener), waits for them (at most 2 s), then SIGTERMs the listener
        PID and waits up to ``timeout`` seconds, SIGKILLing whatever is left.
        Only PIDs descending from the sshd this object started are signalled.
        """
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            # Children first, while the listener is alive to reap them
            # (otherwise they linger as zombies of PID 1 for a while).
            kids = _descendants(proc.pid)
            _signal_pids(kids, signal.SIGTERM)
            _wait_pids_gone(kids, timeout=min(timeout, 2.0))
            late = [p for p in _descendants(proc.pid) if p not in kids]
            kids += late
            _signal_pids([*late, proc.pid], signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _signal_pids([proc.pid], signal.SIGKILL)
                proc.wait(timeout=timeout)
            survivors = _wait_pids_gone(kids, timeout=min(timeout, 2.0))
            if survivors:
                _signal_pids(survivors, signal.SIGKILL)
                _wait_pids_gone(survivors, timeout=1.0)
        self._cleanup_proc()

    def __enter__(self) -> OpenSSHServer:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


# --------------------------------------------------------------------------
# known_hosts
# --------------------------------------------------------------------------

def mock_ssh_known_hosts_lines(server) -> list[str]:
    """known_hosts lines for a running ``mockssh.Server``.

    mockssh (0.9.x) does NOT generate a host key: every ``mockssh.Server``
    presents the same RSA key shipped inside the package
    (``mockssh/server-key``, i.e. ``mockssh.server.SERVER_KEY_PATH``), so it
    is public and must never be trusted anywhere real. The line is
    ``"[127.0.0.1]:PORT ssh-rsa <base64>"``; paramiko still negotiates
    rsa-sha2-* signatures with it.
    """
    import mockssh.server
    import paramiko

    key = paramiko.RSAKey.from_private_key_file(mockssh.server.SERVER_KEY_PATH)
    return [f"[{server.host}]:{server.port} {key.get_name()} {key.get_base64()}"]


def _lines_for(server) -> list[str]:
    if hasattr(server, "known_hosts_lines"):
        return list(server.known_hosts_lines())
    if hasattr(server, "users") and hasattr(server, "port"):  # mockssh.Server
        return mock_ssh_known_hosts_lines(server)
    raise TypeError(f"don't know the host key of {server!r}")


def write_known_hosts(path: str | Path, servers: Iterable) -> None:
    """(Over)write a known_hosts file for ``servers``.

    ``servers`` may mix :class:`OpenSSHServer` (one line per port) and
    ``mockssh.Server`` objects. Host names are ``[127.0.0.1]:PORT`` as
    OpenSSH and paramiko write them for non-22 ports.
    """
    lines: list[str] = []
    for s in servers:
        lines.extend(_lines_for(s))
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("".join(line + "\n" for line in lines))


def known_hosts_file(servers: Iterable, directory: str | Path, name: str = "known_hosts") -> str:
    """Write ``directory/name`` with :func:`write_known_hosts`; return its path (str)."""
    path = Path(directory) / name
    write_known_hosts(path, servers)
    return str(path)


def mock_ssh_known_hosts(server, path: str | Path) -> str:
    """(Over)write ``path`` with the known_hosts line of a ``mockssh.Server``; return it as str."""
    write_known_hosts(path, [server])
    return str(path)


# --------------------------------------------------------------------------
# a server that never talks
# --------------------------------------------------------------------------

class StallingServer:
    """A loopback TCP listener that accepts connections and never sends a byte.

    Accepted sockets are held open (not read, not closed) until :meth:`stop`,
    so a client's TCP connect succeeds but waiting for the SSH banner (or any
    data) times out. Runs one daemon thread.

    Attributes:
        host: ``"127.0.0.1"``.
        port: the listening port (int), valid after :meth:`start`.
        connections: number of connections accepted so far (int).
    """

    host = "127.0.0.1"

    def __init__(self, port: int = 0, backlog: int = 128) -> None:
        """Args: ``port`` to bind (0 = any free port), listen ``backlog``."""
        self._requested_port = port
        self._backlog = backlog
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._accepted = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.port: int | None = None

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._conns)

    def wait_for_connections(self, n: int, timeout: float) -> bool:
        """Block until ``n`` connections have been accepted in all (by this object, ever).

        :param timeout: seconds to wait at most.
        :returns: True once ``n`` were accepted; False if ``timeout`` passed first.
        """
        with self._changed:
            return self._changed.wait_for(lambda: self._accepted >= n, timeout=timeout)

    def start(self) -> StallingServer:
        """Bind, listen and start the accept thread; returns self."""
        if self._sock is not None:
            return self
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self._requested_port))
        s.listen(self._backlog)
        s.settimeout(0.05)
        self._sock = s
        self.port = int(s.getsockname()[1])
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"stalling-server-{self.port}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        sock = self._sock
        assert sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            with self._changed:
                self._conns.append(conn)
                self._accepted += 1
                self._changed.notify_all()

    def stop(self, timeout: float = 2.0) -> None:
        """Close the listener and every held connection; idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            try:
                c.close()
            except OSError:
                pass

    def __enter__(self) -> StallingServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


# --------------------------------------------------------------------------
# an event remote commands can raise
# --------------------------------------------------------------------------

class Beacon:
    """A named pipe (FIFO) that commands write one line to; the test waits on it.

    Commands run by a loopback sshd run on this machine, so a remote step can say
    "I got here" with ``echo NAME > PATH`` (see :meth:`command`), and the test blocks
    on that event (``select``) instead of polling for a marker file.

    The test keeps a write end open too, so the reader never sees end-of-file between
    two writers, and a writer's ``open`` never blocks (a reader is always there). Lines
    under 4096 bytes (PIPE_BUF) from concurrent writers never interleave.

    Attributes:
        path: the FIFO's path (str).
        lines: the lines read so far (``list[str]``, in arrival order).

    Use as a context manager or call :meth:`close`.
    """

    def __init__(self, path: str | Path) -> None:
        """Create the FIFO at ``path`` (must not exist) and open both ends, non-blocking."""
        self.path = str(path)
        os.mkfifo(self.path, 0o600)
        self._fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        self._keep = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
        self._buf = b""
        self.lines: list[str] = []

    def fileno(self) -> int:
        """The read end, for ``select``; call :meth:`read` when it is readable."""
        return self._fd

    def command(self, line: str) -> str:
        """Shell command writing ``line`` (no quotes or newlines) to the FIFO."""
        return f"echo {line} > '{self.path}'"

    def read(self) -> list[str]:
        """Read what is there without blocking; return :attr:`lines`."""
        while True:
            try:
                data = os.read(self._fd, 4096)
            except BlockingIOError:
                break
            if not data:
                break
            self._buf += data
        *complete, self._buf = self._buf.split(b"\n")
        self.lines += [c.decode("utf-8", "replace") for c in complete]
        return self.lines

    def wait(self, n: int, timeout: float, proc: subprocess.Popen | None = None) -> list[str]:
        """Block until :attr:`lines` holds ``n`` lines; return them.

        :param timeout: seconds to wait at most.
        :param proc: if given, stop waiting as soon as this process exits (its pidfd).
        :raises TimeoutError: fewer than ``n`` lines within ``timeout``.
        :raises ChildProcessError: ``proc`` exited before the ``n``-th line.
        """
        deadline = time.monotonic() + timeout
        exited = _pidfd(proc.pid) if proc is not None else None
        try:
            while len(self.read()) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.path}: {len(self.lines)} of {n} lines within {timeout:g} s: "
                                       f"{self.lines}")
                if proc is not None and proc.poll() is not None:
                    raise ChildProcessError(f"process {proc.pid} exited with {proc.returncode} after "
                                            f"{len(self.lines)} of {n} lines")
                events = [self._fd] + ([exited] if exited is not None else [])
                select.select(events, [], [], left if exited is not None or proc is None else min(left, 0.1))
        finally:
            if exited is not None:
                os.close(exited)
        return self.lines

    def close(self) -> None:
        """Close both ends and remove the FIFO; idempotent."""
        for fd in (self._fd, self._keep):
            if fd >= 0:
                os.close(fd)
        self._fd = self._keep = -1
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def __enter__(self) -> Beacon:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
