"""This project's own tasks, beside concurdeploy's built-in ones (push, put, run, get, hosts, ...).

``concurdeploy --list`` lists them; ``concurdeploy uptime haproxy`` runs the example below on
every host of the group, in parallel, and exits 1 if a host failed.

The per-host function runs in a worker process: define it at module level, give it plain
(picklable) arguments, and return a ``HostResult``. ``conn.run`` raises ``RemoteCommandFailed`` on a
non-zero exit (pass ``warn=True`` to get the result instead); an exception fails that host only.
"""

from concurdeploy import HostResult, Status, cdtask, fan_out, load_inventory, options_from, select_hosts


def uptime_one(conn, payload):
    """On one host: run ``uptime`` and keep its output."""
    result = conn.run("uptime")
    return HostResult(conn.name, Status.OK, output=result.stdout)


@cdtask(help={"group": "Group or host pattern.", "inventory": "Inventory file or folder.",
              "limit": "Only hosts matching this pattern."})
def uptime(c, group, inventory=None, limit=None):
    """Example task: show each host's uptime."""
    opts = options_from(c, inventory=inventory, limit=limit)
    inv = load_inventory(opts.inventory, project_dir=opts.project_dir)
    hosts = select_hosts(inv, group, opts.limit)
    return fan_out(hosts, uptime_one, [None] * len(hosts), opts, inventory=inv, title=f"uptime {group}",
                   show_output=True)
