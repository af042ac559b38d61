from django.tasks import task

from newsletter.models import Subscriber


@task(priority=10)
def send_welcome(subscriber_id: int) -> str:
    """A def task: runs in a worker thread, with the ORM as in a view."""
    subscriber = Subscriber.objects.get(pk=subscriber_id)
    subscriber.welcomed = True  # a real project would send the e-mail here
    subscriber.save(update_fields=["welcomed"])
    return subscriber.email


@task(queue_name="stats")
async def count_subscribers() -> int:
    """An async def task: runs on the worker's event loop, with Django's async ORM."""
    return await Subscriber.objects.acount()
