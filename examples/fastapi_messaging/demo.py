"""Everything in one process, on free local ports: the sinks, a worker, the chat API with the dashboard.
Sends three messages, waits for every delivery (through the retries), prints what arrived, and exits;
``--serve`` keeps it all running so you can watch it in the dashboard.

    python examples/fastapi_messaging/demo.py [--serve]
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from pathlib import Path

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).parent))

from api import api
from sinks import sink_app, start_smtp_sink
from tasks import app

from asyncq import Worker, WorkerSettings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def serve(web: object, port: int) -> uvicorn.Server:
    server = uvicorn.Server(uvicorn.Config(web, host="127.0.0.1", port=port, log_level="warning"))  # type: ignore[arg-type]
    asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    return server


async def main(keep_serving: bool) -> None:
    sink_port, smtp_port, api_port = free_port(), free_port(), free_port()
    os.environ.update(WEBHOOK_URL=f"http://127.0.0.1:{sink_port}/webhook", PUSH_URL=f"http://127.0.0.1:{sink_port}/push",
                      SMTP_HOST="127.0.0.1", SMTP_PORT=str(smtp_port))
    sinks = await serve(sink_app(), sink_port)
    smtp, mailbox = await start_smtp_sink("127.0.0.1", smtp_port)
    web = await serve(api, api_port)
    worker = Worker(app, WorkerSettings(handle_signals=False, concurrency=200, stats_interval=0.5))
    running = asyncio.create_task(worker.main())
    base = f"http://127.0.0.1:{api_port}"
    print(f"chat API at {base}/docs, dashboard at {base}/asyncq/", flush=True)

    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        sent = []
        for sender, to, text in [("ada", "bob", "hi Bob"), ("bob", "ada", "hi Ada"), ("ada", "cy", "lunch?")]:
            r = await client.post("/messages", json={"sender": sender, "to_user": to, "text": text})
            r.raise_for_status()
            sent.append(r.json())
        print(f"POST /messages x{len(sent)}: 202, each answered at once with its job ids", flush=True)
        for ids in sent:
            for kind, job_id in ids.items():
                result = await app.job(job_id).result(timeout=30)
                status = (await client.get(f"/jobs/{job_id}")).json()
                print(f"  {kind:8} {job_id}  {status['status']} after {status['tries']} tries: {result}", flush=True)
        r = await client.post("/messages/wait", json={"sender": "cy", "to_user": "ada", "text": "sure"})
        print(f"POST /messages/wait: {r.json()['result']}", flush=True)
        received = (await client.get(f"http://127.0.0.1:{sink_port}/received")).json()
    print(f"webhook receiver got {len(received['webhook'])}, push endpoint got {len(received['push'])} "
          f"(after {received['attempts']} attempts: the flaky ones were retried), SMTP sink got "
          f"{len(mailbox.messages)} e-mails: {', '.join(m['to'] for m in mailbox.messages)}", flush=True)
    if keep_serving:
        print("serving; Ctrl-C stops", flush=True)
        await asyncio.Event().wait()
    worker.stop()
    await running
    web.should_exit = sinks.should_exit = True
    smtp.close()
    await asyncio.sleep(0.2)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main("--serve" in sys.argv))
