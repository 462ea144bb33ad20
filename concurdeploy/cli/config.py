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
The keys, types and defaults come from the one options table,
:data:`concurdeploy.options.OPTIONS` (the connection timeouts from :mod:`concurdeploy.ssh.specs`,
so the two can never disagree); the CLI turns these settings plus the task's flags into a
:class:`~concurdeploy.options.RunOptions` (:func:`concurdeploy.cli.tasks.options_from`).
"""

from __future__ import annotations

from invoke import Config as _InvokeConfig

from concurdeploy.options import OPTIONS
from concurdeploy.ssh.specs import DEFAULTS as _CONNECTION

__all__ = ["DEFAULTS", "Config"]

#: Defaults of the ``concurdeploy`` settings (config keys; "" = not set). Timeouts are seconds.
DEFAULTS = {o.setting: ("" if o.default is None else o.default) for o in OPTIONS if o.setting}
DEFAULTS["connect_timeout"] = _CONNECTION["connect_timeout"]  # per phase: TCP, handshake, auth
DEFAULTS["command_timeout"] = _CONNECTION["command_timeout"]  # per remote command or SFTP request
DEFAULTS["project_dir"] = ""  # set by the CLI: where tasks.py was found (else the cwd)


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
