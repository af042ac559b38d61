"""``asyncq check`` (cli/check.py), run as the command a Kubernetes probe or systemd would run: its exit code
and its one line, against the test Redis, a port where nothing listens, and a live in-process worker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from asyncq import App
from asyncq.embedded import free_port
from tests.conftest import WorkerRunner, flushed_url, wait_until

ROOT = Path(__file__).resolve().parents[1]
DB = 13


def asyncq_check(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "asyncq", "check", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    text = (proc.stdout + proc.stderr).strip()
    assert "\n" not in text and "Traceback" not in text, text
    return text


def test_redis_down_exits_1_with_one_line() -> None:
    proc = asyncq_check("--redis", f"redis://127.0.0.1:{free_port()}/0", "--timeout", "2")
    assert proc.returncode == 1
    assert one_line(proc).startswith("error:") and "unreachable" in proc.stderr


def test_bad_queue_name_exits_2() -> None:
    proc = asyncq_check("--redis", flushed_url(DB), "--queues", "a:b")
    assert proc.returncode == 2 and "invalid queue name" in one_line(proc)


@pytest.mark.timeout(60)
async def test_queues_need_a_live_worker(workers: WorkerRunner) -> None:
    url = flushed_url(DB)
    only_redis = await asyncio.to_thread(asyncq_check, "--redis-url", url)
    assert only_redis.returncode == 0 and one_line(only_redis).startswith("ok: Redis at")
    # tests.proc_app's App serves 'default' only; nobody serves it yet
    proc = await asyncio.to_thread(asyncq_check, "--app", "tests.proc_app:app", "--redis-url", url)
    assert proc.returncode == 1 and "no live worker serves queue(s) default" in one_line(proc)
    app = App(redis_url=url)

    @app.task(name="noop")
    async def noop() -> None:
        return None

    await workers.start(app, queues=("default", "mail"))
    await wait_until(lambda: _live(app))
    ok = await asyncio.to_thread(asyncq_check, "--app", "tests.proc_app:app", "--redis-url", url)
    assert ok.returncode == 0, ok.stderr
    assert one_line(ok) == f"ok: Redis at {url} answers; default: 1 worker(s)"
    partly = await asyncio.to_thread(asyncq_check, "--redis-url", url, "--queues", "mail,reports")
    assert partly.returncode == 1 and "queue(s) reports" in one_line(partly) and "mail" not in partly.stderr.split(
        "(")[0]
    await app.close()


async def _live(app: App) -> bool:
    from asyncq import admin

    return any(w.serving for w in await admin.list_workers(app))
