"""Redis URLs, plain or through Sentinel, and the connection pools built from them: the one place that knows.

Accepted everywhere a Redis URL is (``App(redis_url=...)``, ``ASYNCQ_REDIS_URL``, ``--redis-url``, the dashboard,
``asyncq.compat``'s ``broker_url``):

- ``redis://[[user]:password@]host:port[/db]``, ``rediss://...``, ``unix:///path?db=N``: redis-py's own forms;
- ``redis+cluster://[[user]:password@]host:port[,host:port...]`` (``rediss+cluster://`` for TLS): a Redis Cluster
  (or Valkey cluster); any reachable node is enough, redis-py discovers the others and follows MOVED/ASK and
  failovers. It selects asyncq's cluster key layout (``asyncq.cluster``), which arq cannot read;
- ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db]`` (``rediss+sentinel://``
  for TLS to the master): the hosts are Sentinels, ``service_name`` is the master's name in their
  configuration. The user and password are the master's (and its replicas'); Sentinels that need their own
  take ``?sentinel_password=...`` (and ``sentinel_username=...``).

Why a Sentinel pool and not the master's address: after a failover the old address is a replica (every write
fails with READONLY) or gone. redis-py's Sentinel pool asks the Sentinels for the master each time it opens a
connection, and a connection that meets READONLY is dropped with a ConnectionError; asyncq's workers and
producers already treat that as an outage (hold outcomes, reconnect with backoff), so they follow a failover
without a restart.

Celery's own Sentinel form, ``sentinel://host:port;sentinel://host:port`` with
``broker_transport_options={"master_name": ...}``, is turned into the form above by ``from_celery``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.connection
import redis.asyncio.sentinel
import redis.connection
import redis.exceptions
import redis.sentinel
from redis.connection import parse_url

from asyncq.exceptions import ConfigurationError

__all__ = [
    "ClusterUrl", "SentinelUrl", "async_pool", "check", "cluster_url", "from_celery", "is_cluster", "is_sentinel",
    "parse_cluster", "parse_sentinel", "redact", "sync_pool",
]

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
CLUSTER_EXAMPLE = "redis+cluster://:password@10.0.0.1:6379,10.0.0.2:6379,10.0.0.3:6379"

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
SENTINEL_PORT = 26379
EXAMPLE = "redis+sentinel://:password@10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379/mymaster/0"


@dataclass(frozen=True, slots=True)
class SentinelUrl:
    """A parsed ``redis+sentinel://`` URL."""

    sentinels: tuple[tuple[str, int], ...]
    service_name: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    ssl: bool = False
    sentinel_username: str | None = None
    sentinel_password: str | None = None


def is_sentinel(url: str) -> bool:
    return url.split("://", 1)[0].lower() in SENTINEL_SCHEMES


def redact(url: str) -> str:
    """The URL without its password, for logs and errors (also ``asyncq.broker.redact``)."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user + ':***' if user else '***'}@{host}"


def _bad(url: str, why: str) -> ConfigurationError:
    return ConfigurationError(f"{redact(url)!r} is not a Sentinel URL: {why}; e.g. {EXAMPLE}")


def parse_sentinel(url: str) -> SentinelUrl:
    """Split a ``redis+sentinel://`` URL; a ConfigurationError that shows the expected form otherwise."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SENTINEL_SCHEMES:
        raise _bad(url, f"the scheme must be {' or '.join(SENTINEL_SCHEMES)}")
    rest, _, query = rest.partition("?")
    creds, at, hostpart = rest.rpartition("@")
    if not at:
        creds, hostpart = "", rest
    netloc, _, path = hostpart.partition("/")
    username = password = None
    if creds:
        user, colon, pw = creds.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if colon else None
    sentinels = []
    for part in netloc.split(","):
        part = part.strip()
        if not part:
            raise _bad(url, "a Sentinel host is empty (list them as host:port,host:port)")
        if part.startswith("["):  # [IPv6]:port
            host, _, port = part[1:].partition("]")
            port = port.removeprefix(":") or str(SENTINEL_PORT)
        else:
            host, colon, port = part.rpartition(":")
            if not colon:
                host, port = part, str(SENTINEL_PORT)
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise _bad(url, f"{part!r} is not host:port")
        sentinels.append((host, int(port)))
    segments = [s for s in path.split("/") if s]
    if not segments:
        raise _bad(url, "the master's service name is missing after the hosts")
    if len(segments) > 2 or (len(segments) == 2 and not segments[1].isdigit()):
        raise _bad(url, f"the path must be /service_name or /service_name/db, got /{path}")
    params = {k: v[-1] for k, v in parse_qs(query).items()}
    unknown = sorted(set(params) - {"sentinel_password", "sentinel_username"})
    if unknown:
        raise _bad(url, f"unknown option(s) {', '.join(unknown)} (known: sentinel_password, sentinel_username)")
    return SentinelUrl(
        sentinels=tuple(sentinels),
        service_name=unquote(segments[0]),
        db=int(segments[1]) if len(segments) == 2 else 0,
        username=username,
        password=password,
        ssl=scheme.lower() == "rediss+sentinel",
        sentinel_username=params.get("sentinel_username"),
        sentinel_password=params.get("sentinel_password"),
    )


