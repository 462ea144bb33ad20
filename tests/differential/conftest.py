"""Fixtures of the differential tests (concurdeploy vs ansible-core as the reference).

* marker ``differential``: registered here (setup.cfg runs pytest with ``--strict-markers``);
  ``-m "not differential"`` leaves these tests out, ``-m differential`` runs only them.
* ``inventory_outcomes`` (session): the whole inventory corpus run through both tools once
  (:func:`tests.differential.inventory_diff.run_corpus`); each test reads its case's outcome.
* the terminal summary prints ``corpus: N inventories, agreement: K/N (R refused on purpose)``
  and one block per failing case, when the inventory corpus ran.
"""

from __future__ import annotations

import importlib.util
import shutil

import pytest

from tests.differential.inventory_corpus import all_cases
from tests.differential.inventory_diff import run_corpus, summary_line

_OUTCOMES = pytest.StashKey[list]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "differential: compares concurdeploy with a reference tool (ansible-core)")


@pytest.fixture(scope="session")
def inventory_outcomes(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Case name → :class:`~tests.differential.inventory_diff.Outcome`, for the whole corpus.

    Skips (a failure on CI, see tests/conftest.py) when ansible-core is not installed.
    """
    if shutil.which("ansible-inventory") is None or importlib.util.find_spec("ansible") is None:
        pytest.skip("ansible-core is not installed (pip install -e '.[test]')")
    outcomes = run_corpus(all_cases(), tmp_path_factory.mktemp("inventory-corpus"))
    request.config.stash[_OUTCOMES] = outcomes
    return {o.case.name: o for o in outcomes}


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    outcomes = config.stash.get(_OUTCOMES, None)
    if not outcomes:
        return
    terminalreporter.section("inventory differential: concurdeploy vs ansible-inventory --list")
    for o in outcomes:
        if not o.ok:
            terminalreporter.write_line(f"{o.case.name} [{o.verdict}] {o.case.about}")
            for line in o.detail.splitlines():
                terminalreporter.write_line(f"    {line}")
    terminalreporter.write_line(summary_line(outcomes))
