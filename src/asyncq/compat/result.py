"""``AsyncResult``, ``GroupResult`` and ``EagerResult`` with Celery's behaviour, read from asyncq's job state.

Celery's states are derived from the asyncq job: queued or scheduled is PENDING (RETRY once it has been tried),
running is PENDING (STARTED with ``track_started``, or the state a task set with ``update_state``), complete is
SUCCESS, failed or dead-lettered is FAILURE, aborted (revoked, expired) is REVOKED, and an unknown id is PENDING.
``get()`` wakes on asyncq's pub/sub notification, so Celery's ``interval`` is accepted and unused.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
from collections.abc import Generator, Sequence
from datetime import datetime
from typing import Any

from asyncq.celery_protocol.results import CeleryMeta, exception_document, rebuild_celery_exception
from asyncq.compat import exceptions as compat_exceptions
from asyncq.compat import states, store
from asyncq.compat._state import CeleryApp, current_app
from asyncq.compat.exceptions import TaskRevokedError, TimeoutError
from asyncq.compat.request import REPLACED_MARK, current_request
from asyncq.context import _current as current_job_var
from asyncq.exceptions import JobAborted, JobDeadLettered, JobTimeout
from asyncq.job import JobInfo, JobStatus

IGNORED_MARK = "__celery_ignored__"


def retry_meta(exc: BaseException) -> dict[str, Any]:
    """What a task's RETRY state stores as its meta: the retry's exception as a JSON-able document (the worker
    stores it, ``AsyncResult.result`` rebuilds it; an exception that cannot be rebuilt reads as a
    ``RemoteTaskError`` naming its class and arguments)."""
    return exception_document(exc)


def _in_task() -> bool:
    return current_job_var.get() is not None or (
        (req := current_request.get()) is not None and not req.called_directly and not req.is_eager
    )


class AsyncResult:
    """A handle on one task's outcome, by id. ``await result`` works in async code."""

    def __init__(
        self,
        id: str,
        backend: Any = None,
        task_name: str | None = None,
        app: CeleryApp | None = None,
        parent: AsyncResult | ResultSet | None = None,
        *,
        ignored: bool = False,
    ) -> None:
        self.id = id
        self.app = app or current_app()
        self.parent = parent
        self.task_name = task_name
        self.ignored = ignored
        self.children: list[AsyncResult] = []

    task_id = property(lambda self: self.id)

    def __repr__(self) -> str:
        return f"<AsyncResult: {self.id}>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AsyncResult):
            return other.id == self.id
        return isinstance(other, str) and other == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    # --- the async core -----------------------------------------------------------------------------------
    def _job(self) -> Any:
        return self.app.asyncq_app.job(self.id)

    async def ameta(self) -> dict[str, Any]:
        """Celery's task meta: status, result, traceback, date_done."""
        if self.ignored:  # sent with ignore_result: Celery keeps no result, so there is none to read (PENDING)
            return {"status": states.PENDING, "result": None, "traceback": None, "date_done": None,
                    "task_id": self.id}
        info: JobInfo = await self._job().info()
        if info.status is JobStatus.complete:
            result = info.result
            if isinstance(result, dict) and result.get(REPLACED_MARK):  # Task.replace: the replacement's outcome
                return {**await AsyncResult(result[REPLACED_MARK], app=self.app).ameta(), "task_id": self.id}
            status = states.SUCCESS
            if isinstance(result, dict) and result.get(IGNORED_MARK):
                status, result = states.IGNORED, None
            return {"status": status, "result": result, "traceback": None, "date_done": info.finished_at,
                    "task_id": self.id}
        if info.status in (JobStatus.failed, JobStatus.dead):
            exc = await self._exception()
            if isinstance(exc, TaskRevokedError):  # revoked or expired when the worker took it: not a failure
                return {"status": states.REVOKED, "result": exc, "traceback": None, "date_done": info.finished_at,
                        "task_id": self.id}
            return {"status": states.FAILURE, "result": exc, "traceback": info.traceback,
                    "date_done": info.finished_at, "task_id": self.id}
        status, result, done = await self._unfinished_state(info)
        return {"status": status, "result": result, "traceback": None, "date_done": done, "task_id": self.id}

    async def _unfinished_state(self, info: JobInfo) -> tuple[str, Any, datetime | None]:
        """State, result and date_done of a job that has neither succeeded nor failed."""
        if info.status is JobStatus.aborted:
            return states.REVOKED, TaskRevokedError(info.error or "revoked", job_id=self.id), info.finished_at
        if info.status is JobStatus.in_progress:
            custom = await self._custom_state()
            if custom is not None:
                return custom.get("state", states.STARTED), self._custom_result(custom), None
            if self._task_option("track_started"):
                return states.STARTED, {"hostname": info.worker}, None
        elif info.status in (JobStatus.queued, JobStatus.deferred) and info.tries > 0:
            custom = await self._custom_state()
            retry = self._custom_result(custom) if custom is not None and custom.get("state") == states.RETRY \
                else None
            return states.RETRY, retry, None
        elif info.status is JobStatus.not_found and await self.app.control.ais_revoked(self.id):
            return states.REVOKED, TaskRevokedError("revoked", job_id=self.id), None
        return states.PENDING, None, None

    def _task_option(self, name: str) -> Any:
        task = self.app.tasks.get(self.task_name or "")
        value = getattr(task, name, None) if task is not None else None
        return self.app.conf.get(f"task_{name}") if value is None else value

    async def _custom_state(self) -> dict[str, Any] | None:
        return await store.read_state(self.app, self.id)

    def _custom_result(self, custom: dict[str, Any]) -> Any:
        """The ``meta`` of a stored state; a RETRY's is the retry's exception (``retry_meta``), rebuilt."""
        meta = custom.get("meta")
        if custom.get("state") == states.RETRY and isinstance(meta, dict) and "exc_type" in meta:
            return rebuild_celery_exception(meta, None, self.id, ALIASES)
        return meta

    async def _exception(self) -> BaseException:
        try:
            await self._job().result(timeout=0)
        except BaseException as exc:
            return exc
        return RuntimeError("no exception")  # pragma: no cover

    async def _wait_one(self, deadline: float | None) -> Any:
        loop = asyncio.get_running_loop()
        timeout = None if deadline is None else max(0.0, deadline - loop.time())
        try:
            value = await self._job().result(timeout=timeout, wait_if_missing=True)
        except JobTimeout:
            raise TimeoutError("The operation timed out.") from None
        except TaskRevokedError:
            raise
        except JobAborted as exc:
            raise TaskRevokedError(str(exc), job_id=self.id) from None
        except JobDeadLettered as exc:
            raise exc from None
        if isinstance(value, dict) and value.get(REPLACED_MARK):  # Task.replace: wait for the replacement
            return await AsyncResult(value[REPLACED_MARK], app=self.app)._wait_one(deadline)
        if isinstance(value, dict) and value.get(IGNORED_MARK):
            return None
        return value

    async def aget(self, timeout: float | None = None, propagate: bool = True, interval: float = 0.5,
                   follow_parents: bool = True, **_: Any) -> Any:
        """``get()`` for async code: never blocks the event loop."""
        if self.ignored:
            return None
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        chain: list[AsyncResult | ResultSet] = [self]
        parent: Any = self.parent if follow_parents else None
        while parent is not None:  # a parent may be a GroupResult (a chord's header, a group inside a chain)
            chain.append(parent)
            parent = getattr(parent, "parent", None)
        waits: dict[asyncio.Future[Any], AsyncResult | ResultSet] = {
            asyncio.ensure_future(r._wait_one(deadline)): r for r in chain
        }
        try:
            while True:
                done, _pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for fut in done:
                    owner = waits.pop(fut)
                    exc = fut.exception()
                    if owner is self or exc is not None:
                        if exc is None:
                            return fut.result()
                        if isinstance(exc, TimeoutError) and owner is not self:
                            continue
                        if not isinstance(exc, TimeoutError):
                            # Celery raises the first failed parent's exception (its get() checks the parents
                            # first), not whichever later step's failure arrived first
                            exc = await _first_failure(chain[:0:-1]) or exc
                        if not propagate and not isinstance(exc, TimeoutError):
                            return exc
                        raise exc
        finally:
            for fut in waits:
                fut.cancel()
                with contextlib.suppress(BaseException):
                    await fut

    def __await__(self) -> Generator[Any, None, Any]:
        return self.aget().__await__()

    # --- Celery's sync API --------------------------------------------------------------------------------
    def get(self, timeout: float | None = None, propagate: bool = True, interval: float = 0.5,
            no_ack: bool = True, follow_parents: bool = True, disable_sync_subtasks: bool = True,
            **kwargs: Any) -> Any:
        if disable_sync_subtasks and _in_task():
            raise RuntimeError(
                "Never call result.get() within a task! (in asyncq, `await result` inside an async task is fine)"
            )
        return self.app.bridge.run(self.aget(timeout, propagate, interval, follow_parents))

    wait = get

    def _meta(self) -> dict[str, Any]:
        return self.app.bridge.run(self.ameta())

    @property
    def state(self) -> str:
        if self.ignored:
            return states.PENDING
        return str(self._meta()["status"])

    status = state

    @property
    def result(self) -> Any:
        return self._meta()["result"]

    info = result

    @property
    def traceback(self) -> str | None:
        tb: str | None = self._meta()["traceback"]
        return tb

    @property
    def date_done(self) -> datetime | None:
        done: datetime | None = self._meta()["date_done"]
        return done

    def ready(self) -> bool:
        return self.state in states.READY_STATES

    def successful(self) -> bool:
        return self.state == states.SUCCESS

    def failed(self) -> bool:
        return self.state == states.FAILURE

    def forget(self) -> None:
        """Delete the stored result (and any custom state)."""
        self.app.bridge.run(store.forget(self.app, self.id))

    def revoke(self, connection: Any = None, terminate: bool = False, signal: Any = None, wait: bool = False,
               timeout: float | None = None) -> None:
        self.app.control.revoke(self.id, terminate=terminate, signal=signal)

    def revoke_by_stamped_headers(self, headers: dict[str, Any], connection: Any = None, terminate: bool = False,
                                  signal: Any = None, wait: bool = False, timeout: float | None = None) -> None:
        """Celery's: revoke every task stamped with one of these values (``app.control``'s, which says more)."""
        self.app.control.revoke_by_stamped_headers(headers, terminate=terminate, signal=signal, reply=wait)

    def then(self, *_: Any, **__: Any) -> Any:
        raise NotImplementedError("AsyncResult.then() (promise callbacks) is not supported; use link=...")

    def as_tuple(self) -> tuple[Any, ...]:
        parent = self.parent.as_tuple() if isinstance(self.parent, AsyncResult | GroupResult) else None
        return ((self.id, parent), None)


