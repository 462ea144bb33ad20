"""concurdeploy: atomic, parallel config rollouts over SSH.

The public API, for a project's own ``tasks.py``::

    from concurdeploy import Connection, fan_out, load_inventory, select_hosts, replace_atomically

Names are imported lazily so that ``concurdeploy --help`` never pays for paramiko.
"""

__version__ = "0.1.0"

_EXPORTS = {
    "Connection": "ssh.connection", "load_private_key": "ssh.connection",
    "Job": "executors.local", "WorkerPool": "executors.local", "run_host": "executors.local", "run_jobs": "executors.local",
    "Inventory": "inventory.model", "Host": "inventory.model", "Group": "inventory.model", "load": "inventory.model",
    "push": "operations.push", "replace_atomically": "operations.push", "temp_name": "operations.push",
    "gather_facts": "operations.push", "RunJob": "operations.commands", "GetJob": "operations.commands",
    "HostResult": "records", "FileChange": "records", "CommandResult": "records", "Status": "records",
    "ConnectSpec": "ssh.specs", "FileSpec": "operations.jobs", "PushJob": "operations.jobs", "connect_spec": "ssh.specs",
    "cdtask": "cli.tasks", "fan_out": "api", "load_inventory": "api",
    "select_hosts": "api",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'concurdeploy' has no attribute {name!r}")
