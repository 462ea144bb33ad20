"""Input files are read with a size limit (issue #14.4, :mod:`concurdeploy.inputs`): an
endless device or an oversized file is exit 2 at once, one paragraph naming the file and
the limit, no traceback, no host contacted."""

from __future__ import annotations

import time

import pytest

from concurdeploy.inputs import MAX_INPUT_BYTES, InputTooLarge, read_bounded

pytestmark = pytest.mark.integration

#: Seconds a refusal may take (reading 16 MiB plus start-up, on 2 busy cores).
PROMPT = 15


def huge(path):
    """A sparse file one byte over the limit (no disk used)."""
    with open(path, "wb") as f:
        f.truncate(MAX_INPUT_BYTES + 1)
    return path


def test_read_bounded_reads_up_to_the_limit_and_refuses_one_byte_more(tmp_path):
    (tmp_path / "ok").write_bytes(b"x" * 100)
    assert read_bounded(tmp_path / "ok", limit=100) == b"x" * 100
    with pytest.raises(InputTooLarge) as info:
        read_bounded(tmp_path / "ok", limit=99)
    assert str(tmp_path / "ok") in str(info.value) and "MAX_INPUT_BYTES" in str(info.value)
    with pytest.raises(InputTooLarge):
        read_bounded("/dev/zero", limit=1 << 20)


def refused(f, *args, says: str = "16 MiB") -> str:
    t0 = time.monotonic()
    res = f.run("push", "haproxy", *args, timeout=60)
    took = time.monotonic() - t0
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr[-2000:])
    assert "Traceback" not in res.stderr and says in res.stderr, res.stderr
    assert took < PROMPT, took
    assert not f.dest("h1").exists()  # no host contacted
    return res.stderr


def test_limit_at_dev_zero_is_refused_promptly(fleet):
    assert "/dev/zero" in refused(fleet(1), "--limit", "@/dev/zero")


def test_limit_at_an_oversized_file_is_refused(fleet, tmp_path):
    assert "hosts.txt" in refused(fleet(1), "--limit", f"@{huge(tmp_path / 'hosts.txt')}")


def test_retry_failed_with_dev_zero_is_refused(fleet):
    assert "/dev/zero" in refused(fleet(1), "--retry-failed", "/dev/zero")


def test_inventory_dev_zero_is_refused(fleet):
    # not a regular file or folder: refused before it is read (already so on the base commit)
    refused(fleet(1), "-i", "/dev/zero", says="/dev/zero")


def test_an_oversized_inventory_file_is_refused(fleet):
    f = fleet(1)
    big = huge(f.project / "inventories" / "zz-big.yml")
    assert big.name in refused(f, "-i", "inventories")


def test_an_oversized_group_vars_file_is_refused(fleet):
    f = fleet(1)
    (f.project / "inventories" / "group_vars").mkdir()
    huge(f.project / "inventories" / "group_vars" / "haproxy.yml")
    assert "haproxy.yml" in refused(f, "-i", "inventories")


# ---------------------------------------------------------------------------- YAML alias bombs

def alias_bomb(indent: str = "") -> str:
    """YAML lines of mappings ``l0`` … ``l8``, each anchored list repeating the previous one
    ten times: about 550 bytes standing for 10^9 strings."""
    lines = [f'{indent}l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 9):
        lines.append(f"{indent}l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def test_the_bomb_is_small():
    assert len(alias_bomb()) < 1500


def test_an_alias_bomb_in_an_inventory_file_is_refused_promptly(fleet):
    f = fleet(1)
    (f.project / "inventories" / "zz-bomb.yml").write_text("bombers:\n  vars:\n" + alias_bomb("    "))
    err = refused(f, "-i", "inventories", says="MAX_ALIAS_EXPANSION")
    assert "zz-bomb.yml:8:" in err and "MAX_ALIAS_EXPANSION" in err, err  # l5: the first over 10^6


def test_an_alias_bomb_in_a_group_vars_file_is_refused_promptly(fleet):
    f = fleet(1)
    (f.project / "inventories" / "group_vars").mkdir()
    (f.project / "inventories" / "group_vars" / "haproxy.yml").write_text(alias_bomb())
    assert "haproxy.yml" in refused(f, "-i", "inventories", says="alias")


def test_an_alias_bomb_in_an_extra_vars_file_is_refused_promptly(fleet, tmp_path):
    f = fleet(1)
    (tmp_path / "vars.yml").write_text(alias_bomb())
    assert "vars.yml" in refused(f, "-e", f"@{tmp_path / 'vars.yml'}", says="alias")


def test_an_alias_bomb_inline_in_extra_vars_is_refused_promptly(fleet):
    bomb = "{" + ", ".join(ln.strip() for ln in alias_bomb().splitlines()) + "}"
    refused(fleet(1), "-e", bomb, says="alias")


def test_an_alias_bomb_in_the_project_config_is_refused_promptly(fleet):
    f = fleet(1)
    (f.project / "concurdeploy.yaml").write_text("run:\n  env:\n" + alias_bomb("    "))  # invoke's own section
    assert "concurdeploy.yaml:8:" in refused(f, says="MAX_ALIAS_EXPANSION")
