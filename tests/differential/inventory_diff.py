"""Run concurdeploy and ansible-core on every inventory of the corpus and compare.

For each :class:`~tests.differential.corpus_case.Case`, both tools run through
``fork_driver.py`` (one process per tool imports it once, one fork per case):

- ours: what ``python3 -m concurdeploy inventory --list -i PATH`` runs, from a project
  folder holding only an empty ``tasks.py`` (no other ``tasks.py`` or ``concurdeploy.yaml``
  is picked up);
- the reference: what ``ansible-inventory -i PATH --list`` runs, ansible-core's defaults.

Both get the same working directory, a fresh ``HOME`` and the caller's environment minus
``CONCURDEPLOY_*``, ``ANSIBLE_*``, ``PYTHON*`` and ``SSH_AUTH_SOCK`` (:func:`clean_env`).

Comparison (:func:`normalise`, :func:`differences`): both stdouts are parsed as JSON and
compared EXACTLY — the same groups, each group's ``hosts`` and ``children`` lists in the
same order, ``_meta.hostvars`` with the same vars, values of the same JSON types (``1``,
``1.0``, ``true`` and ``"1"`` all differ). Object key order is not compared (JSON objects
are unordered; ansible-inventory sorts keys). One normalisation: ``_meta.profile`` is
removed from both sides: ansible-core ≥ 2.19 adds ``"profile": "inventory_legacy"``, the
name of its JSON encoder, which says nothing about the inventory. stderr (Ansible's
warnings) is not compared; it is shown when a case disagrees.

A case with ``refuse`` set must make concurdeploy exit 2 with one paragraph (no traceback)
naming the case's file and one of the expected lines (just the path when the refusal is
about a whole file or folder); Ansible's output is not compared. Any other case Ansible
cannot read ("Unable to parse ... as an inventory source": it then goes on with what it
could read, exit 0) is a corpus bug, reported as "reference failed".
"""

from __future__ import annotations

import difflib
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.differential.corpus_case import Case, materialise

__all__ = ["Outcome", "Side", "check_refusal", "differences", "normalise", "judge_graph", "run_corpus", "run_tool",
           "summary_line"]

REPO = Path(__file__).resolve().parents[2]
FORK_DRIVER = Path(__file__).resolve().parent / "fork_driver.py"
#: Seconds the whole run of one tool may take (each case is also bounded: fork_driver.CASE_TIMEOUT).
RUN_TIMEOUT = 420.0

AGREE, REFUSED, DISAGREE, REFUSAL_MISSING, REFERENCE_FAILED = (
    "agree", "refused on purpose", "disagree", "refusal missing", "reference failed")


@dataclass(frozen=True)
class Side:
    """What one tool did with one inventory: exit code, stdout, stderr."""

    rc: int
    out: str
    err: str

    def json(self):
        """The stdout parsed as JSON. :raises ValueError: it is not JSON."""
        return json.loads(self.out)


@dataclass(frozen=True)
class Outcome:
    """One case's verdict (:data:`AGREE`, :data:`REFUSED`, ...) and, if it failed, why."""

    case: Case
    path: Path
    ours: Side
    ref: Side
    verdict: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        """True for an agreement or a refusal made on purpose."""
        return self.verdict in (AGREE, REFUSED)


