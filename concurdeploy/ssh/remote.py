"""How a remote command reaches the host's ``/bin/sh`` and how its output comes back.

No script ever goes through a command line (argv): the SSH ``exec`` request only carries
:data:`BOOTSTRAP`, one short line that every login shell (sh, bash, dash, tcsh, fish) parses
the same way. It replaces the login shell by ``/bin/sh``, which reads one decimal length
line from the channel's standard input, then exactly that many bytes of script (``dd
iflag=fullblock``: never a byte more), and runs them; the rest of the standard input is the
script's own (a sudo password line, a held command's release line). The only size limit
is the host's memory.

The script starts with :func:`prelude`: it prints a per-command random ``nonce`` and the
shell's PID as the first line of stdout, and the nonce alone as the first line of
stderr. Everything before those lines is noise from the login shell's start-up files
(``~/.bashrc``, ``~/.cshrc``…) and is dropped (:class:`Demux`). Since sshd starts each
command as a session leader and ``exec`` keeps the PID, that PID is also the command's
process group: :func:`kill_script` ends the whole group (TERM, then KILL after a grace)
from a second channel when the command runs past its timeout or the run is interrupted.

Output kept in memory is capped per stream (:data:`KEEP_BYTES`, the end of it); the bytes
before are written to a file of the run's output folder when there is one
(:class:`~concurdeploy.ssh.spill.Spill`), else counted and noted (:class:`Demux`).
"""

from __future__ import annotations

import secrets
import select
import time

import paramiko

__all__ = ["BOOTSTRAP", "bootstrap", "KEEP_BYTES", "KILL_GRACE", "SFTP_SERVERS", "SH_READER", "Demux", "frame", "kill_script",
           "new_nonce", "prelude", "sftp_through_sh"]

#: ``sh`` code reading one framed script (:func:`frame`) from stdin and running it (with
#: no positional parameters).
SH_READER = ('set -- && IFS= read -r cd_n && cd_s=$(dd bs="$cd_n" count=1 iflag=fullblock 2>/dev/null) '
             '&& eval "$cd_s"')

#: The ``exec`` request: POSIX-sh-, csh- and fish-safe (single quotes, no backslash, no
#: ``!``), so any login shell hands the channel to ``/bin/sh`` unchanged.
BOOTSTRAP = f"exec /bin/sh -c '{SH_READER}'"


def bootstrap(nonce: str) -> str:
    """:data:`BOOTSTRAP` with ``nonce`` as an argument: the command's processes can be
    found by it (``pgrep -f``) even before its header arrived (a slow start-up file)."""
    return f"{BOOTSTRAP} sh {nonce}"

#: Bytes of one stream's output kept in memory per command (the end of it; errors come last).
KEEP_BYTES = 1 << 20

#: Seconds a killed process group gets between TERM and KILL.
KILL_GRACE = 2.0


def new_nonce() -> str:
    """A random token (``cd-`` and 32 hex digits) no start-up file can print by chance."""
    return "cd-" + secrets.token_hex(16)


def prelude(nonce: str) -> str:
    """The first lines of every script: the nonce and PID on stdout, the nonce on stderr.

    The nonce is found wherever it starts (start-up noise without a newline may precede
    it); one line per write, so servers relaying output a line at a time keep up."""
    return f"printf '%s %s\\n' {nonce} \"$$\"\nprintf '%s\\n' {nonce} >&2\n"


def frame(script: str, stdin: bytes | None = None) -> bytes:
    """What :data:`BOOTSTRAP` reads: the script's byte length, a newline, the script, then ``stdin``."""
    body = script.encode("utf-8", "surrogateescape")
    if not body.endswith(b"\n"):
        body += b"\n"
    return str(len(body)).encode() + b"\n" + body + (stdin or b"")


def kill_script(pid: int | None, nonce: str, grace: float = KILL_GRACE) -> str:
    """Shell lines ending process group ``pid``: TERM, up to ``grace`` seconds for it to go,
    then KILL. ``pid`` None (the header has not come yet): the group of the process whose
    command line holds ``nonce`` (:func:`bootstrap`). Exits 0 whether or not the group
    still existed. (No ``--``: dash's ``kill`` takes ``-PID`` as the group and refuses it.)"""
    rounds = max(1, int(grace * 10))
    find = f"p={pid}" if pid is not None else f"p=$(pgrep -o -f -- {nonce}) || exit 0"
    return (f"{find}\n"
            f"kill -TERM -$p 2>/dev/null || exit 0\n"
            f"i=0; while kill -0 -$p 2>/dev/null && [ $i -lt {rounds} ]; do "
            f"sleep 0.1; i=$((i+1)); done\n"
            f"kill -KILL -$p 2>/dev/null; exit 0\n")


