"""``concurdeploy.options_from``: a task's Context → RunOptions, with invoke's real config
layers (concurdeploy.yaml < CONCURDEPLOY_* < flags) and no host contacted."""

from __future__ import annotations

import pytest
from invoke import Context

from concurdeploy import options_from
from concurdeploy.cli.config import Config
from concurdeploy.exceptions import UsageError


def _context(project, monkeypatch, **env) -> Context:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    cfg = Config(project_location=str(project))
    cfg.load_project()
    cfg.load_shell_env()
    cfg["project_dir"] = str(project)
    return Context(config=cfg)


def test_config_file_then_env_then_flag(tmp_path, monkeypatch):
    (tmp_path / "concurdeploy.yaml").write_text("forks: 9\ncommand_timeout: 12.5\nexecutor: local\n")
    c = _context(tmp_path, monkeypatch)
    assert options_from(c).forks == 9
    assert options_from(c).default_command_timeout == 12.5 and options_from(c).command_timeout is None
    c = _context(tmp_path, monkeypatch, CONCURDEPLOY_FORKS="7")
    assert options_from(c).forks == 7
    assert options_from(c, forks="3").forks == 3
    assert options_from(c, forks=None).forks == 7
    o = options_from(c)
    assert o.console and o.project_dir == str(tmp_path) and o.inventory == "inventories"


def test_defaults_without_any_file(tmp_path, monkeypatch):
    o = options_from(_context(tmp_path, monkeypatch))
    assert (o.forks, o.default_connect_timeout, o.default_command_timeout, o.host_key_policy) == (50, 10.0, 60.0, None)


def test_a_bad_config_value_is_a_usage_error_naming_the_key(tmp_path, monkeypatch):
    (tmp_path / "concurdeploy.yaml").write_text("forks: 3\nhost_key_policy: maybe\n")
    with pytest.raises(UsageError, match=r"concurdeploy.yaml:2: host_key_policy must be strict, accept-new or off"):
        _context(tmp_path, monkeypatch)  # checked as the file is read, with its line