async def _join(waits: list[Any], propagate: bool) -> list[Any]:
    """Await ``waits`` (coroutines, one per member) and return their values in order. With ``propagate`` the
    first exception is raised as soon as one arrives and the rest are cancelled; without, exceptions are returned
    in place (a timeout is still raised)."""
    futures = [asyncio.ensure_future(w) for w in waits]
    if not futures:
        return []
    try:
        await asyncio.wait(futures, return_when=asyncio.FIRST_EXCEPTION if propagate else asyncio.ALL_COMPLETED)
        failed = [f.exception() for f in futures if f.done() and f.exception() is not None]
        if propagate and failed:
            raise failed[0]
        if not propagate:
            for exc in failed:
                if isinstance(exc, TimeoutError):
                    raise exc
        return [f.exception() if f.exception() is not None else f.result() for f in futures]
    finally:
        for f in futures:
            if not f.done():
                f.cancel()
                with contextlib.suppress(BaseException):
                    await f


async def _first_failure(results: Sequence[AsyncResult | ResultSet]) -> BaseException | None:
    """The exception of the first of ``results`` (a chain's parents, root first) that failed, looking into the
    members of a GroupResult; None if none failed. One read per result: only called once something failed."""
    for r in results:
        if isinstance(r, ResultSet):
            found = await _first_failure(r.results)
            if found is not None:
                return found
            continue
        meta = await r.ameta()
        if meta["status"] == states.FAILURE and isinstance(meta["result"], BaseException):
            return meta["result"]
    return None


