"""examples/django_app/demo.py, run as a user runs it (Redis db 6, SQLite in tmp): jobs are enqueued only for
committed notes, and the worker reads the committed rows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import flushed_url

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "django_app"

pytest.importorskip("django")


def test_django_enqueue_on_commit_demo(tmp_path: Path) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("ASYNCQ_", "DJANGO_"))},
           "ASYNCQ_REDIS_URL": flushed_url(6), "NOTES_DB": str(tmp_path / "notes.sqlite3"), "PYTHONUNBUFFERED": "1"}
    out = subprocess.run([sys.executable, str(EXAMPLE / "demo.py")], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "POST /notes 'forbidden words': 422" in out.stdout
    assert "jobs waiting in queue 'notes': 2" in out.stdout  # the rolled-back note enqueued nothing
    assert "worker done: {'complete': 2}" in out.stdout
    assert "note 1 'hello': announced=True" in out.stdout and "notes in the database: 2" in out.stdout
