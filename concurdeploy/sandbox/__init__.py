"""The sandbox: demo SSH hosts for the quickstart, never used for real hosts.

:class:`Sandbox` serves SSH on ``127.0.0.1`` (one port per host of an inventory
with ``connection: sandbox``, see ``inventories/sandbox.yaml``) from threads of
the controller process, using paramiko in server mode. A sandbox host runs
commands and file operations **as the controller's own user**, on the
controller's own filesystem: it is a demo, not a jail, and not a security
boundary. Real hosts are always reached over ``connection: ssh``.

It needs the ``sandbox`` extra (``pip install 'concurdeploy[sandbox]'``: paramiko
and ``cryptography``, which it uses directly to generate its keys). Without
it, importing this package raises :class:`SandboxExtraMissing`, a
:class:`~concurdeploy.exceptions.UsageError` (exit code 2 at the CLI) that is
also an :class:`ImportError`.

Modules, one concern each:

``server``    :class:`Sandbox`: ports, listener and connection threads, stop
``ssh``       the paramiko ``ServerInterface`` (auth, channels) and its Transport
``commands``  ``exec`` requests: one ``/bin/sh -c`` subprocess per channel
``sftp``      the ``sftp`` subsystem on the real filesystem
``keys``      the state directory's key files and ``known_hosts``

This package imports nothing of concurdeploy's except :mod:`concurdeploy.exceptions`.
"""

from __future__ import annotations

import importlib

from concurdeploy.exceptions import UsageError

__all__ = ["Sandbox", "SandboxExtraMissing", "EXTRA_MESSAGE"]

#: What the user reads when the ``sandbox`` extra is not installed.
EXTRA_MESSAGE = "the sandbox needs the 'sandbox' extra: pip install 'concurdeploy[sandbox]'"

#: Every third-party module the sandbox imports (keep in step with setup.cfg's ``sandbox`` extra).
REQUIRED_MODULES = (
    "paramiko",
    "cryptography.hazmat.primitives.asymmetric.ed25519",
    "cryptography.hazmat.primitives.serialization",
)


class SandboxExtraMissing(UsageError, ImportError):
    """A module of the ``sandbox`` extra cannot be imported.

    ``str(e)`` is :data:`EXTRA_MESSAGE`; ``e.missing`` names the module that failed.
    A :class:`~concurdeploy.exceptions.UsageError` (the CLI exits 2 with the message,
    no traceback) and an :class:`ImportError` (``except ImportError`` still works).
    """

    def __init__(self, missing: str = "") -> None:
        super().__init__(EXTRA_MESSAGE)
        self.missing = missing


def _require_extra() -> None:
    """Import every module of :data:`REQUIRED_MODULES`.

    :raises SandboxExtraMissing: one of them is not installed (``ModuleNotFoundError``).
    """
    for name in REQUIRED_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            raise SandboxExtraMissing(e.name or name) from None


_require_extra()

from concurdeploy.sandbox.server import Sandbox  # noqa: E402  (after the extra is checked)