class ResultSet:
    """Celery's ``ResultSet``: several results handled as one (``get()`` returns their values in order).
    ``GroupResult`` is a ResultSet with an id (saved and restored by it)."""

    def __init__(self, results: Sequence[AsyncResult] = (), app: CeleryApp | None = None, **_: Any) -> None:
        self.results = list(results)
        self.app = app or (self.results[0].app if self.results else current_app())

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: [{', '.join(r.id for r in self.results)}]>"

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Any:
        return iter(self.results)

    def __getitem__(self, i: int) -> AsyncResult:
        return self.results[i]

    # --- membership (Celery's set-like API) ---------------------------------------------------------------
    def add(self, result: AsyncResult) -> None:
        if result not in self.results:
            self.results.append(result)

    def update(self, results: Sequence[AsyncResult]) -> None:
        self.results.extend(r for r in results if r not in self.results)

    def remove(self, result: AsyncResult | str) -> None:
        """Remove ``result`` (or the result with that id); KeyError if it is not in the set, as in Celery."""
        if isinstance(result, str):
            result = AsyncResult(result, app=self.app)
        try:
            self.results.remove(result)
        except ValueError:
            raise KeyError(result) from None

    def discard(self, result: AsyncResult | str) -> None:
        with contextlib.suppress(KeyError):
            self.remove(result)

    def clear(self) -> None:
        self.results.clear()

    # --- waiting ------------------------------------------------------------------------------------------
    async def aget(self, timeout: float | None = None, propagate: bool = True, **_: Any) -> list[Any]:
        """The values in order. With ``propagate``, the first failure is raised as soon as it is known, without
        waiting for the other members (Celery's native join on Redis does the same)."""
        return await _join([r.aget(timeout, propagate) for r in self.results], propagate)

    def get(self, timeout: float | None = None, propagate: bool = True, interval: float = 0.5, **kw: Any) -> Any:
        if kw.get("disable_sync_subtasks", True) and _in_task():
            raise RuntimeError("Never call result.get() within a task!")
        return self.app.bridge.run(self.aget(timeout, propagate))

    join = get
    join_native = get

    def __await__(self) -> Generator[Any, None, Any]:
        return self.aget().__await__()

    async def _wait_one(self, deadline: float | None) -> list[Any]:
        """As a parent in a chain of results (a chord's header): wait for every member; a failure is raised as
        soon as it is known."""
        return await _join([r._wait_one(deadline) for r in self.results], True)

    # --- state --------------------------------------------------------------------------------------------
    def completed_count(self) -> int:
        return sum(1 for r in self.results if r.successful())

    def ready(self) -> bool:
        return all(r.ready() for r in self.results)

    def successful(self) -> bool:
        return all(r.successful() for r in self.results)

    def failed(self) -> bool:
        return any(r.failed() for r in self.results)

    def waiting(self) -> bool:
        return not self.ready()

    def forget(self) -> None:
        for r in self.results:
            r.forget()

    def revoke(self, terminate: bool = False, **_: Any) -> None:
        self.app.control.revoke([r.id for r in self.results], terminate=terminate)


