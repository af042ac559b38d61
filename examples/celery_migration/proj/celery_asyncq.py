"""The asyncq side: the same project on ``asyncq.compat``, for the asyncq workers and for routed producers.

- ``asyncq worker proj.celery_asyncq:app`` runs the tasks registered here;
- with ``--celery-queues celery,notifications`` it also consumes Celery's own queues (strategy B);
- ``asyncq_router=True`` makes every call made with this app ask the route rules in Redis whether it goes to
  Celery or to asyncq (strategy A; ``asyncq migrate route set|rm|show``).
"""

from asyncq.compat import Celery
from proj import settings, tasks

app = Celery("proj", broker=settings.REDIS_URL, backend=settings.REDIS_URL,
             include=["proj.notifications"], asyncq_router=True)
app.conf.update(task_routes=settings.TASK_ROUTES, result_expires=3600)

# A task that has not moved yet but can run here too: the same function, under the same name.
app.task(name="reports.render")(tasks.render.run)
