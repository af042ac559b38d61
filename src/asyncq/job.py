"""The handle a producer holds on one job: its status, its details, its result, and abort.

A Job is only an id plus the App to ask; it can be rebuilt anywhere from the id (``app.job(id)``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from asyncq import keys
from asyncq.broker import REDIS_DOWN, now_ms
from asyncq.codec import decode_payload, encode_error, is_error, ms_to_datetime, rebuild_exception
from asyncq.dead_letter import DeadLetter
from asyncq.exceptions import (
    DeserializationError,
    JobAborted,
    JobDeadLettered,
    JobNotFound,
    JobTimeout,
)

if TYPE_CHECKING:
    from asyncq.app import App


class JobStatus(enum.StrEnum):
    """Where a job is. The first five mean what arq's statuses of the same name mean."""

    deferred = "deferred"  #: queued, run-at time not reached yet
    queued = "queued"  #: waiting for a worker
    in_progress = "in_progress"  #: a worker holds its lease
    complete = "complete"  #: finished and returned a value
    not_found = "not_found"  #: never enqueued, or its result expired
    failed = "failed"  #: raised on its last try (also in the dead-letter store)
    aborted = "aborted"  #: aborted before or while it ran
    dead = "dead"  #: could not run at all (unknown task, undecodable payload); in the dead-letter store

    @property
    def finished(self) -> bool:
        return self in (JobStatus.complete, JobStatus.failed, JobStatus.aborted, JobStatus.dead)


_OUTCOME_STATUS = {
    "success": JobStatus.complete,
    "failed": JobStatus.failed,
    "aborted": JobStatus.aborted,
    "dead": JobStatus.dead,
}


_dt = ms_to_datetime


def _count(raw: Any) -> int:
    """A counter read from Redis or a result; anything that is not a whole number reads as 0."""
    try:
        return max(0, int(raw or 0))
    except (TypeError, ValueError):
        return 0


@dataclass(frozen=True, slots=True)
class JobInfo:
    """Everything known about a job right now. Times are timezone-aware UTC datetimes."""

    job_id: str
    status: JobStatus
    function: str | None = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] | None = None
    queue: str | None = None
    #: the task's own tries (exceptions, timeouts count; a lost worker does not)
    tries: int = 0
    #: times the job was recovered after its worker was lost (killed, or cut off from Redis past its lease)
    recoveries: int = 0
    enqueued_at: datetime | None = None
    scheduled_for: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    worker: str | None = None
    result: Any = None
    error: str | None = None
    traceback: str | None = None
    dead_letter_reason: str | None = None


