"""``concurdeploy inventory --list`` must equal ``ansible-inventory --list`` on every inventory
of the corpus (issue #12, "How to test"), except the cases refused on purpose, which must
exit 2 naming file and line.

The corpus (:mod:`tests.differential.inventory_corpus`) and the comparison rules
(:mod:`tests.differential.inventory_diff`: exact JSON, list order compared, ``_meta.profile``
dropped) are documented there. Both tools run once per session for the whole corpus (the
``inventory_outcomes`` fixture); each case is its own test, so a failure names its case and
shows the differences. The figure is printed at the end of the run and published in the
README ("Inventory", "Compared with Ansible").

Run: ``timeout 900 python3 -m pytest -q -p no:cacheprovider tests/differential/test_inventory_vs_ansible.py``
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.differential import inventory_diff
from tests.differential.corpus_case import Case, Refusal, materialise
from tests.differential.inventory_corpus import all_cases, generated_cases, handwritten_cases
from tests.differential.inventory_diff import Side, check_refusal, differences, normalise

pytestmark = pytest.mark.differential

CASES = all_cases()
README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_inventory_list_agrees_with_ansible(name: str, inventory_outcomes: dict) -> None:
    outcome = inventory_outcomes[name]
    if outcome.ok:
        return
    warnings = outcome.ref.err.strip()
    pytest.fail(f"{name} ({outcome.case.about}) [{outcome.verdict}]\n{outcome.detail}\n"
                f"inventory: {outcome.path}\n"
                + (f"ansible-inventory's stderr:\n{warnings[-800:]}" if warnings else ""), pytrace=False)


def test_summary_figure(inventory_outcomes: dict, capsys: pytest.CaptureFixture) -> None:
    """The figure of this run (printed again in the terminal summary)."""
    line = inventory_diff.summary_line(list(inventory_outcomes.values()))
    with capsys.disabled():
        print("\n" + line)
    assert line.startswith(f"corpus: {len(CASES)} inventories")


# --------------------------------------------------------------------------- the corpus itself

def test_corpus_is_wide_and_well_formed() -> None:
    assert len(CASES) >= 100
    assert len(handwritten_cases()) >= 10
    assert len({c.name for c in CASES}) == len(CASES)
    families = {c.name.split("_")[0] for c in generated_cases()}
    assert {"nest", "tie", "prio", "redef", "range", "unicode", "types", "conn", "gv", "script",
            "refuse"} <= families
    for case in CASES:
        assert case.about, case.name
        assert case.files or (case.source is not None and case.source.is_dir()), case.name
        for rel in case.executable:
            assert rel in case.files or (case.source / rel).is_file(), (case.name, rel)
    assert {c.entry.rsplit(".", 1)[-1] for c in generated_cases() if c.entry != "."} >= {"yml", "ini", "json", "sh"}


def test_corpus_names_nothing_that_could_be_reached() -> None:
    """Hosts are ``.example`` names or 127.0.0.x: a stray connection could reach nothing real."""
    ipv4 = re.compile(r"(?<![\w.])(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})(?![\w.])")
    for case in CASES:
        texts = case.files.values() if case.source is None else [
            p.read_text(encoding="utf-8") for p in sorted(case.source.rglob("*")) if p.is_file()]
        for text in texts:
            for address in ipv4.findall(text):
                assert address.startswith("127."), (case.name, address)


def test_readme_publishes_the_corpus_figure(inventory_outcomes: dict) -> None:
    """README.md ("Inventory", "Compared with Ansible") states this run's figure, word for word."""
    found = re.search(r"corpus: \d+ inventories, agreement: \d+/\d+ \(\d+ refused on purpose\)",
                      README.read_text(encoding="utf-8"))
    assert found, "README.md's Inventory section must publish the differential figure"
    assert found[0] == inventory_diff.summary_line(list(inventory_outcomes.values())), \
        "README.md publishes another figure than this run's: update it (or fix the disagreements)"


# --------------------------------------------------------------------------- the comparison rules

def test_differences_compare_types_strictly_and_lists_in_order() -> None:
    assert differences({"a": 1}, {"a": 1}) == []
    assert differences({"a": 1}, {"a": True})  # bool is not int
    assert differences({"a": 1}, {"a": 1.0})
    assert differences({"a": "1"}, {"a": 1})
    assert differences({"a": None}, {})
    assert "other order" in differences({"hosts": ["b", "a"]}, {"hosts": ["a", "b"]})[0]
    assert differences({"x": {"y": [1, {"z": 2}]}}, {"x": {"y": [1, {"z": 3}]}}) == [
        '["x"]["y"][1]["z"]: ours 2 (int), ansible 3 (int)']


def test_normalise_drops_only_the_encoder_profile() -> None:
    doc = {"_meta": {"hostvars": {"h": {"profile": 1}}, "profile": "inventory_legacy"}, "all": {"children": []}}
    assert normalise(doc) == {"_meta": {"hostvars": {"h": {"profile": 1}}}, "all": {"children": []}}


def test_check_refusal_wants_exit_2_file_and_line() -> None:
    case = Case("c", {"hosts.yml": ""}, refuse=Refusal("hosts.yml", (4,), "why"), about="x")
    assert check_refusal(case, Side(2, "", "concurdeploy: error: /t/c/hosts.yml:4: key 'x': no\n")) == ""
    assert check_refusal(case, Side(2, "", "concurdeploy: error: /t/c/hosts.yml:5: no\n"))
    assert check_refusal(case, Side(0, "{}", ""))
    assert check_refusal(case, Side(2, "", "Traceback (most recent call last):\n hosts.yml:4\n"))


@pytest.mark.parametrize("tool", ["ansible", "concurdeploy"])
def test_fork_driver_matches_the_commands(tool: str, tmp_path: Path) -> None:
    """``fork_driver.py`` prints byte for byte what ``ansible-inventory -i INV --list`` and
    ``python3 -m concurdeploy inventory --list -i INV`` print, with the same exit code."""
    if tool == "ansible" and shutil.which("ansible-inventory") is None:
        pytest.skip("ansible-core is not installed (pip install -e '.[test]')")
    sample = [c for c in CASES if c.name in ("hand_web_db_lb", "types_yaml_unsafe", "range_double_ini",
                                             "refuse_vault_inline")]
    assert len(sample) == 4
    env = inventory_diff.clean_env(tmp_path)
    (tmp_path / "tasks.py").write_text("")
    paths = [materialise(c, tmp_path / "cases") for c in sample]
    driver = inventory_diff.run_tool(tool, paths, tmp_path / "out", tmp_path, env)
    sides = inventory_diff.collect(driver, tmp_path / "out", len(paths))
    for path, side in zip(paths, sides):
        argv = (["ansible-inventory", "-i", str(path), "--list"] if tool == "ansible"
                else [sys.executable, "-m", "concurdeploy", "inventory", "--list", "-i", str(path)])
        direct = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert (side.rc, side.out) == (direct.returncode, direct.stdout), path
