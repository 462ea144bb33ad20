"""Local, SSH-free checks of the host-operations layer (``concurdeploy.operations``): the pieces
that build remote paths and shell scripts (:func:`temp_name`, the prepare script, run here with
a real ``sh``), and the privilege strategies (login user / sudo) against a fake connection
that records what would be sent to the host."""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import stat
import subprocess
from pathlib import Path

import pytest

from concurdeploy.exceptions import AuthFailed, CredentialsMissing, DestinationError, RemoteCommandFailed
from concurdeploy.operations.become import SUDO_FAILED, AsLoginUser, Become, Sudo, privilege_for
from concurdeploy.operations.facts import DestFacts
from concurdeploy.operations.jobs import FileSpec
from concurdeploy.operations.replace import prepare_script as _prepare_script
from concurdeploy.operations.replace import replace_atomically, temp_name
from concurdeploy.operations.shell import FAIL as _FAIL
from concurdeploy.operations.shell import WARN as _WARN
from concurdeploy.operations.shell import q
from concurdeploy.ssh.remote import SH_READER, frame

HEX32 = r"[0-9a-f]{32}"
NASTY = "conf dir $(touch pwned) ;'\"&`id` \\ *"


# ---------------------------------------------------------------------------- temp_name

@pytest.mark.parametrize("target, pattern", [
    ("/etc/haproxy/haproxy.cfg", rf"/etc/haproxy/\.haproxy\.concurdeploy-{HEX32}\.cfg"),
    ("/etc/nginx/conf.d/site.conf", rf"/etc/nginx/conf\.d/\.site\.concurdeploy-{HEX32}\.conf"),
    ("/etc/hosts", rf"/etc/\.hosts\.concurdeploy-{HEX32}"),
    ("/root/.bashrc", rf"/root/\.bashrc\.concurdeploy-{HEX32}"),
    ("/srv/a.tar.gz", rf"/srv/\.a\.tar\.concurdeploy-{HEX32}\.gz"),
    ("/a b/c 'd'.yaml", rf"/a b/\.c 'd'\.concurdeploy-{HEX32}\.yaml"),
])
def test_temp_name_same_directory_same_suffix_dot_file(target, pattern):
    tmp = temp_name(target)
    assert re.fullmatch(pattern, tmp), tmp
    assert posixpath.dirname(tmp) == posixpath.dirname(target)  # same filesystem: rename works
    assert posixpath.basename(tmp).startswith(".")               # conf.d/*.conf globs skip it
    if "." in posixpath.basename(target).lstrip("."):
        assert tmp.endswith("." + target.rsplit(".", 1)[1])        # validators see the suffix


def test_temp_name_is_unique():
    names = {temp_name("/etc/haproxy/haproxy.cfg") for _ in range(2000)}
    assert len(names) == 2000


# ---------------------------------------------------------------------------- prepare script

def sh(script: str, cwd: Path, *flags: str) -> subprocess.CompletedProcess:
    """Run ``script`` with the system's POSIX ``sh`` (dash on Debian: stricter than bash)."""
    return subprocess.run(["sh", *flags, "-c", script], cwd=cwd, capture_output=True, text=True,
                          timeout=20)


def stage(directory: Path, name: str, content: bytes, *, existing: bytes | None = None,
          mode: int | None = None, validate: str | None = None):
    """Create a destination (optionally existing) and its uploaded temporary copy.

    :returns: ``(FileSpec, DestFacts, tmp)`` as :func:`push` hands them to the script.
    """
    directory.mkdir(parents=True, exist_ok=True)
    dest = directory / name
    tmp = temp_name(str(dest))
    Path(tmp).write_bytes(content)
    # as the login user's upload arrives: its final mode set through its handle
    os.chmod(tmp, mode if mode is not None else (0o640 if existing is not None else 0o644))
    spec = FileSpec(src="/local/" + name, dest=str(dest), sha256=hashlib.sha256(content).hexdigest(),
                    size=len(content), mode=mode, validate=validate)
    if existing is None:
        fact = DestFacts(str(dest), "absent", str(dest))
    else:
        dest.write_bytes(existing)
        os.chmod(dest, 0o640)
        st = os.stat(dest)
        fact = DestFacts(str(dest), "file", str(dest), 0o640, st.st_uid, st.st_gid, len(existing),
                         hashlib.sha256(existing).hexdigest())
    return spec, fact, tmp


