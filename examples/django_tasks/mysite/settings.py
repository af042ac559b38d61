"""A small Django 6 project whose background work is django.tasks, served by asyncq (`asyncq worker --django`)."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "example-only"
DEBUG = True
ALLOWED_HOSTS = ["*"]
USE_TZ = True
ROOT_URLCONF = "mysite.urls"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django.contrib.sessions", "newsletter"]
# Django's sessions and login: the asyncq dashboard at /asyncq/ (mysite/urls.py) is for staff users
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                         "NAME": os.environ.get("NEWSLETTER_DB", str(BASE_DIR / "newsletter.sqlite3"))}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

# The one asyncq-specific line is BACKEND: the code uses only django.tasks APIs.
TASKS = {
    "default": {
        "BACKEND": "asyncq.integrations.django.AsyncqBackend",
        "QUEUES": ["default", "stats"],
        "OPTIONS": {"redis_url": os.environ.get("ASYNCQ_REDIS_URL", "redis://localhost:6379/0")},
    }
}
