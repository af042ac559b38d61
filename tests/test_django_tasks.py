"""django.tasks on asyncq: Django's task-backend behaviour against a real ``asyncq worker --django`` process.

tests/djt_proj/scenario.py runs every step once per environment (enqueue from a sync and an async view,
run_after, priorities, a failing task, get_result before and after, the ORM from def and async def tasks,
on-commit enqueue dropped on rollback, the JSON argument rule) and prints a report; the tests below read it.
Two environments: this one (Django 4.2-5.x with the django-tasks backport) and Django 6 under Python 3.12 in a
venv of its own (tests/venvs.py). Redis database 12, shared with tests/test_test_redis.py: each run flushes it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from .conftest import flushed_url, redis_url
from .venvs import REPO, VenvSpec, ensure, repo_req, venv_env

pytest.importorskip("django")

PROJECT = Path(__file__).resolve().parent / "djt_proj"
DB = 12
PY312 = "/root/.pyenv/versions/3.12.1/bin/python"
DJANGO6 = VenvSpec("django6", (repo_req(), "django>=6.0,<7"), ("asyncq", "django"),
                   check=lambda v: None if v["django"].startswith("6.") else "expected Django 6.x", python=PY312)


def _scenario(python: str | Path, tmp: Path, env: dict[str, str]) -> dict[str, Any]:
    env = {**env, "DJT_REDIS_URL": flushed_url(DB), "DJT_DB": str(tmp / "shop.sqlite3"), "PYTHONUNBUFFERED": "1"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run([str(python), str(PROJECT / "scenario.py")], cwd=PROJECT, env=env, capture_output=True,
                          text=True, timeout=150, stdin=subprocess.DEVNULL)
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0 and lines, f"scenario failed ({done.returncode}):\n{done.stdout[-3000:]}\n" \
                                           f"{done.stderr[-5000:]}"
    report: dict[str, Any] = json.loads(lines[-1])
    return report


@pytest.fixture(scope="module", params=["backport", "django6"])
def report(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp(request.param)
    if request.param == "backport":
        pytest.importorskip("django_tasks")
        return _scenario(sys.executable, tmp, venv_env([PROJECT, REPO / "src"]))
    venv = ensure(DJANGO6)
    return _scenario(venv.python, tmp, venv_env([PROJECT]))


pytestmark = pytest.mark.timeout(420)


def test_versions(report: dict[str, Any]) -> None:
    if report["package"] == "django.tasks":
        assert report["django"].startswith("6.")
    else:
        assert report["package"] == "django_tasks" and not report["django"].startswith("6.")
    assert report["unfinished"] == [], report["worker_log"]
    assert report["worker_exit"] == 0, report["worker_log"]


def test_get_result_before_and_after(report: dict[str, Any]) -> None:
    before, after = report["before"], report["high"]
    assert before["type"] == "TaskResult" and before["status"] == "READY" and before["worker_ids"] == []
    assert before["enqueued_at"] and before["started_at"] is None and before["finished_at"] is None
    assert after["status"] == "SUCCESSFUL" and after["return_value"] == "high" and after["id"] == before["id"]
    assert len(after["worker_ids"]) == 1 and after["worker_ids"][0]
    assert after["enqueued_at"] <= after["started_at"] <= after["finished_at"]


def test_priority_order(report: dict[str, Any]) -> None:
    events = report["events"]
    assert events.index("high") < events.index("mid") < events.index("low"), events


def test_sync_view_and_orm(report: dict[str, Any]) -> None:
    r = report["sync_view"]
    assert r["status"] == "SUCCESSFUL", r
    assert r["return_value"] == {"item": "lamp", "thread": True}  # a def task runs in a worker thread
    assert report["order_processed"] is True


def test_async_view_and_async_task(report: dict[str, Any]) -> None:
    assert report["async_view"]["status"] == "SUCCESSFUL" and "from-async-view" in report["events"]
    assert report["async"]["return_value"] == 5 and report["async"]["queue"] == "reports"
    assert "async:2+3" in report["events"]  # the async ORM from an async def task
    assert report["async_aget"]["return_value"] == 5


def test_run_after(report: dict[str, Any]) -> None:
    r = report["later"]
    assert r["status"] == "SUCCESSFUL"
    assert datetime.fromisoformat(r["started_at"]) >= datetime.fromisoformat(report["run_after"])


def test_failing_task_errors(report: dict[str, Any]) -> None:
    r = report["boom"]
    assert r["status"] == "FAILED" and len(r["errors"]) == 1
    assert r["errors"][0]["path"] == "builtins.ValueError"
    assert "ValueError: boom: on purpose" in r["errors"][0]["traceback"]
    assert "shop/tasks.py" in r["errors"][0]["traceback"]


def test_on_commit(report: dict[str, Any]) -> None:
    assert report["rolled_back_result"] == "does-not-exist"
    assert "rolled-back" not in report["events"] and "kept" in report["events"]


def test_context_json_rule_and_queues(report: dict[str, Any]) -> None:
    assert report["ctx"]["status"] == "SUCCESSFUL", report["ctx"]
    assert report["ctx"]["return_value"] == {"id": report["ctx"]["id"], "attempt": 1}
    assert "args[0]" in report["json_error"] and "datetime" in report["json_error"]
    assert "nope" in report["bad_queue"]


def test_one_worker_serves_celery_and_django_tasks(tmp_path: Path) -> None:
    """``asyncq worker djt_celery:app --django``: one process runs a Celery-style shared_task (asyncq.compat) and
    the project's django.tasks, def and async def (tests/djt_proj/both.py)."""
    pytest.importorskip("django_tasks")
    env = {**venv_env([PROJECT, REPO / "src"]), "DJT_REDIS_URL": flushed_url(DB),
           "DJT_DB": str(tmp_path / "both.sqlite3"), "PYTHONUNBUFFERED": "1"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run([sys.executable, str(PROJECT / "both.py")], cwd=PROJECT, env=env, capture_output=True,
                          text=True, timeout=150, stdin=subprocess.DEVNULL)
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-5000:]
    report = json.loads(lines[-1])
    log = report["worker_log"]
    assert "queues celery,default,legacy,reports" in log, log  # the app's queues, then the backend's QUEUES
    assert report["legacy"] == "kettle" and report["processed"] is True, log
    assert report["django"] == ["SUCCESSFUL", "SUCCESSFUL"] and report["values"] == ["django-task", 9], log
    assert report["events"] == ["async:4+5", "django-task"]
    assert report["worker_exit"] == 0, log


