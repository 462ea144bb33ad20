"""The inventory: Ansible-style YAML inventories loaded into frozen, picklable host records,
and Ansible-style host patterns to select from them.

Use::

    from concurdeploy.inventory import load, where
    inv = load("inventories/prod.yaml")         # a file, or a directory of *.yml/*.yaml
    hosts = inv.select("web:&prod:!web3")         # list[Host], in inventory order
    hosts[0].vars["port"], where(hosts[0].vars, "port")   # a value, and the (file, line) it came from

Variable precedence, lowest first (a later layer replaces a key wholesale, no deep merge):
group ``all`` < parent group < child group (groups ordered by depth from ``all``, then by
``ansible_group_priority``, then by name) < ``group_vars`` files < the host's own vars <
``host_vars`` files; then magic vars (``inventory_hostname``, ``group_names`` …). In one
line: **host > child group > parent group > all**. Written once, in
:func:`model.host_layers` / :func:`model.merge_layers`. ``Host.raw_vars`` keeps the merged
vars as written (``ansible_*`` names), for ``inventory --list`` (:mod:`.listing`).

Modules; imports inside the package flow one way, top to bottom (no cycle, no lazy import)::

    loader    → builder, yaml, script, model
    listing   → model
    script    → yaml, model
    builder   → vars, model
    yaml      → vars, model
    vars      → model
    model     → patterns
    patterns  → (nothing of the package)

- :mod:`.loader`: :func:`load` — which files to read for a path, one reader per file;
- :mod:`.builder`: ``Builder`` — parsed documents → groups, hosts, ``children`` checks → ``Inventory``;
- :mod:`.yaml`: ``read_yaml`` — one YAML file → ``YamlMapping``\\ s that keep ``file:line`` per key;
- :mod:`.script`: ``read`` — an inventory script's ``--list`` output, or a JSON file (Ansible's
  script format or the YAML shape) → the same documents;
- :mod:`.listing`: ``ansible_list``/``dumps`` — an ``Inventory`` as ``ansible-inventory --list`` JSON;
- :mod:`.vars`: connection vars: aliases (``ansible_host`` → ``host``), value checks
  (``CONNECTION_VARS``), refusal of plain-text passwords;
- :mod:`.model`: ``Host``, ``Group``, ``Inventory``, ``YamlMapping``/``where``, the precedence rule;
- :mod:`.patterns`: ``select``/``split_pattern`` — it knows an inventory only by its shape
  (``patterns.Selectable``), so ``model`` imports it and ``Inventory.select`` delegates to it
  without an import cycle.

Future readers (INI, ``group_vars``/``host_vars`` folders, host ranges, dynamic inventory
scripts) sit beside ``yaml``: they produce documents for the ``Builder`` (or add vars
layers to ``model``'s precedence rule) and ``loader`` picks them; a ``--list`` renderer
reads an ``Inventory`` and so imports ``model`` only.

Outside this package only :mod:`concurdeploy.exceptions` is imported (and
:mod:`concurdeploy.records`, should a record be needed); never ssh, operations, executors,
report or cli.

Importers use the names below from ``concurdeploy.inventory``.
"""

from concurdeploy.inventory.loader import load
from concurdeploy.inventory.model import Group, Host, Inventory, Unsafe, YamlMapping, where
from concurdeploy.inventory.patterns import select, split_pattern
from concurdeploy.inventory.vars import ALIASES, CONNECTION_VARS, PLAINTEXT_PASSWORD_VARS

__all__ = [
    "ALIASES", "CONNECTION_VARS", "PLAINTEXT_PASSWORD_VARS", "Group", "Host", "Inventory",
    "Unsafe", "YamlMapping", "load", "select", "split_pattern", "where",
]
