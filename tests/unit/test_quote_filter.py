"""The ``quote`` Jinja2 filter in every templated value (issue #15 point 4): a host var put into
a reload/validate command reaches the shell as one word, never as code."""

from __future__ import annotations

import subprocess

import pytest

from concurdeploy.operations.service import _render
from concurdeploy.operations.templating import environment


@pytest.mark.parametrize("value", ["plain", "a b", "x'; touch pwned; '", "$(touch pwned)", "`id`", "", "-n"])
def test_quote_makes_one_shell_word(value, tmp_path):
    cmd = _render("printf '%s|' {{ v | quote }}", {"v": value}, "reload")
    out = subprocess.run(["/bin/sh", "-c", cmd], cwd=tmp_path, capture_output=True, text=True, timeout=10)
    assert out.stdout == value + "|"
    assert not (tmp_path / "pwned").exists()


def test_quote_in_templates_too(tmp_path):
    (tmp_path / "t.j2").write_text("ExecStart=/bin/app {{ arg | quote }}\n")
    import jinja2

    env = environment(jinja2.FileSystemLoader(str(tmp_path)))
    assert env.get_template("t.j2").render(arg="a b") == "ExecStart=/bin/app 'a b'\n"