def test_one_worker_refuses_another_redis(tmp_path: Path) -> None:
    """The App's Redis is not the one the backend enqueues on: the worker says so and exits 2, instead of serving
    queues no django.tasks job will ever reach."""
    pytest.importorskip("django_tasks")
    url = flushed_url(DB)
    other = url.rsplit("/", 1)[0] + "/13"  # never connected to: the check comes first
    env = {**venv_env([PROJECT, REPO / "src"]), "DJT_REDIS_URL": url, "DJT_DB": str(tmp_path / "x.sqlite3")}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run([sys.executable, "-m", "asyncq", "worker", "djt_celery:app", "--django", "--redis-url",
                           other], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "TASKS['default'] enqueues on" in done.stderr and "/13" in done.stderr, done.stderr


def test_system_checks() -> None:
    """``manage.py check`` reports each misconfigured asyncq backend option (djt_site/bad_settings.py)."""
    pytest.importorskip("django_tasks")
    env = {**venv_env([PROJECT, REPO / "src"]), "DJT_REDIS_URL": redis_url(DB), "DJT_DB": "/nonexistent/x.sqlite3"}
    done = subprocess.run([sys.executable, "-m", "django", "check", "--settings", "djt_site.bad_settings"],
                          cwd=PROJECT, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 1, done.stdout + done.stderr
    found = {line.split(")")[0].split("(")[-1]: line for line in done.stderr.splitlines() if "(asyncq.E" in line}
    assert "enqueue_on_comit" in found["asyncq.E001"]
    assert "'bad queue!'" in found["asyncq.E002"] and "TASKS['empty']" in found["asyncq.E003"]
    assert "schemes" in done.stderr and "keep_result must be >= 0" in done.stderr  # E004, twice
    assert "max_tries'] must be an int >= 1, got 0" in found["asyncq.E005"]
    assert "got '5'" in done.stderr and "got -1" in done.stderr  # E006: timeout, keep_result
    assert "'replica', which is not in DATABASES" in found["asyncq.E007"]


def test_database_connections_per_task(report: dict[str, Any]) -> None:
    """Each def task finds its thread's connection closed (CONN_MAX_AGE=0) though the one before it left it open:
    the worker closes old connections around each task, as Django's request cycle does."""
    runs = [report[f"conn{i}"] for i in range(3)]
    assert all(r["status"] == "SUCCESSFUL" for r in runs), runs
    assert [r["return_value"]["fresh"] for r in runs] == [True, True, True], runs
