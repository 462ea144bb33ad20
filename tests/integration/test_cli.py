"""The ``concurdeploy`` command end to end: built-in tasks, help, usage errors, a project's
own ``tasks.py``, settings from the environment; against real sshd (and mock-ssh-server)
on loopback, through a real subprocess."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import paramiko
import pytest
import yaml

from tests.conftest import MOCK_SSH_USER

from .conftest import HAPROXY_CFG

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def status_lines(out: str) -> dict:
    """Map host -> status from the recap block."""
    lines = out.split("RECAP", 1)[1].splitlines()[1:]
    return {ln.split()[0]: ln.split()[1] for ln in lines if ln.strip()}


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if not p.is_dir()) if path.exists() else []


def assert_usage_error(res, *needles: str) -> str:
    """Exit 2, one paragraph on stderr naming ``needles``, no traceback, nothing run."""
    out = res.stdout + res.stderr
    assert res.returncode == 2, out
    assert "Traceback" not in out
    msg = res.stderr.strip()
    assert msg and "\n\n" not in msg, msg
    for needle in needles:
        assert needle in msg, msg
    assert "RECAP" not in res.stdout  # no host was contacted
    return msg


# ---------------------------------------------------------------------------- run

def host_blocks(out: str) -> dict:
    """``--collect`` form: host -> (its status line, the '    | ' output lines right under it)."""
    blocks, current = {}, None
    for ln in out.split("RECAP", 1)[0].splitlines():
        if ln.startswith("    | ") and current:
            blocks[current][1].append(ln[6:])
        elif ln and not ln.startswith(" ") and " | " not in ln:
            current = ln.split()[0]
            blocks[current] = (ln, [])
    return blocks


def live_lines(out: str, name: str) -> list[str]:
    """Live form: the ``NAME | text`` lines of one host, in order."""
    prefix = f"{name} | "
    return [ln[len(prefix):] for ln in out.split("RECAP", 1)[0].splitlines() if ln.startswith(prefix)]


def status_line(out: str, name: str) -> str:
    return next(ln for ln in out.split("RECAP", 1)[0].splitlines()
                if ln.split()[:1] == [name] and " | " not in ln)


FAILING = "echo hi; echo oops >&2; exit 3"


def test_run_failing_command_exit_1_output_prefixed_by_host(fleet):
    f = fleet(2)
    res = f.run("run", "haproxy", FAILING)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    assert status_lines(res.stdout) == {"h1": "failed", "h2": "failed"}
    for name in f.names:
        assert "exited 3" in status_line(res.stdout, name)  # the exit status is reported
        assert "hi" in live_lines(res.stdout, name)
    assert "oops" in res.stdout + res.stderr


def test_run_collect_puts_output_under_each_host_line(fleet):
    f = fleet(2)
    res = f.run("run", "haproxy", FAILING, "--collect")
    assert res.returncode == 1, res.stdout + res.stderr
    blocks = host_blocks(res.stdout)
    for name in f.names:
        line, output = blocks[name]
        assert "failed" in line and "exited 3" in line, line
        assert output[0] == "hi" and "oops" in output, output


def test_run_succeeding_command_exit_0_shows_output(fleet):
    f = fleet(2)
    res = f.run("run", "haproxy", "echo hi; echo 'second line'")
    assert res.returncode == 0, res.stdout + res.stderr
    assert status_lines(res.stdout) == {"h1": "ok", "h2": "ok"}
    for name in f.names:
        assert "exit 0" in status_line(res.stdout, name)
        assert live_lines(res.stdout, name) == ["hi", "second line"]


@pytest.mark.parametrize("locale_env", [{}, {"LC_ALL": "C", "LANG": "C"}], ids=["default", "C-locale"])
@pytest.mark.parametrize("collect", [False, True], ids=["live", "collect"])
def test_run_output_with_invalid_utf8_does_not_crash(fleet, locale_env, collect):
    f = fleet(1)
    res = f.run("run", "haproxy", r"printf 'bad \377\376 bytes\n'; printf 'ok \303\251\n'",
                *(["--collect"] if collect else []), env=locale_env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    output = host_blocks(res.stdout)["h1"][1] if collect else live_lines(res.stdout, "h1")
    assert output == ["bad \ufffd\ufffd bytes", "ok é"]


# ---------------------------------------------------------------------------- get

def test_get_downloads_into_local_dir_per_host(fleet, tmp_path):
    f = fleet(2)
    remote = tmp_path / "remote data" / "app.conf"
    remote.parent.mkdir()
    remote.write_bytes(b"key = value\n\x00binary\xff\n")
    out_dir = tmp_path / "fetched"
    res = f.run("get", "haproxy", str(remote), str(out_dir))
    assert res.returncode == 0, res.stdout + res.stderr
    assert status_lines(res.stdout) == {"h1": "ok", "h2": "ok"}
    for name in f.names:
        local = out_dir / name / str(remote).lstrip("/")
        assert local.read_bytes() == remote.read_bytes()
        assert f"saved {local}" in res.stdout
    assert len(files_under(out_dir)) == 2  # no temporary file left beside them


def test_get_missing_remote_file_fails_host_exit_1(fleet, tmp_path):
    f = fleet(2)
    out_dir = tmp_path / "fetched"
    res = f.run("get", "haproxy", str(tmp_path / "no such file"), str(out_dir))
    assert res.returncode == 1
    assert status_lines(res.stdout) == {"h1": "failed", "h2": "failed"}
    assert "DestinationError" in res.stdout and "no such file" in res.stdout.lower()
    assert files_under(out_dir) == []


# ---------------------------------------------------------------------------- help

def test_help_list_and_task_help(fleet):
    f = fleet(1)
    top = f.run("--help")
    assert top.returncode == 0 and "Usage" in top.stdout
    listing = f.run("--list")
    assert listing.returncode == 0
    for name in ("push", "run", "get", "hosts"):
        assert name in listing.stdout
    push_help = f.run("push", "--help")
    assert push_help.returncode == 0, push_help.stderr
    for flag in ("--check", "--limit", "--forks", "--inventory", "-C", "-l", "-P", "-i"):
        assert flag in push_help.stdout, flag
    assert "SERVICE" in push_help.stdout.upper()
    assert not files_under(f.project / "roots")


def test_unknown_flag_exit_2_without_traceback(fleet):
    f = fleet(1)
    res = f.run("push", "haproxy", "--bogus")
    assert_usage_error(res, "--bogus")
    res = f.run("--bogus")
    assert_usage_error(res, "--bogus")
    res = f.run("nosuchtask")
    assert_usage_error(res, "nosuchtask")
    assert not files_under(f.project / "roots")


# ---------------------------------------------------------------------------- usage errors

def test_bad_port_in_inventory_exit_2_names_file_line_key(fleet):
    f = fleet(2)
    f.host_vars = {"h2": {"port": "abc"}}
    path = f.write_inventory()
    line = next(i + 1 for i, ln in enumerate(path.read_text().splitlines()) if "port: abc" in ln)
    res = f.run("push", "haproxy")
    assert_usage_error(res, f"inventories/hosts.yaml:{line}:", "'port'", "abc")
    assert res.stdout == ""
    assert not files_under(f.project / "roots")


def test_unknown_group_exit_2(fleet):
    f = fleet(1)
    res = f.run("push", "haprxy")
    assert_usage_error(res, "haprxy")
    assert not files_under(f.project / "roots")


def test_limit_matching_nothing_exit_2(fleet):
    f = fleet(2)
    res = f.run("push", "haproxy", "--limit", "zz*")
    assert_usage_error(res, "zz*")
    assert not files_under(f.project / "roots")


def test_missing_src_exit_2_before_any_host_is_touched(fleet):
    f = fleet(2)
    path = f.write_inventory(files=[
        {"src": "files/haproxy/haproxy.cfg", "dest": "{{ root }}/etc/haproxy/haproxy.cfg"},
        {"src": "files/missing.cfg", "dest": "{{ root }}/etc/haproxy/missing.cfg"}])
    line = next(i + 1 for i, ln in enumerate(path.read_text().splitlines()) if "missing.cfg" in ln)
    res = f.run("push", "haproxy")
    assert_usage_error(res, f"inventories/hosts.yaml:{line}:", "'src'", "files/missing.cfg")
    assert not files_under(f.project / "roots")  # not even the good file went anywhere


# ---------------------------------------------------------------------------- tasks.py

def test_project_tasks_py_task_runs_in_workers(fleet):
    f = fleet(3)
    shutil.copy(REPO / "tasks.py", f.project / "tasks.py")
    listing = f.run("--list")
    assert "seed" in listing.stdout, listing.stdout + listing.stderr
    dest = f.project / "seeded" / "{host}.cfg"
    res = f.run("seed", "haproxy", "--dest", str(dest), "-P", "2")
    assert res.returncode == 0, res.stdout + res.stderr
    assert status_lines(res.stdout) == {n: "changed" for n in f.names}
    for name in f.names:
        assert (f.project / "seeded" / f"{name}.cfg").read_bytes() == HAPROXY_CFG
    assert [p.name for p in files_under(f.project / "seeded")] == [f"{n}.cfg" for n in f.names]


# ---------------------------------------------------------------------------- mock-ssh-server

def _child_pids() -> set[int]:
    me = str(os.getpid())
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "stat").read_text().rsplit(")", 1)[1].split()[1] == me:
                    pids.add(int(entry.name))
            except (OSError, IndexError):
                pass
    return pids


@pytest.fixture
def mock_commands_reaped():
    """Kill what mockssh left running in this process: it never passes EOF to a command's
    stdin, so concurdeploy's lock holder (``exec cat >/dev/null``) outlives the push."""
    before = _child_pids()
    yield
    for pid in _child_pids() - before:
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "cat":
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        except (OSError, ChildProcessError):
            pass


