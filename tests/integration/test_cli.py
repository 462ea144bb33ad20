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
    """Map host -> status from the recap block (check mode: ``would change``)."""
    lines = out.split("RECAP", 1)[1].splitlines()[1:]
    return {ln.split()[0]: "would change" if ln.split()[1:3] == ["would", "change"] else ln.split()[1]
            for ln in lines if ln.strip()}


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


# ---------------------------------------------------------------------------- one CLI edge (issue 11)

def _inventory_elsewhere(f, tmp_path) -> str:
    """Move the fleet's inventory out of the project, so that only -i/--inventory finds it."""
    moved = tmp_path / "elsewhere" / "fleet.yaml"
    moved.parent.mkdir(exist_ok=True)
    shutil.move(f.project / "inventories" / "hosts.yaml", moved)
    return str(moved)


@pytest.mark.parametrize("before, after", [
    (["-i", "{inv}"], ["-i", "{inv}", "--check"]),
    (["--inventory={inv}", "-C", "-l", "h1"], ["--inventory={inv}", "-C", "-l", "h1"]),
    (["-P1", "--inventory", "{inv}", "--check", "--limit=h2"], ["-P", "1", "-i", "{inv}", "--check", "-l", "h2"]),
], ids=["short", "equals-and-limit", "attached-value"])
def test_options_before_and_after_the_task_name_do_the_same(fleet, tmp_path, before, after):
    f = fleet(2)
    inv = _inventory_elsewhere(f, tmp_path)
    for n in f.names:
        f.dest(n).write_bytes(b"old\n")
    fill = lambda args: [a.replace("{inv}", inv) for a in args]  # noqa: E731
    if "--check" not in before and "-C" not in before:
        before = before + ["--check"]
    first = f.run(*fill(before), "push", "haproxy")
    second = f.run("push", "haproxy", *fill(after))
    assert first.returncode == second.returncode == 0, first.stdout + first.stderr + second.stderr
    assert status_lines(first.stdout) == status_lines(second.stdout)
    assert set(status_lines(first.stdout).values()) == {"would change"}  # check mode: never "changed"
    assert "(check mode)" in first.stdout and "(check mode)" in second.stdout
    assert all(f.dest(n).read_bytes() == b"old\n" for n in f.names)  # check mode wrote nothing


@pytest.mark.parametrize("where", ["after", "before"])
def test_dry_is_check_mode_with_a_line_saying_so(fleet, where):
    f = fleet(2)
    f.dest("h1").write_bytes(b"old\n")
    args = ["push", "haproxy", "--dry"] if where == "after" else ["--dry", "push", "haproxy"]
    res = f.run(*args)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "--dry taken as --check" in res.stderr
    assert status_lines(res.stdout) == {"h1": "would change", "h2": "would change"}
    assert f.dest("h1").read_bytes() == b"old\n" and not f.dest("h2").exists()  # the hosts are unchanged
    assert not (f.root("h1") / "reload.log").exists()
    refused = f.run("run", "haproxy", "touch /nonexistent-dir/x", "-R")
    assert_usage_error(refused, "--dry", "'run'")


REFUSED_CORE = [(["-w"], "--warn-only"), (["--warn-only"], "--warn-only"), (["-f", "2"], "--config"),
                (["-f", "x.yaml"], "--config"), (["--echo"], "--echo"), (["-e"], "--extra-vars"),
                (["--pty"], "--pty"), (["-p"], "--pty"), (["-d"], "--debug"), (["-T", "5"], "--command-timeout"),
                (["--hide", "both"], "--hide"), (["--write-pyc"], "--write-pyc"),
                (["--prompt-for-sudo-password"], "--prompt-for-sudo-password")]


def test_invoke_core_options_are_refused_before_and_after_the_task_name(fleet):
    f = fleet(1)
    for flags, needle in REFUSED_CORE:  # bounded: one subprocess per case and position
        for argv in (["push", "haproxy", *flags], [*flags, "push", "haproxy"]):
            res = f.run(*argv, stdin=None)
            assert_usage_error(res, needle)
    assert not f.dest("h1").exists() and not (f.root("h1") / "reload.log").exists()
    top = f.run("--help")
    for _, needle in REFUSED_CORE:
        assert needle not in top.stdout
    for kept in ("--list", "--version", "--collection", "--search-root", "--print-config", "--complete"):
        assert kept in top.stdout


