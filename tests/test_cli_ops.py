"""The operator's commands (``asyncq pause``, ``resume``, ``purge``, ``abort``), what ``asyncq queues`` says
about paused and unserved queues, and the unknown-task notes of ``asyncq enqueue`` / ``asyncq job``: real
``python -m asyncq`` processes and a real worker process on Redis database 11."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import flushed_url
from .test_cli import CLI_DB, as_json, asyncq, env_for, ok, one_red_line

TASKS = '''
import asyncio
from asyncq import App

app = App()


@app.task(queue="ops")
async def add(a, b=0):
    return a + b


@app.task(queue="ops")
async def slow(seconds):
    await asyncio.sleep(seconds)
    return seconds
'''


@pytest.fixture
def curl() -> str:
    return flushed_url(CLI_DB)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "ops_tasks.py").write_text(textwrap.dedent(TASKS))
    return tmp_path


@pytest.fixture
def worker_proc(curl: str, project: Path) -> Iterator[Any]:
    """Start ``asyncq worker ops_tasks:app`` (queues default, ops) on demand; killed at the end."""
    started: list[subprocess.Popen[str]] = []

    def start() -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-m", "asyncq", "worker", "ops_tasks:app", "--log-level", "warning"],
                                cwd=project, env=env_for(curl), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        started.append(proc)
        return proc

    yield start
    for p in started:
        if p.poll() is None:
            p.kill()
        p.communicate(timeout=10)  # reaps it and closes its pipes


def queues(url: str) -> dict[str, Any]:
    return {q["queue"]: q for q in as_json(asyncq("queues", "--json", url=url))["queues"]}


def until(predicate: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def test_pause_and_resume(curl: str) -> None:
    ok(asyncq("enqueue", "ops_tasks.add", "[1]", "--queue", "ops", url=curl))
    assert "queue ops paused" in ok(asyncq("pause", "ops", url=curl))
    assert queues(curl)["ops"]["paused"] is True
    shown = ok(asyncq("queues", url=curl))
    assert "ops (paused)" in shown and "asyncq resume ops" in shown
    assert "queue ops resumed" in ok(asyncq("resume", "ops", url=curl))
    assert queues(curl)["ops"]["paused"] is False
    one_red_line(asyncq("pause", "bad:name", url=curl), 2, "queue name")


def test_a_paused_queue_is_not_served_until_resumed(curl: str, worker_proc: Any) -> None:
    ok(asyncq("pause", "ops", url=curl))
    job_id = ok(asyncq("enqueue", "ops_tasks.add", "[2, 3]", "--queue", "ops", url=curl)).strip()
    worker_proc()
    until(lambda: queues(curl)["ops"]["serving_workers"] == 1)
    assert as_json(asyncq("job", job_id, "--json", url=curl))["status"] == "queued"  # a live worker, paused queue
    ok(asyncq("resume", "ops", url=curl))
    assert as_json(asyncq("job", job_id, "--wait", "20", "--json", url=curl))["result"] == 5


def test_queues_flags_ready_jobs_no_live_worker_serves(curl: str, worker_proc: Any) -> None:
    ok(asyncq("enqueue", "ops_tasks.add", "[1]", "--queue", "ops", url=curl))
    row = queues(curl)["ops"]
    assert (row["length"], row["serving_workers"], row["unserved"]) == (1, 0, True)
    shown = ok(asyncq("queues", url=curl))
    assert "NONE" in shown and "queue ops has ready jobs and no live worker serves it" in shown
    worker_proc()
    until(lambda: queues(curl)["ops"]["serving_workers"] == 1)
    assert queues(curl)["ops"]["unserved"] is False


def test_purge_removes_ready_jobs_only(curl: str, worker_proc: Any) -> None:
    running = ok(asyncq("enqueue", "ops_tasks.slow", "[30]", "--queue", "ops", url=curl)).strip()
    worker_proc()
    until(lambda: as_json(asyncq("job", running, "--json", url=curl))["status"] == "in_progress")
    ok(asyncq("pause", "ops", url=curl))  # the worker takes nothing more: the next jobs stay ready
    ready = [ok(asyncq("enqueue", "ops_tasks.add", f"[{i}]", "--queue", "ops", url=curl)).strip() for i in range(3)]
    later = ok(asyncq("enqueue", "ops_tasks.add", "[9]", "--queue", "ops", "--delay", "600", url=curl)).strip()
    before = queues(curl)["ops"]
    assert (before["length"], before["in_flight"], before["scheduled"]) == (3, 1, 1)

    one_red_line(asyncq("purge", "ops", url=curl), 2, "--yes")  # stdin is not a terminal
    assert queues(curl)["ops"]["length"] == 3
    assert "purged 3 ready job(s) from queue ops" in ok(asyncq("purge", "ops", "--yes", url=curl))
    after = queues(curl)["ops"]
    assert (after["length"], after["in_flight"], after["scheduled"]) == (0, 1, 1)
    one_red_line(asyncq("job", ready[0], url=curl), 1, "no job")
    assert as_json(asyncq("job", later, "--json", url=curl))["status"] == "deferred"
    assert as_json(asyncq("job", running, "--json", url=curl))["status"] == "in_progress"

    # abort: the running job is cancelled by its worker, the delayed one removed at once
    assert "is running: its worker cancels it" in ok(asyncq("abort", running, url=curl))
    assert "removed before it ran" in ok(asyncq("abort", later, url=curl))
    until(lambda: as_json(asyncq("job", running, "--json", url=curl))["status"] == "aborted")
    assert as_json(asyncq("job", later, "--json", url=curl))["status"] == "aborted"
    assert "had already finished (aborted)" in ok(asyncq("abort", later, url=curl))
    one_red_line(asyncq("abort", "no-such-job", url=curl), 1, "no job no-such-job")


def test_enqueue_and_job_say_when_live_workers_lack_the_task(curl: str, worker_proc: Any) -> None:
    alone = asyncq("enqueue", "ops_tasks.ad", "[1]", "--queue", "ops", url=curl)
    assert "no worker is alive" in alone.stderr
    worker_proc()
    until(lambda: as_json(asyncq("queues", "--json", url=curl))["workers"])
    typo = asyncq("enqueue", "ops_tasks.ad", "[1]", "--queue", "ops", url=curl)
    job_id = ok(typo).strip()
    assert "no live worker has a task named 'ops_tasks.ad'" in typo.stderr
    assert "did you mean 'ops_tasks.add'" in typo.stderr and "unknown_task_wait" in typo.stderr
    shown = asyncq("job", job_id, url=curl)
    assert f"job {job_id}: no live worker has a task named 'ops_tasks.ad'" in ok(shown) + shown.stderr
    fine = asyncq("enqueue", "ops_tasks.add", "[1]", "--queue", "ops", url=curl)
    assert ok(fine) and "no live worker" not in fine.stderr


def _on_a_terminal(args: list[str], url: str, answer: str) -> tuple[int, str]:
    """Run ``asyncq ARGS`` with a pseudo-terminal as stdin/stdout, answer its prompt, return (exit code, output)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "asyncq", *args], stdin=follower, stdout=follower,
                            stderr=subprocess.PIPE, env=env_for(url), text=True)
    os.close(follower)
    seen = b""
    try:
        while b"?" not in seen:  # the confirmation prompt
            seen += os.read(leader, 1024)
        os.write(leader, answer.encode() + b"\n")
        _, stderr = proc.communicate(timeout=30)
        while True:
            try:
                chunk = os.read(leader, 1024)
            except OSError:  # the child closed its side
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(leader)
    return proc.returncode, seen.decode(errors="replace") + stderr


def test_purge_asks_on_a_terminal(curl: str) -> None:
    for i in range(2):
        ok(asyncq("enqueue", "ops_tasks.add", f"[{i}]", "--queue", "ops", url=curl))
    code, text = _on_a_terminal(["purge", "ops"], curl, "n")
    assert code == 1 and "Delete the 2 ready job(s) of queue ops for good?" in text and "nothing purged" in text
    assert queues(curl)["ops"]["length"] == 2
    code, text = _on_a_terminal(["purge", "ops"], curl, "y")
    assert code == 0 and "purged 2 ready job(s) from queue ops" in text
    assert queues(curl)["ops"]["length"] == 0
