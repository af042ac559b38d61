"""Serializers: JSON by default, msgpack, and pickle only signed."""

from __future__ import annotations

import pkgutil

import pytest

import asyncq
from asyncq.exceptions import ConfigurationError, DeserializationError, SerializationError
from asyncq.serializers import JsonSerializer, MsgpackSerializer, SignedPickleSerializer, get_serializer

from .conftest import redis_url


def test_json_is_the_default_and_explains_bad_arguments() -> None:
    s = asyncq.App(redis_url=redis_url()).serializer
    assert s.name == "json"
    assert s.loads(s.dumps({"a": (1, 2)})) == {"a": [1, 2]}
    with pytest.raises(SerializationError, match="pass plain data"):
        s.dumps({"obj": object()})
    with pytest.raises(DeserializationError, match="another serializer"):
        s.loads(b"\x80\x04garbage")


def test_msgpack_keeps_bytes() -> None:
    s = MsgpackSerializer()
    assert s.loads(s.dumps({"b": b"\x00\xff"})) == {"b": b"\x00\xff"}
    with pytest.raises(SerializationError):
        s.dumps({"x": object()})


def test_pickle_needs_a_key_and_refuses_tampered_payloads() -> None:
    with pytest.raises(ConfigurationError, match="needs a signing key"):
        get_serializer("pickle")
    s = SignedPickleSerializer("secret")
    data = s.dumps({"x": {1, 2}})
    assert s.loads(data) == {"x": {1, 2}}
    tampered = data[:-1] + bytes([data[-1] ^ 1])
    with pytest.raises(DeserializationError, match="signature does not match"):
        s.loads(tampered)
    with pytest.raises(DeserializationError, match="refusing to unpickle"):
        s.loads(b"\x80\x04plain pickle")
    with pytest.raises(DeserializationError, match="signature does not match"):
        SignedPickleSerializer("other").loads(data)


def test_unknown_serializer_name() -> None:
    with pytest.raises(ConfigurationError, match="unknown serializer 'yaml'"):
        get_serializer("yaml")
    assert isinstance(get_serializer(JsonSerializer()), JsonSerializer)


def test_public_api_is_sorted_and_complete() -> None:
    assert asyncq.__all__ == sorted(asyncq.__all__)
    public = {name for name in dir(asyncq) if not name.startswith("_") and name not in {"annotations"}}
    modules = {m.name for m in pkgutil.iter_modules(asyncq.__path__)}
    assert public - modules - {"__version__"} <= set(asyncq.__all__)
    for name in asyncq.__all__:
        assert hasattr(asyncq, name)


def test_every_error_is_an_asyncq_error() -> None:
    import inspect

    from asyncq import exceptions

    for _, cls in inspect.getmembers(exceptions, inspect.isclass):
        if cls.__module__ == exceptions.__name__:
            assert issubclass(cls, exceptions.AsyncqError)
