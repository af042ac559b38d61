"""The verdict tables: what asyncq.compat does with each Celery task option, call option, signal, control
method and import, taken from asyncq.compat itself (its option sets, its classes, and a parse of its source for
the signals it sends and the settings it reads), so the scanner cannot drift from the code it judges."""

from __future__ import annotations

import ast
import functools
import importlib
from pathlib import Path

from asyncq.compat import Celery as CompatCelery
from asyncq.compat import signals as compat_signals
from asyncq.compat.app import TASK_OPTIONS
from asyncq.compat.control import Control, Inspect
from asyncq.compat.publish import IGNORED, OPTIONS
from asyncq.compat.task import Task
from asyncq.migrate._parse import parse
from asyncq.migrate.model import Verdict

Rule = tuple[Verdict, str]

COMPAT_DIR = Path(importlib.import_module("asyncq.compat").__file__ or ".").parent


@functools.cache
def _compat_facts() -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(signals asyncq.compat sends, ``conf.<key>`` settings it reads, task attributes it reads), from its
    source."""
    sent: set[str] = set()
    read: set[str] = set()
    task_attrs: set[str] = set()
    for path in COMPAT_DIR.glob("*.py"):
        tree = parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
                    and len(node.args) >= 2 and isinstance(node.args[0], ast.Name) and node.args[0].id == "task"
                    and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
                task_attrs.add(node.args[1].value)
            if not isinstance(node, ast.Attribute):
                continue
            inner = node.value
            if isinstance(inner, ast.Name) and isinstance(node.ctx, ast.Load) and (
                    inner.id == "task" or (inner.id == "self" and path.name == "task.py")):
                task_attrs.add(node.attr)
            if node.attr == "send" and isinstance(inner, ast.Attribute):
                sent.add(inner.attr)  # signals.task_prerun.send(...), self.on_after_configure.send(...)
            is_conf = (isinstance(inner, ast.Attribute) and inner.attr == "conf") or (
                isinstance(inner, ast.Name) and inner.id == "conf")
            if is_conf and path.name != "config.py" and isinstance(node.ctx, ast.Load):
                read.add(node.attr)
    return frozenset(sent), frozenset(read - {"update", "from_object", "get"}), frozenset(task_attrs)


def signals_sent() -> frozenset[str]:
    return _compat_facts()[0]


def settings_read() -> frozenset[str]:
    return _compat_facts()[1]


def task_attrs_read() -> frozenset[str]:
    return _compat_facts()[2] | {"track_started"}  # read as result._task_option("track_started")


@functools.cache
def rejected_settings() -> frozenset[str]:
    """Keys ``config._check_value`` can raise for (a branch that raises and compares ``key``)."""
    tree = parse((COMPAT_DIR / "config.py").read_text(encoding="utf-8"))
    out: set[str] = set()
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef) and fn.name == "_check_value":
            for node in ast.walk(fn):
                if isinstance(node, ast.If) and any(isinstance(n, ast.Raise) for b in node.body for n in ast.walk(b)):
                    out |= {c.value for c in ast.walk(node.test) if isinstance(c, ast.Constant)
                            and isinstance(c.value, str)}
    return frozenset(out)


SIGNALS_DEFINED = frozenset(n for n, v in vars(compat_signals).items() if isinstance(v, compat_signals.Signal))


def signal_rule(name: str) -> Rule:
    if name not in SIGNALS_DEFINED:
        return Verdict.unsupported, (f"asyncq.compat.signals has no {name} (AttributeError at import); supported: "
                                     f"{', '.join(sorted(signals_sent() & SIGNALS_DEFINED))}")
    if name not in signals_sent():
        return Verdict.unsupported, f"asyncq.compat defines {name} but never sends it: the receiver never runs"
    return Verdict.supported, ""


# --- @app.task(...) options ------------------------------------------------------------------------------------
TASK_OPTION_RULES: dict[str, Rule] = {
    "acks_late": (Verdict.no_effect, "asyncq always holds a lease until the job finishes (acks_late without its "
                  "visibility-timeout duplicates)"),
    "reject_on_worker_lost": (Verdict.no_effect, "a lost worker's job always runs again after its lease"),
    "acks_on_failure_or_timeout": (Verdict.no_effect, "a failed job is settled (failed or dead-lettered), never "
                                   "left unacknowledged"),
    "throws": (Verdict.no_effect, "accepted, unused: asyncq logs every failure the same way"),
    "send_events": (Verdict.no_effect, "no Celery events: use asyncq's hooks, metrics and dashboard"),
    "trail": (Verdict.no_effect, "accepted, unused: results do not track children"),
    "store_errors_even_if_ignored": (Verdict.no_effect, "accepted, unused: a failed ignore_result task keeps no "
                                     "result; its error is in the dead-letter store"),
    "serializer": (Verdict.change, "accepted and silently ignored per task: one serializer per app; set "
                   "task_serializer on the app"),
    "expires": (Verdict.change, "accepted and silently ignored as a task default: pass expires= to "
                "apply_async"),
    "pydantic": (Verdict.supported, "arguments validated and results dumped with pydantic, as in Celery (needs "
                 "pydantic installed)"),
    "rate_limit": (Verdict.supported, "per worker process, as in Celery"),
}


#: options the rules above call "silently ignored": supported as soon as asyncq.compat reads them
SILENTLY_IGNORED = frozenset({"serializer", "expires"})


def task_option_rule(name: str, custom_base: bool) -> Rule:
    if name in SILENTLY_IGNORED and name in task_attrs_read():
        return Verdict.supported, ""
    if name in TASK_OPTION_RULES:
        return TASK_OPTION_RULES[name]
    if name in TASK_OPTIONS or hasattr(Task, name):
        return Verdict.supported, ""
    if custom_base:
        return Verdict.check, "not a Celery option: kept as a task attribute for the base class to read"
    return Verdict.check, ("not a Celery option: kept as a task attribute, as Celery does (a misspelt Celery "
                           "option is logged as a warning)")


# --- apply_async(...) / send_task(...) / signature options ---------------------------------------------------------
CALL_OPTION_RULES: dict[str, Rule] = {
    "retry": (Verdict.no_effect, "publishing never retries silently: enqueue raises BrokerUnavailable"),
    "retry_policy": (Verdict.no_effect, "publishing never retries silently: enqueue raises BrokerUnavailable"),
    "compression": (Verdict.no_effect, "accepted and ignored: payloads are not compressed"),
    "routing_key": (Verdict.check, "used as the queue name when queue= is absent"),
    "exchange": (Verdict.check, "only the default exchange ('' or 'celery') is accepted; others raise: route "
                 "with queue="),
    "serializer": (Verdict.check, "must equal the app's task_serializer, else ImproperlyConfigured"),
}


def call_option_rule(name: str) -> Rule:
    if name in CALL_OPTION_RULES:
        return CALL_OPTION_RULES[name]
    if name in IGNORED:
        return Verdict.no_effect, "accepted and ignored: connections, producers and exchanges are asyncq's business"
    if name in OPTIONS:
        return Verdict.supported, ""
    return Verdict.unsupported, "unknown option: asyncq.compat raises TypeError"


RETRY_SUPPORTED = frozenset({"exc", "throw", "eta", "countdown", "max_retries"})


def retry_option_rule(name: str) -> Rule:
    if name in ("args", "kwargs"):
        return Verdict.unsupported, ("retry with new arguments raises NotImplementedError: the job retries with its "
                                     "own arguments; enqueue a new call instead")
    if name in RETRY_SUPPORTED:
        return Verdict.supported, ""
    return Verdict.change, "accepted and silently ignored: the job retries in place, on its own queue"


# --- app.control / inspect() -------------------------------------------------------------------------------------
def _public(cls: type) -> frozenset[str]:
    return frozenset(n for n, v in vars(cls).items() if not n.startswith("_") and callable(v))


CONTROL_METHODS = _public(Control)
INSPECT_METHODS = _public(Inspect)


def control_rule(method: str) -> Rule:
    if method in CONTROL_METHODS:
        if method == "revoke":
            return Verdict.supported, "persistent in Redis; signal= is ignored (terminate=True cancels the job)"
        return Verdict.supported, ""
    return Verdict.unsupported, (f"app.control has no {method}(); available: {', '.join(sorted(CONTROL_METHODS))}")


def inspect_rule(method: str) -> Rule:
    if method == "reserved":
        return Verdict.no_effect, "always empty: asyncq workers never reserve (prefetch) jobs"
    if method in INSPECT_METHODS:
        return Verdict.supported, "answered from Redis (heartbeats, leases), not a broadcast"
    return Verdict.unsupported, f"inspect() has no {method}(); available: {', '.join(sorted(INSPECT_METHODS))}"


# --- imports ---------------------------------------------------------------------------------------------------------
IMPORT_MAP = {
    "celery": "asyncq.compat",
    "celery.signals": "asyncq.compat.signals",
    "celery.exceptions": "asyncq.compat.exceptions",
    "celery.result": "asyncq.compat.result",
    "celery.schedules": "asyncq.compat.schedules",
    "celery.states": "asyncq.compat.states",
    "celery.canvas": "asyncq.compat.canvas",
    "celery.app.task": "asyncq.compat.task",
    "celery.task": "asyncq.compat",
    "celery.utils.log": "asyncq.compat.utils.log",
    "celery.contrib.abortable": "asyncq.compat.contrib.abortable",
}
IMPORT_HINTS: dict[str, Rule] = {
    "get_task_logger": (Verdict.change, "use logging.getLogger(__name__)"),
    "solar": (Verdict.unsupported, "solar schedules are not supported: use crontab(...) (in the app's timezone)"),
    "current_task": (Verdict.change, "use self.request in a bind=True task"),
    "AbortableTask": (Verdict.unsupported, "no AbortableTask: abort with app.control.revoke(id, terminate=True)"),
}
#: what goes wrong at run time when a name still comes from real Celery (the scan says why the import matters)
REAL_CELERY_EFFECT = {
    "celery.signals": "receivers connected to real Celery's signals never run",
    "celery.schedules": "asyncq.compat reads real Celery's crontab and schedule, but the project keeps needing "
                        "real Celery installed",
    "celery.result": "real Celery's AsyncResult reads no asyncq result (DisabledBackend)",
    "celery.utils.log": "the project still needs real Celery installed",
    "Task": "a task base built on real celery.Task is refused by asyncq.compat",
    "shared_task": "the task registers with real Celery, and no asyncq worker runs it",
}
INSTALL_LINE = "asyncq.compat.install_as_celery()"


def has_name(module: str, name: str) -> bool:
    try:
        return hasattr(importlib.import_module(module), name)
    except ImportError:
        return False


def can_install_as_celery() -> bool:
    """True once asyncq.compat offers ``install_as_celery()`` (read at scan time, so the advice follows the code)."""
    return has_name("asyncq.compat", "install_as_celery")


def is_real_celery(module: str) -> bool:
    return module == "celery" or module.startswith("celery.")


def import_rule(module: str, name: str | None, installed: bool = False) -> Rule:
    """``from <module> import <name>`` (``name`` None: ``import <module>``). ``installed``: the scanned project
    calls ``install_as_celery()``, so ``celery.*`` resolves to asyncq.compat in its processes."""
    if module.startswith("asyncq.compat"):
        if name is None or has_name(module, name):
            return Verdict.supported, ""
        return Verdict.unsupported, f"{module} has no {name} (ImportError)"
    target = IMPORT_MAP.get(module)
    mirrored = target is not None and (name is None or has_name(target, name))
    if installed and mirrored and can_install_as_celery():
        return Verdict.supported, f"resolves to {target} through {INSTALL_LINE}"
    if name is not None and target is not None and has_name(target, name):
        return Verdict.change, _real_celery_advice(module, name, f"from {target} import {name}")
    if name in IMPORT_HINTS:
        verdict, detail = IMPORT_HINTS[name]
        return verdict, _real_celery_advice(module, name, detail) if verdict is Verdict.change else detail
    if target is None:
        return Verdict.unsupported, f"no asyncq.compat equivalent of {module}"
    if name is None:
        return Verdict.change, _real_celery_advice(module, None, f"import {target}")
    return Verdict.unsupported, f"{target} has no {name}"


def _real_celery_advice(module: str, name: str | None, rewrite: str) -> str:
    effect = REAL_CELERY_EFFECT.get(name or "") or REAL_CELERY_EFFECT.get(module) or "still real Celery's"
    if can_install_as_celery():
        return (f"still imports real Celery ({effect}): add {INSTALL_LINE} at the top of the project package, "
                f"or change the import: {rewrite}")
    return f"still imports real Celery ({effect}): {rewrite}"


# --- the app object ---------------------------------------------------------------------------------------------------
#: Celery 5's public app attributes; the ones asyncq.compat's Celery lacks at scan time are AttributeErrors
CELERY_APP_ATTRS = frozenset({
    "AsyncResult", "GroupResult", "Task", "add_defaults", "add_periodic_task", "amqp", "annotations",
    "autodiscover_tasks", "backend", "broker_connection", "close", "conf", "config_from_cmdline",
    "config_from_envvar", "config_from_object", "connection", "connection_for_read", "connection_for_write",
    "connection_or_acquire", "control", "create_task_cls", "current_task", "current_worker_task",
    "default_connection", "default_producer", "events", "finalize", "gen_task_name", "loader", "log", "main", "now",
    "on_after_configure", "on_after_finalize", "on_after_fork", "on_configure", "on_init", "pool",
    "producer_or_acquire", "producer_pool", "register_task", "select_queues", "send_task", "set_current",
    "set_default", "setup_security", "signature", "start", "steps", "subclass_with_self", "task", "task_cls",
    "tasks", "timezone", "uses_utc_timezone", "user_options", "worker_main",
})


@functools.cache
def _compat_app_attrs() -> frozenset[str]:
    """What asyncq.compat's Celery has: its class attributes and what its constructor sets (a throwaway app that
    is not made current and connects nowhere)."""
    app = CompatCelery("asyncq-migrate-scan", set_as_current=False)
    return frozenset(n for n in CELERY_APP_ATTRS if hasattr(CompatCelery, n) or hasattr(app, n))


def app_attr_missing(attr: str) -> bool:
    return attr in CELERY_APP_ATTRS and attr not in _compat_app_attrs()
