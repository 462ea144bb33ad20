"""The inventory corpus of the differential test: generated cases plus hand-written ones.

Every name is a ``.example`` host or a 127.0.0.x address and nothing ever connects to them
(``--list`` reads files and runs local inventory scripts only). Nothing is random: the
corpus is the same on every run.

- :mod:`.corpus_structure`: nesting depth 1–4 and hosts in several groups; precedence ties
  between sibling groups (all definition orders); ``ansible_group_priority``; hosts and
  groups defined more than once; host ranges (leading zeros, letters, steps, two ranges in
  one name); empty groups, ``hosts:``/``children:`` null, children defined later, in another
  file or nowhere; unicode names. Mostly written both as YAML and as INI.
- :mod:`.corpus_values`: vars of every YAML type and INI's literal values; connection vars
  and their ``ansible_ssh_*`` forms; folders with ``group_vars``/``host_vars`` as files or
  folders of files with ``.yml``/``.yaml``/``.json``/no extension; executable inventory
  scripts; and the cases concurdeploy refuses ON PURPOSE (:class:`Refusal`: exit 2 naming
  file and line, where Ansible accepts them with at most a warning).
- Hand-written: the folders of ``tests/differential/corpus/`` (:data:`HANDWRITTEN`), shaped
  like public inventories (web/db/lb, staging/production, group_vars/all.yml, ...).
"""

from __future__ import annotations

from pathlib import Path

from tests.differential.corpus_case import Case, Refusal, line_of, materialise
from tests.differential.corpus_structure import structure_cases
from tests.differential.corpus_values import value_cases

__all__ = ["CORPUS_DIR", "HANDWRITTEN", "Case", "Refusal", "all_cases", "generated_cases",
           "handwritten_cases", "line_of", "materialise"]

#: The hand-written cases: one folder each.
CORPUS_DIR = Path(__file__).resolve().parent / "corpus"


def generated_cases() -> list[Case]:
    """Every generated case, in a fixed order."""
    return structure_cases() + value_cases()


#: Hand-written cases: folder name → (description, executable files).
HANDWRITTEN = {
    "web_db_lb": ("web/db/lb YAML with group_vars/all.yml and host_vars", ()),
    "staging_production": ("production/ layout: INI hosts file, group_vars/all/ folder, host_vars", ()),
    "ini_docs_example": ("Ansible's INI example: southeast/usa children, :vars", ()),
    "yaml_docs_example": ("Ansible's YAML example with www[01:50] ranges", ()),
    "k8s_cluster": ("kubespray-like cluster: control plane, nodes, etcd, k8s_cluster:children", ()),
    "layered_files": ("two YAML files and an INI in one folder, hosts redefined", ()),
    "dynamic_script": ("executable dynamic inventory with _meta (cloud tags as groups)", ("ec2.sh",)),
    "haproxy_services": ("concurdeploy-style services: files and reload per group", ()),
    "debops_like": ("group_vars as folders of files, three levels of children", ()),
    "edge_sites_ranges": ("INI edge sites with letter and number ranges", ()),
    "json_inventory": ("a YAML-format inventory written as hosts.json", ()),
}


def handwritten_cases() -> list[Case]:
    """The cases of :data:`CORPUS_DIR` (each folder is given to ``-i`` as a whole)."""
    return [Case(f"hand_{name}", source=CORPUS_DIR / name, about=about, executable=frozenset(exe))
            for name, (about, exe) in HANDWRITTEN.items()]


def all_cases() -> list[Case]:
    """Generated then hand-written cases. :raises ValueError: two cases share a name."""
    cases = generated_cases() + handwritten_cases()
    names = [c.name for c in cases]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate case names: {sorted({n for n in names if names.count(n) > 1})}")
    return cases
