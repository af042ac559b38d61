"""How a Celery-style task runs inside the asyncq worker (and eagerly, in the caller's process).

For every Celery task the compat app registers one asyncq task whose body is ``execute``: it rebuilds
``self.request`` from the job's ``celery`` headers, honours revokes and ``expires``, sends Celery's signals and
calls the custom base's hooks, enforces soft and hard time limits, turns ``self.retry()`` into an asyncq retry of
the same job, and after success dispatches links, the next chain step and the chord body.
"""

from __future__ import annotations

import asyncio
import collections.abc
import ctypes
import functools
import inspect
import logging
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import anyio

from asyncq.codec import encode_error, rebuild_exception
from asyncq.compat import canvas, signals, stamping, states, store
from asyncq.compat.backend import stored_success
from asyncq.compat.canvas import Signature, from_dict
from asyncq.compat.celery_receive import store_outcome
from asyncq.compat.exceptions import (
    ChordError,
    Ignore,
    Reject,
    Retry,
    SoftTimeLimitExceeded,
    TaskRevokedError,
    TimeLimitExceeded,
    WorkerLostError,
)
from asyncq.compat.request import REPLACED_MARK, Context, current_request
from asyncq.compat.result import IGNORED_MARK, AsyncResult, GroupResult, retry_meta
from asyncq.compat.retry import ExceptionInfo, autoretries, backoff
from asyncq.compat.signals import Signal
from asyncq.compat.task import Task
from asyncq.context import current_job, thread_limiter
from asyncq.exceptions import Retry as AsyncqRetry

log = logging.getLogger("asyncq.compat")

#: runs of one job cut short by a lost worker (SIGKILL, OOM) before it fails with WorkerLostError
MAX_WORKER_LOSSES = 3
#: the try limit compat tasks are registered with: Celery's retry rules decide, never asyncq's
UNLIMITED_TRIES = 1_000_000_000


class _SoftLimited(collections.abc.Coroutine):  # type: ignore[type-arg]
    """Wraps a task's coroutine so that the cancellation sent at the soft time limit arrives inside the task as
    ``SoftTimeLimitExceeded``, at whatever ``await`` it is suspended on, and the task can clean up."""

    def __init__(self, coro: Any, seconds: float) -> None:
        self._coro = coro
        self._seconds = seconds
        self.fired = False

    def send(self, value: Any) -> Any:
        return self._coro.send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        exc = typ if isinstance(typ, BaseException) else (val if val is not None else typ())
        if self.fired and isinstance(exc, asyncio.CancelledError):
            self.fired = False
            exc = SoftTimeLimitExceeded(f"SoftTimeLimitExceeded({self._seconds:g})")
        return self._coro.throw(exc)

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Any:  # pragma: no cover - only driven by asyncio.Task
        raise TypeError("driven by asyncio.Task only")


def _raise_in_thread(ident: int, exc_type: type[BaseException]) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(exc_type))


async def _call_async(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], soft: float | None) -> Any:
    coro = fn(*args, **kwargs)
    if soft is None:
        return await coro
    wrapped = _SoftLimited(coro, soft)
    task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(wrapped)

    def fire() -> None:
        if not task.done():
            wrapped.fired = True
            task.cancel()

    handle = asyncio.get_running_loop().call_later(soft, fire)
    try:
        return await task
    finally:
        handle.cancel()


class _ThreadBody:
    """A sync body in a pool thread, and the only safe way to raise inside it: under a lock, and only while
    the body runs, so an exception meant for this job can never land in the next job the thread picks up."""

    def __init__(self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                 fixups: Sequence[Callable[[], None]] = ()) -> None:
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.fixups = fixups
        self.lock = threading.Lock()
        self.ident: int | None = None
        self.running = False

    def __call__(self) -> Any:
        for fixup in self.fixups:  # e.g. Django: drop this thread's stale DB connections before the body
            fixup()
        with self.lock:
            self.ident, self.running = threading.get_ident(), True
        try:
            return self.fn(*self.args, **self.kwargs)
        finally:
            with self.lock:  # a pending exception raised here still belongs to this job
                self.running = False
            for fixup in self.fixups:
                fixup()

    def interrupt(self, exc_type: type[BaseException]) -> None:
        with self.lock:
            if self.running and self.ident is not None:
                _raise_in_thread(self.ident, exc_type)


async def _call_sync(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], soft: float | None,
                     fixups: Sequence[Callable[[], None]] = ()) -> Any:
    body = _ThreadBody(fn, args, kwargs, fixups)
    handle = None
    if soft is not None:
        handle = asyncio.get_running_loop().call_later(soft, body.interrupt, SoftTimeLimitExceeded)
    try:
        return await anyio.to_thread.run_sync(body, limiter=thread_limiter(), abandon_on_cancel=True)
    except asyncio.CancelledError:
        body.interrupt(TimeLimitExceeded)  # best effort: stop the abandoned thread
        raise
    finally:
        if handle is not None:
            handle.cancel()


