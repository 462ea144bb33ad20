"""Destination paths refused up front (issue #13 point 8) and odd but valid ones accepted."""

from __future__ import annotations

import pytest

from concurdeploy.exceptions import ServiceError
from concurdeploy.inventory import Host
from concurdeploy.operations.paths import dest_problem
from concurdeploy.operations.service import put_job

BAD = ["/etc/a\rb", "/etc/a\nb", "/etc/a\tb", "/etc/a\0b", "/etc/a\x1cb", "/etc/a\x1fb", "/etc/a\x7fb",
       "/etc/a\x85b", "/etc/a\x9bb", "/etc/a\u2028b", "/etc/a\u2029b", "etc/x", "./x", "/etc/../x",
       "/etc/./x", "/etc/", "/", "/etc//x", ""]
GOOD = ["/etc/with space.cfg", "/etc/quote'\"s", "/etc/back\\slash", "/etc/$(id).cfg", "/etc/*",
        "/etc/-dash", "/etc/ünïcödé/配置.cfg", "/etc/..hidden", "/etc/x..y", "/a"]


@pytest.mark.parametrize("dest", BAD)
def test_bad_destinations_named(dest):
    problem = dest_problem(dest)
    assert problem and problem.startswith("dest ")


@pytest.mark.parametrize("dest", GOOD)
def test_odd_destinations_accepted(dest):
    assert dest_problem(dest) is None


@pytest.mark.parametrize("dest", ["/etc/a\rb", "/etc/x/../y", "/etc/d/"])
def test_put_job_refuses_with_a_service_error(tmp_path, dest):
    (tmp_path / "f").write_text("x\n")
    host = Host("h1", {}, ("all",), {}, "inv.yaml:1")
    with pytest.raises(ServiceError) as e:
        put_job(host, str(tmp_path), "f", dest)
    assert e.value.key == "dest" and "dest" in str(e.value)
