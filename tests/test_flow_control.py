"""Flow control (issue 16): tenants and weighted fair share, global rate limits and concurrency caps, all decided
in the claim script. Real Redis (database 15 of the test Redis), real worker processes for the cap and the
SIGKILL case. No durations are asserted: the order of claims, the counts, and the largest number in flight.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from asyncq import App, keys
from asyncq.broker import now_ms
from asyncq.exceptions import ConfigurationError
from asyncq.flow import pack_limits, parse_rate

from .conftest import WorkerRunner, flushed_url, wait_until
from .flow_app import CAP, ENDS, STARTS

FLOW_DB = 15
JOBS = 40  # in the SIGKILL test: 40 x 0.3 s at 3 in flight, 4 s of work
ROOT = Path(__file__).resolve().parent.parent
LANES = keys.lanes_by_priority("default")
QUEUES = ["default"] * len(LANES)


@pytest.fixture
async def fapp() -> Iterator[App]:  # type: ignore[misc]
    a = App(redis_url=flushed_url(FLOW_DB))
    yield a
    await a.close()


def tenant_of(lane: str) -> str:
    return keys.tenant_of_suffix(lane[len(keys.base_lane(lane)):])


async def claim_all(app: App, want: int, limits: bytes = b"\x80") -> tuple[list[str], int]:
    broker = await app.broker()
    claimed, next_due, broken = await broker.claim(LANES, QUEUES, want, 60_000, "t", limits=limits)
    assert broken == {}
    return [tenant_of(c.lane) for c in claimed], next_due


async def test_a_late_tenant_is_served_round_robin_not_behind_the_backlog(fapp: App) -> None:
    @fapp.task(name="work")
    async def work(n: int) -> None: ...

    await fapp.enqueue_many([work.s(n).set(tenant="a") for n in range(200)])
    for t in ("b", "c"):
        await fapp.enqueue_many([work.s(n).set(tenant=t) for n in range(3)])
    order, _ = await claim_all(fapp, 9)
    assert Counter(order) == {"a": 3, "b": 3, "c": 3}
    rest, _ = await claim_all(fapp, 50)
    assert set(rest) == {"a"}  # b and c had 3 each: all claimed in the first round


async def test_weights_give_turns_in_proportion(fapp: App) -> None:
    @fapp.task(name="work")
    async def work(n: int) -> None: ...

    await fapp.set_tenant_weight("default", "a", 3)
    await fapp.enqueue_many([work.s(n).set(tenant="a") for n in range(50)])
    await fapp.enqueue_many([work.s(n).set(tenant="b") for n in range(50)])
    order, _ = await claim_all(fapp, 12)
    assert Counter(order) == {"a": 9, "b": 3}
    with pytest.raises(ConfigurationError, match="weight must be a number > 0"):
        await fapp.set_tenant_weight("default", "a", 0)


async def test_jobs_without_a_tenant_are_the_default_tenant_and_priorities_still_win(fapp: App) -> None:
    @fapp.task(name="work", tenant_from="customer")
    async def work(customer: str | None = None) -> None: ...

    await fapp.enqueue_many([work.s(customer="a") for _ in range(20)])  # tenant from the keyword argument
    await fapp.enqueue_many([work.s() for _ in range(2)])  # the default tenant: the lane itself, as before
    urgent = await work.enqueue_with(kwargs={"customer": "z"}, priority=9)
    order, _ = await claim_all(fapp, 5)
    assert order[0] == "z"  # priority 9's lane is walked first
    assert Counter(order[1:]) == {"a": 2, "default": 2}
    assert urgent.lane is not None and urgent.lane.endswith("#t:z")


async def test_tenant_jobs_keep_status_and_results(fapp: App, workers: WorkerRunner) -> None:
    @fapp.task(name="double")
    async def double(x: int) -> int:
        return 2 * x

    jobs = [await double.enqueue_with((n,), tenant=f"t{n % 3}") for n in range(9)]
    assert (await jobs[0].status()).value == "queued"
    await workers.start(fapp, concurrency=4)
    assert [await j.result(timeout=20) for j in jobs] == [2 * n for n in range(9)]


async def test_bad_tenant_and_limit_options_say_what_to_do(fapp: App) -> None:
    @fapp.task(name="work")
    async def work() -> None: ...

    with pytest.raises(ConfigurationError, match="invalid tenant 'a#b'"):
        await work.enqueue_with(tenant="a#b")
    with pytest.raises(ConfigurationError, match="rate_limit must look like '50/s'"):
        fapp.task(name="x", rate_limit="fast")(lambda: None)
    with pytest.raises(ConfigurationError, match="max_concurrency must be an int >= 1"):
        fapp.task(name="y", max_concurrency=0)(lambda: None)
    rate = parse_rate("200/s", "rate_limit")
    assert rate is not None and rate.interval_ms == 5 and rate.burst == 5


async def test_a_rate_limited_job_waits_queued_and_the_claim_says_until_when(fapp: App) -> None:
    @fapp.task(name="hourly", rate_limit="2/h")
    async def hourly(n: int) -> None: ...

    await fapp.enqueue_many([hourly.s(n) for n in range(5)])
    limits = pack_limits([(hourly.name, hourly.options.limits)])
    first, _ = await claim_all(fapp, 10, limits)
    assert len(first) == 1  # 2/h: one start, then the next half an hour later
    before = now_ms()
    again, next_due = await claim_all(fapp, 10, limits)
    assert again == []
    assert next_due >= before + 29 * 60_000  # the worker sleeps until then (or until woken)
    broker = await fapp.broker()
    assert sum(r for _, _, r, _ in await broker.flows("default")) == 4  # still queued, no try used
    assert await broker.get(keys.retry_key((await broker.zrange(LANES[4] + "#f:hourly", 0, 0))[0].decode())) is None


async def test_a_concurrency_cap_holds_in_one_claim_and_a_lapsed_lease_gives_its_slot_back(fapp: App) -> None:
    @fapp.task(name="capped3", max_concurrency=3, tenant_concurrency=2)
    async def capped3(n: int) -> None: ...

    await fapp.enqueue_many([capped3.s(n).set(tenant="a") for n in range(10)])
    await fapp.enqueue_many([capped3.s(n).set(tenant="b") for n in range(10)])
    limits = pack_limits([(capped3.name, capped3.options.limits)])
    broker = await fapp.broker()
    claimed, _, _ = await broker.claim(LANES, QUEUES, 20, 60_000, "w1", limits=limits)
    assert len(claimed) == 3 and max(Counter(tenant_of(c.lane) for c in claimed).values()) == 2
    assert (await broker.claim(LANES, QUEUES, 20, 60_000, "w1", limits=limits))[0] == []
    await broker.delete(keys.in_progress_key(claimed[0].job_id))  # its lease is gone (what a lapse leaves)
    more, _, _ = await broker.claim(LANES, QUEUES, 20, 60_000, "w2", limits=limits)
    assert len(more) == 1


def start_worker(url: str, log: Path, **settings: object) -> subprocess.Popen[bytes]:
    env = {**os.environ, "ASYNCQ_REDIS_URL": url, "PYTHONPATH": str(ROOT)}
    for key, value in settings.items():
        env[f"ASYNCQ_WORKER_{key.upper()}"] = str(value)
    out = log.open("ab")
    return subprocess.Popen([sys.executable, "-m", "tests.flow_app"], cwd=ROOT, env=env, stdout=out, stderr=out)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait(10)


def max_in_flight(r: redis.Redis, killed: dict[int, float]) -> int:
    """The most jobs ever in flight at once, from the recorded intervals; a killed worker's unfinished jobs ran
    until it was killed."""
    ends = {k.decode(): float(v) for k, v in r.hgetall(ENDS).items()}
    events = []
    for k, v in r.hgetall(STARTS).items():
        pid, start = v.decode().split()
        end = ends.get(k.decode(), killed.get(int(pid)))
        assert end is not None, f"job run {k!r} neither finished nor ran on the killed worker"
        events += [(float(start), 1), (end, -1)]
    n = peak = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):  # an end before a start at the same ms
        n += step
        peak = max(peak, n)
    return peak


@pytest.mark.slow
async def test_the_cap_holds_across_processes_and_a_sigkilled_workers_slots_come_back(
    procs: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    url = flushed_url(FLOW_DB)
    app = App(redis_url=url)
    from .flow_app import capped

    app.tasks[capped.name] = capped  # the producer knows the task's limits: its jobs go to the task's flow
    try:
        r = redis.Redis.from_url(url)
        procs += [start_worker(url, tmp_path / f"w{i}.log", concurrency=10, lease=2.0) for i in range(2)]
        await wait_until(lambda: r.zcard(keys.WORKERS_SET) == 2, timeout=60)
        await app.enqueue_many([capped.s(n, 0.3) for n in range(JOBS)])

        def running_pid() -> int | None:  # a worker with a capped job in flight: killed, a dead lease holds its slot
            ended = set(r.hkeys(ENDS))
            return next((int(v.split()[0]) for k, v in r.hgetall(STARTS).items() if k not in ended), None)

        pid = await wait_until(running_pid, timeout=30, interval=0.01)
        victim = next(p for p in procs if p.pid == pid)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        killed_at = now_ms()
        survivors_after = r.hlen(STARTS)
        await wait_until(lambda: len({k.split(b":")[0] for k in r.hkeys(ENDS)}) == JOBS, timeout=90)
        assert max_in_flight(r, {victim.pid: killed_at}) <= CAP
        assert r.hlen(STARTS) > survivors_after  # work went on after the kill
        inflight = r.smembers(keys.INFLIGHT_PREFIX + "capped")
        assert len(inflight) <= CAP  # stale ids are pruned, never more than the cap held
        r.close()
    finally:
        await app.close()


async def test_fair_share_with_a_real_worker_serves_late_tenants_before_the_backlog(
    fapp: App, workers: WorkerRunner
) -> None:
    started: list[str] = []

    @fapp.task(name="job", tenant_from="tenant")
    async def job(tenant: str) -> None:
        started.append(tenant)
        await asyncio.sleep(0.001)

    await fapp.enqueue_many([job.s(tenant="a") for _ in range(300)])
    await fapp.enqueue_many([job.s(tenant=t) for t in "bcd" for _ in range(5)])
    await workers.start(fapp, concurrency=2, claim_batch=2)
    await wait_until(lambda: len(started) == 315, timeout=60)
    last_late = max(i for i, t in enumerate(started) if t != "a")
    assert last_late < 60  # 15 late jobs among the first 60 starts, not after 300 of a's


async def test_a_tenant_job_dead_lettered_and_retried_runs_again(fapp: App, workers: WorkerRunner) -> None:
    from asyncq import admin

    attempts: list[int] = []

    @fapp.task(name="flaky", max_tries=1)
    async def flaky(n: int) -> int:
        attempts.append(n)
        if len(attempts) == 1:
            raise RuntimeError("first run fails")
        return n

    job = await flaky.enqueue_with((7,), tenant="acme")
    w = await workers.start(fapp, concurrency=2)
    broker = await fapp.broker()
    await wait_until(lambda: broker.zcard(keys.DLQ_INDEX))
    await workers.stop(w)
    assert await broker.zcard(keys.fair_key(job.lane or "")) == 0  # the emptied flow left the ring ...
    await admin.retry_dead_letter(fapp, job.job_id)
    await workers.start(fapp, concurrency=2)
    assert await job.result(timeout=20) == 7  # ... and the retried job brought it back


def test_compat_apply_async_tenant_and_the_global_options() -> None:
    from asyncq.compat import Celery

    capp = Celery("flow", broker=flushed_url(FLOW_DB))
    try:
        @capp.task(name="hook", rate_limit="10/s", global_rate_limit="50/s", max_concurrency=5)
        def hook(n: int) -> int:
            return n

        hook.apply_async((1,), tenant="acme")
        hook.s(2).set(tenant="globex").delay()
        hook.delay(3)
        limits = capp._asyncq.tasks["hook"].options.limits  # type: ignore[union-attr]
        assert limits.rate is not None and limits.rate.count == 50 and limits.max_concurrency == 5
        assert hook.rate_limit == "10/s"  # Celery's own: per worker, as in Celery
        r = redis.Redis.from_url(capp.conf.broker_url)
        lanes = {k.decode() for k in r.keys("arq:queue*")}
        base = keys.lane_key(capp.conf.task_default_queue)
        assert lanes == {f"{base}#t:acme#f:hook", f"{base}#t:globex#f:hook", f"{base}#f:hook"}
        r.close()
    finally:
        capp.close()


def test_the_shell_sets_weights_and_shows_tenants_and_limited_jobs() -> None:
    from typer.testing import CliRunner

    from asyncq.cli import cli

    url = flushed_url(FLOW_DB)
    fapp = App(redis_url=url)

    @fapp.task(name="metered", rate_limit="1/h")
    async def metered(n: int) -> None: ...

    async def setup() -> None:
        await fapp.enqueue_many([metered.s(n).set(tenant="big") for n in range(30)])
        await fapp.enqueue_many([metered.s(n).set(tenant="small") for n in range(2)])
        await claim_all(fapp, 5, pack_limits([(metered.name, metered.options.limits)]))  # one start; rest wait
        await fapp.close()

    asyncio.run(setup())
    runner = CliRunner()
    set_w = runner.invoke(cli, ["tenant", "weight", "default", "big", "2", "--redis-url", url])
    assert set_w.exit_code == 0, set_w.output
    r = redis.Redis.from_url(url)
    assert r.hgetall(keys.tenant_weight_key("default")) == {b"big": b"2.0"}
    r.close()
    listed = runner.invoke(cli, ["tenant", "list", "default", "--top", "1", "--redis-url", url])
    assert listed.exit_code == 0, listed.output
    assert "big" in listed.output and "small" not in listed.output and "1 more tenants" in listed.output
    assert "limited task metered: 31 ready, 0 holding a slot, next start allowed in" in listed.output
    queues = runner.invoke(cli, ["queues", "--redis-url", url])
    assert "2 tenant(s) with queued jobs" in queues.output and "big 29 ready" in queues.output, queues.output
    as_json = json.loads(runner.invoke(cli, ["queues", "--json", "--redis-url", url]).output)
    (row,) = as_json["queues"]
    assert (row["length"], row["in_flight"]) == (31, 1)  # the counts include the tenants' jobs
    bad = runner.invoke(cli, ["tenant", "weight", "default", "big", "0", "--redis-url", url])
    assert bad.exit_code == 2 and "weight must be a number > 0" in bad.output


async def test_prometheus_gauges_are_per_queue_never_per_tenant(fapp: App) -> None:
    from asyncq.flow_stats import flow_summary
    from asyncq.metrics import fleet_metrics

    @fapp.task(name="metered2", max_concurrency=1)
    async def metered2(n: int) -> None: ...

    await fapp.enqueue_many([metered2.s(n).set(tenant=f"c{n}") for n in range(40)])
    text = fleet_metrics({}, [], [], [await flow_summary(fapp, "default")]).decode()
    assert 'asyncq_queue_tenants{queue="default"} 40.0' in text
    assert 'asyncq_queue_limited_ready{queue="default"} 40.0' in text
    assert 'asyncq_queue_tenant_ready{queue="default"} 40.0' in text
    assert "c17" not in text  # no tenant label: 40 tenants, still one series per queue


async def test_delayed_retried_and_aborted_tenant_jobs(fapp: App, workers: WorkerRunner) -> None:
    from asyncq.retry import RetryPolicy

    tries: list[int] = []

    @fapp.task(name="retried", max_tries=3, retry=RetryPolicy(base=0.05, jitter=False))
    async def retried(n: int) -> int:
        tries.append(n)
        if len(tries) < 3:
            raise RuntimeError("again")
        return n

    @fapp.task(name="later")
    async def later(n: int) -> int:
        return n

    delayed = await later.enqueue_with((1,), tenant="acme", delay=0.3)
    doomed = await later.enqueue_with((2,), tenant="acme", delay=30)
    again = await retried.enqueue_with((3,), tenant="acme")
    assert await doomed.abort()  # a scheduled tenant job, removed from its sub-lane at once
    broker = await fapp.broker()
    assert await broker.zscore(doomed.lane or "", doomed.job_id) is None
    await workers.start(fapp, concurrency=2)
    assert await delayed.result(timeout=20) == 1
    assert await again.result(timeout=20) == 3 and tries == [3, 3, 3]  # retried in its flow, backoff honoured


async def test_a_ready_tenant_behind_many_refused_and_idle_flows_is_still_claimed(fapp: App) -> None:
    @fapp.task(name="slow_rate", tenant_rate_limit="1/h")
    async def slow_rate(n: int) -> None: ...

    @fapp.task(name="plain")
    async def plain(n: int) -> None: ...

    limits = pack_limits([(slow_rate.name, slow_rate.options.limits)])
    await fapp.enqueue_many([slow_rate.s(n).set(tenant=f"r{n:03}") for n in range(150) for _ in range(2)])
    first, _ = await claim_all(fapp, 500, limits)  # each of the 150 tenants starts one; the rest are refused
    assert len(first) == 150
    await fapp.enqueue_many([plain.s(n).set(tenant=f"idle{n:03}", delay=3600) for n in range(100)])
    ready = await plain.enqueue_with((1,), tenant="zz-ready")
    broker = await fapp.broker()
    await broker.zadd(keys.fair_key(ready.lane or ""), {"#t:zz-ready": 1e6}, xx=True)  # served a lot before
    assert await broker.zrank(keys.fair_key(ready.lane or ""), "#t:zz-ready") == 250  # behind 250 flows
    order, _ = await claim_all(fapp, 10, limits)
    assert order == ["zz-ready"]


async def test_the_dashboard_lists_the_top_tenants_and_limited_tasks(fapp: App) -> None:
    import httpx

    from asyncq.web import create_dashboard_app

    @fapp.task(name="capped_web", max_concurrency=2)
    async def capped_web(n: int) -> None: ...

    await fapp.enqueue_many([capped_web.s(n).set(tenant="big") for n in range(7)])
    await fapp.enqueue_many([capped_web.s(n).set(tenant=f"t{n}") for n in range(9)])
    transport = httpx.ASGITransport(app=create_dashboard_app(fapp), client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        resp = await c.get("/api/tenants", params={"top": 3})
        page = await c.get("/")
    assert page.status_code == 200 and 'id="tenants-section"' in page.text  # the page renders them
    assert resp.status_code == 200, resp.text
    (queue,) = resp.json()
    assert queue["queue"] == "default" and queue["tenant_count"] == 10
    assert queue["tenants"][0]["tenant"] == "big" and len(queue["tenants"]) == 3
    assert queue["limited"]["capped_web"]["ready"] == 16


async def test_an_id_only_handle_finds_and_aborts_a_queued_tenant_job(fapp: App) -> None:
    @fapp.task(name="later2")
    async def later2(n: int) -> int:
        return n

    job = await later2.enqueue_with((1,), tenant="acme", priority=7)
    by_id = fapp.job(job.job_id)  # what `asyncq abort JOB_ID` holds: no lane known
    assert await by_id.abort()
    assert await (await fapp.broker()).zscore(job.lane or "", job.job_id) is None


async def test_purge_empties_the_tenants_sub_lanes_too(fapp: App) -> None:
    from asyncq import admin

    @fapp.task(name="purged")
    async def purged(n: int) -> None: ...

    await fapp.enqueue_many([purged.s(n).set(tenant=f"t{n % 4}") for n in range(20)])
    await fapp.enqueue_many([purged.s(n) for n in range(5)])
    kept = await purged.enqueue_with((99,), tenant="t1", delay=600)  # not ready: stays
    assert await admin.purge_queue(fapp, "default") == 25
    broker = await fapp.broker()
    assert await broker.zcard(kept.lane or "") == 1
