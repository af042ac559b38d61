"""Run the example end to end: migrate, start `asyncq worker -A proj`, place orders, print what happened.

    EXAMPLE_REDIS_URL=redis://127.0.0.1:6379/0 python demo.py
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")
sys.path.insert(0, str(HERE))

import django  # noqa: E402

django.setup()  # imports proj, whose __init__ installs the alias: `import celery` below is asyncq.compat

import celery  # noqa: E402
from celery import chord, group  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import transaction  # noqa: E402
from emails import tasks as email_tasks  # noqa: E402
from orders.models import Event, Order  # noqa: E402
from orders.tasks import add, charge, place_order, ship, total, totals  # noqa: E402
from proj.celery import app  # noqa: E402


def wait_for(check, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.1)
    return value


call_command("migrate", verbosity=0)
print("import celery gives:", celery.__name__)
app.finalize()
print("beat:", [(s.entry_name, s.task_name) for s in app.asyncq_app.schedules])
env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
worker = subprocess.Popen([sys.executable, "-m", "asyncq", "worker", "-A", "proj", "--concurrency", "20",
                           "--shutdown-grace", "5"], env=env, cwd=HERE)
try:
    order = place_order("lamp")  # charge.delay_on_commit: sent when the transaction commits
    try:
        with transaction.atomic():
            dropped = Order.objects.create(item="rolled back")
            charge.delay_on_commit(dropped.pk)
            raise RuntimeError("rollback")
    except RuntimeError:
        pass
    print("chain:", totals().get(timeout=30))
    print("group:", group(add.s(i, i) for i in range(3))().get(timeout=30))
    print("chord:", chord([add.s(1, 1), add.s(2, 2)], total.s())().get(timeout=30))
    paid = wait_for(lambda: Order.objects.filter(pk=order.pk, status="paid").first(), "the charge")
    print(f"order {paid.item}: {paid.status} after {paid.attempts} attempts")
    try:
        ship.delay(order.pk).get(timeout=30)
    except RuntimeError as exc:
        print("ship failed:", exc)
    failed = wait_for(lambda: Order.objects.filter(pk=order.pk, status="failed").first(), "on_failure")
    print("on_failure saved:", failed.failure_note)
    print("confirmation:", email_tasks.send_confirmation.delay(order.pk).get(timeout=30))
    if hasattr(email_tasks, "send_receipt"):  # django.tasks on the same worker
        result = email_tasks.send_receipt.enqueue(order.pk)
        wait_for(lambda: (result.refresh(), result.is_finished)[1], "the django.tasks task")
        print("django.tasks:", result.status, result.return_value)
    wait_for(lambda: Event.objects.filter(label__startswith="failure").exists(), "the task_failure receiver")
    print("charges sent for the rolled-back order:",
          Event.objects.filter(label__startswith="failure orders.tasks.charge").count())
finally:
    worker.send_signal(signal.SIGTERM)
    worker.wait(30)
labels = list(Event.objects.order_by("id").values_list("label", flat=True))
print("signals:", sorted({label.split(":")[0] for label in labels}))
print("worker exit:", worker.returncode)
