"""Celery messages consumed by an asyncq worker (``--celery-queues``): each becomes an asyncq job, and its
outcome is written back in Celery's result-backend format so an unchanged Celery producer sees it.

``adoption`` turns a decoded protocol-v2 message into the same prepared call ``apply_async`` would have made
(``publish.prepare``: task id, queue, priority, eta, expires, time limits, links, chain, chord, group, user
headers), marked ``reply="celery"``. From then on the job is asyncq's: its lease, not Celery's visibility
timeout, protects it, so a long or delayed task never runs twice because a timeout ran out, and it runs under
the same runtime as any compat task (``runtime.execute``).

``store_outcome`` writes ``celery-task-meta-<id>`` and PUBLISHes it (what Celery's ``AsyncResult.get()`` waits
on) for every job marked ``reply="celery"``; the children such a job sends (links, the next chain step, a chord
body) inherit the mark, because the Celery producer may be waiting on any of them.

Chords: a Celery producer stores the header's size in ``celery-taskset-meta-<group>.s`` and sends the body in
each header member; asyncq joins the header with its own counter (``CELERY_CHORD_PREFIX``), so a chord's header
must run on asyncq workers only (route or consume all of its tasks on one side).
"""

from __future__ import annotations

import traceback as tb_module
import weakref
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from redis.asyncio import Redis as AsyncRedis

from asyncq.broker import Broker
from asyncq.celery_protocol.decode import CeleryMessage
from asyncq.celery_protocol.kombu_layout import meta_key
from asyncq.compat._state import CeleryApp
from asyncq.compat.config import seconds
from asyncq.compat.publish import Prepared, prepare
from asyncq.exceptions import MalformedMessage
from asyncq.scripts import script_source

if TYPE_CHECKING:
    import asyncio


REPLY = "celery"
#: asyncq.compat's exceptions that stand for Celery's own: a Celery producer rebuilds them from celery.exceptions
CELERY_EXCEPTIONS = frozenset({
    "TaskRevokedError", "TimeLimitExceeded", "SoftTimeLimitExceeded", "MaxRetriesExceededError", "WorkerLostError",
    "Retry", "Reject", "Ignore", "ChordError", "TimeoutError", "NotRegistered", "ImproperlyConfigured",
})
TASKSET_PREFIX = "celery-taskset-meta-"


def chord_size_key(group_id: str) -> str:
    """Where a Celery producer stores a chord header's size (``RedisBackend.set_chord_size``)."""
    return f"{TASKSET_PREFIX}{group_id}.s"


def adoption(app: CeleryApp, msg: CeleryMessage, chord_size: int | None = None) -> Prepared:
    """The asyncq job a Celery message becomes. Raises ``MalformedMessage`` (dead-lettered with its text) or
    ``TypeError`` / ``ValueError`` for a call that cannot run (arguments that do not fit the task)."""
    h, embed = msg.headers, msg.embed
    limits = h.get("timelimit") or [None, None]
    hard, soft = ([*limits, None, None][:2]) if isinstance(limits, list) else (None, None)
    options: dict[str, Any] = {
        "task_id": msg.id, "queue": msg.queue, "priority": msg.priority, "eta": msg.when("eta"),
        "expires": msg.when("expires"), "link": embed.get("callbacks") or None,
        "link_error": embed.get("errbacks") or None,
        # Celery stores a chain reversed (the next step last); asyncq.compat keeps it in order
        "chain": list(reversed(embed["chain"])) if embed.get("chain") else None,
        "group_id": h.get("group"), "group_index": h.get("group_index"), "root_id": h.get("root_id"),
        "parent_id": h.get("parent_id"), "shadow": h.get("shadow"), "headers": msg.user_headers or None,
        "time_limit": hard, "soft_time_limit": soft, "ignore_result": bool(h.get("ignore_result")),
    }
    if embed.get("chord"):
        if not h.get("group") or chord_size is None:
            raise MalformedMessage(
                f"chord member {msg.id} without its group or without the chord size in {TASKSET_PREFIX}<group>.s "
                "(was the result backend flushed?)"
            )
        options["chord"] = {"group_id": h["group"], "size": chord_size, "body": embed["chord"]}
    keep = {"expires", "eta", "priority"}  # None is meaningful here: no expiry, not the task's default
    prepared = prepare(app, msg.task, msg.args, msg.kwargs,
                       {k: v for k, v in options.items() if v is not None or k in keep})
    assert prepared.spec.options.headers is not None
    celery = prepared.spec.options.headers["celery"]
    celery["reply"] = REPLY
    celery["retries"] = int(h.get("retries") or 0)
    if h.get("origin"):
        celery["origin"] = h["origin"]
    return prepared


