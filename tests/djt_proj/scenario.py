"""One run of Django's task-backend behaviour against a real ``asyncq worker --django`` process; prints a JSON
report as its last line (tests/test_django_tasks.py asserts on it). Runs under the main environment (Django 5.x
with the django-tasks backport) and under Django 6 in its own venv. Needs DJT_REDIS_URL, DJT_DB."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djt_site.settings")

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import transaction  # noqa: E402
from django.test import AsyncClient, Client  # noqa: E402
from django.utils import timezone  # noqa: E402
from shop.models import Event, Order  # noqa: E402
from shop.tasks import add_async, boom, connection_was_closed, process_order, record, who_am_i  # noqa: E402

from asyncq.integrations import _tasks_api as api  # noqa: E402

report: dict[str, Any] = {"django": django.get_version(), "package": api.PACKAGE}
call_command("migrate", verbosity=0)
call_command("check")


def result_dict(r: Any) -> dict[str, Any]:
    d = {"status": str(r.status), "id": r.id, "worker_ids": list(r.worker_ids),
         "enqueued_at": r.enqueued_at.isoformat() if r.enqueued_at else None,
         "started_at": r.started_at.isoformat() if r.started_at else None,
         "finished_at": r.finished_at.isoformat() if r.finished_at else None,
         "errors": [{"path": e.exception_class_path, "traceback": e.traceback} for e in r.errors],
         "queue": r.task.queue_name, "type": type(r).__name__}
    if r.status == api.TaskResultStatus.SUCCESSFUL:
        d["return_value"] = r.return_value
    return d


# --- with no worker running: the order of these decides the priority test ---------------------------------------
low = record.using(priority=-50).enqueue("low")
mid = record.enqueue("mid")
high = record.using(priority=90).enqueue("high")
report["before"] = result_dict(high.task.get_result(high.id))

sync_view = Client().get("/order", {"item": "lamp"}).json()
async_view = asyncio.run(AsyncClient().get("/record-async", {"label": "from-async-view"})).json()

with transaction.atomic():
    kept = record.enqueue("kept")
try:
    with transaction.atomic():
        dropped = record.enqueue("rolled-back")
        raise RuntimeError("roll back")
except RuntimeError:
    pass
try:
    record.get_result(dropped.id)
    report["rolled_back_result"] = "exists"
except api.TaskResultDoesNotExist:
    report["rolled_back_result"] = "does-not-exist"

run_after = timezone.now() + timedelta(seconds=3)
later = record.using(run_after=run_after).enqueue("later")
failing = boom.enqueue("on purpose")
summed = asyncio.run(add_async.aenqueue(2, 3))
ctx = who_am_i.enqueue()
conns = [connection_was_closed.enqueue() for _ in range(3)]
try:
    record.enqueue(timezone.now())
    report["json_error"] = None
except TypeError as exc:
    report["json_error"] = str(exc)
try:
    record.using(queue_name="nope").enqueue("x")
    report["bad_queue"] = None
except api.InvalidTask as exc:
    report["bad_queue"] = str(exc)

# --- the worker --------------------------------------------------------------------------------------------------
worker = subprocess.Popen([sys.executable, "-m", "asyncq", "worker", "--django", "--concurrency", "1",
                           "--shutdown-grace", "5"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
ids = {"low": low, "mid": mid, "high": high, "kept": kept, "later": later, "boom": failing, "async": summed,
       "ctx": ctx, **{f"conn{i}": r for i, r in enumerate(conns)}}
try:
    deadline = time.monotonic() + 40
    pending = dict(ids, sync_view=process_order.get_result(sync_view["result_id"]),
                   async_view=record.get_result(async_view["result_id"]))
    while pending and time.monotonic() < deadline:
        for name, r in list(pending.items()):
            r.refresh()
            if r.is_finished:
                report[name] = result_dict(r)
                del pending[name]
        time.sleep(0.2)
    report["unfinished"] = sorted(pending)
    report["async_aget"] = result_dict(asyncio.run(add_async.aget_result(summed.id)))
finally:
    worker.send_signal(signal.SIGTERM)
    out, _ = worker.communicate(timeout=30)
report["worker_exit"] = worker.returncode
report["worker_log"] = out[-3000:]
report["run_after"] = run_after.isoformat()
report["events"] = list(Event.objects.order_by("id").values_list("label", flat=True))
report["order_processed"] = Order.objects.get(pk=sync_view["order_id"]).processed
print(json.dumps(report))
