"""This project's own tasks: concurdeploy loads this file like invoke loads a ``tasks.py``
(or Fabric a fabfile), beside its built-in tasks (push, run, get, hosts).

``seed`` is a worked example of writing your own workflow on the library API: connect,
upload a file under a unique (uuid) name beside its destination, rename it into place
atomically, close — fanned out over a group by the same worker pool as ``push``::

    concurdeploy seed haproxy
    concurdeploy seed haproxy --src files/haproxy/haproxy.cfg --dest '/srv/seed/{host}/haproxy.cfg'

Rules for your own tasks:

- the per-host function (here :func:`seed_one`) is defined at module level: it is sent to
  worker processes by reference and must be importable there;
- it receives an open :class:`concurdeploy.Connection` and its payload, and returns a
  :class:`concurdeploy.HostResult`; ``conn.run`` raises ``RemoteCommandFailed`` when the
  command exits non-zero (``warn=True`` returns the result instead); raising a
  ``concurdeploy.exceptions.HostError`` fails that host only;
- payloads are plain picklable values: paths and settings, never open files or secrets;
- the task reads its settings with :func:`concurdeploy.options_from` (a flag left None is
  filled from ``CONCURDEPLOY_*``, ``concurdeploy.yaml`` or the defaults), not from
  ``c.config`` directly, and returns the ``RunResult`` of :func:`concurdeploy.fan_out`:
  the exit code is then 1 when a host failed (0 otherwise).
"""

import os
import shlex

from concurdeploy import (
    HostResult,
    Status,
    cdtask,
    fan_out,
    load_inventory,
    options_from,
    select_hosts,
)


def seed_one(conn, payload):
    """Runs in a worker, once per host: upload ``src`` to a temp name beside ``dest``, rename it over ``dest``."""
    # Imported here, in the worker: at the top they would load paramiko on every
    # `concurdeploy --list` (≈0.3 s).
    from concurdeploy import replace_atomically, temp_name

    src, dest = payload
    conn.run(f"mkdir -p -- {shlex.quote(os.path.dirname(dest))}")
    tmp = temp_name(dest)
    try:
        conn.sftp.put(src, tmp)
        how = replace_atomically(conn.raw, tmp, dest)
    except BaseException:
        conn.run(f"rm -f -- {shlex.quote(tmp)}", warn=True)
        raise
    return HostResult(conn.name, Status.CHANGED, data={"dest": dest, "renamed_with": how})


@cdtask(help={
    "group": "Group (or host pattern) to seed.",
    "src": "Local file, relative to the project root.",
    "dest": "Remote path; {host} is replaced by the inventory name.",
    "inventory": "Inventory file or folder (default: inventories/).",
    "limit": "Only hosts matching this pattern.",
    "forks": "Hosts in flight at once (default 50).",
})
def seed(c, group, src="files/haproxy/haproxy.cfg", dest="/tmp/concurdeploy-seed/{host}/haproxy.cfg",
         inventory=None, limit=None, forks=None):
    """Example task: upload one file to every host of GROUP under a uuid name, rename it into place."""
    opts = options_from(c, inventory=inventory, limit=limit, forks=forks)
    inv = load_inventory(opts.inventory, project_dir=opts.project_dir)
    hosts = select_hosts(inv, group, opts.limit)
    local = os.path.join(opts.project_dir, src)
    return fan_out(hosts, seed_one, [(local, dest.replace("{host}", h.name)) for h in hosts], opts,
                   inventory=inv, title=f"seed {group}")
