"""What both apps share: the Redis (broker and result backend) and the task routes."""

import os

# One variable for everything: the Celery app, the asyncq.compat app and the `asyncq` command line all read it.
REDIS_URL = os.environ.get("ASYNCQ_REDIS_URL", "redis://127.0.0.1:6379/0")

# The project always had its notifications on their own queue, served by their own Celery workers.
TASK_ROUTES = {"notifications.*": {"queue": "notifications"}}


def runtime() -> str:
    """Which runtime runs this call; the tasks return it so that the demo can print it. An asyncq worker process
    has asyncq's worker loaded; a Celery worker never imports asyncq (its modules do not)."""
    import sys

    return "asyncq" if "asyncq.worker.lifecycle" in sys.modules else "celery"
