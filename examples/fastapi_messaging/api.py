"""The chat / notification backend: handlers enqueue and answer at once; the dashboard is mounted at /asyncq.

    uvicorn api:api --port 8000        (with ASYNCQ_REDIS_URL, WEBHOOK_URL, PUSH_URL, SMTP_HOST, SMTP_PORT)
"""

from __future__ import annotations

import os

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from tasks import app, deliver_webhook, push_to_device, send_email

from asyncq import JobStatus, JobTimeout
from asyncq.integrations.fastapi import AsyncqApp, lifespan

api = FastAPI(title="chat", lifespan=lifespan(app, dashboard="/asyncq"))


class Message(BaseModel):
    sender: str
    to_user: str
    text: str


def endpoints() -> dict[str, str]:
    return {
        "webhook": os.environ.get("WEBHOOK_URL", "http://127.0.0.1:8001/webhook"),
        "push": os.environ.get("PUSH_URL", "http://127.0.0.1:8001/push"),
        "smtp_host": os.environ.get("SMTP_HOST", "127.0.0.1"),
        "smtp_port": os.environ.get("SMTP_PORT", "8025"),
    }


@api.post("/messages", status_code=202)
async def post_message(m: Message, tasks: AsyncqApp) -> dict[str, str]:
    """Store-and-forward: three jobs enqueued in one round trip; the handler never waits for delivery."""
    e = endpoints()
    jobs = await tasks.enqueue_many([
        deliver_webhook.s(e["webhook"], m.model_dump()),
        send_email.s(e["smtp_host"], int(e["smtp_port"]), f"{m.to_user}@example.test", f"New message from {m.sender}",
                     m.text),
        push_to_device.s(e["push"], f"{m.to_user}-phone", f"{m.sender}: {m.text}"),
    ])
    return dict(zip(("webhook", "email", "push"), (j.job_id for j in jobs), strict=True))


@api.get("/jobs/{job_id}")
async def job_status(job_id: str, tasks: AsyncqApp) -> dict[str, object]:
    info = await tasks.job(job_id).info()
    if info.status is JobStatus.not_found:
        raise HTTPException(404, "no such job")
    return {"status": info.status.value, "tries": info.tries, "result": info.result, "error": info.error}


@api.post("/messages/wait")
async def post_and_wait(m: Message, tasks: AsyncqApp, timeout: float = 10) -> dict[str, object]:
    """The same, but wait (without blocking the server) for the push to be delivered."""
    job = await push_to_device.enqueue(endpoints()["push"], f"{m.to_user}-phone", f"{m.sender}: {m.text}")
    try:
        return {"job": job.job_id, "result": await tasks.job(job.job_id).result(timeout=timeout)}
    except JobTimeout:
        raise HTTPException(504, f"not delivered within {timeout} s; GET /jobs/{job.job_id} later") from None
