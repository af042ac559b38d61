"""The dashboard's REST API and /metrics, through httpx against the ASGI app, with real workers on Redis db 5."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from datetime import datetime

import httpx
import pytest

from asyncq import App, ConfigurationError
from asyncq.web import DashboardAuth, create_dashboard_app
from asyncq.web.security import check_bind

from ..conftest import WorkerRunner, flushed_url, wait_until

WEB_DB = 5
TOKEN = "t0ken-for-the-tests-0123456789"


def make_app(url: str) -> App:
    app = App(redis_url=url)

    @app.task(name="double", queue="web")
    async def double(x: int) -> int:
        return x * 2

    @app.task(name="boom", queue="web", max_tries=1)
    async def boom(x: int) -> None:
        raise ValueError(f"boom {x}")

    @app.periodic(every=0.5, name="tick", queue="web")
    async def tick() -> str:
        return "tock"

    return app


@pytest.fixture
async def app() -> AsyncIterator[App]:
    a = make_app(flushed_url(WEB_DB))
    yield a
    await a.close()


def client_for(app: App, auth: DashboardAuth | None = None, client_host: str = "127.0.0.1",
               base_url: str = "http://localhost") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_dashboard_app(app, auth), client=(client_host, 50000))
    return httpx.AsyncClient(transport=transport, base_url=base_url)


@pytest.fixture
async def client(app: App) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as c:
        yield c


async def csrf(client: httpx.AsyncClient) -> dict[str, str]:
    r = await client.get("/api/session")
    assert r.status_code == 200, r.text
    return {"X-CSRF-Token": r.json()["csrf_token"]}


def queue(overview: dict, name: str) -> dict:
    return next(q for q in overview["queues"] if q["queue"] == name)


async def test_queue_fills_and_drains_with_rates_workers_and_charts(
    app: App, client: httpx.AsyncClient, workers: WorkerRunner
) -> None:
    await asyncio.gather(*(app.get_task("double").enqueue(i) for i in range(30)))
    o = (await client.get("/api/overview")).json()
    q = queue(o, "web")
    assert (q["length"], q["in_flight"], q["paused"], q["rate_in"]) == (30, 0, False, None)
    assert q["oldest_age"] is not None and o["workers"] == []
    await asyncio.sleep(1.1)  # a second sample: the rate meter needs a time span
    await workers.start(app, queues=("web",), stats_interval=0.1)
    await wait_until(lambda: _drained(client), timeout=10)
    await asyncio.sleep(0.3)  # the worker's stats flush
    o = (await client.get("/api/overview")).json()
    q = queue(o, "web")
    assert q["rate_out"] > 0 and q["rate_in"] is not None
    (w,) = o["workers"]
    assert w["alive"] and w["queues"] == ["web"] and w["concurrency"] == 100
    points = (await client.get("/api/history", params={"minutes": 5})).json()["web"]
    assert len(points) == 5 and sum(p["succeeded"] for p in points) >= 30  # + the periodic ticks
    assert points[-1]["wait_p50"] is not None and points[-1]["wait_p99"] >= points[-1]["wait_p50"]


async def _drained(client: httpx.AsyncClient) -> bool:
    q = queue((await client.get("/api/overview")).json(), "web")
    return q["length"] == 0 and q["in_flight"] == 0


async def test_pause_and_resume_need_the_csrf_token(app: App, client: httpx.AsyncClient) -> None:
    r = await client.post("/api/queues/web/pause")
    assert r.status_code == 403 and "X-CSRF-Token" in r.json()["detail"]
    r = await client.post("/api/queues/web/pause", headers={"X-CSRF-Token": "forged"})
    assert r.status_code == 403
    headers = await csrf(client)
    assert (await client.post("/api/queues/web/pause", headers=headers)).json()["ok"]
    assert await (await app.broker()).paused() == {"web"}
    await app.get_task("double").enqueue(1)
    assert queue((await client.get("/api/overview")).json(), "web")["paused"] is True
    assert (await client.post("/api/queues/web/resume", headers=headers)).status_code == 200
    assert await (await app.broker()).paused() == set()
    r = await client.post("/api/queues/bad:name/pause", headers=headers)
    assert r.status_code == 400 and "invalid queue name" in r.json()["detail"]


async def test_jobs_lookup_and_filters(app: App, client: httpx.AsyncClient, workers: WorkerRunner) -> None:
    done = await app.get_task("double").enqueue(21)
    failed = await app.get_task("boom").enqueue(7)
    await workers.start(app, queues=("web",))
    assert await done.result(timeout=10) == 42
    await wait_until(lambda: _status(client, failed.job_id, "failed"))
    await workers.stop_all()
    waiting = await app.get_task("double").enqueue_with((5,), delay=60)

    j = (await client.get(f"/api/jobs/{done.job_id}")).json()
    assert (j["status"], j["task"], j["args"], j["result"], j["tries"]) == ("complete", "double", [21], 42, 1)
    assert j["enqueued_at"] <= j["started_at"] <= j["finished_at"] and j["worker"]
    j = (await client.get(f"/api/jobs/{failed.job_id}")).json()
    assert j["error"] == "ValueError: boom 7" and "raise ValueError" in j["traceback"]
    assert j["dead_letter_reason"] == "failed: retries exhausted"
    assert (await client.get("/api/jobs/nope")).status_code == 404

    all_jobs = (await client.get("/api/jobs")).json()
    assert {(r["job_id"], r["status"]) for r in all_jobs} >= {
        (done.job_id, "complete"), (failed.job_id, "failed"), (waiting.job_id, "deferred")}
    only = (await client.get("/api/jobs", params={"state": "complete"})).json()
    assert done.job_id in {r["job_id"] for r in only} and {r["status"] for r in only} == {"complete"}
    only = (await client.get("/api/jobs", params={"state": "complete", "task": "double"})).json()
    assert [r["job_id"] for r in only] == [done.job_id]
    only = (await client.get("/api/jobs", params={"task": "boom"})).json()
    assert [r["job_id"] for r in only] == [failed.job_id]
    only = (await client.get("/api/jobs", params={"state": "deferred", "queue": "web"})).json()
    assert [r["job_id"] for r in only] == [waiting.job_id] and only[0]["scheduled_for"]
    assert (await client.get("/api/jobs", params={"state": "bogus"})).status_code == 422

    r = await client.post(f"/api/jobs/{waiting.job_id}/abort", headers=await csrf(client))
    assert r.json()["ok"] and (await waiting.status()).value == "aborted"


async def _status(client: httpx.AsyncClient, job_id: str, status: str) -> bool:
    r = await client.get(f"/api/jobs/{job_id}")
    return r.status_code == 200 and r.json()["status"] == status


async def test_dead_letters_inspect_retry_purge(app: App, client: httpx.AsyncClient, workers: WorkerRunner) -> None:
    jobs = [await app.get_task("boom").enqueue(i) for i in range(3)]
    w = await workers.start(app, queues=("web",))
    await wait_until(lambda: _dlq_total(client, 3))
    await workers.stop(w)
    page = (await client.get("/api/dead-letters")).json()
    assert page["total"] == 3
    d = page["items"][0]
    assert d["task"] == "boom" and d["queue"] == "web" and d["error"].startswith("ValueError") and d["traceback"]
    assert d["args"] in ([0], [1], [2]) and d["outcome"] == "failed"

    headers = await csrf(client)
    first = jobs[0].job_id
    assert (await client.post(f"/api/dead-letters/{first}/retry")).status_code == 403  # no CSRF token
    r = await client.post(f"/api/dead-letters/{first}/retry", headers=headers)
    assert r.status_code == 200 and r.json()["count"] == 1
    assert (await jobs[0].status()).value == "queued"
    assert queue((await client.get("/api/overview")).json(), "web")["length"] == 1
    assert (await client.post(f"/api/dead-letters/{first}/retry", headers=headers)).status_code == 404

    r = await client.delete(f"/api/dead-letters/{jobs[1].job_id}", headers=headers)
    assert r.json()["count"] == 1
    r = await client.post("/api/dead-letters/retry", params={"queue": "web"}, headers=headers)
    assert r.json()["count"] == 1
    assert (await client.get("/api/dead-letters")).json()["total"] == 0
    await app.get_task("boom").enqueue(9)
    await workers.start(app, queues=("web",))
    await wait_until(lambda: _dlq_total(client, 3))  # the three retried ones failed again... and 9
    r = await client.delete("/api/dead-letters", headers=headers)
    assert r.json()["count"] >= 3 and (await client.get("/api/dead-letters")).json()["total"] == 0


async def _dlq_total(client: httpx.AsyncClient, n: int) -> bool:
    return (await client.get("/api/dead-letters")).json()["total"] >= n


async def test_periodic_tasks_next_and_last_run(app: App, client: httpx.AsyncClient, workers: WorkerRunner) -> None:
    (p,) = (await client.get("/api/periodic")).json()
    assert (p["name"], p["task"], p["schedule"], p["last_run"]) == ("tick", "tick", "every 0.5 s", None)
    await workers.start(app, queues=("web",))
    await wait_until(lambda: _periodic_ran(client), timeout=10)
    (p,) = (await client.get("/api/periodic")).json()
    assert parse(p["next_run"]) > parse(p["last_run"]) and p["last_job_id"].startswith("cron:tick:")


def parse(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


async def _periodic_ran(client: httpx.AsyncClient) -> bool:
    (p,) = (await client.get("/api/periodic")).json()
    return p["last_status"] == "complete"


async def test_prometheus_metrics_of_the_fleet(app: App, client: httpx.AsyncClient, workers: WorkerRunner) -> None:
    for i in range(3):
        await app.get_task("double").enqueue(i)
    await app.get_task("boom").enqueue(1)
    await workers.start(app, queues=("web",), stats_interval=0.1)
    await wait_until(lambda: _metric(client, 'asyncq_jobs_dead_lettered_total{queue="web",task="boom"} 1.0'))
    text = (await client.get("/metrics")).text
    assert 'asyncq_jobs_succeeded_total{queue="web",task="double"} 3.0' in text
    assert 'asyncq_jobs_failed_total{queue="web",task="boom"} 1.0' in text
    assert 'asyncq_jobs_started_total{queue="web",task="double"} 3.0' in text
    assert 'asyncq_job_queue_wait_seconds_bucket{le="+Inf",queue="web",task="double"} 3.0' in text
    assert 'asyncq_job_run_seconds_count{queue="web",task="double"} 3.0' in text
    assert 'asyncq_queue_length{queue="web"} 0.0' in text and "asyncq_workers_alive 1.0" in text


async def _metric(client: httpx.AsyncClient, line: str) -> bool:
    return line in (await client.get("/metrics")).text


async def test_openapi_schema_describes_the_api(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    for path in ("/api/overview", "/api/queues", "/api/queues/{queue}/pause", "/api/jobs/{job_id}",
                 "/api/dead-letters/{job_id}/retry", "/api/periodic", "/api/history", "/metrics"):
        assert path in schema["paths"], path
    assert "QueueOut" in schema["components"]["schemas"]


async def test_page_and_assets_are_served(client: httpx.AsyncClient) -> None:
    r = await client.get("/")
    assert r.status_code == 200 and "asyncq dashboard" in r.text and "frame-ancestors 'none'" in r.headers[
        "content-security-policy"]
    assert (await client.get("/static/app.js")).headers["content-type"].startswith("text/javascript")
    assert (await client.get("/static/../keys.py")).status_code == 404


# --- security ------------------------------------------------------------------------------------------------
async def test_without_auth_only_local_requests_are_answered(app: App) -> None:
    async with client_for(app, client_host="10.1.2.3") as remote:
        r = await remote.get("/api/overview")
        assert r.status_code == 403 and "local requests only" in r.json()["detail"]
    async with client_for(app, base_url="http://evil.example") as rebinding:  # DNS rebinding: Host is foreign
        assert (await rebinding.get("/api/overview")).status_code == 403
    async with client_for(app) as local:
        headers = {**await csrf(local), "Origin": "http://evil.example"}
        r = await local.post("/api/queues/web/pause", headers=headers)
        assert r.status_code == 403 and "cross-origin" in r.json()["detail"]


async def test_token_auth_with_bearer_and_browser_session(app: App) -> None:
    auth = DashboardAuth(token=TOKEN)
    async with client_for(app, auth, client_host="10.1.2.3", base_url="http://dash.example") as c:
        assert (await c.get("/api/overview")).status_code == 401
        assert (await c.get("/")).status_code == 401
        assert (await c.get("/metrics")).status_code == 401
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert (await c.get("/api/overview", headers=bearer)).status_code == 200
        assert (await c.post("/api/queues/web/pause", headers=bearer)).status_code == 200  # no CSRF for bearer
        assert (await c.get("/?token=wrong")).status_code == 401
        r = await c.get(f"/?token={TOKEN}")
        assert r.status_code == 303 and "httponly" in r.headers["set-cookie"].lower()
        assert "samesite=strict" in r.headers["set-cookie"].lower() and TOKEN not in r.headers["set-cookie"]
        assert (await c.get("/")).status_code == 200  # the session cookie
        assert (await c.post("/api/queues/web/resume")).status_code == 403  # cookie alone: CSRF refused
        assert (await c.post("/api/queues/web/resume", headers=await csrf(c))).status_code == 200


async def test_basic_auth(app: App) -> None:
    auth = DashboardAuth(basic_user="ops", basic_password="pa55word")
    async with client_for(app, auth, client_host="10.1.2.3") as c:
        r = await c.get("/api/overview")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
        bad = {"Authorization": "Basic " + base64.b64encode(b"ops:nope").decode()}
        assert (await c.get("/api/overview", headers=bad)).status_code == 401
        good = {"Authorization": "Basic " + base64.b64encode(b"ops:pa55word").decode()}
        assert (await c.get("/api/overview", headers=good)).status_code == 200
        assert (await c.post("/api/queues/web/pause", headers=good)).status_code == 403
        token = (await c.get("/api/session", headers=good)).json()["csrf_token"]
        r = await c.post("/api/queues/web/pause", headers={**good, "X-CSRF-Token": token})
        assert r.status_code == 200


def test_binding_beyond_loopback_needs_auth() -> None:
    check_bind("127.0.0.1", DashboardAuth())
    check_bind("::1", DashboardAuth())
    with pytest.raises(ConfigurationError, match="refusing to serve the dashboard on 0.0.0.0"):
        check_bind("0.0.0.0", DashboardAuth())
    check_bind("0.0.0.0", DashboardAuth(token=TOKEN))
    with pytest.raises(ConfigurationError, match="at least 16"):
        DashboardAuth(token="short")
    assert TOKEN not in repr(DashboardAuth(token=TOKEN))


async def test_redis_password_never_shown() -> None:
    app = make_app("redis://:s3cret-pw@127.0.0.1:1/5")  # nothing listens on port 1
    async with client_for(app) as c:
        session = (await c.get("/api/session")).json()
        assert session["redis"] == "redis://***@127.0.0.1:1/5"
        r = await c.get("/api/overview")
        assert r.status_code == 503 and "unreachable" in r.json()["detail"]
        for path in ("/", "/api/session", "/api/overview", "/metrics", "/api/dead-letters"):
            assert "s3cret-pw" not in (await c.get(path)).text, path
    await app.close()
