"""The top-level commands: worker, enqueue, job, queues, demo."""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from asyncq import admin
from asyncq._version import __version__
from asyncq.app import App
from asyncq.broker import redact
from asyncq.cli import tenant
from asyncq.cli._common import (
    STATUS_STYLE,
    AppPath,
    AsJson,
    Namespace,
    RedisUrl,
    cli,
    django_tasks_configured,
    dumps,
    err,
    fail,
    fmt_age,
    fmt_compact,
    fmt_when,
    guarded,
    make_app,
    make_target,
    out,
    parse_json,
    run,
)
from asyncq.exceptions import (
    BrokerUnavailable,
    ConfigurationError,
    JobError,
    JobNotFound,
    JobTimeout,
)
from asyncq.job import JobInfo, JobStatus
from asyncq.logs import LOG_FORMATS
from asyncq.logs import configure as configure_logging
from asyncq.settings import WorkerSettings
from asyncq.task import JobSpec
from asyncq.worker.lifecycle import default_queues
from asyncq.worker.process import serve
from asyncq.worker.sources import JobSource
from asyncq.worker.supervisor import CHILD_ENV, parse_processes, supervise_worker_command


# --- commands ----------------------------------------------------------------------------------------------
def _version(value: bool) -> None:
    if value:
        out.print(f"asyncq {__version__}")
        raise typer.Exit()


@cli.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """asyncq: an asyncio task queue on Redis."""


@cli.command()
def worker(
    app_path: Annotated[
        str | None,
        typer.Argument(metavar="[MODULE:APP]", help="Your App: module.path:app (or module). Leave it out with "
                       "--django."),
    ] = None,
    queues: Annotated[
        str | None,
        typer.Option(
            help="Queues to serve, in priority order: high,default (default: every queue the App's "
            "tasks use, the App's default queue first)."
        ),
    ] = None,
    concurrency: Annotated[int | None, typer.Option(help="Jobs in flight at once (default 100).")] = None,
    lease: Annotated[float | None, typer.Option(help="Job lease in seconds (default 10).")] = None,
    burst: Annotated[bool, typer.Option("--burst", help="Stop once the queues are empty.")] = False,
    threads: Annotated[int | None, typer.Option(help="Threads for plain def tasks (default 40).")] = None,
    shutdown_grace: Annotated[
        float | None, typer.Option(help="Seconds running jobs get to finish on SIGTERM (default 30).")
    ] = None,
    unknown_task_wait: Annotated[
        float | None,
        typer.Option(help="Seconds a job whose task this worker does not know is put back for a worker that "
                     "knows it, before it is dead-lettered (default 600)."),
    ] = None,
    processes: Annotated[
        str, typer.Option(metavar="N|auto",
                          help="Worker processes: N, or auto (one per CPU). A supervisor restarts one that dies.")
    ] = "1",
    reload: Annotated[
        bool, typer.Option("--reload", help="For development: restart the worker(s) when a .py file under the "
                           "current folder changes (needs watchfiles: pip install 'asyncq\\[reload]').")
    ] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    log_format: Annotated[
        str, typer.Option(help="text, or json: one JSON object per line, for log shippers.")
    ] = "text",
    celery_queues: Annotated[
        str | None,
        typer.Option(
            help="Also consume these Celery queues (kombu lists on the same Redis): celery,emails. Needs an "
            "asyncq.compat.Celery app; results go to Celery's result backend."
        ),
    ] = None,
    django: Annotated[
        bool,
        typer.Option("--django", help="Serve the django.tasks of DJANGO_SETTINGS_MODULE's asyncq task backend "
                     "(the default when MODULE:APP is left out and DJANGO_SETTINGS_MODULE is set)."),
    ] = False,
    redis_url: RedisUrl = None,
    namespace: Namespace = None,
    celery_app: Annotated[
        str | None,
        typer.Option("-A", "--app", help="A Celery project, as celery -A takes it (proj, proj.celery, "
                     "proj.celery:app); every `import celery` in it gets asyncq.compat (install_as_celery)."),
    ] = None,
) -> None:
    """Run a worker for your App until SIGTERM/SIGINT (or, with --burst, until the queues are empty).

    Options left out come from ASYNCQ_WORKER_* environment variables, else their defaults.
    """
    level = logging.getLevelNamesMapping().get(log_level.upper())
    if level is None:
        fail(f"--log-level {log_level!r} is not one of debug, info, warning, error", 2)
    if log_format not in LOG_FORMATS:
        fail(f"--log-format {log_format!r} is not one of {', '.join(LOG_FORMATS)}", 2)
    configure_logging(level, log_format)
    supervise_if_asked(processes, reload)
    application, found, served, app_path = pick_app(app_path, celery_app, django, redis_url, namespace)
    given: dict[str, Any] = {
        "queues": queues,
        "concurrency": concurrency,
        "lease": lease,
        "threads": threads,
        "shutdown_grace": shutdown_grace,
        "unknown_task_wait": unknown_task_wait,
        "burst": True if burst else None,
    }
    try:
        settings = WorkerSettings.from_env(**{k: v for k, v in given.items() if v is not None})
    except (ConfigurationError, TypeError, ValueError) as exc:
        fail(str(exc), 2)
    if served and not settings.queues:  # --django: the backend's QUEUES, even those no task names yet
        settings = dataclasses.replace(settings, queues=served)
    sources = celery_sources(found, app_path, celery_queues)
    served = settings.queues or default_queues(application)
    for source in sources:
        served = (*served, *(f"celery:{q}" for q in source.queues))
    if log_format == "text":  # with json, stderr carries JSON lines only (the worker's banner says the same)
        err.print(
            f"asyncq worker: {app_path} on {redact(application.settings.redis_url)}, queues {','.join(served)}",
            style="dim", markup=False, soft_wrap=True,
        )
    guarded(lambda: serve(application, settings, sources=sources))


