"""Every Redis command goes through a named method of the seam (ARCHITECTURE.md, "Rules the layers keep").

The core's commands are methods of ``asyncq.broker.Broker`` (``broker.py`` and ``broker_reads.py``); the
Celery wing's own state (``asyncq:celery:*`` keys, Celery's result backend) goes through ``compat/store.py``;
kombu's lists and the Celery scripts through ``celery_protocol/transport.py``. So a transport change (Sentinel,
Cluster) or a key layout change touches those modules only. Read from the source with ``ast``: a call of a
Redis command name counts when the name is Redis-only (``hget``, ``zrange``, ``pipeline`` ...) or when a
common name (``get``, ``set``, ``delete`` ...) is called on something named like a Redis client.

Not counted: ``ping()`` (no keys) and ``pubsub()`` (a subscriber connection: the result waiter, the wake
listener and the Celery pidbox listener subscribe to channels named in ``asyncq.keys`` / ``kombu_layout``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from asyncq.migrate._parse import parse  # CPython 3.11.7's spurious SystemError in ast.parse

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "asyncq"

#: the seam: modules that may issue Redis commands themselves
SEAM = {
    "broker.py", "broker_reads.py", "scripts.py", "compat/store.py", "celery_protocol/transport.py",
    # the Broker on Redis Cluster (routes each method to its shard's Broker view)
    "broker_cluster.py",
    # Celery's result document: its reader and writer, on the client compat/store.py hands them
    "celery_protocol/results.py",
    # the side-by-side router keeps its own small Redis client for the routing table (asyncq migrate route)
    "compat/router.py",
    # tools that inspect a foreign deployment's Redis (a Celery or arq project being migrated)
    "migrate/scanner.py",
}
#: names that only a Redis client has
REDIS_ONLY = frozenset({
    "hget", "hset", "hgetall", "hmget", "hdel", "hlen", "hsetnx", "hincrby", "hkeys", "hexists", "hscan",
    "hscan_iter", "hvals", "hmset", "zrange", "zrevrange", "zrangebyscore", "zrevrangebyscore", "zscore",
    "zmscore", "zcard", "zadd", "zrem", "zcount", "zrank", "zremrangebyscore", "zpopmin", "zpopmax", "pipeline",
    "setex", "psetex", "expire", "pexpire", "pttl", "scan_iter", "sadd", "srem", "smembers", "sismember",
    "smismember", "scard", "lrange", "llen", "lpush", "rpush", "lrem", "lpop", "rpop", "brpop", "blpop", "incr",
    "incrby", "decr", "mget", "mset", "evalsha", "getdel", "unlink", "dbsize", "execute_command", "memory_usage",
    "client_setname", "register_script",
})
#: names that dicts and sets have too: counted only on a receiver named like a Redis client
COMMON = frozenset({"get", "set", "delete", "exists", "publish", "keys", "type", "info", "time", "eval", "scan", "ttl"})
CLIENTS = re.compile(r"^_*(broker|redis|client|pipe|conn)$|_(broker|redis|client)$")


def _receiver_name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Call):
        return _receiver_name(node.func)
    if isinstance(node, ast.Await):
        return _receiver_name(node.value)
    return ""


def raw_calls(path: Path) -> list[str]:
    found = []
    for node in ast.walk(parse(path.read_text(encoding="utf-8"))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        name = node.func.attr
        receiver = _receiver_name(node.func.value).lower()
        if name in REDIS_ONLY or (name in COMMON and CLIENTS.search(receiver)):
            found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {receiver}.{name}(")
    return found


def test_the_check_sees_raw_commands() -> None:
    """Guards the test itself: the seam modules do issue raw commands, and the check finds them."""
    assert any(".pipeline(" in c for c in raw_calls(PACKAGE / "broker.py"))
    assert raw_calls(PACKAGE / "compat" / "store.py")


def test_redis_commands_only_through_the_seam() -> None:
    bad = [c for p in sorted(PACKAGE.rglob("*.py")) if p.relative_to(PACKAGE).as_posix() not in SEAM
           for c in raw_calls(p)]
    assert not bad, "raw Redis commands outside the seam (add a named method to Broker, or to compat/store.py " \
        "for the Celery wing):\n" + "\n".join(bad)
