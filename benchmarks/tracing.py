"""Overhead of asyncq's OpenTelemetry tracing (issue #17): enqueue + drain with tracing off and on.

    python benchmarks/tracing.py [--jobs 20000] [--single 2000] [--rounds 3] [--modes off,sampled-out,...]

A private redis-server on a free port (never 6379) is started and removed. For each mode, in alternating
rounds: ``--jobs`` no-op jobs are enqueued with ``enqueue_many`` (batches of 1,000: one ``send`` span and a
``create`` span per job when traced), ``--single`` more one by one (a ``send`` span each), then an in-process
burst worker (concurrency 100) drains them all (a ``process`` span per job). Modes:

* ``off``: no instrumentation;
* ``sampled-out``: ``instrument(app)`` with the SDK's TracerProvider under the ALWAYS_OFF sampler (spans are
  non-recording, contexts still propagate);
* ``sampled``: every span recorded by the SDK and handed to a BatchSpanProcessor with an exporter that drops
  them (the cost of making the spans, not of shipping them);
* ``sampled+metrics``: the same plus the metrics SDK (a MeterProvider with a reader) recording the messaging
  metrics. The other modes use the API's no-op meter (no global MeterProvider is set).

Reports the median wall time of each phase and the drain rate, and the overhead against ``off``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _redis_proc import RedisProc
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from asyncq import App, WorkerSettings, run_worker
from asyncq.integrations.opentelemetry import instrument

MODES = ("off", "sampled-out", "sampled", "sampled+metrics")


class DropExporter(SpanExporter):
    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS


def make_app(url: str, mode: str) -> tuple[App, TracerProvider | None, DropExporter | None]:
    app = App(redis_url=url)

    @app.task(name="bench.noop")
    async def noop(i: int) -> None:
        return None

    if mode == "off":
        return app, None, None
    exporter = None
    if mode == "sampled-out":
        provider = TracerProvider(sampler=ALWAYS_OFF)
    else:
        provider = TracerProvider()
        exporter = DropExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=100_000))
    # the API's no-op meter unless the mode measures the metrics SDK too (a reader that is never collected)
    meters = MeterProvider(metric_readers=[InMemoryMetricReader()]) if mode == "sampled+metrics" else None
    instrument(app, tracer_provider=provider, meter_provider=meters)
    return app, provider, exporter


async def one_round(url: str, mode: str, jobs: int, single: int) -> dict[str, float]:
    app, provider, exporter = make_app(url, mode)
    broker = await app.broker()
    await broker.flushdb()
    noop = app.tasks["bench.noop"]
    t0, c0 = time.perf_counter(), time.process_time()
    for start in range(0, jobs, 1000):
        await app.enqueue_many([noop.s(i) for i in range(start, min(jobs, start + 1000))])
    t1, c1 = time.perf_counter(), time.process_time()
    for i in range(single):
        await noop.enqueue(i)
    t2, c2 = time.perf_counter(), time.process_time()
    await run_worker(app, WorkerSettings(burst=True, concurrency=100, handle_signals=False, stats_interval=0))
    t3, c3 = time.perf_counter(), time.process_time()
    if provider is not None:
        provider.force_flush()
        provider.shutdown()
    if exporter is not None:  # a create (or send) and a process span per job reached the exporter
        assert exporter.count >= 2 * (jobs + single), exporter.count
    return {"enqueue_many": t1 - t0, "enqueue": t2 - t1, "drain": t3 - t2,
            "enqueue_many cpu": c1 - c0, "enqueue cpu": c2 - c1, "drain cpu": c3 - c2}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--single", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", default=",".join(MODES), help=f"some of {','.join(MODES)} (off is always run)")
    args = parser.parse_args()
    modes = ("off", *(m for m in args.modes.split(",") if m in MODES and m != "off"))
    results: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    with RedisProc(name="asyncq-tracing-bench") as server:
        url = server.url()
        await one_round(url, "off", 2000, 200)  # warm-up (imports, script loading)
        for r in range(args.rounds):
            for mode in modes if r % 2 == 0 else reversed(modes):
                results[mode].append(await one_round(url, mode, args.jobs, args.single))
                print(f"round {r + 1} {mode:16s} " + "  ".join(f"{k} {v:.3f}s" for k, v in results[mode][-1].items()
                                                               if not k.endswith("cpu")), flush=True)
    total = args.jobs + args.single
    phases = ("enqueue_many", "enqueue", "drain")
    base = {k: statistics.median(r[k] for r in results["off"]) for k in results["off"][0]}
    print(f"\n{args.jobs} jobs by enqueue_many (batches of 1000) + {args.single} by enqueue, drained by one "
          f"in-process worker (concurrency 100); median of {args.rounds} rounds")
    for suffix, title in (("", "wall time"), (" cpu", "CPU time of this process (steadier on a shared machine)")):
        print(f"\n{title}")
        print(f"{'mode':16s} {'enqueue_many':>15s} {'enqueue':>15s} {'drain':>15s} {'drain jobs/s':>13s}")
        for mode in modes:
            med = {k: statistics.median(r[k] for r in results[mode]) for k in base}
            cells = [f"{med[k + suffix]:7.3f}s {100 * (med[k + suffix] / base[k + suffix] - 1):+6.1f}%" for k in phases]
            print(f"{mode:16s} {cells[0]:>15s} {cells[1]:>15s} {cells[2]:>15s} {total / med['drain' + suffix]:13.0f}")


if __name__ == "__main__":
    asyncio.run(main())
