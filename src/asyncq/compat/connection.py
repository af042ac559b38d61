"""``app.broker_connection()`` / ``app.connection()``: the broker connection Celery code opens by hand.

Projects use it for health checks (``app.broker_connection().ensure_connection(max_retries=1)``, or
``app.connection().channel().client.ping()``) and for a Redis client on the broker. Here it is a small object
over a plain (sync) redis-py client for the broker URL: no kombu, no AMQP channel semantics, and nothing
connects until it is used.
"""

from __future__ import annotations

from typing import Any

import redis

from asyncq.broker import redact


class Channel:
    """kombu's Redis channel as health checks see it: ``.client`` is a redis-py client."""

    def __init__(self, connection: BrokerConnection) -> None:
        self.connection = connection

    @property
    def client(self) -> redis.Redis:
        return self.connection.client

    def close(self) -> None:
        return None


class BrokerConnection:
    """A connection to the broker's Redis, with the parts of kombu's ``Connection`` that projects call."""

    def __init__(self, url: str, **options: Any) -> None:
        self.url = url
        self.transport_options = options
        self._client: redis.Redis | None = None

    def __repr__(self) -> str:
        return f"<BrokerConnection {redact(self.url)}>"

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.Redis.from_url(self.url)
        return self._client

    def connect(self) -> BrokerConnection:
        self.client.ping()
        return self

    def ensure_connection(self, errback: Any = None, max_retries: int | None = None, interval_start: float = 2,
                          interval_step: float = 2, interval_max: float = 30, callback: Any = None,
                          reraise_as_library_errors: bool = True, timeout: float | None = None) -> BrokerConnection:
        """Ping the broker; raises redis-py's ``ConnectionError`` if it cannot be reached (no retry loop: a
        health check wants the answer now)."""
        return self.connect()

    @property
    def connected(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False

    def channel(self) -> Channel:
        return Channel(self)

    default_channel = property(channel)

    def as_uri(self, include_password: bool = False) -> str:
        return self.url if include_password else redact(self.url)

    def release(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    close = release

    def __enter__(self) -> BrokerConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


__all__ = ["BrokerConnection", "Channel"]
