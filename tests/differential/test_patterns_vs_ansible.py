"""Host patterns, differential: concurdeploy's ``select`` against ansible-core's own code.

For each corpus inventory (``pattern_corpus.INVENTORIES``, written to a temp dir) and each
generated pattern (``pattern_corpus.generate``: names, globs, ``~regex``, subscripts and
random ``:``/``,``/``&``/``!`` combinations), the host names we select, in order, are
compared with ``InventoryManager.list_hosts(pattern)`` run by ansible-core in ONE
subprocess per inventory (``pattern_corpus.py`` as a script). A sample is cross-checked
with the ``ansible -i INV PATTERN --list-hosts`` command itself.

Each pattern lands in one bucket:

- ``exact``: the same hosts in the same order;
- ``order``: Ansible's answer depends on its set iteration order (groups two or more levels
  down under different parents, see concurdeploy.inventory.patterns): it differs from run
  to run in order, and with a subscript in the hosts picked. Ours differs from this run's
  but equals, in one of the buckets here, the reference's run that visits groups in
  declaration order (``pattern_corpus`` docstring), one of the answers Ansible gives;
- ``both_refuse``: we raise, Ansible selects no host or raises;
- ``stricter``: we raise ``NoHostsMatched`` where Ansible selects hosts after ignoring a
  term: one it warned "Could not match supplied host pattern" about, or an empty slice.
  Refusing is our rule ("never silently wrong"), not a disagreement about semantics.

Anything else fails the test. Agreement = exact + order + both_refuse, printed per
inventory and in total (run with ``-s`` to see it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from concurdeploy.exceptions import InventoryError, NoHostsMatched
from concurdeploy.inventory import load, select
from tests.differential import pattern_corpus as corpus

ANSIBLE = shutil.which("ansible")
pytest.importorskip("ansible", reason="ansible-core (the test extra) is the reference")

CORPUS_SCRIPT = Path(corpus.__file__)
NO_MATCH_WARNING = "Could not match supplied host pattern"


def reference_env(tmp: Path) -> dict:
    """Environment for the reference: its own HOME, no user config, parse errors fatal."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(HOME=str(tmp), ANSIBLE_CONFIG=str(tmp / "none.cfg"),
               ANSIBLE_INVENTORY_UNPARSED_FAILED="True", ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-tmp"), ANSIBLE_HOST_PATTERN_MISMATCH="warning")
    return env


