"""Django settings of the example. Redis and the SQLite file come from the environment (see README.md)."""

import importlib.util
import os
from pathlib import Path

from celery.schedules import crontab

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "example-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "orders", "emails.apps.EmailsConfig"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("EXAMPLE_DB", str(BASE_DIR / "db.sqlite3")),
        "OPTIONS": {"timeout": 20},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

REDIS_URL = os.environ.get("EXAMPLE_REDIS_URL", "redis://127.0.0.1:6379/0")

# Celery's settings, as the project had them.
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_TASK_SERIALIZER = "json"
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULE = {
    "nightly-report": {"task": "orders.tasks.nightly_report", "schedule": crontab(hour=3, minute=0)},
}

# Django's own task framework (Django 6, or the django-tasks backport) on the same asyncq worker: a Celery
# task rewritten as a django.tasks task keeps running where it ran (emails/tasks.py: send_receipt).
if importlib.util.find_spec("django.tasks") is None and importlib.util.find_spec("django_tasks") is not None:
    INSTALLED_APPS.append("django_tasks")
if importlib.util.find_spec("django.tasks") is not None or importlib.util.find_spec("django_tasks") is not None:
    TASKS = {
        "default": {
            "BACKEND": "asyncq.integrations.django.AsyncqBackend",
            "QUEUES": ["default"],
            "OPTIONS": {"redis_url": REDIS_URL},
        }
    }
