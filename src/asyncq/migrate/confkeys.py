"""Celery settings: each key classified with asyncq.compat.config's tables (DEFAULTS, NO_EFFECT, OLD_NAMES,
``_check_value``) and with the keys asyncq.compat actually reads; ``beat_schedule`` entries and their schedules."""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Any

from asyncq.compat.config import DEFAULTS, NO_EFFECT, OLD_NAMES, SERIALIZERS
from asyncq.cron import zone
from asyncq.exceptions import ConfigurationError
from asyncq.migrate.model import Verdict
from asyncq.migrate.rules import Rule, rejected_settings, settings_read

#: (line, feature, verdict, detail)
Hit = tuple[int, str, Verdict, str]
#: evaluates a node to a Python value, or UNKNOWN
Resolver = Callable[[ast.expr], Any]


class _Unknown:
    def __repr__(self) -> str:
        return "<computed at run time>"


UNKNOWN: Any = _Unknown()

#: Celery's old upper-case names that asyncq.compat does NOT map (it maps only config.OLD_NAMES)
CELERY_OLD_NAMES = {
    "BROKER_TRANSPORT_OPTIONS": "broker_transport_options", "BROKER_POOL_LIMIT": "broker_pool_limit",
    "BROKER_CONNECTION_TIMEOUT": "broker_connection_timeout", "BROKER_CONNECTION_RETRY": "broker_connection_retry",
    "BROKER_HEARTBEAT": "broker_heartbeat", "BROKER_USE_SSL": "broker_use_ssl",
    "CELERY_RESULT_PERSISTENT": "result_persistent", "CELERY_ENABLE_UTC": "enable_utc",
    "CELERY_IMPORTS": "imports", "CELERY_INCLUDE": "include", "CELERY_TRACK_STARTED": "task_track_started",
    "CELERY_DEFAULT_EXCHANGE": "task_default_exchange", "CELERY_DEFAULT_ROUTING_KEY": "task_default_routing_key",
    "CELERY_DEFAULT_RATE_LIMIT": "task_default_rate_limit", "CELERY_QUEUES": "task_queues",
    "CELERY_ANNOTATIONS": "task_annotations", "CELERY_SEND_TASK_SENT_EVENT": "task_send_sent_event",
    "CELERY_TASK_PUBLISH_RETRY": "task_publish_retry", "CELERY_TASK_PUBLISH_RETRY_POLICY": "task_publish_retry_policy",
    "CELERY_CREATE_MISSING_QUEUES": "task_create_missing_queues", "CELERY_MESSAGE_COMPRESSION": "task_compression",
    "CELERY_STORE_ERRORS_EVEN_IF_IGNORED": "task_store_errors_even_if_ignored",
    "CELERY_DEFAULT_DELIVERY_MODE": "task_default_delivery_mode", "CELERY_SEND_EVENTS": "worker_send_task_events",
    "CELERYD_CONCURRENCY": "worker_concurrency", "CELERYD_MAX_TASKS_PER_CHILD": "worker_max_tasks_per_child",
    "CELERYD_MAX_MEMORY_PER_CHILD": "worker_max_memory_per_child", "CELERYD_POOL": "worker_pool",
    "CELERYD_HIJACK_ROOT_LOGGER": "worker_hijack_root_logger", "CELERYD_SEND_EVENTS": "worker_send_task_events",
    "CELERYD_LOG_FORMAT": "worker_log_format", "CELERYD_TASK_LOG_FORMAT": "worker_task_log_format",
    "CELERYBEAT_SCHEDULER": "beat_scheduler", "CELERY_REDIS_MAX_CONNECTIONS": "redis_max_connections",
}
CELERY_PREFIXES = ("task_", "worker_", "broker_", "result_", "beat_", "celery_", "security_", "database_", "redis_",
                   "cache_", "event_", "control_", "mongodb_", "s3_", "elasticsearch_", "cassandra_")