class GroupResult(ResultSet):
    """The results of a group, in order. ``get()`` returns their values as a list."""

    def __init__(self, id: str | None = None, results: Sequence[AsyncResult] = (), app: CeleryApp | None = None,
                 parent: AsyncResult | None = None, **_: Any) -> None:
        super().__init__(results, app=app)
        self.id = id
        self.parent = parent

    def __repr__(self) -> str:
        return f"<GroupResult: {self.id} [{', '.join(r.id for r in self.results)}]>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, GroupResult):
            return other.id == self.id and other.results == self.results
        return isinstance(other, str) and other == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def children(self) -> list[AsyncResult]:
        """Celery's name for the group's results."""
        return self.results

    def as_tuple(self) -> tuple[Any, ...]:
        return ((self.id, self.parent.as_tuple() if self.parent else None), [r.as_tuple() for r in self.results])

    def save(self) -> None:
        self.app.bridge.run(store.save_group(self.app, self.id or "", [r.id for r in self.results]))

    @classmethod
    def restore(cls, id: str, app: CeleryApp | None = None) -> GroupResult | None:
        the_app = app or current_app()
        ids = the_app.bridge.run(store.load_group(the_app, id))
        return None if ids is None else cls(id, [AsyncResult(i, app=the_app) for i in ids], app=the_app)


