"""Celery's retry rules, in one place: the backoff formula, the ``autoretry_for`` check and ``ExceptionInfo``.

Used by the worker-side runtime (``runtime.py``), eager execution (``eager.py``) and the Task class.
"""

from __future__ import annotations

import random
import traceback
from typing import Any


def backoff(factor: Any, retries: int, maximum: float, jitter: bool) -> float:
    """Celery's exponential backoff: ``min(max, factor * 2**retries)``, jittered uniformly over [0, n]."""
    factor = int(max(1.0, float(factor)))
    countdown = min(maximum, factor * (2**retries))
    if jitter:
        countdown = random.randrange(int(countdown) + 1)
    return float(max(0, countdown))


def autoretries(task: Any, exc: BaseException) -> bool:
    """Whether ``exc`` from ``task``'s body is retried automatically (``autoretry_for``, minus
    ``dont_autoretry_for``), as Celery's wrapper around ``run`` decides."""
    return bool(task.autoretry_for) and isinstance(exc, task.autoretry_for) and not (
        task.dont_autoretry_for and isinstance(exc, task.dont_autoretry_for)
    )


class ExceptionInfo:
    """Celery's ``einfo``: the exception, its type and traceback text."""

    def __init__(self, exc: BaseException) -> None:
        self.exception = exc
        self.type = type(exc)
        self.traceback = "".join(traceback.format_exception(exc))

    def __str__(self) -> str:
        return self.traceback
