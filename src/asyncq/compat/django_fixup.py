"""Celery's Django fixup (``celery/fixups/django.py``), for asyncq.compat.

With ``DJANGO_SETTINGS_MODULE`` set, a Celery app behaves as Celery's does in a Django project:
- the worker calls ``django.setup()`` before it imports any task module (``setup``), so models load and
  ``@shared_task`` modules register: without it no task is known and every job waits as an unknown task;
- ``app.autodiscover_tasks()`` with no argument imports ``<app>.tasks`` for every installed app
  (``installed_apps``), lazily, when the app is first used;
- around every ``def`` task the worker thread's database connections are checked (``recycle_connections``:
  closed if unusable or older than ``CONN_MAX_AGE``), as Celery's fixup does at task_prerun/task_postrun and as
  Django does around a request, so a long-running worker never hands a task a dead connection.

Django is imported only when it is in use (the environment variable is set), so a project without Django never
pays for it and never needs it installed.
"""

from __future__ import annotations

import importlib.util
import logging
import os

log = logging.getLogger("asyncq.compat")


def in_use() -> bool:
    """Whether this process runs a Django project (``DJANGO_SETTINGS_MODULE`` is set and Django is installed)."""
    return bool(os.environ.get("DJANGO_SETTINGS_MODULE")) and importlib.util.find_spec("django") is not None


def setup() -> None:
    """``django.setup()``, once; skipped while Django is populating its apps (a task sent from an
    ``AppConfig.ready()``), where a second call would raise."""
    import django
    from django.apps import apps

    if apps.ready or apps.loading:
        return
    log.debug("django.setup() for %s", os.environ.get("DJANGO_SETTINGS_MODULE"))
    django.setup()


def installed_apps() -> list[str]:
    """The packages of ``INSTALLED_APPS`` (Celery's default for ``autodiscover_tasks()``)."""
    from django.apps import apps

    return [config.name for config in apps.get_app_configs()]


def recycle_connections() -> None:
    """Close the calling thread's database connections that are unusable or past ``CONN_MAX_AGE`` and reset
    its query log: what Django does at each request's start and end, and Celery's fixup around each task."""
    from django.db import close_old_connections, reset_queries

    reset_queries()
    close_old_connections()


__all__ = ["in_use", "installed_apps", "recycle_connections", "setup"]
