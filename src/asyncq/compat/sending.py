"""Sending Celery-style calls: ``send_task``, ``apply_async``, ``delay``, groups and chords all end here.

A call is prepared once (``publish.prepare``: Celery's option rules, queue and priority precedence, argument
checks, ``before_task_publish``), then enqueued as an asyncq job, one round trip per batch: the sync path
(``send_task``, Celery's hottest call) with a plain redis-py client and no event loop, the async path
(``asend_*``) on the app's loop. ``after_task_publish`` fires once the job exists.

Side by side with Celery (the app was created with ``asyncq_router=True`` or a ``Router``): each prepared call
goes where the router says; a call routed to Celery becomes a protocol-v2 message on the kombu list of its
queue, which a stock ``celery worker -Q <queue>`` consumes, and its result is a ``CeleryBackendResult`` that
reads ``celery-task-meta-<id>``. Not supported on the Celery side (raise ``ImproperlyConfigured``): chains and
chords whose steps are routed to Celery (asyncq's canvas carries them in asyncq's own form); route those tasks to
asyncq, or keep calling them with Celery. ``revoke()`` of a Celery-run task needs Celery's control
(``celery -A proj control revoke ID``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from asyncq.celery_protocol.encode import encode_message, message_bytes
from asyncq.celery_protocol.kombu_layout import queue_list_key
from asyncq.celery_protocol.transport import publish_message_sync, publish_messages
from asyncq.compat import stamping
from asyncq.compat._state import CeleryApp
from asyncq.compat.exceptions import ImproperlyConfigured
from asyncq.compat.publish import Prepared, after_publish, before_publish
from asyncq.compat.publish import prepare as _prepare
from asyncq.compat.result import AsyncResult, CeleryBackendResult
from asyncq.compat.router import CELERY, Router
from asyncq.hooks import carried_headers
from asyncq.job import Job

log = logging.getLogger("asyncq.compat")

#: one call: task name, args, kwargs, apply_async options
Call = tuple[str, Any, Any, dict[str, Any]]


def router_of(app: CeleryApp) -> Router:
    """The app's Router (``asyncq_router=True`` builds one on first use, on the app's broker URL)."""
    router = app.asyncq_router
    if not isinstance(router, Router):
        router = app.asyncq_router = Router()
    router.bind(app.asyncq_app.settings.redis_url, app.asyncq_app.settings.namespace)
    return router


def envelope(app: CeleryApp, p: Prepared, reply_to: str | None = None) -> dict[str, Any]:
    """The Celery message of a prepared call."""
    assert p.spec.options.headers is not None
    c: dict[str, Any] = p.spec.options.headers["celery"]
    if c.get("chain") or c.get("chord") or c.get("chord_error"):
        raise ImproperlyConfigured(
            f"{p.spec.task_name} is routed to Celery inside a chain or chord: asyncq cannot hand its canvas to a "
            "Celery worker. Route the canvas's tasks to asyncq (asyncq migrate route set ... asyncq) or call "
            "the canvas with Celery itself"
        )
    return encode_message(
        p.spec.task_name, p.task_id, p.spec.args, p.spec.kwargs, queue=p.queue, priority=c.get("priority"),
        eta=c.get("eta"), expires=c.get("expires"), callbacks=c.get("callbacks"), errbacks=c.get("errbacks"),
        group=c.get("group"), group_index=c.get("group_index"), timelimit=c.get("timelimit"),
        root_id=c.get("root_id"), parent_id=c.get("parent_id"), origin=c.get("origin", app.origin),
        ignore_result=bool(c.get("ignore_result")), shadow=c.get("shadow"), reply_to=reply_to,
        headers={**(c.get("headers") or {}), **carried_headers(app.asyncq_app.send_hooks, p.spec, p.task_id)},
    )


def _list_and_message(app: CeleryApp, p: Prepared) -> tuple[str, bytes]:
    env = envelope(app, p)
    return queue_list_key(p.queue, env["properties"]["priority"]), message_bytes(env)


def _result(app: CeleryApp, p: Prepared) -> CeleryBackendResult:
    after_publish(p)
    return CeleryBackendResult(p.task_id, app=app, task_name=p.spec.task_name, ignored=p.ignore_result)


def send_if_routed(app: CeleryApp, p: Prepared) -> AsyncResult | None:
    """Sync path: publish to Celery and return its result if the router says so, else None (go to asyncq)."""
    router = router_of(app)
    if router.route(p.spec.task_name) != CELERY:
        return None
    key, message = _list_and_message(app, p)
    publish_message_sync(router.sync_client(), key, message)
    return _result(app, p)


async def _asend_routed(app: CeleryApp, prepared: Sequence[Prepared]) -> list[AsyncResult]:
    """Async path for a batch side by side with Celery: route each call, publish the Celery ones in one round
    trip, enqueue the rest in one batch, and return the results in call order."""
    router = router_of(app)
    broker = await app.asyncq_app.broker()
    where = [await router.aroute(p.spec.task_name, broker) for p in prepared]
    celery = [p for p, w in zip(prepared, where, strict=True) if w == CELERY]
    out: dict[str, AsyncResult] = {}
    if celery:
        await publish_messages(broker, [_list_and_message(app, p) for p in celery])
        out.update((p.task_id, _result(app, p)) for p in celery)
    rest = [p for p, w in zip(prepared, where, strict=True) if w != CELERY]
    if rest:
        out.update((p.task_id, r) for p, r in zip(rest, await enqueue_prepared(app, rest), strict=True))
    return [out[p.task_id] for p in prepared]


def prepare(app: CeleryApp, name: str, args: Any, kwargs: Any, options: dict[str, Any]) -> Prepared:
    """``publish.prepare``, with the headers Celery's canvas sets as options (stamps, replaced_task_nesting)
    moved onto the message (stamping.take/attach, H5)."""
    options, carried = stamping.take(options)
    prepared = _prepare(app, name, args, kwargs, options)
    stamping.attach(prepared, carried)
    return prepared


# --- the app's sending API (``Celery.send_task`` and friends delegate here) -----------------------------------
def _options(options: dict[str, Any], countdown: float | None, eta: Any, task_id: str | None) -> dict[str, Any]:
    for key, value in (("countdown", countdown), ("eta", eta), ("task_id", task_id)):
        if value is not None:
            options[key] = value
    return options


def send_task(app: CeleryApp, name: str, args: Any = None, kwargs: Any = None, countdown: float | None = None,
              eta: Any = None, task_id: str | None = None, **options: Any) -> AsyncResult:
    """Send by name; the task need not be importable here. Ignores eager mode, as Celery does.

    Sync, with a plain redis-py client: no event loop and no thread hop on Celery's hottest call."""
    prepared = prepare(app, name, args, kwargs, _options(options, countdown, eta, task_id))
    before_publish(prepared)
    # side by side with Celery: this call may go to a Celery worker
    if app.asyncq_router and (sent := send_if_routed(app, prepared)) is not None:
        return sent
    job = app.asyncq_app.enqueue_many_sync([prepared.spec])[0]
    return published(app, prepared, job)


