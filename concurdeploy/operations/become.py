"""Who the remote steps run as: the login user, or another user through ``sudo`` (Ansible's
"become"), as a strategy object chosen once per host.

:class:`Become` is the picklable declaration (a host's ``become`` vars, ``--sudo``);
:func:`privilege_for` turns it into a :class:`Privilege` in the worker, and the host
operations call only that object's methods (``run``, ``hold``, ``open_upload``,
``staged``, ``sftp_rename``, ``read_bytes``), never ``isinstance`` checks:

* :class:`AsLoginUser` — commands run as they are, SFTP writes, renames and reads directly;
* :class:`Sudo` — every command runs through ``sudo … /bin/sh -c``; SFTP (which acts as the
  login user) only writes a private staging file the user can write
  (``/tmp/.concurdeploy-stage-<uuid>-<owner PID>``, mode 0600), which a root command copies beside the
  destination; every remote step — copy, checksum, mode and owner, validate, backup, the
  atomic ``mv`` (``rename(2)`` in the same directory), reload, rollback — runs as root.

The sudo password, when sudo asks for one, comes from the environment variable named by
``become_password_env`` and is sent as the first line of the remote command's standard
input, never on a command line where other users could read it in the process list. The
remote login shell (POSIX ``sh``) reads that line into an unexported variable, then:

* if sudo needs no password (``NOPASSWD``, cached credentials), the line is dropped and the
  command runs with ``sudo -n``: the password never reaches the command's stdin;
* else ``sudo -k -S`` checks the password once with stdin closed after it (a wrong password
  fails at once instead of sudo waiting for another try on a held command's open stdin),
  then runs the command with the password line followed by the rest of stdin.

Without ``become_password_env``, ``sudo -n`` fails at once instead of prompting. Either way a
refusal by sudo is reported as :class:`~concurdeploy.exceptions.AuthFailed` naming the
variable, never its value.
"""

from __future__ import annotations

import errno
import stat

import base64
import shlex
import uuid
from dataclasses import dataclass, field, replace
from typing import Protocol

from concurdeploy.exceptions import AuthFailed, CredentialsMissing, RemoteCommandFailed, UsageError
from concurdeploy.ssh import envsecrets
from concurdeploy.ssh.remote import KILL_GRACE, SH_READER, frame, kill_script

__all__ = ["SUDO_FAILED", "AsLoginUser", "Become", "Privilege", "Sudo", "create_exclusive", "privilege_for",
           "refusal", "with_password", "wrap"]


@dataclass(frozen=True)
class Become:
    """Run remote steps as ``user`` (default root) through sudo.

    :param password_env: name of an environment variable holding the sudo password, or None
        (then sudo must not ask: NOPASSWD, or a cached credential).
    :param password: the sudo password itself (``-K``: typed on the controller's terminal, carried
        in the job to a local worker, never put in an environment); beats ``password_env``.
    """

    user: str = "root"
    password_env: str | None = None
    password: str | None = field(default=None, repr=False, compare=False)


#: Written to stderr (first word) by the wrapper when sudo itself refuses.
SUDO_FAILED = "@@concurdeploy-sudo-failed"
_SUDO_FAILED_BYTES = SUDO_FAILED.encode()


def wrap(command: str, become: Become | None, stdin: bytes | None = None) -> tuple[str, bytes | None]:
    """Return ``(command, stdin)`` rewritten to run the ``sh`` script ``command`` through sudo:
    ``sudo … /bin/sh -c READER`` reads it from its standard input
    (:data:`~concurdeploy.ssh.remote.SH_READER`), followed by ``stdin``.

    :param become: None returns ``(command, stdin)`` unchanged.
    :raises CredentialsMissing: ``password_env`` names an unset variable, or one holding a
        line break.
    """
    if become is None:
        return command, stdin
    user = shlex.quote(become.user)
    # The command goes on sudo's stdin too (framed), never on its command line.
    inner = f"-u {user} -- /bin/sh -c {shlex.quote(SH_READER)}"
    stdin = frame(command, stdin)
    refused = f"{{ printf '{SUDO_FAILED} %s\\n' \"$cd_err\" >&2; exit 1; }}"
    # A comment first, so messages quoting a command's first line name the command, not sudo.
    first = command.strip().splitlines()[0][:100] if command.strip() else ""
    head = f"# as {' '.join(become.user.split())} through sudo: {first}\n"
    if not become.password_env and become.password is None:
        return (f"{head}cd_err=$(sudo -n -u {user} true 2>&1 </dev/null) || {refused}\n"
                f"exec sudo -n {inner}"), stdin
    password = become.password if become.password is not None else envsecrets.getenv(become.password_env)
    if password is None:
        raise CredentialsMissing(f"become_password_env {become.password_env} is not set")
    if "\n" in password or "\r" in password:
        raise CredentialsMissing(f"become_password_env {become.password_env} holds a line break: "
                                 f"sudo reads one line")
    script = (
        f"{head}IFS= read -r cd_pw || cd_pw=\n"
        f"if sudo -n -u {user} true 2>/dev/null </dev/null; then exec sudo -n {inner}; fi\n"
        f"cd_err=$(printf '%s\\n' \"$cd_pw\" | sudo -k -S -p '' -u {user} true 2>&1 >/dev/null) "
        f"|| {refused}\n"
        f"{{ printf '%s\\n' \"$cd_pw\"; cd_pw=; exec cat; }} | sudo -k -S -p '' {inner}\n"
    )
    return script, password.encode() + b"\n" + (stdin or b"")


