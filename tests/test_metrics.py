"""A worker's own Prometheus port, and the statistics recorder behind the dashboard (Redis db 5)."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from asyncq import App, keys
from asyncq.broker import REDIS_DOWN
from asyncq.stats import BUCKETS, StatsRecorder, bucket_index, percentile

from .conftest import WorkerRunner, flushed_url, wait_until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_worker_serves_its_own_metrics(workers: WorkerRunner) -> None:
    app = App(redis_url=flushed_url(5))

    @app.task(name="m.ok", queue="m")
    async def ok() -> None: ...

    @app.task(name="m.flaky", queue="m", max_tries=2, retry={"base": 0.05, "jitter": False})
    async def flaky() -> None:
        raise RuntimeError("nope")

    port = free_port()
    await workers.start(app, queues=("m",), metrics_port=port, stats_interval=0.1)
    await app.enqueue_many([ok.s(), ok.s(), flaky.s()])
    url = f"http://127.0.0.1:{port}/metrics"
    async with httpx.AsyncClient() as client:
        async def scraped() -> str | None:
            text = (await client.get(url)).text
            done = ('asyncq_jobs_failed_total{queue="m",task="m.flaky"} 1.0' in text
                    and 'asyncq_jobs_succeeded_total{queue="m",task="m.ok"} 2.0' in text)
            return text if done else None  # the oks' finish is batched: it may land after the flaky's end

        text = await wait_until(scraped)
        assert (await client.get(f"http://127.0.0.1:{port}/nope")).status_code == 404
    assert 'asyncq_jobs_succeeded_total{queue="m",task="m.ok"} 2.0' in text
    assert 'asyncq_jobs_retried_total{queue="m",task="m.flaky"} 1.0' in text
    assert 'asyncq_jobs_dead_lettered_total{queue="m",task="m.flaky"} 1.0' in text
    assert 'asyncq_job_run_seconds_count{queue="m",task="m.ok"} 2.0' in text
    assert 'asyncq_job_queue_wait_seconds_count{queue="m",task="m.flaky"} 2.0' in text
    assert "asyncq_worker_jobs_in_flight 0.0" in text
    # and the same counts reach Redis for the dashboard, without a Redis command per job
    broker = await app.broker()
    await wait_until(lambda: broker.hget(keys.stats_totals_key("m"), "dead|m.flaky"))
    totals = {k.decode(): int(v) for k, v in (await broker.hgetall(keys.stats_totals_key("m"))).items()}
    assert totals["succeeded|m.ok"] == 2 and totals["started|m.flaky"] == 2 and totals["retried|m.flaky"] == 1
    await app.close()


async def test_recorder_keeps_counts_when_redis_is_down() -> None:
    rec = StatsRecorder()
    rec._count("q", "t", "succeeded", 3)
    down = App(redis_url="redis://127.0.0.1:1/5", connect_timeout=0.2)
    with pytest.raises(REDIS_DOWN):
        await rec.flush(await down.broker())
    assert rec.pending  # kept for the next flush
    app = App(redis_url=flushed_url(5))
    await rec.flush(await app.broker())
    assert not rec.pending
    assert await (await app.broker()).hget(keys.stats_totals_key("q"), "succeeded|t") == b"3"
    await asyncio.gather(app.close(), down.close())


def test_percentiles_from_histogram_buckets() -> None:
    counts = [0] * len(BUCKETS)
    assert percentile(counts, 0.5) is None
    counts[bucket_index(0.003)] = 90  # 90 jobs under 5 ms
    counts[bucket_index(2.0)] = 10  # 10 jobs between 1 and 2.5 s
    assert percentile(counts, 0.5) <= 0.005
    assert 1.0 <= percentile(counts, 0.95) <= 2.5 and 1.0 <= percentile(counts, 0.99) <= 2.5
    assert bucket_index(1000) == len(BUCKETS) - 1


async def test_worker_metrics_under_celery_exporter_names(workers: WorkerRunner) -> None:
    app = App(redis_url=flushed_url(5))

    @app.task(name="c.ok", queue="c")
    async def ok() -> None: ...

    @app.task(name="c.flaky", queue="c", max_tries=2, retry={"base": 0.05, "jitter": False})
    async def flaky() -> None:
        raise KeyError("nope")

    port = free_port()
    await workers.start(app, queues=("c",), metrics_port=port, metrics_celery_names=True)
    await app.enqueue_many([ok.s(), ok.s(), flaky.s()])
    host = socket.gethostname()
    labels = f'hostname="{host}",name="c.flaky",queue_name="c"'
    async with httpx.AsyncClient() as client:
        async def scraped() -> str | None:
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            done = (f'celery_task_failed_total{{exception="KeyError",{labels}}} 1.0' in text
                    and f'celery_task_succeeded_total{{hostname="{host}",name="c.ok",queue_name="c"}} 2.0' in text)
            return text if done else None

        text = await wait_until(scraped)
    assert f'celery_task_succeeded_total{{hostname="{host}",name="c.ok",queue_name="c"}} 2.0' in text
    assert f"celery_task_retried_total{{{labels}}} 1.0" in text
    assert f"celery_task_received_total{{{labels}}} 2.0" in text
    assert f'celery_task_runtime_bucket{{hostname="{host}",le="+Inf",name="c.ok",queue_name="c"}} 2.0' in text
    assert f'celery_worker_up{{hostname="{host}"}} 1.0' in text
    assert f'celery_worker_tasks_active{{hostname="{host}"}} 0.0' in text
    assert 'asyncq_jobs_succeeded_total{queue="c",task="c.ok"} 2.0' in text  # asyncq's own names stay
    await app.close()
