"""A small Django project for tests/test_django_tasks.py: django.tasks on asyncq (Django 6, or 4.2-5.x with the
django-tasks backport). Redis and the SQLite file come from the environment."""

import importlib.util
import os
from pathlib import Path

SECRET_KEY = "test-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
ROOT_URLCONF = "djt_site.urls"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django.contrib.sessions", "shop"]
# sessions and authentication: the asyncq dashboard at /asyncq/ is for staff (tests/test_django_dashboard.py)
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates",
              "DIRS": [Path(__file__).resolve().parent.parent / "templates"],
              "OPTIONS": {"context_processors": ["django.template.context_processors.request"]}}]
LOGIN_URL = "/accounts/login/"
if importlib.util.find_spec("django.tasks") is None:  # Django < 6: the backport
    INSTALLED_APPS.append("django_tasks")
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["DJT_DB"],
                         "OPTIONS": {"timeout": 20}}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
TASKS = {
    "default": {
        "BACKEND": "asyncq.integrations.django.AsyncqBackend",
        "QUEUES": ["default", "reports"],
        "OPTIONS": {"redis_url": os.environ["DJT_REDIS_URL"]},
    }
}
