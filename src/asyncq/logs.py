"""The worker's log: one line per finished job, JSON lines for log shippers.

Operators read a worker through its log first, so every run that started ends in exactly one line on the
``asyncq.job`` logger, Celery-style: ``app.tasks.add[3f2c...] succeeded in 0.012s (queue default, waited
0.003s, try 1/3)``. Success and a hand-back are info; a retry and an abort are warnings, with the task's
traceback on a retry; a failure for good is an error with the traceback. At debug level the line also shows
the job's arguments, cut to ``ARGS_LIMIT`` characters (arguments can be large, or personal data: debug only).

Every line carries its fields in ``record.asyncq`` (task, job_id, queue, outcome, run_s, wait_s, try), which
``JsonFormatter`` writes as top-level JSON keys, so a log shipper need not parse the text.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from asyncq.context import JobContext

JOB_LOG = logging.getLogger("asyncq.job")
#: at debug level a job line shows its arguments, cut to this many characters
ARGS_LIMIT = 200
LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_LEVELS = {
    "success": logging.INFO,
    "handed back": logging.INFO,
    "retry": logging.WARNING,
    "aborted": logging.WARNING,
    "lease lost": logging.WARNING,
    "cancelled": logging.WARNING,
    "failed": logging.ERROR,
}
_WORDS = {"success": "succeeded", "retry": "failed, will retry", "failed": "failed"}


def _cut(text: str, limit: int = ARGS_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def job_finished(ctx: JobContext, outcome: str, exc: BaseException | None = None, *,
                 retry_in: float | None = None) -> None:
    """Log the one line for a run that has ended (``outcome`` as in ``Hooks.on_end``)."""
    level = _LEVELS.get(outcome, logging.WARNING)
    if not JOB_LOG.isEnabledFor(level):
        return
    run_s = max(0.0, time.time() - ctx.start_ms / 1000)
    wait_s = ctx.queue_wait_ms / 1000
    fields: dict[str, Any] = {
        "task": ctx.task_name, "job_id": ctx.job_id, "queue": ctx.queue, "outcome": outcome,
        "run_s": round(run_s, 6), "wait_s": round(wait_s, 6), "try": ctx.job_try, "max_tries": ctx.max_tries,
    }
    msg = "%s[%s] %s in %.3fs (queue %s, waited %.3fs, try %d/%d)"
    args: list[Any] = [ctx.task_name, ctx.job_id, _WORDS.get(outcome, outcome), run_s, ctx.queue, wait_s,
                       ctx.job_try, ctx.max_tries]
    if retry_in is not None:
        msg += "; retry in %.2fs"
        args.append(retry_in)
        fields["retry_in_s"] = retry_in
    if exc is not None:
        msg += ": %s"
        args.append(_cut(f"{type(exc).__name__}: {exc}", 500))
        fields["error"] = type(exc).__name__
    if JOB_LOG.isEnabledFor(logging.DEBUG):
        shown = _cut(", ".join([*(repr(a) for a in ctx.args), *(f"{k}={v!r}" for k, v in ctx.kwargs.items())]))
        msg += " args=(%s)"
        args.append(shown)
        fields["args"] = shown
    with_traceback = exc is not None and outcome in ("retry", "failed")
    JOB_LOG.log(level, msg, *args, exc_info=exc if with_traceback else None, extra={"asyncq": fields})


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the record's asyncq fields and,
    if there is one, the traceback as text."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        extra = getattr(record, "asyncq", None)
        if isinstance(extra, dict):
            data.update(extra)
        if record.exc_info:
            data["traceback"] = self.formatException(record.exc_info)
        elif record.exc_text:
            data["traceback"] = record.exc_text
        return orjson.dumps(data, default=repr).decode()


def configure(level: int, fmt: str = "text") -> None:
    """Send every log record at ``level`` and above to stderr, as text lines or JSON lines (``fmt``)."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format {fmt!r} is not one of {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])


def banner(worker_id: str, queues: Sequence[str], concurrency: int, lease: float,
           tasks: Sequence[str]) -> tuple[Any, ...]:
    """The start-up lines (``log.info(*banner(...))``): what this worker serves, like Celery's ``[tasks]``."""
    lines = "".join(f"\n  . {name}" for name in tasks)
    return ("worker %s serving %s (concurrency %d, lease %.1fs)\n[tasks]%s", worker_id, ", ".join(queues),
            concurrency, lease, lines or "\n  (none)")
