"""concurdeploy's invoke configuration: prefix, defaults, and where settings come from.

Settings, lowest precedence first (invoke's own layering, see ``invoke.Config``):

1. the defaults below;
2. ``/etc/concurdeploy.yaml``, ``~/.concurdeploy.yaml``;
3. ``concurdeploy.yaml`` in the project root (beside ``tasks.py``);
4. environment variables ``CONCURDEPLOY_<KEY>`` (e.g. ``CONCURDEPLOY_INVENTORY``,
   ``CONCURDEPLOY_FORKS``), for keys that exist below;
5. the task's flags (``--forks``, ``--inventory``, …).

Host vars from the inventory are *not* config: they describe hosts, and override the
connection defaults here per host (see :mod:`concurdeploy.ssh.specs`). Flags override both.
This module imports nothing of concurdeploy's but the connection defaults of
:mod:`concurdeploy.ssh.specs` (one table, so the two can never disagree).
"""

from __future__ import annotations

from invoke import Config as _InvokeConfig

from concurdeploy.ssh.specs import DEFAULTS as _CONNECTION

__all__ = ["DEFAULTS", "Config"]

#: Defaults of the ``concurdeploy`` settings. Timeouts are seconds.
DEFAULTS = {
    "inventory": "inventories",   # a file or folder, relative to the project root
    "forks": 50,                  # hosts in flight at once
    "processes": 0,               # worker processes; 0 = one per CPU (at most forks)
    "executor": "local",          # local (process pool) | dask (a Dask cluster, see scheduler)
    "scheduler": "",              # the Dask scheduler's address, e.g. tcp://scheduler.example:8786
    "connect_timeout": _CONNECTION["connect_timeout"],  # per phase: TCP, handshake, auth
    "command_timeout": _CONNECTION["command_timeout"],  # per remote command or SFTP request
    "deadline": 0.0,              # whole run; 0 = none
    "host_key_policy": "",        # "" = host vars, else strict | accept-new | off
    "project_dir": "",            # set by the CLI: where tasks.py was found (else the cwd)
}


class Config(_InvokeConfig):
    """invoke ``Config`` with prefix ``concurdeploy`` (files ``concurdeploy.yaml``, env ``CONCURDEPLOY_*``)."""

    prefix = "concurdeploy"
    env_prefix = "CONCURDEPLOY"

    @staticmethod
    def global_defaults():
        base = _InvokeConfig.global_defaults()
        base.update(DEFAULTS)
        base["tasks"]["auto_dash_names"] = True
        return base
