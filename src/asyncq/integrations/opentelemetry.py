"""OpenTelemetry traces and metrics for asyncq, by the OpenTelemetry messaging semantic conventions.

``instrument(app)`` (or ``App(tracing=True)``, or ``ASYNCQ_TRACING=1``) is the whole switch. It needs only
``opentelemetry-api`` (``pip install asyncq[otel]``); which SDK, sampler and exporter run is the application's
choice, made the usual way (``opentelemetry-instrument``, or a ``TracerProvider`` set in code). Without an SDK
every span is the API's no-op span.

Spans (the conventions' names, kinds and attributes; ``messaging.system`` is ``asyncq``):

* ``send {queue}`` (PRODUCER) around ``enqueue`` / ``enqueue_many`` of one job: its context goes into the job's
  headers as W3C ``traceparent``/``tracestate`` (arq's payload keeps them under ``h``, a key arq ignores).
* A batch of N jobs: one ``create {queue}`` PRODUCER span per job, whose context is that job's creation
  context, and one ``send`` CLIENT span for the batch with ``messaging.batch.message_count`` = N and a link to
  each creation context (what the conventions ask for batch publishing).
* ``process {queue}`` (CONSUMER) around each run, in the worker: its parent is the creation context carried
  in the job (one trace from the web request to the task), and it links to it as well; it carries the job id,
  ``asyncq.task.name``, ``asyncq.job.try``, the tenant (``asyncq.tenant``) when there is one and the
  outcome (``asyncq.job.outcome``); a failed run records the exception as an event and sets the status to
  ERROR with ``error.type``. The task body runs with this span current, so the spans of instrumented clients
  (httpx, SQLAlchemy, redis) in the task become its children, and a job the task enqueues (a chain's next
  step, a chord's body) is sent from inside it.
* Retries keep the job's headers, so every try is a ``process`` span under the same creation context.
* A Celery message (``asyncq worker --celery-queues``) carries the trace context in Celery's own message
  headers (``traceparent``, as Celery's OpenTelemetry instrumentation writes it); the ``process`` span is
  parented by it the same way.

Metrics (the conventions' messaging metrics): ``messaging.client.sent.messages`` and
``messaging.client.operation.duration`` on the producer side, ``messaging.client.consumed.messages`` and
``messaging.process.duration`` (seconds) in the worker, with ``messaging.system``,
``messaging.destination.name``, ``messaging.operation.name`` and, on failures, ``error.type``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from contextvars import Token
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics, propagate, trace
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode
except ImportError as exc:  # App(tracing=True) without the extra: say how to get it
    raise ImportError(
        f"asyncq's tracing needs the OpenTelemetry API ({exc}); install it with: pip install 'asyncq[otel]'"
    ) from exc

from asyncq._version import __version__
from asyncq.app import App, job_tenant
from asyncq.context import JobContext
from asyncq.hooks import Hooks, SendHooks
from asyncq.keys import DEFAULT_TENANT

if TYPE_CHECKING:
    from asyncq.task import JobSpec

SYSTEM = "asyncq"
SCOPE = "asyncq"
#: the headers the W3C trace-context propagator writes (kept as they are if the caller already set them)
TRACE_HEADERS = ("traceparent", "tracestate")

# attribute names of the messaging conventions (spelled here: opentelemetry-semantic-conventions is not needed)
MESSAGING_SYSTEM = "messaging.system"
DESTINATION = "messaging.destination.name"
OPERATION_TYPE = "messaging.operation.type"
OPERATION_NAME = "messaging.operation.name"
MESSAGE_ID = "messaging.message.id"
BATCH_COUNT = "messaging.batch.message_count"
CLIENT_ID = "messaging.client.id"
ERROR_TYPE = "error.type"
TASK_NAME = "asyncq.task.name"
JOB_TRY = "asyncq.job.try"
MAX_TRIES = "asyncq.job.max_tries"
RECOVERIES = "asyncq.job.recoveries"
OUTCOME = "asyncq.job.outcome"
TENANT = "asyncq.tenant"

#: outcomes of a run that mean it failed (the span's status is ERROR)
FAILED = ("retry", "failed", "aborted")


def _error_type(exc: BaseException) -> str:
    t = type(exc)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def carrier_of(headers: Mapping[str, Any]) -> Mapping[str, Any]:
    """Where a job's trace context is: its own headers, or, for a job that came from a Celery message, the
    Celery message's headers (kept by the Celery layer under ``headers["celery"]["headers"]``)."""
    if "traceparent" in headers:
        return headers
    celery = headers.get("celery")
    if isinstance(celery, dict):
        inner = celery.get("headers")
        if isinstance(inner, dict) and "traceparent" in inner:
            return inner
    return headers


def _text_getter_carrier(headers: Mapping[str, Any]) -> dict[str, str]:
    """Only the string values: a job's headers are user data and the propagator expects text."""
    return {k: v for k, v in carrier_of(headers).items() if isinstance(k, str) and isinstance(v, str)}


