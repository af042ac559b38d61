"""Waiting for results without polling: one pub/sub connection per App, shared by every waiter.

The finish script PUBLISHes on ``asyncq:done:<id>`` after it writes the result, so a waiter wakes the moment a
job ends. A waiter subscribes *before* it reads the result key, so a job finishing in between is never missed.
Messages can still be lost (a dropped connection), so each waiter also re-reads the key every second: a safety
net, not the mechanism.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from asyncq.broker import REDIS_DOWN, Broker

log = logging.getLogger("asyncq.results")

SAFETY_POLL = 1.0


class ResultWaiter:
    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        #: subscribed channel -> job id (the channel's name depends on the layout: Broker.done_channel)
        self._channels: dict[bytes, str] = {}
        self._lock = asyncio.Lock()
        #: the last resubscription failed (Redis still down): retry it instead of waiting for a message
        self._broken = False

    async def _subscribe(self, job_id: str, fut: asyncio.Future[None]) -> None:
        async with self._lock:
            first = job_id not in self._waiters
            self._waiters.setdefault(job_id, set()).add(fut)
            if self._pubsub is None:
                await self._broker.initialize()  # a cluster client loads its slot map (no-op on one Redis)
                self._pubsub = self._broker.pubsub(ignore_subscribe_messages=True)
            if first:
                channel = self._broker.done_channel(job_id)
                self._channels[channel.encode()] = job_id
                await self._broker.subscribe(self._pubsub, channel)
            if self._reader is None or self._reader.done():
                self._reader = asyncio.create_task(self._read(), name="asyncq-result-reader")

    async def _unsubscribe(self, job_id: str, fut: asyncio.Future[None]) -> None:
        async with self._lock:
            waiters = self._waiters.get(job_id)
            if waiters is None:
                return
            waiters.discard(fut)
            if not waiters:
                del self._waiters[job_id]
                if self._pubsub is not None:
                    with contextlib.suppress(*REDIS_DOWN):
                        channel = self._broker.done_channel(job_id)
                        self._channels.pop(channel.encode(), None)
                        await self._broker.unsubscribe(self._pubsub, channel)

    async def _resubscribe(self) -> None:
        """A new pub/sub connection for every channel still waited on, after an outage: the old one may point at a
        node that is gone (a cluster master, a Sentinel's old master). If Redis is still down, the next round
        tries again; meanwhile the waiters poll."""
        async with self._lock:
            old, self._pubsub = self._pubsub, self._broker.pubsub(ignore_subscribe_messages=True)
            if old is not None:
                with contextlib.suppress(Exception):
                    await old.aclose()
            self._broken = True
            try:
                await self._broker.initialize()
                if self._channels:
                    await self._broker.subscribe(self._pubsub, *(c.decode() for c in self._channels))
                self._broken = False
            except REDIS_DOWN as exc:
                log.debug("result listener could not resubscribe yet (%s)", exc)

    async def _read(self) -> None:
        while self._waiters:
            try:
                msg = await self._broker.next_message(self._pubsub, SAFETY_POLL)
            except REDIS_DOWN as exc:
                log.debug("result listener lost its connection (%s); waiters fall back to polling", exc)
                await asyncio.sleep(SAFETY_POLL)
                await self._broker.reset_pubsub()
                await self._resubscribe()
                continue
            except RuntimeError:  # not subscribed to anything right now
                if self._broken:
                    await asyncio.sleep(SAFETY_POLL)
                    await self._resubscribe()
                else:
                    await asyncio.sleep(0.01)
                continue
            if msg and msg.get("type") == "message":
                job_id = self._channels.get(msg["channel"])
                for fut in self._waiters.get(job_id, ()) if job_id is not None else ():
                    if not fut.done():
                        fut.set_result(None)

    async def wait(self, job_id: str, timeout: float | None, *, wait_if_missing: bool = False) -> bytes | None:
        """The raw result bytes once the job has finished.

        Returns None early when there is nothing to wait for (no job, no lease, no result: it never existed,
        or it finished without keeping its result), or when ``timeout`` ran out; the caller tells which.
        ``wait_if_missing`` waits for a job that does not exist yet (the next step of a chain).
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        fut: asyncio.Future[None] = loop.create_future()
        subscribed = False
        try:
            try:
                await self._subscribe(job_id, fut)
                subscribed = True
            except REDIS_DOWN as exc:
                log.debug("cannot subscribe for %s (%s); polling", job_id, exc)
            while True:
                raw, alive = await self._look(job_id)
                if raw is not None:
                    return raw
                if not alive and not wait_if_missing:
                    # it may have just finished
                    return await self._broker.result_of(job_id)
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    return None
                wait_for = SAFETY_POLL if remaining is None else min(SAFETY_POLL, remaining)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(fut), wait_for)
                if fut.done():
                    fut = loop.create_future()
                    if subscribed:
                        await self._replace(job_id, fut)
        finally:
            if subscribed:
                await self._unsubscribe(job_id, fut)

    async def _look(self, job_id: str) -> tuple[bytes | None, bool]:
        """The result if written, and whether the job still exists (queued, scheduled or running)."""
        return await self._broker.result_or_alive(job_id)

    async def _replace(self, job_id: str, fut: asyncio.Future[None]) -> None:
        async with self._lock:
            waiters = self._waiters.setdefault(job_id, set())
            for old in [f for f in waiters if f.done()]:
                waiters.discard(old)
            waiters.add(fut)

    async def close(self) -> None:
        self._waiters.clear()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, *REDIS_DOWN):
                await self._reader
        if self._pubsub is not None:
            with contextlib.suppress(*REDIS_DOWN):
                await self._pubsub.aclose()
        self._pubsub = None
        self._reader = None
