"""The REST API's response shapes (they make its OpenAPI schema). Times are UTC; durations are seconds."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class QueueOut(BaseModel):
    queue: str
    length: int = Field(description="jobs ready to run now")
    oldest_age: float | None = Field(description="seconds the oldest ready job has waited")
    in_flight: int
    scheduled: int = Field(description="jobs waiting for a later run-at time (delayed, retry backoff)")
    dead_letters: int
    paused: bool
    rate_in: float | None = Field(description="jobs/s entering the queue, over the last minute at most")
    rate_out: float | None = Field(description="jobs/s leaving it (succeeded, dead-lettered, aborted)")


class WorkerOut(BaseModel):
    worker_id: str
    alive: bool
    last_beat: datetime | None
    host: str | None
    pid: int | None
    queues: list[str]
    concurrency: int | None
    in_flight: int | None
    started_at: datetime | None
    stats: dict[str, int]
    #: serving, full, redis-down, wedged (restart it), stopping; None for workers of older versions
    state: str | None = None
    #: outcomes it holds because Redis did not answer when its jobs ended
    holding: int = 0


class Overview(BaseModel):
    redis: str = Field(description="the Redis URL, password redacted")
    queues: list[QueueOut]
    workers: list[WorkerOut]
    dead_letters: int
    now: datetime


class JobRow(BaseModel):
    job_id: str
    task: str | None
    queue: str | None
    status: str
    tries: int
    enqueued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    scheduled_for: datetime | None = None
    error: str | None = None


class JobDetail(JobRow):
    #: times the job was recovered after its worker was lost (not counted in tries)
    recoveries: int = 0
    args: list[Any]
    kwargs: dict[str, Any]
    worker: str | None
    result: Any = None
    traceback: str | None = None
    dead_letter_reason: str | None = None


class DeadLetterOut(BaseModel):
    job_id: str
    task: str | None
    queue: str
    reason: str | None
    error: str | None
    traceback: str | None
    tries: int
    recoveries: int = 0
    failed_at: datetime | None
    worker: str | None
    outcome: str | None
    args: list[Any]
    kwargs: dict[str, Any]
    payload_error: str | None


class DeadLetterPage(BaseModel):
    total: int
    items: list[DeadLetterOut]


class PeriodicOut(BaseModel):
    name: str
    task: str
    schedule: str
    queue: str | None
    next_run: datetime
    last_run: datetime | None
    last_job_id: str | None
    last_status: str | None


class HistoryPoint(BaseModel):
    minute: datetime
    started: int
    succeeded: int
    failed: int
    retried: int
    dead: int
    wait_p50: float | None
    wait_p95: float | None
    wait_p99: float | None


class ActionResult(BaseModel):
    ok: bool = True
    detail: str
    count: int = 0
