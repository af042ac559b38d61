"""The emails app: a Celery task, and the same job rewritten as a django.tasks task (Django 6, or the
django-tasks backport); the one `asyncq worker -A proj` runs both."""

import importlib.util

from celery import shared_task
from orders.models import Order


@shared_task(bind=True, autoretry_for=(ConnectionError,), retry_backoff=False, max_retries=2)
def send_confirmation(self, order_id):
    order = Order.objects.get(pk=order_id)
    return f"confirmation for {order.item} sent"


if importlib.util.find_spec("django.tasks") is not None or importlib.util.find_spec("django_tasks") is not None:
    if importlib.util.find_spec("django.tasks") is not None:
        from django.tasks import task
    else:
        from django_tasks import task

    @task()
    def send_receipt(order_id):
        """send_confirmation, rewritten for django.tasks."""
        order = Order.objects.get(pk=order_id)
        return f"receipt for {order.item} sent"
