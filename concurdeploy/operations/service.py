"""A service's declaration → one PushJob per host: ``push NAME`` sends what group ``NAME`` declares.

**A service is what its group declares.** The service keys (:data:`SERVICE_KEYS`) of ``push S``
are read, for each host of group ``S``, from these layers only, lowest first (a later layer
replaces a key wholesale):

1. ``S``'s ancestor groups (``all`` and every group that has ``S`` among its descendants),
   nearest first: shared defaults such as a parent's ``backups``. Two ancestors that both set a
   key and are not parent and child of each other (``S`` has two parents with ``files``) are
   refused; so are ``files``/``reload``/``healthcheck`` taken from two such unrelated ancestors;
2. group ``S``'s own vars (the usual place);
3. the host's own vars: ``backups``/``lock_timeout`` always (host-wide settings);
   ``files``/``reload``/``healthcheck`` only while the host is in no other service — in two,
   a plain host-level ``files`` is refused as ambiguous;
4. the host's ``services: {S: {files: ..., reload: ...}}``: overrides scoped to ``S``, the way
   to override per host when the host is in several services.

Any other group of the host never gives ``S`` a key: a group that declares ``files`` is a service of
its own (its keys are for ``push`` of that group); a group that sets service keys without being a
service, a parent of ``S`` or ``S`` itself (a subgroup of ``S``, a "defaults" group the host is in)
is refused rather than silently ignored. ``push`` takes one group name: a host name or a pattern
is refused (narrow with ``--limit``), and so is a group whose hosts get no ``files``. Every refusal
is a :class:`ServiceError` (exit code 2, no host contacted) naming file, line and both groups.

The format (in ``S``'s vars, or under ``services: {S: ...}`` in a host's own vars)::

    files:
      - src: files/haproxy/haproxy.cfg      # relative to the project root; *.j2 = Jinja2 template
        dest: /etc/haproxy/haproxy.cfg      # absolute path on the host
        mode: "0644"                        # optional, a quoted octal string
        validate: haproxy -c -f {tmp}       # optional; {tmp} = the uploaded temporary file
        create_dirs: false                  # optional; create a missing destination directory
        template: false                     # optional; render src with Jinja2 (default: src ends in .j2)
        replace: atomic                     # optional; in-place = rewrite the file (bind mounts; NOT atomic)
        follow: false                       # optional; true = a symlinked dest: write the file it points to
        owner: haproxy                      # optional (and group:); default: the replaced file's, kept or the host fails
    reload: systemctl reload haproxy        # optional; once per host, only if something changed
    healthcheck: curl -fsS localhost:8404/stats   # optional; after reload; failure → rollback
    backups: 3                              # optional; backups kept per file (0 = none)
    lock_timeout: 30                        # optional; seconds to wait for another run's lock

Not service keys, so read from the host's merged vars as any var: ``secret_vars`` (values
masked in diffs/output), ``become``/``become_user``/``become_password_env`` (every remote
step through sudo), the connection vars, and the vars ``{{ }}`` templates see.

``src``, ``dest``, ``validate`` and ``reload`` may use ``{{ var }}`` (Jinja2, the host's
merged vars with the service keys replaced by the service's, plus ``project_dir``; undefined
variables are errors). Everything here is checked *before* any host is contacted: a
declaration error is a :class:`ServiceError` (exit code 2), never a partial rollout. A
template that cannot be rendered for one host fails that host only.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field

from concurdeploy.exceptions import ServiceError
from concurdeploy.inventory import Host, where
from concurdeploy.operations.jobs import FileSpec, PushJob
from concurdeploy.operations.paths import dest_problem

__all__ = ["FILE_KEYS", "SERVICE_KEYS", "WHAT_KEYS", "Declaration", "TemplateFailed", "become_of",
           "declaration_of", "host_level", "push_job", "put_job", "scoped_overrides", "secret_values"]

FILE_KEYS = ("src", "dest", "mode", "validate", "create_dirs", "template", "replace", "follow", "owner", "group")
#: The keys of a service declaration, read per service (module docstring), never merged blindly.
SERVICE_KEYS = ("files", "reload", "healthcheck", "backups", "lock_timeout")
#: What is sent and run (the other service keys are settings).
WHAT_KEYS = ("files", "reload", "healthcheck")
_MODE_RE = re.compile(r"^0?[0-7]{3,4}$")
_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$")  # a user/group name or a numeric id


class TemplateFailed(Exception):
    """A template or a ``{{ }}`` value cannot be rendered for one host (that host fails)."""


def _err(message: str, node=None, key: str | None = None, origin: str | None = None) -> ServiceError:
    path, line = where(node, key) if node is not None else (None, None)
    if path is None and origin:
        message = f"{message} (declared in {origin})"
    return ServiceError(message, path=path, line=line, key=key)


def _at(mapping, key=None) -> str:
    """``"path:line"`` of a key (or of the mapping), ``"?"`` when unknown."""
    path, line = where(mapping, key)
    return f"{path}:{line}" if path and line else (path or "?")


@dataclass(frozen=True)
class Declaration:
    """Service ``service``'s keys for one host, each with where it was read.

    :param values: key of :data:`SERVICE_KEYS` -> value, for the keys set in some layer.
    :param origins: key -> ``"group haproxy (inv.yaml:12)"``, ``"host lb1 (inv.yaml:4)"`` or
        ``"host lb1 services.haproxy (inv.yaml:6)"`` (for messages).
    :param locations: key -> ``(path, line)`` of the value read (``(None, None)`` if unknown).
    :param scope_vars: the vars of the service's own group chain (its parents, then the
        group), which ``{{ }}`` in the declaration sees above the vars other groups give the
        host (``conf_src`` set by two services: ``push alpha`` renders alpha's); the host's
        own vars still win.
    """

    service: str
    values: dict
    origins: dict
    locations: dict = field(default_factory=dict)
    scope_vars: dict = field(default_factory=dict)


def host_level(host: Host, key: str) -> bool:
    """True when the host's merged value of ``key`` comes from the host itself (its inventory
    vars or a ``host_vars`` file), not from a group."""
    return key in host.vars and str(host.origins.get(key, "")).startswith(("host ", "host_vars "))


def scoped_overrides(host: Host, service: str, check_groups: bool = True) -> dict:
    """The host's own ``services: {service: {...}}`` entry (``{}`` when absent); every entry checked.

    A ``services`` var that is not a mapping, or that comes from a group, is an ordinary var
    (not an override) and ignored here. ``check_groups``: refuse entries naming a group the
    host is not in (a typo would silently override nothing).
    :raises ServiceError: an entry that is not a mapping of service keys, or that names a
        group the host is not in.
    """
    overrides = host.vars.get("services")
    if not host_level(host, "services") or not isinstance(overrides, dict):
        return {}
    for name, entry in overrides.items():
        if check_groups and name not in host.groups:
            raise _err(f"host {host.name}: services.{name} names a group the host is not in (its "
                       f"groups: {', '.join(host.groups)})", overrides, name)
        if not isinstance(entry, dict):
            raise _err(f"host {host.name}: services.{name} must be a mapping of service keys "
                       f"({', '.join(SERVICE_KEYS)})", overrides, name)
        unknown = [k for k in entry if k not in SERVICE_KEYS]
        if unknown:
            raise _err(f"unknown key {unknown[0]!r} in services.{name} (allowed: "
                       f"{', '.join(SERVICE_KEYS)})", entry, unknown[0])
    return overrides.get(service) or {}


def declaration_of(host: Host, service: str = "") -> Declaration:
    """A declaration from the host's merged vars alone (plus its ``services: {service: ...}``),
    for a host taken by itself (a script's own :func:`push_job` call). It cannot see which group a
    key came from, so a host in two services may get the other one's keys: ``api.push`` always
    uses :class:`concurdeploy.targeting.Service` instead.
    """
    values = {k: host.vars[k] for k in SERVICE_KEYS if k in host.vars}
    origins = {k: str(host.origins.get(k, host.source)) for k in values}
    locations = {k: where(host.vars, k) for k in values}
    scoped = scoped_overrides(host, service, check_groups=False) if service else {}
    for key, value in scoped.items():
        values[key], origins[key] = value, f"host {host.name} services.{service} ({_at(scoped, key)})"
        locations[key] = where(scoped, key)
    return Declaration(service, values, origins, locations)


def _render(text: str, hvars: dict, what: str) -> str:
    if "{{" not in text and "{%" not in text:
        return text
    import jinja2  # only when a value is templated: keeps start-up fast

    from concurdeploy.operations.templating import environment

    try:
        return environment().from_string(text).render(hvars)
    except jinja2.TemplateError as e:
        raise TemplateFailed(f"{what}: {e}") from None


def resolve_vars(hvars: dict) -> dict:
    """Vars whose string values use ``{{ }}`` rendered against the other vars, as Ansible
    does (``url: "https://{{ inventory_hostname }}.{{ domain }}/"``), nested lists and
    mappings included; repeated until nothing changes (at most 10 passes).

    :raises TemplateFailed: a value cannot be rendered (undefined variable, a loop, a
        filter or lookup Jinja2 does not have).
    """
    def templated(value) -> bool:
        if isinstance(value, str):
            return "{{" in value or "{%" in value
        if isinstance(value, dict):
            return any(templated(v) for v in value.values())
        if isinstance(value, (list, tuple)):
            return any(templated(v) for v in value)
        return False

    def render(value, ctx, name):
        if isinstance(value, str):
            return _render(value, ctx, f"var {name}")
        if isinstance(value, dict):
            return {k: render(v, ctx, f"{name}.{k}") for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [render(v, ctx, f"{name}[{i}]") for i, v in enumerate(value)]
        return value

    names = [k for k, v in hvars.items() if k != "files" and templated(v)]
    if not names:
        return hvars
    out = dict(hvars)
    for _ in range(10):
        new = {k: render(out[k], out, k) for k in names}
        if all(new[k] == out[k] for k in names):
            return out
        out.update(new)
        names = [k for k in names if templated(out[k])]
        if not names:
            return out
    raise TemplateFailed(f"vars {', '.join(sorted(names))} still hold {{{{ }}}} after 10 passes "
                         f"(do they refer to each other in a loop?)")


def _render_file(path: str, hvars: dict, shown: str) -> bytes:
    import jinja2

    from concurdeploy.operations.templating import environment

    env = environment(jinja2.FileSystemLoader(os.path.dirname(path)))
    try:
        return env.get_template(os.path.basename(path)).render(hvars).encode("utf-8")
    except jinja2.TemplateSyntaxError as e:
        raise TemplateFailed(f"template {shown} line {e.lineno}: {e.message}") from None
    except jinja2.UndefinedError as e:
        raise TemplateFailed(f"template {shown}{_template_line(e)}: {e.message}") from None


def _template_line(e: BaseException) -> str:
    tb = e.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith(".j2") or "template" in tb.tb_frame.f_code.co_name:
            line = tb.tb_lineno
        tb = tb.tb_next
    return f" line {line}" if line else ""


def _digest(path: str, cache: dict) -> tuple[str, int]:
    if path not in cache:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        cache[path] = (h.hexdigest(), os.path.getsize(path))
    return cache[path]


def _mode(entry, value) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and _MODE_RE.match(value):
        return int(value, 8)
    raise _err(f"mode {value!r} is not a quoted octal string; write it like mode: \"0644\"",
               entry, "mode")


def _entry(entry, index: int, origin: str, hv: dict, project_dir: str, cache: dict) -> FileSpec:
    if not isinstance(entry, dict):
        raise _err(f"files[{index}] must be a mapping with src and dest", origin=origin)
    unknown = [k for k in entry if k not in FILE_KEYS]
    if unknown:
        raise _err(f"unknown key {unknown[0]!r} in files[{index}] (allowed: {', '.join(FILE_KEYS)})",
                   entry, unknown[0])
    for key in ("src", "dest"):
        if not isinstance(entry.get(key), str) or not entry.get(key):
            raise _err(f"files[{index}] needs {key!r} (a path string)", entry, key if key in entry else None,
                       origin=origin)
    src = _render(entry["src"], hv, f"files[{index}].src")
    dest = _render(entry["dest"], hv, f"files[{index}].dest")
    problem = dest_problem(dest)
    if problem:
        raise _err(problem, entry, "dest", origin=origin)
    validate = entry.get("validate")
    if validate is not None:
        if not isinstance(validate, str) or "{tmp}" not in validate:
            raise _err("validate must be a command containing {tmp} (the uploaded temporary file), "
                       "e.g. validate: haproxy -c -f {tmp}", entry, "validate")
        validate = _render(validate, hv, f"files[{index}].validate")
    for flag in ("create_dirs", "template", "follow"):
        if flag in entry and not isinstance(entry[flag], bool):
            raise _err(f"{flag} must be true or false", entry, flag)
    local = src if os.path.isabs(src) else os.path.join(project_dir, src)
    if not os.path.isfile(local):
        raise _err(f"src {src!r} not found (looked for {local}; src is relative to the project "
                   f"root {project_dir})", entry, "src")
    mode = _mode(entry, entry.get("mode"))
    replace = entry.get("replace", "atomic")
    if replace not in ("atomic", "in-place"):
        raise _err(f"replace must be atomic or in-place, not {replace!r}", entry, "replace")
    ids = {}
    for key in ("owner", "group"):
        value = entry.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            value = str(value)
        if value is not None and not (isinstance(value, str) and _ID_RE.match(value)):
            raise _err(f"{key} must be a user/group name or a numeric id, not {value!r}", entry, key)
        ids[key] = value
    extra = {"replace": replace, "follow": bool(entry.get("follow", False)), **ids}
    is_template = entry.get("template", local.endswith(".j2"))
    if is_template:
        content = _render_file(local, hv, src)
        return FileSpec(local, dest, hashlib.sha256(content).hexdigest(), len(content), mode,
                        validate, bool(entry.get("create_dirs", False)), content, **extra)
    sha, size = _digest(local, cache)
    return FileSpec(local, dest, sha, size, mode, validate, bool(entry.get("create_dirs", False)), **extra)


def _decl_err(decl: Declaration, key: str, message: str) -> ServiceError:
    """A :class:`ServiceError` at the line the declaration read ``key`` from."""
    path, line = decl.locations.get(key, (None, None))
    if path is None and key in decl.origins:
        message += f" (declared in {decl.origins[key]})"
    return ServiceError(message, path=path, line=line, key=key)


def _number(decl: Declaration, key: str, default, kind):
    value = decl.values.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise _decl_err(decl, key, f"{key} must be a number ≥ 0, not {value!r}")
    return kind(value)


def become_of(host: Host):
    """The host's :class:`~concurdeploy.operations.become.Become` from vars ``become`` (bool),
    ``become_user`` (default root) and ``become_password_env``; None when ``become`` is false.

    :raises ServiceError: wrong types.
    """
    from concurdeploy.operations.become import Become

    flag = host.vars.get("become", False)
    if not isinstance(flag, bool):
        raise _err("become must be true or false", host.vars, "become", origin=host.origins.get("become"))
    if not flag:
        return None
    user = host.vars.get("become_user", "root")
    env = host.vars.get("become_password_env")
    if not isinstance(user, str) or (env is not None and not isinstance(env, str)):
        raise _err("become_user and become_password_env must be strings", host.vars, "become_user",
                   origin=host.origins.get("become_user"))
    for key in _BECOME_PASSWORD_VARS:  # "{{ vault_x }}" (a plain value is refused as it is read)
        if host.vars.get(key) not in (None, ""):
            raise _err(f"host {host.name}: {key} is a reference to another var (not plain text; its "
                       f"value is masked as a secret), but the sudo password is read only from the "
                       f"environment variable that become_password_env names: remove {key}, set "
                       f"become_password_env: NAME and export the password as NAME", host.vars, key,
                       origin=host.origins.get(key))
    return Become(user=user, password_env=env)


#: Spellings of a sudo password given as a ``{{ }}`` reference (inventory.vars lets them through).
_BECOME_PASSWORD_VARS = ("become_password", "ansible_become_password", "ansible_become_pass",
                         "ansible_sudo_pass")


def secret_values(host: Host, project_dir: str | None = None) -> tuple[str, ...]:
    """The host's secret values to mask (the one set every output path hides for this host),
    as strings: the *rendered* values (``{{ }}`` resolved, :func:`resolve_vars`) of the vars
    listed in ``secret_vars`` and of the vars named like secrets
    (:func:`concurdeploy.secretset.is_secret_name`, the rule ``hosts --vars`` shows
    ``********`` by), nested values included; also the values as written when they differ
    (a var that cannot be rendered still hides its text). The worker adds what it reads from
    the environment (:func:`concurdeploy.operations.masking.env_secrets`).

    :param project_dir: the ``project_dir`` var templates may use (None: not defined).
    :returns: distinct non-empty values, ``tuple[str, ...]``.
    :raises ServiceError: ``secret_vars`` is not a list of var names.
    """
    from concurdeploy.secretset import secret_var_values

    names = host.vars.get("secret_vars") or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise _err("secret_vars must be a list of var names", host.vars, "secret_vars",
                   origin=host.origins.get("secret_vars"))
    hv = {k: v for k, v in host.vars.items() if k != "files"}
    if project_dir is not None:
        hv.setdefault("project_dir", project_dir)
    try:
        rendered = resolve_vars(hv)
    except TemplateFailed:  # one var cannot be rendered: render the others one by one
        rendered = dict(hv)
        for _ in range(10):  # bounded, as resolve_vars
            changed = False
            for k, v in rendered.items():
                if isinstance(v, str) and ("{{" in v or "{%" in v):
                    try:
                        new = _render(v, rendered, k)
                    except TemplateFailed:
                        continue
                    changed, rendered[k] = changed or new != v, new
            if not changed:
                break
    values = secret_var_values(rendered, set(names)) + secret_var_values(hv, set(names))
    return tuple(dict.fromkeys(v for v in values if v))


def _template_vars(host: Host, decl: Declaration, project_dir: str) -> dict:
    """The vars ``{{ }}`` sees: the host's merged vars, then the service's own group chain's
    (:attr:`Declaration.scope_vars`: a var another service's group also sets is this
    service's), with the service keys replaced by the declaration's (another service's
    ``reload`` must neither show nor fail to render)."""
    hv = {k: v for k, v in {**host.vars, **decl.scope_vars}.items()
          if k not in SERVICE_KEYS and not (k == "services" and isinstance(v, dict))}
    return resolve_vars({**hv, **decl.values, "project_dir": project_dir})


def push_job(host: Host, project_dir: str, check: bool = False, cache: dict | None = None,
             diff: bool = False, service: str = "", declaration: Declaration | None = None) -> PushJob:
    """Build ``host``'s :class:`PushJob` from the service's declaration for it.

    :param project_dir: absolute path that relative ``src`` paths start from.
    :param cache: ``dict`` shared across hosts so each source file is hashed once.
    :param service: the service (group) name, e.g. ``"haproxy"``.
    :param declaration: from :meth:`concurdeploy.targeting.Service.for_host` (what ``push``
        uses); None = :func:`declaration_of` the host's merged vars (a host taken by itself).
    :raises ServiceError: the declaration is wrong (names file, line and key).
    :raises TemplateFailed: a ``{{ }}`` value or a template cannot be rendered for this host.
    """
    cache = {} if cache is None else cache
    decl = declaration if declaration is not None else declaration_of(host, service)
    values, origins = decl.values, decl.origins
    files = values.get("files")
    if files is None:
        raise _err(f"host {host.name} has no 'files': declare the service's files in its group's "
                   f"vars (files: [{{src: ..., dest: ...}}])", origin=host.source)
    if not isinstance(files, list) or not files:
        raise _decl_err(decl, "files", "'files' must be a non-empty list of {src, dest} entries")
    hv = _template_vars(host, decl, project_dir)
    specs = [_entry(e, i, origins.get("files"), hv, project_dir, cache) for i, e in enumerate(files)]
    dests = [f.dest for f in specs]
    dup = next((d for d in dests if dests.count(d) > 1), None)
    if dup:
        raise _err(f"destination {dup} is declared twice for host {host.name}", origin=origins.get("files"))
    reload = values.get("reload")
    if reload is not None:
        if not isinstance(reload, str):
            raise _decl_err(decl, "reload", "reload must be a shell command string")
        reload = _render(reload, hv, "reload")
    healthcheck = values.get("healthcheck")
    if healthcheck is not None and not isinstance(healthcheck, str):
        raise _decl_err(decl, "healthcheck", "healthcheck must be a shell command string")
    return PushJob(tuple(specs), reload or None, check, diff=diff, become=become_of(host),
                   healthcheck=_render(healthcheck, hv, "healthcheck") if healthcheck else None,
                   backups=_number(decl, "backups", 3, int),
                   lock_timeout=_number(decl, "lock_timeout", 30.0, float),
                   secrets=secret_values(host), service=service)


def put_job(host: Host, project_dir: str, src: str, dest: str, mode: str | None = None,
            validate: str | None = None, check: bool = False, diff: bool = False,
            cache: dict | None = None) -> PushJob:
    """A :class:`PushJob` for one file given on the command line (``concurdeploy put``):
    the same checks and atomic replace as ``push``, no reload.

    :raises ServiceError: bad ``dest``/``mode``/``validate`` or missing ``src``.
    """
    entry = {"src": src, "dest": dest}
    if mode:
        entry["mode"] = mode
    if validate:
        entry["validate"] = validate
    hv = resolve_vars({**host.vars, "project_dir": project_dir})
    spec = _entry(entry, 0, "the command line", hv, project_dir, {} if cache is None else cache)
    decl = declaration_of(host)  # put is no service: its settings are the host's merged vars
    return PushJob((spec,), None, check, diff=diff, become=become_of(host),
                   backups=_number(decl, "backups", 3, int),
                   lock_timeout=_number(decl, "lock_timeout", 30.0, float),
                   secrets=secret_values(host), service="put")
