"""Familiar flags (issue #17): -e/--extra-vars, -u/--user, --private-key, -b/--become,
-K/--ask-become-pass, -H/--hosts: parsing, precedence and refusals (nothing contacted).
The same flags against real sshd: tests/integration/test_flags.py."""

from __future__ import annotations

import pytest

from concurdeploy.exceptions import UsageError
from concurdeploy.inventory import load
from concurdeploy.inventory.overrides import adhoc_inventory, command_line_vars, extra_vars, parse_targets
from concurdeploy.options import RunOptions

from . import test_cli_edge
from .test_cli_edge import refused, run

project = test_cli_edge.project  # the same fixture: a sandbox project as the working directory


def test_targets_parse_user_host_port_and_name_each_host():
    assert parse_targets("deploy@10.0.0.5:2222,web1.example,[::1]:2200") == [
        ("10.0.0.5", {"host": "10.0.0.5", "port": 2222, "user": "deploy"}),
        ("web1.example", {"host": "web1.example", "port": 22}),
        ("::1", {"host": "::1", "port": 2200}),
    ]
    # one address with several ports (sshd per port on loopback): address-port names
    assert [n for n, _ in parse_targets("127.0.0.1:2201,u@127.0.0.1:2202")] == ["127.0.0.1-2201", "127.0.0.1-2202"]


@pytest.mark.parametrize("spec, needle", [
    ("", "is empty"), (" , ", "is empty"), ("a b", "give [user@]host[:port]"), ("h:0", "not in 1-65535"),
    ("h:70000", "not in 1-65535"), ("h:22,h", "the same host twice"), ("@h", "give [user@]host"),
    ("h,,i", "give [user@]host"),
])
def test_bad_targets_are_refused(spec, needle):
    with pytest.raises(UsageError, match=r".*" + needle.replace("[", r"\[").replace("]", r"\]")):
        parse_targets(spec)


def test_adhoc_inventory_is_checked_as_a_file_and_selected_with_all():
    inv = adhoc_inventory("deploy@127.0.0.1:2201,127.0.0.1:2202")
    hosts = inv.select("all")
    assert [h.name for h in hosts] == ["127.0.0.1-2201", "127.0.0.1-2202"]
    assert hosts[0].vars["user"] == "deploy" and hosts[0].vars["port"] == 2201 and "user" not in hosts[1].vars
    assert "known_hosts" not in hosts[0].vars and "host_key_policy" not in hosts[0].vars  # defaults: strict


def test_extra_vars_items_later_wins(tmp_path):
    f = tmp_path / "vars.yaml"
    f.write_text("a: 1\nb: [x, y]\n")
    assert extra_vars(["a=one=1", f"@{f}", "c=", '{"d": 4}', {"e": True}, "a=last"]) == {
        "a": "last", "b": ["x", "y"], "c": "", "d": 4, "e": True}
    (tmp_path / "rel.yaml").write_text("r: 1\n")
    assert extra_vars(["@rel.yaml"], cwd=str(tmp_path)) == {"r": 1}  # from the project root


@pytest.mark.parametrize("item, needle", [
    ("novalue", "give KEY=VALUE"), ("1x=2", "is not a var name"), ("@/nonexistent.yaml", "cannot read"),
    ("{a: [", "not a YAML/JSON mapping"), ("[1, 2]", "give KEY=VALUE"),
])
def test_bad_extra_vars_are_refused(item, needle):
    with pytest.raises(UsageError, match=needle):
        extra_vars([item])


def test_extra_vars_file_must_hold_a_mapping(tmp_path):
    (tmp_path / "l.yaml").write_text("- a\n")
    with pytest.raises(UsageError, match="must hold a mapping"):
        extra_vars([f"@{tmp_path / 'l.yaml'}"])


def _inv(tmp_path):
    (tmp_path / "i.yaml").write_text(
        "all:\n  vars: {user: groupuser, key_env: KEYVAR}\n  hosts:\n"
        "    h1: {ansible_user: hostuser, root: /host, ansible_port: 2201}\n    h2: {}\n")
    (tmp_path / "key").write_text("not really a key\n")
    return load(str(tmp_path / "i.yaml")).select("all")


def test_extra_vars_beat_every_inventory_layer_and_flags_beat_extra_vars(tmp_path):
    hosts = command_line_vars(_inv(tmp_path), extra=["root=/cli", "ansible_port=2222", "ansible_user=evar"])
    h1 = hosts[0]
    assert (h1.vars["root"], h1.vars["port"], h1.vars["user"]) == ("/cli", 2222, "evar")
    assert h1.origins["port"] == "-e/--extra-vars" and "ansible_user" not in h1.raw_vars
    hosts = command_line_vars(_inv(tmp_path), extra=["user=evar"], user="flaguser",
                              private_key=str(tmp_path / "key"), become=True)
    for h in hosts:
        assert h.vars["user"] == "flaguser" and h.origins["user"] == "-u/--user"
        assert h.vars["key_file"] == str(tmp_path / "key") and "key_env" not in h.vars
        assert h.vars["become"] is True


@pytest.mark.parametrize("extra, needle", [
    (["ansible_password=hunter2"], "plain text"), (["port=abc"], "port"),
    (["become_password=x"], "plain text"),
])
def test_extra_vars_are_checked_as_inventory_vars(tmp_path, extra, needle):
    with pytest.raises(UsageError, match=needle) as ei:
        command_line_vars(_inv(tmp_path), extra=extra)
    assert "hunter2" not in str(ei.value)


