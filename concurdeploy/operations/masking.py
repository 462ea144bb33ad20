"""Secret values masked in everything a host operation sends back to the controller.

The values: the job's ``secrets`` (the host's ``secret_vars``), and the SSH password, key
passphrase and sudo password read from this worker's environment. Each is replaced by
``********`` in a result's output, error, diff, warnings and data, and in a raised
:class:`~concurdeploy.exceptions.HostError`'s message and output.
"""

from __future__ import annotations

import os
from dataclasses import replace

from concurdeploy.exceptions import HostError
from concurdeploy.records import HostResult

__all__ = ["mask", "mask_data", "masked", "secrets_of"]


def mask(text: str, secrets: tuple[str, ...]) -> str:
    """Replace every occurrence of each secret value (longest first) with ``********``."""
    for value in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(value, "********")
    return text


def secrets_of(conn, job) -> tuple[str, ...]:
    """The values to mask in this host's result: the job's ``secrets`` values, and the
    password, passphrase and sudo password read from this worker's environment.

    :param conn: a :class:`~concurdeploy.ssh.connection.Connection` (its ``spec`` names the
        password and passphrase variables); ``job``: any job with optional ``secrets`` and
        ``become`` fields.
    :returns: distinct non-empty values, in first-seen order.
    """
    values = list(getattr(job, "secrets", ()) or ())
    become = getattr(job, "become", None)
    spec = getattr(conn, "spec", None)
    for name in (getattr(spec, "password_env", None), getattr(spec, "passphrase_env", None),
                 getattr(become, "password_env", None)):
        if name and os.environ.get(name):
            values.append(os.environ[name])
    return tuple(dict.fromkeys(v for v in values if v))


def mask_data(value, secrets: tuple[str, ...]):
    """``value`` with :func:`mask` applied to every string inside (dicts, lists, tuples)."""
    if isinstance(value, str):
        return mask(value, secrets)
    if isinstance(value, dict):
        return {k: mask_data(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(mask_data(v, secrets) for v in value)
    return value


def masked(action, conn, job) -> HostResult:
    """Run ``action(conn, job)`` with every secret value masked in what leaves the worker:
    the result's output, error, diff, warnings and data, or the raised error's message and
    output (a validate, reload or ``run`` command may print them: the operator's output, masked
    all the same).

    :raises: whatever ``action`` raises, its message masked.
    """
    secrets = secrets_of(conn, job)
    if not secrets:
        return action(conn, job)
    try:
        result = action(conn, job)
    except HostError as e:
        e.message, e.output = mask(e.message, secrets), mask(e.output or "", secrets)
        e.args = mask_data(e.args, secrets)
        raise
    except Exception as e:  # a bug: its message is still shown
        e.args = mask_data(e.args, secrets)
        raise
    return replace(result, output=mask(result.output, secrets), diff=mask(result.diff, secrets),
                   error=mask(result.error, secrets) if result.error else result.error,
                   warnings=mask_data(result.warnings, secrets), data=mask_data(result.data, secrets))