def clean_env(home: Path) -> dict:
    """The environment of both tools: the caller's, minus ``CONCURDEPLOY_*``, ``ANSIBLE_*``,
    ``SSH_AUTH_SOCK``, ``PYTHON*`` settings; ``HOME`` = ``home``; this checkout first on
    ``PYTHONPATH``; no colours."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CONCURDEPLOY_", "ANSIBLE_", "PYTHON")) and k != "SSH_AUTH_SOCK"}
    env.update(HOME=str(home), PYTHONPATH=str(REPO), NO_COLOR="1", ANSIBLE_NOCOLOR="1", LC_ALL="C.UTF-8",
               PYTHONIOENCODING="utf-8")
    return env


def _read(path: Path, default: str = "") -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else default


def run_tool(tool: str, paths: list[Path], out_dir: Path, cwd: Path, env: dict) -> subprocess.Popen:
    """Start ``fork_driver.py TOOL`` on ``paths`` (``tool``: ``ansible`` or ``concurdeploy``)."""
    out_dir.mkdir(parents=True)
    return subprocess.Popen([sys.executable, str(FORK_DRIVER), tool, str(out_dir)] + [str(p) for p in paths],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def collect(driver: subprocess.Popen, out_dir: Path, count: int) -> list[Side]:
    """Wait for a :func:`run_tool` driver (at most :data:`RUN_TIMEOUT` s) and read its results.

    :raises RuntimeError: the driver itself failed or timed out.
    """
    try:
        out, err = driver.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        driver.kill()
        driver.communicate()
        raise RuntimeError(f"fork driver {driver.args[2]} ran past {RUN_TIMEOUT} s") from None
    if driver.returncode != 0:
        raise RuntimeError(f"fork driver {driver.args[2]} failed (exit {driver.returncode}): {err or out}")
    return [Side(int(_read(out_dir / f"{i}.rc", "-1")), _read(out_dir / f"{i}.out"), _read(out_dir / f"{i}.err"))
            for i in range(count)]


def run_corpus(cases: list[Case], work: Path, view: str = "--list") -> list[Outcome]:
    """Materialise ``cases`` under ``work``, run both tools, and judge each case.

    :param view: ``--list`` (judged by :func:`judge`) or ``--graph`` (:func:`judge_graph`).

    :param work: an empty folder (``cases/``, ``project/``, ``home/``, ``ours/``,
        ``reference/`` are made in it).
    :returns: one :class:`Outcome` per case, in ``cases`` order.
    :raises RuntimeError: a driver failed or timed out.
    """
    project, home = work / "project", work / "home"
    for folder in (project, home):
        folder.mkdir(parents=True)
    (project / "tasks.py").write_text("# empty: the differential test's project\n")
    paths = [materialise(case, work / "cases") for case in cases]
    env = dict(clean_env(home), FORK_DRIVER_VIEW=view)
    drivers = {}
    try:
        for tool, folder in (("ansible", work / "reference"), ("concurdeploy", work / "ours")):
            drivers[tool] = (run_tool(tool, paths, folder, project, env), folder)
        refs, ours = (collect(driver, folder, len(paths)) for driver, folder in drivers.values())
    finally:
        for driver, _ in drivers.values():
            if driver.poll() is None:
                driver.kill()
                driver.wait()
    verdict = judge_graph if view == "--graph" else judge
    return [verdict(case, path, mine, ref) for case, path, mine, ref in zip(cases, paths, ours, refs)]


def normalise(data):
    """An ``--list`` JSON document with ``_meta.profile`` removed (see the module docstring)."""
    if isinstance(data, dict) and isinstance(data.get("_meta"), dict):
        data = dict(data, _meta={k: v for k, v in data["_meta"].items() if k != "profile"})
    return data


def _show(value) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return (text if len(text) <= 160 else text[:157] + "...") + f" ({type(value).__name__})"


def differences(ours, ref, where: str = "", limit: int = 12) -> list[str]:
    """Every difference between two JSON values, as ``where: ours X, ansible Y`` lines.

    Types are compared strictly (``True`` ≠ ``1`` ≠ ``1.0`` ≠ ``"1"``); lists in order (a list
    with the same items in another order is reported as such); dict keys as sets.
    :param limit: at most this many lines (a last line says how many more there were).
    """
    found: list[str] = []

    def walk(a, b, at: str) -> None:
        if type(a) is not type(b):
            found.append(f"{at or '<top>'}: ours {_show(a)}, ansible {_show(b)}")
        elif isinstance(a, dict):
            for key in sorted(set(a) | set(b), key=str):
                sub = f"{at}[{json.dumps(key, ensure_ascii=False)}]"
                if key not in b:
                    found.append(f"{sub}: only ours: {_show(a[key])}")
                elif key not in a:
                    found.append(f"{sub}: only ansible: {_show(b[key])}")
                else:
                    walk(a[key], b[key], sub)
        elif isinstance(a, list):
            if len(a) == len(b) and sorted(map(json.dumps, a)) == sorted(map(json.dumps, b)) and a != b:
                found.append(f"{at}: same items, other order: ours {_show(a)}, ansible {_show(b)}")
            elif len(a) != len(b):
                found.append(f"{at}: ours {_show(a)}, ansible {_show(b)}")
            else:
                for i, (x, y) in enumerate(zip(a, b)):
                    walk(x, y, f"{at}[{i}]")
        elif a != b:
            found.append(f"{at or '<top>'}: ours {_show(a)}, ansible {_show(b)}")

    walk(ours, ref, where)
    if len(found) > limit:
        found = found[:limit] + [f"... and {len(found) - limit} more"]
    return found


def check_refusal(case: Case, ours: Side) -> str:
    """Why ``ours`` is not the refusal ``case.refuse`` asks for ("" when it is)."""
    want = case.refuse
    if ours.rc != 2:
        return f"expected exit 2 naming {want.file} ({want.why}); got exit {ours.rc}: {ours.err.strip()[:300]}"
    if "Traceback" in ours.err:
        return f"exit 2 but with a traceback: {ours.err.strip()[-300:]}"
    if not want.lines:  # about a whole file or folder: its path is enough
        if want.file not in ours.err:
            return f"exit 2, but the message does not name {want.file}: {ours.err.strip()[:300]}"
        return ""
    lines = {int(n) for n in re.findall(r"(?:^|[/\s])" + re.escape(want.file) + r":(\d+)", ours.err)}
    if not lines & set(want.lines):
        return (f"exit 2, but the message does not name {want.file} at line "
                f"{' or '.join(map(str, want.lines))}: {ours.err.strip()[:300]}")
    return ""


def judge(case: Case, path: Path, ours: Side, ref: Side) -> Outcome:
    """The verdict on one case (see the module docstring)."""
    if case.refuse is not None:
        why = check_refusal(case, ours)
        return Outcome(case, path, ours, ref, REFUSAL_MISSING if why else REFUSED, why)
    if ref.rc != 0 or "Unable to parse" in ref.err:
        return Outcome(case, path, ours, ref, REFERENCE_FAILED,
                       f"ansible-inventory exit {ref.rc}, could not read the case (a corpus bug, or a case to "
                       f"refuse on purpose): {ref.err.strip()[-400:]}")
    try:
        theirs = normalise(ref.json())
    except ValueError:
        return Outcome(case, path, ours, ref, REFERENCE_FAILED, f"ansible-inventory printed no JSON: {ref.out[:200]}")
    if ours.rc != 0:
        return Outcome(case, path, ours, ref, DISAGREE, f"ours exit {ours.rc}: {ours.err.strip()[:400]}")
    try:
        mine = normalise(ours.json())
    except ValueError:
        return Outcome(case, path, ours, ref, DISAGREE, f"our stdout is not JSON: {ours.out.strip()[:200]!r}")
    diff = differences(mine, theirs)
    return Outcome(case, path, ours, ref, DISAGREE if diff else AGREE, "\n".join(diff))


def judge_graph(case: Case, path: Path, ours: Side, ref: Side) -> Outcome:
    """The verdict on one case's ``--graph``: the same text, line for line. Cases refused on
    purpose and cases Ansible cannot read are judged by the ``--list`` run (:func:`judge`)."""
    if case.refuse is not None:
        return Outcome(case, path, ours, ref, REFUSED)
    if ref.rc != 0 or "Unable to parse" in ref.err:
        return Outcome(case, path, ours, ref, REFERENCE_FAILED, f"ansible-inventory exit {ref.rc}")
    if ours.rc != 0:
        return Outcome(case, path, ours, ref, DISAGREE, f"ours exit {ours.rc}: {ours.err.strip()[:400]}")
    mine, theirs = ours.out.rstrip("\n").splitlines(), ref.out.rstrip("\n").splitlines()
    if mine == theirs:
        return Outcome(case, path, ours, ref, AGREE)
    diff = "\n".join(difflib.unified_diff(theirs, mine, "ansible-inventory --graph", "concurdeploy inventory --graph",
                                          lineterm="", n=2))
    return Outcome(case, path, ours, ref, DISAGREE, diff[:3000])


def summary_line(outcomes: list[Outcome]) -> str:
    """``corpus: N inventories, agreement: K/N (R refused on purpose)``; K counts the refusals."""
    n = len(outcomes)
    k = sum(o.ok for o in outcomes)
    r = sum(o.verdict == REFUSED for o in outcomes)
    return f"corpus: {n} inventories, agreement: {k}/{n} ({r} refused on purpose)"
