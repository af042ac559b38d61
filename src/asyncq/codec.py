"""arq's payload and result formats, and how an exception crosses Redis.

A job payload is arq's dict ``{t: try, f: function, a: args, k: kwargs, et: enqueue ms}``; a result is
``{t, f, a, k, et, s: success, r: result, st: start ms, ft: finish ms, q: queue, id}``. asyncq adds ``w``
(the worker that ran it), ``x`` (outcome: success, failed, aborted, dead) and ``rv`` (recoveries after lost
workers, when there were any; ``t`` counts only the task's own tries); arq ignores keys it does not
know, so arq's ``Job`` still reads our results and an arq producer can still feed our workers.

Exceptions are not JSON. A failure's ``r`` is a small dict naming the exception class, its args and the
traceback text; ``rebuild_exception`` turns it back into the original type when that class is already
imported in this process (it never imports a module named by Redis data), otherwise into RemoteTaskError.
"""

from __future__ import annotations

import builtins
import math
import sys
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asyncq.exceptions import DeserializationError, JobAborted, RemoteTaskError
from asyncq.serializers import Serializer

ERROR_MARK = "__asyncq_error__"


@dataclass(frozen=True, slots=True)
class Payload:
    """A decoded job payload."""

    function: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    job_try: int | None
    enqueue_ms: int
    #: asyncq's additions (absent in payloads an arq producer wrote)
    queue: str | None = None
    priority: int | None = None
    #: free-form metadata that travels with the job (tracing context, the Celery layer's request fields)
    headers: dict[str, Any] | None = None


def encode_payload(
    serializer: Serializer,
    function: str,
    args: tuple[Any, ...] | list[Any],
    kwargs: dict[str, Any],
    enqueue_ms: int,
    *,
    queue: str,
    priority: int,
    job_try: int | None = None,
    headers: dict[str, Any] | None = None,
) -> bytes:
    d: dict[str, Any] = {"t": job_try, "f": function, "a": list(args), "k": kwargs, "et": enqueue_ms, "q": queue,
                         "p": priority}
    if headers:
        d["h"] = headers
    return serializer.dumps(d)


def _field(d: dict[Any, Any], key: str, name: str, types: tuple[type, ...], *, required: bool = True) -> Any:
    """One payload field, of one of ``types`` (bool is never an int here); a wrong type is rejected, not coerced:
    a dict given as args must not quietly become keyword arguments."""
    if key not in d:
        if required:
            raise DeserializationError(f"payload has no {name!r} field ({key!r}); it is not an arq job dict")
        return None
    value = d[key]
    if value is None and not required:
        return None
    if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
        wanted = " or ".join(t.__name__ for t in types)
        raise DeserializationError(
            f"payload field {name!r} ({key!r}) is a {type(value).__name__}, not a {wanted}"
        )
    return value


def decode_payload(serializer: Serializer, data: bytes) -> Payload:
    d = serializer.loads(data)
    if not isinstance(d, dict):
        raise DeserializationError(f"payload is a {type(d).__name__}, not an arq job dict")
    kwargs = _field(d, "k", "kwargs", (dict,))
    if not all(isinstance(k, str) for k in kwargs):
        raise DeserializationError("payload field 'kwargs' ('k') has keys that are not strings")
    headers = _field(d, "h", "headers", (dict,), required=False)
    enqueued = _field(d, "et", "enqueue time", (int, float))
    if not math.isfinite(enqueued):
        raise DeserializationError(f"payload field 'enqueue time' ('et') is {enqueued}, not a time in ms")
    return Payload(
        function=_field(d, "f", "function", (str,)),
        args=tuple(_field(d, "a", "args", (list, tuple))),
        kwargs=kwargs,
        job_try=_field(d, "t", "job try", (int,), required=False),
        enqueue_ms=int(enqueued),
        queue=_field(d, "q", "queue", (str,), required=False),
        priority=_field(d, "p", "priority", (int,), required=False),
        headers=headers,
    )


