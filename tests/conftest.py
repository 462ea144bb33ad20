"""Shared pytest fixtures for concurdeploy.

Fixtures (see ``tests/sshd.py`` for the classes):

* ``fake_home`` (autouse): ``$HOME`` -> an empty temp dir (with ``~/.ssh``),
  ``SSH_AUTH_SOCK`` and every ``CONCURDEPLOY_*`` variable unset, so no test
  reads the real ``~/.ssh``, an agent, or the developer's settings.
* ``client_keys`` (session): :class:`tests.sshd.ClientKeys`.
* ``sshd_factory``: ``make(n_hosts=1, ports_per_server=1, extra_config="")
  -> list[OpenSSHServer]``, every server started and stopped (by PID) at
  teardown.
* ``known_hosts_file``: ``write(servers, path=None) -> str`` path of a
  known_hosts file for OpenSSH and/or mockssh servers.
* ``mock_ssh_server``: a running ``mockssh.Server`` with user
  ``"sample-user"`` authorised by ``client_keys.ed25519``.
* ``stalling_server``: a running :class:`tests.sshd.StallingServer`.

OpenSSH missing: the sshd/keys fixtures skip locally, but FAIL when ``$CI``
is set, so CI can never go green by silently skipping the integration tests.

The same holds for every other skip (``skipif``, ``importorskip``, a fixture's
``pytest.skip``): with ``$CI`` non-empty, :func:`pytest_runtest_makereport` and
:func:`pytest_make_collect_report` turn a skip into a failure, because CI installs
every tool the tests need (sshd, ssh-keygen, ssh-agent, sudo, jsonschema, dask)
and runs as root, so a skip there means a broken install. A test whose skip is
expected even on CI says so with ``@pytest.mark.allow_skip("why")`` (a non-empty
reason is required). xfail is not a skip and is left alone. On CI the run also
refuses to start without pytest-timeout (the per-test ``timeout`` in setup.cfg).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# Make ``import tests.sshd`` work whatever the rootdir / import mode.
_REPO_ROOT = str(Path(__file__).resolve().parent.parent)
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from tests import sshd as sshd_helpers  # noqa: E402 (after the sys.path fix above)
from tests.sshd import (  # noqa: E402
    SSHD_INSTALL_HINT,
    ClientKeys,
    OpenSSHServer,
    StallingServer,
    find_ssh_keygen,
    find_sshd,
    mock_ssh_known_hosts,
    write_known_hosts,
)

#: User name mockssh accepts in ``mock_ssh_server``.
MOCK_SSH_USER = "sample-user"

#: ``pytester`` runs a throw-away pytest session, to test the hooks below.
pytest_plugins = ("pytester",)


#: Test files that measure timing, signals or the whole machine's processes and temp files:
#: marked ``serial`` (run apart, after the parallel run: see the README's test command).
SERIAL_FILES = {"test_faults.py", "test_fault_matrix.py", "test_dask.py"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in SERIAL_FILES:
            item.add_marker(pytest.mark.serial)


def pytest_configure(config: pytest.Config) -> None:
    # mockssh 0.9.1 calls Thread.setDaemon(), deprecated since Python 3.10.
    config.addinivalue_line(
        "filterwarnings", r"ignore:setDaemon\(\) is deprecated:DeprecationWarning:mockssh"
    )
    config.addinivalue_line(
        "markers", "allow_skip(reason): this test may be skipped even when $CI is set (reason required)"
    )
    if _on_ci() and not config.pluginmanager.hasplugin("timeout"):
        raise pytest.UsageError(
            "CI is set but pytest-timeout is not installed: every test needs its timeout. "
            "pip install -e '.[test]'"
        )


# --------------------------------------------------------------------------
# on CI a skip is a failure
# --------------------------------------------------------------------------

def _on_ci() -> bool:
    """True when the environment variable ``CI`` is set to a non-empty value."""
    return bool(os.environ.get("CI"))


def _allowed_skip_reason(item: pytest.Item) -> str | None:
    """The reason given by the closest ``allow_skip`` marker of ``item``, or None.

    The reason is the first positional argument or ``reason=``; an empty or missing
    reason does not allow anything.
    """
    marker = item.get_closest_marker("allow_skip")
    if marker is None:
        return None
    reason = marker.args[0] if marker.args else marker.kwargs.get("reason", "")
    return reason.strip() if isinstance(reason, str) and reason.strip() else None


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    """The "Skipped: ..." text of a skipped report (``longrepr`` is (path, line, text))."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def _ci_skip_message(reason: str) -> str:
    return (
        f"skipped on CI (CI={os.environ.get('CI', '')!r}), which counts as a failure: {reason}\n"
        "CI installs every tool the tests need and runs as root, so this skip means a broken "
        "install (see .ci/run). If the skip is expected on CI, mark the test "
        '@pytest.mark.allow_skip("why").'
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """With ``$CI`` set, turn a skipped setup/call/teardown into a failure.

    Left alone: passes, failures, xfail/xpass (``wasxfail``), and tests marked
    ``allow_skip("reason")``.
    """
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not (report.skipped and _on_ci()) or hasattr(report, "wasxfail"):
        return
    if _allowed_skip_reason(item) is not None:
        return
    report.outcome = "failed"
    report.longrepr = _ci_skip_message(_skip_reason(report))


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    """With ``$CI`` set, a whole module skipped at import (``importorskip`` or
    ``pytest.skip(allow_module_level=True)``) is a collection error, not a skip."""
    outcome = yield
    report: pytest.CollectReport = outcome.get_result()
    if report.skipped and _on_ci():
        report.outcome = "failed"
        report.longrepr = _ci_skip_message(_skip_reason(report))


def _openssh_missing(what: str) -> None:
    """Skip (locally) or fail (``$CI`` set) because OpenSSH is not installed."""
    msg = f"{SSHD_INSTALL_HINT} ({what} not found)"
    if _on_ci():
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


# --------------------------------------------------------------------------
# environment isolation
# --------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def fake_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ``$HOME`` at a fresh empty dir (with an empty ``.ssh/``); return it.

    Also unsets ``SSH_AUTH_SOCK`` (no agent) and every ``CONCURDEPLOY_*``
    variable. Processes started by tests (including mockssh's commands, which
    run locally) inherit this environment; a real sshd session does not -- it
    takes HOME from the passwd entry.
    """
    home = tmp_path_factory.mktemp("home")
    (home / ".ssh").mkdir(mode=0o700)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    for name in list(os.environ):
        if name.startswith("CONCURDEPLOY_"):
            monkeypatch.delenv(name, raising=False)
    return home


# --------------------------------------------------------------------------
# keys and servers
# --------------------------------------------------------------------------

@pytest.fixture(scope="session")
def client_keys(tmp_path_factory: pytest.TempPathFactory) -> ClientKeys:
    """Client keys generated once per session with ``ssh-keygen -N ''``."""
    if find_ssh_keygen() is None:
        _openssh_missing("ssh-keygen")
    return sshd_helpers.generate_client_keys(tmp_path_factory.mktemp("client-keys"))


@pytest.fixture
def sshd_factory(
    client_keys: ClientKeys, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., list[OpenSSHServer]]]:
    """Return ``make(n_hosts=1, ports_per_server=1, extra_config="")``.

    ``make`` starts ``n_hosts`` separate sshd processes (so one can be stopped
    alone), each listening on ``ports_per_server`` free loopback ports, and
    returns them started (each ~30 ms). It may be called several times; all
    servers are stopped by PID at teardown, even if the test failed.
    """
    sshd_path = find_sshd()
    if sshd_path is None:
        _openssh_missing("sshd")
    started: list[OpenSSHServer] = []

    def make(n_hosts: int = 1, ports_per_server: int = 1, extra_config: str = "") -> list[OpenSSHServer]:
        servers = []
        for _ in range(n_hosts):
            srv = OpenSSHServer(
                tmp_path_factory.mktemp("sshd"),
                client_keys,
                extra_config=extra_config,
                n_ports=ports_per_server,
                sshd_path=sshd_path,
            )
            started.append(srv)
            srv.start()
            servers.append(srv)
        return servers

    try:
        yield make
    finally:
        for srv in started:
            srv.stop()


@pytest.fixture
def known_hosts_file(tmp_path: Path) -> Callable[..., str]:
    """Return ``write(servers, path=None) -> str``.

    Writes a known_hosts file for OpenSSH and/or mockssh servers (default
    path ``tmp_path/known_hosts``; overwritten on each call) and returns it.
    """

    def write(servers, path: str | Path | None = None) -> str:
        target = Path(path) if path is not None else tmp_path / "known_hosts"
        write_known_hosts(target, servers)
        return str(target)

    return write


@pytest.fixture
def mock_ssh_server(client_keys: ClientKeys):
    """A running ``mockssh.Server`` (paramiko-based, in-process threads).

    One user, ``"sample-user"``, authorised by ``client_keys.ed25519``.
    ``mockssh.Server({uid: path})`` would load every key as RSA, so the user
    is added with ``add_user(..., keytype="ssh-ed25519")``. Commands run
    locally via ``sh -c`` as the test process's user with its environment.
    Its host key is the RSA key shipped in the mockssh package: use
    :func:`tests.sshd.mock_ssh_known_hosts` (or ``known_hosts_file``).
    """
    try:
        import mockssh
    except ImportError:
        msg = "mock-ssh-server is not installed: pip install -e '.[test]'"
        if _on_ci():
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    server = mockssh.Server({})
    server.add_user(MOCK_SSH_USER, client_keys.ed25519, keytype="ssh-ed25519")
    with server:
        yield server


@pytest.fixture
def mock_ssh_known_hosts_path(mock_ssh_server, tmp_path: Path) -> str:
    """Path (str) of a known_hosts file holding ``mock_ssh_server``'s host key."""
    return mock_ssh_known_hosts(mock_ssh_server, tmp_path / "known_hosts_mockssh")


@pytest.fixture
def stalling_server() -> Iterator[StallingServer]:
    """A started :class:`StallingServer` (accepts TCP, never sends); stopped at teardown."""
    server = StallingServer().start()
    try:
        yield server
    finally:
        server.stop()
