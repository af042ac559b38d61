"""Reading a Celery protocol-v2 message that a Celery producer pushed onto a kombu list (the ``--celery-queues``
consumer).

Only what can be decoded without importing anything is accepted: JSON bodies (``task_serializer='json'``, Celery's
default), base64 as kombu's Redis transport writes them. Anything else is a ``MalformedMessage`` whose text says
what is wrong and what to do; the consumer dead-letters the message with that text, so it is never lost.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from asyncq.exceptions import MalformedMessage

#: the headers Celery's protocol v2 defines; any other header is the caller's own (``apply_async(headers=)``)
PROTOCOL_HEADERS = frozenset({
    "lang", "task", "id", "shadow", "eta", "expires", "group", "group_index", "retries", "timelimit", "root_id",
    "parent_id", "argsrepr", "kwargsrepr", "origin", "ignore_result", "replaced_task_nesting", "stamped_headers",
    "stamps", "redelivered", "periodic_task_name",
})


@dataclass(frozen=True, slots=True)
class CeleryMessage:
    """One decoded task message, with what the consumer needs to adopt it or settle it."""

    tag: str
    queue: str
    raw: bytes
    task: str
    id: str
    args: list[Any]
    kwargs: dict[str, Any]
    embed: dict[str, Any]
    headers: dict[str, Any]
    properties: dict[str, Any]

    @property
    def priority(self) -> int | None:
        p = self.properties.get("priority")
        return p if isinstance(p, int) and not isinstance(p, bool) else None

    @property
    def user_headers(self) -> dict[str, Any]:
        return {k: v for k, v in self.headers.items() if k not in PROTOCOL_HEADERS}

    def when(self, name: str) -> datetime | None:
        """``eta`` or ``expires`` as an aware datetime (Celery writes ISO 8601)."""
        value = self.headers.get(name)
        if value is None:
            return None
        try:
            when = datetime.fromisoformat(str(value))
        except ValueError:
            raise MalformedMessage(f"headers.{name} {value!r} is not an ISO 8601 date and time") from None
        return when if when.tzinfo else when.replace(tzinfo=UTC)


def decode_message(tag: str, raw: bytes, queue: str) -> CeleryMessage:
    """Decode one message (``raw`` is the list element, already known to be a JSON object with a tag)."""
    try:
        envelope = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedMessage(f"the message is not JSON: {exc}") from None
    headers = envelope.get("headers") if isinstance(envelope, dict) else None
    if not isinstance(headers, dict) or not isinstance(headers.get("task"), str) or not headers.get("id"):
        raise MalformedMessage(
            "headers.task / headers.id missing: not a Celery protocol-v2 task message (protocol 1 is not "
            "supported; Celery 4+ sends v2 unless task_protocol=1)"
        )
    ctype = envelope.get("content-type")
    if ctype != "application/json":
        raise MalformedMessage(
            f"content type {ctype!r}: asyncq consumes JSON Celery messages only; set task_serializer='json' "
            "(Celery's default) on the producer"
        )
    body = envelope.get("body")
    props = envelope.get("properties") if isinstance(envelope.get("properties"), dict) else {}
    if not isinstance(body, str):
        raise MalformedMessage("body is not a string")
    if props.get("body_encoding") == "base64":
        try:
            data = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MalformedMessage(f"body is not valid base64 ({exc})") from None
    else:
        data = body.encode()
    try:
        decoded = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise MalformedMessage(f"body is not valid JSON ({exc})") from None
    if (not isinstance(decoded, list) or len(decoded) != 3 or not isinstance(decoded[0], list)
            or not isinstance(decoded[1], dict) or not isinstance(decoded[2], dict | None)):
        raise MalformedMessage("body is not [args, kwargs, embed] (Celery protocol v2)")
    return CeleryMessage(tag=tag, queue=queue, raw=raw, task=headers["task"], id=str(headers["id"]),
                         args=decoded[0], kwargs=decoded[1], embed=decoded[2] or {}, headers=headers,
                         properties=props)
