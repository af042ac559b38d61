"""examples/django_celery: a Django + Celery project moved to asyncq by install_as_celery() in its package and
nothing else, run as a user runs it (``python demo.py`` starts ``asyncq worker -A proj``; Redis db 7, SQLite in
tmp). Shows Django wired like Celery's fixup (django.setup, autodiscover from INSTALLED_APPS, lazy
config_from_object), shared_task with bind=True retries, a crontab beat entry, signal receivers and an
on_failure hook using the ORM from the task's worker thread, on-commit sends, chain/group/chord called directly,
and a django.tasks task on the same worker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import flushed_url

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "django_celery"
EXAMPLE_DB = 7

pytest.importorskip("django")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    tmp = tmp_path_factory.mktemp("django_celery")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("ASYNCQ_", "DJANGO_", "CELERY"))},
           "EXAMPLE_REDIS_URL": flushed_url(EXAMPLE_DB), "EXAMPLE_DB": str(tmp / "db.sqlite3"),
           "PYTHONUNBUFFERED": "1"}
    out = subprocess.run([sys.executable, str(EXAMPLE / "demo.py")], env=env, capture_output=True, text=True,
                         timeout=120, cwd=tmp)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def test_one_line_makes_celery_imports_asyncq(demo: subprocess.CompletedProcess[str]) -> None:
    assert "import celery gives: asyncq.compat" in demo.stdout
    assert "beat: [('nightly-report', 'orders.tasks.nightly_report')]" in demo.stdout  # celery.schedules.crontab


def test_canvas_called_as_celery_calls_it(demo: subprocess.CompletedProcess[str]) -> None:
    assert "chain: 10" in demo.stdout and "group: [0, 2, 4]" in demo.stdout and "chord: 6" in demo.stdout


def test_retries_on_commit_and_orm_hooks_in_the_worker_thread(demo: subprocess.CompletedProcess[str]) -> None:
    assert "order lamp: paid after 3 attempts" in demo.stdout  # bind=True, self.retry twice
    assert "charges sent for the rolled-back order: 0" in demo.stdout  # delay_on_commit dropped on rollback
    assert "ship failed: no courier available" in demo.stdout  # the task's own error, not SynchronousOnlyOperation
    assert "on_failure saved: RuntimeError: no courier available" in demo.stdout
    assert "signals: ['failure orders.tasks.ship', 'retry orders.tasks.charge', 'success" in demo.stdout
    assert "SynchronousOnlyOperation" not in demo.stderr
    assert "confirmation: confirmation for lamp sent" in demo.stdout


def test_django_tasks_on_the_same_worker(demo: subprocess.CompletedProcess[str]) -> None:
    pytest.importorskip("django_tasks")
    assert "django.tasks: SUCCESSFUL receipt for lamp sent" in demo.stdout


def test_worker_logs_real_retry_limits_and_stops_cleanly(demo: subprocess.CompletedProcess[str]) -> None:
    assert "worker exit: 0" in demo.stdout
    assert "/1000000000" not in demo.stderr
    charge = [line for line in demo.stderr.splitlines() if "orders.tasks.charge[" in line]
    assert "try 1/4" in charge[0] and "try 3/4" in charge[-1]  # max_retries=3: 4 tries, the third succeeds


def test_worker_dash_a_without_django_settings_module_in_the_environment(tmp_path: Path) -> None:
    """proj/celery.py sets DJANGO_SETTINGS_MODULE itself (Celery's recipe): -A proj is all the worker needs."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("ASYNCQ_", "DJANGO_", "CELERY"))},
           "EXAMPLE_REDIS_URL": flushed_url(EXAMPLE_DB), "EXAMPLE_DB": str(tmp_path / "db.sqlite3")}
    check = subprocess.run([sys.executable, "manage.py", "check"], cwd=EXAMPLE, env=env, capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stderr  # importing the app in a management command never fails
    out = subprocess.run([sys.executable, "-m", "asyncq", "worker", "-A", "proj", "--burst"], cwd=EXAMPLE, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for task in ("orders.tasks.charge", "emails.tasks.send_confirmation", "proj.celery.debug_task"):
        assert f". {task}\n" in out.stderr
    assert "queues celery" in out.stderr
