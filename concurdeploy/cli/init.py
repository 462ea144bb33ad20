"""The ``init`` task: start a project of one's own from the files of :mod:`concurdeploy.scaffold`.

``concurdeploy init [DIR]`` writes, into DIR (default: the current directory, created if
missing)::

    tasks.py                              an example task on the library API (uptime)
    concurdeploy.yaml                     the project's settings, commented
    inventories/sandbox.yaml              four sandbox hosts: `concurdeploy push haproxy` works at once
    examples/inventories/production.yaml  a commented production inventory (.example hosts)
    files/haproxy/haproxy.cfg             the file `push haproxy` sends
    ci/deploy-haproxy.yml                 a GitHub Actions job (canary, then everyone; reports)
    requirements.txt                      concurdeploy pinned to the version that wrote the project
    .gitignore                            .sandbox/ and local reports

It never overwrites: if any of these files exists, nothing is written and the command exits 2
naming them, unless ``--force`` (then those files are replaced, each atomically). Files of the
project that are not in the list are never touched.
"""

from __future__ import annotations

import errno
import os
import tempfile
from importlib import resources

from invoke import Exit

from concurdeploy import __version__
from concurdeploy.cli.tasks import cdtask

__all__ = ["default_dir", "init", "is_init", "scaffold_files"]

#: Package files whose name in the project differs (a leading dot is not packaged reliably).
RENAMED = {"gitignore": ".gitignore"}


def scaffold_files() -> dict[str, bytes]:
    """The new project's files: relative path (``/``-separated) → content (``bytes``), sorted."""
    root = resources.files("concurdeploy.scaffold").joinpath("project")
    out: dict[str, bytes] = {}
    todo = [(root, "")]
    while todo:  # bounded: the packaged tree is finite and has no links
        folder, prefix = todo.pop()
        for entry in folder.iterdir():
            if entry.name == "__pycache__":
                continue
            rel = prefix + RENAMED.get(entry.name, entry.name)
            if entry.is_dir():
                todo.append((entry, rel + "/"))
            else:
                out[rel] = entry.read_bytes()
    out["requirements.txt"] = (f"# what this project was written with (`concurdeploy init`); CI installs it\n"
                               f"concurdeploy[sandbox]=={__version__}\n").encode()
    return dict(sorted(out.items()))


def _write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` (mode 0644) through a temporary file and an atomic rename."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def is_init(task) -> bool:
    """Whether ``task`` (from the loaded collection) is this built-in ``init``, not a project's own."""
    return getattr(getattr(task, "body", None), "__module__", "") == __name__


def default_dir(args: list[str], at: int, collection) -> list[str]:
    """``args`` (a command line, ``args[at]`` the task name ``init``, no word after it) with DIR
    ``.`` added: invoke has no optional positional argument. Unchanged when the project's
    tasks.py has an ``init`` of its own.

    :param collection: ``(search_root, collection_name) -> invoke.Collection`` (the program's loader).
    """
    from concurdeploy.cli.argv import core_value

    coll = collection(core_value(args, ("-r", "--search-root")), core_value(args, ("-c", "--collection")))
    return args[:at + 1] + ["."] + args[at + 1:] if is_init(coll.tasks.get("init")) else args


@cdtask(positional=["dir"], help={
    "dir": "Folder of the new project (default: the current directory; created if missing).",
    "force": "Replace files of the scaffold that already exist (the project's other files are never touched).",
})
def init(c, dir=None, force=False):
    """Start a project: tasks.py, inventories/ (a sandbox), files/, concurdeploy.yaml, a CI example.

    Then, in that folder: concurdeploy push haproxy (the sandbox: four local hosts, no setup).
    """
    target = os.path.abspath(os.path.expanduser(dir or "."))
    if os.path.exists(target) and not os.path.isdir(target):
        raise Exit(f"concurdeploy: init {dir}: {target} exists and is not a folder; give a folder "
                   f"(new or existing); nothing was written", code=2)
    try:
        os.makedirs(target, exist_ok=True)
        if not os.access(target, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, "Permission denied")
    except OSError as e:
        raise Exit(f"concurdeploy: init {dir or '.'}: cannot create or write the folder {target}: "
                   f"{e.strerror or e}; give a folder you can write; nothing was written", code=2) from None
    files = scaffold_files()
    taken = [rel for rel in files if os.path.lexists(os.path.join(target, rel))]
    not_files = [rel for rel in taken if not os.path.isfile(os.path.join(target, rel))
                 or os.path.islink(os.path.join(target, rel))]
    if not_files:
        raise Exit(f"concurdeploy: init: {', '.join(not_files)} in {target} exist but are not plain files "
                   f"(a folder or a link); move them away; nothing was written", code=2)
    if taken and not force:
        raise Exit(f"concurdeploy: init: {len(taken)} of the files it would write already exist in {target}: "
                   f"{', '.join(taken)}. Nothing was written. Run it in a new folder (concurdeploy init "
                   f"DIR), or add --force to replace those files.", code=2)
    for rel, data in files.items():
        _write(os.path.join(target, *rel.split("/")), data)
        print(f"{'replaced' if rel in taken else 'created '}  {rel}")
    where = "" if target == os.getcwd() else f"cd {dir} && "
    print(f"\nNext: {where}concurdeploy push haproxy      # the sandbox: four local hosts, no setup\n"
          f"Then: examples/inventories/production.yaml shows how to point it at your servers.")


#: ``init --help`` shows ``[DIR]``: DIR may be left out (:func:`default_dir` adds ``.``).
init.optional_positional = ("dir",)
