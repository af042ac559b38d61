"""The orders app's Celery tasks, unchanged."""

from celery import Task, chain, shared_task
from celery.utils.log import get_task_logger
from django.db import transaction
from django.db.models import F

from orders.models import Order

logger = get_task_logger(__name__)


class RecordFailure(Task):
    """A base whose on_failure uses the ORM (under asyncq it runs in the task's worker thread, as in Celery)."""

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        Order.objects.filter(pk=args[0]).update(status="failed", failure_note=f"{type(exc).__name__}: {exc}")


@shared_task
def add(x, y):
    return x + y


@shared_task(bind=True, max_retries=3, default_retry_delay=0.2)
def charge(self, order_id):
    """The payment provider times out twice; the third try succeeds."""
    Order.objects.filter(pk=order_id).update(attempts=F("attempts") + 1)
    if self.request.retries < 2:
        logger.info("charging order %s failed, retry %d", order_id, self.request.retries + 1)
        raise self.retry(exc=ConnectionError("payment provider timed out"))
    Order.objects.filter(pk=order_id).update(status="paid")
    return {"order": order_id, "retries": self.request.retries}


@shared_task
def total(numbers):
    return sum(numbers)


@shared_task(base=RecordFailure)
def ship(order_id):
    raise RuntimeError("no courier available")


@shared_task
def nightly_report():
    return Order.objects.count()


def place_order(item):
    """What a view does: the charge is sent only if the order's transaction commits."""
    with transaction.atomic():
        order = Order.objects.create(item=item)
        charge.delay_on_commit(order.pk)
    return order


def totals():
    """A chain, called as Celery code calls it."""
    return chain(add.s(1, 2), add.s(3), add.s(4))()
