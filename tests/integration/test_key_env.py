"""``key_env`` naming a variable that is set but empty (a CI secret not passed in: CI systems
often set it to "") is refused before any host is contacted, exit 2, one paragraph naming the
variable, the host and where ``key_env`` was set, as an unset one is (issue #14)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("value, says", [("", "is set but empty"), (" \n", "is set but empty"),
                                         (None, "is not set")])
def test_an_empty_or_unset_key_env_is_refused_before_any_host(fleet, value, says, monkeypatch):
    f = fleet(1)
    f.group_vars = {"key_env": "CD_EMPTY_DEPLOY_KEY"}
    f.write_inventory()
    monkeypatch.delenv("CD_EMPTY_DEPLOY_KEY", raising=False)
    res = f.run("push", "haproxy", env={} if value is None else {"CD_EMPTY_DEPLOY_KEY": value})
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    err = res.stderr.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert f"host h1: key_env CD_EMPTY_DEPLOY_KEY {says} (set in " in err and "hosts.yaml" in err, err
    assert "push haproxy:" not in res.stdout  # the run never started
    assert not f.dest("h1").exists()