# --- writing outcomes in Celery's result-backend format ----------------------------------------------------
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, AsyncRedis]] = weakref.WeakKeyDictionary()


async def backend_client(app: CeleryApp) -> AsyncRedis:
    """The Redis of the app's ``result_backend`` (when that is another Redis URL), else the broker's."""
    import asyncio

    url = app.conf.result_backend
    if not (isinstance(url, str) and url.startswith(("redis://", "rediss://", "unix://"))) \
            or url == app.asyncq_app.settings.redis_url:
        return await app.asyncq_app.broker()
    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
    if url not in per_loop:
        per_loop[url] = AsyncRedis.from_url(url)
    return per_loop[url]


def exception_document(exc: BaseException) -> dict[str, Any]:
    """A failure as Celery stores it, so a Celery producer's ``get()`` raises the same type."""
    cls = type(exc)
    module = cls.__module__
    if module.startswith("asyncq.compat") and cls.__name__ in CELERY_EXCEPTIONS:
        module = "celery.exceptions"
    args: list[Any] = []
    for a in exc.args:
        try:
            orjson.dumps(a)
            args.append(a)
        except TypeError:
            args.append(repr(a))
    return {"exc_type": cls.__qualname__, "exc_message": args, "exc_module": module}


def meta_document(task_id: str, status: str, result: Any, traceback: str | None, *, parent_id: str | None = None,
                  group_id: str | None = None, done: bool = True) -> bytes:
    doc: dict[str, Any] = {
        "status": status, "result": result, "traceback": traceback, "children": [],
        "date_done": datetime.now(UTC).isoformat() if done else None, "task_id": task_id,
    }
    if parent_id:
        doc["parent_id"] = parent_id
    if group_id:
        doc["group_id"] = group_id
    try:
        return orjson.dumps(doc)
    except TypeError as exc:  # a return value JSON cannot carry: Celery's producer would get EncodeError
        doc.update(status="FAILURE", traceback=None, result={
            "exc_type": "EncodeError", "exc_module": "kombu.exceptions",
            "exc_message": [f"the task's result cannot be sent as JSON: {exc}"]})
        return orjson.dumps(doc)


async def store_outcome(app: CeleryApp, request: Any, status: str, value: Any = None,
                        exc: BaseException | None = None) -> None:
    """Write ``celery-task-meta-<id>`` and PUBLISH it (``celery_store.lua``: one round trip, never replacing a
    SUCCESS), for a job a Celery producer may be waiting on."""
    if getattr(request, "reply", None) != REPLY or not request.id:
        return
    if request.ignore_result and status in ("SUCCESS", "FAILURE"):
        return
    traceback = None
    result = value
    if exc is not None:
        result = exception_document(exc)
        traceback = "".join(tb_module.format_exception(exc))
    doc = meta_document(request.id, status, result, traceback, parent_id=request.parent_id,
                        group_id=request.group, done=status in ("SUCCESS", "FAILURE", "REVOKED"))
    client = await backend_client(app)
    ttl = seconds(app.conf.result_expires)
    store = client.scripts.celery_store if isinstance(client, Broker) else \
        client.register_script(script_source("celery_store"))
    await store(args=[meta_key(request.id), doc, max(1, int(ttl)) if ttl else 0])
