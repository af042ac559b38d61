"""What a worker process writes to stderr (issue #15, Logs): one line per finished job, the traceback of a
failure, arguments at debug level only, JSON lines with --log-format json, a start-up banner that lists the
tasks, and, with Redis unreachable at start-up, a worker that says so until Redis answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asyncq import App

from .conftest import flushed_url, stop_process, wait_until
from .test_processes import PrivateRedis

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
LOG_DB = 9


def env(url: str) -> dict[str, str]:
    return {**os.environ, "ASYNCQ_REDIS_URL": url, "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def burst(url: str, *extra: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "asyncq", "worker", "tests.log_app:app", "--burst", *extra],
                          cwd=ROOT, env=env(url), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stderr


async def enqueue_all(url: str) -> dict[str, str]:
    app = App(redis_url=url)
    ids = {
        "add": (await app.enqueue("logs.add", 2, 3)).job_id,
        "flaky": (await app.enqueue("logs.flaky", "x" * 1000)).job_id,
        "boom": (await app.enqueue("logs.boom")).job_id,
    }
    await app.close()
    return ids


def run_until_flaky_done(url: str, *extra: str) -> str:
    """Burst workers until the retried job ran its second try too (it is due 10 ms after the first)."""
    out = ""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        out += burst(url, *extra)
        if out.count("logs.flaky[") >= 2:
            return out
    raise AssertionError(out[-3000:])


async def test_one_line_per_finished_job_and_tracebacks_for_failures() -> None:
    url = flushed_url(LOG_DB)
    ids = await enqueue_all(url)
    out = run_until_flaky_done(url)
    lines = out.splitlines()
    ok = [ln for ln in lines if f"logs.add[{ids['add']}] succeeded in " in ln]
    assert len(ok) == 1 and " INFO asyncq.job: " in ok[0]
    assert "(queue default, waited " in ok[0] and "try 1/3)" in ok[0]
    retry = next(ln for ln in lines if f"logs.flaky[{ids['flaky']}] failed, will retry in " in ln)
    assert " WARNING " in retry and "retry in 0.01s: ValueError: first try fails" in retry
    assert len([ln for ln in lines if f"logs.flaky[{ids['flaky']}] succeeded" in ln]) == 1
    failed = next(i for i, ln in enumerate(lines) if f"logs.boom[{ids['boom']}] failed in " in ln)
    assert " ERROR asyncq.job: " in lines[failed] and "RuntimeError: boom for the log" in lines[failed]
    assert lines[failed + 1] == "Traceback (most recent call last):"  # the task's traceback follows
    assert 'raise RuntimeError("boom for the log")' in "\n".join(lines[failed:failed + 40])
    assert "args=" not in out  # arguments only at debug level


async def test_debug_adds_the_arguments_cut_short() -> None:
    url = flushed_url(LOG_DB)
    ids = await enqueue_all(url)
    out = run_until_flaky_done(url, "--log-level", "debug")
    add = next(ln for ln in out.splitlines() if f"logs.add[{ids['add']}] succeeded" in ln)
    assert add.endswith(" args=(2, 3)")
    flaky = next(ln for ln in out.splitlines() if f"logs.flaky[{ids['flaky']}] succeeded" in ln)
    shown = flaky.split(" args=(", 1)[1]
    assert shown.startswith("'xxx") and shown.endswith("...)") and len(shown) < 250


async def test_json_lines_carry_the_fields() -> None:
    url = flushed_url(LOG_DB)
    ids = await enqueue_all(url)
    out = run_until_flaky_done(url, "--log-format", "json")
    records = [json.loads(ln) for ln in out.splitlines()]  # every line is JSON
    add = next(r for r in records if r.get("job_id") == ids["add"])
    assert add["level"] == "info" and add["logger"] == "asyncq.job" and add["outcome"] == "success"
    assert add["task"] == "logs.add" and add["queue"] == "default" and add["try"] == 1
    assert isinstance(add["run_s"], float) and isinstance(add["wait_s"], float)
    boom = next(r for r in records if r.get("job_id") == ids["boom"] and r["logger"] == "asyncq.job")
    assert boom["level"] == "error" and boom["outcome"] == "failed" and boom["error"] == "RuntimeError"
    assert 'raise RuntimeError("boom for the log")' in boom["traceback"]
    banner = next(r for r in records if r["message"].startswith("worker "))
    assert "[tasks]\n  . logs.add\n  . logs.boom\n  . logs.flaky" in banner["message"]


def test_banner_lists_queues_concurrency_lease_and_tasks() -> None:
    out = burst(flushed_url(LOG_DB), "--concurrency", "7", "--lease", "4")
    assert "serving default (concurrency 7, lease 4.0s)\n[tasks]\n  . logs.add\n  . logs.boom\n  . logs.flaky\n" in out


async def test_redis_unreachable_at_start_is_said_until_it_answers(tmp_path: Path) -> None:
    server = PrivateRedis()  # not started yet: nothing listens on its port
    url = f"redis://127.0.0.1:{server.port}/0"
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "asyncq", "worker", "tests.log_app:app"], cwd=ROOT,
                                env={**env(url), "ASYNCQ_CONNECT_TIMEOUT": "0.5"}, stdout=out, stderr=out)
    try:
        await wait_until(lambda: "is unreachable" in log.read_text(), timeout=20)
        text = log.read_text()
        assert f"Redis at {url} is unreachable" in text and "not serving yet" in text
        assert "serving default" not in text
        server.start()
        await wait_until(lambda: "serving default" in log.read_text(), timeout=20)
        assert "Redis answers after" in log.read_text()
        app = App(redis_url=url)
        assert await (await app.enqueue("logs.add", 1, 1)).result(timeout=10) == 2
        await app.close()
    finally:
        stop_process(proc)
        server.cleanup()
