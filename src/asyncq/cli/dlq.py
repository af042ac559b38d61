"""``asyncq dlq``: list, retry and purge dead letters."""

from __future__ import annotations

import dataclasses
import sys
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.text import Text

from asyncq import admin
from asyncq.app import App
from asyncq.cli._common import (
    AppPath,
    AsJson,
    Namespace,
    RedisUrl,
    dlq_cli,
    dumps,
    err,
    fail,
    fmt_compact,
    fmt_when,
    make_app,
    out,
    run,
)
from asyncq.exceptions import (
    JobNotFound,
)


@dlq_cli.command("list")
def dlq_list(
    queue: Annotated[str | None, typer.Option(help="Only this queue's dead letters.")] = None,
    limit: Annotated[int, typer.Option(min=0, help="Show at most this many, newest first.")] = 100,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many first.")] = 0,
    as_json: AsJson = False,
    app_path: AppPath = None,
    redis_url: RedisUrl = None,
    namespace: Namespace = None,
) -> None:
    """List dead letters, newest first, with why they failed and their arguments."""
    application = make_app(redis_url, app_path, namespace)

    async def go() -> list[admin.DeadLetter]:
        async with application:
            return await admin.list_dead_letters(application, queue=queue, limit=limit, offset=offset)

    letters = run(go())
    if as_json:
        print(dumps([{k: v for k, v in dataclasses.asdict(d).items() if k != "meta"} for d in letters]))
        return
    if not letters:
        out.print("no dead letters", style="dim")
        return
    for d in letters:  # blocks, not a table: the full id must stay copyable in a narrow terminal
        lost = f" worker-lost={d.recoveries}" if d.recoveries else ""
        out.print(
            Text.assemble(
                (d.job_id, "bold"),
                f"  {d.function or '-'}  queue={d.queue}  tries={d.tries}{lost}  {fmt_when(d.failed_at)}",
            ),
            soft_wrap=True,
        )
        out.print(Text(f"  {d.reason or '-'}: {d.error or '-'}", style="red"), soft_wrap=True)
        call = d.payload_error or f"args {fmt_compact(list(d.args))}  kwargs {fmt_compact(d.kwargs)}"
        out.print(Text(f"  {call}", style="dim"), soft_wrap=True)


def _select(job_ids: list[str] | None, all_: bool, queue: str | None, verb: str) -> None:
    if job_ids and all_:
        fail(f"give either job ids or --all, not both: `asyncq dlq {verb} ID...` or `asyncq dlq {verb} --all`", 2)
    if not job_ids and not all_:
        fail(f"nothing to {verb}: give job ids, or --all (with --queue Q for one queue)", 2)
    if queue is not None and not all_:
        fail("--queue goes with --all; job ids name their dead letters already", 2)


@dlq_cli.command("retry")
def dlq_retry(
    job_ids: Annotated[list[str] | None, typer.Argument(metavar="[JOB_ID]...", show_default=False)] = None,
    all_: Annotated[bool, typer.Option("--all", help="Retry every dead letter (of --queue, if given).")] = False,
    queue: Annotated[str | None, typer.Option(help="With --all: only this queue's.")] = None,
    app_path: AppPath = None,
    redis_url: RedisUrl = None,
    namespace: Namespace = None,
) -> None:
    """Put dead letters back in their queue as fresh jobs (tries reset)."""
    _select(job_ids, all_, queue, "retry")
    application = make_app(redis_url, app_path, namespace)
    if all_:
        summary = run(_retry_all(application, queue))
        out.print(f"retried {summary.retried} dead letter(s)", markup=False)
        if summary.job_exists:
            err.print(
                f"{summary.job_exists} left in the store: a live job with the same id exists",
                style="yellow",
                markup=False,
            )
        return
    missing = run(_retry_ids(application, job_ids or []))
    if missing:
        fail(f"no dead letter with id {', '.join(missing)}; `asyncq dlq list` shows the ones there are")


async def _retry_all(application: App, queue: str | None) -> admin.RetrySummary:
    with Progress(
        TextColumn("retrying"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
        disable=not err.is_terminal,
        transient=True,
    ) as bar:
        task = bar.add_task("retry", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        async with application:
            return await admin.retry_all_dead_letters(application, queue=queue, progress=progress)


async def _retry_ids(application: App, job_ids: list[str]) -> list[str]:
    missing = []
    async with application:
        for job_id in job_ids:
            try:
                outcome = await admin.retry_dead_letter(application, job_id)
            except JobNotFound:
                missing.append(job_id)
                continue
            if outcome is admin.RetryOutcome.retried:
                out.print(f"retried {job_id}", markup=False)
            else:
                err.print(
                    f"{job_id}: a live job with this id exists; left in the dead-letter store",
                    style="yellow",
                    markup=False,
                    soft_wrap=True,
                )
    return missing


@dlq_cli.command("purge")
def dlq_purge(
    job_ids: Annotated[list[str] | None, typer.Argument(metavar="[JOB_ID]...", show_default=False)] = None,
    all_: Annotated[bool, typer.Option("--all", help="Purge every dead letter (of --queue, if given).")] = False,
    queue: Annotated[str | None, typer.Option(help="With --all: only this queue's.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    app_path: AppPath = None,
    redis_url: RedisUrl = None,
    namespace: Namespace = None,
) -> None:
    """Delete dead letters for good. Asks first unless --yes (required when stdin is not a terminal)."""
    _select(job_ids, all_, queue, "purge")
    application = make_app(redis_url, app_path, namespace)
    if not yes:
        if not sys.stdin.isatty():
            fail("refusing to purge without confirmation: stdin is not a terminal; add --yes", 2)
        if all_:
            count = run(_count(application, queue))
            what = f"all {count} dead letter(s)" + (f" of queue {queue}" if queue else "")
        else:
            what = f"{len(job_ids or [])} dead letter(s)"
        if not typer.confirm(f"Delete {what} for good?", default=False):
            fail("nothing purged", 1)

    async def go() -> tuple[int, list[str]]:
        async with application:
            if all_:
                return await admin.purge_dead_letters(application, queue=queue), []
            purged, missing = 0, []
            for job_id in job_ids or []:  # one by one, to name the ids that were not there (as retry does)
                n = await admin.purge_dead_letters(application, [job_id])
                purged += n
                if not n:
                    missing.append(job_id)
            return purged, missing

    purged, missing = run(go())
    out.print(f"purged {purged} dead letter(s)", markup=False)
    if missing:
        fail(f"no dead letter with id {', '.join(missing)}; `asyncq dlq list` shows the ones there are")


async def _count(application: App, queue: str | None) -> int:
    async with application:
        return await admin.count_dead_letters(application, queue)
