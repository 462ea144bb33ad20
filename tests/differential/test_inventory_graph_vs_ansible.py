"""``concurdeploy inventory --graph`` must print the same tree as ``ansible-inventory --graph``
on every inventory of the corpus that Ansible reads (the ``--list`` test judges the cases
refused on purpose). Same corpus and runner as ``test_inventory_vs_ansible.py``.

Run: ``timeout 900 python3 -m pytest -q -p no:cacheprovider tests/differential/test_inventory_graph_vs_ansible.py``
"""

from __future__ import annotations

import importlib.util
import shutil

import pytest

from tests.differential.inventory_corpus import all_cases
from tests.differential.inventory_diff import REFERENCE_FAILED, run_corpus

pytestmark = pytest.mark.differential

CASES = all_cases()


@pytest.fixture(scope="module")
def graph_outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Case name → Outcome of the ``--graph`` run of the whole corpus (both tools, once)."""
    if shutil.which("ansible-inventory") is None or importlib.util.find_spec("ansible") is None:
        pytest.skip("ansible-core is not installed (pip install -e '.[test]')")
    outcomes = run_corpus(CASES, tmp_path_factory.mktemp("inventory-graph"), view="--graph")
    return {o.case.name: o for o in outcomes}


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_inventory_graph_agrees_with_ansible(name: str, graph_outcomes: dict) -> None:
    outcome = graph_outcomes[name]
    if outcome.ok or outcome.verdict == REFERENCE_FAILED:  # the --list test fails on the latter
        return
    pytest.fail(f"{name} ({outcome.case.about}) [{outcome.verdict}]\n{outcome.detail}\n"
                f"inventory: {outcome.path}", pytrace=False)


def test_graph_corpus_mostly_compared(graph_outcomes: dict) -> None:
    """Most cases are compared, not passed over (refused on purpose or unreadable by Ansible)."""
    compared = [o for o in graph_outcomes.values() if o.case.refuse is None and o.verdict != REFERENCE_FAILED]
    assert len(compared) >= 0.6 * len(CASES), (len(compared), len(CASES))
