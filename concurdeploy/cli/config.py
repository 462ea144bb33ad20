"""concurdeploy's invoke configuration: prefix, defaults, and where settings come from.

Settings, lowest precedence first (invoke's own layering, see ``invoke.Config``):

1. the defaults below;
2. ``/etc/concurdeploy.yaml``, ``~/.concurdeploy.yaml``;
3. ``concurdeploy.yaml`` in the project root (beside ``tasks.py``);
4. environment variables ``CONCURDEPLOY_<KEY>`` (e.g. ``CONCURDEPLOY_INVENTORY``,
   ``CONCURDEPLOY_FORKS``), for keys that exist below;
5. the task's flags (``--forks``, ``--inventory``, …).

Host vars from the inventory are *not* config: they describe hosts, and override the
connection defaults here per host (see :mod:`concurdeploy.ssh.specs`). Flags override both.
The keys, types and defaults come from the one options table,
:data:`concurdeploy.options.OPTIONS` (the connection timeouts from :mod:`concurdeploy.ssh.specs`,
so the two can never disagree); the CLI turns these settings plus the task's flags into a
:class:`~concurdeploy.options.RunOptions` (:func:`concurdeploy.cli.tasks.options_from`).

Each file is checked as it is read (:func:`check_file_data`), each ``CONCURDEPLOY_<KEY>``
before invoke casts it (:func:`check_environment`): a file that is not a mapping, a YAML
syntax error (``file:line``), an unknown top-level key ("did you mean …?"; invoke's own
sections ``run``, ``tasks``, … are allowed), an empty value or a value of the wrong type
raises :class:`~concurdeploy.exceptions.UsageError` (the CLI: exit 2).
"""

from __future__ import annotations

import difflib
import json
import os

import yaml
from invoke import Config as _InvokeConfig

from concurdeploy.exceptions import UsageError
from concurdeploy.inputs import AliasBomb, InputTooLarge, read_bounded_text, safe_load
from concurdeploy.options import OPTIONS, check_value
from concurdeploy.ssh.specs import DEFAULTS as _CONNECTION

__all__ = ["DEFAULTS", "SETTINGS", "Config", "check_environment", "check_file_data"]

#: Defaults of the ``concurdeploy`` settings (config keys; "" = not set). Timeouts are seconds.
DEFAULTS = {o.setting: ("" if o.default is None else o.default) for o in OPTIONS if o.setting}
DEFAULTS["connect_timeout"] = _CONNECTION["connect_timeout"]  # per phase: TCP, handshake, auth
DEFAULTS["command_timeout"] = _CONNECTION["command_timeout"]  # per remote command or SFTP request
DEFAULTS["project_dir"] = ""  # set by the CLI: where tasks.py was found (else the cwd)

#: Config key → option name, for every setting a file or ``CONCURDEPLOY_<KEY>`` may give.
SETTINGS = {o.setting: o.name for o in OPTIONS if o.setting}
#: invoke's own sections, read by a project's tasks (``c.run``): allowed in the files as they are.
_INVOKE_SECTIONS = tuple(_InvokeConfig.global_defaults())


def _key_lines(text: str) -> dict:
    """Top-level key → its line number (1-based) in YAML ``text`` (best effort: {} if none)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}


def _yaml_error(path: str, e: yaml.YAMLError) -> str:
    """``path:LINE: YAML syntax error: …`` — LINE where the broken construct starts."""
    context, problem = getattr(e, "context", None), getattr(e, "problem", None)
    start, found = getattr(e, "context_mark", None), getattr(e, "problem_mark", None)
    mark = start or found
    at = f"{path}:{mark.line + 1}" if mark is not None else path
    what = ", ".join(x for x in (context, problem) if x) or str(e).splitlines()[0]
    if start is not None and found is not None and found.line != start.line:
        what += f" (line {found.line + 1})"
    return f"{at}: YAML syntax error: {what}; nothing was run"


def check_file_data(path: str, data, lines: dict | None = None) -> dict:
    """A config file's data, checked: a mapping whose keys are settings (or invoke's own
    sections), none of them empty, each value of the right type.

    :param lines: top-level key → line number, for messages (``path:line:``).
    :returns: ``data`` (``{}`` for an empty file).
    :raises UsageError: one paragraph naming the file (and line) and the key.
    """
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a concurdeploy config file is a mapping of settings (key: value), "
                         f"not a {type(data).__name__}; the settings are {', '.join(SETTINGS)}")
    lines = lines or {}
    for key, value in data.items():
        at = f"{path}:{lines[key]}" if key in lines else path
        if key in _INVOKE_SECTIONS:
            continue
        if key not in SETTINGS:
            close = difflib.get_close_matches(str(key), list(SETTINGS) + list(_INVOKE_SECTIONS), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UsageError(f"{at}: unknown setting {key!r}: {hint}the settings are "
                             f"{', '.join(SETTINGS)} (see 'concurdeploy --print-config')")
        if value is None or (isinstance(value, str) and not value.strip()):
            raise UsageError(f"{at}: {key} is empty: give a value, or remove the line for the default")
        try:
            check_value(SETTINGS[key], value, "config")
        except UsageError as e:
            raise UsageError(f"{at}: {e}") from None
    return data


def check_environment(environ=None) -> None:
    """Check every ``CONCURDEPLOY_<KEY>`` variable of a setting (empty, wrong type, out of
    range) before invoke casts it, so that the message names the variable and the type.

    :raises UsageError: names the variable.
    """
    environ = os.environ if environ is None else environ
    for key, name in SETTINGS.items():
        var = f"CONCURDEPLOY_{key.upper()}"
        if var in environ:
            check_value(name, environ[var], "env")


class Config(_InvokeConfig):
    """invoke ``Config`` with prefix ``concurdeploy`` (files ``concurdeploy.yaml``, env ``CONCURDEPLOY_*``)."""

    prefix = "concurdeploy"
    env_prefix = "CONCURDEPLOY"

    @staticmethod
    def global_defaults():
        base = _InvokeConfig.global_defaults()
        base.update(DEFAULTS)
        base["tasks"]["auto_dash_names"] = True
        return base

    # Config files (``concurdeploy.yaml``/``.yml``/``.json``) are checked as they are read:
    # see :func:`check_file_data`. A YAML syntax error names the file and line.

    def _load_yaml(self, path):
        text = _read(path)
        try:
            data = safe_load(text)
        except AliasBomb as e:
            raise UsageError(f"{path}{f':{e.line}' if e.line else ''}: {e}; nothing was run") from None
        except yaml.YAMLError as e:
            raise UsageError(_yaml_error(str(path), e)) from None
        return check_file_data(str(path), data, _key_lines(text))

    _load_yml = _load_yaml

    def _load_json(self, path):
        text = _read(path)
        try:
            data = json.loads(text)
        except ValueError as e:
            raise UsageError(f"{path}:{getattr(e, 'lineno', '?')}: JSON syntax error: "
                             f"{getattr(e, 'msg', e)}; nothing was run") from None
        return check_file_data(str(path), data)

    def load_shell_env(self) -> None:
        """Check the ``CONCURDEPLOY_*`` settings (:func:`check_environment`), then load them.

        :raises UsageError: a variable is empty or has the wrong type (names it).
        """
        check_environment()
        super().load_shell_env()


def _read(path) -> str:
    """A config file's text, read with the input size limit. A missing file stays
    ``FileNotFoundError`` (invoke skips the config files that are absent).

    :raises UsageError: the file is over the limit.
    """
    try:
        return read_bounded_text(path)
    except InputTooLarge as e:
        raise UsageError(f"cannot read {path}: {e}") from None
