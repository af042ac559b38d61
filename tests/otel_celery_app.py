"""A Celery-layer app for tests/test_tracing.py (``asyncq worker tests.otel_celery_app:celery_app``): a chain of
three steps, and messages from a stock Celery producer on ``--celery-queues``; spans go to the same file
exporter as tests/otel_app.py's.
"""

from __future__ import annotations

import os

from asyncq.compat import Celery
from asyncq.integrations.opentelemetry import instrument

from .otel_app import provider, tracer

celery_app = Celery("otel", broker=os.environ.get("ASYNCQ_REDIS_URL", "redis://127.0.0.1:1/0"))


@celery_app.task(name="otel.add")
def add(x: int, y: int) -> int:
    with tracer.start_as_current_span("inside add"):
        return x + y


instrument(celery_app.asyncq_app, tracer_provider=provider)