def _qualname(exc: BaseException) -> str:
    t = type(exc)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def encode_error(serializer: Serializer, exc: BaseException) -> dict[str, Any]:
    """Describe an exception in plain data; keep its args only if the serializer can carry them."""
    args: list[Any]
    try:
        serializer.dumps(list(exc.args))
        args = list(exc.args)
    except Exception:
        args = [str(exc)]
    return {
        ERROR_MARK: 1,
        "type": _qualname(exc),
        "message": str(exc),
        "args": args,
        "traceback": "".join(traceback.format_exception(exc)),
    }


def is_error(value: Any) -> bool:
    return isinstance(value, dict) and value.get(ERROR_MARK) == 1


def _find_class(dotted: str) -> type[BaseException] | None:
    module, _, name = dotted.rpartition(".")
    owner: Any = sys.modules.get(module) if module else builtins
    if owner is None:
        return None
    obj: Any = owner
    for part in name.split("."):
        obj = getattr(obj, part, None)
    if isinstance(obj, type) and issubclass(obj, BaseException):
        return obj
    return None


def build_exception(cls: type[BaseException] | None, args: Any, remote_traceback: str,
                    origin: str) -> BaseException | None:
    """An instance of ``cls`` (an Exception subclass already imported here) with the remote traceback
    attached, or None when there is no such class or it cannot be built from ``args``."""
    if cls is None or not issubclass(cls, Exception):
        return None
    try:
        exc = cls(*args)
    except Exception:
        return None
    exc.remote_traceback = remote_traceback  # type: ignore[attr-defined]
    exc.add_note(f"{origin}; remote traceback:\n{remote_traceback}")
    return exc


def ms_to_datetime(ms: Any) -> datetime | None:
    """A Unix time in milliseconds as an aware UTC datetime (None, and anything that is not a time, is None)."""
    if ms is None or isinstance(ms, bool):
        return None
    try:
        return datetime.fromtimestamp(int(ms) / 1000, tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def rebuild_exception(error: dict[str, Any], job_id: str | None = None) -> BaseException:
    """The task's exception with its original type when possible, else RemoteTaskError."""
    type_name = str(error.get("type", "Exception"))
    message = str(error.get("message", ""))
    tb = str(error.get("traceback", ""))
    if type_name in ("CancelledError", "asyncio.exceptions.CancelledError", "asyncq.exceptions.JobAborted"):
        return JobAborted(f"job {job_id} was aborted", job_id=job_id)
    exc = build_exception(_find_class(type_name), error.get("args", [message]), tb,
                          f"raised by asyncq job {job_id}")
    if exc is not None:
        return exc
    return RemoteTaskError(f"{type_name}: {message}", job_id=job_id, exc_type=type_name, remote_traceback=tb)


def encode_result(
    serializer: Serializer,
    *,
    payload: Payload,
    job_id: str,
    job_try: int,
    success: bool,
    result: Any,
    start_ms: int,
    finish_ms: int,
    queue: str,
    worker_id: str,
    outcome: str,
    recoveries: int = 0,
) -> bytes:
    data: dict[str, Any] = {
        "t": job_try,
        "f": payload.function,
        "a": list(payload.args),
        "k": payload.kwargs,
        "et": payload.enqueue_ms,
        "s": success,
        "r": result,
        "st": start_ms,
        "ft": finish_ms,
        "q": queue,
        "id": job_id,
        "w": worker_id,
        "x": outcome,
    }
    if recoveries:
        data["rv"] = recoveries  # times its worker was lost before this try ended
    try:
        return serializer.dumps(data)
    except Exception as exc:
        # The task returned something the serializer cannot carry: record that as the failure it is.
        data["s"] = False
        data["x"] = "failed"
        data["r"] = {
            ERROR_MARK: 1,
            "type": "asyncq.exceptions.SerializationError",
            "message": f"the task's return value could not be serialized: {exc}",
            "args": [f"the task's return value could not be serialized: {exc}"],
            "traceback": "",
        }
        return serializer.dumps(data)