@dataclass(frozen=True, slots=True)
class ClusterUrl:
    """A parsed ``redis+cluster://`` URL: start-up nodes (any of them will do) and the nodes' credentials."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    ssl: bool = False


def is_cluster(url: str) -> bool:
    return url.split("://", 1)[0].lower() in CLUSTER_SCHEMES


def _bad_cluster(url: str, why: str) -> ConfigurationError:
    return ConfigurationError(f"{redact(url)!r} is not a Redis Cluster URL: {why}; e.g. {CLUSTER_EXAMPLE}")


def parse_cluster(url: str) -> ClusterUrl:
    """Split a ``redis+cluster://`` URL; a ConfigurationError that shows the expected form otherwise."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in CLUSTER_SCHEMES:
        raise _bad_cluster(url, f"the scheme must be {' or '.join(CLUSTER_SCHEMES)}")
    if "?" in rest:
        raise _bad_cluster(url, "options after '?' are not supported")
    creds, at, hostpart = rest.rpartition("@")
    if not at:
        creds, hostpart = "", rest
    netloc, _, path = hostpart.partition("/")
    if path.strip("/") not in ("", "0"):
        raise _bad_cluster(url, "a cluster has only database 0: drop the /db part")
    username = password = None
    if creds:
        user, colon, pw = creds.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if colon else None
    nodes = []
    for part in netloc.split(","):
        part = part.strip()
        if part.startswith("["):
            host, _, port = part[1:].partition("]")
            port = port.removeprefix(":") or "6379"
        else:
            host, colon, port = part.rpartition(":")
            if not colon:
                host, port = part, "6379"
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise _bad_cluster(url, f"{part!r} is not host:port (list nodes as host:port,host:port)")
        nodes.append((host, int(port)))
    return ClusterUrl(tuple(nodes), username, password, scheme.lower() == "rediss+cluster")


def cluster_url(url: str) -> ClusterUrl:
    """The cluster behind ``url``: a ``redis+cluster://`` URL, or a plain ``redis://host:port`` used with
    ``cluster=True`` (that node is the start-up node)."""
    if is_cluster(url):
        return parse_cluster(url)
    if is_sentinel(url) or url.lower().startswith("unix://"):
        raise ConfigurationError(
            f"cluster=True needs a redis://host:port or redis+cluster:// URL, got {redact(url)!r}: a Sentinel or "
            "unix socket URL names one master, not a cluster")
    check(url)
    split = urlsplit(url)
    if split.path.strip("/") not in ("", "0"):
        raise _bad_cluster(url, "a cluster has only database 0: drop the /db part")
    return ClusterUrl(
        ((split.hostname or "127.0.0.1", split.port or 6379),),
        unquote(split.username) if split.username else None,
        unquote(split.password) if split.password is not None else None,
        split.scheme.lower() == "rediss",
    )


def check(url: str) -> None:
    """Raise a ConfigurationError that says what is wrong unless ``url`` is a Redis, Cluster or Sentinel URL."""
    if is_cluster(url):
        parse_cluster(url)
        return
    if is_sentinel(url):
        parse_sentinel(url)
        return
    try:
        parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        raise ConfigurationError(
            f"{redact(url)!r} is not a Redis URL ({exc}); e.g. redis://127.0.0.1:6379/0, or {EXAMPLE}"
        ) from None


