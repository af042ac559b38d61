"""``install_as_celery()``: one line makes every ``import celery...`` in this process resolve to asyncq.compat.

    # proj/__init__.py, before anything imports celery
    import asyncq.compat
    asyncq.compat.install_as_celery()

This is PyMySQL's ``install_as_MySQLdb()`` for Celery: a project's dozens of ``from celery.X import Y`` lines
(``celery.schedules``, ``celery.signals``, ``celery.result``, ``celery.utils.log``, ...) keep working unchanged,
so moving is one line, not one edit per import. ``celery.X.Y`` resolves to ``asyncq.compat.X.Y`` whenever that
module exists; ``RENAMES`` covers Celery modules whose counterpart has another name (``celery.app.task`` is
``asyncq.compat.task``). A ``celery`` module asyncq has no counterpart for raises ``ModuleNotFoundError`` naming
the page of the migration guide that lists the differences.

Only a process that calls it is affected (``asyncq worker -A proj`` calls it before importing the project):
real Celery, if installed, keeps working everywhere else. The targets are the very module objects of
asyncq.compat (aliases, not copies), so ``celery.signals.task_failure is asyncq.compat.signals.task_failure``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType

from asyncq.compat.exceptions import ImproperlyConfigured

#: Celery module -> asyncq.compat module, where the names differ (every other celery.X.Y is asyncq.compat.X.Y)
RENAMES: dict[str, str] = {
    "celery": "asyncq.compat",
    "celery.app": "asyncq.compat.app",
    "celery.app.base": "asyncq.compat.app",
    "celery.app.task": "asyncq.compat.task",
    "celery.app.control": "asyncq.compat.control",
    "celery._state": "asyncq.compat._state",
    "celery.canvas": "asyncq.compat.canvas",
    "celery.result": "asyncq.compat.result",
    "celery.exceptions": "asyncq.compat.exceptions",
    "celery.signals": "asyncq.compat.signals",
    "celery.schedules": "asyncq.compat.schedules",
    "celery.states": "asyncq.compat.states",
    "celery.utils": "asyncq.compat.utils",
    "celery.utils.log": "asyncq.compat.utils.log",
    "celery.contrib": "asyncq.compat.contrib",
    "celery.contrib.abortable": "asyncq.compat.contrib.abortable",
}

DIFFERENCES = "migration_guide/15-differences.md"


def target_of(fullname: str) -> str | None:
    """The asyncq.compat module behind Celery module ``fullname``, or None if there is none."""
    if fullname in RENAMES:
        return RENAMES[fullname]
    parent, _, leaf = fullname.rpartition(".")
    parent_target = target_of(parent) if parent else None
    if parent_target is None:
        return None
    candidate = f"{parent_target}.{leaf}"
    try:
        found = importlib.util.find_spec(candidate)
    except ModuleNotFoundError:  # the parent target is not a package
        return None
    return candidate if found is not None else None


class _AliasLoader(importlib.abc.Loader):
    """Hands out an already imported module under a second name (nothing runs twice)."""

    def __init__(self, module: ModuleType) -> None:
        self.module = module

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return self.module

    def exec_module(self, module: ModuleType) -> None:
        return None


class CeleryFinder(importlib.abc.MetaPathFinder):
    """First on ``sys.meta_path`` once installed: answers every ``celery`` and ``celery.*`` import."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != "celery" and not fullname.startswith("celery."):
            return None
        name = target_of(fullname)
        if name is None:
            raise ModuleNotFoundError(
                f"No module named {fullname!r}: asyncq.compat.install_as_celery() is active in this process and "
                f"asyncq.compat has no counterpart of {fullname} (see {DIFFERENCES} for what to use instead)",
                name=fullname,
            )
        module = importlib.import_module(name)
        return importlib.util.spec_from_loader(fullname, _AliasLoader(module),
                                               is_package=hasattr(module, "__path__"))


def installed() -> bool:
    """True when ``import celery`` in this process gives asyncq.compat."""
    return any(isinstance(f, CeleryFinder) for f in sys.meta_path)


def install_as_celery() -> None:
    """Make ``import celery`` and every ``import celery.X`` in this process resolve to asyncq.compat.

    Call it before anything imports Celery (the top of your project package's ``__init__.py``; ``asyncq worker
    -A proj`` calls it itself). Calling it again does nothing. If real Celery was imported first, the process
    would hold two Celerys at once, so that is refused with the fix."""
    if installed():
        return
    loaded = sys.modules.get("celery")
    if loaded is not None:
        where = getattr(loaded, "__file__", None) or loaded.__name__
        raise ImproperlyConfigured(
            f"real Celery ({where}) was imported before asyncq.compat.install_as_celery(): call "
            "install_as_celery() first, at the top of your project package's __init__.py, before anything "
            "imports celery (under pytest, also pass -p no:celery if a Celery pytest plugin is loaded)"
        )
    for celery_name, target in RENAMES.items():
        module = importlib.import_module(target)
        sys.modules[celery_name] = module
        parent, _, leaf = celery_name.rpartition(".")
        if parent and not hasattr(sys.modules[parent], leaf):
            setattr(sys.modules[parent], leaf, module)  # `import celery.app.task` then `celery.app.task.Task`
    sys.meta_path.insert(0, CeleryFinder())


def uninstall_celery_alias() -> None:
    """Undo ``install_as_celery()`` (for tests): ``import celery`` finds real Celery again, if installed."""
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, CeleryFinder)]
    for name in [n for n in sys.modules if n == "celery" or n.startswith("celery.")]:
        if sys.modules[name].__name__.startswith("asyncq."):
            del sys.modules[name]


__all__ = ["RENAMES", "CeleryFinder", "install_as_celery", "installed", "target_of", "uninstall_celery_alias"]
