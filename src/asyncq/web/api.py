"""The REST API under ``/api`` and Prometheus ``/metrics``, bound to one ``Dashboard`` (no globals).

No ``from __future__ import annotations`` here: FastAPI reads the endpoints' annotations, and the auth
dependencies are local to each router, so the annotations must be evaluated where they are written.
"""

import contextlib
from collections.abc import Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Annotated, Any

import redis.exceptions
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from asyncq import admin, stats
from asyncq.broker import redact
from asyncq.exceptions import BrokerUnavailable, ConfigurationError, JobNotFound
from asyncq.flow_stats import flow_summary
from asyncq.job import JobStatus
from asyncq.metrics import CONTENT_TYPE, fleet_metrics
from asyncq.web.data import history, list_jobs, overview, periodic
from asyncq.web.models import (
    ActionResult,
    DeadLetterOut,
    DeadLetterPage,
    HistoryPoint,
    JobDetail,
    JobRow,
    Overview,
    PeriodicOut,
    QueueOut,
    WorkerOut,
)

if TYPE_CHECKING:
    from asyncq.web.router import Dashboard


#: what a Redis that is down or unreachable raises, from asyncq's own calls or straight from redis-py
REDIS_DOWN = (BrokerUnavailable, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


def one_line(text: str) -> str:
    return " ".join(text.split())


def redis_down_detail(redis_url: str, exc: BaseException) -> str:
    return one_line(f"Redis unreachable at {redact(redis_url)} ({type(exc).__name__}: {exc}); the dashboard "
                    "answers again once Redis is back")


def redis_down_route(redis_url: str) -> type[APIRoute]:
    """A route class for every endpoint: a Redis that is down is a 503 with a one-line JSON ``detail``, never a
    500 and a traceback. Endpoints that wrap their calls in ``http_errors`` already answer 503; this also catches
    what escapes them (a redis-py error from a read asyncq does not wrap), so no endpoint can forget."""

    class RedisDownRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def guarded(request: Request) -> Response:
                try:
                    return await handler(request)
                except REDIS_DOWN as exc:
                    return JSONResponse({"detail": redis_down_detail(redis_url, exc)}, status_code=503)

            return guarded

    return RedisDownRoute


@contextlib.contextmanager
def http_errors() -> Iterator[None]:
    """asyncq's errors as HTTP answers: 503 Redis down, 400 bad input, 404 unknown id."""
    try:
        yield
    except BrokerUnavailable as exc:
        raise HTTPException(503, one_line(str(exc))) from exc
    except ConfigurationError as exc:
        raise HTTPException(400, str(exc)) from exc
    except JobNotFound as exc:
        raise HTTPException(404, str(exc)) from exc


def _dead_letter(d: admin.DeadLetter) -> DeadLetterOut:
    return DeadLetterOut(
        job_id=d.job_id, task=d.function, queue=d.queue, reason=d.reason, error=d.error, traceback=d.traceback,
        tries=d.tries, recoveries=d.recoveries, failed_at=d.failed_at, worker=d.worker, outcome=d.outcome,
        args=list(d.args), kwargs=d.kwargs, payload_error=d.payload_error,
    )


def api_router(dash: "Dashboard") -> APIRouter:  # noqa: C901 - one small closure per endpoint
    app = dash.app
    router = APIRouter(prefix="/api", tags=["asyncq"], route_class=redis_down_route(app.settings.redis_url))
    Reader = Annotated[str, Depends(dash.guard.require_read)]
    Actor = Annotated[str, Depends(dash.guard.require_action)]

    @router.get("/session", summary="The CSRF token for actions, and who you are")
    async def session(who: Reader) -> dict[str, Any]:
        return {"identity": who, "csrf_token": dash.guard.csrf_token(who), "redis": redact(app.settings.redis_url),
                "csrf_header": "X-CSRF-Token"}

    @router.get("/overview", summary="Queues, workers and dead-letter count in one call (what the page polls)")
    async def get_overview(who: Reader) -> Overview:
        with http_errors():
            return await overview(app, dash.meter)

    @router.get("/queues", summary="Every queue: length, oldest age, rates, in flight, scheduled, paused")
    async def get_queues(who: Reader) -> list[QueueOut]:
        with http_errors():
            return (await overview(app, dash.meter)).queues

    @router.get("/tenants", summary="Per queue with tenants: the top tenants by ready jobs, and limited tasks")
    async def get_tenants(who: Reader, top: Annotated[int, Query(ge=1, le=1000)] = 5) -> list[dict[str, Any]]:
        with http_errors():
            found = [await flow_summary(app, q) for q in await (await app.broker()).queue_names()]
        return [{"queue": f.queue, "tenant_count": len(f.tenants), "limited": f.limited,
                 "tenants": [{"tenant": t, "ready": r, "waiting": w, "weight": f.weights.get(t, 1.0)}
                             for t, r, w in f.top(top)]} for f in found if f.tenants]

    @router.post("/queues/{queue}/pause", summary="Stop workers claiming from a queue (its jobs stay queued)")
    async def pause(queue: str, who: Actor) -> ActionResult:
        with http_errors():
            await (await app.broker()).pause(queue)
        return ActionResult(detail=f"queue {queue} paused")

    @router.post("/queues/{queue}/resume", summary="Let workers claim from a paused queue again")
    async def resume(queue: str, who: Actor) -> ActionResult:
        with http_errors():
            await (await app.broker()).resume(queue)
        return ActionResult(detail=f"queue {queue} resumed")

    @router.get("/workers", summary="Workers with a recent heartbeat (alive, or gone once it expired)")
    async def get_workers(who: Reader) -> list[WorkerOut]:
        with http_errors():
            return (await overview(app, dash.meter)).workers

    @router.get("/jobs", summary="Waiting, running and recently finished jobs, filtered by task, state, queue")
    async def get_jobs(
        who: Reader,
        task: str | None = None,
        state: JobStatus | None = None,
        queue: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> list[JobRow]:
        with http_errors():
            return await list_jobs(app, task=task, state=state, queue=queue, limit=limit)

    @router.get("/jobs/{job_id}", summary="One job: arguments, result or error and traceback, tries, timeline")
    async def get_job(job_id: str, who: Reader) -> JobDetail:
        with http_errors():
            info = await app.job(job_id).info()
        if info.status is JobStatus.not_found:
            raise HTTPException(404, f"no job {job_id}: never enqueued, or its result expired")
        return JobDetail(
            job_id=info.job_id, task=info.function, queue=info.queue, status=info.status.value, tries=info.tries,
            recoveries=info.recoveries,
            enqueued_at=info.enqueued_at, started_at=info.started_at, finished_at=info.finished_at,
            scheduled_for=info.scheduled_for, error=info.error, args=list(info.args), kwargs=info.kwargs or {},
            worker=info.worker, result=info.result, traceback=info.traceback,
            dead_letter_reason=info.dead_letter_reason,
        )

    @router.post("/jobs/{job_id}/abort", summary="Abort (revoke) a job: removed if queued, cancelled if running")
    async def abort(job_id: str, who: Actor) -> ActionResult:
        with http_errors():
            done = await app.job(job_id).abort()
        return ActionResult(ok=done, detail=f"job {job_id} " + ("aborted" if done else "had already finished"))

    @router.get("/dead-letters", summary="Dead letters, newest first")
    async def get_dead_letters(
        who: Reader, queue: str | None = None, limit: Annotated[int, Query(ge=0, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> DeadLetterPage:
        with http_errors():
            items = await admin.list_dead_letters(app, queue=queue, limit=limit, offset=offset)
            total = await admin.count_dead_letters(app, queue)
        return DeadLetterPage(total=total, items=[_dead_letter(d) for d in items])

    @router.post("/dead-letters/retry", summary="Retry every dead letter (of one queue, if given)")
    async def retry_all(who: Actor, queue: str | None = None) -> ActionResult:
        with http_errors():
            s = await admin.retry_all_dead_letters(app, queue=queue)
        return ActionResult(detail=f"retried {s.retried}; {s.job_exists} left (a live job has the id)",
                            count=s.retried)

    @router.post("/dead-letters/{job_id}/retry", summary="Put one dead letter back in its queue (tries reset)")
    async def retry_one(job_id: str, who: Actor) -> ActionResult:
        with http_errors():
            outcome = await admin.retry_dead_letter(app, job_id)
        if outcome is admin.RetryOutcome.job_exists:
            return ActionResult(ok=False, detail=f"a live job {job_id} exists; the dead letter was left")
        return ActionResult(detail=f"{job_id} is back in its queue", count=1)

    @router.delete("/dead-letters/{job_id}", summary="Delete one dead letter for good")
    async def purge_one(job_id: str, who: Actor) -> ActionResult:
        with http_errors():
            n = await admin.purge_dead_letters(app, [job_id])
        if not n:
            raise HTTPException(404, f"no dead letter {job_id}")
        return ActionResult(detail=f"{job_id} purged", count=n)

    @router.delete("/dead-letters", summary="Delete every dead letter (of one queue, if given) for good")
    async def purge_all(who: Actor, queue: str | None = None) -> ActionResult:
        with http_errors():
            n = await admin.purge_dead_letters(app, queue=queue)
        return ActionResult(detail=f"purged {n} dead letter(s)", count=n)

    @router.get("/periodic", summary="Periodic tasks of the App: schedule, next run, last run and its status")
    async def get_periodic(who: Reader) -> list[PeriodicOut]:
        with http_errors():
            return await periodic(app)

    @router.get("/history", summary="Per queue and minute: jobs by outcome and queue-wait p50/p95/p99 (s)")
    async def get_history(
        who: Reader, queue: str | None = None, minutes: Annotated[int, Query(ge=1, le=120)] = 60
    ) -> dict[str, list[HistoryPoint]]:
        with http_errors():
            return await history(app, [queue] if queue else None, minutes)

    return router


def metrics_router(dash: "Dashboard") -> APIRouter:
    router = APIRouter(tags=["asyncq"], route_class=redis_down_route(dash.app.settings.redis_url))

    @router.get("/metrics", summary="Prometheus metrics of the whole fleet (from Redis)",
                response_class=Response, responses={200: {"content": {"text/plain": {}}}})
    async def get_metrics(who: Annotated[str, Depends(dash.guard.require_read)]) -> Response:
        with http_errors():
            queue_stats = await admin.queue_stats(dash.app)
            workers = await admin.list_workers(dash.app)
            totals = await stats.totals(await dash.app.broker(), [q.queue for q in queue_stats])
            flows = [await flow_summary(dash.app, q.queue) for q in queue_stats]
        return Response(fleet_metrics(totals, queue_stats, workers, flows), media_type=CONTENT_TYPE)

    return router