def test_private_key_that_does_not_exist_is_refused(tmp_path):
    with pytest.raises(UsageError, match="--private-key .*no such file"):
        command_line_vars(_inv(tmp_path), private_key=str(tmp_path / "nope"))


def test_hosts_and_an_inventory_flag_exclude_each_other():
    with pytest.raises(UsageError, match="-H/--hosts and -i/--inventory"):
        RunOptions.from_sources({"hosts": "127.0.0.1", "inventory": "inv.yaml"})
    assert RunOptions.from_sources({"hosts": "127.0.0.1"}, config={"inventory": "elsewhere"}).hosts == "127.0.0.1"


@pytest.mark.parametrize("where", ["before", "after"])
@pytest.mark.parametrize("flags, needle", [
    (["-H", "127.0.0.1:1", "-i", "inventories"], "-H/--hosts and -i/--inventory"),
    (["--hosts=h:0"], "not in 1-65535"),
    (["-e", "novalue"], "give KEY=VALUE"),
    (["--extra-vars", "@missing.yaml"], "cannot read"),
    (["--private-key", "/nonexistent/key"], "--private-key /nonexistent/key: no such file"),
    (["-K"], "-K/--ask-become-pass needs a terminal"),
    (["--ask-become-pass", "--sudo"], "become_password_env"),
])
def test_flags_are_taken_before_and_after_the_task_and_refused_with_exit_2(project, capsys, where, flags, needle):
    argv = ["run", "haproxy", "true", *flags] if where == "after" else [*flags, "run", "haproxy", "true"]
    refused(argv, capsys, project, needle)


def test_push_with_adhoc_hosts_is_refused(project, capsys):
    refused(["push", "haproxy", "-H", "127.0.0.1:1"], capsys, project, "-H/--hosts gives hosts only")


@pytest.mark.parametrize("task", ["push", "run", "get", "put"])
def test_each_task_help_shows_the_flags(project, capsys, task):
    code, out, _ = run([task, "--help"], capsys)
    assert code == 0
    for flag in ("-e KEY=VALUE, --extra-vars=KEY=VALUE", "-u USER, --user=USER", "--private-key=PATH"):
        assert flag in out, (flag, out)
    # push refuses -H (a service's files come from an inventory): its help must not offer it
    assert ("-H TARGETS, --hosts=TARGETS" in out) is (task != "push"), out
    assert ("--hosts" in out) is (task != "push"), out
    for flag in ("-b, --become", "-K, --ask-become-pass"):  # get never runs through sudo: it has neither
        assert (flag in out) is (task != "get"), (flag, out)


def test_a_typed_sudo_password_rides_in_the_sudo_jobs_only_and_is_never_shown():
    from concurdeploy.operations.become import Become, with_password, wrap
    from concurdeploy.operations.commands import RunJob

    jobs = [RunJob("id", become=Become()), RunJob("id"), "not a job"]
    out = with_password(jobs, "s3cret-pw")
    assert out[0].become.password == "s3cret-pw" and "s3cret-pw" in out[0].secrets
    assert out[1:] == jobs[1:]
    assert "s3cret-pw" not in repr(out[0]) and "s3cret-pw" not in repr(out[0].become)
    script, stdin = wrap("id", out[0].become)
    # on stdin (first line, then the framed script), never on a command line
    assert "s3cret-pw" not in script and stdin.startswith(b"s3cret-pw\n") and stdin.count(b"s3cret-pw") == 1
    assert with_password(jobs, None) is jobs
    with pytest.raises(UsageError, match="would go unused"):
        with_password([RunJob("id")], "pw")
    with pytest.raises(UsageError, match="local executor, not dask"):
        with_password(jobs, "pw", "dask")


def test_init_help_shows_dir_as_optional(project, capsys):
    code, out, err = run(["init", "--help"], capsys)
    assert code == 0, err
    assert out.splitlines()[0] == "Usage: concurdeploy init [DIR] [options]", out
    code, out, err = run(["push", "--help"], capsys)  # a required one stays bare
    assert code == 0 and out.splitlines()[0] == "Usage: concurdeploy push SERVICE [options]", out


@pytest.mark.parametrize("flags, needles", [
    (["-i", "/dev/zero"], ("inventory /dev/zero is a character device", "not an inventory file")),
    (["--private-key", "/dev/zero"], ("--private-key /dev/zero: a character device, not a private key file",)),
    (["--private-key", "."], ("a folder, not a private key file",)),
])
def test_a_path_that_is_not_a_file_is_named_for_what_it_is(project, capsys, flags, needles):
    msg = refused(["run", "haproxy", "true", *flags], capsys, project, *needles)
    assert "not found" not in msg and "no such file" not in msg, msg


def test_kind_of_names_what_a_path_is(tmp_path):
    import os
    import socket

    from concurdeploy.inventory.pathkind import kind_of

    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(tmp_path / "sock"))
        assert kind_of(str(tmp_path / "sock")) == "a socket"
    assert kind_of("/dev/zero") == "a character device"
    assert kind_of(str(tmp_path / "fifo")) == "a named pipe (FIFO)"
    assert kind_of(str(tmp_path)) == "a folder"
    assert kind_of(str(tmp_path / "dangling")) == "a broken symbolic link"
    assert kind_of(str(tmp_path / "nowhere")) == "missing"
