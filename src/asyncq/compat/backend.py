"""``app.backend``: the few result-backend calls Celery code makes directly, answered from compat's store.

Why a small object and not Celery's backend class: asyncq keeps one result layout (``compat.store``), and code
written for Celery mostly asks the backend questions (may I run a chord? is it persistent?) or reads a task's
meta; those have one honest answer here. Writing a task's result is the worker's job; ``store_result`` records a
state a task sets itself (as ``update_state`` does), which reads back until the job has an outcome of its own.
"""

from __future__ import annotations

from typing import Any

from asyncq.compat import states, store
from asyncq.compat._state import CeleryApp
from asyncq.compat.result import AsyncResult, retry_meta


class ResultConsumer:
    """Celery's ``backend.result_consumer``: asyncq opens a connection per process and event loop, so there is
    nothing to reset after a fork."""

    def on_after_fork(self) -> None:
        return None


class RedisBackend:
    """The app's Redis result backend as Celery code sees it (``app.backend``)."""

    persistent = True
    supports_native_join = True
    supports_autoexpire = True

    def __init__(self, app: CeleryApp) -> None:
        self.app = app
        self.result_consumer = ResultConsumer()

    def ensure_chords_allowed(self) -> None:
        """Chords always work on asyncq (the chord state lives in Redis), so there is nothing to refuse."""
        return None

    def get_task_meta(self, task_id: str, cache: bool = True) -> dict[str, Any]:
        """The task's meta (status, result, traceback, date_done): the asyncq job's, else the document a
        Celery-protocol job wrote to Celery's result backend (``status`` PENDING when there is neither)."""
        return self.app.bridge.run(self._task_meta(task_id))

    async def _task_meta(self, task_id: str) -> dict[str, Any]:
        meta: dict[str, Any] = await AsyncResult(task_id, app=self.app).ameta()
        if meta["status"] != states.PENDING:
            return meta
        celery = await store.read_celery_meta(self.app, task_id)
        return {**celery.raw, "task_id": task_id, "status": celery.status, "result": celery.result,
                "traceback": celery.traceback, "date_done": celery.date_done}

    def store_result(self, task_id: str, result: Any, state: str, traceback: Any = None, request: Any = None,
                     **kwargs: Any) -> Any:
        """Celery's ``backend.store_result``: record ``state`` with ``result`` for ``task_id`` (an exception is
        stored as its document and read back as an exception). The job's own outcome, once it has one, wins;
        a SUCCESS recorded here is what ``worker_deduplicate_successful_tasks`` finds on redelivery."""
        meta = retry_meta(result) if isinstance(result, BaseException) else result
        self.app.bridge.run(store.save_state(self.app, task_id, state, meta))
        return result

    def get_state(self, task_id: str) -> str:
        return str(self.get_task_meta(task_id)["status"])

    def get_result(self, task_id: str) -> Any:
        return self.get_task_meta(task_id)["result"]

    def forget(self, task_id: str) -> None:
        self.app.bridge.run(store.forget_celery_meta(self.app, task_id))
        self.app.bridge.run(store.forget(self.app, task_id))


async def stored_success(app: CeleryApp, task_id: str, *, marked: bool = False) -> tuple[bool, Any]:
    """``(True, value)`` when deduplication applies and ``task_id`` already has a SUCCESS recorded (a redelivered
    task that finished, or stored its result, before its message came back): the worker then skips the body and
    completes the job with ``value``, so its chain and callbacks still run once. ``(False, None)`` otherwise.

    Deduplication applies when this worker's app sets ``worker_deduplicate_successful_tasks``, or when the task
    was sent by an app that sets it (``marked``: the producer marks its messages), so every worker of a fleet
    treats the task alike even while their configurations differ (a rolling change, a worker started earlier)."""
    if not (marked or app.conf.get("worker_deduplicate_successful_tasks")):
        return False, None
    state = await store.read_state(app, task_id)
    if state is not None and state.get("state") == states.SUCCESS:
        return True, state.get("meta")
    return False, None
