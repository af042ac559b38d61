"""The dashboard in a real headless Chromium (Debian's, driven by Playwright), served by uvicorn, with a real
worker, on Redis db 6: the page loads, shows a queue filling and draining, pauses a queue, and retrying a dead
letter from the page puts it back in its queue. Saves a screenshot to build/test-output/dashboard.png; the one the
README shows (docs/dashboard.png) is replaced only by `bash scripts/regenerate` (see CONTRIBUTING.md)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from asyncq import App, JobStatus, keys
from asyncq.web import create_dashboard_app

from ..conftest import WorkerRunner, flushed_url, wait_until

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = Path(__file__).resolve().parents[2] / "build" / "test-output" / "dashboard.png"
BROWSER_DB = 6
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]

playwright_api = pytest.importorskip("playwright.async_api")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (scripts/test installs it)")


def make_app(url: str) -> App:
    app = App(redis_url=url)

    @app.task(name="emails.send", queue="emails")
    async def send(user_id: int) -> str:
        await asyncio.sleep(0.05)
        return f"sent to {user_id}"

    @app.task(name="push.notify", queue="push", max_tries=1)
    async def notify(device: str) -> None:
        raise ConnectionError(f"push endpoint refused {device}")

    @app.periodic(every=5, name="reports.hourly", queue="emails")
    async def hourly() -> None: ...

    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def served() -> AsyncIterator[tuple[App, str]]:
    app = make_app(flushed_url(BROWSER_DB))
    port = free_port()
    config = uvicorn.Config(create_dashboard_app(app), host="127.0.0.1", port=port, log_level="warning",
                            lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started, timeout=10)
    yield app, f"http://127.0.0.1:{port}/"
    server.should_exit = True
    await asyncio.wait_for(task, timeout=10)
    await app.close()


@pytest.fixture
async def page(served: tuple[App, str]) -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = await browser.new_context(viewport={"width": 1360, "height": 1000})
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page
        await browser.close()
        assert errors == [], errors


async def cell(page: Any, queue: str, css: str) -> int:
    text = await page.locator(f'#queues tr[data-queue="{queue}"] {css}').text_content(timeout=5000)
    return int(text or "0")


async def test_dashboard_in_chromium(served: tuple[App, str], page: Any, workers: WorkerRunner) -> None:
    app, url = served
    await page.goto(url)
    await page.wait_for_selector("#live.ok", timeout=10_000)
    assert await page.title() == "asyncq dashboard"
    assert "no queues yet" in (await page.text_content("#queues"))

    # The queue fills: the page shows it without a reload.
    await app.enqueue_many([app.get_task("emails.send").s(i) for i in range(400)])
    await page.wait_for_selector('#queues tr[data-queue="emails"]', timeout=5000)
    assert await cell(page, "emails", ".length") == 400

    # A worker drains it while the page watches.
    await workers.start(app, queues=("emails", "push"), concurrency=10, stats_interval=0.2)
    seen: set[int] = set()

    async def drained() -> bool:
        seen.add(await cell(page, "emails", ".length"))
        return await cell(page, "emails", ".length") == 0 and await cell(page, "emails", ".inflight") == 0

    await wait_until(drained, timeout=30, interval=0.2)
    assert any(0 < n < 400 for n in seen), f"never saw the queue part-drained: {sorted(seen)}"
    await page.wait_for_selector('#workers td:has-text("serving")', timeout=5000)

    # A job that fails for good shows up as a dead letter.
    (dead,) = await app.enqueue_many([app.get_task("push.notify").s("phone-1")])
    row = page.locator(f'#dead-letters tr[data-dead="{dead.job_id}"]')
    await row.wait_for(timeout=10_000)
    assert "ConnectionError" in (await row.text_content() or "")

    # Pause the queue from the page, so the retried job stays visible in its queue.
    await page.click('#queues tr[data-queue="push"] button[data-action="pause"]')
    await page.wait_for_selector('#queues tr[data-queue="push"] .state.paused', timeout=5000)
    assert await (await app.broker()).paused() == {"push"}

    # Charts and job details, then the screenshot the README shows.
    await page.reload()
    await page.wait_for_selector("#live.ok", timeout=10_000)
    await page.wait_for_selector(".chart svg polyline", timeout=10_000)
    await page.click(f'#jobs a[data-job="{dead.job_id}"]')
    await page.wait_for_selector("#job-detail pre", timeout=5000)  # the traceback
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOT), full_page=True)

    # Retry the dead letter from the page: it goes back to its queue.
    await page.click(f'#dead-letters tr[data-dead="{dead.job_id}"] button[data-action="retry"]')
    await row.wait_for(state="detached", timeout=5000)
    assert await app.job(dead.job_id).status() is JobStatus.queued
    broker = await app.broker()
    assert await broker.zscore(keys.lane_key("push"), dead.job_id) is not None
    await wait_until(lambda: cell(page, "push", ".length"), timeout=5)
    assert "back in its queue" in (await page.text_content("#flash") or "")
    with contextlib.suppress(Exception):
        await broker.resume("push")