#: settings asyncq.compat stores without reading, or Celery settings it does not know, with what that means
KEY_RULES: dict[str, Rule] = {
    "accept_content": (Verdict.no_effect, "asyncq decodes the app's one serializer"),
    "enable_utc": (Verdict.supported, "without timezone, crontabs are read in UTC (enable_utc=True) or in $TZ"),
    "result_serializer": (Verdict.no_effect, "results use task_serializer"),
    "task_store_eager_result": (Verdict.no_effect, "accepted, never read: eager results stay in memory"),
    "task_track_started": (Verdict.supported, "the default for tasks without track_started (read as "
                           "conf.get(f'task_{name}') in compat/result.py)"),
    "task_default_retry_delay": (Verdict.change, "accepted and silently ignored (tasks keep 180 s): set "
                                 "default_retry_delay on each task or on a base class"),
    "task_annotations": (Verdict.unsupported, "accepted and silently ignored: move each annotation onto its task "
                         "(@app.task(rate_limit=...)) or a base class"),
    "task_queues": (Verdict.check, "stored, never read: queues exist once a job is enqueued; route with "
                    "task_routes / queue="),
    "task_default_rate_limit": (Verdict.unsupported, "stored, never read: set rate_limit on each task"),
    "beat_scheduler": (Verdict.unsupported, "stored, never read: periodic tasks come from beat_schedule / "
                       "add_periodic_task only (no database scheduler)"),
    "task_compression": (Verdict.no_effect, "payloads are not compressed"),
    "broker_pool_limit": (Verdict.no_effect, "asyncq manages its Redis pool"),
    "broker_heartbeat": (Verdict.no_effect, "no AMQP heartbeats on Redis"),
    "result_persistent": (Verdict.no_effect, "results live in Redis for result_expires"),
    "task_default_exchange": (Verdict.no_effect, "no exchanges: asyncq routes by queue"),
    "task_default_routing_key": (Verdict.no_effect, "no exchanges: asyncq routes by queue"),
    "worker_log_format": (Verdict.no_effect, "asyncq does not touch your logging configuration"),
    "worker_task_log_format": (Verdict.no_effect, "asyncq does not touch your logging configuration"),
}

SCHEDULES = {"crontab": (Verdict.supported, "evaluated in the app's timezone"), "schedule": (Verdict.supported, ""),
             "timedelta": (Verdict.supported, ""),
             "solar": (Verdict.unsupported, "solar schedules raise ImproperlyConfigured: use crontab(...)")}
CRONTAB_ARGS = ("minute", "hour", "day_of_week", "day_of_month", "month_of_year")


def settings_key(name: str, namespace: str | None) -> tuple[str | None, str | None]:
    """(key asyncq.compat reads from a settings-module attribute, Celery's key if compat skips it)."""
    if name.startswith("_"):
        return None, None
    if namespace:
        prefix = f"{namespace}_"
        return (name[len(prefix):].lower(), None) if name.startswith(prefix) else (None, None)
    if name.isupper():
        if name in OLD_NAMES:
            return OLD_NAMES[name], None
        return None, CELERY_OLD_NAMES.get(name)
    if name.islower() and (name.startswith(CELERY_PREFIXES) or name in DEFAULTS or name in NO_EFFECT):
        return name, None
    return None, None


def classify(key: str, value: ast.expr | None, resolve: Resolver, line: int) -> list[Hit]:
    """One setting ``key = value``."""
    key = OLD_NAMES.get(key, key)
    feature = f"setting {key}"
    if key == "beat_schedule":
        return [(line, feature, Verdict.supported, "")] + (beat_entries(value, resolve) if value else [])
    val = resolve(value) if value is not None else UNKNOWN
    if key in ("broker_url", "result_backend"):
        return [(line, feature, *_url_rule(key, val))]
    if key in ("task_serializer", "result_serializer"):
        return [(line, feature, *_serializer_rule(key, val))]
    if key == "timezone":
        return [(line, feature, *_timezone_rule(val))]
    if key in NO_EFFECT:
        return [(line, feature, Verdict.no_effect, NO_EFFECT[key])]
    if key in rejected_settings() and val not in (None, {}, [], ()):
        return [(line, feature, Verdict.unsupported, "asyncq.compat rejects it (ImproperlyConfigured)")]
    if key in settings_read():
        return [(line, feature, Verdict.supported, "")]
    if key in KEY_RULES:
        return [(line, feature, *KEY_RULES[key])]
    if key in DEFAULTS:
        return [(line, feature, Verdict.check, "accepted; asyncq.compat does not read it")]
    return [(line, feature, Verdict.check, "not an asyncq.compat setting: stored and never read")]


