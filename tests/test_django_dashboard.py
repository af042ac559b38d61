"""The asyncq dashboard mounted in a Django project (``path("asyncq/", include(dashboard_urls()))``), behind
Django's own login: the test project (tests/djt_proj, Django 5.x with the django-tasks backport) served by a real
uvicorn process over ASGI, driven by a real headless Chromium (Debian's, through Playwright). Anonymous users
are sent to the login page (the API answers 403), a signed-in user who is not staff gets 403, a staff user sees
the dashboard with the project's queued django.tasks and pauses a queue from it; the API through the mount
needs the same login and, for actions, the dashboard's CSRF token. Redis database 12 (tests/test_django_tasks.py's).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from asyncq import App

from .conftest import flushed_url, wait_until
from .venvs import REPO, venv_env
from .web.test_browser import CHROMIUM, CHROMIUM_ARGS

pytest.importorskip("django")
pytest.importorskip("django_tasks")
playwright_api = pytest.importorskip("playwright.async_api")
httpx = pytest.importorskip("httpx")

PROJECT = Path(__file__).resolve().parent / "djt_proj"
DB = 12
pytestmark = [pytest.mark.timeout(180),
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (scripts/test installs it)")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The project migrated, with users and waiting tasks, served by uvicorn: (base URL, Redis URL)."""
    redis_url = flushed_url(DB)
    env = venv_env([PROJECT, REPO / "src"], DJT_REDIS_URL=redis_url, DJT_DB=str(tmp_path / "shop.sqlite3"),
                   DJANGO_SETTINGS_MODULE="djt_site.settings", PYTHONUNBUFFERED="1")
    done = subprocess.run([sys.executable, str(PROJECT / "dashboard_setup.py")], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL)
    assert done.returncode == 0 and "ready" in done.stdout, done.stdout + done.stderr
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", "djt_site.asgi:application", "--host", "127.0.0.1",
                               "--port", str(port), "--log-level", "warning"], cwd=PROJECT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert server.poll() is None, server.communicate()[0]
                subprocess.run(["sleep", "0.1"], check=True)
        yield base, redis_url
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            out, _ = server.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            out, _ = server.communicate()
        assert "Traceback" not in out, out


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        await b.close()


async def log_in(browser: Any, base: str, user: str) -> tuple[Any, Any, list[str]]:
    """A fresh browser context signed in as ``user`` through Django's login form, landing on /asyncq/."""
    context = await browser.new_context(viewport={"width": 1360, "height": 1000})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{base}/asyncq/")
    assert page.url == f"{base}/accounts/login/?next=/asyncq/"  # anonymous: sent to the login page
    await page.fill("#id_username", user)
    await page.fill("#id_password", "pw-for-tests")
    async with page.expect_navigation(url=f"{base}/asyncq/") as nav:
        await page.click("#login")
    return context, await nav.value, errors


async def test_anonymous_and_non_staff_are_refused(site: tuple[str, str], browser: Any) -> None:
    base, _ = site
    async with httpx.AsyncClient(base_url=base) as client:
        first = await client.get("/asyncq/")
        assert first.status_code == 302 and first.headers["location"] == "/accounts/login/?next=/asyncq/"
        for path in ("/asyncq/api/overview", "/asyncq/static/app.js", "/asyncq/metrics"):
            r = await client.get(path)
            assert r.status_code == 403 and "sign in" in r.json()["detail"], (path, r.text)
        # a stolen or guessed dashboard credential is no way in: the mount replaces Authorization
        r = await client.get("/asyncq/api/overview", headers={"Authorization": "Basic ZGphbmdvOnh4eA=="})
        assert r.status_code == 403

    context, response, errors = await log_in(browser, base, "bob")  # signed in, not staff
    assert response.status == 403
    assert "may not see the asyncq dashboard" in (await response.text())
    api = await context.request.get(f"{base}/asyncq/api/overview")
    assert api.status == 403
    act = await context.request.post(f"{base}/asyncq/api/queues/default/pause")
    assert act.status == 403 and "may not act on" in (await act.json())["detail"]
    await context.close()
    assert errors == []


async def test_staff_sees_the_dashboard_and_acts_on_it(site: tuple[str, str], browser: Any) -> None:
    base, redis_url = site
    context, response, errors = await log_in(browser, base, "ada")
    assert response.status == 200
    page = context.pages[0]
    await page.wait_for_selector("#live.ok", timeout=15_000)
    assert await page.title() == "asyncq dashboard"
    # the project's django.tasks, enqueued with no worker running, wait in their queues
    length = page.locator('#queues tr[data-queue="default"] .length')
    await wait_until(lambda: length.text_content(timeout=5000), timeout=10)
    assert await length.text_content() == "3"
    assert await page.locator('#queues tr[data-queue="reports"] .length').text_content(timeout=5000) == "1"
    assert "12" in (await page.text_content("#redis") or "")  # the backend's Redis, database 12

    # an action from the page: the dashboard's CSRF token travels through the mount
    await page.click('#queues tr[data-queue="default"] button[data-action="pause"]')
    await page.wait_for_selector('#queues tr[data-queue="default"] .state.paused', timeout=5000)
    async with App(redis_url=redis_url) as app:
        assert await (await app.broker()).paused() == {"default"}  # seen in Redis, not only on the page

    # the API through the mount, with the staff user's Django session
    queues = await context.request.get(f"{base}/asyncq/api/queues")
    assert queues.status == 200
    by_name = {q["queue"]: q for q in await queues.json()}
    assert by_name["default"]["paused"] is True and by_name["default"]["length"] == 3
    no_csrf = await context.request.post(f"{base}/asyncq/api/queues/default/resume")
    assert no_csrf.status == 403 and "X-CSRF-Token" in (await no_csrf.json())["detail"]
    session = await (await context.request.get(f"{base}/asyncq/api/session")).json()
    resumed = await context.request.post(f"{base}/asyncq/api/queues/default/resume",
                                         headers={"X-CSRF-Token": session["csrf_token"]})
    assert resumed.status == 200, await resumed.text()
    async with App(redis_url=redis_url) as app:
        assert await (await app.broker()).paused() == set()
    metrics = await context.request.get(f"{base}/asyncq/metrics")
    assert metrics.status == 200 and "asyncq_" in (await metrics.text())
    await context.close()
    assert errors == []