def refusal(become: Become, output: str) -> AuthFailed | None:
    """An :class:`AuthFailed` if ``output`` (a wrapped command's stderr) says sudo refused, else None."""
    at = output.find(SUDO_FAILED)
    if at < 0:
        return None
    detail = " ".join(output[at + len(SUDO_FAILED):].split()) or "no reason given"
    if become.password is not None:
        return AuthFailed(f"sudo -u {become.user} refused the password typed for -K: {detail}")
    if become.password_env:
        return AuthFailed(f"sudo -u {become.user} refused the password from become_password_env "
                          f"{become.password_env}: {detail}")
    return AuthFailed(f"sudo -u {become.user} failed without a password (sudo -n; set "
                      f"become_password_env if sudo asks for one): {detail}")


def with_password(jobs: list, password: str | None, executor: str = "local") -> list:
    """``jobs`` (``PushJob``/``RunJob``, or anything else, kept as is) with the sudo ``password``
    in each one that runs through sudo, and among its secrets (masked in output); unchanged if None.

    :param executor: ``local`` only: the jobs then go through this machine's pipes, never the network.
    :raises UsageError: a password and no job runs through sudo (it would go unused), or another executor.
    """
    if password is None:
        return jobs
    if executor != "local":
        raise UsageError(f"a sudo password (-K) is for the local executor, not {executor}: it would travel to "
                         f"the cluster's workers; set become_password_env there instead; nothing was touched")
    if not any(getattr(j, "become", None) is not None for j in jobs):
        raise UsageError("-K/--ask-become-pass: no host runs through sudo (no become var, no -b/--become or "
                         "--sudo), so the password would go unused; add -b, or leave -K out; nothing was touched")
    return [replace(j, become=replace(j.become, password=password), secrets=(*j.secrets, password))
            if getattr(j, "become", None) is not None else j for j in jobs]


class Privilege(Protocol):
    """How one host's remote steps reach the files: the strategy the host operations call.

    ``conn`` is a :class:`~concurdeploy.ssh.connection.Connection`. One instance serves one
    operation on one host (it may remember staging files: :attr:`staged`).
    """

    #: temporary path beside a destination → the staging upload a command copies there
    #: (empty when uploads go straight to the temporary path).
    staged: dict[str, str]
    #: PID on the host of the run's lock-holding command, named in its temporary files
    #: (:func:`~concurdeploy.operations.replace.temp_name`), or None.
    owner: int | None

    def run(self, conn, command: str, *, stdin: bytes | None = None, timeout: float | None = None,
            on_output=None):
        """:meth:`Connection.run` with this privilege.

        :returns: the connection's ``CommandResult``.
        :raises AuthFailed: the privilege was refused (sudo).
        """

    def hold(self, conn, command: str, ready: str, timeout: float):
        """:meth:`Connection.hold` with this privilege: ``(held, stdout_before_ready)``.

        :raises AuthFailed: the privilege was refused (sudo).
        """

    def open_upload(self, conn, tmp: str, mode: int = 0o600, owner: tuple = (None, None)):
        """An SFTP file, open for writing, for the upload meant for ``tmp``: ``tmp`` itself,
        created with ``mode``, or a staging file the login user can write (created 0600,
        recorded in :attr:`staged`). Either is created new (``O_CREAT|O_EXCL``: never an
        existing file or a planted symlink) with its mode set by the open, before any byte
        is written (the server's umask can only narrow it).

        ``owner``: ``(uid, gid)``, None parts kept. Where the upload is ``tmp`` itself, owner
        then permission bits are set through the open handle (SFTP ``fsetstat``: fchown,
        fchmod) before any byte, never by a path that could be swapped meanwhile; a refusal
        (the login user may not give that owner) leaves the file as created, and the prepare
        step, which checks owner and mode, fails the host naming both owners.

        :raises OSError: from the SFTP server (permission denied, exists, disk full, dropped link).
        """

    def sftp_rename(self, conn, tmp: str, dest: str) -> bool:
        """Rename ``tmp`` over ``dest`` with SFTP ``posix-rename`` when SFTP acts with this
        privilege; False when it cannot (no such extension, refused, or SFTP is not root):
        the caller then renames with a command (``mv -T -f``), which reports any real error.
        """

    def read_bytes(self, conn, path: str) -> bytes:
        """The content of the remote file ``path`` (for ``--diff``).

        :raises OSError: SFTP could not read it (login user; sudo returns ``b""`` instead).
        """


