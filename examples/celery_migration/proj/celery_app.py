"""The project's Celery app, unchanged: the Celery workers and the unchanged producers use it."""

from celery import Celery

from proj import settings

app = Celery("proj", broker=settings.REDIS_URL, backend=settings.REDIS_URL,
             include=["proj.billing", "proj.tasks"])
app.conf.update(task_routes=settings.TASK_ROUTES, result_expires=3600, broker_connection_retry_on_startup=True)