async def asend_task(app: CeleryApp, name: str, args: Any = None, kwargs: Any = None,
                     countdown: float | None = None, eta: Any = None, task_id: str | None = None,
                     **options: Any) -> AsyncResult:
    return (await asend(app, [(name, args, kwargs, _options(options, countdown, eta, task_id))]))[0]


async def asend_many(app: CeleryApp, sigs: Sequence[Any]) -> list[AsyncResult]:
    """Send several signatures in one round trip (groups and chords)."""
    return await asend(app, [(s["task"], s["args"], s["kwargs"], dict(s["options"])) for s in sigs])


async def asend(app: CeleryApp, calls: Sequence[Call]) -> list[AsyncResult]:
    prepared = [prepare(app, name, args, kwargs, options) for name, args, kwargs, options in calls]
    for p in prepared:
        before_publish(p)
    if app.asyncq_router:  # side by side with Celery: some calls may go to Celery workers
        return await _asend_routed(app, prepared)
    return await enqueue_prepared(app, prepared)


async def enqueue_prepared(app: CeleryApp, prepared: Sequence[Prepared]) -> list[AsyncResult]:
    jobs = await app.asyncq_app.enqueue_many([p.spec for p in prepared])
    return [published(app, p, job) for p, job in zip(prepared, jobs, strict=True)]


def published(app: CeleryApp, p: Prepared, job: Job) -> AsyncResult:
    if not job.created:
        log.info("task id %s already exists (queued, running or with a kept result): not sent again", p.task_id)
    after_publish(p)
    return AsyncResult(p.task_id, app=app, task_name=p.spec.task_name, ignored=p.ignore_result)
