"""Migrated: these tasks now live on the asyncq app, with async bodies (Celery cannot run ``async def``)."""

import asyncio

from proj.celery_asyncq import app
from proj.settings import runtime


@app.task(name="notifications.send_push")
async def send_push(user_id: int, text: str) -> dict[str, str]:
    await asyncio.sleep(0.05)  # await your push provider's HTTP API here
    return {"ran_on": runtime(), "result": f"pushed {text!r} to user {user_id}"}
