"""How job payloads and results become bytes.

JSON (orjson) is the default because a payload anyone can read is a payload anyone can debug, and because a
writable Redis must not be a remote-code-execution hole. msgpack is there for compact binary payloads. Pickle
is available only when asked for, and then every payload carries an HMAC so that bytes written by someone
without the key are refused instead of unpickled.

The dict being serialized is arq's payload (``{t, f, a, k, et}``) plus asyncq's extra fields, so the same
serializer can be handed to arq's ``create_pool(job_serializer=..., job_deserializer=...)``.
"""

from __future__ import annotations

import hashlib
import hmac
import pickle
from typing import Any, Protocol, runtime_checkable

import msgpack
import orjson

from asyncq.exceptions import ConfigurationError, DeserializationError, SerializationError

_PASS_IDS = (
    "pass plain data (ids, strings, numbers, lists, dicts) and load objects inside the task; "
    "an ORM object, a socket or a file handle cannot travel through Redis"
)


@runtime_checkable
class Serializer(Protocol):
    """Turns a payload dict into bytes and back. ``name`` is shown in errors and ``asyncq queues``."""

    name: str

    def dumps(self, obj: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


def _describe(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


class JsonSerializer:
    """orjson: fast, readable, safe. Tuples arrive as lists; datetimes as ISO strings."""

    name = "json"

    def dumps(self, obj: Any) -> bytes:
        try:
            return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)
        except TypeError as exc:
            raise SerializationError(f"cannot serialize with json: {exc}; {_PASS_IDS}") from exc

    def loads(self, data: bytes) -> Any:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise DeserializationError(f"not valid JSON ({exc}); was it written with another serializer?") from exc


class MsgpackSerializer:
    """msgpack: compact and binary-safe (bytes survive). Tuples arrive as lists."""

    name = "msgpack"

    def dumps(self, obj: Any) -> bytes:
        try:
            out: bytes = msgpack.packb(obj, use_bin_type=True, datetime=True)
            return out
        except (TypeError, ValueError) as exc:
            raise SerializationError(f"cannot serialize with msgpack: {exc}; {_PASS_IDS}") from exc

    def loads(self, data: bytes) -> Any:
        try:
            return msgpack.unpackb(data, raw=False, strict_map_key=False, timestamp=3)
        except Exception as exc:
            raise DeserializationError(
                f"not valid msgpack ({exc}); was it written with another serializer?"
            ) from exc


class SignedPickleSerializer:
    """pickle with an HMAC-SHA256 over every payload. Only for trusted producers that share ``key``.

    Unpickling runs code, so bytes whose signature does not match are refused before pickle sees them.
    """

    name = "pickle"
    _MAGIC = b"AQP1"

    def __init__(self, key: bytes | str) -> None:
        if not key:
            raise ConfigurationError(
                "serializer='pickle' needs a signing key: App(serializer='pickle', signing_key=...) "
                "(pickle from an unsigned Redis payload would run any code someone wrote there)"
            )
        self._key = key.encode() if isinstance(key, str) else key

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()

    def dumps(self, obj: Any) -> bytes:
        try:
            body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise SerializationError(f"cannot pickle: {exc}; {_PASS_IDS}") from exc
        return self._MAGIC + self._mac(body) + body

    def loads(self, data: bytes) -> Any:
        if not data.startswith(self._MAGIC) or len(data) < 36:
            raise DeserializationError("not a signed asyncq pickle payload; refusing to unpickle it")
        mac, body = data[4:36], data[36:]
        if not hmac.compare_digest(mac, self._mac(body)):
            raise DeserializationError("pickle payload signature does not match the signing key; refused")
        return pickle.loads(body)


def get_serializer(spec: str | Serializer, signing_key: bytes | str | None = None) -> Serializer:
    """Resolve ``"json" | "msgpack" | "pickle"`` or pass a ready Serializer through."""
    if not isinstance(spec, str):
        if isinstance(spec, Serializer):
            return spec
        raise ConfigurationError(f"serializer must be 'json', 'msgpack', 'pickle' or a Serializer, not {spec!r}")
    if spec == "json":
        return JsonSerializer()
    if spec == "msgpack":
        return MsgpackSerializer()
    if spec == "pickle":
        return SignedPickleSerializer(signing_key or b"")
    raise ConfigurationError(f"unknown serializer {spec!r}: use 'json' (default), 'msgpack' or 'pickle'")
