"""Batching the finish writes of many jobs into one script call.

At thousands of short jobs a second the per-job round trip to record a result is the bottleneck. Jobs that
end while a batch is in flight wait for the next one, so under load one EVALSHA finishes dozens of jobs, and
when idle a lone job is finished at once (no timer, no added latency).
"""

from __future__ import annotations

import asyncio
import contextlib

from asyncq.broker import Broker, Lease, PartialWrite

MAX_BATCH = 500


class Finisher:
    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._pending: list[tuple[Lease, bytes, int, asyncio.Future[int]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="asyncq-finisher")

    async def finish(self, lease: Lease, result: bytes, keep_ms: int) -> int:
        """1 if recorded, 0 if the lease was lost; raises the Redis error if the batch could not be sent."""
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((lease, result, keep_ms, fut))
        self._wake.set()
        return await fut

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                try:
                    statuses = await self._broker.finish([(lease, res, keep) for lease, res, keep, _ in batch])
                except PartialWrite as partial:  # a cluster shard did not answer: settle the others' jobs
                    for (*_, fut), outcome in zip(batch, partial.results, strict=True):
                        if fut.done():
                            continue
                        if isinstance(outcome, BaseException):
                            fut.set_exception(outcome)
                        else:
                            fut.set_result(outcome)
                    continue
                except Exception as exc:
                    for *_, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                for (*_, fut), status in zip(batch, statuses, strict=True):
                    if not fut.done():
                        fut.set_result(status)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