async def call_body(task: Task, args: tuple[Any, ...], kwargs: dict[str, Any], request: Context) -> Any:
    """The body under its time limits, with ``autoretry_for`` applied as Celery wraps ``run``.

    A base class that overrides ``__call__`` (to open a DB session around every run, say) is honoured: the
    worker calls the task, as Celery does, and ``Task.__call__`` calls ``run``."""
    overridden = type(task).__call__ is not Task.__call__
    fn = task.__call__ if overridden else task.run
    hard, soft = request.timelimit if request.timelimit else (None, None)
    conf = task.app.conf
    hard = hard if hard is not None else (task.time_limit or conf.task_time_limit)
    soft = soft if soft is not None else (task.soft_time_limit or conf.task_soft_time_limit)
    is_async = _is_async(task)
    try:
        async with asyncio.timeout(hard):
            if is_async:
                result = await _call_async(fn, args, kwargs, soft)
            else:
                result = await _call_sync(fn, args, kwargs, soft, task.app.thread_fixups)
            if inspect.iscoroutine(result) or isinstance(result, asyncio.Future):  # a sync wrapper, async body
                result = await result
            if isinstance(result, AsyncResult | GroupResult):  # returned, not awaited: stored as Celery's tuple
                return result.as_tuple()
            return result
    except TimeoutError:
        raise TimeLimitExceeded(f"TimeLimitExceeded({hard:g})") from None
    except (Retry, Ignore, Reject):
        raise
    except Exception as exc:
        if autoretries(task, exc):
            opts = dict(task.retry_kwargs)
            if task.retry_backoff and "countdown" not in opts:
                opts["countdown"] = backoff(task.retry_backoff, request.retries, task.retry_backoff_max,
                                            task.retry_jitter)
            raise task.retry(exc=exc, **opts) from exc
        raise


def _is_async(task: Task) -> bool:
    return inspect.iscoroutinefunction(task.run) or inspect.iscoroutinefunction(type(task).__call__)


Call = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]


def _does_something(task: Task, fn: Callable[..., Any]) -> bool:
    """A signal with receivers, or a hook the task's class overrides (the base's are no-ops)."""
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, Signal):
        return bool(owner.receivers)
    name = getattr(fn, "__name__", "")
    return getattr(type(task), name, None) is not getattr(Task, name, None)


async def _hooks(task: Task, *calls: Call) -> None:
    """Task hooks and signal receivers, where Celery runs them: for a ``def`` task in a worker thread (so an
    ``on_failure`` that saves a Django model works; on the loop it would raise SynchronousOnlyOperation and
    replace the task's own error), for an ``async def`` task on the loop. No thread hop when nothing is
    connected or overridden (the common case)."""
    todo = [c for c in calls if _does_something(task, c[0])]
    if not todo:
        return
    fixups = task.app.thread_fixups

    def run() -> None:
        for fixup in fixups:
            fixup()
        for fn, args, kwargs in todo:
            fn(*args, **kwargs)

    if _is_async(task):
        run()
    else:
        await anyio.to_thread.run_sync(run, limiter=thread_limiter())


def _show_limit(task: Task, retries: int, limit: int | None) -> None:
    """Have the worker's log show Celery's real try limit ("try 1/4" for max_retries=3), not the unlimited
    tries the compat task is registered with (Celery decides retries itself)."""
    if limit is not None:
        job = current_job()
        job.max_tries = max(job.job_try + 1 if retries < limit else job.job_try, job.job_try + limit - retries)


def _request(task: Task, args: tuple[Any, ...], kwargs: dict[str, Any], retries: int) -> Context:
    job = current_job()
    h = job.headers.get("celery", {})
    hard_soft = h.get("timelimit")
    return Context(
        id=job.job_id, task=task.name, args=args, kwargs=kwargs, retries=retries, is_eager=False,
        called_directly=False,
        eta=h.get("eta"), expires=h.get("expires"), group=h.get("group"), group_index=h.get("group_index"),
        root_id=h.get("root_id", job.job_id), parent_id=h.get("parent_id"), hostname=job.worker_id,
        delivery_info={"exchange": "", "routing_key": job.queue, "priority": h.get("priority"),
                       "redelivered": job.job_try > 1 or job.recoveries > 0},
        headers=h.get("headers") or {}, callbacks=h.get("callbacks"), errbacks=h.get("errbacks"),
        chain=h.get("chain"), chord=h.get("chord"), timelimit=tuple(hard_soft) if hard_soft else (None, None),
        ignore_result=bool(h.get("ignore_result")), shadow=h.get("shadow"), origin=h.get("origin"),
        chord_error=h.get("chord_error"), reply=h.get("reply"),
        properties=h.get("properties") or {},  # Celery's message properties, when publish keeps them
        **stamping.request_fields(h),  # stamps, replaced_task_nesting (H5)
    )


