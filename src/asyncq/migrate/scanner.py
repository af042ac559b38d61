"""The second pass: walk each file's AST and report every Celery feature it uses, with asyncq's verdict.

Tasks (``@app.task``, ``@shared_task``, ``@current_app.task``, ``Task`` subclasses with ``run()``), their options
and custom bases, signals, imports, settings (app construction, ``conf.update``, ``app.conf.x = ...``, settings
modules), and the calls handled by ``calls.CallChecks``. Nothing from the scanned code is imported."""

from __future__ import annotations

import ast
from pathlib import Path

from asyncq.compat.task import Task
from asyncq.migrate import rules
from asyncq.migrate.calls import CallChecks
from asyncq.migrate.confkeys import classify, settings_key
from asyncq.migrate.model import SEVERITY, Finding, Report, TaskInfo, Verdict
from asyncq.migrate.project import ClassInfo, Module, Project, dotted, is_library, load

APP_NAMES = frozenset({"app", "celery", "celery_app", "current_app"})
BASE_HOOKS = frozenset({"run", "before_start", "on_success", "on_failure", "on_retry", "after_return"})
CELERY_ONLY_HOOKS = frozenset({"shadow_name", "on_bound", "send_event", "add_around"})
APP_SIGNALS = frozenset({"on_configure", "on_after_configure", "on_after_finalize", "on_after_fork"})


