"""``asyncq check``: a health probe for Kubernetes (liveness/readiness ``exec``), systemd and monitoring scripts.

It answers with its exit code and one line: 0 and ``ok: ...`` when Redis answers and every queue that must be
served has a live worker; 1 and ``error: ...`` naming what is wrong otherwise (2 for bad input). "Live" is the
heartbeat the workers write to Redis every few seconds (``asyncq.admin.list_workers``), so the probe needs no
access to the worker processes themselves and works from any pod or host. A worker that reported itself
wedged or stopping does not count: it is alive but takes no jobs.

Which queues: ``--queues`` if given, else those of ``--app`` (its default queue and every queue its tasks
use, what a worker of that App serves by default), else none: then only Redis is checked.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from asyncq import admin
from asyncq.app import App
from asyncq.broker import redact
from asyncq.cli._common import AppPath, Namespace, cli, fail, make_app, out, run
from asyncq.exceptions import BrokerUnavailable
from asyncq.keys import check_queue_name
from asyncq.worker.lifecycle import default_queues


def missing_queues(queues: tuple[str, ...], workers: list[admin.WorkerInfo]) -> list[str]:
    """The queues no serving worker lists in its heartbeat."""
    served = {q for w in workers if w.serving for q in w.queues}
    return [q for q in queues if q not in served]


async def probe(application: App, queues: tuple[str, ...], timeout: float) -> str:
    """One line for a healthy setup; raises BrokerUnavailable or ``typer.Exit`` (via ``fail``) otherwise."""
    where = redact(application.settings.redis_url)
    async with application:
        try:
            await asyncio.wait_for(application.ping(), timeout)
        except TimeoutError:
            raise BrokerUnavailable(f"Redis at {where} did not answer PING within {timeout:g} s") from None
        if not queues:
            return f"ok: Redis at {where} answers"
        workers = await asyncio.wait_for(admin.list_workers(application), timeout)
    missing = missing_queues(queues, workers)
    if missing:
        live = sorted({q for w in workers if w.serving for q in w.queues})
        fail(f"no live worker serves queue(s) {', '.join(missing)} on {where} (live workers serve: "
             f"{', '.join(live) or 'nothing'}); start one: asyncq worker MODULE:APP --queues {','.join(missing)}")
    counts = {q: sum(1 for w in workers if w.serving and q in w.queues) for q in queues}
    return f"ok: Redis at {where} answers; " + ", ".join(f"{q}: {n} worker(s)" for q, n in counts.items())


@cli.command()
def check(
    app_path: AppPath = None,
    queues: Annotated[
        str | None,
        typer.Option(help="Queues that must have a live worker, comma-separated (default: the --app's queues; "
                     "without --app, only Redis is checked)."),
    ] = None,
    redis_url: Annotated[
        str | None,
        typer.Option("--redis-url", "--redis", help="Redis URL (default: $ASYNCQ_REDIS_URL, or the --app's own).",
                     show_default=False),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for Redis.")] = 5.0,
    namespace: Namespace = None,
) -> None:
    """Exit 0 if Redis answers and every queue has a live worker, else 1 with one line saying what is wrong."""
    application = make_app(redis_url, app_path, namespace)
    if queues is not None:
        wanted = tuple(q.strip() for q in queues.split(",") if q.strip())
        try:
            for q in wanted:
                check_queue_name(q)
        except ValueError as exc:
            fail(str(exc), 2)
    else:
        wanted = default_queues(application) if app_path is not None else ()
    out.print(run(probe(application, wanted, timeout)), markup=False, soft_wrap=True)
