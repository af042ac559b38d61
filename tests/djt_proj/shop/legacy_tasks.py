"""A task still written against Celery's API (``shared_task``), beside shop/tasks.py's django.tasks."""

from asyncq.compat import shared_task
from shop.models import Order


@shared_task(queue="legacy")
def mark_processed(order_id: int) -> str:
    order = Order.objects.get(pk=order_id)
    order.processed = True
    order.save(update_fields=["processed"])
    return order.item
