"""The JSON a Celery app's jobs travel in: asyncq's JSON plus kombu's encoding of ``bytes``.

Why: Celery (kombu 5.3+) sends ``bytes`` arguments and results through JSON as ``{"__type__": "bytes",
"__value__": "<text>"}`` and gives the task ``bytes`` back; plain orjson refuses them, so a Celery task that takes
or returns bytes could not be sent at all. Worker and client both use the app's serializer, so both agree. Only
``bytes`` is tagged: other values keep asyncq's JSON (datetimes become ISO strings, as before).
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from asyncq.exceptions import SerializationError
from asyncq.serializers import JsonSerializer

#: the marker kombu's JSON uses for values JSON has no type for
TYPE, VALUE = "__type__", "__value__"


def _default(obj: Any) -> Any:
    if isinstance(obj, bytes | bytearray | memoryview):
        raw = bytes(obj)
        try:
            return {TYPE: "bytes", VALUE: raw.decode("utf-8")}
        except UnicodeDecodeError:  # not text: kombu's base64 form
            return {TYPE: "base64", VALUE: base64.b64encode(raw).decode("ascii")}
    raise TypeError(f"Type is not JSON serializable: {type(obj).__module__}.{type(obj).__qualname__}")


def _revive(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 2 and TYPE in value and VALUE in value:
            kind, inner = value[TYPE], value[VALUE]
            if kind == "bytes" and isinstance(inner, str):
                return inner.encode("utf-8")
            if kind == "base64" and isinstance(inner, str):
                return base64.b64decode(inner)
        return {k: _revive(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_revive(v) for v in value]
    return value


class CeleryJsonSerializer(JsonSerializer):
    """``task_serializer="json"`` of a Celery app: asyncq's JSON, with ``bytes`` round-tripping as in kombu."""

    def dumps(self, obj: Any) -> bytes:
        try:
            return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS, default=_default)
        except TypeError as exc:
            raise SerializationError(
                f"cannot serialize with json: {exc}; pass plain data (ids, strings, numbers, bytes, lists, dicts) "
                "and load objects inside the task") from exc

    def loads(self, data: bytes) -> Any:
        value = super().loads(data)
        return _revive(value) if b'"__type__"' in data else value  # the walk only when a tag can be there


__all__ = ["CeleryJsonSerializer"]
