"""Hooks around every job, for metrics, tracing and logging.

Subclass ``Hooks`` and override what you need; every method is a no-op by default, so adding a method later
breaks no one. Hooks run in the worker, awaited in order; an exception in a hook is logged and swallowed, so
a broken metrics exporter never fails a job.
"""

from __future__ import annotations

import logging
from typing import Any

from asyncq.context import JobContext

log = logging.getLogger("asyncq.hooks")


class Hooks:
    async def on_worker_start(self, worker: Any) -> None:
        """A worker is about to claim its first job (``worker`` is the asyncq Worker)."""

    async def on_worker_stop(self, worker: Any) -> None:
        """A worker stopped claiming and its running jobs are finished or handed back."""

    async def on_start(self, ctx: JobContext) -> None:
        """The job is about to run (after it was claimed and decoded)."""

    async def on_success(self, ctx: JobContext, result: Any) -> None:
        """The task returned ``result``."""

    async def on_failure(self, ctx: JobContext, exc: BaseException) -> None:
        """The task raised on its last try (or a non-retryable error); the job goes to the dead-letter store."""

    async def on_retry(self, ctx: JobContext, exc: BaseException, delay: float) -> None:
        """The task raised and will be tried again in ``delay`` seconds."""

    async def on_dead_letter(self, ctx: JobContext | None, job_id: str, reason: str) -> None:
        """A job went to the dead-letter store (``ctx`` is None when the payload could not be decoded)."""


async def call_hooks(hooks: list[Hooks], method: str, *args: Any) -> None:
    for h in hooks:
        try:
            await getattr(h, method)(*args)
        except Exception:
            log.exception("hook %s.%s failed; the job is not affected", type(h).__name__, method)
