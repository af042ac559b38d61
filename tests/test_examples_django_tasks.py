"""examples/django_tasks/demo.py (a Django 6 project that uses only django.tasks APIs, with the dashboard mounted
behind Django's login) run as a user runs it, with Django 6 under Python 3.12 in the venv of
tests/test_django_tasks.py; Redis database 12, flushed first."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .conftest import flushed_url
from .test_django_tasks import DB, DJANGO6
from .venvs import REPO, ensure, venv_env

EXAMPLE = REPO / "examples" / "django_tasks"


@pytest.mark.timeout(420)
def test_django_tasks_example(tmp_path: Path) -> None:
    venv = ensure(DJANGO6)
    env = venv_env(ASYNCQ_REDIS_URL=flushed_url(DB), NEWSLETTER_DB=str(tmp_path / "newsletter.sqlite3"),
                   PYTHONUNBUFFERED="1")
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run([str(venv.python), str(EXAMPLE / "demo.py")], cwd=EXAMPLE, env=env, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert done.stdout.count("SUCCESSFUL -> '") == 2 and "SUCCESSFUL -> 2" in done.stdout, done.stdout
    assert "welcomed: ['ada@example.com', 'bob@example.com']" in done.stdout
    # the dashboard mounted in the project's URLs, behind Django's login (on Django 6 here)
    assert "dashboard, anonymous: 302 -> /accounts/login/?next=/asyncq/" in done.stdout, done.stdout
    assert "dashboard, not staff: 403" in done.stdout
    assert "dashboard, staff: 200 queues ['default', 'stats']" in done.stdout
