"""The first pass over a codebase: find and parse its ``.py`` files (never importing them), and index what the
second pass needs across files: imports, module constants, task and app names, classes, settings modules."""

from __future__ import annotations

import ast
import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncq.migrate._parse import parse
from asyncq.migrate.confkeys import UNKNOWN
from asyncq.migrate.model import FileError

SKIP_DIRS = frozenset({".git", ".hg", ".tox", ".nox", ".venv", "venv", "env", "node_modules", "__pycache__",
                       "site-packages", "build", "dist", ".mypy_cache", ".ruff_cache", ".pytest_cache"})
LIBRARIES = ("celery", "asyncq.compat")
TASK_DECORATORS = frozenset({"task", "shared_task"})


def is_library(module: str) -> bool:
    return any(module == lib or module.startswith(lib + ".") for lib in LIBRARIES)


@dataclass
class Module:
    path: Path
    rel: str
    name: str
    tree: ast.Module
    imports: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # local -> (module, name)
    constants: dict[str, ast.expr] = field(default_factory=dict)


@dataclass
class ClassInfo:
    name: str
    rel: str
    line: int
    bases: list[str]
    methods: dict[str, int]  # name -> line
    attrs: dict[str, ast.expr]


@dataclass
class Project:
    root: Path
    modules: list[Module] = field(default_factory=list)
    errors: list[FileError] = field(default_factory=list)
    task_names: set[str] = field(default_factory=set)
    app_names: set[str] = field(default_factory=set)
    classes: dict[str, ClassInfo] = field(default_factory=dict)
    settings: dict[str, str | None] = field(default_factory=dict)  # module name -> namespace
    #: the project calls ``asyncq.compat.install_as_celery()``: ``celery.*`` imports resolve to asyncq.compat
    installs_celery: bool = False

    # --- lookups ----------------------------------------------------------------------------------------------
    def module(self, dotted: str) -> Module | None:
        dotted = dotted.lstrip(".")
        if not dotted:
            return None
        for m in self.modules:
            if m.name == dotted or dotted.endswith("." + m.name) or m.name.endswith("." + dotted):
                return m
        return None

    def origin(self, mod: Module, local: str, depth: int = 0) -> str | None:
        """The Celery / asyncq.compat name a local name stands for (through re-exporting project modules)."""
        if local not in mod.imports or depth > 5:
            return None
        source, name = mod.imports[local]
        if is_library(source):
            return name or source
        other = self.module(source)
        if other is None or other is mod:
            return None
        return self.origin(other, name, depth + 1) if name else None

    def origin_module(self, mod: Module, local: str, depth: int = 0) -> str | None:
        """The library module (``celery.signals``, ``asyncq.compat``...) a local name was imported from."""
        if local not in mod.imports or depth > 5:
            return None
        source, name = mod.imports[local]
        if is_library(source):
            return source
        other = self.module(source)
        if other is None or other is mod or not name:
            return None
        return self.origin_module(other, name, depth + 1)

    def by_rel(self, rel: str) -> Module | None:
        return next((m for m in self.modules if m.rel == rel), None)

    def resolve(self, mod: Module, node: ast.expr | None, depth: int = 0) -> Any:
        """A node's value when it is a literal, a module constant (here or imported) or an env lookup's default."""
        if node is None or depth > 5:
            return UNKNOWN
        try:
            return ast.literal_eval(node)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            pass
        if isinstance(node, ast.Name):
            if node.id in mod.constants:
                return self.resolve(mod, mod.constants[node.id], depth + 1)
            source, name = mod.imports.get(node.id, ("", None))
            other = self.module(source) if source and name and not is_library(source) else None
            if other is not None and name in other.constants:
                return self.resolve(other, other.constants[name], depth + 1)
        if isinstance(node, ast.Call) and _dotted(node.func) in ("os.environ.get", "os.getenv", "environ.get",
                                                                  "getenv") and len(node.args) == 2:
            return self.resolve(mod, node.args[1], depth + 1)
        return UNKNOWN


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


dotted = _dotted


def files(paths: Iterable[Path], exclude: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_file():
            out.append(p)
            continue
        for f in sorted(p.rglob("*.py")):
            rel = f.relative_to(p)
            if any(part in SKIP_DIRS for part in rel.parts[:-1]):
                continue
            if any(fnmatch.fnmatch(str(rel), pat) or fnmatch.fnmatch(f.name, pat) for pat in exclude):
                continue
            out.append(f)
    return out


def module_name(path: Path) -> str:
    """The dotted name Python would import the file as: walk up while the folder is a package."""
    path = path.resolve()
    parts = [] if path.name == "__init__.py" else [path.stem]
    folder = path.parent
    while (folder / "__init__.py").exists() and folder.parent != folder:
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts) or path.stem


