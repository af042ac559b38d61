"""Posts notes to the async view with Django's AsyncClient, runs a worker until the queue is empty, and shows
that only committed notes were announced.

    python examples/django_app/demo.py
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.test import AsyncClient  # noqa: E402

from asyncq import WorkerSettings, keys, run_worker  # noqa: E402
from notes.models import Note  # noqa: E402
from notes.tasks import app  # noqa: E402


def create_tables() -> None:
    with connection.schema_editor() as editor:
        if Note._meta.db_table not in connection.introspection.table_names():
            editor.create_model(Note)
    Note.objects.all().delete()


async def main() -> None:
    await asyncio.to_thread(create_tables)
    client = AsyncClient()
    for text in ("hello", "asyncq enqueues on commit", "forbidden words"):
        r = await client.post("/notes", {"text": text}, content_type="application/json")
        print(f"POST /notes {text!r}: {r.status_code} {r.json()}", flush=True)
    broker = await app.broker()
    print(f"jobs waiting in queue 'notes': {await broker.zcard(keys.queue_key('notes'))}", flush=True)
    worker = await run_worker(app, WorkerSettings(burst=True, handle_signals=False))
    print(f"worker done: {dict(worker.stats)}", flush=True)
    async for note in Note.objects.order_by("id"):
        print(f"note {note.id} {note.text!r}: announced={note.announced}", flush=True)
    print(f"notes in the database: {await Note.objects.acount()}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