class Job:
    """A handle on one job. Cheap to create; every method asks Redis."""

    __slots__ = ("app", "created", "job_id", "lane", "priority", "queue")

    def __init__(
        self,
        app: App,
        job_id: str,
        *,
        queue: str | None = None,
        priority: int | None = None,
        created: bool = True,
        lane: str | None = None,
    ) -> None:
        self.app = app
        self.lane = lane  # known at enqueue; a tenant's job sits in a sub-lane (keys.flow_suffix)
        self.job_id = job_id
        self.queue = queue
        self.priority = priority
        #: False when enqueue found a job with this id already (dedupe): this handle points at that job
        self.created = created

    def __repr__(self) -> str:
        return f"<asyncq job {self.job_id} queue={self.queue}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Job) and other.job_id == self.job_id

    def __hash__(self) -> int:
        return hash(self.job_id)

    async def _lane(self) -> str | None:
        """The lane ZSET the job sits in: known from enqueue, else read from its payload or the queue list."""
        if self.lane is not None:
            return self.lane
        if self.queue is not None:
            return keys.lane_key(self.queue, self.priority if self.priority is not None else keys.DEFAULT_PRIORITY)
        broker = await self.app.broker()
        raw = await broker.job_payload(self.job_id)
        if raw is not None:
            try:
                p = decode_payload(self.app.serializer, raw)
            except DeserializationError:
                p = None
            if p is not None and p.queue is not None:
                self.queue, self.priority = p.queue, p.priority
                lane = keys.lane_key(p.queue, p.priority if p.priority is not None else keys.DEFAULT_PRIORITY)
                if await broker.lane_score(lane, self.job_id) is None:  # a tenant's job sits in a sub-lane
                    for base, suffix, _, _ in await broker.flows(p.queue):
                        if base == lane and await broker.lane_score(lane + suffix, self.job_id) is not None:
                            return lane + suffix
                return lane
        for q in await broker.queue_names():
            for lane in keys.lanes_by_priority(q):
                if await broker.lane_score(lane, self.job_id) is not None:
                    return lane
        return None

    async def status(self) -> JobStatus:
        return (await self.info()).status

    async def info(self) -> JobInfo:
        """Status, arguments, tries, times and worker: from the result if there is one, else the live keys."""
        broker = await self.app.broker()
        jid = self.job_id
        raw_result, in_progress, raw_job, tries, dlq_meta, recovered = await broker.job_snapshot(jid)
        dead = DeadLetter.parse(jid, dlq_meta) if dlq_meta else None
        if raw_result is not None:
            return self._info_from_result(raw_result, dead)
        if raw_job is None and in_progress is None:
            if dead is not None:
                return self._info_from_dead_letter(dead)
            return JobInfo(job_id=jid, status=JobStatus.not_found)
        payload = None
        if raw_job is not None:
            try:
                payload = decode_payload(self.app.serializer, raw_job)
            except DeserializationError:
                payload = None
        worker = started = None
        status = JobStatus.queued if in_progress is None else JobStatus.in_progress
        if in_progress is not None and in_progress != b"1":  # b"1": claimed by a plain arq worker
            worker_id, _, rest = in_progress.decode("utf-8", "replace").rpartition(":" + jid)[0].rpartition(":")
            worker, started = worker_id, _dt(rest) if rest.isdigit() else None
        scheduled = None
        if status is not JobStatus.in_progress:  # one lane lookup serves both the status and the run-at time
            lane = await self._lane()
            score = None if lane is None else await broker.lane_score(lane, jid)
            status = JobStatus.deferred if score is not None and score > now_ms() else JobStatus.queued
            scheduled = _dt(score) if score is not None else None
        return JobInfo(
            job_id=jid,
            status=status,
            function=payload.function if payload else None,
            args=payload.args if payload else (),
            kwargs=payload.kwargs if payload else None,
            queue=(payload.queue if payload else None) or self.queue,
            tries=max(0, _count(tries) - _count(recovered)),
            recoveries=_count(recovered),
            enqueued_at=_dt(payload.enqueue_ms) if payload else None,
            scheduled_for=scheduled,
            started_at=started,
            worker=worker,
        )

    def _info_from_result(self, raw: bytes, dead: DeadLetter | None) -> JobInfo:
        d = self.app.serializer.loads(raw)
        outcome = d.get("x") or ("success" if d.get("s") else "failed")
        error = d["r"] if is_error(d.get("r")) else None
        return JobInfo(
            job_id=self.job_id,
            status=_OUTCOME_STATUS.get(outcome, JobStatus.failed),
            function=d.get("f"),
            args=tuple(d.get("a") or ()),
            kwargs=d.get("k"),
            queue=d.get("q"),
            tries=_count(d.get("t")),
            recoveries=_count(d.get("rv")),
            enqueued_at=_dt(d.get("et")),
            started_at=_dt(d.get("st")),
            finished_at=_dt(d.get("ft")),
            worker=d.get("w"),
            result=None if error else d.get("r"),
            error=f"{error['type']}: {error['message']}" if error else None,
            traceback=error.get("traceback") if error else None,
            dead_letter_reason=dead.reason if dead else None,
        )

    def _info_from_dead_letter(self, dead: DeadLetter) -> JobInfo:
        return JobInfo(
            job_id=self.job_id,
            status=JobStatus.failed if dead.outcome == "failed" else JobStatus.dead,
            function=dead.function,
            queue=dead.queue,
            tries=dead.tries,
            recoveries=dead.recoveries,
            finished_at=dead.failed_at,
            worker=dead.worker,
            error=dead.error,
            traceback=dead.traceback,
            dead_letter_reason=dead.reason,
        )

    async def result(self, timeout: float | None = None, *, wait_if_missing: bool = False) -> Any:
        """Wait for the job to finish and return its value, or raise what the task raised (same type).

        Wakes the moment the job finishes (pub/sub), not on a poll. Raises JobTimeout if ``timeout``
        seconds pass first (the job keeps running), JobNotFound if there is no such job or result,
        JobAborted if it was aborted, JobDeadLettered if it could not run at all. ``wait_if_missing=True``
        waits for an id that is not enqueued yet (e.g. a pre-assigned id of a later step) until ``timeout``.
        """
        broker = await self.app.broker()
        try:
            raw = await self.app.results().wait(self.job_id, timeout, wait_if_missing=wait_if_missing)
        except REDIS_DOWN as exc:
            raise broker.unavailable(exc, f"waiting for the result of job {self.job_id}") from exc
        if raw is None:  # timed out, or nothing left to wait for
            info = await self.info()
            if info.status is JobStatus.not_found and not wait_if_missing:
                raise JobNotFound(
                    f"job {self.job_id} not found: never enqueued, or it finished and its result expired "
                    "(keep_result) or was not kept (keep_result=0)",
                    job_id=self.job_id,
                )
            if info.status.finished:  # finished without a stored result (keep_result=0, dead letter)
                return self._raise_from_info(info)
            raise JobTimeout(
                f"job {self.job_id} did not finish within {timeout} s (it is {info.status.value}); "
                "call result() again to keep waiting",
                job_id=self.job_id,
            )
        d = self.app.serializer.loads(raw)
        outcome = d.get("x") or ("success" if d.get("s") else "failed")
        if outcome == "success":
            return d.get("r")
        if outcome == "aborted":
            raise JobAborted(f"job {self.job_id} was aborted", job_id=self.job_id)
        error = d.get("r")
        if not is_error(error):
            raise JobDeadLettered(f"job {self.job_id} failed: {error!r}", job_id=self.job_id)
        if outcome == "dead":
            raise JobDeadLettered(
                f"job {self.job_id} could not run and was dead-lettered: {error.get('message')}",
                job_id=self.job_id,
            )
        raise rebuild_exception(error, self.job_id)

    def _raise_from_info(self, info: JobInfo) -> Any:
        if info.status is JobStatus.complete:
            raise JobNotFound(
                f"job {self.job_id} completed but its result was not kept (keep_result=0)", job_id=self.job_id
            )
        if info.status is JobStatus.aborted:
            raise JobAborted(f"job {self.job_id} was aborted", job_id=self.job_id)
        raise JobDeadLettered(
            f"job {self.job_id} is in the dead-letter store: {info.dead_letter_reason}: {info.error}",
            job_id=self.job_id,
        )

    async def abort(self) -> bool:
        """Abort the job. A queued or scheduled job is removed at once; a running one is cancelled by its
        worker. Returns True if the job had not finished (it will not complete normally), False otherwise."""
        broker = await self.app.broker()
        lane = await self._lane() or keys.lane_key(self.queue or self.app.settings.default_queue)
        aborted = self.app.serializer.dumps(
            {
                "t": 0, "f": "", "a": [], "k": {}, "et": now_ms(), "s": False,
                "r": encode_error(self.app.serializer, JobAborted("aborted before it ran")),
                "st": now_ms(), "ft": now_ms(), "q": self.queue or "", "id": self.job_id, "w": "", "x": "aborted",
            }
        )
        keep_ms = int(self.app.settings.keep_result * 1000)
        return await broker.abort(self.job_id, lane, aborted, keep_ms) > 0