def supervise_if_asked(processes: str, reload: bool) -> None:
    """``--processes N`` (N > 1) or ``--reload``: this process becomes the supervisor of N worker processes
    (worker/supervisor.py) and exits with its code; otherwise (and in those children) it returns."""
    try:
        n_processes = parse_processes(processes)
    except ConfigurationError as exc:
        fail(str(exc), 2)
    if (n_processes > 1 or reload) and CHILD_ENV not in os.environ:
        raise typer.Exit(guarded(lambda: supervise_worker_command(n_processes, reload)))


def pick_app(app_path: str | None, celery_app: str | None, django: bool,
             redis_url: str | None, namespace: str | None = None) -> tuple[App, Any, tuple[str, ...], str]:
    """The worker's App, the object it was found as, the django.tasks queues to serve (if any), and its name:
    ``-A proj`` (Celery's lookup, after install_as_celery), MODULE:APP, --django, or both."""
    served: tuple[str, ...] = ()
    if celery_app is not None:  # Celery's -A: the alias first, then Celery's lookup rules
        if app_path is not None:
            fail(f"give the app once: {app_path} or -A {celery_app}", 2)
        application, found = make_target(redis_url, celery_app, celery=True, namespace=namespace)
        app_path = celery_app
        if django or django_tasks_configured():  # the project's django.tasks on the same worker
            served = django_target(redis_url, application)[2]
    elif django and app_path is not None:  # MODULE:APP --django: the App's tasks and the project's django.tasks
        application, found = make_target(redis_url, app_path, namespace=namespace)
        served = django_target(redis_url, application)[2]
    elif django or (app_path is None and os.environ.get("DJANGO_SETTINGS_MODULE")):
        application, found, served, app_path = django_target(redis_url)
        if namespace is not None:  # --namespace wins over the backend's OPTIONS
            try:
                application.settings = dataclasses.replace(application.settings, namespace=namespace)
            except ConfigurationError as exc:
                fail(str(exc), 2)
    elif app_path is None:
        fail("give your App as MODULE:APP, or --django (with DJANGO_SETTINGS_MODULE) for django.tasks", 2)
    else:
        application, found = make_target(redis_url, app_path, namespace=namespace)
    return application, found, served, app_path


