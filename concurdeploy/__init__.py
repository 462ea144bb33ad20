"""concurdeploy: atomic, parallel config rollouts over SSH.

The library API (see :mod:`concurdeploy.api`)::

    import concurdeploy
    result = concurdeploy.push("haproxy", inventory="inventories/prod.yaml", check=True)
    result.ok, result.exit_code, result.failed, result["lb1"].status

    concurdeploy.run("web", "uptime", limit="web1*")        # -> RunResult
    concurdeploy.put("web", "files/motd", "/etc/motd", mode="0644")
    concurdeploy.get("web", "/etc/hostname", "fetched/")

Each takes the options of :data:`concurdeploy.options.OPTIONS` as keywords (or
``options=RunOptions(...)``), prints nothing unless ``console=True``, returns a
:class:`RunResult` (one :class:`HostResult` per host, inventory order) and never raises for a
host's failure; :class:`~concurdeploy.exceptions.UsageError` for bad input,
:class:`~concurdeploy.exceptions.RunInterrupted` on SIGINT/SIGTERM.

For a project's own ``tasks.py``::

    from concurdeploy import cdtask, options_from, load_inventory, select_hosts, fan_out

Names are imported lazily so that ``concurdeploy --help`` never pays for paramiko.
"""

__version__ = "0.1.0"

_EXPORTS = {
    # the library API
    "push": "api", "run": "api", "put": "api", "get": "api",
    "fan_out": "api", "load_inventory": "api", "select_hosts": "api",
    "RunOptions": "options", "RunResult": "records",
    # for a project's tasks.py
    "cdtask": "cli.tasks", "options_from": "cli.tasks",
    # the parts
    "Connection": "tasking", "SSHConnection": ("ssh.connection", "Connection"), "load_private_key": "ssh.keys",
    "CommandResult": "records", "RemoteCommandFailed": "exceptions", "HostsFailed": "exceptions",
    "UsageError": "exceptions",
    "Job": "executors.local", "WorkerPool": "executors.local", "run_host": "executors.local", "run_jobs": "executors.local",
    "Inventory": "inventory", "Host": "inventory", "Group": "inventory", "load": "inventory",
    "replace_atomically": "operations.replace", "temp_name": "operations.replace",
    "gather_facts": "operations.facts", "RunJob": "operations.commands", "GetJob": "operations.commands",
    "HostResult": "records", "FileChange": "records", "Status": "records",
    "ConnectSpec": "ssh.specs", "FileSpec": "operations.jobs", "PushJob": "operations.jobs", "connect_spec": "ssh.specs",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        module, attr = _EXPORTS[name] if isinstance(_EXPORTS[name], tuple) else (_EXPORTS[name], name)
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'concurdeploy' has no attribute {name!r}")
