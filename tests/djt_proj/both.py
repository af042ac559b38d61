"""One ``asyncq worker djt_celery:app --django`` process serving a Celery-style task (shop/legacy_tasks.py) and
the project's django.tasks (shop/tasks.py); prints a JSON report as its last line. Needs DJT_REDIS_URL, DJT_DB."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from typing import Any

import djt_celery

APP = djt_celery.app  # the Celery-style app the worker serves; importing it set Django up

from django.core.management import call_command  # noqa: E402
from shop.legacy_tasks import mark_processed  # noqa: E402
from shop.models import Event, Order  # noqa: E402
from shop.tasks import add_async, record  # noqa: E402

call_command("migrate", verbosity=0)
order = Order.objects.create(item="kettle")
legacy = mark_processed.delay(order.pk)
django_sync = record.enqueue("django-task")
django_async = add_async.enqueue(4, 5)
report: dict[str, Any] = {}
worker = subprocess.Popen([sys.executable, "-m", "asyncq", "worker", "djt_celery:app", "--django",
                           "--concurrency", "4", "--shutdown-grace", "5"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
try:
    report["legacy"] = legacy.get(timeout=30)
    deadline = time.monotonic() + 30
    for r in (django_sync, django_async):
        while not r.is_finished and time.monotonic() < deadline:
            time.sleep(0.1)
            r.refresh()
    report["django"] = [str(django_sync.status), str(django_async.status)]
    report["values"] = [django_sync.return_value if django_sync.is_finished else None,
                        django_async.return_value if django_async.is_finished else None]
finally:
    worker.send_signal(signal.SIGTERM)
    out, _ = worker.communicate(timeout=30)
report["worker_exit"] = worker.returncode
report["worker_log"] = out[-4000:]
report["processed"] = Order.objects.get(pk=order.pk).processed
report["events"] = sorted(Event.objects.values_list("label", flat=True))
print(json.dumps(report))
