"""The project's app, configured the way Celery projects usually are."""

from __future__ import annotations

from datetime import timedelta

from compat.proj.runtime import REDIS_URL, Celery

app = Celery("proj", broker=REDIS_URL, backend=REDIS_URL, include=["compat.proj.tasks"])
app.conf.update(
    task_default_queue="celery",
    task_routes={"compat.proj.tasks.routed_*": {"queue": "priority"}},
    result_expires=3600,
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    beat_schedule={
        "tick-every-second": {"task": "compat.proj.tasks.tick", "schedule": timedelta(seconds=1), "args": ("beat",)},
    },
    broker_connection_retry_on_startup=True,
)