def _timezone_rule(val: Any) -> Rule:
    if val is None or val is UNKNOWN:
        return (Verdict.supported, "") if val is None else (Verdict.check, "computed at run time: must be an IANA "
                                                                             "time zone name")
    try:
        zone(str(val))
    except ConfigurationError:
        return Verdict.unsupported, f"{val!r} is not an IANA time zone asyncq knows: crontab schedules fail"
    return Verdict.supported, "crontab schedules are read in this zone, DST-safe"


def _serializer_rule(key: str, val: Any) -> Rule:
    if val is UNKNOWN:
        return Verdict.check, "computed at run time: must be json, msgpack or pickle"
    if val not in SERIALIZERS:
        return Verdict.unsupported, f"{val!r} raises ImproperlyConfigured: use json, msgpack or pickle"
    if val == "pickle" and key == "task_serializer":
        return Verdict.change, "pickle needs asyncq_signing_key (asyncq signs pickle payloads)"
    if key == "result_serializer":
        return KEY_RULES["result_serializer"]
    return Verdict.supported, ""  # an accepted value: _check_value raises only for the others


def _url_rule(key: str, val: Any) -> Rule:
    if val is UNKNOWN or val is None:
        return Verdict.check, "computed at run time: must be a redis://, rediss:// or unix:// URL"
    if isinstance(val, str) and val.startswith(("redis://", "rediss://", "unix://")):
        if key == "result_backend":
            return Verdict.no_effect, "results always live in the broker's Redis"
        return Verdict.supported, ""
    if key == "result_backend":
        return Verdict.change, (f"{_scheme(val)}: asyncq cannot serve this result backend; use the Redis backend "
                                "(set result_backend to your redis:// broker URL, or remove it: results live in the "
                                "broker's Redis)")
    return Verdict.unsupported, (f"{_scheme(val)} raises ImproperlyConfigured: asyncq runs on Redis only; keep the "
                                 "tasks that need it on Celery during the migration")


def _scheme(val: Any) -> str:
    return f"{val.split('://')[0]}://" if isinstance(val, str) and "://" in val else repr(val)


def beat_entries(value: ast.expr, resolve: Resolver) -> list[Hit]:
    hits: list[Hit] = []
    if not isinstance(value, ast.Dict):
        return [(value.lineno, "beat_schedule", Verdict.check, "not a literal dict: entries not checked")]
    for k, entry in zip(value.keys, value.values, strict=True):
        name = resolve(k) if k is not None else UNKNOWN
        label = f"beat entry {name!r}" if name is not UNKNOWN else "beat entry"
        if not isinstance(entry, ast.Dict):
            hits.append((entry.lineno, label, Verdict.check, "not a literal dict"))
            continue
        for ek, ev in zip(entry.keys, entry.values, strict=True):
            field = resolve(ek) if ek is not None else UNKNOWN
            if field == "schedule":
                hits.extend(schedule_hits(ev, label))
            elif field == "options" and isinstance(ev, ast.Dict):
                for ok in ev.keys:
                    opt = resolve(ok) if ok is not None else UNKNOWN
                    if opt != "queue":
                        hits.append((ev.lineno, f"{label} options[{opt!r}]", Verdict.change,
                                     "silently ignored: periodic jobs take only queue from options"))
            elif field not in ("task", "args", "kwargs", "options", "relative"):
                hits.append((ev.lineno, f"{label} {field!r}", Verdict.check, "unknown entry field, ignored"))
    return hits


def schedule_hits(node: ast.expr, label: str) -> list[Hit]:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return [(node.lineno, f"{label}: every {node.value} s", Verdict.supported, "")]
    if isinstance(node, ast.Call):
        fn = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if fn in SCHEDULES:
            verdict, detail = SCHEDULES[fn]
            if fn == "crontab":
                extra = [k.arg for k in node.keywords if k.arg not in CRONTAB_ARGS]
                if extra or len(node.args) > len(CRONTAB_ARGS):
                    verdict, detail = Verdict.unsupported, (f"crontab({', '.join(map(str, extra))}) is not "
                                                            f"supported: only {', '.join(CRONTAB_ARGS)}")
            return [(node.lineno, f"{label}: {fn}", verdict, detail)]
    return [(node.lineno, f"{label}: schedule", Verdict.check, "not a crontab/schedule/timedelta/number literal")]
