"""``celery.utils.log``: ``get_task_logger(__name__)`` and ``get_logger``, as Celery projects call them.

As in Celery, ``get_task_logger(__name__)`` is the logger of that name, re-parented under ``celery.task`` when
it has no parent of its own (so a project's logging config for ``celery.task`` still applies), and each record
carries ``task_name`` and ``task_id`` from the running task (``None`` outside a task), so a format string like
``%(task_name)s[%(task_id)s]`` works as it does under Celery.
"""

from __future__ import annotations

import logging
from typing import Any

from asyncq.compat.request import current_request

TASK_LOGGER = "celery.task"


class _TaskFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        request = current_request.get()
        record.task_id = getattr(request, "id", None)
        record.task_name = getattr(request, "task", None) or getattr(request, "name", None)
        return True


_FILTER = _TaskFilter()
task_logger = logging.getLogger(TASK_LOGGER)
worker_logger = logging.getLogger("celery.worker")


def get_logger(name: str) -> logging.Logger:
    """``celery.utils.log.get_logger``: a plain ``logging`` logger."""
    return logging.getLogger(name)


def get_task_logger(name: str) -> logging.Logger:
    """A logger under ``celery.task`` whose records carry ``task_id`` and ``task_name``."""
    if name in (TASK_LOGGER, "celery"):
        raise RuntimeError(f"logger name {name!r} is reserved (Celery's rule): use get_task_logger(__name__)")
    logger = logging.getLogger(name)
    if logger.parent is None or logger.parent is logging.getLogger():
        logger.parent = task_logger  # Celery's _using_logger_parent
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger


def get_multiprocessing_logger() -> Any:
    return logging.getLogger("celery.multiprocessing")


__all__ = ["get_logger", "get_multiprocessing_logger", "get_task_logger", "task_logger", "worker_logger"]
