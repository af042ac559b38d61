"""Celery's Django recipe, unchanged (https://docs.celeryq.dev/en/stable/django/first-steps-with-django.html)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")

app = Celery("proj")
# All CELERY_* settings in Django's settings; read lazily, so importing this module never loads the settings.
app.config_from_object("django.conf:settings", namespace="CELERY")
# <app>.tasks of every INSTALLED_APPS entry.
app.autodiscover_tasks()


@app.task(bind=True, ignore_result=True)
def debug_task(self):
    print(f"Request: {self.request!r}")
