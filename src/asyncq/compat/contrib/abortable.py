"""``celery.contrib.abortable``: tasks that stop themselves when asked to.

As in Celery, aborting is cooperative: ``AbortableAsyncResult(task_id).abort()`` records the ABORTED state for
the task, and the running task checks ``self.is_aborted()`` at safe points and returns early. (To stop a task
that does not check, use ``result.revoke(terminate=True)``, which asyncq turns into a cancellation.)
"""

from __future__ import annotations

from typing import Any

from asyncq.compat.result import AsyncResult
from asyncq.compat.task import Task

ABORTED = "ABORTED"


class AbortableAsyncResult(AsyncResult):
    """An AsyncResult that can ask its task to stop."""

    def is_aborted(self) -> bool:
        return self.state == ABORTED

    def abort(self) -> None:
        """Record the ABORTED state; the task sees it at its next ``is_aborted()`` check."""
        self.app.store_state(self.id, ABORTED, None)


class AbortableTask(Task):
    """A task base whose body can check ``self.is_aborted()``."""

    abstract = True

    def AsyncResult(self, task_id: str, **kwargs: Any) -> AbortableAsyncResult:
        return AbortableAsyncResult(task_id, app=self.app, task_name=self.name, **kwargs)

    def is_aborted(self, **kwargs: Any) -> bool:
        task_id = kwargs.get("task_id", self.request.id)
        if task_id is None:
            return False
        return self.AsyncResult(task_id).is_aborted()


__all__ = ["ABORTED", "AbortableAsyncResult", "AbortableTask"]
