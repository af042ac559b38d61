"""A Celery message protocol v2 envelope, as Celery 5.6's ``apply_async`` writes it to kombu's Redis transport.

The envelope is one JSON document, ``LPUSH``ed to the queue's list (``kombu_layout.queue_list_key``)::

    {"body": base64(JSON [args, kwargs, {"callbacks", "errbacks", "chain", "chord"}]),
     "content-encoding": "utf-8", "content-type": "application/json",
     "headers": {"lang", "task", "id", "shadow", "eta", "expires", "group", "group_index", "retries",
                 "timelimit", "root_id", "parent_id", "argsrepr", "kwargsrepr", "origin", "ignore_result",
                 "replaced_task_nesting", "stamped_headers", "stamps", ...user headers},
     "properties": {"correlation_id", "reply_to", "delivery_mode", ["expiration"], "delivery_info":
                    {"exchange": "", "routing_key": queue}, "priority", "body_encoding": "base64",
                    "delivery_tag": uuid4}}

Sources: ``celery/app/amqp.py`` (``as_task_v2``), ``celery/app/base.py`` (``send_task``: ``expiration``),
``kombu/transport/virtual/base.py`` (``prepare_message``, ``delivery_tag``). ``tests/test_celery_protocol.py``
compares the result field by field with what real Celery writes into Redis.
"""

from __future__ import annotations

import base64
import reprlib
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

ARGSREPR_MAXSIZE = 1024  # Celery's Task.argsrepr_maxsize / kwargsrepr default


def _iso(value: datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def _aware(value: datetime | str) -> datetime:
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _saferepr(value: Any) -> str:
    text = repr(value)
    if len(text) > ARGSREPR_MAXSIZE:
        r = reprlib.Repr()
        r.maxstring = r.maxother = ARGSREPR_MAXSIZE
        text = r.repr(value)[:ARGSREPR_MAXSIZE]
    return text


def encode_body(args: Sequence[Any], kwargs: Mapping[str, Any], embed: Mapping[str, Any]) -> str:
    """base64 of the JSON body ``[args, kwargs, embed]`` (the message's ``body``)."""
    raw = orjson.dumps([list(args), dict(kwargs), dict(embed)])
    return base64.b64encode(raw).decode("ascii")


def encode_message(
    task: str,
    task_id: str,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    queue: str,
    priority: int | None = None,
    eta: datetime | str | None = None,
    expires: datetime | str | None = None,
    callbacks: list[dict[str, Any]] | None = None,
    errbacks: list[dict[str, Any]] | None = None,
    chain: list[dict[str, Any]] | None = None,
    chord: dict[str, Any] | None = None,
    group: str | None = None,
    group_index: int | None = None,
    retries: int = 0,
    timelimit: Sequence[float | None] | None = None,
    root_id: str | None = None,
    parent_id: str | None = None,
    origin: str = "",
    ignore_result: bool = False,
    shadow: str | None = None,
    headers: Mapping[str, Any] | None = None,
    reply_to: str | None = None,
    delivery_tag: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The envelope of one task call, ready for ``message_bytes`` and an ``LPUSH`` (a plain dict)."""
    kwargs = dict(kwargs or {})
    hard, soft = [*timelimit, None, None][:2] if timelimit else (None, None)
    message_headers: dict[str, Any] = {
        "lang": "py",
        "task": task,
        "id": task_id,
        "shadow": shadow,
        "eta": _iso(eta),
        "expires": _iso(expires),
        "group": group,
        "group_index": group_index,
        "retries": retries,
        "timelimit": [hard, soft],
        "root_id": root_id or task_id,
        "parent_id": parent_id,
        "argsrepr": _saferepr(tuple(args)),
        "kwargsrepr": _saferepr(kwargs),
        "origin": origin,
        "ignore_result": ignore_result,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    if headers:
        message_headers.update(headers)  # Celery merges user headers into the top level
    properties: dict[str, Any] = {
        "correlation_id": task_id,
        "reply_to": reply_to or str(uuid.uuid4()),
        "delivery_mode": 2,
    }
    if expires is not None:  # celery/app/base.py: seconds left, clamped at 0; kombu writes milliseconds
        left = (_aware(expires) - (now or datetime.now(UTC))).total_seconds()
        properties["expiration"] = str(int(max(0.0, left) * 1000))
    properties.update({
        "delivery_info": {"exchange": "", "routing_key": queue},
        "priority": 0 if priority is None else int(priority),
        "body_encoding": "base64",
        "delivery_tag": delivery_tag or str(uuid.uuid4()),
    })
    embed = {"callbacks": callbacks or None, "errbacks": errbacks or None, "chain": chain or None,
             "chord": chord or None}
    return {
        "body": encode_body(args, kwargs, embed),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": message_headers,
        "properties": properties,
    }


def message_bytes(envelope: Mapping[str, Any]) -> bytes:
    """The bytes to ``LPUSH``."""
    return orjson.dumps(envelope)


def decode_body(envelope: Mapping[str, Any]) -> list[Any]:
    """``[args, kwargs, embed]`` of an envelope (for tests and tools)."""
    body: list[Any] = orjson.loads(base64.b64decode(envelope["body"]))
    return body
