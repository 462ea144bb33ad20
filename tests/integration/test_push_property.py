"""Property test (issue #13): random destination names, contents, modes and owners pushed to a real
OpenSSH sshd on loopback; the host's file is checked byte for byte, with its mode and owner, and
nothing else is left in its directory but the backup of the file it replaced.

Bounded: ``max_examples=25`` (one ``concurdeploy push`` each, ~1 s), no deadline.
"""

from __future__ import annotations

import os
import shutil
import stat

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from concurdeploy.operations.paths import dest_problem

from .conftest import statuses

pytestmark = pytest.mark.integration

#: Letters of several scripts, and the characters that break naive quoting.
ODD = " '\"\\$()`;&|*?[]{}<>!#~%^=+,-_@"
NAME = st.text(alphabet=st.one_of(st.characters(categories=("Lu", "Ll", "Lo", "Nd")), st.sampled_from(ODD)),
               min_size=1, max_size=40).filter(lambda n: n not in (".", "..") and len(n.encode()) <= 120)
MODES = st.one_of(st.sampled_from([0o600, 0o640, 0o644, 0o400, 0o755, 0o750, 0o2755, 0o1777]),
                  st.integers(0o400, 0o777))


@pytest.mark.timeout(600)  # 25 pushes; in the parallel part of CI (-n 4), beside other tests
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
          derandomize=True, database=None)
@given(name=NAME, content=st.binary(max_size=4096), mode=MODES, declare=st.booleans(),
       existing=st.one_of(st.none(), st.tuples(st.binary(max_size=64), MODES,
                                               st.integers(1000, 60000), st.integers(1000, 60000))))
def test_random_names_contents_modes_owners_written_exactly(fleet_once, name, content, mode, declare, existing):
    f = fleet_once
    d = f.root("h1") / "etc" / "haproxy"
    shutil.rmtree(d)
    d.mkdir()
    dest = d / name
    assert dest_problem(str(dest)) is None, dest
    (f.project / "files" / "payload.bin").write_bytes(content)
    entry = {"src": "files/payload.bin", "dest": str(dest), "template": False}
    if declare:
        entry["mode"] = f"{mode:04o}"
    owner = (os.getuid(), os.getgid())
    if existing is not None:
        old, old_mode, uid, gid = existing
        dest.write_bytes(old)
        if os.geteuid() == 0:
            os.chown(dest, uid, gid)
            owner = (uid, gid)
        os.chmod(dest, old_mode)
    f.write_inventory(files=[entry], reload=None)
    res = f.run("push", "haproxy")
    assert res.returncode == 0, res.stdout + res.stderr
    expected_mode = mode if declare else (existing[1] if existing is not None else 0o644)
    unchanged = existing is not None and existing[0] == content and (not declare or existing[1] == mode)
    assert statuses(res.stdout) == {"h1": "ok" if unchanged else "changed"}
    assert dest.read_bytes() == content
    got = os.stat(dest)
    assert (stat.S_IMODE(got.st_mode), got.st_uid, got.st_gid) == (expected_mode, *owner)
    # the run's lock file (operations.facts.LOCK_NAME, 0600, empty) stays, as in every pushed folder
    lock = d / ".concurdeploy.lock"
    assert lock.is_file() and lock.stat().st_size == 0 and lock.stat().st_mode & 0o777 == 0o600
    rest = sorted(p.name for p in d.iterdir() if p.name not in (name, lock.name))
    if existing is None or unchanged:
        assert rest == []
    else:  # only the backup of the replaced file, holding its old bytes
        assert len(rest) == 1 and rest[0].startswith(name + ".concurdeploy-") and rest[0].endswith(".bak"), rest
        assert (d / rest[0]).read_bytes() == existing[0]


@pytest.fixture
def fleet_once(fleet):
    """One sshd host for every example (the test clears its directory per example)."""
    return fleet(1)