def mock_project(tmp_path, mock_ssh_server, known_hosts, client_keys, dest, **group_vars):
    """A project whose inventory has one host, ``mock1``, served by mock-ssh-server."""
    from .conftest import Fleet

    project = tmp_path / "project"
    (project / "files").mkdir(parents=True, exist_ok=True)
    (project / "files" / "haproxy.cfg").write_bytes(HAPROXY_CFG)
    (project / "inventories").mkdir(exist_ok=True)
    inv = {"haproxy": {
        "hosts": {"mock1": {"host": "127.0.0.1", "port": mock_ssh_server.port, "user": MOCK_SSH_USER,
                            "key_file": client_keys.ed25519, "known_hosts": known_hosts}},
        "vars": {"connect_timeout": 5, "command_timeout": 20,
                 "files": [{"src": "files/haproxy.cfg", "dest": str(dest)}],
                 "reload": f"echo reloaded >> '{tmp_path}/reload.log'", **group_vars}}}
    (project / "inventories" / "hosts.yaml").write_text(yaml.safe_dump(inv))
    return Fleet(project, [], ["mock1"], client_keys.ed25519, known_hosts)


def test_push_to_mock_ssh_server_falls_back_to_mv(mock_ssh_server, mock_ssh_known_hosts_path,
                                                  client_keys, tmp_path, mock_commands_reaped):
    dest_dir = tmp_path / "remote" / "etc"
    dest_dir.mkdir(parents=True)
    dest = dest_dir / "haproxy.cfg"
    dest.write_bytes(b"old\n")

    # The premise, as this server really behaves: no posix-rename@openssh.com.
    client = paramiko.SSHClient()
    client.load_host_keys(mock_ssh_known_hosts_path)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect("127.0.0.1", port=mock_ssh_server.port, username=MOCK_SSH_USER,
                   key_filename=client_keys.ed25519, look_for_keys=False, allow_agent=False,
                   timeout=5)
    try:
        probe = dest_dir / "probe"
        probe.write_text("p")
        with pytest.raises(IOError, match="unsupported"):
            client.open_sftp().posix_rename(str(probe), str(dest))
        probe.unlink()
    finally:
        client.close()
    assert dest.read_bytes() == b"old\n"

    runner = mock_project(tmp_path, mock_ssh_server, mock_ssh_known_hosts_path, client_keys, dest)
    res = runner.run("push", "haproxy")
    assert res.returncode == 0, res.stdout + res.stderr
    assert status_lines(res.stdout) == {"mock1": "changed"}
    assert dest.read_bytes() == HAPROXY_CFG  # replaced although the server lacks posix-rename
    assert (tmp_path / "reload.log").read_text() == "reloaded\n"
    assert not [p for p in dest_dir.iterdir() if ".concurdeploy-" in p.name and not
                p.name.endswith(".bak")]



