"""The CLI edge after the issue-11 review: every way a command line could be misread is
refused with exit 2, one paragraph on stderr, no traceback, before any host is contacted.

Each case runs ``program.run(argv)`` in a project of its own: an empty ``tasks.py``, the
sandbox inventory (``inventories/sandbox.yaml``: four hosts whose files land under
``.sandbox/<host>/``) and the haproxy file. A push that happened anyway would leave
``.sandbox/`` behind (the sandbox's keys, the hosts' files), so its absence is the check
that no host was contacted.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from concurdeploy import __version__
from concurdeploy.cli.program import program

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A sandbox project as the working directory (nothing below it is ever contacted here)."""
    (tmp_path / "inventories").mkdir()
    shutil.copy(REPO / "inventories" / "sandbox.yaml", tmp_path / "inventories" / "sandbox.yaml")
    (tmp_path / "files" / "haproxy").mkdir(parents=True)
    shutil.copy(REPO / "files" / "haproxy" / "haproxy.cfg", tmp_path / "files" / "haproxy" / "haproxy.cfg")
    (tmp_path / "tasks.py").write_text("")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    """``concurdeploy ARGV`` in this process: (exit code, stdout, stderr)."""
    try:
        program.run(["concurdeploy", *argv])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def refused(argv: list[str], capsys, project: Path, *needles: str) -> str:
    """Exit 2, one paragraph on stderr holding ``needles``, nothing on stdout, no host contacted."""
    code, out, err = run(argv, capsys)
    msg = err.strip()
    assert code == 2, (argv, code, out, err)
    assert msg.startswith("concurdeploy: ") and "\n" not in msg and "Traceback" not in err, msg
    assert out == "", out  # refused before anything is printed
    for needle in needles:
        assert needle in msg, (needle, msg)
    assert not (project / ".sandbox").exists(), "a host was contacted"
    return msg


# -- 1. words after '--' ---------------------------------------------------------------------------

@pytest.mark.parametrize("argv, word", [
    (["push", "haproxy", "-l", "lb3", "--", "--check"], "--check"),
    (["run", "haproxy", "echo a", "--", "echo b"], "echo b"),
    (["--", "push", "haproxy"], "push haproxy"),
])
def test_words_after_double_dash_are_refused(project, capsys, argv, word):
    msg = refused(argv, capsys, project, "concurdeploy takes nothing after '--'", repr(word))
    assert "does not read it" in msg or "no task was given" in msg


def test_a_lone_double_dash_is_harmless(project, capsys):
    code, out, err = run(["hosts", "-l", "lb1", "--"], capsys)  # nothing after it: nothing dropped
    assert code == 0 and out.split()[0] == "lb1", (out, err)


def test_a_project_task_that_reads_the_remainder_gets_it_one_that_does_not_is_refused(project, capsys):
    (project / "tasks.py").write_text(textwrap.dedent("""
        from invoke import task

        @task
        def shell(c):
            print("rest:", c.remainder)

        @task
        def hello(c):
            print("hello")
    """))
    code, out, err = run(["shell", "--", "ls", "-l"], capsys)
    assert code == 0 and out == "rest: ls -l\n", err
    refused(["hello", "--", "x"], capsys, project, "task 'hello' does not read it")


# -- 2. invoke's core options after the task name ---------------------------------------------------

AFTER = [
    (["-V"], "-V (--version) is an option of concurdeploy itself"),
    (["--version"], "--version is an option of concurdeploy itself"),
    (["-D", "1"], "-D (--list-depth)"),
    (["--list-format=json"], "--list-format is an option of concurdeploy itself"),
    (["--print-completion-script", "bash"], "--print-completion-script"),
    (["-c", "other"], "-c (--collection)"),
    (["-r", "/tmp"], "-r (--search-root)"),
    (["--no-dedupe"], "--no-dedupe"),
    (["--complete"], "--complete is an option of concurdeploy itself"),
    (["--list"], "--list is an option of concurdeploy itself: type it before the task name"),
    (["--print-config"], "--print-config is an option of concurdeploy itself"),
    (["-T"], "-T/--command-timeout as a core option is invoke's"),
    (["-w"], "-w/--warn-only"),
]


@pytest.mark.parametrize("flags, needle", AFTER, ids=[" ".join(f) for f, _ in AFTER])
def test_core_options_after_the_task_name_are_refused_never_acted_on(project, capsys, flags, needle):
    refused(["push", "haproxy", "-l", "lb1", *flags], capsys, project, needle)


