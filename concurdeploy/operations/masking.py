"""Secret values masked in everything a host operation sends back to the controller.

The values (:func:`secrets_of`, one set per host): the job's ``secrets`` (the host's rendered
``secret_vars`` and secret-named vars, :func:`concurdeploy.operations.service.secret_values`),
and what this worker reads for the host (:func:`env_secrets`): the SSH password
(``password_env``), the key text (``key_env``), the key passphrase (``passphrase_env``, or
asked on the controller's terminal) and the sudo password (``become_password_env``). Each is
replaced by ``********`` — whole, line by line, and a key's base64 body whole
(:func:`concurdeploy.secretset.secret_forms`) — in a result's output, error, diff, warnings and
data, and in a raised :class:`~concurdeploy.exceptions.HostError`'s message and output.
"""

from __future__ import annotations

import os
from dataclasses import replace

from concurdeploy.exceptions import HostError
from concurdeploy.records import HostResult
from concurdeploy.secretset import mask, mask_data

__all__ = ["env_secrets", "mask", "mask_data", "masked", "secrets_of"]


def env_secrets(spec=None, become=None) -> list[str]:
    """The secret values this process reads for a host: the values of its ``password_env``,
    ``key_env``, ``passphrase_env`` and ``become_password_env`` variables, and a passphrase
    asked on the controller's terminal for its ``key_file``.

    :param spec: a :class:`~concurdeploy.ssh.specs.ConnectSpec` (or anything with those
        attributes), or None. :param become: a :class:`~concurdeploy.operations.become.Become`
        (its ``password_env``) or None.
    :returns: the non-empty values found (unset variables are skipped), ``list[str]``.
    """
    from concurdeploy.ssh.passphrases import lookup

    values = []
    for name in (getattr(spec, "password_env", None), getattr(spec, "key_env", None),
                 getattr(spec, "passphrase_env", None), getattr(become, "password_env", None)):
        if isinstance(name, str) and name and os.environ.get(name):
            values.append(os.environ[name])
    key_file = getattr(spec, "key_file", None)
    if isinstance(key_file, str) and key_file:
        asked = lookup(key_file)
        if asked:
            values.append(asked)
    return values


def secrets_of(conn, job) -> tuple[str, ...]:
    """The values to mask in this host's result: the job's ``secrets`` values, and
    :func:`env_secrets` (password, key text, passphrase, sudo password) read in this worker.

    :param conn: a :class:`~concurdeploy.ssh.connection.Connection` (its ``spec`` names the
        variables); ``job``: any job with optional ``secrets`` and ``become`` fields.
    :returns: distinct non-empty values, in first-seen order.
    """
    values = list(getattr(job, "secrets", ()) or ())
    values += env_secrets(getattr(conn, "spec", None), getattr(job, "become", None))
    return tuple(dict.fromkeys(v for v in values if v))


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
    conn.secrets = secrets  # masked in output the connection writes to files too
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
                   warnings=mask_data(result.warnings, secrets), data=_mask_values(result.data, secrets))


def _mask_values(data, secrets):
    """``data`` with its values masked and its own keys kept: they are the operation's field
    names (``check``, ``local_path``…), which the controller reads to word its report (a
    one-letter secret ``e`` must not turn ``check`` into ``ch********ck``, and so "would be
    created" into "created")."""
    if not isinstance(data, dict):
        return mask_data(data, secrets)
    return {k: mask_data(v, secrets) for k, v in data.items()}
