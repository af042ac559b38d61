"""The dead-letter record: the one type for a job in the dead-letter store, parsed in one place.

A dead letter is three entries keyed by its id (``asyncq.keys``: ``DLQ_INDEX`` orders them, ``DLQ_PAYLOADS``
keeps the payload as enqueued, ``DLQ_META`` the JSON metadata below), written atomically by
``lua/dead_letter.lua`` (an asyncq job) or ``lua/celery_settle.lua`` (a Celery message the worker could not
adopt). Everything that reads one (``admin``, ``Job.info``, the dashboard, ``asyncq dlq``) goes through
``DeadLetter.parse``, so a field added by a writer is one change here, and data that is not what a writer
wrote (a foreign hash, a hand edit) reads as empty fields rather than an exception.

The metadata's fields (JSON): ``job_id``, ``function``, ``queue``, ``lane``, ``reason``, ``error``,
``traceback``, ``tries``, ``recoveries``, ``failed_at`` (Unix ms), ``worker``, ``outcome`` ("failed" or
"dead"), and for a Celery message ``kind: "celery"`` with ``celery_list`` (the kombu list it came from, where a
retry puts it back).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from asyncq import keys
from asyncq.codec import ms_to_datetime

__all__ = ["DeadLetter"]


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A job in the dead-letter store: why it is there, and the arguments it was enqueued with."""

    job_id: str
    function: str | None
    queue: str
    lane: str
    reason: str | None
    error: str | None
    traceback: str | None
    tries: int
    failed_at: datetime | None
    worker: str | None
    #: "failed" (the task raised on its last try) or "dead" (it could not run at all)
    outcome: str | None
    #: times the job was recovered after its worker was lost (not counted in ``tries``)
    recoveries: int = 0
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: why args/kwargs are empty when the payload could not be read (missing, other serializer, ...)
    payload_error: str | None = None
    #: the stored metadata as is, for fields this class does not name
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """"job" (an asyncq job: retried into its lane) or "celery" (a Celery message: back onto its list)."""
        return _str(self.meta.get("kind")) or "job"

    @property
    def celery_list(self) -> str:
        """The kombu list a Celery message came from ("" for an asyncq job)."""
        return _str(self.meta.get("celery_list")) or ""

    @classmethod
    def parse(cls, job_id: str, raw_meta: bytes | None) -> DeadLetter:
        """The record from its stored metadata (arguments not read: see ``with_payload``)."""
        meta: dict[str, Any] = {}
        if raw_meta:
            try:
                loaded = orjson.loads(raw_meta)
            except orjson.JSONDecodeError:
                loaded = None
            meta = loaded if isinstance(loaded, dict) else {}
        queue = _str(meta.get("queue")) or keys.DEFAULT_QUEUE
        return cls(
            job_id=job_id,
            function=_str(meta.get("function")),
            queue=queue,
            lane=_str(meta.get("lane")) or keys.lane_key(queue),
            reason=_str(meta.get("reason")),
            error=_str(meta.get("error")),
            traceback=_str(meta.get("traceback")),
            tries=_int(meta.get("tries")),
            recoveries=_int(meta.get("recoveries")),
            failed_at=ms_to_datetime(meta.get("failed_at")),
            worker=_str(meta.get("worker")),
            outcome=_str(meta.get("outcome")),
            meta=meta,
        )

    def with_payload(self, args: tuple[Any, ...], kwargs: dict[str, Any], error: str | None) -> DeadLetter:
        return dataclasses.replace(self, args=args, kwargs=kwargs, payload_error=error)

    @staticmethod
    def meta_json(*, job_id: str, function: str | None, queue: str, lane: str, reason: str, error: str,
                  traceback: str, tries: int, failed_at_ms: int, worker: str, outcome: str, recoveries: int = 0,
                  **extra: Any) -> bytes:
        """The metadata a writer stores (``extra``: ``kind``, ``celery_list``, ``raw_id_hex``)."""
        return orjson.dumps({
            "job_id": job_id, "function": function, "queue": queue, "lane": lane, "reason": reason,
            "error": error, "traceback": traceback, "tries": tries, "recoveries": recoveries,
            "failed_at": failed_at_ms, "worker": worker, "outcome": outcome, **extra,
        })