@pytest.mark.parametrize("args, needle", [
    (["--forks", "0"], "--forks must be at least 1"),
    (["--serial", "x"], "--serial 'x'"),
    (["--max-fail", "200%"], "--max-fail '200%'"),
    (["--host-key-policy", "maybe"], "--host-key-policy must be strict, accept-new or off"),
    (["--executor", "foo"], "--executor must be local or dask"),
    (["--report-json", "/etc/passwd/reports/x.json"], "--report-json: cannot write a report"),
    (["--report-json", "missing/x.json"], "its folder"),
    (["--junit", "missing/x.xml"], "--junit: cannot write a report to missing/x.xml: its folder"),
    (["--report-html", "missing/deeper/x.html"], "missing/deeper does not exist"),
    (["--report-json", "files/haproxy/haproxy.cfg"], "is an existing file that is not a concurdeploy report"),
    (["--report-html", "inventories/hosts.yaml"], "--report-html: cannot write a report to inventories/hosts.yaml: it is an existing file"),
    (["--junit", "inventories/hosts.yaml"], "that is not a concurdeploy report"),
])
def test_bad_flag_values_before_the_task_name_exit_2(fleet, args, needle):
    f = fleet(1)
    assert_usage_error(f.run(*args, "push", "haproxy"), needle)
    assert_usage_error(f.run("push", "haproxy", *args), needle)
    assert not f.dest("h1").exists()
    assert not (f.project / "missing").exists()  # a report's missing folder is refused, not created
    assert (f.project / "files" / "haproxy" / "haproxy.cfg").read_bytes() == HAPROXY_CFG  # never a report


def test_every_option_a_task_takes_is_in_its_help(fleet):
    from concurdeploy.options import task_flags

    from concurdeploy.cli import tasks

    f = fleet(1)
    for task in ("push", "put", "run", "get"):
        res = f.run(task, "--help")
        assert res.returncode == 0, res.stderr
        refused = getattr(getattr(tasks, task), "help_hidden", ())  # parsed only to be refused
        for o in task_flags(task):
            assert (o.flag in res.stdout) is (o.name not in refused), (task, o.flag)
            if o.short and o.name not in refused:
                assert f"-{o.short}" in res.stdout, (task, o.short)
    assert tasks.push.help_hidden == ("hosts",)  # push -H: refused, so not offered


def test_project_task_exit_1_when_a_host_fails(fleet):
    f = fleet(2)
    shutil.copy(REPO / "tasks.py", f.project / "tasks.py")
    f.servers[1].stop()
    res = f.run("-P", "2", "seed", "haproxy", "--dest", str(f.project / "seeded" / "{host}.cfg"))
    assert res.returncode == 1, res.stdout + res.stderr
    assert status_lines(res.stdout) == {"h1": "changed", "h2": "unreachable"}


# ---------------------------------------------------------------------------- CLI edge review (issue 11 follow-up)

@pytest.fixture
def sandbox_project(tmp_path) -> Path:
    """A project of its own: an empty tasks.py, the sandbox inventory (four hosts whose files
    land under ``.sandbox/<host>/``) and the haproxy file. No sshd needed: the sandbox is the host."""
    project = tmp_path / "sandbox-project"
    (project / "inventories").mkdir(parents=True)
    shutil.copy(REPO / "inventories" / "sandbox.yaml", project / "inventories" / "sandbox.yaml")
    (project / "files" / "haproxy").mkdir(parents=True)
    shutil.copy(REPO / "files" / "haproxy" / "haproxy.cfg", project / "files" / "haproxy" / "haproxy.cfg")
    (project / "tasks.py").write_text("")
    return project


