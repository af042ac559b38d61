"""Serving Celery's own queues (``asyncq worker proj.celery:app --celery-queues celery,emails``).

An unchanged Celery producer keeps LPUSHing protocol-v2 messages onto kombu's lists; this loop, an extra job
source of an asyncq worker (``asyncq.worker.sources``: the CLI passes it to the worker), takes them and turns
each into an asyncq job of the same id on the asyncq queue of the same name, which the worker's ordinary claim
loop then runs (``compat.runtime.execute``), writing the outcome back in Celery's result-backend format.
The message's path is always in exactly one place:

1. ``celery_claim`` (Lua, through ``celery_protocol.transport``): list -> kombu's ``unacked`` /
   ``unacked_index``, in kombu's form, atomically (kombu's own consumer has a window between BRPOP and its
   ``unacked`` write). If this worker dies now, Celery's ``restore_visible`` (or ``celery_restore`` here) puts
   the message back after the visibility timeout.
2. decode (``celery_protocol.decode``) and map (``compat.celery_receive.adoption``); what cannot run goes to
   asyncq's dead-letter store with the reason (``celery_settle`` ``dead``); a task this worker does not know is
   put back on its list for a worker that does (a Celery worker, or an asyncq worker of a newer deploy), and
   dead-lettered after ``unknown_task_wait``.
3. ``enqueue`` with the adoption part (Lua): the job is created and the message leaves ``unacked`` in one step.
   From here the job has an asyncq lease: a killed worker's job runs again on another asyncq worker after the
   lease, and a long or delayed (eta) job is never re-delivered because a visibility timeout ran out.

No prefetch: messages are taken only for free concurrency slots not already owed to adopted jobs waiting in the
asyncq queue, so a Celery worker on the same queue still gets its share. Celery producers do not announce new
messages, so an idle consumer polls its lists every ``celery_poll_interval`` (50 ms by default).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import orjson

from asyncq import keys
from asyncq.broker import REDIS_DOWN, NewJob, now_ms
from asyncq.celery_protocol.decode import CeleryMessage, decode_message
from asyncq.celery_protocol.kombu_layout import PRIORITY_STEPS, VISIBILITY_TIMEOUT, pidbox_channel, queue_list_key
from asyncq.celery_protocol.transport import CeleryTransport, Settle
from asyncq.compat import store
from asyncq.compat.celery_receive import REPLY, adoption, store_outcome
from asyncq.compat.exceptions import ImproperlyConfigured, TaskRevokedError
from asyncq.dead_letter import DeadLetter
from asyncq.exceptions import ConfigurationError, MalformedMessage
from asyncq.keys import check_queue_name
from asyncq.settings import from_env_fields
from asyncq.worker.sources import SourceHost

if TYPE_CHECKING:
    from asyncq.compat.app import Celery

log = logging.getLogger("asyncq.celery")

BATCH = 100  # most messages taken per round trip
RESTORE_EVERY = 10.0  # seconds between restore passes (kombu: about every 10 s per consumer)


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    """What ``--celery-queues`` configures; ``from_env`` reads ``ASYNCQ_WORKER_CELERY_QUEUES`` and
    ``ASYNCQ_WORKER_CELERY_POLL_INTERVAL`` (the names these had as worker settings)."""

    #: Celery (kombu) queues on the same Redis to consume Celery's own messages from; each message becomes a
    #: job on the asyncq queue of the same name
    celery_queues: tuple[str, ...] = ()
    #: how often an idle consumer looks at those lists (Celery producers send no wake-up)
    celery_poll_interval: float = 0.05

    def __post_init__(self) -> None:
        if isinstance(self.celery_queues, str):
            object.__setattr__(self, "celery_queues",
                               tuple(q.strip() for q in self.celery_queues.split(",") if q.strip()))
        for q in self.celery_queues:
            check_queue_name(q)
        if self.celery_poll_interval <= 0:
            raise ConfigurationError(f"celery_poll_interval must be > 0, got {self.celery_poll_interval}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ConsumerSettings:
        return from_env_fields(cls, "ASYNCQ_WORKER_", env, overrides)


#: why the Celery wire-protocol bridge is refused on Redis Cluster, and what to do instead
CELERY_BRIDGE_ON_CLUSTER = (
    "--celery-queues (the Celery wire-protocol bridge) runs on one Redis or Sentinel only: kombu's keys (the queue "
    "lists, 'unacked', 'unacked_index') are global and one bridge step moves a message between them atomically, "
    "which Redis Cluster cannot do across hash slots. On a cluster, send tasks with asyncq.compat (delay/"
    "apply_async) instead of Celery's own client, or run the bridge against a standalone Redis."
)


class CeleryConsumer:
    """The extra job source (``asyncq.worker.sources.JobSource``) that serves Celery's queues."""

    name = "celery-consumer"
    host: SourceHost  # set when the worker starts it
    transport: CeleryTransport

    def __init__(self, compat: Celery, settings: ConsumerSettings) -> None:
        if compat.asyncq_app.settings.is_cluster:
            raise ConfigurationError(CELERY_BRIDGE_ON_CLUSTER)
        self.compat = compat
        self.queues = settings.celery_queues
        self.lists = [(queue_list_key(q, step), q) for q in self.queues for step in PRIORITY_STEPS]
        self.lanes = [lane for q in self.queues for lane in keys.lanes_by_priority(q)]
        options = compat.conf.get("broker_transport_options") or {}
        self.visibility_timeout = float(options.get("visibility_timeout", VISIBILITY_TIMEOUT))
        self.poll = settings.celery_poll_interval
        self.stats: dict[str, int] = {"adopted": 0, "dead_lettered": 0, "put_back": 0, "restored": 0}
        self._warned: set[str] = set()

    # --- JobSource ----------------------------------------------------------------------------------------
    def side_loops(self, host: SourceHost) -> dict[str, Coroutine[Any, Any, None]]:
        self._attach(host)
        return {"celery-revokes": self.listen_revokes()}

    def _attach(self, host: SourceHost) -> None:
        self.host = host
        self.transport = CeleryTransport(host.broker)

    # --- loop -----------------------------------------------------------------------------------------------
    async def run(self, host: SourceHost) -> None:
        self._attach(host)
        log.info("consuming Celery queues %s (visibility timeout %.0f s)", ", ".join(self.queues),
                 self.visibility_timeout)
        backoff = 0.1
        next_restore = 0.0
        owed = 0  # adopted jobs possibly still waiting in the asyncq queue: counted against free slots
        while not self.host.stopping.is_set():
            try:
                if time.monotonic() >= next_restore:
                    await self.restore()
                    next_restore = time.monotonic() + min(RESTORE_EVERY, self.visibility_timeout / 4)
                if owed:
                    owed = await self._waiting()
                want = min(BATCH, self.host.free_slots() - owed)
                if want <= 0:
                    await self._pause(self.poll)
                    continue
                claimed = await self.transport.claim(self.lists, want)
                adopted, pause = await self._handle(claimed) if claimed else (0, self.poll)
                owed += adopted
            except REDIS_DOWN as exc:
                self.host.redis_down(exc)
                await self._pause(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            if pause:
                await self._pause(pause)

    # --- Celery's revokes ---------------------------------------------------------------------------------
    async def listen_revokes(self) -> None:
        """Honour ``AsyncResult.revoke()`` / ``celery control revoke`` from Celery clients: their broadcast on
        the pidbox channel becomes asyncq.compat's persistent revoke (checked before a job runs; ``terminate``
        cancels a running one), and Celery's result backend says REVOKED for jobs asyncq holds."""
        db = int(self.host.broker.connection_pool.connection_kwargs.get("db", 0))
        backoff = 0.5
        while not self.host.stopping.is_set():
            pubsub = self.host.broker.pubsub()
            try:
                await pubsub.subscribe(pidbox_channel(db))
                backoff = 0.5
                while not self.host.stopping.is_set():
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None:
                        await self._control(message["data"])
            except REDIS_DOWN as exc:
                self.host.redis_down(exc)
                await self._pause(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                with contextlib.suppress(*REDIS_DOWN):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _control(self, data: bytes) -> None:
        try:
            envelope = orjson.loads(data)
            command = orjson.loads(base64.b64decode(envelope["body"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("ignored a control message on the Celery pidbox that is not JSON")
            return
        if not isinstance(command, dict) or command.get("method") != "revoke":
            return  # ping, inspect, ... are for Celery workers
        arguments = command.get("arguments") or {}
        ids = arguments.get("task_id")
        ids = [ids] if isinstance(ids, str) else [str(i) for i in ids or ()]
        terminate = bool(arguments.get("terminate"))
        if not ids:
            return
        held = []
        for task_id in ids:
            running = await self.host.broker.is_running(task_id)
            if await self.host.broker.is_queued(task_id) and (terminate or not running):
                held.append(task_id)
        await self.compat.control.arevoke(ids, terminate=terminate)
        for task_id in held:
            await store_outcome(self.compat, SimpleNamespace(
                id=task_id, reply=REPLY, ignore_result=False, parent_id=None, group=None), "REVOKED",
                exc=TaskRevokedError("revoked"))
        log.info("revoked by a Celery client: %s%s", ", ".join(ids), " (terminate)" if terminate else "")

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.host.stopping.wait(), timeout=seconds)

    async def _waiting(self) -> int:
        """Jobs ready in the asyncq lanes of these queues (adopted, not yet claimed by a slot)."""
        return await self.host.broker.ready_count(self.lanes, now_ms())

    async def restore(self) -> int:
        restored = await self.transport.restore(self.queues, self.visibility_timeout)
        if restored > 0:
            self.stats["restored"] += restored
            log.warning("restored %d Celery message(s) left unacknowledged for over %.0f s (a consumer died)",
                        restored, self.visibility_timeout)
        return max(restored, 0)

    # --- one batch ----------------------------------------------------------------------------------------
    async def _handle(self, claimed: list[tuple[str, bytes, str]]) -> tuple[int, float]:
        """Adopt, put back or dead-letter each claimed message; returns (adopted, seconds to pause)."""
        settle: list[Settle] = []
        jobs: list[NewJob] = []
        tags: list[str] = []
        unknown_wait = 0.0
        known = 0
        now = now_ms()
        for tag, raw, queue in claimed:
            if not tag:  # celery_claim dead-lettered an element that was not a message at all
                self.stats["dead_lettered"] += 1
                log.error("Celery queue %s: an element that is not a Celery message was dead-lettered as %s",
                          queue, raw.decode(errors="replace"))
                continue
            try:
                msg = decode_message(tag, raw, queue)
            except MalformedMessage as exc:
                task_id, task = _peek(raw)
                settle.append(self._dead(tag, raw, queue, task_id or f"celery-{tag}", task, str(exc)))
                continue
            if msg.task not in self.compat.tasks:
                action, waited = await self._unknown(msg)
                settle.append(action)
                unknown_wait = max(unknown_wait, waited)
                continue
            known += 1
            try:
                size = await self._chord_size(msg)
                prepared = adoption(self.compat, msg, size)
                jobs.append(self.host.new_job(prepared.spec, now))
                tags.append(tag)
            except (MalformedMessage, TypeError, ValueError, ImproperlyConfigured) as exc:
                settle.append(self._dead(tag, raw, queue, msg.id, msg.task, f"cannot run: {exc}"))
                if not isinstance(exc, MalformedMessage):  # the producer may be waiting on get(): tell it
                    await store_outcome(self.compat, SimpleNamespace(
                        id=msg.id, reply=REPLY, ignore_result=False, parent_id=msg.headers.get("parent_id"),
                        group=msg.headers.get("group")), "FAILURE", exc=exc)
        adopted = 0
        if jobs:
            statuses = await self.transport.adopt(jobs, tags)
            adopted = sum(1 for s in statuses if s == 1)
            self.stats["adopted"] += adopted
            for job, status in zip(jobs, statuses, strict=True):
                if status == 0:
                    log.info("Celery task %s was already adopted (a redelivery): acknowledged", job.job_id)
        if settle:
            await self.transport.settle(settle)
        if known == 0 and unknown_wait:  # only tasks we do not know: give their workers a chance
            return adopted, min(5.0, 0.5 + unknown_wait / 10)
        return adopted, 0.0

    async def _chord_size(self, msg: CeleryMessage) -> int | None:
        group = msg.headers.get("group")
        if not msg.embed.get("chord") or not group:
            return None
        return await store.celery_chord_size(self.compat, str(group))

    async def _unknown(self, msg: CeleryMessage) -> tuple[Settle, float]:
        first = await self.host.broker.unknown_since(msg.id)
        waited = max(0.0, (now_ms() - first) / 1000)
        limit = self.host.settings.unknown_task_wait
        if waited >= limit:
            reason = (f"unknown task {msg.task!r}: no asyncq worker registers it and no Celery worker took it "
                      f"within {limit:g} s (unknown_task_wait); deploy a worker that knows it, then retry "
                      "the dead letter")
            return self._dead(msg.tag, msg.raw, msg.queue, msg.id, msg.task, reason), waited
        if msg.task not in self._warned:
            self._warned.add(msg.task)
            log.warning("Celery queue %s: task %r is not registered here; put back for a worker that knows it "
                        "(dead-lettered after %g s)", msg.queue, msg.task, limit)
        self.stats["put_back"] += 1
        back = queue_list_key(msg.queue, msg.priority)
        return ("back", msg.tag, msg.raw, back, "", b""), waited

    def _dead(self, tag: str, raw: bytes, queue: str, dlq_id: str, task: str | None,
              reason: str) -> Settle:
        self.stats["dead_lettered"] += 1
        log.error("Celery message %s on %s dead-lettered: %s", dlq_id, queue, reason)
        priority = None
        with contextlib.suppress(Exception):
            priority = orjson.loads(raw)["properties"]["priority"]
        meta = DeadLetter.meta_json(
            job_id=dlq_id, function=task or "", queue=queue, lane="", reason=reason,
            error=f"MalformedMessage: {reason}", traceback="", tries=0, failed_at_ms=now_ms(),
            worker=self.host.worker_id, outcome="dead", kind="celery",
            celery_list=queue_list_key(queue, priority if isinstance(priority, int) else None),
        )
        return ("dead", tag, raw, "", dlq_id, meta)


def _peek(raw: bytes) -> tuple[str | None, str | None]:
    """The task id and name of a message that failed to decode, when its headers still say them."""
    try:
        headers = orjson.loads(raw)["headers"]
        task_id, task = headers.get("id"), headers.get("task")
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return None, None
    return (str(task_id) if task_id else None), (task if isinstance(task, str) else None)