async def execute(task: Task, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The asyncq task body behind every Celery task."""
    app = task.app
    job = current_job()
    base = int(job.headers.get("celery", {}).get("retries") or 0)  # retries before a Celery message got here
    retried = await store.retries(app, job.job_id) if job.job_try > 1 else 0
    request = _request(task, args, kwargs, base + retried)
    # Celery sends task_received from its consumer when the message arrives; asyncq's worker claims a job only
    # into a free slot, so "received" and "about to run" are the same moment: sent here, in the worker process
    signals.task_received.send(sender=None, request=request)
    lost = job.recoveries  # runs cut short by a lost worker (the core counts them apart from tries)
    if lost > MAX_WORKER_LOSSES:
        gone = WorkerLostError(f"the worker running {task.name}[{job.job_id}] was lost {lost} times "
                               f"(more than {MAX_WORKER_LOSSES}); not running it again")
        await store_outcome(app, request, states.FAILURE, exc=gone)
        raise gone
    if request.expires and datetime.fromisoformat(request.expires) < datetime.now(UTC):
        signals.task_revoked.send(sender=task, request=request, terminated=False, signum=None, expired=True)
        await store_outcome(app, request, states.REVOKED, exc=TaskRevokedError("expired"))
        raise TaskRevokedError("expired", job_id=request.id)
    if await app.control.ais_revoked(request.id or "") or await stamping.revoked_stamp(app, request):  # H5: stamps
        signals.task_revoked.send(sender=task, request=request, terminated=False, signum=None, expired=False)
        await store_outcome(app, request, states.REVOKED, exc=TaskRevokedError("revoked"))
        raise TaskRevokedError("revoked", job_id=request.id)
    if task.rate_limit:
        await app.rate_limiter(task).acquire()
    token = current_request.set(request)
    state, retval, einfo = states.FAILURE, None, None
    _show_limit(task, request.retries, task.max_retries)
    try:
        await _hooks(task, (signals.task_prerun.send, (), dict(sender=task, task_id=request.id, task=task, args=args,
                                                               kwargs=kwargs)),
                     (task.before_start, (request.id or "", args, kwargs), {}))
        try:
            retval = await _run(task, args, kwargs, request)
        except Retry as exc:
            state, retval = states.RETRY, exc
            einfo = _einfo(exc.exc or exc)
            await _hooks(task, (signals.task_retry.send, (), dict(sender=task, request=request, reason=exc.exc or exc,
                                                                  einfo=einfo)),
                         (task.on_retry, (exc.exc or exc, request.id or "", args, kwargs, einfo), {}))
            _show_limit(task, request.retries, exc.limit)
            await store_outcome(app, request, states.RETRY, exc=exc.exc or exc)
            # Celery's RETRY state carries the retry's exception as its result (read back by AsyncResult)
            await store.save_state(app, job.job_id, states.RETRY, retry_meta(exc.exc or exc))
            await store.count_retry(app, job.job_id)
            raise AsyncqRetry(defer=_delay(exc.when), reason=str(exc)) from exc.exc
        except Ignore:
            state, retval = states.IGNORED, None
            if request.replaced_by:  # Task.replace (H5): the replacement's result is this task's
                return {REPLACED_MARK: request.replaced_by}
            return {IGNORED_MARK: True}
        except Reject as exc:
            if exc.requeue:
                state = states.REJECTED
                current_job().max_tries = UNLIMITED_TRIES  # a requeue is not a try
                await store.count_retry(app, job.job_id, refresh_ttl=False)  # a requeue is not a lost worker
                raise AsyncqRetry(defer=0, reason="rejected with requeue=True") from exc
            await _failed(task, request, exc, args, kwargs)
            raise
        except Exception as exc:
            retval, einfo = exc, _einfo(exc)
            await _failed(task, request, exc, args, kwargs)
            raise
        state = states.SUCCESS
        await _hooks(task, (task.on_success, (retval, request.id or "", args, kwargs), {}),
                     (signals.task_success.send, (), dict(sender=task, result=retval)))
        await _after_success(task, request, retval)
        await store_outcome(app, request, states.SUCCESS, retval)
        return retval
    finally:
        try:
            await _hooks(task, (task.after_return, (state, retval, request.id or "", args, kwargs, einfo), {}),
                         (signals.task_postrun.send, (), dict(sender=task, task_id=request.id, task=task, args=args,
                                                              kwargs=kwargs, retval=retval, state=state)))
        finally:
            current_request.reset(token)


def _delay(when: Any) -> float:
    if isinstance(when, datetime):
        return max(0.0, (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp() - datetime.now(UTC).timestamp())
    return float(when or 0)


def _einfo(exc: BaseException) -> ExceptionInfo:
    return ExceptionInfo(exc)


async def _failed(task: Task, request: Context, exc: BaseException, args: tuple[Any, ...],
                  kwargs: dict[str, Any]) -> None:
    einfo = _einfo(exc)
    await _hooks(task, (task.on_failure, (exc, request.id or "", args, kwargs, einfo), {}),
                 (signals.task_failure.send, (), dict(sender=task, task_id=request.id, exception=exc, args=args,
                                                      kwargs=kwargs, traceback=exc.__traceback__, einfo=einfo)))
    app = task.app
    earlier = current_job().headers.get("celery", {}).get("chain_error")
    if not earlier:  # a step failed because an earlier one did: the errbacks ran where that happened
        await _errbacks(task, request, exc)
    earlier = earlier if isinstance(earlier, dict) else {}
    message = request.chord_error or earlier.get("message") or f"Dependency {request.id} raised {exc!r}"
    error = earlier.get("error") or encode_error(app.asyncq_app.serializer, exc)
    # the rest of its chain, or the chord it is part of, fails too (nothing waits on a task that never runs)
    await canvas.propagate_failure(app, list(request.chain or ()), request.chord, message, error)
    await store_outcome(app, request, states.FAILURE, exc=exc)


async def _run(task: Task, args: tuple[Any, ...], kwargs: dict[str, Any], request: Context) -> Any:
    """The body, unless the task is to fail without running (its chord's header or an earlier step of its
    chain failed) or its SUCCESS is already recorded (``worker_deduplicate_successful_tasks``)."""
    job = current_job()
    celery = job.headers.get("celery", {})
    if request.chord_error:  # the chord's header failed: the body fails without running
        raise ChordError(request.chord_error)
    if celery.get("chain_error"):  # an earlier step of the chain failed: this one fails with that exception
        raise _earlier_failure(celery["chain_error"], job.job_id)
    # worker_deduplicate_successful_tasks: a redelivered task whose SUCCESS is recorded is not run again, when
    # the sender's app asked for it (the "dedup" mark)
    if request.delivery_info.get("redelivered"):
        done, stored = await stored_success(task.app, request.id or "", marked=bool(celery.get("dedup")))
        if done:
            return stored
    return await call_body(task, args, kwargs, request)


def _earlier_failure(earlier: Any, job_id: str) -> BaseException:
    """The exception an earlier step of the chain failed with (its type when importable here)."""
    if isinstance(earlier, dict) and isinstance(earlier.get("error"), dict):
        return rebuild_exception(earlier["error"], job_id)
    return ChordError(str(earlier.get("message") if isinstance(earlier, dict) else earlier))


def _takes_request(task: Task) -> bool:
    """Celery's rule for an errback: one that takes more than one positional argument is "new style" and is
    called here, in the worker, with ``(request, exc, traceback)``; else it is sent with the failed task's id."""
    try:
        params = inspect.signature(task.run).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) > 1 or any(p.kind is p.VAR_POSITIONAL for p in params)


