"""Local stand-ins for the outside world, so the example never leaves this machine:
a webhook receiver and a push endpoint (both flaky: each fails the first tries of every message with 503),
and an SMTP sink that keeps what it receives."""

from __future__ import annotations

import asyncio
from collections import Counter
from email import message_from_bytes
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi import FastAPI, Request, Response

FAILURES_PER_MESSAGE = 2


def sink_app() -> FastAPI:
    web = FastAPI(title="local sinks")
    web.state.received = {"webhook": [], "push": []}
    web.state.attempts = Counter()

    async def flaky(kind: str, request: Request) -> Response:
        body: dict[str, Any] = await request.json()
        key = f"{kind}:{request.headers.get('idempotency-key') or body}"
        web.state.attempts[key] += 1
        if web.state.attempts[key] <= FAILURES_PER_MESSAGE:
            return Response("try again later", status_code=503)
        web.state.received[kind].append(body)
        return Response(status_code=204)

    @web.post("/webhook")
    async def webhook(request: Request) -> Response:
        return await flaky("webhook", request)

    @web.post("/push")
    async def push(request: Request) -> Response:
        return await flaky("push", request)

    @web.get("/received")
    async def received() -> dict[str, Any]:
        return {**web.state.received, "attempts": sum(web.state.attempts.values())}

    return web


class MailSink:
    """An aiosmtpd handler that keeps every message."""

    def __init__(self) -> None:
        self.messages: list[dict[str, str]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        msg = message_from_bytes(envelope.content if isinstance(envelope.content, bytes) else b"")
        self.messages.append({"to": str(msg["To"]), "subject": str(msg["Subject"])})
        return "250 OK"


async def start_smtp_sink(host: str, port: int) -> tuple[asyncio.Server, MailSink]:
    sink = MailSink()
    server = await asyncio.get_running_loop().create_server(lambda: SMTP(sink, hostname="sink.local"), host, port)
    return server, sink