def django_target(redis_url: str | None, add_to: App | None = None) -> tuple[App, Any, tuple[str, ...], str]:
    """``asyncq worker --django``: the App serving the project's django.tasks (``add_to`` with them added, for
    MODULE:APP --django), and the queues to serve (``add_to``'s own, then the backend's QUEUES)."""
    try:
        from asyncq.integrations.django_worker import add_django_tasks, django_app

        if add_to is None:
            application, served = django_app(redis_url=redis_url)
        else:
            application, theirs = add_to, add_django_tasks(add_to)  # imports the apps' tasks modules too
            served = tuple(dict.fromkeys((*default_queues(add_to), *theirs)))
    except ConfigurationError as exc:
        fail(str(exc), 2)
    return application, application, served, f"django:{os.environ.get('DJANGO_SETTINGS_MODULE', '?')}"


def celery_sources(found: Any, app_path: str, celery_queues: str | None) -> list[JobSource]:
    """The Celery-queue consumer for ``--celery-queues`` (or ASYNCQ_WORKER_CELERY_QUEUES), if asked for: the
    worker's one extra job source. The Celery layer is imported only then."""
    given: dict[str, Any] = {"celery_queues": celery_queues} if celery_queues is not None else {}
    if not (celery_queues or os.environ.get("ASYNCQ_WORKER_CELERY_QUEUES", "").strip(", ")):
        return []
    from asyncq.compat.app import Celery
    from asyncq.compat.celery_consumer import CeleryConsumer, ConsumerSettings

    try:
        consumer_settings = ConsumerSettings.from_env(None, **given)
    except (ConfigurationError, TypeError, ValueError) as exc:
        fail(str(exc), 2)
    if not consumer_settings.celery_queues:
        return []
    if not isinstance(found, Celery):
        fail(f"--celery-queues needs an asyncq.compat.Celery app; {app_path} is a plain asyncq App", 2)
    try:
        return [CeleryConsumer(found, consumer_settings)]
    except ConfigurationError as exc:  # e.g. the bridge on Redis Cluster (CELERY_BRIDGE_ON_CLUSTER)
        fail(str(exc), 2)




@cli.command()
def enqueue(
    task_name: Annotated[str, typer.Argument(help="The task's registered name, e.g. myproject.tasks.send_email.")],
    args_json: Annotated[
        str | None, typer.Argument(metavar="[ARGS_JSON]", help="Positional args, a JSON list.")
    ] = None,
    kwargs_json: Annotated[str | None, typer.Option("--kwargs", help="Keyword args, a JSON object.")] = None,
    queue: Annotated[str | None, typer.Option(help="Queue (default: the task's, else 'default').")] = None,
    priority: Annotated[int | None, typer.Option(help="0 (lowest) to 9 (highest), default 5.")] = None,
    delay: Annotated[float | None, typer.Option(help="Run no sooner than this many seconds from now.")] = None,
    job_id: Annotated[str | None, typer.Option(help="Your own job id (a duplicate id enqueues nothing).")] = None,
    app_path: AppPath = None,
    wait: Annotated[float | None, typer.Option(help="Wait up to this many seconds and print the result.")] = None,
    redis_url: RedisUrl = None,
    namespace: Namespace = None,
) -> None:
    """Enqueue a job by task name and print its id (the task need not be importable here)."""
    args = parse_json(args_json, list, "ARGS_JSON", """'[1, "two"]'""") or []
    kwargs = parse_json(kwargs_json, dict, "--kwargs", """'{"user_id": 42}'""") or {}
    options = {"queue": queue, "priority": priority, "delay": delay, "job_id": job_id}
    try:
        spec = JobSpec(task_name, tuple(args), kwargs).set(**{k: v for k, v in options.items() if v is not None})
    except ConfigurationError as exc:
        fail(str(exc), 2)
    application = make_app(redis_url, app_path, namespace)

    async def go() -> None:
        async with application:
            (job,) = await application.enqueue_many([spec])
            print(job.job_id, flush=True)
            if not job.created:
                err.print(
                    f"note: a job with id {job.job_id} exists already; nothing new was enqueued",
                    style="yellow",
                    markup=False,
                    soft_wrap=True,
                )
            await _task_note(application, task_name)
            if wait is not None:
                print(dumps(await _result(job.job_id, application, wait)))

    run(go())