class AsLoginUser:
    """The login user does everything itself: commands as typed, SFTP in place."""

    def __init__(self):
        self.staged: dict[str, str] = {}
        self.owner: int | None = None
        self._no_posix_rename = False  # the server lacks or refused it once: use ``mv`` from then on

    def run(self, conn, command: str, *, stdin: bytes | None = None, timeout: float | None = None,
            on_output=None):
        return conn.run(command, stdin=stdin, timeout=timeout, on_output=on_output)

    def hold(self, conn, command: str, ready: str, timeout: float):
        return conn.hold(command, ready, timeout)

    def open_upload(self, conn, tmp: str, mode: int = 0o600, owner: tuple = (None, None)):
        fh = create_exclusive(conn.sftp, tmp, mode)
        try:
            uid, gid = owner
            if uid is not None or gid is not None:
                st = fh.stat()
                want = (st.st_uid if uid is None else uid, st.st_gid if gid is None else gid)
                if want != (st.st_uid, st.st_gid):
                    try:  # chown first: it clears setuid/setgid bits that chmod sets
                        fh.chown(*want)
                    except OSError as e:
                        if _unsupported(e):
                            _by_path(conn.sftp, tmp, lambda: conn.sftp.chown(tmp, *want))
                        # refused: the prepare step compares owners and says what to do
            try:
                fh.chmod(mode & 0o777)  # the server's umask narrowed it at the open: exact from here
            except OSError as e:
                if _unsupported(e):
                    _by_path(conn.sftp, tmp, lambda: conn.sftp.chmod(tmp, mode & 0o777))
                # else never wider than asked; the prepare step checks the mode
        except BaseException:
            fh.close()
            raise
        return fh

    def sftp_rename(self, conn, tmp: str, dest: str) -> bool:
        if self._no_posix_rename:
            return False
        try:
            conn.sftp.posix_rename(tmp, dest)
            return True
        except OSError:  # no extension, or refused: ``mv`` says what is really wrong, if anything
            self._no_posix_rename = True
            return False

    def read_bytes(self, conn, path: str) -> bytes:
        with conn.sftp.open(path, "rb") as fh:
            return fh.read()


