"""Celery's Redis result backend: read as Celery's ``AsyncResult.get()`` reads it, written as a Celery worker
writes it (the writer beside the reader, so the document's shape is stated once).

A result is the JSON string at ``celery-task-meta-<id>``::

    {"status": "SUCCESS", "result": 5, "traceback": null, "children": [], "date_done": "...+00:00",
     "task_id": "...", ["parent_id", "group_id", ...]}

A failure's ``result`` is ``{"exc_type": "ValueError", "exc_message": ["boom"], "exc_module": "builtins"}`` and
``traceback`` the formatted text. The worker writes the key and PUBLISHes the same JSON on the channel of the
same name, so ``wait_meta`` subscribes *first*, then reads the key (the result may already be there), and
re-reads on every message and at least once a second (a safety net for a message lost to a reconnect).

Exceptions are rebuilt with their original class only when that class is already imported in this process
(``sys.modules``): nothing is imported on the say-so of Redis data, as in ``asyncq.codec.rebuild_exception``.
Otherwise the caller gets ``RemoteTaskError`` naming the type.

``write_meta`` stores a document with ``lua/celery_store.lua`` (SET and PUBLISH in one step, never replacing a
SUCCESS). The functions here take the Redis client of the result backend; which client that is (the broker's, or
another Redis named by ``result_backend``) is decided by ``asyncq.compat.store``.
"""

from __future__ import annotations

import asyncio
import builtins
import sys
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from redis.asyncio import Redis

from asyncq.broker import Broker
from asyncq.celery_protocol.kombu_layout import meta_key
from asyncq.codec import build_exception
from asyncq.exceptions import RemoteTaskError
from asyncq.scripts import script_source

READY_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED"})
PROPAGATE_STATES = frozenset({"FAILURE", "REVOKED"})
SAFETY_REREAD = 1.0  # seconds between re-reads while waiting, whatever pub/sub says


@dataclass(frozen=True, slots=True)
class CeleryMeta:
    """One task's entry in Celery's result backend; ``status`` is PENDING when there is none."""

    task_id: str
    status: str = "PENDING"
    result: Any = None
    traceback: str | None = None
    date_done: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.status in READY_STATES


def parse_meta(task_id: str, data: bytes | str | None) -> CeleryMeta:
    if not data:
        return CeleryMeta(task_id)
    raw = orjson.loads(data)
    done = raw.get("date_done")
    when = None
    if isinstance(done, str):
        try:
            when = datetime.fromisoformat(done)
        except ValueError:
            when = None
    return CeleryMeta(task_id, str(raw.get("status", "PENDING")), raw.get("result"), raw.get("traceback"), when,
                      raw)


def exception_document(exc: BaseException, celery_names: frozenset[str] = frozenset(),
                       own_module: str = "") -> dict[str, Any]:
    """A failure as Celery stores it, so a Celery producer's ``get()`` raises the same type. A class of
    ``own_module`` (a package prefix) named in ``celery_names`` stands for Celery's own and is stored as
    ``celery.exceptions``; arguments JSON cannot carry are stored as their ``repr``."""
    cls = type(exc)
    module = cls.__module__
    if own_module and module.startswith(own_module) and cls.__name__ in celery_names:
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
    """The JSON document ``parse_meta`` reads. A result JSON cannot carry becomes the FAILURE a Celery worker
    would report (``kombu.exceptions.EncodeError``)."""
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


_store_scripts: weakref.WeakKeyDictionary[Redis, Any] = weakref.WeakKeyDictionary()


async def write_meta(client: Redis, task_id: str, document: bytes, ttl: int) -> bool:
    """Store and PUBLISH a task's document (``ttl`` seconds, 0: kept); False if a SUCCESS was there already."""
    if isinstance(client, Broker):
        store = client.scripts.celery_store
    elif (store := _store_scripts.get(client)) is None:
        store = _store_scripts[client] = client.register_script(script_source("celery_store"))
    return bool(await store(keys=[meta_key(task_id)], args=[document, max(1, ttl) if ttl else 0]))


async def forget_meta(client: Redis, task_id: str) -> None:
    await client.delete(meta_key(task_id))


async def read_meta(client: Redis, task_id: str) -> CeleryMeta:
    return parse_meta(task_id, await client.get(meta_key(task_id)))


async def wait_meta(client: Redis, task_id: str, timeout: float | None) -> CeleryMeta:
    """Wait until the task is ready (SUCCESS, FAILURE, REVOKED); raise ``asyncio.TimeoutError`` after
    ``timeout`` seconds (None: no limit)."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    channel = meta_key(task_id)
    pubsub = client.pubsub()
    try:
        await pubsub.subscribe(channel)  # before the read: a result written in between is not missed
        while True:
            meta = await read_meta(client, task_id)
            if meta.ready:
                return meta
            left = SAFETY_REREAD if deadline is None else min(SAFETY_REREAD, deadline - loop.time())
            if left <= 0:
                raise TimeoutError(f"no result for Celery task {task_id} within {timeout} s")
            await pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]


def _find_class(module: str, qualname: str) -> type[BaseException] | None:
    owner: Any = builtins if module in ("builtins", "exceptions", "") else sys.modules.get(module)
    if owner is None:
        return None
    obj: Any = owner
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    return obj if isinstance(obj, type) and issubclass(obj, BaseException) else None


def rebuild_celery_exception(result: Any, traceback: str | None = None, task_id: str | None = None,
                             aliases: Mapping[str, type[BaseException]] | None = None) -> BaseException:
    """A failure's ``result`` as an exception: its class if already imported (or in ``aliases``, by class
    name, for Celery's own exceptions: ``celery.exceptions`` is usually not imported by an asyncq producer),
    else ``RemoteTaskError``. Only ``Exception`` subclasses are instantiated."""
    tb = traceback or ""
    if not isinstance(result, Mapping) or "exc_type" not in result:
        return RemoteTaskError(f"Celery task {task_id} failed: {result!r}", job_id=task_id, remote_traceback=tb)
    qualname = str(result["exc_type"])
    module = str(result.get("exc_module") or "builtins")
    message = result.get("exc_message", ())
    args = list(message) if isinstance(message, list | tuple) else [message]
    cls = None
    if aliases and (module.startswith("celery") or module.startswith("billiard")):
        cls = aliases.get(qualname)
    cls = cls or _find_class(module, qualname)
    exc = build_exception(cls, args, tb, f"raised by Celery task {task_id}")
    if exc is not None:
        return exc
    dotted = qualname if module == "builtins" else f"{module}.{qualname}"
    text = " ".join(str(a) for a in args)
    return RemoteTaskError(f"{dotted}: {text}", job_id=task_id, exc_type=dotted, remote_traceback=tb)
