"""OpenTelemetry traces across real worker processes (asyncq.integrations.opentelemetry).

The producer side runs here with the real SDK and its in-memory exporter; the worker is a real
``asyncq worker`` process whose SDK appends every span to a file (tests/otel_app.py), the collector stand-in
read back here. Each test checks one trace: the producer's span, the worker's CONSUMER span parented by (and
linked to) it, and a span made inside the task as the CONSUMER span's child.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celery as stock
import pytest
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind

from asyncq import App
from asyncq.compat import Celery, chain
from asyncq.integrations.opentelemetry import instrument
from asyncq.task import JobSpec

from .conftest import WorkerRunner, flushed_url, stop_process, wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
TRACE_DB = 8


@pytest.fixture
def turl() -> str:
    return flushed_url(TRACE_DB)


@pytest.fixture
def memory() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def worker_env(url: str, spans: Path) -> dict[str, str]:
    return {**os.environ, "ASYNCQ_REDIS_URL": url, "OTEL_TEST_SPANS": str(spans), "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def run_burst(url: str, spans: Path, target: str = "tests.otel_app:app") -> str:
    """Run a burst worker until the queues are empty; its stderr."""
    proc = subprocess.run([sys.executable, "-m", "asyncq", "worker", target, "--burst"], cwd=ROOT,
                          env=worker_env(url, spans), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stderr


@pytest.fixture
def background() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        stop_process(p)


def read_spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def hexid(span: Any) -> str:
    return f"{span.context.span_id:016x}"


def trace_hex(span: Any) -> str:
    return f"{span.context.trace_id:032x}"


def only(spans: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = [s for s in spans if s["name"] == name]
    assert len(found) == 1, (name, [s["name"] for s in spans])
    return found[0]


async def test_one_trace_from_the_request_through_the_worker_into_the_task(
    turl: str, memory: tuple[TracerProvider, InMemorySpanExporter], tmp_path: Path
) -> None:
    provider, exporter = memory
    app = App(redis_url=turl)
    instrument(app, tracer_provider=provider)
    with provider.get_tracer("test").start_as_current_span("POST /signup") as request:
        job = await app.enqueue("otel.work", 21)
    await app.close()
    send = next(s for s in exporter.get_finished_spans() if s.name == "send default")
    assert send.kind is SpanKind.PRODUCER
    assert send.parent is not None and send.parent.span_id == request.get_span_context().span_id
    assert dict(send.attributes or {}) == {
        "messaging.system": "asyncq", "messaging.destination.name": "default", "messaging.operation.type": "send",
        "messaging.operation.name": "send", "asyncq.task.name": "otel.work", "messaging.message.id": job.job_id,
    }

    spans_file = tmp_path / "spans.jsonl"
    stderr = run_burst(turl, spans_file)
    spans = read_spans(spans_file)
    process = only(spans, "process default")
    inside = only(spans, "inside the task")
    assert process["kind"] == "CONSUMER"
    assert process["trace_id"] == trace_hex(send) == inside["trace_id"]
    assert process["parent_id"] == hexid(send)
    assert process["links"] == [hexid(send)]
    assert inside["parent_id"] == process["span_id"]
    attrs = process["attributes"]
    assert attrs["messaging.system"] == "asyncq" and attrs["messaging.destination.name"] == "default"
    assert attrs["messaging.operation.type"] == "process" and attrs["messaging.message.id"] == job.job_id
    assert attrs["asyncq.task.name"] == "otel.work" and attrs["asyncq.job.try"] == 1
    assert attrs["asyncq.job.outcome"] == "success" and process["status"] == "UNSET"
    assert f"otel.work[{job.job_id}] succeeded" in stderr


async def test_a_batch_is_one_send_span_with_a_creation_context_per_job(
    turl: str, memory: tuple[TracerProvider, InMemorySpanExporter], tmp_path: Path
) -> None:
    provider, exporter = memory
    app = App(redis_url=turl)
    instrument(app, tracer_provider=provider)
    jobs = await app.enqueue_many([app_spec(i) for i in range(3)])
    await app.close()
    finished = exporter.get_finished_spans()
    creates = [s for s in finished if s.name == "create default"]
    (send,) = [s for s in finished if s.name == "send default"]
    assert len(creates) == 3 and all(c.kind is SpanKind.PRODUCER for c in creates)
    assert send.kind is SpanKind.CLIENT
    assert (send.attributes or {})["messaging.batch.message_count"] == 3
    assert sorted(hexid(link) for link in send.links) == sorted(hexid(c) for c in creates)

    spans_file = tmp_path / "spans.jsonl"
    run_burst(turl, spans_file)
    processes = [s for s in read_spans(spans_file) if s["name"] == "process default"]
    by_id = {p["attributes"]["messaging.message.id"]: p for p in processes}
    assert sorted(by_id) == sorted(j.job_id for j in jobs)
    assert sorted(p["parent_id"] for p in processes) == sorted(hexid(c) for c in creates)


def app_spec(i: int) -> JobSpec:
    return JobSpec("otel.work", (i,), {})


async def test_every_try_is_a_process_span_under_the_same_producer_and_failures_are_recorded(
    turl: str, memory: tuple[TracerProvider, InMemorySpanExporter], tmp_path: Path
) -> None:
    provider, exporter = memory
    app = App(redis_url=turl)
    instrument(app, tracer_provider=provider)
    await app.enqueue("otel.flaky", 7)
    await app.enqueue("otel.boom")
    await app.close()
    sends = {(s.attributes or {})["asyncq.task.name"]: s for s in exporter.get_finished_spans()}

    spans_file = tmp_path / "spans.jsonl"
    deadline = time.monotonic() + 30
    spans: list[dict[str, Any]] = []
    while time.monotonic() < deadline:  # the retry is due 50 ms later: a burst worker may end before it
        run_burst(turl, spans_file)
        spans = [s for s in read_spans(spans_file) if s["name"] == "process default"]
        if len(spans) == 3:
            break
    flaky = sorted((s for s in spans if s["attributes"]["asyncq.task.name"] == "otel.flaky"),
                   key=lambda s: s["attributes"]["asyncq.job.try"])
    assert [s["attributes"]["asyncq.job.outcome"] for s in flaky] == ["retry", "success"]
    assert {s["parent_id"] for s in flaky} == {hexid(sends["otel.flaky"])}
    assert flaky[0]["status"] == "ERROR" and flaky[0]["events"] == ["exception"]
    assert flaky[0]["attributes"]["error.type"] == "ValueError"
    (boom,) = [s for s in spans if s["attributes"]["asyncq.task.name"] == "otel.boom"]
    assert boom["status"] == "ERROR" and boom["attributes"]["asyncq.job.outcome"] == "failed"
    assert boom["attributes"]["error.type"] == "RuntimeError" and boom["events"] == ["exception"]
    assert boom["parent_id"] == hexid(sends["otel.boom"])


def test_a_chain_of_three_steps_is_one_trace_each_step_under_its_predecessor(
    turl: str, memory: tuple[TracerProvider, InMemorySpanExporter], tmp_path: Path,
    background: list[subprocess.Popen[bytes]],
) -> None:
    provider, exporter = memory
    celery = Celery("otel", broker=turl)

    @celery.task(name="otel.add")
    def add(x: int, y: int) -> int:
        return x + y

    instrument(celery.asyncq_app, tracer_provider=provider)
    with provider.get_tracer("test").start_as_current_span("checkout") as root:
        result = chain(add.s(1, 2), add.s(3), add.s(4)).apply_async()
    spans_file = tmp_path / "spans.jsonl"
    background.append(subprocess.Popen(
        [sys.executable, "-m", "asyncq", "worker", "tests.otel_celery_app:celery_app"], cwd=ROOT,
        env=worker_env(turl, spans_file), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    assert result.get(timeout=30) == 10
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and sum(s["name"] == "process default" for s in read_spans(spans_file)) < 3:
        time.sleep(0.05)
    spans = read_spans(spans_file)
    by_id = {s["span_id"]: s for s in spans}
    (first_send,) = [s for s in exporter.get_finished_spans() if s.name.startswith("send")]
    processes = [s for s in spans if s["name"].startswith("process")]
    assert len(processes) == 3
    assert {s["trace_id"] for s in spans} == {trace_hex(root)}
    # step 1 under the producer's send span; steps 2 and 3 under a send span made inside the step before
    steps = [next(p for p in processes if p["parent_id"] == hexid(first_send))]
    for _ in range(2):
        send = next(s for s in spans if s["name"].startswith("send") and s["parent_id"] == steps[-1]["span_id"])
        steps.append(next(p for p in processes if p["parent_id"] == send["span_id"]))
    assert len({s["span_id"] for s in steps}) == 3
    for step in steps:
        inside = next(s for s in spans if s["name"] == "inside add" and s["parent_id"] == step["span_id"])
        assert by_id[inside["parent_id"]]["kind"] == "CONSUMER"


def test_a_message_from_a_stock_celery_producer_with_its_own_instrumentation(
    turl: str, memory: tuple[TracerProvider, InMemorySpanExporter], tmp_path: Path,
    background: list[subprocess.Popen[bytes]],
) -> None:
    provider, exporter = memory
    producer = stock.Celery("stock", broker=turl)

    @producer.task(name="otel.add")
    def add(x: int, y: int) -> int:
        return x + y

    # Celery's instrumentation finds the task of a sent name in the *current* app and traces only tasks it
    # finds; earlier tests may have left another app current.
    producer.set_current()
    instrumentor = CeleryInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        with provider.get_tracer("test").start_as_current_span("legacy view") as root:
            producer.send_task("otel.add", (2, 3), queue="celery")
    finally:
        instrumentor.uninstrument()
        producer.close()
    publish = next(s for s in exporter.get_finished_spans() if s.kind is SpanKind.PRODUCER)
    spans_file = tmp_path / "spans.jsonl"
    background.append(subprocess.Popen(
        [sys.executable, "-m", "asyncq", "worker", "tests.otel_celery_app:celery_app", "--celery-queues", "celery"],
        cwd=ROOT, env=worker_env(turl, spans_file), stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "w.log").open("wb")))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(s["kind"] == "CONSUMER" for s in read_spans(spans_file)):
        time.sleep(0.05)
    spans = read_spans(spans_file)
    assert spans, (tmp_path / "w.log").read_text()[-3000:]
    process = next(s for s in spans if s["name"].startswith("process"))
    inside = only(spans, "inside add")
    assert process["kind"] == "CONSUMER"
    assert process["trace_id"] == trace_hex(root) == inside["trace_id"]
    assert process["parent_id"] == hexid(publish) and process["links"] == [hexid(publish)]
    assert inside["parent_id"] == process["span_id"]


async def test_messaging_metrics(turl: str, workers: WorkerRunner) -> None:
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    app = App(redis_url=turl)

    @app.task(name="otel.m.ok", queue="mq")
    async def ok() -> None: ...

    @app.task(name="otel.m.bad", queue="mq", max_tries=1)
    async def bad() -> None:
        raise LookupError("no")

    instrument(app, tracer_provider=TracerProvider(), meter_provider=meters)
    await app.enqueue_many([ok.s(), ok.s(), bad.s()])
    await ok.enqueue()
    await workers.start(app, queues=("mq",))

    def points() -> dict[str, list[Any]]:
        data = reader.get_metrics_data()
        found: dict[str, list[Any]] = {}
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    found[m.name] = list(m.data.data_points)
        return found

    def done() -> dict[str, list[Any]] | None:
        found = points()
        durations = found.get("messaging.process.duration", [])
        return found if sum(p.count for p in durations) == 4 else None

    found = await wait_until(done)
    (sent,) = found["messaging.client.sent.messages"]
    assert sent.value == 4 and dict(sent.attributes) == {
        "messaging.system": "asyncq", "messaging.operation.name": "send", "messaging.destination.name": "mq"}
    assert sum(p.count for p in found["messaging.client.operation.duration"]) == 2  # two send calls
    (consumed,) = found["messaging.client.consumed.messages"]
    assert consumed.value == 4
    by_error = {p.attributes.get("error.type"): p.count for p in found["messaging.process.duration"]}
    assert by_error == {None: 3, "LookupError": 1}
    await app.close()


async def test_app_tracing_true_is_the_same_switch(turl: str) -> None:
    app = App(redis_url=turl, tracing=True)
    assert [type(h).__name__ for h in app.send_hooks] == ["TracingSendHooks"]
    assert any(type(h).__name__ == "TracingHooks" for h in app.hooks)
    again = instrument(app)  # a second instrument() adds nothing
    assert len(app.send_hooks) == 1 and again.send_hooks is app.send_hooks[0]
    again.uninstrument()
    assert app.send_hooks == [] and not any(type(h).__name__ == "TracingHooks" for h in app.hooks)


async def test_a_run_follows_its_producers_sampling_decision(
    turl: str, memory: tuple[TracerProvider, InMemorySpanExporter], workers: WorkerRunner
) -> None:
    provider, exporter = memory
    worker_app = App(redis_url=turl)
    inner = provider.get_tracer("test")

    @worker_app.task(name="otel.s.work")
    async def work(tag: str) -> str:
        with inner.start_as_current_span(f"inside {tag}"):
            return tag

    instrument(worker_app, tracer_provider=provider)
    sampled_out = App(redis_url=turl)
    instrument(sampled_out, tracer_provider=TracerProvider(sampler=ALWAYS_OFF))
    untraced = App(redis_url=turl)  # no instrumentation: its jobs carry no trace context
    await workers.start(worker_app)
    assert await (await sampled_out.enqueue("otel.s.work", "out")).result(timeout=10) == "out"
    assert await (await untraced.enqueue("otel.s.work", "plain")).result(timeout=10) == "plain"
    await wait_until(lambda: any(s.name == "inside plain" for s in exporter.get_finished_spans()))
    await wait_until(lambda: any(s.name == "process default" for s in exporter.get_finished_spans()))
    names = [s.name for s in exporter.get_finished_spans()]
    assert sorted(names) == ["inside plain", "process default"]  # nothing of the sampled-out job's run
    process = next(s for s in exporter.get_finished_spans() if s.name == "process default")
    assert process.parent is None and not process.links  # a job without a context starts a trace
    for a in (sampled_out, untraced):
        await a.close()


def test_a_call_the_celery_layer_routes_to_a_stock_celery_worker(
    turl: str, memory: tuple[TracerProvider, InMemorySpanExporter], tmp_path: Path,
    background: list[subprocess.Popen[bytes]],
) -> None:
    provider, exporter = memory
    celery = Celery("otel", broker=turl, backend=turl, asyncq_router=True)  # no rule: every call goes to Celery

    @celery.task(name="otel.add")
    def add(x: int, y: int) -> int:
        return x + y

    instrument(celery.asyncq_app, tracer_provider=provider)
    with provider.get_tracer("test").start_as_current_span("checkout") as root:
        result = add.apply_async((2, 3))
    spans_file = tmp_path / "spans.jsonl"
    log = tmp_path / "celery.log"
    background.append(subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests.otel_stock_worker", "worker", "-P", "solo", "-Q", "celery",
         "--without-mingle", "--without-gossip", "--without-heartbeat", "--loglevel=WARNING"],
        cwd=ROOT, env=worker_env(turl, spans_file), stdout=subprocess.DEVNULL, stderr=log.open("wb")))
    assert result.get(timeout=60) == 5, log.read_text()[-3000:]
    send = next(s for s in exporter.get_finished_spans() if s.name.startswith("send"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(s["kind"] == "CONSUMER" for s in read_spans(spans_file)):
        time.sleep(0.05)
    spans = read_spans(spans_file)
    run = next((s for s in spans if s["kind"] == "CONSUMER"), None)
    assert run is not None, (spans, log.read_text()[-3000:])
    inside = only(spans, "inside add")
    assert send.parent is not None and send.parent.span_id == root.get_span_context().span_id
    assert run["trace_id"] == trace_hex(root) == inside["trace_id"]
    assert run["parent_id"] == hexid(send)  # Celery's worker span, under asyncq's send span
    assert inside["parent_id"] == run["span_id"]


async def test_the_tenant_is_on_the_send_and_process_spans(
    turl: str, memory: tuple[TracerProvider, InMemorySpanExporter], workers: WorkerRunner
) -> None:
    provider, exporter = memory
    app = App(redis_url=turl)

    @app.task(name="otel.t.work")
    async def work() -> None: ...

    instrument(app, tracer_provider=provider)
    await workers.start(app)
    await (await work.enqueue_with(tenant="acme")).result(timeout=10)
    await (await work.enqueue_with()).result(timeout=10)
    await wait_until(lambda: sum(s.name == "process default" for s in exporter.get_finished_spans()) == 2)
    spans = exporter.get_finished_spans()
    tenants = sorted(((s.attributes or {}).get("asyncq.tenant", "-"), s.name) for s in spans)
    assert tenants == [("-", "process default"), ("-", "send default"), ("acme", "process default"),
                       ("acme", "send default")]