@dataclass(slots=True)
class _Sending:
    span: trace.Span
    token: Token[otel_context.Context]
    started: float
    queues: tuple[str, ...]


class _Instruments:
    def __init__(self, meter_provider: metrics.MeterProvider | None) -> None:
        meter = metrics.get_meter(SCOPE, __version__, meter_provider)
        self.sent = meter.create_counter(
            "messaging.client.sent.messages", unit="{message}", description="Messages (jobs) sent to Redis.")
        self.send_duration = meter.create_histogram(
            "messaging.client.operation.duration", unit="s", description="Duration of a send (enqueue) call.")
        self.consumed = meter.create_counter(
            "messaging.client.consumed.messages", unit="{message}",
            description="Messages (jobs) delivered to a task by a worker.")
        self.process_duration = meter.create_histogram(
            "messaging.process.duration", unit="s", description="Duration of processing (running) a job.")


class TracingSendHooks(SendHooks):
    """The producer side: spans around enqueue, the trace context into each job's headers."""

    def __init__(self, tracer: trace.Tracer, instruments: _Instruments, app: App) -> None:
        self.tracer = tracer
        self.instruments = instruments
        self.app = app

    def _queue(self, spec: JobSpec) -> str:
        if spec.options.queue:
            return spec.options.queue
        task = self.app.tasks.get(spec.task_name)
        return task.options.queue if task else self.app.settings.default_queue

    def sending(self, specs: Sequence[JobSpec]) -> tuple[Sequence[JobSpec], Any]:
        if not specs:
            return specs, None
        queues = tuple(self._queue(s) for s in specs)
        one = len(set(queues)) == 1
        attrs: dict[str, Any] = {MESSAGING_SYSTEM: SYSTEM, OPERATION_TYPE: "send", OPERATION_NAME: "send"}
        if one:
            attrs[DESTINATION] = queues[0]
        name = f"send {queues[0]}" if one else "send"
        if len(specs) == 1:
            attrs[TASK_NAME] = specs[0].task_name
            tenant = job_tenant(self.app.tasks.get(specs[0].task_name), specs[0])
            if tenant is not None and tenant != DEFAULT_TENANT:
                attrs[TENANT] = tenant
            span = self.tracer.start_span(name, kind=SpanKind.PRODUCER, attributes=attrs)
            out: Sequence[JobSpec] = [_with_context(specs[0], trace.set_span_in_context(span))]
        else:
            attrs[BATCH_COUNT] = len(specs)
            span = self.tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attrs)
            if span.is_recording():
                out = [self._created(span, spec, queue) for spec, queue in zip(specs, queues, strict=True)]
            else:  # sampled out: its creation spans would be too (same trace); the jobs carry its context
                carrier = _carrier(trace.set_span_in_context(span))
                out = [_with_carrier(spec, carrier) for spec in specs]
        token = otel_context.attach(trace.set_span_in_context(span))  # Redis client spans become its children
        return out, _Sending(span, token, time.perf_counter(), queues)

    def _created(self, send: trace.Span, spec: JobSpec, queue: str) -> JobSpec:
        """One job of a batch: its ``create`` span (a sibling of the batch's ``send`` span, linked from it) and
        that span's context in the job's headers."""
        create = self.tracer.start_span(
            f"create {queue}", kind=SpanKind.PRODUCER,
            attributes={MESSAGING_SYSTEM: SYSTEM, DESTINATION: queue, OPERATION_TYPE: "create",
                        OPERATION_NAME: "create", TASK_NAME: spec.task_name},
        )
        create.end()
        send.add_link(create.get_span_context())
        return _with_context(spec, trace.set_span_in_context(create))

    def sent(self, token: Any, job_ids: Sequence[str], error: BaseException | None) -> None:
        if not isinstance(token, _Sending):
            return
        span = token.span
        otel_context.detach(token.token)
        elapsed = time.perf_counter() - token.started
        base: dict[str, Any] = {MESSAGING_SYSTEM: SYSTEM, OPERATION_NAME: "send"}
        if len(set(token.queues)) == 1:
            base[DESTINATION] = token.queues[0]
        if error is not None:
            base[ERROR_TYPE] = _error_type(error)
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, str(error)[:200]))
            span.set_attribute(ERROR_TYPE, base[ERROR_TYPE])
        elif len(job_ids) == 1:
            span.set_attribute(MESSAGE_ID, job_ids[0])
        span.end()
        self.instruments.send_duration.record(elapsed, base)
        by_queue: dict[str, int] = {}
        for q in token.queues:
            by_queue[q] = by_queue.get(q, 0) + 1
        for q, n in by_queue.items():
            self.instruments.sent.add(n, {**base, DESTINATION: q})


def _carrier(ctx: otel_context.Context) -> dict[str, str]:
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=ctx)
    return carrier


