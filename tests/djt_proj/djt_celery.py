"""A Celery-style app (asyncq.compat) in the same Django project as the django.tasks backend: one
``asyncq worker djt_celery:app --django`` process serves this app's tasks and the project's django.tasks
(tests/test_django_tasks.py::test_one_worker_serves_celery_and_django_tasks)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djt_site.settings")

import django

django.setup()  # before the tasks modules import models (`asyncq worker -A` will do this itself)

from asyncq.compat import Celery  # noqa: E402

app = Celery("djt", broker=os.environ["DJT_REDIS_URL"], backend=os.environ["DJT_REDIS_URL"])
app.autodiscover_tasks(["shop"], related_name="legacy_tasks")