# ---------------------------------------------------------------------------- environment

def test_inventory_from_environment_and_flag_overrides_it(fleet, tmp_path):
    f = fleet(2)
    full = f.project / "inventories" / "hosts.yaml"
    moved = tmp_path / "elsewhere" / "fleet.yaml"
    moved.parent.mkdir()
    shutil.move(full, moved)
    shutil.rmtree(f.project / "inventories")
    only_h1 = yaml.safe_load(moved.read_text())
    del only_h1["all"]["children"]["haproxy"]["hosts"]["h2"]
    small = tmp_path / "only-h1.yaml"
    small.write_text(yaml.safe_dump(only_h1))

    res = f.run("push", "haproxy")  # neither: the default inventories/ is gone
    assert_usage_error(res, "inventory not found")

    res = f.run("push", "haproxy", env={"CONCURDEPLOY_INVENTORY": str(moved)})
    assert res.returncode == 0, res.stdout + res.stderr
    assert status_lines(res.stdout) == {"h1": "changed", "h2": "changed"}

    for n in f.names:
        f.dest(n).unlink()
    res = f.run("push", "haproxy", "-i", str(small), env={"CONCURDEPLOY_INVENTORY": str(moved)})
    assert res.returncode == 0, res.stdout + res.stderr
    assert status_lines(res.stdout) == {"h1": "changed"}
    assert f.dest("h1").exists() and not f.dest("h2").exists()

    res = f.run("push", "haproxy", "--inventory", str(moved),
                env={"CONCURDEPLOY_INVENTORY": str(tmp_path / "nonexistent.yaml")})
    assert res.returncode == 0, res.stdout + res.stderr
    assert status_lines(res.stdout) == {"h1": "ok", "h2": "changed"}


def test_second_push_to_mock_ssh_server_is_ok(mock_ssh_server, mock_ssh_known_hosts_path,
                                              client_keys, tmp_path, mock_commands_reaped):
    """mock-ssh-server never forwards end-of-input: the lock holder must still be released
    (by the newline HeldCommand.release sends), or the second run would fail LockBusy."""
    (tmp_path / "etc").mkdir()
    runner = mock_project(tmp_path, mock_ssh_server, mock_ssh_known_hosts_path, client_keys,
                          tmp_path / "etc" / "haproxy.cfg", lock_timeout=30,
                          command_timeout=5)
    first = runner.run("push", "haproxy")
    assert first.returncode == 0, first.stdout + first.stderr
    again = runner.run("push", "haproxy")
    assert again.returncode == 0, again.stdout + again.stderr
    assert status_lines(again.stdout) == {"mock1": "ok"}
