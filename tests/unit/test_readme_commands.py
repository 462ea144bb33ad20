"""The README's commands say what they mean (issue #17)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def _commands() -> list[str]:
    """Every ``concurdeploy …`` command of the README: in code blocks (continued lines of a
    YAML ``run: >`` or a list item joined) and in inline code."""
    text = README.read_text()
    out = [m.group(1) for m in re.finditer(r"`(concurdeploy [^`]+)`", text)]
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        lines = block.splitlines()
        for i, ln in enumerate(lines):
            at = ln.find("concurdeploy ")
            if at < 0 or ln.lstrip().startswith("#"):
                continue
            cmd, indent = ln[at:], len(ln) - len(ln.lstrip())
            for nxt in lines[i + 1:]:  # folded continuation lines: deeper indent, not a new item
                if not nxt.strip() or len(nxt) - len(nxt.lstrip()) <= indent or nxt.lstrip().startswith("- "):
                    break
                cmd += " " + nxt.strip()
            out.append(cmd)
    return out


def test_readme_retry_failed_examples_keep_the_canary_flags():
    """A retry of a canary rollout (``--serial 1,100% --max-fail 0``) must not drop them: without,
    the retried hosts would all be changed at once, canary-less."""
    canary = [c for c in _commands() if "--serial" in c and "--report-json" in c]
    retries = [c for c in _commands() if "--retry-failed" in c and not c.startswith("concurdeploy push haproxy"
                                                                                     " --retry-failed REPORT")]
    assert canary and retries
    serial = {w for c in canary for w in _flag_values(c, "--serial")}
    for cmd in retries:
        if "inventories/production.yaml" in cmd:
            assert _flag_values(cmd, "--serial") & serial, cmd
            assert "--max-fail" in cmd, cmd


def _flag_values(cmd: str, flag: str) -> set[str]:
    return set(re.findall(re.escape(flag) + r"[ =](\S+)", cmd))