class FileScanner(ast.NodeVisitor, CallChecks):
    def __init__(self, project: Project, mod: Module, report: Report) -> None:
        self.project, self.mod, self.report = project, mod, report
        self.task: str | None = None
        self.task_async = False
        self.results: set[str] = set()
        self.inspectors: set[str] = set()
        self._nested: set[int] = set()

    def emit(self, node: ast.AST | int, feature: str, verdict: Verdict, detail: str = "") -> None:
        line = node if isinstance(node, int) else getattr(node, "lineno", 0)
        self.report.findings.append(Finding(self.mod.rel, line, feature, verdict, detail, self.task))

    def scan(self) -> None:
        if self.mod.name in self.project.settings:
            self._settings_module(self.project.settings[self.mod.name])
        self.visit(self.mod.tree)

    # --- imports ----------------------------------------------------------------------------------------------
    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            if is_library(a.name):
                self._import(node, a.name, None)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0 and node.module and is_library(node.module):
            for a in node.names:
                self._import(node, node.module, a.name)

    def _import(self, node: ast.AST, module: str, name: str | None) -> None:
        verdict, detail = rules.import_rule(module, name, self.project.installs_celery)
        if verdict is not Verdict.supported:
            self.emit(node, f"from {module} import {name}" if name else f"import {module}", verdict, detail)

    # --- tasks ------------------------------------------------------------------------------------------------
    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        task_deco = None
        for deco in node.decorator_list:
            self._signal(deco, node.name)
            if self._is_task_decorator(deco):
                task_deco = deco
            elif isinstance(deco, ast.Call):
                self.visit(deco)
        outer = (self.task, self.task_async, self.results, self.inspectors)
        self.results, self.inspectors = set(), set()
        if task_deco is not None:
            self._task(node, task_deco)
            fn = task_deco.func if isinstance(task_deco, ast.Call) else task_deco
            if isinstance(fn, ast.Attribute):
                self.visit_Attribute(fn)  # @current_app.task
        for stmt in node.body:
            self.visit(stmt)
        self.task, self.task_async, self.results, self.inspectors = outer

    visit_AsyncFunctionDef = visit_FunctionDef

    def _is_task_decorator(self, deco: ast.expr) -> bool:
        fn = deco.func if isinstance(deco, ast.Call) else deco
        if isinstance(fn, ast.Name):
            return fn.id == "shared_task" or self.origin(fn) == "shared_task"
        if isinstance(fn, ast.Attribute) and fn.attr in ("task", "shared_task"):
            base = fn.value
            if isinstance(base, ast.Name):
                return base.id in APP_NAMES or base.id in self.project.app_names or bool(self.origin(base))
            return fn.attr == "shared_task" or dotted(base).endswith(".app")
        return False

    def _task(self, node: ast.FunctionDef | ast.AsyncFunctionDef, deco: ast.expr) -> None:
        fn = deco.func if isinstance(deco, ast.Call) else deco
        kind = "@shared_task" if dotted(fn).endswith("shared_task") else f"@{dotted(fn)}"
        keywords = deco.keywords if isinstance(deco, ast.Call) else []
        given = {k.arg: k.value for k in keywords if k.arg is not None}
        name = self.resolve(given["name"]) if "name" in given else None
        name = name if isinstance(name, str) else f"{self.mod.name}.{node.name}"
        is_async = isinstance(node, ast.AsyncFunctionDef)
        self.report.tasks.append(TaskInfo(name, self.mod.rel, node.lineno, kind, is_async))
        self.task, self.task_async = name, is_async
        if is_async:
            self.emit(node, "async def body", Verdict.supported, "runs on the worker's event loop (Celery cannot)")
        base = given.get("base")
        info = self.project.classes.get(dotted(base).rsplit(".", 1)[-1]) if base is not None else None
        for key, value in given.items():
            if key == "base":
                self._base_option(value, info)
            else:
                self.emit(value, f"@task({key}=)", *rules.task_option_rule(key, info is not None))

    def _base_option(self, value: ast.expr, info: ClassInfo | None) -> None:
        if info is None:
            self.emit(value, f"@task(base={dotted(value)})", Verdict.check, "base class not found in the scanned code")
            return
        verdict, overrides = self._class_verdict(info)
        hooks = ", ".join(overrides) or "no methods"
        self.emit(value, f"@task(base={info.name})", verdict, f"custom base ({info.rel}:{info.line}) overrides: "
                  f"{hooks}")

    def _class_verdict(self, info: ClassInfo) -> tuple[Verdict, list[str]]:
        verdict = Verdict.supported
        for method in info.methods:
            v = self._method_rule(method)[0]
            if SEVERITY[v] > SEVERITY[verdict]:
                verdict = v
        return verdict, sorted(info.methods)

    @staticmethod
    def _method_rule(method: str) -> rules.Rule:
        if method == "__call__":
            return Verdict.unsupported, ("the asyncq worker calls run() directly: a __call__ override only runs on "
                                         "direct calls; move that code into before_start/after_return or run()")
        if method in CELERY_ONLY_HOOKS:
            return Verdict.unsupported, f"asyncq.compat never calls {method}()"
        if method == "__init__":
            return Verdict.check, "the task is instantiated once, when it is defined"
        if method in BASE_HOOKS or hasattr(Task, method):
            return Verdict.supported, ""
        return Verdict.supported, "your own method"

    # --- classes: custom bases and class-based tasks -------------------------------------------------------
    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        info = self.project.classes.get(node.name)
        if info is not None and self._is_task_class(info, 0):
            for method, line in info.methods.items():
                verdict, detail = self._method_rule(method)
                if method != "run" and (verdict is not Verdict.supported or method in BASE_HOOKS):
                    self.emit(line, f"{node.name}.{method}()", verdict, detail or "called by asyncq.compat")
            for attr, value in info.attrs.items():
                if attr == "name" or attr.startswith("_"):
                    continue
                if attr == "abstract":
                    self.emit(value, f"{node.name}.abstract", Verdict.no_effect, "not needed in Celery 4+ either")
                else:
                    self.emit(value, f"{node.name}.{attr}", *rules.task_option_rule(attr, True))
            if "run" in info.methods:
                name = self.resolve(info.attrs.get("name"))
                name = name if isinstance(name, str) else f"{self.mod.name}.{node.name}"
                self.report.tasks.append(TaskInfo(name, self.mod.rel, node.lineno, "class"))
                self.task = name
                self.emit(node, "class-based task", Verdict.supported, "register it with app.register_task(), as "
                          "in Celery")
        self.generic_visit(node)
        self.task = None

    def _is_task_class(self, info: ClassInfo, depth: int) -> bool:
        for base in info.bases:
            last = base.rsplit(".", 1)[-1]
            if last == "Task" and (base != "Task" or self.project.origin(self.mod, "Task") or "Task" not in
                                   self.mod.imports):
                return True
            parent = self.project.classes.get(last)
            if parent is not None and parent is not info and depth < 5 and self._is_task_class(parent, depth + 1):
                return True
        return False

    # --- signals ----------------------------------------------------------------------------------------------
    def _signal(self, deco: ast.expr, receiver: str) -> None:
        fn = deco.func if isinstance(deco, ast.Call) else deco
        if not (isinstance(fn, ast.Attribute) and fn.attr == "connect"):
            return
        target = fn.value
        if isinstance(target, ast.Attribute) and target.attr in APP_SIGNALS and target.attr in rules.signals_sent():
            self.emit(deco, f"app.{target.attr}.connect", Verdict.supported, "sent when the app is first used")
            return
        if isinstance(target, ast.Attribute) and target.attr in APP_SIGNALS:
            self.emit(deco, f"app.{target.attr}.connect", Verdict.unsupported,
                      "never sent by asyncq.compat: the receiver never runs; call app.add_periodic_task(...) at "
                      "module level, or use beat_schedule" if target.attr == "on_after_configure" else
                      f"asyncq.compat's Celery has no {target.attr}")
            return
        name, local = None, None
        if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and (
                target.value.id == "signals" or self.origin(target.value) in ("signals", "celery.signals")):
            name, local = target.attr, target.value.id
        elif isinstance(target, ast.Name) and self.origin(target):
            name, local = target.id, target.id
        if name is None:
            return
        verdict, detail = rules.signal_rule(name)
        source = self.project.origin_module(self.mod, local) if local else None
        if verdict is Verdict.supported and source is not None and rules.is_real_celery(source) and \
                not self.project.installs_celery:
            line = self.mod.imports.get(local or "", ("", None))
            self.emit(deco, f"signal {name}", Verdict.change, f"connected to real Celery's {name} (imported from "
                      f"{line[0]}), which asyncq never sends: the receiver never runs until that import changes")
            return
        self.emit(deco, f"signal {name}", verdict, detail)

    # --- calls, assignments -----------------------------------------------------------------------------------
    def visit_Call(self, node: ast.Call) -> None:
        self._signal(node, "")
        self.check_call(node)
        self.generic_visit(node)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if isinstance(node.op, ast.BitOr) and id(node) not in self._nested and self.is_canvas(node):
            self.emit(node, "canvas |", Verdict.supported)
            for side in (node.left, node.right):
                for sub in ast.walk(side):
                    if isinstance(sub, ast.BinOp):
                        self._nested.add(id(sub))
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.value, ast.Name) and self.origin(node.value) == "current_app":
            self.emit(node, f"current_app.{node.attr}", Verdict.supported,
                      "asyncq.compat's current_app is a proxy to the current app, as Celery's")
        elif (isinstance(node.value, ast.Name) and self._is_app(node.value) and node.attr not in APP_SIGNALS
              and rules.app_attr_missing(node.attr)):
            self.emit(node, f"app.{node.attr}", Verdict.unsupported, f"asyncq.compat's Celery has no {node.attr}: "
                      "AttributeError when this line runs")
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        value = node.value
        for target in node.targets:
            if isinstance(target, ast.Name) and isinstance(value, ast.Call):
                fn = value.func
                if isinstance(fn, ast.Attribute) and fn.attr in ("delay", "apply_async", "send_task", "AsyncResult"):
                    self.results.add(target.id)
                elif isinstance(fn, ast.Attribute) and fn.attr == "inspect":
                    self.inspectors.add(target.id)
            conf_key = self._conf_target(target)
            if conf_key is not None:
                for line, feature, verdict, detail in classify(conf_key, value, self.resolve, node.lineno):
                    self.emit(line, feature, verdict, detail)
        self.generic_visit(node)

    def _conf_target(self, target: ast.expr) -> str | None:
        if isinstance(target, ast.Attribute) and dotted(target.value).endswith("conf"):
            return target.attr
        if isinstance(target, ast.Subscript) and dotted(target.value).endswith("conf"):
            key = self.resolve(target.slice)
            return key if isinstance(key, str) else None
        return None

    def _settings_module(self, namespace: str | None) -> None:
        for stmt in self.mod.tree.body:
            if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)):
                continue
            name = stmt.targets[0].id
            key, skipped = settings_key(name, namespace)
            if key is not None:
                for line, feature, verdict, detail in classify(key, stmt.value, self.resolve, stmt.lineno):
                    self.emit(line, f"{feature} ({name})" if name != key else feature, verdict, detail)
            elif skipped is not None:
                hits = classify(skipped, stmt.value, self.resolve, stmt.lineno)
                verdict = Verdict.no_effect if all(h[2] is Verdict.no_effect for h in hits) else Verdict.change
                self.emit(stmt, f"setting {name}", verdict, f"asyncq.compat ignores this old name silently: rename "
                          f"it to {skipped} ({hits[0][3] or 'honoured'})")


def scan(paths: list[Path], exclude: list[str] | None = None) -> Report:
    """Scan files and folders; the report lists tasks, findings and the files that could not be read."""
    root = Path.cwd()
    report = Report(root=", ".join(str(p) for p in paths))
    project = load(root, paths, exclude or [])
    report.errors.extend(project.errors)
    for mod in project.modules:
        FileScanner(project, mod, report).scan()
    report.files_scanned = len(project.modules)
    report.findings.sort(key=lambda f: (f.path, f.line))
    report.tasks.sort(key=lambda t: (t.path, t.line))
    return report
