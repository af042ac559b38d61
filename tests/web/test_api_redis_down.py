"""Every endpoint of the dashboard's REST API answers 503 with a one-line JSON message while Redis is down,
against a redis-server of the test's own (asyncq.embedded.EmbeddedRedis) that the test stops."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from asyncq import App
from asyncq.embedded import EmbeddedRedis

from .test_api import client_for, csrf, make_app

GETS = ("/api/overview", "/api/queues", "/api/workers", "/api/jobs", "/api/jobs?state=queued", "/api/jobs/some-id",
        "/api/dead-letters", "/api/periodic", "/api/history", "/api/history?queue=web", "/metrics")
POSTS = ("/api/queues/web/pause", "/api/queues/web/resume", "/api/jobs/some-id/abort", "/api/dead-letters/retry",
         "/api/dead-letters/some-id/retry")
DELETES = ("/api/dead-letters/some-id", "/api/dead-letters")


@pytest.fixture
def redis() -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(db=5, die_with_parent=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_every_endpoint_answers_503_while_redis_is_down(redis: EmbeddedRedis) -> None:
    app: App = make_app(redis.url)
    try:
        async with client_for(app) as c:
            headers = await csrf(c)
            for path in GETS:  # the App's connections are made while Redis is up, then it goes away
                assert (await c.get(path)).status_code in (200, 404), path
            redis.stop()
            answers: list[tuple[str, httpx.Response]] = []
            answers += [(path, await c.get(path)) for path in GETS]
            answers += [(path, await c.post(path, headers=headers)) for path in POSTS]
            answers += [(path, await c.delete(path, headers=headers)) for path in DELETES]
            for path, r in answers:
                assert r.status_code == 503, (path, r.status_code, r.text[:300])
                detail = r.json()["detail"]
                assert isinstance(detail, str) and "\n" not in detail and "Redis" in detail, (path, detail)
                assert "Traceback" not in r.text
            assert (await c.get("/api/session")).status_code == 200  # needs no Redis
    finally:
        await app.close()
