"""The options record (:mod:`concurdeploy.options`): defaults, the layers (config < env < flag),
every validation error, and the CLI's exit code 2 for each of them."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from concurdeploy.exceptions import UsageError
from concurdeploy.options import OPTIONS, TASK_OPTIONS, RunOptions, check_value, option, task_flags


def test_defaults():
    o = RunOptions()
    assert (o.inventory, o.forks, o.deadline, o.executor, o.processes, o.retries) == \
        ("inventories", 50, 0.0, "local", 0, 0)
    assert o.limit is o.host_key_policy is o.connect_timeout is o.command_timeout is o.scheduler is None
    assert not (o.check or o.diff or o.fail_fast or o.quiet or o.no_progress or o.console)
    assert RunOptions.from_sources() == o


def test_record_is_frozen_and_picklable():
    o = RunOptions(forks=3, serial="1,50%")
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.forks = 4
    assert pickle.loads(pickle.dumps(o)) == o


def test_each_option_is_declared_once_and_every_record_field_has_a_declaration():
    names = [o.name for o in OPTIONS]
    assert len(names) == len(set(names))
    flags = [o.flag for o in OPTIONS if o.group] + ["-" + o.short for o in OPTIONS if o.short]
    assert len(flags) == len(set(flags))
    record = {f.name for f in dataclasses.fields(RunOptions)} - {"project_dir", "console", "command"}
    assert record <= set(names)
    for task in TASK_OPTIONS:
        assert task_flags(task) and all(o.help for o in task_flags(task))


@pytest.mark.parametrize("config, env, flags, expected", [
    ({}, {}, {}, 50),
    ({"forks": 10}, {}, {}, 10),
    ({"forks": 10}, {"CONCURDEPLOY_FORKS": "20"}, {}, 20),
    ({"forks": 10}, {"CONCURDEPLOY_FORKS": "20"}, {"forks": "30"}, 30),
    ({}, {}, {"forks": 30}, 30),
    ({"forks": 10}, {}, {"forks": None}, 10),            # None = flag not given
    ({"forks": ""}, {}, {}, 50),  # "" in the config mapping = invoke's "not set" default
])
def test_precedence_defaults_config_env_flag(config, env, flags, expected):
    assert RunOptions.from_sources(flags, config=config, env=env).forks == expected


def test_config_timeouts_are_defaults_below_the_inventory_flags_override_it():
    o = RunOptions.from_sources({"command_timeout": "5"}, config={"connect_timeout": 3, "command_timeout": 7})
    assert (o.default_connect_timeout, o.default_command_timeout) == (3.0, 7.0)
    assert (o.connect_timeout, o.command_timeout) == (None, 5.0)


def test_values_are_converted():
    o = RunOptions.from_sources({"forks": "7", "deadline": "2.5", "host_key_policy": " Accept-New ",
                                 "executor": "DASK", "verbose": 2, "check": True})
    assert (o.forks, o.deadline, o.host_key_policy, o.executor, o.verbose, o.check) == \
        (7, 2.5, "accept-new", "dask", 2, True)
    with pytest.raises(UsageError, match=r"^--host-key-policy is empty \(an unset variable\?\): give strict, "
                                         r"accept-new or off"):
        RunOptions(host_key_policy="")  # typed empty: a mistake, not "use the default"


def test_report_path_missing_folders_are_fine_a_file_in_the_way_is_not(tmp_path):
    ok = RunOptions(report_json=str(tmp_path / "a" / "b" / "r.json"), junit=str(tmp_path / "j.xml"))
    assert ok.report_json == str(tmp_path / "a" / "b" / "r.json")
    assert not (tmp_path / "a").exists()  # checking writes nothing; folders come with the report
    with pytest.raises(UsageError, match="it is a folder"):
        RunOptions(junit=str(tmp_path))


BAD = [
    ("forks", "abc", "--forks must be a number, not 'abc' (wrong type)"),
    ("forks", "0", "--forks must be at least 1, not 0"),
    ("forks", "2.5", "--forks must be a whole number"),
    ("forks", True, "--forks must be a number"),
    ("processes", -1, "--processes must be at least 0"),
    ("retries", "-1", "--retries must be at least 0"),
    ("verbose", -1, "--verbose must be at least 0"),
    ("connect_timeout", "-1", "--connect-timeout must be at least 0.1 seconds, not -1"),
    ("connect_timeout", "0", "--connect-timeout must be at least 0.1 seconds"),
    ("command_timeout", "0.05", "--command-timeout must be at least 0.1 seconds"),
    ("command_timeout", "soon", "--command-timeout must be a number"),
    ("deadline", "-1", "--deadline must be at least 0 seconds"),
    ("deadline", "nan", "--deadline must be a number"),
    ("serial", "x", "--serial 'x': give a host count ≥ 1"),
    ("serial", "0", "--serial '0'"),
    ("serial", "1,0%", "--serial '0%'"),
    ("serial", "1,,2", "--serial ''"),
    ("max_fail", "200%", "--max-fail '200%': give a count ≥ 0"),
    ("max_fail", "-1", "--max-fail '-1'"),
    ("max_fail", "few", "--max-fail 'few'"),
    ("host_key_policy", "maybe", "--host-key-policy must be strict, accept-new or off, not 'maybe'"),
    ("executor", "foo", "--executor must be local or dask, not 'foo'"),
    ("limit", "", "--limit is empty"),
    ("limit", " , ", "--limit is empty"),
    ("report_json", "/", "--report-json: cannot write a report to /: it is a folder"),
    ("junit", "/", "--junit: cannot write a report to /: it is a folder"),
    ("check", "perhaps", "--check must be true or false"),
]


@pytest.mark.parametrize("name, value, needle", BAD, ids=[f"{n}={v!r}" for n, v, _ in BAD])
def test_every_bad_value_is_one_paragraph_naming_the_flag(name, value, needle):
    with pytest.raises(UsageError) as e:
        RunOptions.from_sources({name: value})
    msg = str(e.value)
    assert needle in msg
    assert "\n" not in msg and option(name).flag in msg


def test_quiet_and_verbose_exclude_each_other():
    with pytest.raises(UsageError, match="exclude each other"):
        RunOptions(quiet=True, verbose=1)


def test_a_bad_config_or_env_value_names_the_key_or_variable():
    with pytest.raises(UsageError) as e:
        RunOptions.from_sources(config={"forks": "abc"})
    assert str(e.value).startswith("forks must be a number, not 'abc'") and "concurdeploy.yaml" in str(e.value)
    with pytest.raises(UsageError, match="^CONCURDEPLOY_DEADLINE must be at least 0 seconds"):
        RunOptions.from_sources(env={"CONCURDEPLOY_DEADLINE": "-3"})
    with pytest.raises(UsageError, match="^executor must be local or dask"):
        RunOptions.from_sources(config={"executor": "ray"})


def test_unknown_option_names_are_refused():
    with pytest.raises(UsageError, match="unknown option 'forcks'"):
        RunOptions.from_sources({"forcks": 3})
    with pytest.raises(UsageError, match="unknown option 'forcks'"):
        RunOptions().with_flags(forcks=3)


def test_with_flags_replaces_and_checks_again():
    o = RunOptions(forks=3).with_flags(limit="web*", forks=None)
    assert (o.forks, o.limit) == (3, "web*")
    with pytest.raises(UsageError, match="--forks must be at least 1"):
        o.with_flags(forks=0)


def test_per_task_values():
    assert check_value("timeout", "2") == 2.0 and check_value("mode", "0640") == "0640"
    with pytest.raises(UsageError, match="--timeout must be at least 0.1 seconds"):
        check_value("timeout", "0")
    with pytest.raises(UsageError, match="--mode '999'"):
        check_value("mode", "999")


# -- through the CLI: exit code 2, one paragraph on stderr, no traceback ---------------------------

CLI_BAD = [["--forks", "abc"], ["--forks", "0"], ["--serial", "x"], ["--max-fail", "200%"],
           ["--connect-timeout", "-1"], ["--host-key-policy", "maybe"], ["--executor", "foo"],
           ["--report-json", "/"], ["-q", "-v"], ["--limit", ""], ["--bogus"]]


@pytest.mark.parametrize("args", CLI_BAD, ids=[" ".join(a) for a in CLI_BAD])
@pytest.mark.parametrize("where", ["after", "before"])
def test_cli_exit_2_for_every_bad_flag_value(args, where, tmp_path, monkeypatch, capsys):
    from concurdeploy.cli.program import program

    monkeypatch.chdir(tmp_path)  # no tasks.py, no inventory: nothing could be touched
    argv = ["concurdeploy", "push", "web", *args] if where == "after" else ["concurdeploy", *args, "push", "web"]
    with pytest.raises(SystemExit) as e:
        program.run(argv)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2, err
    assert err and "\n" not in err and "Traceback" not in err
    assert args[0] in err or args[0] == "-q"


@pytest.mark.parametrize("value", ["", 0, 1, 2, "maybe"])
def test_a_switch_is_a_bool_never_an_empty_string_or_a_number(value):
    """``push(check=os.environ.get("DRY_RUN", ""))`` must not silently push for real."""
    with pytest.raises(UsageError, match="--check must be true or false"):
        RunOptions(check=value)
