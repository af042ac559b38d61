"""A stock Celery app for tests/test_tracing.py, run by ``celery -A tests.otel_stock_worker worker``, with
Celery's own OpenTelemetry instrumentation writing spans to the file exporter of tests/otel_app.py."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_process_init
from opentelemetry.instrumentation.celery import CeleryInstrumentor

from .otel_app import provider, tracer

app = Celery("stock", broker=os.environ["ASYNCQ_REDIS_URL"], backend=os.environ["ASYNCQ_REDIS_URL"])
app.conf.update(broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)
CeleryInstrumentor().instrument(tracer_provider=provider)


@worker_process_init.connect(weak=False)
def _instrument_child(*args: object, **kwargs: object) -> None:  # prefork children (this test runs -P solo)
    CeleryInstrumentor().instrument(tracer_provider=provider)


@app.task(name="otel.add")
def add(x: int, y: int) -> int:
    with tracer.start_as_current_span("inside add"):
        return x + y