async def _task_note(application: App, task_name: str, job_id: str | None = None) -> None:
    """A plain note on stderr when live workers lack ``task_name`` (a typo, or a worker without that code)."""
    check = admin.check_task_name(task_name, await admin.list_workers(application))
    problem = check.problem()
    if problem is not None:
        where = f"job {job_id}: " if job_id else "note: "
        err.print(where + problem, style="yellow", markup=False, soft_wrap=True)
    elif not check.workers and job_id is None:
        err.print(f"note: no worker is alive; the job waits until a worker that has {task_name!r} starts",
                  style="yellow", markup=False, soft_wrap=True)


async def _result(job_id: str, application: App, wait: float) -> Any:
    try:
        return await application.job(job_id).result(timeout=wait)
    except JobTimeout:
        fail(f"job {job_id} did not finish within {wait:g} s; `asyncq job {job_id} --wait SECONDS` waits again")
    except (BrokerUnavailable, JobNotFound):
        raise
    except JobError as exc:
        fail(f"{exc}; `asyncq job {job_id}` shows the details")
    except Exception as exc:  # the task's own exception, rebuilt
        fail(f"job {job_id} failed: {type(exc).__name__}: {exc}; `asyncq job {job_id}` shows the traceback")


@cli.command()
def job(
    job_id: Annotated[str, typer.Argument(help="The job id that enqueue printed.")],
    wait: Annotated[float | None, typer.Option(help="First wait up to this many seconds for it to finish.")] = None,
    as_json: AsJson = False,
    app_path: AppPath = None,
    redis_url: RedisUrl = None,
    namespace: Namespace = None,
) -> None:
    """Show a job: status, arguments, tries, times, worker, and its result or error with traceback."""
    application = make_app(redis_url, app_path, namespace)

    async def go() -> JobInfo:
        async with application:
            handle = application.job(job_id)
            if wait is not None:
                try:
                    await handle.result(timeout=wait)
                except (BrokerUnavailable, JobNotFound):
                    raise
                except Exception:  # timed out, or failed: the info below says which
                    pass
            info = await handle.info()
            if info.status in (JobStatus.queued, JobStatus.deferred) and info.function and not as_json:
                await _task_note(application, info.function, job_id)
            return info

    info = run(go())
    if info.status is JobStatus.not_found:
        fail(
            f"no job {job_id}: never enqueued, or its result expired (keep_result); check the id, "
            f"--redis-url ({redact(application.settings.redis_url)}) and --namespace "
            f"({application.settings.namespace or 'none'})"
        )
    if as_json:
        print(dumps(info))
        return
    _print_job(info)


def _print_job(info: JobInfo) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("job", info.job_id)
    grid.add_row("status", Text(info.status.value, style=STATUS_STYLE.get(info.status, "")))
    rows = [
        ("task", info.function or "-"),
        ("args", fmt_compact(list(info.args))),
        ("kwargs", fmt_compact(info.kwargs or {})),
        ("queue", info.queue or "-"),
        ("tries", str(info.tries)),
        ("worker lost", f"{info.recoveries} time(s): recovered, not counted as tries" if info.recoveries else "0"),
        ("enqueued", fmt_when(info.enqueued_at)),
        ("scheduled", fmt_when(info.scheduled_for)),
        ("started", fmt_when(info.started_at)),
        ("finished", fmt_when(info.finished_at)),
        ("worker", info.worker or "-"),
    ]
    for name, value in rows:
        grid.add_row(name, Text(value))
    if info.status is JobStatus.complete:
        grid.add_row("result", Text(dumps(info.result)))
    if info.error:
        grid.add_row("error", Text(info.error, style="red"))
    if info.dead_letter_reason:
        grid.add_row("dead letter", Text(info.dead_letter_reason, style="red"))
    out.print(grid)
    if info.traceback:
        out.print(Text(info.traceback.rstrip(), style="dim"), soft_wrap=True)


