"""An OpenSSH client config reader that answers as ``ssh -G`` does (OpenSSH 9.x rules).

:func:`lookup` reads a config file (and its ``Include`` files) for one host name and
returns the options concurdeploy honours, each with the file and line it came from. It
follows ``readconf.c`` of OpenSSH, and ``tests/differential/test_sshconfig_vs_openssh.py``
compares it with ``ssh -F FILE -G HOST`` on a generated corpus:

* lines: keyword and value separated by spaces and/or one ``=``; keywords in any case;
  ``"quoted values"``, ``\\`` escapes; a word starting with ``#`` ends the line (so
  ``HostName db # primary`` is ``db``); ``ProxyCommand`` and ``ProxyJump`` take the raw
  rest of the line, as OpenSSH does;
* the first value of a keyword wins (``IdentityFile`` accumulates, duplicates dropped);
  ``ConnectTimeout none`` leaves it unset;
* ``Host`` patterns (``*``, ``?``, ``!negation``), matched case-sensitively against the
  name as written; ``Match host/originalhost/user/localuser/exec/canonical/final/all``
  (``!`` negation, comma pattern lists, host patterns case-insensitive); ``Match final``
  (and ``canonical``) re-read the files with ``HostName`` as the host, like ``ssh``;
* ``Include`` (several paths, globs sorted, relative paths under ``~/.ssh``, nested up to
  16 deep, inside ``Host``/``Match`` blocks: the included lines only apply when that block
  does; included files must not be writable by group/others or owned by another user);
* ``%`` tokens: ``%h`` in ``HostName``; ``%C %L %d %h %i %k %l %n %p %r %u %%`` and
  ``${ENV}`` in ``IdentityFile``/``IdentityAgent`` (:func:`expand`); ``%C %L %d %h %i %k
  %l %n %p %r %u`` in ``Match exec``;
* errors refused as ``ssh`` refuses them: an unknown keyword (unless ``IgnoreUnknown``
  lists it, or the installed ``ssh`` knows it: :func:`ssh_knows`), a missing or extra
  argument, a bad port, time, flag, ProxyJump or token, an unknown ``Match`` criterion.

Where concurdeploy differs on purpose: ``~``, ``%d`` and relative ``Include`` paths use
``home`` (``$HOME``, like the rest of concurdeploy), where ``ssh`` takes ``~``/``%d`` from
the passwd entry; ``Match localnetwork`` (and newer criteria) are refused;
``CanonicalizeHostname yes``/``always`` is refused where it applies (ssh would ask DNS;
without it ``Match canonical`` matches in the final pass only, as here); a ``Match exec`` command runs with
``/bin/sh`` (``$SHELL`` for ``ssh``) in a minimal environment (``PATH HOME USER LOGNAME
LANG LC_ALL TERM SSH_AUTH_SOCK``: never the variables holding keys or passwords),
stdin/stdout on ``/dev/null``, at most :data:`EXEC_TIMEOUT` seconds.

Errors are :class:`~concurdeploy.exceptions.InventoryError` naming the file, the line and
the keyword (the CLI exits with code 2).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field

from concurdeploy.exceptions import InventoryError
from concurdeploy.ssh.openssh_lex import (
    KEYWORDS, WS, a2port, check_agent, config_error, conn_hash, convtime, dollar, hop_texts, is_address, lexed,
    match_pattern, parse_hop, pattern_list, percent, strdelim, user_home)

__all__ = ["EXEC_ENV", "EXEC_TIMEOUT", "Found", "expand", "lookup", "proxy_command", "ssh_knows"]

#: Seconds a ``Match exec`` command may run.
EXEC_TIMEOUT = 30.0
MAX_DEPTH = 16
MAX_IDENTITY_FILES = 100
#: Environment variables a ``Match exec`` command gets (when set).
EXEC_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TERM", "SSH_AUTH_SOCK")


#: Single-value keywords kept (first value wins); ``identityfile`` is a list.
_STRINGS = ("hostname", "user", "hostkeyalias", "identityagent", "ignoreunknown")
_ONE_VALUE = frozenset(("port", "connecttimeout", "identitiesonly", "identityfile", "canonicalizehostname",
                        "proxyusefdpass")
                       + _STRINGS)
_FLAGS = {"yes": "yes", "true": "yes", "no": "no", "false": "no"}


@dataclass
class Found:
    """What the config says for one host, as ``ssh -G`` would print it.

    :param host: the host name connected to: ``HostName`` (``%h`` expanded) or the
        looked-up name, lowercased unless it is an IP address.
    :param original: the looked-up name as given.
    :param options: keyword (lowercase) → value: ``port`` int, ``connecttimeout`` int
        seconds, ``identitiesonly`` ``"yes"``/``"no"``, ``identityfile`` list of raw
        strings, ``proxyjump`` raw string (``"none"`` possible), ``proxycommand`` raw
        string; ``user``, ``identityagent``, ``hostkeyalias`` strings; unset = absent.
    :param where: keyword → ``(path, line)`` of the value used (first line for lists).
    :param ran: ``Match exec`` commands run (in order), for tests and ``-v``.
    :param identity_where: ``(path, line)`` of each ``identityfile`` entry.
    """

    host: str
    original: str
    options: dict = field(default_factory=dict)
    where: dict = field(default_factory=dict)
    ran: list = field(default_factory=list)
    identity_where: list = field(default_factory=list)


def lookup(path: str, host: str, *, home: str | None = None, user: str | None = None,
           port: int | None = None, local_user: str | None = None,
           check_perm: bool = False) -> Found:
    """Read ``path`` (and its includes) for ``host`` as ``ssh -F path -G host`` would.

    :param home: the home directory for ``~``, ``%d`` and relative ``Include`` (default
        ``$HOME``).
    :param user: / :param port: set before the files are read, as ``ssh -l``/``-p`` do (the
        inventory's own values): ``Match user`` and ``%r``/``%p`` see them, the config
        cannot change them.
    :param local_user: ``Match localuser``/``%u`` (default: the passwd name of the uid).
    :param check_perm: refuse ``path`` itself when group/world-writable or owned by another
        user (ssh does this for ``~/.ssh/config``; included files are always checked).
    :raises InventoryError: the file cannot be read or ssh would refuse it (file, line,
        keyword named).
    """
    reader = _Reader(host, home, local_user)
    if user is not None:
        reader.opts["user"] = str(user)
    if port is not None:
        reader.opts["port"] = int(port)
    want_final = [False]
    reader.read(path, host, final=False, depth=0, never=False, check=check_perm,
                active=[True], want_final=want_final)
    found_host = host
    if "hostname" in reader.opts:
        found_host = percent(reader.opts["hostname"], {"h": host}, reader.where["hostname"],
                              "HostName")
    if not is_address(found_host):
        found_host = found_host.lower()
    reader.opts["hostname"] = found_host
    if reader.opts.get("canonicalizehostname", "no") != "no":
        raise config_error(reader.where["canonicalizehostname"], "CanonicalizeHostname",
                           f"{reader.opts['canonicalizehostname']} for {host!r}: concurdeploy does not "
                           f"canonicalise names (ssh would ask DNS and re-read the file); set it to no "
                           f"for these hosts or write the full name in HostName")
    if want_final[0]:
        reader.read(path, found_host, final=True, depth=0, never=False, check=check_perm,
                    active=[True], want_final=None)
    opts = dict(reader.opts)
    opts.pop("hostname")
    if opts.get("connecttimeout") == -1:
        del opts["connecttimeout"]
    jump = opts.get("proxyjump")
    if jump and jump != "none" and parse_hop(hop_texts(jump)[-1]) == (None, "none", None):
        opts["proxyjump"] = "none"  # "ProxyJump none # comment": ssh reads a hop named none as none
    if reader.idfiles:
        opts["identityfile"] = [f for f, _ in reader.idfiles]
        reader.where["identityfile"] = reader.idfiles[0][1]
    return Found(found_host, host, opts, reader.where, reader.ran, [w for _, w in reader.idfiles])


class _Reader:
    def __init__(self, host_arg: str, home: str | None, local_user: str | None):
        self.host_arg = host_arg
        self.home = home if home is not None else os.path.expanduser("~")
        self.local_user = local_user or pwd.getpwuid(os.getuid()).pw_name
        self.opts: dict = {}
        self.where: dict = {}
        self.idfiles: list = []
        self.ran: list = []

    # ------------------------------------------------------------------ files

    def read(self, path, host, *, final, depth, never, check, active, want_final):
        if depth > MAX_DEPTH:
            raise InventoryError(f"Include nested more than {MAX_DEPTH} deep (a loop?)", path,
                                 key="Include")
        try:
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                if check and ((st.st_uid not in (0, os.getuid())) or st.st_mode & 0o022):
                    raise InventoryError(
                        "ssh refuses this file: it is writable by group or others, or owned by "
                        "another user (chmod go-w it)", path)
                data = f.read()
        except IsADirectoryError:
            raise InventoryError("is a directory, not an ssh_config file", path) from None
        except FileNotFoundError:
            if depth:
                return  # ssh skips an included file that vanished
            raise InventoryError("no such file", path) from None
        except OSError as e:
            raise InventoryError(f"cannot read it: {e.strerror or e}", path) from None
        for one in lexed(path, st, data):
            self.line(one, path, host, final, depth, never, active, want_final)

    # ------------------------------------------------------------------ one line

    def line(self, lexed, path, host, final, depth, never, active, want_final):
        number, keyword, kw, rest, args = lexed
        where = (path, number)
        if not rest:
            raise config_error(where, keyword, "no value after the keyword")
        if kw not in KEYWORDS:
            ignored = self.opts.get("ignoreunknown")
            if ignored is not None and pattern_list(kw, ignored.lower()) == 1:
                return
            if ssh_knows(kw):
                return  # a keyword of a newer OpenSSH, and not one concurdeploy honours
            raise config_error(where, keyword, "is not an OpenSSH client keyword (ssh refuses the "
                                               "file: 'Bad configuration option'); fix the spelling "
                                               "or list it in IgnoreUnknown before this line")
        if args is None:
            raise config_error(where, keyword, "unbalanced quotes")
        on = active[0]
        if kw == "host":
            self.host_line(args, host, never, active, where, keyword)
        elif kw == "match":
            value = self.match_line(rest, host, final, want_final, where)
            active[0] = False if never else value
        elif kw == "include":
            for arg in args:
                self.include(arg, where, host, final, depth, never, active, want_final)
        elif kw == "proxycommand":
            value = rest.lstrip(WS + "=")
            if on and "proxyjump" not in self.opts and "proxycommand" not in self.opts:
                self._set("proxycommand", value, where)
        elif kw == "proxyjump":  # OpenSSH 9.2 takes the first word and ignores the others
            if not args or args[0] == "":
                raise config_error(where, keyword, "no value after the keyword")
            self.proxy_jump(args[0].lstrip(WS + "="), on, where, keyword)
        elif kw in _ONE_VALUE:
            if not args or args[0] == "":
                raise config_error(where, keyword, "no value after the keyword")
            if len(args) > 1:
                raise config_error(where, keyword, f"takes one value, got {len(args)} (quote a value "
                                           f"with spaces)")
            self.value(kw, args[0], on, where, keyword)

    def _set(self, kw, value, where):
        if kw not in self.opts:
            self.opts[kw] = value
            self.where[kw] = where

    def value(self, kw, arg, on, where, keyword):
        if kw == "port":
            value = a2port(arg)
            if value <= 0:
                raise config_error(where, keyword, f"{arg!r} is not a port number (1-65535) or a "
                                                   f"service name")
        elif kw == "connecttimeout":
            value = -1 if arg == "none" else convtime(arg)
            if value is None:
                raise config_error(where, keyword, f"{arg!r} is not a time (seconds, or e.g. 1m30s)")
            if kw in self.opts and self.opts[kw] == -1:
                del self.opts[kw]  # "none" leaves it unset: a later value still applies
        elif kw in ("identitiesonly", "canonicalizehostname", "proxyusefdpass"):
            value = _FLAGS.get(arg.lower())
            if kw == "canonicalizehostname" and arg.lower() == "always":
                value = "always"
            if value is None:
                raise config_error(where, keyword, f"{arg!r} is not yes or no")
        elif kw == "identityfile":
            if on:
                if len(self.idfiles) >= MAX_IDENTITY_FILES:
                    raise config_error(where, keyword, f"more than {MAX_IDENTITY_FILES} identity files")
                if arg not in (f for f, _ in self.idfiles):
                    self.idfiles.append((arg, where))
            return
        else:
            value = arg
            if kw == "identityagent":
                check_agent(arg, where, keyword)
        if on:
            self._set(kw, value, where)

    def proxy_jump(self, value, on, where, keyword):
        if value.lower() != "none":
            for hop in hop_texts(value):
                try:
                    parse_hop(hop)
                except ValueError as e:
                    raise config_error(where, keyword, f"{value!r} is not a list of [user@]host[:port] "
                                               f"hops ({e})") from None
        if on and "proxyjump" not in self.opts and "proxycommand" not in self.opts:
            self._set("proxyjump", "none" if value.lower() == "none" else value, where)

    def host_line(self, args, host, never, active, where, keyword):
        active[0] = False
        for arg in args:
            if arg == "":
                raise config_error(where, keyword, "empty pattern")
            if never:
                break
            negated = arg.startswith("!")
            if match_pattern(host, arg[1:] if negated else arg):
                if negated:
                    active[0] = False
                    break
                active[0] = True

    def include(self, arg, where, host, final, depth, never, active, want_final):
        if arg == "":
            raise config_error(where, "Include", "empty path")
        if not arg.startswith(("/", "~")):
            arg = "~/.ssh/" + arg
        if arg.startswith("~"):
            head, sep, tail = arg.partition("/")
            base = self.home if head == "~" else user_home(head[1:], where)
            arg = base + sep + tail
        saved = active[0]
        for name in sorted(glob.glob(arg)):
            self.read(name, host, final=final, depth=depth + 1, never=never or not saved,
                      check=True, active=active, want_final=want_final)
            active[0] = saved

    # ------------------------------------------------------------------ Match

    def match_line(self, rest, host_arg, final, want_final, where) -> bool:
        port = self.opts.get("port", 22)
        ruser = self.opts.get("user", self.local_user)
        if final:
            host = self.opts["hostname"]
        elif "hostname" in self.opts:
            host = percent(self.opts["hostname"], {"h": host_arg}, self.where["hostname"],
                            "HostName")
        else:
            host = host_arg
        result, attributes, cp = True, 0, rest
        while True:
            attrib, cp = strdelim(cp)
            if not attrib or attrib.startswith("#"):
                break
            negate = attrib.startswith("!")
            name = (attrib[1:] if negate else attrib).lower()
            if name == "all":
                following, cp = strdelim(cp)
                if attributes > 1 or (following and not following.startswith("#")):
                    raise config_error(where, "Match", "'all' cannot be combined with other criteria")
                return result and not negate
            attributes += 1
            if name in ("canonical", "final"):
                if name == "final" and want_final is not None:
                    want_final[0] = True
                if final == negate:
                    result = False
                continue
            arg, cp = strdelim(cp)
            if not arg or arg.startswith("#"):
                raise config_error(where, "Match", f"{attrib} needs a pattern")
            if name == "host":
                hit = pattern_list(host.lower(), arg.lower()) == 1
            elif name == "originalhost":
                hit = pattern_list(self.host_arg.lower(), arg.lower()) == 1
            elif name == "user":
                hit = pattern_list(ruser, arg) == 1
            elif name == "localuser":
                hit = pattern_list(self.local_user, arg) == 1
            elif name == "exec":
                command = percent(arg, self._exec_tokens(host, port, ruser), where, "Match exec")
                if not result:
                    continue  # ssh skips the command when an earlier criterion failed
                hit = self.run(command, where)
            else:
                raise config_error(where, "Match", f"criterion {attrib!r} is not supported (host, "
                                           f"originalhost, user, localuser, exec, canonical, "
                                           f"final, all)")
            if hit == negate:
                result = False
        if attributes == 0:
            raise config_error(where, "Match", "needs at least one criterion")
        return result

    def _exec_tokens(self, host, port, ruser) -> dict:
        this = socket.gethostname()
        entry = pwd.getpwuid(os.getuid())
        return {"C": conn_hash(this, host, str(port), ruser, None), "L": this.split(".")[0],
                "d": self.home, "h": host, "k": self.opts.get("hostkeyalias", host), "l": this,
                "n": self.host_arg, "p": str(port), "r": ruser, "u": self.local_user,
                "i": str(entry.pw_uid)}

    def run(self, command: str, where) -> bool:
        env = {k: os.environ[k] for k in EXEC_ENV if k in os.environ}
        self.ran.append(command)
        try:
            proc = subprocess.run(["/bin/sh", "-c", command], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                                  timeout=EXEC_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise config_error(where, "Match exec", f"the command did not finish within "
                                            f"{EXEC_TIMEOUT:g} s") from None
        except OSError as e:
            raise config_error(where, "Match exec", f"cannot run /bin/sh: {e.strerror or e}") from None
        if proc.returncode < 0:
            raise config_error(where, "Match exec", f"the command was killed by signal {-proc.returncode}")
        return proc.returncode == 0


_known: dict = {}


def ssh_knows(keyword: str) -> bool:
    """Whether the installed ``ssh`` accepts ``keyword`` (one newer than :data:`KEYWORDS`).

    Asked once per keyword and process with a two-line temporary config (``keyword x``)
    and ``ssh -G``: nothing of the operator's config, no ``Match exec``, no network. False
    when no ``ssh`` is on ``PATH`` or the keyword is not a plain word.
    """
    if keyword in _known:
        return _known[keyword]
    ssh = shutil.which("ssh")
    answer = False
    if ssh is not None and keyword.isalnum() and keyword.isascii():
        with tempfile.TemporaryDirectory(prefix="concurdeploy-sshkw-") as tmp:
            probe = os.path.join(tmp, "config")
            with open(probe, "w", encoding="ascii") as f:
                f.write(f"{keyword} x\n")
            env = {k: os.environ[k] for k in EXEC_ENV if k in os.environ}
            try:
                proc = subprocess.run([ssh, "-F", probe, "-G", "probe.invalid"], env=env,
                                      stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                      timeout=EXEC_TIMEOUT, check=False)
                answer = "Bad configuration option" not in proc.stderr
            except (OSError, subprocess.TimeoutExpired):
                answer = False
    _known[keyword] = answer
    return answer


# ---------------------------------------------------------------------- tokens


def proxy_command(raw: str, *, host: str, port: int, user: str, original: str, keyalias: str | None,
                  where=(None, None)) -> str:
    """A ``ProxyCommand`` as ssh runs it: ``%h`` (the host connected to), ``%p``, ``%r`` (the
    remote user), ``%n`` (the name looked up), ``%k`` (``HostKeyAlias`` or ``%n``) and
    ``%%`` expanded (OpenSSH's ``expand_proxy_command``).

    :raises InventoryError: another token (ssh refuses it too).
    """
    tokens = {"h": host, "k": keyalias or original, "n": original, "p": str(port), "r": user}
    return percent(raw, tokens, where, "ProxyCommand")


def expand(value: str, found: Found, *, home: str | None = None, local_user: str | None = None,
           where=(None, None), keyword: str = "IdentityFile") -> str:
    """``value`` with ``~``, ``${ENV}`` and the ``%`` tokens of ``IdentityFile`` /
    ``IdentityAgent`` replaced for the host of ``found`` (what ssh does before using them).

    :raises InventoryError: an unknown token, a ``%`` at the end, an unset variable.
    """
    home = home if home is not None else os.path.expanduser("~")
    local_user = local_user or pwd.getpwuid(os.getuid()).pw_name
    if value.startswith("~"):
        head, sep, tail = value.partition("/")
        value = (home if head == "~" else user_home(head[1:], where)) + sep + tail
    value = dollar(value, where, keyword)
    opts = found.options
    port, ruser = str(opts.get("port", 22)), opts.get("user", local_user)
    jump = opts.get("proxyjump")
    jump_host = parse_hop(hop_texts(jump)[-1])[1] if jump and jump != "none" else None
    this = socket.gethostname()
    tokens = {"C": conn_hash(this, found.host, port, ruser, jump_host), "L": this.split(".")[0],
              "i": str(os.getuid()), "k": opts.get("hostkeyalias", found.original), "l": this,
              "n": found.original, "p": port, "d": home, "h": found.host, "r": ruser,
              "u": local_user}
    return percent(value, tokens, where, keyword)
