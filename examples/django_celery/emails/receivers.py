"""Celery signal receivers, unchanged: they write to the database (in the task's worker thread)."""

from celery.signals import task_failure, task_retry, task_success
from orders.models import Event


@task_success.connect
def on_success(sender=None, result=None, **kwargs):
    Event.objects.create(label=f"success {sender.name}")


@task_retry.connect
def on_retry(sender=None, reason=None, **kwargs):
    Event.objects.create(label=f"retry {sender.name}: {reason}")


@task_failure.connect
def on_failure(sender=None, exception=None, **kwargs):
    Event.objects.create(label=f"failure {sender.name}: {exception}")