@cli.command()
def queues(
    as_json: AsJson = False, app_path: AppPath = None, redis_url: RedisUrl = None, namespace: Namespace = None
) -> None:
    """Show every queue: ready, oldest ready age, in flight, scheduled, dead letters; and the live workers."""
    application = make_app(redis_url, app_path, namespace)

    async def go() -> tuple[list[admin.QueueStats], list[admin.WorkerInfo], list[admin.QueueService]]:
        async with application:
            stats, workers = await admin.queue_stats(application), await admin.list_workers(application)
            return stats, workers, await admin.queue_service(application, stats, workers)

    stats, workers, service = run(go())
    flows = run(_flows(application, [s.queue for s in stats]))
    alive = [w for w in workers if w.alive]
    if as_json:
        print(
            dumps({"queues": [{**dataclasses.asdict(s), **dataclasses.asdict(v)} for s, v in zip(stats, service,
                                                                                                  strict=True)],
                   "workers": [{**dataclasses.asdict(w), "serving": w.serving} for w in alive]})
        )
        return
    table = Table("queue", "length", "oldest age", "in flight", "scheduled", "dead letters", "workers")
    for s, v in zip(stats, service, strict=True):
        table.add_row(
            Text(s.queue + (" (paused)" if v.paused else ""), style="yellow" if v.paused else ""),
            str(s.length),
            fmt_age(s.oldest_age),
            str(s.in_flight),
            str(s.scheduled),
            Text(str(s.dead_letters), style="red" if s.dead_letters else ""),
            Text("NONE" if v.unserved else str(v.serving_workers), style="bold red" if v.unserved else ""),
        )
    out.print(table if stats else Text("no queues yet: nothing was ever enqueued to this Redis", style="dim"))
    for f in flows:  # fair share: the tenants with most ready jobs, and jobs held by a task's limit
        top = ", ".join(f"{t} {r} ready" for t, r, _ in f.top(3))
        out.print(f"queue {f.queue}: {len(f.tenants)} tenant(s) with queued jobs; most ready: {top}; "
                  f"`asyncq tenant list {f.queue}`", markup=False, soft_wrap=True)
        tenant.print_limited(f)
    for v in service:
        if v.unserved:
            out.print(Text(f"queue {v.queue} has ready jobs and no live worker serves it: start one with "
                           f"`asyncq worker MODULE:APP --queues {v.queue}`", style="red"), soft_wrap=True)
        if v.paused:
            out.print(Text(f"queue {v.queue} is paused: `asyncq resume {v.queue}`", style="yellow"), soft_wrap=True)
    not_serving = sum(1 for w in alive if not w.serving)
    out.print(f"workers alive: {len(alive)}" + (f" ({not_serving} not serving: see state)" if not_serving else ""),
              markup=False)
    for w in alive:
        state = w.state or "serving"
        held = f"  holding {w.holding} outcome(s)" if w.holding else ""
        out.print(
            Text(f"  {w.worker_id}  state={state}  queues={','.join(w.queues)}  running={w.running}/{w.concurrency}"
                 f"  last beat {fmt_when(w.last_beat)}{held}", style="" if w.serving else "red"),
            soft_wrap=True,
        )
        if state == "wedged":
            out.print("    its claim loop stopped making progress: restart this worker", style="red", markup=False)


async def _flows(application: App, queues: list[str]) -> list[tenant.FlowSummary]:
    async with application:
        found = [await tenant.flow_summary(application, q) for q in queues]
    return [f for f in found if f.tenants]


# --- dead letters --------------------------------------------------------------------------------------------


@cli.command()
def demo() -> None:
    """Run a short demo: a private Redis (unless ASYNCQ_REDIS_URL is set), a worker, a few jobs."""
    from asyncq.demo import main as demo_main  # imported late: it defines an App and tasks

    raise typer.Exit(demo_main())