def display(path: Path) -> str:
    cwd = Path.cwd()
    resolved = path.resolve()
    return str(resolved.relative_to(cwd)) if resolved.is_relative_to(cwd) else str(resolved)


def load(root: Path, paths: list[Path], exclude: list[str]) -> Project:
    project = Project(root=root)
    for f in files(paths, exclude):
        rel = display(f)
        try:
            tree = parse(f.read_bytes(), filename=rel)
        except SyntaxError as exc:
            project.errors.append(FileError(rel, f"does not parse: {exc.msg} (line {exc.lineno})"))
            continue
        except (OSError, ValueError) as exc:
            project.errors.append(FileError(rel, f"cannot be read: {exc}"))
            continue
        module = Module(f, rel, module_name(f), tree)
        project.modules.append(module)
    for module in project.modules:
        _index(project, module)
    for module in project.modules:
        if module.name.rsplit(".", 1)[-1] == "celeryconfig":
            project.settings.setdefault(module.name, None)
    return project


def _index(project: Project, mod: Module) -> None:
    package = mod.name.split(".") if mod.path.name == "__init__.py" else mod.name.split(".")[:-1]
    for node in ast.walk(mod.tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            _index_import(mod, node, package)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if any(_decorator_name(d) in TASK_DECORATORS for d in node.decorator_list):
                project.task_names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            project.classes[node.name] = ClassInfo(
                node.name, mod.rel, node.lineno, [_dotted(b) for b in node.bases],
                {s.name: s.lineno for s in node.body if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef)},
                {t.id: s.value for s in node.body if isinstance(s, ast.Assign) for t in s.targets
                 if isinstance(t, ast.Name)},
            )
        elif isinstance(node, ast.Call):
            _index_call(project, mod, node)
    for stmt in mod.tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            mod.constants[stmt.targets[0].id] = stmt.value
            if isinstance(stmt.value, ast.Call) and _dotted(stmt.value.func).rsplit(".", 1)[-1] == "Celery":
                project.app_names.add(stmt.targets[0].id)


def _index_import(mod: Module, node: ast.Import | ast.ImportFrom, package: list[str]) -> None:
    if isinstance(node, ast.Import):
        for a in node.names:
            mod.imports[a.asname or a.name.split(".")[0]] = (a.name if a.asname else a.name.split(".")[0], None)
        return
    source = node.module or ""
    if node.level:  # kept with a leading dot: never mistaken for the celery library
        base = package[: len(package) - node.level + 1]
        source = "." + ".".join([*base, source] if source else base)
    for a in node.names:
        mod.imports[a.asname or a.name] = (source, a.name)


def _index_call(project: Project, mod: Module, node: ast.Call) -> None:
    if _dotted(node.func).rsplit(".", 1)[-1] == "install_as_celery":
        project.installs_celery = True
        return
    if not (isinstance(node.func, ast.Attribute) and node.func.attr == "config_from_object" and node.args):
        return
    namespace = next((project.resolve(mod, k.value) for k in node.keywords if k.arg == "namespace"), None)
    target = project.resolve(mod, node.args[0])
    if not isinstance(target, str) and isinstance(node.args[0], ast.Name):
        source, name = mod.imports.get(node.args[0].id, ("", None))
        target = f"{source}.{name}" if name else source
    if not isinstance(target, str):
        return
    namespace = namespace if isinstance(namespace, str) else None
    module_name = target.partition(":")[0]
    if module_name == "django.conf":  # Django: the settings modules are the project's settings*.py
        for m in project.modules:
            if _is_django_settings(m):
                project.settings[m.name] = namespace
        return
    found = project.module(module_name)
    if found is not None:
        project.settings[found.name] = namespace


def _is_django_settings(m: Module) -> bool:
    """``settings.py``, ``settings_*.py``, or any file in a ``settings/`` folder, package or not (a folder
    without ``__init__.py`` imported as a namespace package is common: ``settings/base.py``, ``settings/prod.py``)."""
    parts = [*Path(m.rel).parent.parts, Path(m.rel).stem]
    return any(p == "settings" or p.startswith("settings_") for p in [*m.name.split("."), *parts])


def _decorator_name(node: ast.expr) -> str:
    if isinstance(node, ast.Call):
        node = node.func
    return _dotted(node).rsplit(".", 1)[-1]
