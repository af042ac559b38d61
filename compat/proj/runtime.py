"""The one place that differs between the two runtimes: where the Celery API is imported from.

This is the migration in miniature: a project changes these imports and nothing else.
"""

from __future__ import annotations

import os

RUNTIME = os.environ.get("COMPAT_RUNTIME", "asyncq")

if RUNTIME == "celery":
    from celery import Celery, Task, chain, chord, group, shared_task, signals, states
    from celery.exceptions import (
        MaxRetriesExceededError,
        Reject,
        SoftTimeLimitExceeded,
        TaskRevokedError,
        TimeLimitExceeded,
        TimeoutError,
    )
    from celery.result import AsyncResult, GroupResult
    from celery.schedules import crontab
elif RUNTIME == "asyncq":
    from asyncq.compat import (
        AsyncResult,
        Celery,
        GroupResult,
        Task,
        chain,
        chord,
        crontab,
        group,
        shared_task,
        signals,
        states,
    )
    from asyncq.compat.exceptions import (
        MaxRetriesExceededError,
        Reject,
        SoftTimeLimitExceeded,
        TaskRevokedError,
        TimeLimitExceeded,
        TimeoutError,
    )
else:
    raise SystemExit(f"COMPAT_RUNTIME must be 'celery' or 'asyncq', not {RUNTIME!r}")

# Set by the repository's root conftest.py to database 8 of the test run's Redis (a private redis-server unless
# ASYNCQ_TEST_REDIS names one); inherited by the worker processes. Never a Redis nobody chose: unset, this
# refuses to run (the default, port 1, is unreachable on purpose and only there for `asyncq migrate scan`).
REDIS_URL = os.environ.get("COMPAT_REDIS_URL", "redis://127.0.0.1:1/8")
if "COMPAT_REDIS_URL" not in os.environ:
    raise SystemExit(
        "COMPAT_REDIS_URL is not set: run the parity suite with `python compat/run.py` or pytest from the "
        "repository root, whose conftest.py starts a private Redis and sets it"
    )

__all__ = [
    "REDIS_URL",
    "RUNTIME",
    "AsyncResult",
    "Celery",
    "GroupResult",
    "MaxRetriesExceededError",
    "Reject",
    "SoftTimeLimitExceeded",
    "Task",
    "TaskRevokedError",
    "TimeLimitExceeded",
    "TimeoutError",
    "chain",
    "chord",
    "crontab",
    "group",
    "shared_task",
    "signals",
    "states",
]
