"""The sandbox's ``sftp`` subsystem: SFTP requests on the real filesystem.

Paths are used exactly as the client sends them (relative ones resolve against
the controller's working directory); requests map one-to-one onto ``os`` calls,
with ``OSError`` turned into SFTP status codes. Plain ``rename`` refuses to
replace an existing target, as OpenSSH's does; the OpenSSH extension
``posix-rename@openssh.com`` replaces atomically (``os.replace``) and is
advertised in the VERSION packet.

Installed per connection by :mod:`concurdeploy.sandbox.server`:
``transport.set_subsystem_handler("sftp", SFTPServer, SFTPInterface)``.
"""

from __future__ import annotations

import errno
import os
import stat

import paramiko
import paramiko.sftp as _paramiko_sftp
from paramiko.message import Message
from paramiko.sftp import CMD_INIT, CMD_VERSION, SFTPError

__all__ = ["SFTPInterface", "SFTPServer"]

_SFTP_VERSION = getattr(_paramiko_sftp, "_VERSION", 3)


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


class SFTPInterface(paramiko.SFTPServerInterface):
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


class SFTPServer(paramiko.SFTPServer):
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

