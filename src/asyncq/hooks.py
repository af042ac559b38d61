"""Hooks around every job, for metrics, tracing and logging, and around every enqueue.

Subclass ``Hooks`` and override what you need; every method is a no-op by default, so adding a method later
breaks no one. Hooks run in the worker, awaited in order, in the job's own asyncio task: a context variable a
hook sets in ``on_start`` (a tracing span made current) is seen by the task body, also by a plain ``def`` body
in its thread, and is reset in ``on_end``. An exception in a hook is logged and swallowed, so a broken metrics
exporter never fails a job.

``SendHooks`` is the producer side: ``App.enqueue_many`` (and everything built on it) calls ``sending`` before
it serializes a batch, so a hook can add headers (a trace context) to each job, and ``sent`` after Redis
answered (or failed). They are plain functions, not coroutines: the sync enqueue path calls them too.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from asyncq.context import JobContext

if TYPE_CHECKING:
    from asyncq.task import JobSpec

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

    async def on_end(self, ctx: JobContext, outcome: str, exc: BaseException | None) -> None:
        """A run that ``on_start`` saw has ended, whatever the way: last of the hooks for that run.

        ``outcome`` is one of ``success``, ``retry``, ``failed`` (dead-lettered), ``aborted``, ``handed back``
        (the worker stopped and gave the job back), ``lease lost`` (another worker runs it now) or ``cancelled``;
        ``exc`` is the task's exception, if it raised. Pair it with ``on_start`` to release what that set up.
        """


class SendHooks:
    """Producer-side hooks, called by ``App.enqueue_many`` and ``App.enqueue_many_sync``."""

    def sending(self, specs: Sequence[JobSpec]) -> tuple[Sequence[JobSpec], Any]:
        """Before a batch is serialized: return the specs to send (e.g. with headers added) and a token that
        ``sent`` gets back."""
        return specs, None

    def sent(self, token: Any, job_ids: Sequence[str], error: BaseException | None) -> None:
        """After Redis answered for the batch (``job_ids`` in the order of the specs), or failed (``error``)."""


async def call_hooks(hooks: list[Hooks], method: str, *args: Any) -> None:
    for h in hooks:
        try:
            await getattr(h, method)(*args)
        except Exception:
            log.exception("hook %s.%s failed; the job is not affected", type(h).__name__, method)


def run_sending(hooks: Sequence[SendHooks], specs: Sequence[JobSpec]) -> tuple[Sequence[JobSpec], list[Any]]:
    """Every send hook's ``sending`` in order, each seeing the specs the one before returned."""
    tokens: list[Any] = []
    for h in hooks:
        try:
            specs, token = h.sending(specs)
        except Exception:
            log.exception("send hook %s.sending failed; the jobs are sent without it", type(h).__name__)
            token = None
        tokens.append(token)
    return specs, tokens


def run_sent(hooks: Sequence[SendHooks], tokens: Sequence[Any], job_ids: Sequence[str],
             error: BaseException | None) -> None:
    for h, token in zip(hooks, tokens, strict=True):
        try:
            h.sent(token, job_ids, error)
        except Exception:
            log.exception("send hook %s.sent failed; the jobs are not affected", type(h).__name__)


def carried_headers(hooks: Sequence[SendHooks], spec: JobSpec, job_id: str) -> dict[str, Any]:
    """The headers the send hooks add to one job sent by another route (the Celery layer publishing a Celery
    message): a trace context, say. Runs ``sending`` and ``sent`` around building it; the headers the spec
    already had are not repeated."""
    if not hooks:
        return {}
    specs, tokens = run_sending(hooks, [spec])
    run_sent(hooks, tokens, [job_id], None)
    given = spec.options.headers or {}
    return {k: v for k, v in (specs[0].options.headers or {}).items() if k not in given}