def run_reference(path: Path, patterns: list[str], tmp: Path) -> dict:
    """One subprocess: ansible-core's InventoryManager answers every pattern (corpus docstring)."""
    proc = subprocess.run([sys.executable, str(CORPUS_SCRIPT)], cwd=tmp, env=reference_env(tmp),
                          input=json.dumps({"inventory": str(path), "patterns": patterns}),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def ours(inventory, pattern: str):
    """Our answer: host names, or the exception raised."""
    try:
        return [host.name for host in select(inventory, pattern)]
    except InventoryError as exc:
        return exc


def classify(mine, real, warnings: list[str]) -> str:
    """Return the bucket of one pattern (module docstring) given Ansible's answer, or
    ``"DISAGREE"``."""
    if isinstance(mine, list):
        return "exact" if mine == real else "DISAGREE"
    if not isinstance(real, list) or not real:
        return "both_refuse"
    if isinstance(mine, NoHostsMatched):
        if any(w.startswith(NO_MATCH_WARNING) for w in warnings):
            return "stricter"
        if "the subscript selects no host" in str(mine):
            return "stricter"
    return "DISAGREE"


def write_inventory(tmp: Path, name: str) -> Path:
    text = corpus.INVENTORIES[name]
    path = tmp / f"{name}.yml"
    path.write_text(text, encoding="utf-8")
    return path


def compare(name: str, tmp: Path) -> tuple[dict, list[str]]:
    """Run the corpus of one inventory on both sides: (bucket counts, disagreement lines)."""
    path = write_inventory(tmp, name)
    patterns = corpus.generate(name)
    answer = run_reference(path, patterns, tmp)
    inventory = load(path)
    counts = {"exact": 0, "order": 0, "both_refuse": 0, "stricter": 0, "DISAGREE": 0}
    problems = []
    for pattern in patterns:
        mine = ours(inventory, pattern)
        real, declared = answer["real"][pattern], answer["declared_order"][pattern]
        warnings = answer["warnings"][pattern]
        bucket = classify(mine, real, warnings)
        if bucket == "DISAGREE" and declared != real and classify(mine, declared, warnings) != "DISAGREE":
            bucket = "order"
        counts[bucket] += 1
        if bucket == "DISAGREE":
            problems.append(f"{name}: {pattern!r}: ours {mine!r}, ansible {real!r}"
                            f" (declaration order {declared!r}, warnings {answer['warnings'][pattern]})")
    return counts, problems


@pytest.mark.parametrize("name", sorted(corpus.INVENTORIES))
def test_patterns_agree_with_ansible(name, tmp_path):
    counts, problems = compare(name, tmp_path)
    total = sum(counts.values())
    agree = counts["exact"] + counts["order"] + counts["both_refuse"]
    print(f"\n[patterns vs ansible] {name}: {agree} of {total} agree ({counts['exact']} exact, "
          f"{counts['order']} as Ansible in declaration order, its order varying between runs, "
          f"{counts['both_refuse']} both refuse); {counts['stricter']} refused on purpose where "
          f"Ansible ignores a term matching nothing")
    assert not problems, "\n".join(problems[:40])
    assert total >= 150
    assert counts["order"] <= total // 10  # the order caveat must stay the exception


def test_corpus_is_wide_enough():
    sizes = {name: len(corpus.generate(name)) for name in corpus.INVENTORIES}
    assert sum(sizes.values()) >= 450 and min(sizes.values()) >= 150, sizes
    fleet = corpus.generate("fleet")
    for form in (r"\[\d+\]$", r"\[-\d+\]$", r"\[\d+:\d+\]$", r"\[\d+:\]$", r"^~", r",", r":",
                 r"[:,]\s*&", r"[:,]\s*!", r"\*", r"\?", r"\[!"):
        assert any(re.search(form, p) for p in fleet), form


def test_deliberate_divergences(tmp_path):
    """Where we refuse on purpose, Ansible really selects hosts (so the docs stay true)."""
    by_inventory: dict[str, list] = {}
    for name, pattern, why in corpus.DIVERGENCES:
        by_inventory.setdefault(name, []).append((pattern, why))
    for name, cases in by_inventory.items():
        path = write_inventory(tmp_path, name)
        answer = run_reference(path, [pattern for pattern, _ in cases], tmp_path)
        inventory = load(path)
        for pattern, why in cases:
            real = answer["real"][pattern]
            assert isinstance(real, list) and real, (pattern, why, real)
            mine = ours(inventory, pattern)
            assert isinstance(mine, InventoryError), (pattern, why, mine)
    print(f"\n[patterns vs ansible] {len(corpus.DIVERGENCES)} deliberate refusals, each "
          "checked: Ansible selects hosts there")


CLI_SAMPLE = ["web_eu:&prod", "lb[1:]", "~db-\\d", "db[-1],haproxy[0]", "prod:!canary",
              "web_eu[0:1]", "canary", "eu:&~(web|db)"]


@pytest.mark.skipif(ANSIBLE is None, reason="the ansible command (ansible-core) is the reference")
def test_cross_check_with_the_ansible_command(tmp_path):
    """The in-process reference gives what ``ansible PATTERN --list-hosts`` prints."""
    path = write_inventory(tmp_path, "fleet")
    inventory = load(path)
    answer = run_reference(path, CLI_SAMPLE, tmp_path)
    for pattern in CLI_SAMPLE:
        proc = subprocess.run([ANSIBLE, "-i", str(path), pattern, "--list-hosts"], cwd=tmp_path,
                              env=reference_env(tmp_path), capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr
        listed = [line.strip() for line in proc.stdout.splitlines()[1:] if line.strip()]
        assert proc.stdout.lstrip().startswith(f"hosts ({len(listed)}):"), proc.stdout
        assert listed == answer["real"][pattern], pattern
        assert ours(inventory, pattern) == listed, pattern