class EagerResult(AsyncResult):
    """The result of ``apply()`` / eager mode: already known, nothing to wait for."""

    def __init__(self, id: str, ret_value: Any, state: str, traceback: str | None = None,
                 app: CeleryApp | None = None, name: str | None = None) -> None:
        super().__init__(id, app=app, task_name=name)
        self._value = ret_value
        self._state = state
        self._traceback = traceback

    def get(self, timeout: float | None = None, propagate: bool = True, interval: float = 0.5,
            no_ack: bool = True, follow_parents: bool = True, disable_sync_subtasks: bool = True,
            **kwargs: Any) -> Any:
        if self._state in states.PROPAGATE_STATES and propagate and isinstance(self._value, BaseException):
            raise self._value
        return self._value

    async def aget(self, timeout: float | None = None, propagate: bool = True, *args: Any, **kw: Any) -> Any:
        return self.get(timeout, propagate)

    def _meta(self) -> dict[str, Any]:
        return {"status": self._state, "result": self._value, "traceback": self._traceback, "date_done": None}

    @property
    def state(self) -> str:
        return self._state

    status = state

    def forget(self) -> None:
        pass

    def revoke(self, *_: Any, **__: Any) -> None:
        self._state = states.REVOKED


#: Celery's exception names mapped to asyncq.compat's, so ``except asyncq.compat.exceptions.X`` catches them
ALIASES: dict[str, type[BaseException]] = {
    name: obj for name, obj in vars(compat_exceptions).items()
    if isinstance(obj, type) and issubclass(obj, BaseException)
}


class CeleryBackendResult(AsyncResult):
    """An ``AsyncResult`` whose task runs on a Celery worker: state and value come from Celery's result backend
    (``celery-task-meta-<id>``, woken by its PUBLISH). The backend is the app's ``result_backend`` when that is a
    Redis URL, else the broker's Redis."""

    async def _backend_meta(self, timeout: float | None = None, wait: bool = False) -> CeleryMeta:
        if wait:
            return await store.wait_celery_meta(self.app, self.id, timeout)
        return await store.read_celery_meta(self.app, self.id)

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
        self.app.bridge.run(store.forget_celery_meta(self.app, self.id))

    def revoke(self, connection: Any = None, terminate: bool = False, signal: Any = None, wait: bool = False,
               timeout: float | None = None) -> None:
        raise NotImplementedError(
            f"task {self.id} runs on a Celery worker: revoke it with Celery's control "
            f"(celery -A proj control revoke {self.id})"
        )