def _sentinel_args(target: SentinelUrl, kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Sentinels' own client options (timeouts, retry, their auth) and the master connections' options."""
    own = {k: v for k, v in kwargs.items() if k.startswith("socket_") or k == "retry"}
    if target.sentinel_password is not None:
        own["password"] = target.sentinel_password
    if target.sentinel_username is not None:
        own["username"] = target.sentinel_username
    conn = {k: v for k, v in kwargs.items() if k not in ("max_connections", "timeout")}
    conn["db"] = target.db
    if target.username is not None:
        conn["username"] = target.username
    if target.password is not None:
        conn["password"] = target.password
    return own, conn


NOREPLICAS = "NOREPLICAS"


class _GuardedConnection(redis.asyncio.sentinel.SentinelManagedConnection):
    """A master connection that treats NOREPLICAS like READONLY: as a lost master (a ConnectionError, which
    every caller already handles as an outage), not as a command error. A master configured with
    ``min-replicas-to-write`` answers NOREPLICAS once its replica was promoted away from it, which is what
    keeps a demoted-but-not-yet-told master from acknowledging writes that the failover then drops."""

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)
        except redis.exceptions.ResponseError as exc:
            if NOREPLICAS not in str(exc):
                raise
            await self.disconnect()
            raise redis.exceptions.ConnectionError(f"the master has no replica to write to ({exc})") from exc


class _GuardedSSLConnection(_GuardedConnection, redis.asyncio.connection.SSLConnection):
    pass


class _SyncGuardedConnection(redis.sentinel.SentinelManagedConnection):
    """``_GuardedConnection`` for the blocking client."""

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)
        except redis.exceptions.ResponseError as exc:
            if NOREPLICAS not in str(exc):
                raise
            self.disconnect()  # type: ignore[no-untyped-call]
            raise redis.exceptions.ConnectionError(f"the master has no replica to write to ({exc})") from exc


class _SyncGuardedSSLConnection(_SyncGuardedConnection, redis.connection.SSLConnection):
    pass


#: how often a Sentinel pool asks the Sentinels who the master is, at most (see ``_MasterCheck``)
MASTER_CHECK_INTERVAL = 1.0


def _stale(connection: Any, master: tuple[str, int] | None) -> bool:
    """An open connection to a server that is no longer the master."""
    return (master is not None and getattr(connection, "_reader", None) is not None
            and (connection.host, connection.port) != master)


class _BlockingSentinelPool(redis.asyncio.sentinel.SentinelConnectionPool, redis.asyncio.BlockingConnectionPool):
    """redis-py's Sentinel pool with the blocking pool's cap (past ``max_connections`` a command waits for a
    free connection, up to ``timeout``, as with ``Broker.connect``'s plain pool), and a master check.

    Why the check: redis-py asks the Sentinels only when a connection opens, and an open connection to the old
    master keeps working after a failover until Sentinel demotes that server, which for a healthy old master
    takes 8-10 s (it waits for the server to report its role). Writes in that time are acknowledged and then
    dropped when the old master resyncs from the new one: in a test at 200 jobs/s, 2,000 completions and the
    jobs enqueued meanwhile. So, at most every ``MASTER_CHECK_INTERVAL``, a connection handed out asks the
    Sentinels again, and one still open to an old master is reopened to the new one."""

    _next_check = 0.0

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        now = time.monotonic()
        if self.is_master and now >= self._next_check:
            self._next_check = now + MASTER_CHECK_INTERVAL
            with contextlib.suppress(redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                await self.get_master_address()  # type: ignore[no-untyped-call]  # closes idle ones to an old master
        connection = await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        if _stale(connection, self.master_address):
            await connection.disconnect()
            try:
                await connection.connect()
            except BaseException:
                await self.release(connection)
                raise
        return connection


class _SyncSentinelPool(redis.sentinel.SentinelConnectionPool):
    """The same master check for the blocking client (``SyncBroker``); see ``_BlockingSentinelPool``."""

    _next_check = 0.0

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        now = time.monotonic()
        if self.is_master and now >= self._next_check:
            self._next_check = now + MASTER_CHECK_INTERVAL
            with contextlib.suppress(redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                self.get_master_address()  # type: ignore[no-untyped-call]
        connection = super().get_connection(*args, **kwargs)
        if _stale(connection, self.master_address):
            connection.disconnect()  # type: ignore[no-untyped-call]
            try:
                connection.connect()  # type: ignore[no-untyped-call]
            except BaseException:
                self.release(connection)
                raise
        return connection


def _no_cluster(url: str) -> None:
    if is_cluster(url):
        raise ConfigurationError(
            f"{redact(url)!r} is a Redis Cluster URL: a single connection pool cannot serve a cluster. asyncq's App "
            "and Worker open a cluster client for it (asyncq.cluster); this part of asyncq works with one Redis "
            "(redis:// or redis+sentinel://) only")


def async_pool(url: str, *, max_connections: int, timeout: float, **kwargs: Any) -> redis.asyncio.ConnectionPool:
    """A capped, blocking asyncio pool for ``url``; ``kwargs`` are connection options (timeouts, retry...)."""
    _no_cluster(url)
    if not is_sentinel(url):
        return redis.asyncio.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=timeout, **kwargs)
    target = parse_sentinel(url)
    own, conn = _sentinel_args(target, kwargs)
    manager = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        list(target.sentinels), sentinel_kwargs=own, **conn)
    conn["connection_class"] = _GuardedSSLConnection if target.ssl else _GuardedConnection
    return _BlockingSentinelPool(  # type: ignore[no-untyped-call]
        target.service_name, manager, max_connections=max_connections, timeout=timeout, **conn)


def sync_pool(url: str, **kwargs: Any) -> redis.ConnectionPool:
    """A blocking-client (sync) pool for ``url``; ``kwargs`` are connection options."""
    _no_cluster(url)
    if not is_sentinel(url):
        return redis.ConnectionPool.from_url(url, **kwargs)
    target = parse_sentinel(url)
    own, conn = _sentinel_args(target, kwargs)
    manager = redis.sentinel.Sentinel(list(target.sentinels), sentinel_kwargs=own, **conn)  # type: ignore[no-untyped-call]
    conn["connection_class"] = _SyncGuardedSSLConnection if target.ssl else _SyncGuardedConnection
    return _SyncSentinelPool(target.service_name, manager, **conn)  # type: ignore[no-untyped-call]


def from_celery(broker_url: str, transport_options: Mapping[str, Any] | None = None) -> str:
    """Celery's ``sentinel://h1:p1;sentinel://h2:p2`` (with ``broker_transport_options["master_name"]``) as a
    ``redis+sentinel://`` URL; any other URL is returned as it is."""
    if not broker_url.lower().startswith("sentinel://"):
        return broker_url
    options = dict(transport_options or {})
    master = options.get("master_name")
    if not master or not isinstance(master, str):
        raise ConfigurationError(
            f"broker_url={broker_url.split('@')[-1]!r} is a Sentinel URL but broker_transport_options has no "
            "'master_name': set broker_transport_options={'master_name': 'mymaster'} (the name in sentinel.conf)"
        )
    hosts, creds, db = [], "", 0
    for part in broker_url.split(";"):
        part = part.strip()
        if not part:
            continue
        split = urlsplit(part)
        if split.scheme.lower() != "sentinel" or not split.hostname:
            raise ConfigurationError(f"broker_url part {part.split('@')[-1]!r} is not sentinel://host:port")
        host = f"[{split.hostname}]" if ":" in split.hostname else split.hostname
        hosts.append(f"{host}:{split.port or SENTINEL_PORT}")
        if split.password is not None and not creds:
            creds = f"{split.username or ''}:{split.password}@"
        if split.path.strip("/").isdigit():
            db = int(split.path.strip("/"))
    query = ""
    sentinel_kwargs = options.get("sentinel_kwargs") or {}
    if isinstance(sentinel_kwargs, Mapping) and sentinel_kwargs.get("password"):
        query = f"?sentinel_password={sentinel_kwargs['password']}"
    return f"redis+sentinel://{creds}{','.join(hosts)}/{master}/{db}{query}"
