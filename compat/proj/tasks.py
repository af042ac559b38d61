"""The project's tasks: plain, bound, retried, routed, time-limited, with a custom base and signals.

Tasks record what happened in Redis (``record``) so a scenario in another process can see it.
"""

from __future__ import annotations

import json
import time

import redis

from compat.proj.celery import app
from compat.proj.runtime import REDIS_URL, RUNTIME, Reject, SoftTimeLimitExceeded, Task, shared_task, signals

_r = redis.Redis.from_url(REDIS_URL)


def record(key: str, value: object) -> None:
    _r.rpush(f"parity:{key}", json.dumps(value))


class PaymentDeclined(Exception):
    """A project exception: results must re-raise it with this type."""


class AuditedTask(Task):
    """A custom base class: its hooks run around every call of the tasks that use it."""

    def before_start(self, task_id, args, kwargs):
        record(f"audit:{task_id}", "before_start")

    def on_success(self, retval, task_id, args, kwargs):
        record(f"audit:{task_id}", f"on_success:{retval}")

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        record(f"audit:{task_id}", f"on_failure:{type(exc).__name__}")

    def on_retry(self, exc, task_id, args, kwargs, einfo):
        record(f"audit:{task_id}", "on_retry")

    def after_return(self, status, retval, task_id, args, kwargs, einfo):
        record(f"audit:{task_id}", f"after_return:{status}")


@app.task
def add(x, y):
    return x + y


@app.task
def mul(x, y):
    return x * y


@app.task
def tsum(numbers):
    return sum(numbers)


@app.task
def echo(*args, **kwargs):
    return {"args": list(args), "kwargs": kwargs}


@app.task(bind=True)
def whoami(self):
    return {"id": self.request.id, "retries": self.request.retries, "routing_key":
            (self.request.delivery_info or {}).get("routing_key"), "called_directly": self.request.called_directly}


@app.task
def routed_urgent(x):
    return x


@app.task(bind=True, max_retries=3, default_retry_delay=0.1)
def flaky(self, fail_times):
    if self.request.retries < fail_times:
        raise self.retry(exc=ConnectionError("endpoint down"))
    return self.request.retries


@app.task(bind=True, autoretry_for=(ConnectionError,), retry_backoff=0.1, retry_backoff_max=0.2, retry_jitter=False,
          max_retries=4)
def auto_flaky(self, fail_times):
    if self.request.retries < fail_times:
        raise ConnectionError("try again")
    return f"ok after {self.request.retries}"


@app.task(bind=True, max_retries=2, default_retry_delay=0.05)
def always_retry(self):
    raise self.retry(exc=ValueError("still broken"))


@app.task
def charge(amount):
    raise PaymentDeclined(f"card declined for {amount}")


@app.task(base=AuditedTask)
def audited(x):
    if x < 0:
        raise ValueError("negative")
    return x * 2


@app.task(time_limit=1)
def hard_limited():
    for _ in range(100):
        time.sleep(0.05)
    return "finished"


@app.task(soft_time_limit=0.5, time_limit=5)
def soft_limited():
    try:
        for _ in range(100):
            time.sleep(0.05)
    except SoftTimeLimitExceeded:
        return "cleaned up"
    return "finished"


@app.task(bind=True)
def progress(self, steps):
    for i in range(steps):
        self.update_state(state="PROGRESS", meta={"done": i + 1, "total": steps})
        time.sleep(0.3)
    return "complete"


@app.task
def sleeper(seconds):
    time.sleep(seconds)
    return seconds


@app.task
def on_error(task_id):
    record("errback", task_id)


@app.task
def remember(value):
    record("callback", value)
    return value


@app.task
def tick(label):
    record("tick", label)


@app.task(ignore_result=True)
def fire_and_forget(x):
    record("fire_and_forget", x)
    return x


@app.task
def rejecter():
    raise Reject("bad message", requeue=False)


if RUNTIME == "asyncq":  # Celery 5.6 cannot run async def bodies; this is what moving to asyncq buys

    @app.task
    async def async_double(x):
        import asyncio

        await asyncio.sleep(0.01)
        return 2 * x


@shared_task
def shared_double(x):
    return 2 * x


@signals.task_prerun.connect
def _prerun(sender=None, task_id=None, **kwargs):
    if sender is not None and sender.name.endswith(".add"):
        record(f"signals:{task_id}", "task_prerun")


@signals.task_postrun.connect
def _postrun(sender=None, task_id=None, state=None, **kwargs):
    if sender is not None and sender.name.endswith(".add"):
        record(f"signals:{task_id}", f"task_postrun:{state}")


@signals.task_success.connect
def _success(sender=None, result=None, **kwargs):
    if sender is not None and sender.name.endswith(".add"):
        record(f"signals:{sender.request.id}", f"task_success:{result}")


@signals.task_failure.connect
def _failure(sender=None, task_id=None, exception=None, **kwargs):
    if sender is not None and sender.name.endswith(".charge"):
        record(f"signals:{task_id}", f"task_failure:{type(exception).__name__}")
