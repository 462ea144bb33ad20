"""Benchmark experiment, never shipped: concurdeploy with two small fixes applied from outside.

``bench/run.py`` puts this folder on PYTHONPATH for the ``cd+fixes`` row (controller, fork server and
workers all load it). It measures what these changes to concurdeploy/connection.py would give:

1. ``TCP_NODELAY`` on the SSH socket (as in experiments/nodelay): no Nagle stall (≈40 ms on
   loopback, up to one RTT on a WAN) when a small SSH message follows an unacknowledged one.
2. No busy-wait between a command's EOF and its exit status: once paramiko has seen EOF, the
   channel's event pipe stays readable, so ``Connection.run``'s ``select([chan], ..., 0.5)``
   returns at once and the loop spins (holding the GIL, against every other host's thread) until
   ``exit-status`` arrives. The shim waits on ``chan.status_event`` instead, which is what the fix
   in ``Connection.run`` would do.

The shim replaces the ``select`` module *as seen by concurdeploy.ssh.connection* only, once that
module is imported (a meta-path hook), so the CLI does not import paramiko any earlier.
"""
import importlib.abc
import importlib.machinery
import select as _select
import socket
import sys

_orig_create_connection = socket.create_connection


def create_connection(*args, **kwargs):
    sock = _orig_create_connection(*args, **kwargs)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass
    return sock


socket.create_connection = create_connection


class _SelectShim:
    """``select`` for concurdeploy.ssh.connection: on a paramiko channel that has EOF but no exit
    status yet (and no buffered data), wait on its status event instead of returning at once."""

    def __getattr__(self, name):
        return getattr(_select, name)

    @staticmethod
    def select(r, w, x, timeout=None):
        for ch in r:
            if (getattr(ch, "eof_received", False) and hasattr(ch, "status_event")
                    and not ch.status_event.is_set() and not ch.closed
                    and not ch.recv_ready() and not ch.recv_stderr_ready()):
                ch.status_event.wait(timeout)
                return list(r), [], []
        return _select.select(r, w, x, timeout)


class _Patcher(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname != "concurdeploy.ssh.connection":
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None:
            return None
        self._orig_loader = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        self._orig_loader.exec_module(module)
        module.select = _SelectShim()


sys.meta_path.insert(0, _Patcher())