def cd_run(project: Path, *args: str, env: dict | None = None):
    """``concurdeploy ARGS`` as a subprocess in ``project``."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "concurdeploy", *args], cwd=project, capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


def pushed(project: Path, host: str) -> bool:
    """Whether ``host`` received the haproxy file (a real push, not check mode)."""
    return (project / ".sandbox" / host / "etc" / "haproxy" / "haproxy.cfg").exists()


def test_double_dash_is_refused_and_the_push_does_not_happen(sandbox_project):
    p = sandbox_project
    assert_usage_error(cd_run(p, "push", "haproxy", "-l", "lb3", "--", "--check"),
                       "concurdeploy takes nothing after '--'", "'--check'")
    assert not pushed(p, "lb3")
    assert_usage_error(cd_run(p, "run", "haproxy", "echo a", "--", "echo b"), "'echo b'")
    both = cd_run(p, "run", "haproxy", "echo a; echo b", "-l", "lb1")  # the way to say it
    assert both.returncode == 0 and "lb1 | a" in both.stdout and "lb1 | b" in both.stdout, both.stderr
    check = cd_run(p, "push", "haproxy", "-l", "lb3", "--check")
    assert check.returncode == 0 and "(check mode)" in check.stdout and not pushed(p, "lb3"), check.stderr
    real = cd_run(p, "push", "haproxy", "-l", "lb3")  # the control: a push is seen where it happens
    assert real.returncode == 0 and pushed(p, "lb3"), real.stdout + real.stderr


@pytest.mark.parametrize("flags, needle", [
    (["-V"], "-V (--version) is an option of concurdeploy itself"),
    (["--list"], "--list is an option of concurdeploy itself: type it before the task name"),
    (["--complete"], "--complete is an option of concurdeploy itself"),
    (["--print-config"], "--print-config is an option of concurdeploy itself"),
    (["-c", "other"], "-c (--collection)"),
    (["-D", "1"], "-D (--list-depth)"),
    (["-F", "json"], "--ssh-config 'json': no such file"),  # -F after push is --ssh-config
    (["-l"], "-l/--limit needs a value"),
    (["-P2", "-P3"], "--forks given twice"),
    (["--ssh-config="], "--ssh-config is empty"),
    (["--scheduler", "foo"], "--scheduler is for --executor dask"),
    (["-P", "1e3"], "--forks must be a whole number"),
])
def test_after_the_task_name_nothing_is_swallowed(sandbox_project, flags, needle):
    assert_usage_error(cd_run(sandbox_project, "push", "haproxy", "-l", "lb1", *flags), needle)
    assert not (sandbox_project / ".sandbox").exists()  # not even the sandbox was started


def test_before_the_task_name_named_roots_bad_files_and_clusters(sandbox_project):
    p = sandbox_project
    assert_usage_error(cd_run(p, "-r", "/nonexistent", "push", "haproxy", "-C", "-l", "lb1"),
                       "-r/--search-root /nonexistent: no such folder")
    assert_usage_error(cd_run(p, "-c", "nonexistent", "push", "haproxy", "-C"), "-c/--collection 'nonexistent'")
    assert_usage_error(cd_run(p, "-F", "/nonexistent", "push", "haproxy"), "--ssh-config '/nonexistent'")
    assert_usage_error(cd_run(p, "push", "haproxy", env={"CONCURDEPLOY_INVENTORY": ""}),
                       "CONCURDEPLOY_INVENTORY is empty")
    assert_usage_error(cd_run(p, "--print-config", env={"CONCURDEPLOY_FORKS": "abc"}),
                       "CONCURDEPLOY_FORKS must be a number, not 'abc'")
    (p / "concurdeploy.yaml").write_text("forks: 3\nforsk: 4\n")
    assert_usage_error(cd_run(p, "push", "haproxy"), "concurdeploy.yaml:2: unknown setting 'forsk'", "'forks'")
    (p / "concurdeploy.yaml").unlink()
    assert_usage_error(cd_run(p, "-wC", "push", "haproxy"), "-w/--warn-only")
    debug = cd_run(p, "-d", "push", "haproxy")
    assert_usage_error(debug, "-d/--debug")
    assert not (p / ".sandbox").exists()
    quiet_dry = cd_run(p, "-qR", "push", "haproxy", "-l", "lb1")  # -q the task's, -R invoke's --dry
    assert quiet_dry.returncode == 0, quiet_dry.stdout + quiet_dry.stderr
    assert "--dry taken as --check" in quiet_dry.stderr and not pushed(p, "lb1")
    helped = cd_run(p, "-i", "inventories", "--help", "push")
    assert helped.returncode == 0 and helped.stdout.startswith("Usage: concurdeploy push SERVICE"), helped.stderr


def test_core_options_before_the_task_name_still_work(sandbox_project):
    p = sandbox_project
    for args, needle in ((["--version"], "concurdeploy "), (["--list"], "push"), (["--help"], "Core options"),
                         (["--print-config"], "forks: 50"), (["--complete", "--", "concurdeploy", "pu"], "push"),
                         (["--print-completion-script", "bash"], "complete")):
        res = cd_run(p, *args)
        assert res.returncode == 0 and needle in res.stdout, (args, res.stdout, res.stderr)
    assert not (p / ".sandbox").exists()
