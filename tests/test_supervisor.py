"""``asyncq worker --processes N`` / ``--reload`` (worker/supervisor.py) and ``--unknown-task-wait``, with real
processes: the supervisor's children are seen through their heartbeats in Redis, killed with SIGKILL, and the
supervisor is stopped with SIGTERM as an orchestrator would."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from asyncq import App, admin
from asyncq.task import JobSpec
from asyncq.worker.supervisor import child_argv, parse_processes
from tests.conftest import flushed_url, wait_until

ROOT = Path(__file__).resolve().parents[1]
DB = 13


@pytest.fixture
def db_url() -> str:
    return flushed_url(DB)


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:  # the supervisor and whatever children it still has
        if p.poll() is None:
            with_children = [p.pid, *(c.pid for c in psutil.Process(p.pid).children(recursive=True))]
            for pid in with_children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            p.wait()


def start(url: str, args: list[str], procs: list[subprocess.Popen[bytes]], log: Path, cwd: Path = ROOT,
          ) -> subprocess.Popen[bytes]:
    env = {**os.environ, "ASYNCQ_REDIS_URL": url, "ASYNCQ_WORKER_HEARTBEAT_INTERVAL": "0.5",
           "PYTHONPATH": str(ROOT)}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "asyncq", "worker", *args], cwd=cwd, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    procs.append(proc)
    return proc


async def live_pids(url: str) -> set[int]:
    async with App(redis_url=url) as app:
        return {w.pid for w in await admin.list_workers(app) if w.alive and w.pid is not None}


def test_options() -> None:
    assert parse_processes("auto") == (os.cpu_count() or 1)
    assert parse_processes("3") == 3
    for bad in ("0", "many"):
        with pytest.raises(ValueError, match="--processes"):
            parse_processes(bad)
    assert child_argv(["worker", "m:app", "--processes", "2", "--reload", "--processes=3", "--burst"]) == [
        "worker", "m:app", "--burst"]


@pytest.mark.timeout(120)
async def test_processes_2_restarts_a_killed_child_and_stops_on_sigterm(
        db_url: str, tmp_path: Path, started: list[subprocess.Popen[bytes]]) -> None:
    log = tmp_path / "sup.log"
    sup = start(db_url, ["tests.proc_app:app", "--processes", "2"], started, log)
    pids = await wait_until(lambda: _two(db_url), timeout=60)
    children = {c.pid for c in psutil.Process(sup.pid).children()}
    assert pids <= children, (pids, children, log.read_text())
    victim = min(pids)
    os.kill(victim, signal.SIGKILL)
    after = await wait_until(lambda: _two(db_url, without=victim), timeout=60)
    assert victim not in after and len(after) == 2
    # jobs are served by the children
    async with App(redis_url=db_url) as app:
        jobs = await app.enqueue_many([JobSpec("echo", (i,), {}) for i in range(20)])
        assert [await j.result(timeout=30) for j in jobs] == list(range(20))
    sup.send_signal(signal.SIGTERM)
    assert sup.wait(60) == 0, log.read_text()
    for pid in after:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert "restarting it in" in log.read_text()


async def _two(url: str, without: int | None = None) -> set[int] | None:
    pids = await live_pids(url)
    return pids if len(pids) == 2 and without not in pids else None


@pytest.mark.timeout(120)
async def test_a_crash_looping_worker_makes_the_supervisor_exit_non_zero(
        db_url: str, tmp_path: Path, started: list[subprocess.Popen[bytes]]) -> None:
    log = tmp_path / "sup.log"
    sup = start(db_url, ["tests.no_such_module:app", "--processes", "2"], started, log)
    code = await asyncio.to_thread(sup.wait, 90)
    text = log.read_text()
    assert code == 1, text
    assert "giving up" in text and "no module 'tests.no_such_module'" in text


@pytest.mark.timeout(120)
async def test_reload_restarts_the_worker_when_a_py_file_changes(
        db_url: str, tmp_path: Path, started: list[subprocess.Popen[bytes]]) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    module = project / "reload_app.py"
    module.write_text("import asyncq\napp = asyncq.App()\n\n@app.task(name='v')\nasync def v() -> int:\n"
                      "    return 1\n")
    log = tmp_path / "sup.log"
    sup = start(db_url, ["reload_app:app", "--reload"], started, log, cwd=project)
    first = await wait_until(lambda: _one(db_url), timeout=60)
    module.write_text(module.read_text().replace("return 1", "return 2"))
    second = await wait_until(lambda: _one(db_url, without=first), timeout=60)
    async with App(redis_url=db_url) as app:
        job = await app.enqueue("v")
        assert await job.result(timeout=30) == 2  # the new code runs
    (project / "notes.txt").write_text("not python")  # no restart for other files
    await asyncio.sleep(2)
    assert await live_pids(db_url) == second
    sup.send_signal(signal.SIGTERM)
    assert sup.wait(60) == 0, log.read_text()
    assert "a .py file changed" in log.read_text()


async def _one(url: str, without: set[int] | None = None) -> set[int] | None:
    pids = await live_pids(url)
    return pids if len(pids) == 1 and pids != without else None


@pytest.mark.timeout(60)
async def test_unknown_task_wait_option(db_url: str, tmp_path: Path, started: list[subprocess.Popen[bytes]],
                                        ) -> None:
    async with App(redis_url=db_url) as app:
        job = await app.enqueue("no.such.task")
        log = tmp_path / "w.log"
        proc = start(db_url, ["tests.proc_app:app", "--unknown-task-wait", "1"], started, log)
        try:  # dead-lettered after about 1 s of serving (the default would be 600 s)
            info = await wait_until(lambda: _dead(app, job.job_id), timeout=60)
        except AssertionError:
            raise AssertionError(f"not dead-lettered: {await app.job(job.job_id).info()}; worker log: "
                                 f"{log.read_text()[-2000:]}") from None
        assert "unknown_task_wait=1 s" in (info.error or ""), info  # the default would be 600 s
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0


async def _dead(app: App, job_id: str) -> object:
    info = await app.job(job_id).info()
    return info if info.status.value == "dead" else None