def test_a_task_flag_wins_over_the_core_option_of_the_same_letter(project, capsys):
    # -F after push is --ssh-config (never --list-format): a missing file is refused up front
    refused(["push", "haproxy", "-l", "lb1", "-F", "json"], capsys, project, "--ssh-config 'json': no such file")
    (project / "tasks.py").write_text(textwrap.dedent("""
        from invoke import task

        @task
        def count(c, copies=1):
            print("copies", copies)
    """))
    code, out, err = run(["count", "-c", "3"], capsys)  # the task's -c (invoke's short flag), not --collection
    assert (code, out) == (0, "copies 3\n"), err


@pytest.mark.parametrize("argv, needle", [
    (["push", "haproxy", "-l", "lb1", "-l"], "-l/--limit needs a value (-l ends the command line)"),
    (["push", "haproxy", "-l"], "-l/--limit needs a value"),
    (["push", "haproxy", "-i", "--check"], "-i/--inventory needs a value, and '--check' came instead"),
    (["run", "haproxy", "true", "--timeout"], "--timeout needs a value"),
])
def test_a_flag_without_its_value_is_refused(project, capsys, argv, needle):
    refused(argv, capsys, project, needle)


# -- 3. -c / -r naming something that is not there --------------------------------------------------

def test_an_explicit_collection_or_search_root_that_is_not_found_is_refused(project, capsys):
    refused(["-c", "nonexistent", "push", "haproxy", "-C", "-l", "lb1"], capsys, project,
            "-c/--collection 'nonexistent': no nonexistent.py")
    refused(["-r", "/nonexistent", "push", "haproxy", "-C", "-l", "lb1"], capsys, project,
            "-r/--search-root /nonexistent: no such folder")
    empty = project / "empty"
    empty.mkdir()
    (project / "tasks.py").unlink()  # otherwise found in the folder above
    refused(["-r", str(empty), "push", "haproxy", "-C"], capsys, project, f"-r/--search-root {empty}: no tasks.py")


def test_no_tasks_py_when_none_was_asked_for_is_fine(project, capsys):
    (project / "tasks.py").unlink()
    code, out, err = run(["--list"], capsys)
    assert code == 0 and "push" in out, err


# -- 4. empty values ---------------------------------------------------------------------------------

@pytest.mark.parametrize("flags, needle", [
    (["--inventory="], "--inventory is empty (an unset variable?)"),
    (["-i", ""], "--inventory is empty"),
    (["--host-key-policy="], "--host-key-policy is empty"),
    (["--ssh-config="], "--ssh-config is empty"),
    (["--limit="], "--limit is empty"),
    (["--forks="], "--forks is empty"),
])
def test_an_empty_flag_value_is_refused(project, capsys, flags, needle):
    refused(["push", "haproxy", *flags], capsys, project, needle)
    refused([*flags, "push", "haproxy"], capsys, project, needle)


def test_keyscan_known_hosts_empty_is_refused(project, capsys):
    refused(["keyscan", "haproxy", "--known-hosts="], capsys, project, "--known-hosts is empty")


@pytest.mark.parametrize("var, needle", [
    ("CONCURDEPLOY_INVENTORY", "CONCURDEPLOY_INVENTORY is empty (an unset variable?)"),
    ("CONCURDEPLOY_FORKS", "CONCURDEPLOY_FORKS is empty"),
])
def test_an_empty_environment_variable_is_refused(project, capsys, monkeypatch, var, needle):
    monkeypatch.setenv(var, "")
    refused(["push", "haproxy"], capsys, project, needle)


def test_an_empty_setting_in_the_config_file_is_refused(project, capsys):
    (project / "concurdeploy.yaml").write_text("forks: 3\ninventory: ''\n")
    refused(["push", "haproxy"], capsys, project, "concurdeploy.yaml:2: inventory is empty")
    (project / "concurdeploy.yaml").write_text("scheduler:\n")
    refused(["push", "haproxy"], capsys, project, "concurdeploy.yaml:1: scheduler is empty")


# -- 5. --ssh-config checked up front ---------------------------------------------------------------

def test_a_missing_ssh_config_is_refused_before_anything(project, capsys):
    for argv in (["push", "haproxy", "-F", "/nonexistent"], ["-F", "/nonexistent", "push", "haproxy"],
                 ["run", "haproxy", "true", "--ssh-config", "missing.conf"],
                 ["get", "haproxy", "/etc/hostname", "out", "-F", "/nonexistent"],
                 ["keyscan", "haproxy", "-F", "/nonexistent"]):
        refused(argv, capsys, project, "no such file", "'none'")


# -- 6. messages -------------------------------------------------------------------------------------

