"""concurdeploy: atomic, parallel config rollouts over SSH.

The public API, for a project's own ``tasks.py``::

    from concurdeploy import Connection, fan_out, load_inventory, select_hosts, replace_atomically

Names are imported lazily so that ``concurdeploy --help`` never pays for paramiko.
"""

__version__ = "0.1.0"

_EXPORTS = {
    "Connection": "connection", "load_private_key": "connection",
    "Job": "fanout", "WorkerPool": "fanout", "run_host": "fanout", "run_jobs": "fanout",
    "Inventory": "inventory", "Host": "inventory", "Group": "inventory", "load": "inventory",
    "push": "operations", "replace_atomically": "operations", "temp_name": "operations",
    "gather_facts": "operations", "RunJob": "operations", "GetJob": "operations",
    "HostResult": "results", "FileChange": "results", "CommandResult": "results", "Status": "results",
    "ConnectSpec": "specs", "FileSpec": "specs", "PushJob": "specs", "connect_spec": "specs",
    "cdtask": "commands", "fan_out": "commands", "load_inventory": "commands",
    "select_hosts": "commands",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'concurdeploy' has no attribute {name!r}")
