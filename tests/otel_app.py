"""An App for tests/test_tracing.py, run as a real worker process (``asyncq worker tests.otel_app:app``).

The process sets up the real OpenTelemetry SDK with an exporter that appends every finished span as one JSON
line to the file named by ``OTEL_TEST_SPANS`` (a collector stand-in the test reads back), and instruments the
App with it. tests/otel_celery_app.py is the same for the Celery layer.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

import asyncq
from asyncq.integrations.opentelemetry import instrument


def span_dict(s: ReadableSpan) -> dict[str, object]:
    ctx = s.get_span_context()
    assert ctx is not None
    return {
        "name": s.name,
        "kind": s.kind.name,
        "trace_id": f"{ctx.trace_id:032x}",
        "span_id": f"{ctx.span_id:016x}",
        "parent_id": f"{s.parent.span_id:016x}" if s.parent else None,
        "attributes": dict(s.attributes or {}),
        "links": [f"{link.context.span_id:016x}" for link in s.links],
        "events": [e.name for e in s.events],
        "status": s.status.status_code.name,
    }


class FileExporter(SpanExporter):
    """Appends each span as a JSON line (flushed at once: the worker may be stopped any time)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self.lock, open(self.path, "a") as f:
            for s in spans:
                f.write(json.dumps(span_dict(s)) + "\n")
        return SpanExportResult.SUCCESS


provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(FileExporter(os.environ.get("OTEL_TEST_SPANS", os.devnull))))
tracer = provider.get_tracer("tests.otel_app")

app = asyncq.App()
instrument(app, tracer_provider=provider)


@app.task(name="otel.work")
async def work(x: int) -> int:
    with tracer.start_as_current_span("inside the task"):
        return x * 2


@app.task(name="otel.flaky", max_tries=2, retry={"base": 0.05, "jitter": False})
async def flaky(x: int) -> int:
    if asyncq.current_job().job_try == 1:
        raise ValueError("first try fails")
    return x


@app.task(name="otel.boom", max_tries=1)
def boom() -> None:
    raise RuntimeError("boom")