async def _errbacks(task: Task, request: Context, exc: BaseException) -> None:
    app = task.app
    old_style: list[Signature] = []
    for errback in request.errbacks or ():
        sig = from_dict(dict(errback), app)
        target = app.tasks.get(sig["task"]) if not isinstance(sig, canvas.chain | canvas.group | canvas.chord) \
            else None
        if target is None or not _takes_request(target):
            old_style.append(sig)
            continue
        # Celery calls it as sig(request, exc, tb): an immutable signature ignores those partial arguments
        args = tuple(sig["args"]) if sig.immutable else (request, exc, exc.__traceback__, *sig["args"])
        try:  # an errback that fails is logged; it never changes the task's own outcome
            if _is_async(target):
                await target(*args, **sig["kwargs"])
            else:
                await anyio.to_thread.run_sync(functools.partial(target, *args, **sig["kwargs"]),
                                               limiter=thread_limiter())
        except Exception:
            log.exception("errback %s of %s[%s] raised", sig["task"], task.name, request.id)
    for sig in old_style:
        await sig.aapply_async((request.id,))


async def _after_success(task: Task, request: Context, retval: Any) -> None:
    app = task.app
    for callback in request.callbacks or ():
        await Signature(dict(callback), app=app).aapply_async((retval,))
    if request.chain:  # the next step (any canvas) with this result, carrying the rest of the chain
        await canvas.send(app, from_dict(request.chain[0], app), (retval,), chain_rest=list(request.chain[1:]))
    elif request.chord:  # one part of a chord's header (or of a group whose results go on)
        await canvas.part_done(app, request.chord, request.group_index or 0, retval)
