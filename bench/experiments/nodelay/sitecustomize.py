"""Benchmark experiment, never shipped: make every ``socket.create_connection`` socket TCP_NODELAY.

``bench/run.py`` puts this folder on PYTHONPATH for the ``cd+nodelay`` row, so concurdeploy's
controller, fork server and workers all load it: the row measures what setting TCP_NODELAY on
concurdeploy's SSH socket (one line in concurdeploy/connection.py) would change.
"""
import socket

_orig = socket.create_connection


def create_connection(*args, **kwargs):
    sock = _orig(*args, **kwargs)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass
    return sock


socket.create_connection = create_connection
