"""The dead-letter record: one type, parsed in one place, whatever the stored metadata holds."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from asyncq import admin, keys
from asyncq.dead_letter import DeadLetter


def test_a_written_record_reads_back_field_by_field() -> None:
    raw = DeadLetter.meta_json(
        job_id="j1", function="tasks.send", queue="emails", lane=keys.lane_key("emails", 3), reason="raised",
        error="ValueError: boom", traceback="Traceback ...", tries=3, failed_at_ms=1_700_000_000_000,
        worker="w1", outcome="failed", recoveries=1, kind="celery", celery_list="emails",
    )
    d = DeadLetter.parse("j1", raw)
    assert (d.job_id, d.function, d.queue, d.lane) == ("j1", "tasks.send", "emails", keys.lane_key("emails", 3))
    assert (d.reason, d.error, d.traceback, d.tries, d.recoveries) == ("raised", "ValueError: boom",
                                                                       "Traceback ...", 3, 1)
    assert d.failed_at == datetime.fromtimestamp(1_700_000_000, tz=UTC)
    assert (d.worker, d.outcome, d.kind, d.celery_list) == ("w1", "failed", "celery", "emails")
    assert admin.DeadLetter is DeadLetter  # the public name is the same type


@pytest.mark.parametrize("raw", [None, b"", b"not json", b"[1, 2]", b'"text"',
                                 orjson.dumps({"queue": 5, "tries": "3", "failed_at": "soon", "lane": None})])
def test_metadata_that_no_writer_wrote_reads_as_empty_fields(raw: bytes | None) -> None:
    d = DeadLetter.parse("x", raw)
    assert d.queue == keys.DEFAULT_QUEUE and d.lane == keys.lane_key(keys.DEFAULT_QUEUE)
    assert (d.function, d.reason, d.tries, d.failed_at, d.kind, d.celery_list) == (None, None, 0, None, "job", "")


def test_with_payload_keeps_the_record_and_adds_the_call() -> None:
    d = DeadLetter.parse("j", orjson.dumps({"queue": "q", "reason": "r"}))
    full = d.with_payload((1, 2), {"a": 1}, None)
    assert (full.queue, full.reason, full.args, full.kwargs, full.payload_error) == ("q", "r", (1, 2), {"a": 1}, None)
