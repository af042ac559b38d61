"""A stand-in for ``asyncq.compat.install_as_celery()`` while that function does not exist yet (issue #13).

``install()`` makes ``celery`` and ``celery.X.Y`` resolve to wrapper modules over ``asyncq.compat`` and
``asyncq.compat.X.Y`` (or a renamed module, RENAMES). A handful of names Celery's test modules import at
module level and asyncq.compat lacks get STAND-INS (inert placeholders, listed in STANDINS and in the report),
so a file can be collected at all; a test that *uses* one of them fails like any missing feature. Only the
runner's asyncq column uses this; real Celery is never touched in that process because ``celery`` never
resolves to it there.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from typing import Any

from asyncq.compat import states as _states

RENAMES = {
    "celery": "asyncq.compat",
    "celery.app.task": "asyncq.compat.task",
    "celery.app": "asyncq.compat.app",
}


class UnpickleableExceptionWrapper(Exception):
    """Stand-in for Celery's wrapper of exceptions that cannot be pickled."""


class BaseKeyValueStoreBackend:
    """Stand-in: asyncq has no Celery backend classes (a test that patches one fails)."""


def _worker_state() -> types.SimpleNamespace:
    return types.SimpleNamespace(revoked_stamps=set(), revoked=set())


#: (module, name) -> stand-in, for names Celery's test modules import at module level
STANDINS: dict[tuple[str, str], Any] = {
    ("celery.utils.serialization", "UnpickleableExceptionWrapper"): UnpickleableExceptionWrapper,
    ("celery.backends.base", "BaseKeyValueStoreBackend"): BaseKeyValueStoreBackend,
    ("celery.backends.base", "states"): _states,
    ("celery.worker", "state"): _worker_state(),
}
#: modules with no asyncq.compat counterpart that exist only for their stand-ins
EMPTY = {mod for mod, _ in STANDINS} | {"celery.utils", "celery.backends", "celery.worker"}
USED: set[str] = set()


def _target(fullname: str) -> types.ModuleType | None:
    name = RENAMES.get(fullname) or "asyncq.compat." + fullname.removeprefix("celery.")
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and name.startswith(exc.name):
            return None
        raise


class _Wrapper(types.ModuleType):
    def __init__(self, fullname: str, target: types.ModuleType | None) -> None:
        super().__init__(fullname)
        self.__path__: list[str] = []
        self._target = target

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        target = self.__dict__.get("_target")
        if target is not None and hasattr(target, name):
            return getattr(target, name)
        key = (self.__name__, name)
        if key in STANDINS:
            USED.add(f"{self.__name__}.{name}")
            return STANDINS[key]
        sub = f"{self.__name__}.{name}"
        if sub in sys.modules:
            return sys.modules[sub]
        raise AttributeError(f"module {self.__name__!r} (asyncq.compat) has no attribute {name!r}")


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != "celery" and not fullname.startswith("celery."):
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        target = _target(spec.name)
        if target is None and spec.name not in EMPTY:
            raise ModuleNotFoundError(f"No module named {spec.name!r} (asyncq.compat has no counterpart)",
                                      name=spec.name)
        return _Wrapper(spec.name, target)

    def exec_module(self, module: types.ModuleType) -> None:
        module.__spec__.submodule_search_locations = []  # type: ignore[union-attr]


def install() -> None:
    """Alias ``celery`` to asyncq.compat in this process (refused if real Celery was imported already)."""
    if "celery" in sys.modules and not isinstance(sys.modules["celery"], _Wrapper):
        raise RuntimeError("real celery is already imported in this process; install the alias first")
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


def fill_gaps() -> list[str]:
    """With asyncq's real alias installed: put the stand-ins where the aliased modules lack a name (a stand-in
    module in ``sys.modules`` where the whole module is missing). Returns what was filled, for the report."""
    filled: list[str] = []
    for (mod, name), value in STANDINS.items():
        parts = mod.split(".")
        for i in range(2, len(parts) + 1):
            prefix = ".".join(parts[:i])
            try:
                importlib.import_module(prefix)
            except ModuleNotFoundError:
                stub = types.ModuleType(prefix)
                stub.__path__ = []
                sys.modules[prefix] = stub
                setattr(sys.modules[".".join(parts[: i - 1])], parts[i - 1], stub)
                filled.append(f"module {prefix}")
        module = sys.modules[mod]
        if not hasattr(module, name):
            setattr(module, name, value)
            filled.append(f"{mod}.{name}")
    return filled
