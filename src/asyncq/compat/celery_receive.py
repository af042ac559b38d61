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
from typing import Any

from asyncq.celery_protocol.decode import CeleryMessage
from asyncq.celery_protocol.kombu_layout import TASKSET_PREFIX
from asyncq.celery_protocol.results import exception_document, meta_document
from asyncq.compat import store
from asyncq.compat._state import CeleryApp
from asyncq.compat.publish import Prepared, prepare
from asyncq.exceptions import MalformedMessage

REPLY = "celery"
#: asyncq.compat's exceptions that stand for Celery's own: a Celery producer rebuilds them from celery.exceptions
CELERY_EXCEPTIONS = frozenset({
    "TaskRevokedError", "TimeLimitExceeded", "SoftTimeLimitExceeded", "MaxRetriesExceededError", "WorkerLostError",
    "Retry", "Reject", "Ignore", "ChordError", "TimeoutError", "NotRegistered", "ImproperlyConfigured",
})


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
    for key in ("stamped_headers", "stamps", "replaced_task_nesting"):  # Celery's canvas headers (stamping.py)
        if h.get(key):
            celery[key] = h[key]
    if h.get("origin"):
        celery["origin"] = h["origin"]
    return prepared


# --- writing outcomes in Celery's result-backend format ----------------------------------------------------
async def store_outcome(app: CeleryApp, request: Any, status: str, value: Any = None,
                        exc: BaseException | None = None) -> None:
    """Write ``celery-task-meta-<id>`` and PUBLISH it (``store.write_celery_meta``: one round trip, never
    replacing a SUCCESS), for a job a Celery producer may be waiting on."""
    if getattr(request, "reply", None) != REPLY or not request.id:
        return
    if request.ignore_result and status in ("SUCCESS", "FAILURE"):
        return
    traceback = None
    result = value
    if exc is not None:
        result = exception_document(exc, CELERY_EXCEPTIONS, "asyncq.compat")
        traceback = "".join(tb_module.format_exception(exc))
    doc = meta_document(request.id, status, result, traceback, parent_id=request.parent_id,
                        group_id=request.group, done=status in ("SUCCESS", "FAILURE", "REVOKED"))
    await store.write_celery_meta(app, request.id, doc)