class Demux:
    """One stream of one command's output: drops start-up noise before the nonce line,
    keeps at most ``keep`` bytes (the end), counts the rest and hands it to ``spill`` (a
    :class:`~concurdeploy.ssh.spill.Spill`, or None: not kept anywhere).

    Feed raw chunks with :meth:`feed`; it returns the bytes that belong to the command (for
    live output). ``pid`` is set once the stdout header arrived. :meth:`settle` when the
    command is over (:meth:`text` does it).
    """

    #: Bytes of noise searched for the header at most (start-up files printing more than
    #: this before it: the header is then looked for in the last bytes only).
    NOISE_KEEP = 65536

    def __init__(self, nonce: str, with_pid: bool, keep: int = KEEP_BYTES, spill=None):
        self.spill = spill
        self._head = nonce.encode()
        self._with_pid = with_pid
        self._keep = keep
        self._pending = bytearray()   # bytes before the header line was seen
        self.found = False
        self.pid: int | None = None
        self.data = bytearray()
        self.dropped = 0

    def feed(self, chunk: bytes) -> bytes:
        """Take raw bytes from the channel; returns those that are the command's output."""
        if not self.found:
            self._pending += chunk
            at = self._find_header()
            if at is None:
                if len(self._pending) > self.NOISE_KEEP:
                    del self._pending[:len(self._pending) - self.NOISE_KEEP]
                return b""
            chunk = bytes(self._pending[at:])
            self._pending.clear()
        self.data += chunk
        if len(self.data) > 2 * self._keep:
            self._cut(len(self.data) - self._keep)
        return chunk

    def _cut(self, n: int) -> None:
        if self.spill is not None:
            self.spill.write(bytes(self.data[:n]))
        del self.data[:n]
        self.dropped += n

    def settle(self) -> None:
        """The command is over: keep only the last ``keep`` bytes, the rest to the spill file
        (closed). Idempotent."""
        if len(self.data) > self._keep:
            self._cut(len(self.data) - self._keep)
        if self.spill is not None:
            self.spill.close()

    def _find_header(self) -> int | None:
        """Offset just after the header line in the pending bytes, or None (sets ``pid``)."""
        buf = self._pending
        i = buf.find(self._head)
        if i < 0:
            return None
        nl = buf.find(b"\n", i)
        if nl < 0:
            return None
        rest = bytes(buf[i + len(self._head):nl]).strip()
        if self._with_pid and rest.isdigit():
            self.pid = int(rest)
        self.found = True
        return nl + 1

    def text(self) -> bytes:
        """The kept output; when bytes were not kept, a first line saying how many, and
        where they are (the spill file) or why they are nowhere. Settles first (:meth:`settle`)."""
        self.settle()
        data, dropped, spill = self.data, self.dropped, self.spill
        if not self.found and not data:
            # The header never came (the script did not start): show what there was.
            return bytes(self._pending)
        if dropped and spill is not None and spill.path and not spill.error:
            which = f"the first {spill.stored} of them" if spill.full else "they"
            return f"[{dropped} bytes of output before this not kept here: {which} are in {spill.path}]\n".encode() \
                + bytes(data)
        if dropped:
            why = f" ({spill.error})" if spill is not None and spill.error else ""
            return f"[{dropped} bytes of output before this not kept{why}]\n".encode() + bytes(data)
        return bytes(data)


#: Where OpenSSH's ``sftp-server`` lives on the usual Linux distributions.
SFTP_SERVERS = ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server",
                "/usr/lib/ssh/sftp-server", "/usr/libexec/sftp-server", "/usr/lib/sftp-server")


def sftp_through_sh(transport, timeout: float):
    """An SFTP session on ``sftp-server`` started by ``/bin/sh`` (:data:`BOOTSTRAP`) rather
    than through the ``sftp`` subsystem: for hosts whose login shell start-up files print
    (sshd starts the subsystem through the login shell, and the noise breaks the protocol:
    "Garbage packet received"). The noise is read off before the client speaks.

    :param transport: an authenticated ``paramiko.Transport``.
    :param timeout: seconds for the server to start.
    :returns: ``paramiko.SFTPClient``.
    :raises EOFError: no ``sftp-server`` found, or it did not start; paramiko and socket
        errors as they come (the caller translates them).
    """
    nonce = new_nonce()
    tries = " ".join(SFTP_SERVERS)
    script = prelude(nonce) + f'for p in {tries}; do [ -x "$p" ] && exec "$p"; done\nexit 127\n'
    chan = transport.open_session(timeout=timeout)
    try:
        chan.exec_command(bootstrap(nonce))
        chan.sendall(frame(script))
        out = Demux(nonce, True)
        deadline = time.monotonic() + timeout
        while not out.found:
            if chan.recv_ready():
                out.feed(chan.recv(65536))
                continue
            if chan.exit_status_ready() or chan.closed or time.monotonic() > deadline:
                raise EOFError("no sftp-server could be started")
            select.select([chan], [], [], min(0.5, max(0.0, deadline - time.monotonic())))
        return paramiko.SFTPClient(chan)
    except BaseException:
        chan.close()
        raise
