"""Calls in a Celery codebase: sending (``delay``, ``apply_async``, ``send_task``), canvas, ``retry``,
``update_state``, ``.get()`` on results, ``app.control`` / ``inspect()``, ``on_commit`` and the app's own
methods. A mixin of the file scanner: it uses ``emit``, ``project``, ``mod`` and the current task."""

from __future__ import annotations

import ast
from typing import Any

from asyncq.migrate import rules
from asyncq.migrate.confkeys import UNKNOWN, classify, schedule_hits
from asyncq.migrate.model import Verdict
from asyncq.migrate.project import ClassInfo, Module, Project, dotted

SENDERS = frozenset({"delay", "apply_async", "send_task", "AsyncResult"})
SIGNATURES = frozenset({"s", "si", "signature"})
TASK_CANVAS = frozenset({"map", "starmap", "chunks"})
CANVAS = frozenset({"chain", "group", "chord", "signature", "subtask"})
GET_KWARGS = frozenset({"timeout", "propagate", "interval", "disable_sync_subtasks", "follow_parents", "no_ack"})
APP_METHODS_OK = {
    "config_from_object": "", "config_from_envvar": "",
    "autodiscover_tasks": "imports <package>.tasks at once (asyncq has no lazy finalize)",
}


class CallChecks:
    project: Project
    mod: Module
    task: str | None
    task_async: bool
    results: set[str]
    inspectors: set[str]

    def emit(self, node: ast.AST | int, feature: str, verdict: Verdict, detail: str = "") -> None:
        raise NotImplementedError

    def origin(self, node: ast.expr) -> str | None:
        return self.project.origin(self.mod, node.id) if isinstance(node, ast.Name) else None

    def resolve(self, node: ast.expr | None) -> Any:
        return self.project.resolve(self.mod, node)

    # --- dispatch -------------------------------------------------------------------------------------------------
    def check_call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name):
            self._named_call(node, self.origin(func) or "")
        elif isinstance(func, ast.Attribute):
            self._method_call(node, func.attr, func.value)

    def _named_call(self, node: ast.Call, origin: str) -> None:
        if origin == "Celery" or origin.endswith(".Celery"):
            self.celery_app(node)
        elif origin in CANVAS:
            self.emit(node, f"canvas {origin}()", Verdict.supported)
        elif origin == "solar":
            self.emit(node, "solar()", Verdict.unsupported, "solar schedules are not supported")
        elif dotted(node.func) in ("on_commit", "transaction.on_commit"):
            self._on_commit(node)

    def _method_call(self, node: ast.Call, attr: str, recv: ast.expr) -> None:
        for handler in (self._sending, self._in_task, self._app_call):
            if handler(node, attr, recv):
                return
        self._control(node, attr, recv)

    def _sending(self, node: ast.Call, attr: str, recv: ast.expr) -> bool:
        if attr in ("delay", "apply_async", "send_task"):
            self._send(node, attr)
        elif attr in SIGNATURES and (attr != "signature" or self._is_task(recv)):
            self.emit(node, f"canvas .{attr}()", Verdict.supported)
        elif attr in TASK_CANVAS and self._is_task(recv):
            self.emit(node, f"canvas .{attr}()", Verdict.supported, "runs as one celery.map/starmap job per chunk")
        elif attr in ("delay_on_commit", "apply_async_on_commit"):
            self.emit(node, f".{attr}()", Verdict.supported, "Django's transaction (apply_async_on_commit also "
                      "takes a SQLAlchemy session=)")
        elif attr == "on_commit":
            self._on_commit(node)
        else:
            return False
        return True

    def _in_task(self, node: ast.Call, attr: str, recv: ast.expr) -> bool:
        recv_name = dotted(recv)
        if attr == "retry" and (recv_name == "self" or self._is_task(recv)):
            self._retry(node)
        elif attr == "update_state" and self.task is not None:
            self.emit(node, "self.update_state()", Verdict.supported, "AsyncResult.state / .info show it")
        elif attr == "replace" and recv_name == "self" and self.task is not None:
            self.emit(node, "self.replace()", Verdict.supported, "as in Celery (docs/replace-and-stamping.md)")
        elif attr == "get" and self._is_result(node, recv):
            self._get(node)
        elif attr == "then" and self._is_result(node, recv):
            self.emit(node, "AsyncResult.then()", Verdict.unsupported, "raises NotImplementedError: use link=")
        else:
            return False
        return True

    def _app_call(self, node: ast.Call, attr: str, recv: ast.expr) -> bool:
        if attr == "register_task":
            self.emit(node, "app.register_task()", Verdict.supported, "class-based tasks, as in Celery")
        elif attr == "add_periodic_task":
            self.emit(node, "app.add_periodic_task()", Verdict.supported)
            if node.args:
                for line, feature, verdict, detail in schedule_hits(node.args[0], "periodic task"):
                    self.emit(line, feature, verdict, detail)
        elif attr in APP_METHODS_OK and self._is_app(recv):
            self.emit(node, f"app.{attr}()", Verdict.supported, APP_METHODS_OK[attr])
        elif attr == "update" and dotted(recv).endswith(".conf"):
            self.conf_update(node)
        else:
            return False
        return True

    # --- pieces -----------------------------------------------------------------------------------------------------
    def _send(self, node: ast.Call, attr: str) -> None:
        self.emit(node, f".{attr}()", Verdict.supported)
        if attr == "delay":
            return  # delay(*args, **kwargs): its keywords are the task's own arguments, not options
        skip = {"args", "kwargs"} | ({"countdown", "eta", "task_id"} if attr == "send_task" else set())
        for kw in node.keywords:
            if kw.arg is None:
                self.emit(node, f".{attr}(**...)", Verdict.check, "options passed with ** are not checked")
            elif kw.arg not in skip:
                self.emit(node, f".{attr}({kw.arg}=)", *rules.call_option_rule(kw.arg))

    def _retry(self, node: ast.Call) -> None:
        self.emit(node, "self.retry()", Verdict.supported, "an asyncq retry of the same job")
        for kw in node.keywords:
            if kw.arg is not None and kw.arg not in rules.RETRY_SUPPORTED:
                self.emit(node, f"self.retry({kw.arg}=)", *rules.retry_option_rule(kw.arg))

    def _get(self, node: ast.Call) -> None:
        if self.task is None:
            self.emit(node, "result.get()", Verdict.supported, "wakes on the job's done notification")
            return
        sync_ok = any(k.arg == "disable_sync_subtasks" and isinstance(k.value, ast.Constant) and k.value.value is False
                      for k in node.keywords)
        if not sync_ok:
            self.emit(node, "result.get() inside a task", Verdict.unsupported, "raises RuntimeError, as in Celery: "
                      "use a chain/chord, or `await result` in an async def task")
        elif self.task_async:
            self.emit(node, "result.get() inside an async task", Verdict.change, "blocks the worker's event loop: "
                      "use `await result`")
        else:
            self.emit(node, "result.get() inside a task", Verdict.check, "blocks one of the worker's threads")

    def _on_commit(self, node: ast.Call) -> None:
        arg = node.args[0] if node.args else None
        inner = arg.body if isinstance(arg, ast.Lambda) else arg
        if isinstance(inner, ast.Call) and dotted(inner.func).endswith("partial") and inner.args:
            inner = inner.args[0]
        target = inner.func if isinstance(inner, ast.Call) else inner
        if isinstance(target, ast.Attribute) and target.attr in ("delay", "apply_async"):
            better = "delay_on_commit" if target.attr == "delay" else "apply_async_on_commit"
            self.emit(node, f"on_commit(... .{target.attr} ...)", Verdict.change,
                      f"works as is; clearer: {dotted(target.value)}.{better}(...)")

    def _control(self, node: ast.Call, attr: str, recv: ast.expr) -> None:
        recv_name = dotted(recv)
        if recv_name.endswith(".control") or recv_name == "control":
            self.emit(node, f"app.control.{attr}()", *rules.control_rule(attr))
        elif self._is_inspector(recv):
            self.emit(node, f"inspect().{attr}()", *rules.inspect_rule(attr))

    def _is_inspector(self, recv: ast.expr) -> bool:
        if isinstance(recv, ast.Name):
            return recv.id in self.inspectors
        return isinstance(recv, ast.Call) and isinstance(recv.func, ast.Attribute) and recv.func.attr == "inspect" \
            and dotted(recv.func.value).endswith("control")

    def _is_task(self, recv: ast.expr) -> bool:
        name = recv.attr if isinstance(recv, ast.Attribute) else recv.id if isinstance(recv, ast.Name) else ""
        return name in self.project.task_names

    def _is_app(self, recv: ast.expr) -> bool:
        return isinstance(recv, ast.Name) and (recv.id in self.project.app_names or recv.id in ("app", "celery"))

    def _is_group(self, node: ast.expr) -> bool:
        return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and self.origin(node.func) == "group"

    def _is_result(self, node: ast.Call, recv: ast.expr) -> bool:
        if node.args:
            return False
        if isinstance(recv, ast.Name) and recv.id in self.results:
            return True
        if isinstance(recv, ast.Call):
            fn = recv.func
            name = fn.attr if isinstance(fn, ast.Attribute) else self.origin(fn) or ""
            if name in SENDERS or name in ("apply_async", "delay"):
                return True
        return bool(node.keywords) and all(k.arg in GET_KWARGS for k in node.keywords)

    def is_canvas(self, node: ast.expr) -> bool:
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            return self.is_canvas(node.left) or self.is_canvas(node.right)
        if not isinstance(node, ast.Call):
            return False
        fn = node.func
        if isinstance(fn, ast.Attribute):
            return fn.attr in SIGNATURES or (fn.attr in TASK_CANVAS and self._is_task(fn.value))
        return self.origin(fn) in CANVAS

    # --- app construction and configuration -------------------------------------------------------------------------
    def celery_app(self, node: ast.Call) -> None:
        self.emit(node, "Celery(...)", Verdict.supported, "asyncq.compat.Celery")
        given: dict[str, ast.expr] = {k.arg: k.value for k in node.keywords if k.arg is not None}
        if len(node.args) >= 3:
            given.setdefault("backend", node.args[2])
        if "broker" not in given and "broker_url" not in given:
            self.emit(node, "broker (not given)", Verdict.check, "config or $ASYNCQ_REDIS_URL, else "
                      "redis://127.0.0.1:6379/0 (Celery's default is amqp://)")
        for key, value in given.items():
            if key in ("main", "include", "set_as_current"):
                continue
            if key == "task_cls":
                self.emit(node, "Celery(task_cls=)", *self.task_cls_rule(value))
                continue
            if key in ("loader", "namespace"):
                self.emit(node, f"Celery({key}=)", Verdict.no_effect, "accepted and ignored")
                continue
            conf_key = {"broker": "broker_url", "backend": "result_backend"}.get(key, key)
            for line, feature, verdict, detail in classify(conf_key, value, self.resolve, value.lineno):
                self.emit(line, feature, verdict, detail)

    def task_cls_rule(self, value: ast.expr) -> rules.Rule:
        """``Celery(task_cls=X)``: X (a class or a ``"module:Class"`` string) must not be built on real Celery's
        Task (the worker refuses the app: "is a Celery, not an asyncq App")."""
        literal = self.resolve(value)
        name = literal.replace(":", ".").rsplit(".", 1)[-1] if isinstance(literal, str) else dotted(value).rsplit(
            ".", 1)[-1]
        info = self.project.classes.get(name)
        if info is None:
            return Verdict.check, f"{name or 'the class'} is not in the scanned code: it must subclass " \
                "asyncq.compat.Task"
        real = self.real_celery_base(info, 0)
        if real is None:
            return Verdict.supported, ""
        fix = (f"add {rules.INSTALL_LINE} at the top of the project package, or base {info.name} on "
               "asyncq.compat.Task" if rules.can_install_as_celery() and not self.project.installs_celery
               else f"base {info.name} on asyncq.compat.Task")
        return Verdict.unsupported, f"{info.name} ({info.rel}:{info.line}) is built on real {real}: {fix}"

    def real_celery_base(self, info: ClassInfo, depth: int) -> str | None:
        """``celery.Task`` (or the like) if the class derives from real Celery's Task, else None."""
        mod = self.project.by_rel(info.rel)
        for base in info.bases:
            head, _, last = base.rpartition(".")
            if mod is not None:
                source = (self.project.origin_module(mod, head.split(".")[0]) if head
                          else self.project.origin_module(mod, last))
                if source is not None and rules.is_real_celery(source) and not self.project.installs_celery:
                    return f"{source}.{last}" if last == "Task" else base
            parent = self.project.classes.get(last)
            if parent is not None and parent is not info and depth < 5:
                found = self.real_celery_base(parent, depth + 1)
                if found is not None:
                    return found
        return None

    def conf_update(self, node: ast.Call) -> None:
        items: list[tuple[str, ast.expr]] = [(k.arg, k.value) for k in node.keywords if k.arg is not None]
        if node.args and isinstance(node.args[0], ast.Dict):
            d = node.args[0]
            items += [(k, v) for kn, v in zip(d.keys, d.values, strict=True)
                      if isinstance(k := self.resolve(kn) if kn is not None else UNKNOWN, str)]
        elif node.args or any(k.arg is None for k in node.keywords):
            self.emit(node, "app.conf.update(...)", Verdict.check, "settings not given as literals: not checked")
        for key, value in items:
            for line, feature, verdict, detail in classify(key, value, self.resolve, value.lineno):
                self.emit(line, feature, verdict, detail)
