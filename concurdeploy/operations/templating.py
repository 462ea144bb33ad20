"""The one Jinja2 environment factory of every templated value (``{{ }}`` in vars, ``src``,
``dest``, ``validate``, ``reload``, ``healthcheck``, and ``*.j2`` templates).

Every environment it makes has ``StrictUndefined`` (an undefined variable is an error, never
an empty string), keeps a template's trailing newline, and has the ``quote`` filter:
``{{ path | quote }}`` is :func:`shlex.quote` of the value, the way to put a host var into a
shell command (``validate``, ``reload``, ``healthcheck``) without the shell reading its
spaces, quotes, ``;`` or ``$(...)``::

    reload: systemctl reload {{ unit | quote }}
    validate: haproxy -c -f {tmp} -L {{ peer_name | quote }}

Jinja2 is imported on first use only (start-up of commands that template nothing stays fast).
"""

from __future__ import annotations

import shlex

__all__ = ["environment", "quote"]


def quote(value) -> str:
    """``value`` as one shell word: :func:`shlex.quote` of ``str(value)`` (``None`` → ``''``).

    :param value: any value (a number or bool is quoted as its text, e.g. ``8080``).
    :returns: the text unchanged when it is safe as is (``/etc/app.cfg``), else single-quoted
        with embedded ``'`` escaped (``'a b'``, ``''"'"'x'``).
    """
    return shlex.quote("" if value is None else str(value))


def environment(loader=None):
    """A new ``jinja2.Environment`` with the house settings and the ``quote`` filter.

    :param loader: a ``jinja2`` loader (``FileSystemLoader`` for ``*.j2`` files), or None
        for ``from_string`` use.
    :returns: ``jinja2.Environment`` (``StrictUndefined``, ``keep_trailing_newline=True``,
        ``filters["quote"]`` = :func:`quote`).
    """
    import jinja2

    env = jinja2.Environment(loader=loader, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["quote"] = quote
    return env
