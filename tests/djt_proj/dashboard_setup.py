"""Prepares the test project for tests/test_django_dashboard.py: migrates, creates a staff user (ada) and a
non-staff user (bob), both with the password "pw-for-tests", and enqueues django.tasks (no worker runs, so
they wait in their queues for the dashboard to show). Needs DJT_REDIS_URL, DJT_DB."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djt_site.settings")

import django

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from shop.tasks import add_async, record  # noqa: E402

call_command("migrate", verbosity=0)
User.objects.create_user("ada", password="pw-for-tests", is_staff=True)
User.objects.create_user("bob", password="pw-for-tests")
for i in range(3):
    record.enqueue(f"waiting-{i}")
add_async.enqueue(1, 2)
print("ready", flush=True)
