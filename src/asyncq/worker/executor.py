"""Running one claimed job, start to settled: decode, find the task, run it under its timeout, and record the
outcome (result, retry, dead letter, hand-back) in Redis.

Every way a job can end is decided here and nowhere else; the lifecycle module only claims and schedules.
Settling retries through a Redis outage, because an outcome we computed must not be thrown away.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from asyncq import keys
from asyncq.broker import REDIS_DOWN, Claimed, Lease, now_ms
from asyncq.codec import Payload, decode_payload, encode_error, encode_result
from asyncq.context import JobContext, reset_current, set_current
from asyncq.dead_letter import DeadLetter
from asyncq.exceptions import (
    DeserializationError,
    JobAborted,
    JobDeadLettered,
    Retry,
    TaskExited,
    TaskTimeout,
)
from asyncq.hooks import call_hooks
from asyncq.logs import job_finished
from asyncq.worker.state import WorkerState

if TYPE_CHECKING:
    from asyncq.task import Task

log = logging.getLogger("asyncq.worker")

T = TypeVar("T")

UNKNOWN_TASK_MAX_DELAY = 30.0
DLQ_HELP = "inspect with `asyncq dlq list`, put back with `asyncq dlq retry ID`, drop with `asyncq dlq purge ID`"


@dataclass(eq=False)
class RunningJob:
    """A job this worker holds, and why it might be stopped early."""

    claimed: Claimed
    task: asyncio.Task[None] | None = None
    abort_requested: bool = False
    lease_lost: bool = False
    hand_back: bool = False
    started: bool = False
    #: its outcome is being written (perhaps held through a Redis outage): never cancel it now
    settling: bool = False
    ctx: JobContext | None = field(default=None)

    @property
    def lease(self) -> Lease:
        c = self.claimed
        return Lease(c.job_id, c.token, c.lane, c.queue, c.generation, c.raw_id)


class Executor:
    def __init__(self, state: WorkerState) -> None:
        self.state = state
        self.app = state.app
        self.limiter = state.limiter
        self._signatures: dict[str, inspect.Signature | None] = {}

    # --- entry ---------------------------------------------------------------------------------------------
    async def run(self, rj: RunningJob) -> None:
        c = rj.claimed
        if c.problem:
            await self._dead_letter(rj, None, f"unreadable entry: {c.problem}", None)
            return
        if c.payload is None:
            await self._dead_letter(rj, None, "payload missing: it expired before a worker reached it", None)
            return
        try:
            payload = decode_payload(self.app.serializer, c.payload)
        except DeserializationError as exc:
            await self._dead_letter(rj, None, f"undecodable payload: {exc}", exc)
            return
        if c.recoveries > self.app.settings.max_recoveries:
            lost = JobDeadLettered(
                f"worker lost {c.recoveries} times while running this job (max_recoveries is "
                f"{self.app.settings.max_recoveries}); the task may be killing its worker (os._exit, a crash "
                "in native code, running out of memory): fix it, then retry the dead letter",
                job_id=c.job_id,
            )
            await self._dead_letter(rj, payload, f"worker lost {c.recoveries} times; the task may be killing "
                                    "its worker", lost, "failed")
            return
        task = self.app.tasks.get(payload.function)
        if task is None:
            await self._unknown_task(rj, payload)
            return
        misfit = self._misfit(task, payload)
        if misfit:
            await self._dead_letter(rj, payload, misfit, None, "failed")
            return
        max_tries = task.options.max_tries or self.app.settings.max_tries
        ctx = JobContext(
            job_id=c.job_id,
            task_name=task.name,
            queue=c.queue,
            job_try=c.job_try,
            max_tries=max_tries,
            enqueue_ms=payload.enqueue_ms,
            start_ms=now_ms(),
            worker_id=self.state.worker_id,
            args=payload.args,
            kwargs=payload.kwargs,
            headers=payload.headers or {},
            recoveries=c.recoveries,
        )
        rj.ctx = ctx
        tenant = keys.tenant_of_suffix(c.lane[len(keys.base_lane(c.lane)):])
        if tenant != keys.DEFAULT_TENANT:  # for hooks (a tracing span's attribute): its sub-lane names it
            ctx.state["tenant"] = tenant
        if c.job_try > max_tries:  # only reachable for counters written by older versions or by hand
            over = JobDeadLettered(
                f"tried {c.job_try - 1} times without an outcome; max_tries is {max_tries}", job_id=c.job_id
            )
            await self._dead_letter(rj, payload, "max tries exceeded", over, "failed")
            return
        await self._execute(rj, task, payload, ctx)

    def _misfit(self, task: Task[Any, Any], payload: Payload) -> str:
        """Why the payload's arguments cannot be passed to the task ('' if they can): a job that can never
        run goes to the dead letters at once instead of failing its way through every retry."""
        if task.name not in self._signatures:
            try:
                self._signatures[task.name] = inspect.signature(task.fn)
            except (TypeError, ValueError):  # a builtin or C callable: let the call decide
                self._signatures[task.name] = None
        sig = self._signatures[task.name]
        if sig is None:
            return ""
        try:
            sig.bind(*payload.args, **payload.kwargs)
        except TypeError as exc:
            bare = sig.replace(parameters=[p.replace(annotation=p.empty) for p in sig.parameters.values()],
                               return_annotation=sig.empty)
            return f"arguments do not fit {task.name}{bare}: {exc}"
        return ""

    async def _execute(self, rj: RunningJob, task: Task[Any, Any], payload: Payload, ctx: JobContext) -> None:
        await call_hooks(self.state.hooks, "on_start", ctx)
        token = set_current(ctx)
        rj.started = True
        # how the run ended, for its log line and the on_end hooks (a tracing span closes there)
        outcome: str = "cancelled"
        error: BaseException | None = None
        retry_in: float | None = None
        try:
            result = await self._call(task, payload)
        except asyncio.CancelledError:
            if rj.hand_back:
                outcome = "handed back"
                await self._settle(
                    rj, lambda: self.state.broker.requeue(rj.lease, now_ms(), give_back_try=True), "hand back"
                )
                return
            if rj.abort_requested:
                outcome, error = "aborted", JobAborted("aborted while running")
                await self._finish(rj, payload, ctx, False, error, "aborted")
                await call_hooks(self.state.hooks, "on_failure", ctx, JobAborted("aborted"))
                return
            if rj.lease_lost:
                outcome = "lease lost"
                return  # another worker owns it now; nothing of ours to write
            raise
        except Retry as exc:
            error = exc
            outcome, retry_in = await self._failed(rj, task, payload, ctx, exc, forced_delay=exc.defer)
        except JobAborted as exc:  # the task aborted itself (e.g. the Celery layer's revoked or expired job)
            outcome, error = "aborted", exc
            await self._finish(rj, payload, ctx, False, exc, "aborted")
            await call_hooks(self.state.hooks, "on_failure", ctx, exc)
        except Exception as exc:
            error = exc
            outcome, retry_in = await self._failed(rj, task, payload, ctx, exc, forced_delay=None)
        else:
            outcome = "success"
            await self._finish(rj, payload, ctx, True, result, "success")
            self.state.stats["complete"] += 1
            await call_hooks(self.state.hooks, "on_success", ctx, result)
        finally:
            reset_current(token)
            job_finished(ctx, outcome, error, retry_in=retry_in)
            await call_hooks(self.state.hooks, "on_end", ctx, outcome, error)

    async def _call(self, task: Task[Any, Any], payload: Payload) -> Any:
        timeout = task.options.timeout if task.options.timeout is not None else self.app.settings.timeout
        try:
            async with asyncio.timeout(timeout):
                if task.is_async:
                    return await task.fn(*payload.args, **payload.kwargs)
                call = functools.partial(task.fn, *payload.args, **payload.kwargs)
                return await anyio.to_thread.run_sync(call, limiter=self.limiter, abandon_on_cancel=True)
        except (SystemExit, KeyboardInterrupt) as exc:  # the task's own exit: its job fails, the worker goes on
            code = f"({exc.code!r})" if isinstance(exc, SystemExit) else ""
            raise TaskExited(
                f"task {task.name} raised {type(exc).__name__}{code}; a task cannot stop its worker: "
                "raise an exception (or asyncq.Retry) to fail or retry the job"
            ) from exc
        except TimeoutError as exc:
            if isinstance(exc, TaskTimeout) or exc.__class__ is not TimeoutError:
                raise
            raise TaskTimeout(f"task {task.name} ran longer than its timeout of {timeout:g} s") from None

    # --- outcomes ----------------------------------------------------------------------------------------
    async def _failed(
        self,
        rj: RunningJob,
        task: Task[Any, Any],
        payload: Payload,
        ctx: JobContext,
        exc: BaseException,
        forced_delay: float | None,
    ) -> tuple[str, float | None]:
        """Retry or dead-letter a failed run; returns the outcome ("retry" or "failed") and the retry delay."""
        policy = task.options.retry
        retryable = isinstance(exc, Retry) or policy.should_retry(exc)
        if retryable and ctx.job_try < ctx.max_tries:
            delay = forced_delay if forced_delay is not None else policy.delay_for(ctx.job_try)
            run_at = now_ms() + int(delay * 1000)
            await self._settle(rj, lambda: self.state.broker.requeue(rj.lease, run_at, give_back_try=False), "retry")
            self.state.stats["retried"] += 1
            await call_hooks(self.state.hooks, "on_retry", ctx, exc, delay)
            return "retry", delay
        why = "retries exhausted" if retryable else "not retryable"
        self.state.stats["failed"] += 1
        await self._dead_letter(rj, payload, f"failed: {why}", exc, "failed")
        await call_hooks(self.state.hooks, "on_failure", ctx, exc)
        return "failed", None

    async def _unknown_task(self, rj: RunningJob, payload: Payload) -> None:
        c = rj.claimed
        first = await self._settle(rj, lambda: self.state.broker.unknown_since(c.job_id), "note unknown task")
        waited = max(0.0, (now_ms() - int(first or now_ms())) / 1000)
        limit = self.state.settings.unknown_task_wait
        if waited >= limit:
            exc = JobDeadLettered(
                f"no worker knew task {payload.function!r} for {waited:.0f} s (unknown_task_wait={limit:g} s); "
                "deploy a worker that registers it, then retry the dead letter",
                job_id=c.job_id,
            )
            await self._dead_letter(rj, payload, f"unknown task {payload.function!r}", exc)
            return
        delay = min(UNKNOWN_TASK_MAX_DELAY, 1.0 + waited / 10)
        self.state.stats["unknown"] += 1
        log.warning(
            "job %s: task %r is not registered on this worker (rolling deploy?); put back for a worker "
            "that knows it, next look in %.1fs; dead-lettered after %g s",
            c.job_id, payload.function, delay, limit,
        )
        run_at = now_ms() + int(delay * 1000)
        await self._settle(
            rj, lambda: self.state.broker.requeue(rj.lease, run_at, give_back_try=True), "put back unknown task"
        )

    async def _finish(
        self, rj: RunningJob, payload: Payload, ctx: JobContext, success: bool, value: Any, outcome: str
    ) -> None:
        task = self.app.tasks.get(payload.function)
        keep = task.options.keep_result if task and task.options.keep_result is not None else None
        keep_ms = int((self.app.settings.keep_result if keep is None else keep) * 1000)
        result = encode_result(
            self.app.serializer,
            payload=payload,
            job_id=ctx.job_id,
            job_try=ctx.job_try,
            success=success,
            result=value if success else encode_error(self.app.serializer, value),
            start_ms=ctx.start_ms,
            finish_ms=now_ms(),
            queue=ctx.queue,
            worker_id=self.state.worker_id,
            outcome=outcome,
            recoveries=ctx.recoveries,
        )
        ok = await self._settle(rj, lambda: self.state.finisher.finish(rj.lease, result, keep_ms), "finish")
        if ok == 0:  # after an outage the first try of this write may have landed with its reply lost: say both
            log.warning("job %s: its outcome was not written now: another worker claimed the job again (this run's "
                        "result is dropped), or an earlier attempt of this write succeeded and its reply was lost",
                        ctx.job_id)

    async def _dead_letter(
        self,
        rj: RunningJob,
        payload: Payload | None,
        reason: str,
        exc: BaseException | None,
        outcome: str = "dead",
    ) -> None:
        c = rj.claimed
        error = encode_error(self.app.serializer, exc or JobDeadLettered(reason, job_id=c.job_id))
        meta = DeadLetter.meta_json(
            job_id=c.job_id, function=payload.function if payload else None, queue=c.queue, lane=c.lane,
            reason=reason, error=f"{error['type']}: {error['message']}", traceback=error["traceback"],
            tries=c.job_try, recoveries=c.recoveries, failed_at_ms=now_ms(), worker=self.state.worker_id,
            outcome=outcome, raw_id_hex=c.raw_id.hex() if c.raw_id is not None else None,
        )
        stub = payload or Payload(function="", args=(), kwargs={}, job_try=None, enqueue_ms=0)
        result = encode_result(
            self.app.serializer, payload=stub, job_id=c.job_id, job_try=c.job_try, success=False, result=error,
            start_ms=rj.ctx.start_ms if rj.ctx else now_ms(), finish_ms=now_ms(), queue=c.queue,
            worker_id=self.state.worker_id, outcome=outcome, recoveries=c.recoveries,
        )
        keep_ms = int(self.app.settings.keep_result * 1000)
        await self._settle(
            rj,
            lambda: self.state.broker.dead_letter(rj.lease, meta, result, keep_ms,
                                                  self.state.settings.max_dead_letters),
            "dead-letter",
        )
        self.state.stats["dead_lettered"] += 1
        log.error("job %s (%s) dead-lettered: %s; %s", c.job_id, c.lane, reason, DLQ_HELP)
        await call_hooks(self.state.hooks, "on_dead_letter", rj.ctx, c.job_id, reason)

    async def _settle(self, rj: RunningJob, op: Callable[[], Awaitable[T]], what: str) -> T | None:
        """Run a Redis write that records an outcome, holding it through an outage (the outcome is real).

        While Redis is unreachable the job keeps its slot and this worker claims nothing new; the write is tried
        again as soon as Redis answers. Gives up after ``outcome_hold`` seconds, or when the worker is stopping
        for good: then the lease runs out and the job runs again (at least once).
        """
        delay = 0.1
        held_since: float | None = None
        rj.settling = True
        try:
            while True:
                try:
                    done = await op()
                except REDIS_DOWN as exc:
                    self.state.redis_down(exc)
                    if held_since is None:
                        held_since = time.monotonic()
                        self.state.holding.add(rj.claimed.job_id)
                    held = time.monotonic() - held_since
                    if self.state.flags.stopped_hard or held > self.state.settings.outcome_hold:
                        log.error("job %s: could not %s for %.0f s (Redis unreachable); dropping the outcome, the "
                                  "job runs again after its lease", rj.claimed.job_id, what, held)
                        return None
                    await self.state.wait_for_redis(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                if held_since is not None:
                    log.warning("job %s: %s written after Redis came back (held %.1f s)", rj.claimed.job_id, what,
                                time.monotonic() - held_since)
                return done
        finally:
            rj.settling = False
            self.state.holding.discard(rj.claimed.job_id)