@pytest.fixture
def nasty_dir(tmp_path) -> Path:
    d = tmp_path / NASTY
    d.mkdir()
    return d


def test_prepare_script_quotes_hostile_paths(nasty_dir, tmp_path):
    (nasty_dir / "include.cfg").write_text("included\n")
    items = [
        stage(nasty_dir, "my file;`touch pwned2`.cfg", b"maxconn 10\n", existing=b"old\n",
              validate="grep -q maxconn {tmp} && test -f include.cfg"),
        stage(nasty_dir, "new $(id).conf", b"fresh\n", mode=0o604, validate="test -s {tmp}"),
    ]
    script = _prepare_script(items)
    assert sh(script, tmp_path, "-n").returncode == 0  # parses

    res = sh(script, tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert _FAIL not in res.stdout
    # nothing embedded in a path was executed, anywhere
    assert not list(tmp_path.rglob("pwned*")) and not Path("pwned").exists()
    # modes: an existing file's mode is kept (0640), a declared one applied (0604)
    assert stat.S_IMODE(os.stat(items[0][2]).st_mode) == 0o640
    assert stat.S_IMODE(os.stat(items[1][2]).st_mode) == 0o604
    # the destinations themselves are not touched by the prepare step
    assert (nasty_dir / "my file;`touch pwned2`.cfg").read_bytes() == b"old\n"
    assert not (nasty_dir / "new $(id).conf").exists()


def test_prepare_script_validate_failure_names_the_file(nasty_dir, tmp_path):
    items = [
        stage(nasty_dir, "a.cfg", b"good\n", validate="grep -q good {tmp}"),
        stage(nasty_dir, "b 'q'.cfg", b"bad\n", validate="echo \"rejecting $(basename {tmp})\"; exit 4"),
    ]
    res = sh(_prepare_script(items), tmp_path)
    assert res.returncode == 1
    fail = [ln for ln in res.stdout.splitlines() if ln.startswith(_FAIL)]
    assert fail == [f"{_FAIL} 1 validate 4"]
    # {tmp} reached the validator intact; its output goes to stderr, never among the FAIL lines
    assert "rejecting .b 'q'.concurdeploy-" in res.stderr and "rejecting" not in res.stdout


def test_prepare_script_detects_a_corrupted_upload(nasty_dir, tmp_path):
    spec, fact, tmp = stage(nasty_dir, "c.cfg", b"expected content\n")
    Path(tmp).write_bytes(b"expected contenX\n")  # same size, other bytes
    res = sh(_prepare_script([(spec, fact, tmp)]), tmp_path)
    assert res.returncode == 1
    assert f"{_FAIL} 0 checksum" in res.stdout

    Path(tmp).write_bytes(b"short\n")
    res = sh(_prepare_script([(spec, fact, tmp)]), tmp_path)
    assert res.returncode == 1
    assert f"{_FAIL} 0 size 6" in res.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another owner needs root")
def test_prepare_script_checks_the_login_users_upload_never_sets_it_by_path(tmp_path):
    """Without sudo the upload got owner and mode through its SFTP handle: the prepare step only
    checks them (a mismatch fails the host naming both owners) and never chowns/chmods by path."""
    spec, fact, tmp = stage(tmp_path / "d", "o.cfg", b"x\n", existing=b"y\n")
    os.chown(fact.target, 1234, 1235)
    fact = DestFacts(fact.dest, "file", fact.target, 0o640, 1234, 1235, fact.size, fact.sha256)
    res = sh(_prepare_script([(spec, fact, tmp)]), tmp_path)
    assert res.returncode == 1 and f"{_FAIL} 0 owner UNKNOWN:UNKNOWN root:root" in res.stdout, res.stdout
    assert (os.stat(tmp).st_uid, os.stat(tmp).st_gid) == (0, 0)  # untouched
    os.chown(tmp, 1234, 1235)
    res = sh(_prepare_script([(spec, fact, tmp)]), tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert _WARN not in res.stdout
    os.chmod(tmp, 0o644)
    res = sh(_prepare_script([(spec, fact, tmp)]), tmp_path)
    assert res.returncode == 1 and f"{_FAIL} 0 chmod" in res.stdout, res.stdout
    assert stat.S_IMODE(os.stat(tmp).st_mode) == 0o644


def test_prepare_script_refuses_an_upload_swapped_for_a_symlink(tmp_path):
    """The temporary path replaced by a link to a file with the same bytes: nothing is applied
    through it (chmod by path followed it), the host fails before anything else."""
    spec, fact, tmp = stage(tmp_path / "d", "s.cfg", b"same\n", existing=b"old\n")
    victim = tmp_path / "victim"
    victim.write_bytes(b"same\n")
    os.chmod(victim, 0o600)
    os.unlink(tmp)
    os.symlink(victim, tmp)
    res = sh(_prepare_script([(spec, fact, tmp)]), tmp_path)
    assert res.returncode == 1 and res.stdout.startswith(f"{_FAIL} 0 swapped"), res.stdout
    assert stat.S_IMODE(os.stat(victim).st_mode) == 0o600
    assert not list((tmp_path / "d").glob("*.bak"))


def test_q_round_trips_through_sh(tmp_path):
    for word in [NASTY, "", "-n", "a\nb", "ünïcode ✓", "'", '"']:
        res = sh(f"printf '%s' {q(word)}", tmp_path)
        assert res.stdout == word



# ---------------------------------------------------------------------------- privilege strategies

class FakeResult:
    def __init__(self, exited=0, stdout="", stderr=""):
        self.exited, self.stdout, self.stderr = exited, stdout, stderr


class FakeFile:
    def __init__(self, sftp, path):
        self.sftp, self.path, self.mode, self.closed = sftp, path, None, False

    def chmod(self, mode):
        self.mode = mode

    def close(self):
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class FakeSftp:
    """Records calls; ``rename_error`` is raised by ``posix_rename`` when set."""

    def __init__(self, rename_error=None, files=None):
        self.calls, self.rename_error, self.files = [], rename_error, files or {}

    def posix_rename(self, tmp, dest):
        self.calls.append(("posix_rename", tmp, dest))
        if self.rename_error is not None:
            raise self.rename_error

    def open(self, path, mode):
        self.calls.append(("open", path, mode))
        return FakeFile(self, path)

    # what create_exclusive sends: paramiko's OPEN request, with attributes
    def _adjust_cwd(self, path):
        return path

    def _request(self, t, path, flags=None, attrs=None):
        from paramiko.message import Message
        from paramiko.sftp import CMD_CLOSE, CMD_FSETSTAT, CMD_HANDLE

        if t == CMD_CLOSE:
            return None, None
        if t == CMD_FSETSTAT:  # (handle, attrs): the handle's owner/mode set
            self.calls.append(("fsetstat", flags.st_uid, flags.st_gid, flags.st_mode))
            return None, None
        self.calls.append(("create", path, flags, attrs.st_mode))
        msg = Message()
        msg.add_string(b"handle")
        msg.rewind()
        return CMD_HANDLE, msg

    def _async_request(self, *args):
        return None

    def _log(self, *args):
        return None


#: SFTP open flags of a new file: write, create, exclusive (never an existing file or link).
_NEW = 0x02 | 0x08 | 0x20


class FakeConn:
    """Stands in for :class:`Connection`: ``run``/``hold`` record what would be sent and
    answer from ``answers`` (a list of :class:`FakeResult`, default: exit 0)."""

    def __init__(self, answers=(), sftp=None):
        self.sent, self.answers, self.sftp = [], list(answers), sftp or FakeSftp()

    def run(self, command, *, stdin=None, timeout=None, on_output=None, kill=None):
        self.sent.append((command, stdin))
        res = self.answers.pop(0) if self.answers else FakeResult()
        if on_output is not None:
            on_output("stdout", res.stdout.encode())
            on_output("stderr", res.stderr.encode())
        return res

    def hold(self, command, ready, timeout, stdin=None):
        self.sent.append((command, stdin))
        res = self.answers.pop(0) if self.answers else FakeResult()
        if res.exited != 0:
            raise RemoteCommandFailed("remote step exited early", exit_status=res.exited,
                                      output=res.stdout + res.stderr)
        return object(), res.stdout


def test_privilege_for_picks_the_strategy_once():
    assert isinstance(privilege_for(None), AsLoginUser)
    sudo = privilege_for(Become("daemon", "PW"))
    assert isinstance(sudo, Sudo) and (sudo.user, sudo.password_env) == ("daemon", "PW")
    assert privilege_for(None) is not privilege_for(None)  # staging files are per operation


def test_login_user_runs_commands_as_typed_and_uploads_in_place():
    conn, priv = FakeConn(), AsLoginUser()
    priv.run(conn, "echo hi", stdin=b"x")
    assert conn.sent == [("echo hi", b"x")]
    priv.open_upload(conn, "/etc/.a.concurdeploy-1.cfg", 0o640)
    assert conn.sftp.calls == [("create", "/etc/.a.concurdeploy-1.cfg", _NEW, 0o640),
                               ("fsetstat", None, None, 0o640)] and priv.staged == {}


def test_sudo_password_goes_on_stdin_only(monkeypatch, tmp_path):
    password = "s3cr3t 'pw' $(id)"
    monkeypatch.setenv("CD_PW", password)
    conn, priv = FakeConn(), Sudo(Become("root", "CD_PW"))
    priv.run(conn, "cat /etc/shadow", stdin=b"more\n")
    command, stdin = conn.sent[0]
    assert password not in command
    # the password line, then the script framed for sudo's sh (never on a command line), then stdin
    assert stdin == password.encode() + b"\n" + frame("cat /etc/shadow", b"more\n")
    assert "cat /etc/shadow" not in command.split("\n", 1)[1]
    assert "sudo -k -S" in command and "sudo -n" in command
    assert sh(f"sh -n -c {q(command)}", tmp_path).returncode == 0  # the wrapper parses


def test_sudo_without_password_env_uses_sudo_n_and_sends_no_stdin():
    conn, priv = FakeConn(), Sudo(Become("daemon"))
    priv.run(conn, "id -u")
    command, stdin = conn.sent[0]
    assert stdin == frame("id -u")  # the script only, framed: no password line
    assert f"exec sudo -n -u daemon -- /bin/sh -c {q(SH_READER)}" in command
    assert "id -u" not in command.split("\n", 1)[1]


def test_sudo_unset_or_multiline_password_env_is_refused(monkeypatch):
    monkeypatch.delenv("CD_PW", raising=False)
    with pytest.raises(CredentialsMissing, match="CD_PW is not set"):
        Sudo(Become("root", "CD_PW")).run(FakeConn(), "true")
    monkeypatch.setenv("CD_PW", "a\nb")
    with pytest.raises(CredentialsMissing, match="line break"):
        Sudo(Become("root", "CD_PW")).run(FakeConn(), "true")


@pytest.mark.parametrize("password_env, words", [
    ("CD_PW", ["refused the password from become_password_env CD_PW", "1 incorrect password attempt"]),
    (None, ["failed without a password (sudo -n", "1 incorrect password attempt"]),
])
def test_sudo_refusal_is_auth_failed_naming_the_variable_never_the_value(monkeypatch, password_env, words):
    monkeypatch.setenv("CD_PW", "hunter2")
    refused = FakeResult(1, "", f"{SUDO_FAILED} sudo: 1 incorrect password attempt\n")
    shown = []
    with pytest.raises(AuthFailed) as e:
        Sudo(Become("root", password_env)).run(FakeConn([refused]), "true",
                                               on_output=lambda s, d: shown.append(d))
    assert all(w in str(e.value) for w in words) and "hunter2" not in str(e.value)
    assert not any(SUDO_FAILED.encode() in d for d in shown)  # the marker is never streamed
    with pytest.raises(AuthFailed):
        Sudo(Become("root", password_env)).hold(FakeConn([refused]), "true", "READY", 5)


def test_sudo_failure_that_is_not_a_refusal_is_the_commands_own():
    res = Sudo(Become()).run(FakeConn([FakeResult(3, "", "no such file\n")]), "cat /x")
    assert res.exited == 3
    with pytest.raises(RemoteCommandFailed):
        Sudo(Become()).hold(FakeConn([FakeResult(2, "", "boom\n")]), "true", "READY", 5)


def test_sudo_stages_uploads_privately_and_renames_with_mv():
    conn, priv = FakeConn(), Sudo(Become())
    priv.open_upload(conn, "/etc/.a.concurdeploy-1.cfg", 0o644)
    (_, path, flags, mode), = conn.sftp.calls
    assert re.fullmatch(rf"/tmp/\.concurdeploy-stage-{HEX32}", path) and (flags, mode) == (_NEW, 0o600)
    assert priv.staged == {"/etc/.a.concurdeploy-1.cfg": path}
    assert replace_atomically(conn, "/etc/.a.concurdeploy-1.cfg", "/etc/a.cfg", priv) == "mv"
    assert not [c for c in conn.sftp.calls if c[0] == "posix_rename"]  # SFTP is not root
    assert "mv -T -f -- /etc/.a.concurdeploy-1.cfg /etc/a.cfg" in conn.sent[-1][0]
    assert "sudo" in conn.sent[-1][0]


def test_replace_atomically_login_user_uses_posix_rename_then_falls_back_to_mv():
    conn = FakeConn()
    assert replace_atomically(conn, "/d/.t", "/d/t") == "posix-rename" and conn.sent == []
    conn = FakeConn(sftp=FakeSftp(rename_error=OSError("No such extension")))
    assert replace_atomically(conn, "/d/.t", "/d/t") == "mv"
    assert conn.sent == [("mv -T -f -- /d/.t /d/t", None)]
    conn = FakeConn([FakeResult(1, "", "mv: cannot move: Permission denied\n")],
                    sftp=FakeSftp(rename_error=PermissionError(13, "Permission denied")))
    with pytest.raises(DestinationError, match="cannot rename into /d/t") as e:
        replace_atomically(conn, "/d/.t", "/d/t")
    assert "Permission denied" in e.value.output
    conn = FakeConn([FakeResult(1, "", "mv: cannot move: Device or resource busy\n")],
                    sftp=FakeSftp(rename_error=OSError("No such extension")))
    with pytest.raises(DestinationError, match="busy"):
        replace_atomically(conn, "/d/.t", "/d/t")


def test_sudo_reads_a_file_for_diff_through_base64():
    import base64

    conn = FakeConn([FakeResult(0, base64.b64encode(b"old\n").decode() + "\n")])
    assert Sudo(Become()).read_bytes(conn, "/etc/a b") == b"old\n"
    assert "base64 -- '/etc/a b'" in conn.sent[0][0]
    assert Sudo(Become()).read_bytes(FakeConn([FakeResult(1)]), "/x") == b""


# ---------------------------------------------------------------------------- facts and owner checks

def test_facts_script_reports_links_mounts_and_dangling_targets(tmp_path):
    """The real facts function, run by the local ``sh``: a link is not followed unless asked."""
    from concurdeploy.operations.facts import facts_script, parse_facts

    (tmp_path / "real.cfg").write_bytes(b"x\n")
    (tmp_path / "link.cfg").symlink_to(tmp_path / "real.cfg")
    (tmp_path / "dangling.cfg").symlink_to(tmp_path / "nowhere.cfg")
    (tmp_path / "dirlink").symlink_to(tmp_path)
    rows = [("link.cfg", 0), ("link.cfg", 1), ("dangling.cfg", 1), ("dangling.cfg", 0), ("dirlink", 0),
            ("a b.cfg", 0)]
    script = facts_script([str(tmp_path / n) for n, _ in rows], [bool(fl) for _, fl in rows])
    res = sh(script, tmp_path)
    facts = parse_facts([str(tmp_path / n) for n, _ in rows], res.stdout)[0]
    assert [(x.state, x.target) for x in facts] == [
        ("link", str(tmp_path / "link.cfg")), ("file", str(tmp_path / "real.cfg")),
        ("dangling", str(tmp_path / "dangling.cfg")), ("link", str(tmp_path / "dangling.cfg")),
        ("linkdir", str(tmp_path / "dirlink")), ("absent", str(tmp_path / "a b.cfg"))]
    assert facts[1].mount is False and facts[1].owner and facts[1].group


def test_facts_resolve_symlinked_folders_and_read_what_a_link_holds(tmp_path):
    """A destination's directory is its real path (a symlinked folder resolved, a name ending in a
    line break kept exactly); a link keeps its own text and the bytes it points to."""
    from concurdeploy.operations.facts import facts_script, parse_facts

    real = tmp_path / "real\tdir"
    real.mkdir()
    (tmp_path / "via").symlink_to(real)
    (real / "a.cfg").write_bytes(b"x\n")
    (real / "link.cfg").symlink_to("a.cfg")
    odd = tmp_path / "odd\n"
    odd.mkdir()
    (tmp_path / "to-odd").symlink_to(odd)
    dests = [str(tmp_path / "via" / "a.cfg"), str(tmp_path / "via" / "link.cfg"), str(tmp_path / "to-odd" / "x")]
    res = sh(facts_script(dests, [False] * len(dests)), tmp_path)
    facts = parse_facts(dests, res.stdout)[0]
    assert [(x.state, x.target) for x in facts] == [
        ("file", str(real / "a.cfg")), ("link", str(real / "link.cfg")), ("badpath", dests[2])]
    assert (facts[1].link, facts[1].size, facts[1].sha256) == ("a.cfg", 2, facts[0].sha256)
    assert facts[1].mode is None and facts[1].uid is None  # the new file's mode/owner: not the link's


def test_owner_failure_names_both_owners_and_the_ways_out():
    from concurdeploy.operations.replace import prepare_failure

    f = FileSpec("/p/a.cfg", "/etc/a.cfg", "0" * 64, 3)
    fact = DestFacts("/etc/a.cfg", "file", "/etc/a.cfg", 0o640, 0, 33, 3, "1" * 64, "root", "haproxy")
    err = prepare_failure(FakeResult(1, f"{_FAIL} 0 owner root:haproxy deploy:deploy\n"), [(f, fact, "/etc/.t")])
    assert isinstance(err, DestinationError)
    assert ("the file is owned root:haproxy; pushing as deploy would make it deploy:deploy" in err.message
            and "become" in err.message and "owner" in err.message)


def test_prepare_script_gives_the_new_file_the_replaced_files_selinux_label(tmp_path):
    """No SELinux here: stand-ins for ``selinuxenabled`` and ``chcon`` on PATH show the command the
    prepare step runs where SELinux is enabled, and that its failure fails the host. The label
    itself is untested (no SELinux on the test machines)."""
    spec, fact, tmp = stage(tmp_path / "d", "l.cfg", b"new\n", existing=b"old\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "chcon.args"
    (bin_dir / "selinuxenabled").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "chcon").write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > '{calls}'\nexit ${{CHCON_RC:-0}}\n")
    for p in bin_dir.iterdir():
        p.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    script = _prepare_script([(spec, fact, tmp)])
    res = subprocess.run(["sh", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=20)
    assert res.returncode == 0, res.stdout + res.stderr
    assert calls.read_text().splitlines() == ["-h", f"--reference={fact.target}", "--", tmp]
    res = subprocess.run(["sh", "-c", script], cwd=tmp_path, env={**env, "CHCON_RC": "1"}, capture_output=True,
                         text=True, timeout=20)
    assert res.returncode == 1 and f"{_FAIL} 0 selinux" in res.stdout, res.stdout
    from concurdeploy.operations.replace import prepare_failure

    err = prepare_failure(FakeResult(1, res.stdout), [(spec, fact, tmp)])
    assert "SELinux" in err.message and "left unchanged" in err.message
