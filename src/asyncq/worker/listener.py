"""The worker's pub/sub ear: wake-ups for its queues and abort requests for its jobs.

A wake-up is a hint, never the only path: if a message is lost (reconnect, Redis restart) the claim loop's
safety poll still finds the job. The listener reconnects on its own with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from asyncq.broker import REDIS_DOWN, Broker, printable_id

log = logging.getLogger("asyncq.worker")


def cancel_requested() -> bool:
    """True inside a task that was asked to stop. Loops check it after catching a Redis error, because redis-py
    can turn a cancellation that lands during a command into a ConnectionError, which the loop would survive."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class Listener:
    def __init__(
        self,
        broker: Broker,
        queues: tuple[str, ...],
        on_wake: Callable[[], None],
        on_abort: Callable[[str], None],
        on_redis_down: Callable[[BaseException], None],
    ) -> None:
        self._broker = broker
        self._queues = queues
        self._aborts: set[bytes] = set()
        self._channels: list[str] = []
        self._channels_now()
        self._on_wake = on_wake
        self._on_abort = on_abort
        self._on_redis_down = on_redis_down
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    def _channels_now(self) -> bool:
        """Recompute the channels (one wake and one abort channel per queue shard on a cluster, whose shard counts
        can grow while the worker runs; one each on one Redis); True if they changed."""
        aborts = list(dict.fromkeys(self._broker.abort_channels(self._queues)))
        channels = [*self._broker.wake_channels(self._queues), *aborts]
        changed = channels != self._channels
        self._aborts, self._channels = {c.encode() for c in aborts}, channels
        return changed

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="asyncq-listener")

    async def _run(self) -> None:
        delay = 0.1
        while not cancel_requested():
            pubsub: Any = None
            try:
                await self._broker.initialize()  # a cluster client loads its slot map (no-op on one Redis)
                await self._broker.refresh_layout()
                self._channels_now()
                pubsub = self._broker.pubsub(ignore_subscribe_messages=True)
                await self._broker.subscribe(pubsub, *self._channels)
                self.subscribed.set()
                self._on_wake()  # anything enqueued while we were not listening
                delay = 0.1
                while True:
                    msg = await self._broker.next_message(pubsub, 5.0)
                    if not msg:
                        await self._broker.refresh_layout()
                        if self._channels_now():  # a producer started using more shards: listen to them too
                            await self._broker.subscribe(pubsub, *self._channels)
                        continue
                    if msg.get("type") != "message":
                        continue
                    if msg["channel"] in self._aborts:
                        self._on_abort(printable_id(msg["data"])[0])
                    else:
                        self._on_wake()
            except REDIS_DOWN as exc:
                self.subscribed.clear()
                self._on_redis_down(exc)
                await self._broker.reset_pubsub()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            except Exception:  # never let one odd message end the wake-ups: the worker would only poll
                self.subscribed.clear()
                log.exception("the wake-up listener hit an unexpected error; it resubscribes in %.1f s", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