def test_a_bad_environment_variable_is_named_with_its_type(project, capsys, monkeypatch):
    monkeypatch.setenv("CONCURDEPLOY_FORKS", "abc")
    refused(["push", "haproxy"], capsys, project, "CONCURDEPLOY_FORKS must be a number, not 'abc'")
    refused(["--print-config"], capsys, project, "CONCURDEPLOY_FORKS must be a number, not 'abc'")


@pytest.mark.parametrize("text, needle", [
    ("- forks: 3\n", "concurdeploy.yaml: a concurdeploy config file is a mapping of settings (key: value), not a list"),
    ("forks: 3\ninventory: [unclosed\n", "concurdeploy.yaml:2: YAML syntax error"),
    ("forks: 3\nforsk: 4\n", "concurdeploy.yaml:2: unknown setting 'forsk': did you mean 'forks'?"),
    ("forks: abc\n", "concurdeploy.yaml:1: forks must be a number, not 'abc'"),
    ("executor: dask\n", "executor: dask (concurdeploy.yaml) needs the scheduler's address"),
])
def test_a_bad_config_file_is_named_with_its_line(project, capsys, text, needle):
    (project / "concurdeploy.yaml").write_text(text)
    msg = refused(["push", "haproxy"], capsys, project, needle)
    assert "--executor dask" not in msg


def test_invoke_sections_in_the_config_file_are_allowed(project, capsys):
    (project / "concurdeploy.yaml").write_text("forks: 7\nrun:\n  echo: true\n")
    code, out, err = run(["--print-config"], capsys)
    assert code == 0 and "forks: 7" in out, err


@pytest.mark.parametrize("argv", [
    ["-P2", "-P3", "push", "haproxy"], ["push", "haproxy", "--forks=2", "--forks=3"],
    ["-P", "2", "push", "haproxy", "-P", "3"],
])
def test_a_flag_given_twice_is_refused(project, capsys, argv):
    refused(argv, capsys, project, "--forks given twice")


def test_refusals_say_the_right_thing(project, capsys):
    msg = refused(["push", "haproxy", "-T"], capsys, project, "-T/--command-timeout")
    assert "<Argument" not in msg
    refused(["-l", "lb1", "--list"], capsys, project, "--list lb1:", "concurdeploy push SERVICE -l lb1")
    refused(["-wC", "push", "haproxy"], capsys, project, "-w/--warn-only")
    refused(["-f", "push", "haproxy"], capsys, project, "-f/--config")
    refused(["-d", "push", "haproxy"], capsys, project, "-d/--debug")  # and no debug log before it


def test_help_for_a_task_with_options_before_it(project, capsys):
    code, out, err = run(["-i", "inventories", "--help", "push"], capsys)
    assert code == 0 and out.startswith("Usage: concurdeploy push SERVICE"), err


# -- 7. values ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("flags, needle", [
    (["-P", "1e3"], "--forks must be a whole number written in digits, not '1e3'"),
    (["--retries", "1e9"], "--retries must be a whole number"),
    (["-P", "20000"], "--forks must be at most 10000"),
    (["--retries", "101"], "--retries must be at most 100"),
    (["--scheduler", "foo"], "--scheduler is for --executor dask"),
])
def test_counts_are_whole_numbers_within_bounds_and_scheduler_needs_dask(project, capsys, flags, needle):
    refused(["push", "haproxy", "-l", "lb1", *flags], capsys, project, needle)


# -- what must keep working ---------------------------------------------------------------------------

@pytest.mark.parametrize("argv, needle", [
    (["--version"], f"concurdeploy {__version__}"), (["-V"], f"concurdeploy {__version__}"), (["--list"], "push"),
    (["--help"], "Core options"), (["push", "--help"], "Usage: concurdeploy push SERVICE"),
    (["--complete", "--", "concurdeploy", "pu"], "push"), (["--print-completion-script", "bash"], "complete"),
    (["--print-config"], "forks: 50"), (["--list", "--list-format=json"], '"name"'),
])
def test_core_options_before_the_task_name_still_work(project, capsys, argv, needle):
    code, out, err = run(argv, capsys)
    assert code == 0 and needle in out, (out, err)
    assert not (project / ".sandbox").exists()


def test_two_tasks_on_one_command_line_are_refused(tmp_path, monkeypatch, capsys):
    """``concurdeploy --check -l lb1 push haproxy push haproxy`` ran the second push for real,
    on every host, and the exit code was the last task's."""
    from concurdeploy.cli.program import program

    monkeypatch.chdir(tmp_path)
    (tmp_path / "tasks.py").write_text("")
    with pytest.raises(SystemExit) as e:
        program.run(["concurdeploy", "--check", "-l", "lb1", "push", "haproxy", "push", "haproxy"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "one task per command, not 2 (push push)" in err and "Traceback" not in err
