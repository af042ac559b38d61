"""The operator's commands: ``asyncq pause QUEUE``, ``resume QUEUE``, ``purge QUEUE``, ``abort JOB_ID`` (what
``celery control``/``celery purge``/``celery revoke`` do for Celery), thin shells over ``Broker.pause``/
``resume``, ``asyncq.admin.purge_queue`` and ``Job.abort``."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from asyncq import admin, keys
from asyncq.app import App
from asyncq.cli._common import AppPath, Namespace, RedisUrl, cli, fail, make_app, out, run
from asyncq.exceptions import ConfigurationError
from asyncq.job import JobStatus

QueueArg = Annotated[str, typer.Argument(metavar="QUEUE", help="The queue's name, as `asyncq queues` lists it.")]


def _queue(name: str) -> str:
    try:
        return keys.check_queue_name(name)
    except ConfigurationError as exc:
        fail(str(exc), 2)


def _set_paused(queue: str, app_path: str | None, redis_url: str | None, namespace: str | None,
                paused: bool) -> str:
    name = _queue(queue)
    application = make_app(redis_url, app_path, namespace)

    async def go() -> None:
        async with application:
            broker = await application.broker()
            await (broker.pause(name) if paused else broker.resume(name))

    run(go())
    return name


@cli.command()
def pause(
    queue: QueueArg, app_path: AppPath = None, redis_url: RedisUrl = None, namespace: Namespace = None
) -> None:
    """Stop every worker claiming from QUEUE; its jobs stay queued and running ones finish."""
    name = _set_paused(queue, app_path, redis_url, namespace, paused=True)
    out.print(f"queue {name} paused: no worker claims from it until `asyncq resume {name}`", markup=False)


@cli.command()
def resume(
    queue: QueueArg, app_path: AppPath = None, redis_url: RedisUrl = None, namespace: Namespace = None
) -> None:
    """Let workers claim from a paused QUEUE again (they are woken at once)."""
    name = _set_paused(queue, app_path, redis_url, namespace, paused=False)
    out.print(f"queue {name} resumed", markup=False)


@cli.command()
def purge(
    queue: QueueArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    app_path: AppPath = None,
    redis_url: RedisUrl = None,
    namespace: Namespace = None,
) -> None:
    """Delete QUEUE's ready jobs for good: due now and held by no worker. Delayed jobs and running jobs stay.
    Asks first unless --yes (required when stdin is not a terminal)."""
    name = _queue(queue)
    application = make_app(redis_url, app_path, namespace)
    if not yes:
        if not sys.stdin.isatty():
            fail(f"refusing to purge queue {name} without confirmation: stdin is not a terminal; add --yes", 2)
        (stats,) = run(_stats(application, name))
        if not typer.confirm(f"Delete the {stats.length} ready job(s) of queue {name} for good?", default=False):
            fail("nothing purged", 1)

    async def go() -> int:
        async with application:
            return await admin.purge_queue(application, name)

    out.print(f"purged {run(go())} ready job(s) from queue {name}", markup=False)


async def _stats(application: App, name: str) -> list[admin.QueueStats]:
    async with application:
        return [s for s in await admin.queue_stats(application, [name]) if s.queue == name]


@cli.command()
def abort(
    job_id: Annotated[str, typer.Argument(help="The job's id.")],
    app_path: AppPath = None,
    redis_url: RedisUrl = None,
    namespace: Namespace = None,
) -> None:
    """Abort (revoke) a job: a queued or delayed job is removed at once, a running one is cancelled by its
    worker; either way it ends as aborted."""
    application = make_app(redis_url, app_path, namespace)

    async def go() -> tuple[JobStatus, bool]:
        async with application:
            handle = application.job(job_id)
            before = await handle.status()
            done = await handle.abort() if before is not JobStatus.not_found else False
            return before, done

    before, done = run(go())
    if before is JobStatus.not_found:
        fail(f"no job {job_id}: never enqueued, or its result expired; check the id and --redis-url")
    if not done:
        out.print(f"job {job_id} had already finished ({before.value}); nothing to abort", markup=False)
    elif before is JobStatus.in_progress:
        out.print(f"job {job_id} is running: its worker cancels it now; it ends as aborted", markup=False)
    else:
        out.print(f"job {job_id} aborted: removed before it ran", markup=False)
