"""The I/O-heavy work behind the messaging API: a webhook, an e-mail, a push notification.

Endpoints are arguments, never module globals, so the same tasks serve the local demo and production.
"""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

import httpx

from asyncq import App, RetryPolicy, current_job

app = App()  # Redis from $ASYNCQ_REDIS_URL

# A flaky partner endpoint answers 5xx now and then: retry quickly with backoff, give up after 5 tries.
FLAKY = RetryPolicy(base=0.2, factor=2, max_delay=2, jitter=False, retry_on=(httpx.HTTPError,))


@app.task(name="messaging.deliver_webhook", queue="webhooks", max_tries=5, retry=FLAKY, timeout=10)
async def deliver_webhook(url: str, message: dict[str, str]) -> int:
    async with httpx.AsyncClient(timeout=5) as client:
        r = await client.post(url, json=message, headers={"Idempotency-Key": current_job().job_id})
        r.raise_for_status()
        return r.status_code


@app.task(name="messaging.send_email", queue="emails", max_tries=3, timeout=30)
def send_email(smtp_host: str, smtp_port: int, to: str, subject: str, body: str) -> str:
    """A plain def: smtplib blocks, so the worker runs it in its thread pool, never on its event loop."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "chat@example.test", to, subject
    msg.set_content(body)
    with smtplib.SMTP(smtp_host, smtp_port, timeout=10) as smtp:
        smtp.send_message(msg)
    return to


@app.task(name="messaging.push", queue="push", max_tries=5, retry=FLAKY, timeout=10)
async def push_to_device(endpoint: str, device: str, text: str) -> str:
    async with httpx.AsyncClient(timeout=5) as client:
        r = await client.post(endpoint, json={"device": device, "text": text})
        r.raise_for_status()
        return f"pushed to {device} on try {current_job().job_try}"