class Sudo:
    """Every command through sudo as ``become.user``; SFTP (the login user) only stages uploads.

    :param become: the user and the password variable (see :class:`Become`).
    """

    def __init__(self, become: Become):
        self.become = become
        self.staged: dict[str, str] = {}
        self.owner: int | None = None

    @property
    def user(self) -> str:
        return self.become.user

    @property
    def password_env(self) -> str | None:
        return self.become.password_env

    def run(self, conn, command: str, *, stdin: bytes | None = None, timeout: float | None = None,
            on_output=None):
        """:meth:`Connection.run` through sudo; sudo's refusal marker is never streamed.

        :raises AuthFailed: sudo refused (wrong or missing password, not in sudoers).
        :raises CredentialsMissing: ``password_env`` is unset.
        """
        command, stdin = wrap(command, self.become, stdin)
        if on_output is not None:  # sudo's refusal is reported as the error, not streamed
            shown = on_output

            def on_output(stream, data):
                if _SUDO_FAILED_BYTES not in data:
                    shown(stream, data)
        res = conn.run(command, stdin=stdin, timeout=timeout, on_output=on_output,
                       kill=lambda pid, nonce: self._kill(conn, pid, nonce))
        if res.exited != 0:
            err = refusal(self.become, res.stderr)
            if err is not None:
                raise err
        return res

    def _kill(self, conn, pid: int | None, nonce: str) -> None:
        """End process group ``pid`` (None: the one started with ``nonce``; a command of this
        host past its timeout, or interrupted) as ``become.user``: sudo and what it runs may
        not be the login user's to signal. Never raises."""
        if pid is not None and pid <= 1:
            return
        try:
            with conn.shielded():
                self.run(conn, kill_script(pid, nonce), timeout=conn.spec.connect_timeout + KILL_GRACE)
        except Exception:
            pass

    def hold(self, conn, command: str, ready: str, timeout: float):
        """:meth:`Connection.hold` through sudo. :raises AuthFailed: sudo refused."""
        command, stdin = wrap(command, self.become)
        try:
            return conn.hold(command, ready, timeout, stdin=stdin)
        except RemoteCommandFailed as e:
            err = refusal(self.become, e.output)
            if err is not None:
                raise err from None
            raise

    def open_upload(self, conn, tmp: str, mode: int = 0o600, owner: tuple = (None, None)):
        staging = f"/tmp/.concurdeploy-stage-{uuid.uuid4().hex}{f'-{self.owner}' if self.owner else ''}"
        self.staged[tmp] = staging  # before the open: a failed upload's leftover is removed too
        return create_exclusive(conn.sftp, staging, 0o600)

    def sftp_rename(self, conn, tmp: str, dest: str) -> bool:
        return False  # SFTP acts as the login user: the rename must run through sudo (``mv``)

    def read_bytes(self, conn, path: str) -> bytes:
        res = self.run(conn, f"base64 -- {shlex.quote(path)}")
        return base64.b64decode(res.stdout) if res.exited == 0 else b""


def _unsupported(e: OSError) -> bool:
    """True when the SFTP server does not implement the request (e.g. no ``fsetstat``)."""
    return getattr(e, "errno", None) in (errno.EOPNOTSUPP, errno.ENOTSUP) or "unsupported" in str(e).lower()


def _by_path(sftp, path: str, change) -> None:
    """For a server without ``fsetstat`` only: ``change()`` by path, if ``path`` is still a
    regular file (``lstat``: not a link put in its place). The prepare step then checks that
    the upload is still a regular file of its own, with one link, and the owner and mode."""
    try:
        if stat.S_ISREG(sftp.lstat(path).st_mode or 0):
            change()
    except OSError:
        pass  # the prepare step says what is wrong


def create_exclusive(sftp, path: str, mode: int):
    """Create ``path`` over SFTP, new (``O_CREAT|O_EXCL``: an existing file or symlink there
    fails) and with permission bits ``mode`` set by the open request itself, so no byte is
    ever readable with wider permissions; returns a writable paramiko ``SFTPFile``.

    paramiko's ``SFTPClient.open`` sends no attributes (the file starts 0666 less the
    server's umask), so the OPEN request is built here as it builds it, plus the mode.

    :raises OSError: from the SFTP server (``EEXIST`` shows as a generic failure).
    """
    from paramiko.sftp import CMD_HANDLE, CMD_OPEN, SFTP_FLAG_CREATE, SFTP_FLAG_EXCL, SFTP_FLAG_WRITE, SFTPError
    from paramiko.sftp_attr import SFTPAttributes
    from paramiko.sftp_file import SFTPFile

    attrs = SFTPAttributes()
    attrs.st_mode = mode & 0o777  # setuid/setgid/sticky only once the owner is set (chmod)
    t, msg = sftp._request(CMD_OPEN, sftp._adjust_cwd(path),
                           SFTP_FLAG_WRITE | SFTP_FLAG_CREATE | SFTP_FLAG_EXCL, attrs)
    if t != CMD_HANDLE:
        raise SFTPError("Expected handle")
    return SFTPFile(sftp, msg.get_binary(), "wb", -1)


def privilege_for(become: Become | None) -> Privilege:
    """The strategy for one host's operation: :class:`Sudo` for a :class:`Become`, else
    :class:`AsLoginUser`. A new object per call (it records this operation's staging files)."""
    return AsLoginUser() if become is None else Sudo(become)
