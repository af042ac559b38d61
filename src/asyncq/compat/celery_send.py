"""Calls the router sends to Celery: published as Celery protocol-v2 messages, results read from Celery's backend.

Used by ``Celery.send_task`` / ``Celery._send`` when the app was created with ``asyncq_router=True`` (or a
``Router``). The call is prepared exactly as for asyncq (``publish.prepare``: the same option rules, queue and
priority precedence, argument checks, signals); then, if the router says ``celery``, the prepared call becomes
a message on the kombu list of its queue, which a stock ``celery worker -Q <queue>`` consumes, and the result is
a ``CeleryBackendResult`` that reads ``celery-task-meta-<id>``.

Not supported on the Celery side (raise ``ImproperlyConfigured``): chains and chords whose steps are routed to
Celery (asyncq's canvas carries them in asyncq's own form); route those tasks to asyncq, or keep calling them
with Celery. ``revoke()`` of a Celery-run task needs Celery's control (``celery -A proj control revoke ID``).
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from asyncq.celery_protocol.encode import encode_message, message_bytes
from asyncq.celery_protocol.kombu_layout import meta_key, queue_list_key
from asyncq.celery_protocol.results import CeleryMeta, read_meta, rebuild_celery_exception, wait_meta
from asyncq.compat import exceptions as compat_exceptions
from asyncq.compat import states
from asyncq.compat._state import CeleryApp
from asyncq.compat.celery_receive import backend_client
from asyncq.compat.exceptions import ImproperlyConfigured, TaskRevokedError, TimeoutError
from asyncq.compat.publish import Prepared, after_publish
from asyncq.compat.result import AsyncResult
from asyncq.compat.router import CELERY, Router

#: Celery's exception names mapped to asyncq.compat's, so ``except asyncq.compat.exceptions.X`` catches them
ALIASES: dict[str, type[BaseException]] = {
    name: obj for name, obj in vars(compat_exceptions).items()
    if isinstance(obj, type) and issubclass(obj, BaseException)
}


def router_of(app: CeleryApp) -> Router:
    """The app's Router (``asyncq_router=True`` builds one on first use, on the app's broker URL)."""
    router = app.asyncq_router
    if not isinstance(router, Router):
        router = app.asyncq_router = Router()
    router.bind(app.asyncq_app.settings.redis_url)
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
        ignore_result=bool(c.get("ignore_result")), shadow=c.get("shadow"), headers=c.get("headers"),
        reply_to=reply_to,
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
    router.sync_client().lpush(key, message)
    return _result(app, p)


async def asend(app: CeleryApp, prepared: Sequence[Prepared],
                to_asyncq: Callable[[list[Prepared]], Awaitable[list[AsyncResult]]]) -> list[AsyncResult]:
    """Async path for a batch: route each call, publish the Celery ones in one pipeline, enqueue the rest in one
    batch, and return the results in call order."""
    router = router_of(app)
    broker = await app.asyncq_app.broker()
    where = [await router.aroute(p.spec.task_name, broker) for p in prepared]
    celery = [p for p, w in zip(prepared, where, strict=True) if w == CELERY]
    out: dict[str, AsyncResult] = {}
    if celery:
        messages = [_list_and_message(app, p) for p in celery]
        async with broker.pipeline(transaction=False) as pipe:
            for key, message in messages:
                pipe.lpush(key, message)
            await pipe.execute()
        out.update((p.task_id, _result(app, p)) for p in celery)
    rest = [p for p, w in zip(prepared, where, strict=True) if w != CELERY]
    if rest:
        out.update((p.task_id, r) for p, r in zip(rest, await to_asyncq(rest), strict=True))
    return [out[p.task_id] for p in prepared]


class CeleryBackendResult(AsyncResult):
    """An ``AsyncResult`` whose task runs on a Celery worker: state and value come from Celery's result backend
    (``celery-task-meta-<id>``, woken by its PUBLISH). The backend is the app's ``result_backend`` when that is a
    Redis URL, else the broker's Redis."""

    async def _backend_meta(self, timeout: float | None = None, wait: bool = False) -> CeleryMeta:
        client = await backend_client(self.app)
        return await (wait_meta(client, self.id, timeout) if wait else read_meta(client, self.id))

    def _exception_of(self, meta: CeleryMeta) -> BaseException:
        if meta.status == states.REVOKED:
            return TaskRevokedError(str((meta.result or {}).get("exc_message", "revoked")
                                        if isinstance(meta.result, dict) else "revoked"), job_id=self.id)
        return rebuild_celery_exception(meta.result, meta.traceback, self.id, ALIASES)

    async def ameta(self) -> dict[str, Any]:
        meta = await self._backend_meta()
        result = meta.result
        if meta.status in states.PROPAGATE_STATES:
            result = self._exception_of(meta)
        return {"status": meta.status, "result": result, "traceback": meta.traceback, "date_done": meta.date_done,
                "task_id": self.id}

    async def _wait_one(self, deadline: float | None) -> Any:
        loop = asyncio.get_running_loop()
        timeout = None if deadline is None else max(0.0, deadline - loop.time())
        try:
            meta = await self._backend_meta(timeout, wait=True)
        except builtins.TimeoutError:
            raise TimeoutError("The operation timed out.") from None
        if meta.status in states.PROPAGATE_STATES:
            raise self._exception_of(meta)
        return meta.result

    def forget(self) -> None:
        async def forget() -> None:  # where the result is read: the result backend, not the broker
            client = await backend_client(self.app)
            await client.delete(meta_key(self.id))

        self.app.bridge.run(forget())

    def revoke(self, connection: Any = None, terminate: bool = False, signal: Any = None, wait: bool = False,
               timeout: float | None = None) -> None:
        raise NotImplementedError(
            f"task {self.id} runs on a Celery worker: revoke it with Celery's control "
            f"(celery -A proj control revoke {self.id})"
        )