def _with_carrier(spec: JobSpec, carrier: dict[str, str]) -> JobSpec:
    given = spec.options.headers
    if given and "traceparent" in given:  # a creation context the caller chose is kept as it is
        return spec
    return replace(spec, options=replace(spec.options, headers={**given, **carrier} if given else dict(carrier)))


def _with_context(spec: JobSpec, ctx: otel_context.Context) -> JobSpec:
    return _with_carrier(spec, _carrier(ctx))


class TracingHooks(Hooks):
    """The worker side: a CONSUMER span around each run, current while the task body runs."""

    def __init__(self, tracer: trace.Tracer, instruments: _Instruments) -> None:
        self.tracer = tracer
        self.instruments = instruments
        #: the last carrier extracted and its context: the jobs of one batch often carry the same one
        self._last: tuple[dict[str, str], otel_context.Context] | None = None

    def _extract(self, headers: Mapping[str, Any]) -> otel_context.Context:
        carrier = _text_getter_carrier(headers)
        if self._last is not None and self._last[0] == carrier:
            return self._last[1]
        parent = propagate.extract(carrier)
        self._last = (carrier, parent)
        return parent

    async def on_start(self, ctx: JobContext) -> None:
        parent = self._extract(ctx.headers)
        producer = trace.get_current_span(parent).get_span_context()
        span: trace.Span
        if producer.is_valid and not producer.trace_flags.sampled:
            # the producer's trace was sampled out: so is this run (what the default ParentBased sampler decides
            # anyway), without asking the SDK; the context still propagates to what the task sends
            span = trace.NonRecordingSpan(producer)
        else:
            # what a sampler may look at is given at the start; the rest only if the span is recorded (cheaper)
            span = self.tracer.start_span(
                f"process {ctx.queue}", context=parent, kind=SpanKind.CONSUMER,
                attributes={MESSAGING_SYSTEM: SYSTEM, DESTINATION: ctx.queue, OPERATION_TYPE: "process",
                            OPERATION_NAME: "process", TASK_NAME: ctx.task_name},
                links=[Link(producer)] if producer.is_valid else None,
            )
            if span.is_recording():
                attrs: dict[str, Any] = {MESSAGE_ID: ctx.job_id, CLIENT_ID: ctx.worker_id, JOB_TRY: ctx.job_try,
                                         MAX_TRIES: ctx.max_tries}
                if ctx.recoveries:
                    attrs[RECOVERIES] = ctx.recoveries
                tenant = ctx.state.get("tenant")
                if tenant is not None:
                    attrs[TENANT] = tenant
                span.set_attributes(attrs)
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        ctx.state["otel"] = (span, token, time.perf_counter())
        self.instruments.consumed.add(1, {MESSAGING_SYSTEM: SYSTEM, DESTINATION: ctx.queue,
                                          OPERATION_NAME: "process"})

    async def on_end(self, ctx: JobContext, outcome: str, exc: BaseException | None) -> None:
        held = ctx.state.pop("otel", None)
        if held is None:
            return
        span, token, started = held
        otel_context.detach(token)
        metric: dict[str, Any] = {MESSAGING_SYSTEM: SYSTEM, DESTINATION: ctx.queue, OPERATION_NAME: "process"}
        if outcome in FAILED:
            metric[ERROR_TYPE] = _error_type(exc) if exc is not None else outcome
        if span.is_recording():
            span.set_attribute(OUTCOME, outcome)
            if exc is not None:
                span.record_exception(exc)
            if outcome in FAILED:
                span.set_attribute(ERROR_TYPE, metric[ERROR_TYPE])
                span.set_status(Status(StatusCode.ERROR, f"{outcome}: {exc}"[:200] if exc else outcome))
        span.end()
        self.instruments.process_duration.record(time.perf_counter() - started, metric)


@dataclass(frozen=True, slots=True)
class Instrumentation:
    """What ``instrument`` added to an App; ``uninstrument()`` takes it out again."""

    app: App
    send_hooks: TracingSendHooks
    hooks: TracingHooks

    def uninstrument(self) -> None:
        if self.send_hooks in self.app.send_hooks:
            self.app.send_hooks.remove(self.send_hooks)
        if self.hooks in self.app.hooks:
            self.app.hooks.remove(self.hooks)


def instrument(
    app: App,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
) -> Instrumentation:
    """Trace and measure every enqueue and every run of ``app`` (a second call returns the first one's).

    Uses the global tracer and meter providers unless given others. Call it before a worker starts (hooks
    are read when the Worker is created).
    """
    for h in app.send_hooks:
        if isinstance(h, TracingSendHooks):
            existing = next(x for x in app.hooks if isinstance(x, TracingHooks))
            return Instrumentation(app, h, existing)
    tracer = trace.get_tracer(SCOPE, __version__, tracer_provider)
    instruments = _Instruments(meter_provider)
    send = TracingSendHooks(tracer, instruments, app)
    run = TracingHooks(tracer, instruments)
    app.send_hooks.append(send)
    app.hooks.insert(0, run)  # first: the other hooks (and their logs) see the span as current
    return Instrumentation(app, send, run)
