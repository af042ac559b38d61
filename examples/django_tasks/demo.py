"""Run the example end to end: migrate, start `asyncq worker --django`, call the views, print the results.

    ASYNCQ_REDIS_URL=redis://localhost:6379/0 python demo.py
"""

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
sys.path.insert(0, str(HERE))

import django  # noqa: E402

django.setup()
from django.core.management import call_command  # noqa: E402
from django.test import AsyncClient, Client  # noqa: E402

call_command("migrate", verbosity=0)
env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
worker = subprocess.Popen([sys.executable, "-m", "asyncq", "worker"], env=env, cwd=HERE)  # DJANGO_SETTINGS_MODULE
try:                                                                                     # is set: --django implied
    client = Client()
    ids = [client.get("/subscribe", {"email": e}).json()["result_id"] for e in ("ada@example.com", "bob@example.com")]
    ids.append(asyncio.run(AsyncClient().get("/stats")).json()["result_id"])
    for rid in ids:
        deadline = time.monotonic() + 30
        while (body := client.get(f"/result/{rid}").json())["status"] not in ("SUCCESSFUL", "FAILED"):
            if time.monotonic() > deadline:
                sys.exit(f"task {rid} did not finish: {body}")
            time.sleep(0.1)
        print(f"task {rid[:8]}: {body['status']} -> {body.get('return_value')!r}", flush=True)
finally:
    worker.send_signal(signal.SIGTERM)
    worker.wait(30)
from newsletter.models import Subscriber  # noqa: E402

print("welcomed:", sorted(s.email for s in Subscriber.objects.filter(welcomed=True)))

# The dashboard at /asyncq/: Django's login decides who sees it (staff only).
from django.contrib.auth.models import User  # noqa: E402

anonymous = Client().get("/asyncq/")
print("dashboard, anonymous:", anonymous.status_code, "->", anonymous["Location"])
reader = Client()
reader.force_login(User.objects.create_user("bob"))
print("dashboard, not staff:", reader.get("/asyncq/").status_code)
staff = Client()
staff.force_login(User.objects.create_user("ada", is_staff=True))
page = staff.get("/asyncq/")
queues = staff.get("/asyncq/api/queues").json()
print("dashboard, staff:", page.status_code, "queues", sorted(q["queue"] for q in queues))
