"""The side-by-side router: per call, does ``delay()`` / ``apply_async()`` go to Celery or to asyncq?

Rules map a task name or a glob (``fnmatch``: ``*``, ``?``, ``[...]``) to a target:

- ``celery``: publish a Celery protocol-v2 message to the kombu list of the call's queue (a stock
  ``celery worker`` runs it; ``compat/sending.py``);
- ``asyncq``: enqueue an asyncq job (the usual path of ``asyncq.compat``);
- ``N%`` (0 to 100, decimals allowed): a canary, N percent of the calls to asyncq and the rest to Celery,
  decided per call by a uniform draw in [0, 1) (``draw() < N / 100`` goes to asyncq).

Which rule applies to a task name: an exact name beats any glob; among matching globs the *longest pattern*
wins (``billing.invoices.*`` beats ``billing.*`` beats ``*``); equally long globs are ordered alphabetically, so
the choice is always the same. When no rule matches, the router's ``default`` applies (``celery``: a team
turning the router on starts with everything where it ran before and moves task by task).

The rules live in Redis, in the HASH ``keys.ROUTER_RULES`` (field: pattern, value: target), set with
``asyncq migrate route set|rm|show``. A producer caches them for ``ttl`` seconds (2 by default), so a change
reaches every running producer within the TTL, without a restart and without a Redis read per call. If a
refresh fails, the last rules read are kept (and the failure logged) until Redis answers again.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Final, cast

from redis import Redis as SyncRedis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError, ResponseError

from asyncq import keys
from asyncq.redis_url import sync_pool

log = logging.getLogger("asyncq.compat.router")

CELERY: Final = "celery"
ASYNCQ: Final = "asyncq"
TARGETS: Final = (CELERY, ASYNCQ)
DEFAULT_TTL: Final = 2.0


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: ``target`` is celery or asyncq, or ``percent`` is the canary share that goes to asyncq."""

    pattern: str
    target: str | None = None
    percent: float | None = None

    @property
    def value(self) -> str:
        """The rule as stored and typed on the command line."""
        return self.target if self.target is not None else f"{self.percent:g}%"

    def describe(self) -> str:
        if self.target is not None:
            return self.target
        return f"{self.percent:g}% asyncq, {100 - (self.percent or 0):g}% celery"


def parse_rule(pattern: str, value: str) -> Rule:
    """``celery``, ``asyncq`` or ``N%``; anything else raises ``ValueError`` saying what is allowed."""
    if not pattern or not pattern.strip():
        raise ValueError("a route pattern must be a task name or a glob such as 'billing.*'")
    v = value.strip().lower()
    if v in TARGETS:
        return Rule(pattern, target=v)
    if v.endswith("%"):
        try:
            percent = float(v[:-1])
        except ValueError:
            percent = -1.0
        if 0.0 <= percent <= 100.0:
            return Rule(pattern, percent=percent)
    raise ValueError(f"route {pattern!r} -> {value!r}: use celery, asyncq or a canary percentage such as 10% "
                     "(that share of the calls goes to asyncq, the rest to celery)")


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


class Rules:
    """An immutable set of rules and the matching order described in the module docstring."""

    def __init__(self, rules: Mapping[str, Rule] | None = None) -> None:
        self.by_pattern: dict[str, Rule] = dict(rules or {})
        self._globs = sorted((r for r in self.by_pattern.values() if _is_glob(r.pattern)),
                             key=lambda r: (-len(r.pattern), r.pattern))

    @classmethod
    def from_hash(cls, raw: Mapping[Any, Any]) -> Rules:
        rules: dict[str, Rule] = {}
        for k, v in raw.items():
            try:  # a rule written by hand may be anything: one bad rule is skipped, never fatal
                pattern = k.decode() if isinstance(k, bytes) else str(k)
                value = v.decode() if isinstance(v, bytes) else str(v)
                rules[pattern] = parse_rule(pattern, value)
            except ValueError as exc:  # UnicodeDecodeError included
                log.warning("ignoring invalid route rule in %s: %s", keys.ROUTER_RULES, exc)
        return cls(rules)

    def match(self, task_name: str) -> Rule | None:
        exact = self.by_pattern.get(task_name)
        if exact is not None:
            return exact
        for rule in self._globs:
            if fnmatchcase(task_name, rule.pattern):
                return rule
        return None

    def __len__(self) -> int:
        return len(self.by_pattern)


class Router:
    """Decides where each call goes. Give it to ``Celery(..., asyncq_router=Router(...))`` or pass
    ``asyncq_router=True`` for the defaults (the app's broker URL, ``ttl=2``, ``default="celery"``).

    ``draw`` returns a float in [0, 1) per canary decision (``random.random`` by default; inject one in
    tests); ``clock`` is the monotonic clock the cache TTL is measured with."""

    def __init__(self, url: str | None = None, *, ttl: float = DEFAULT_TTL, default: str = CELERY,
                 draw: Callable[[], float] = random.random, clock: Callable[[], float] = time.monotonic) -> None:
        if default not in TARGETS:
            raise ValueError(f"default={default!r}: use {CELERY!r} or {ASYNCQ!r}")
        self.url = url
        self.ttl = ttl
        self.default = default
        self.draw = draw
        self.clock = clock
        self._rules: Rules | None = None
        self._read_at = 0.0
        self._client: SyncRedis | None = None
        self._lock = threading.Lock()
        #: the rules' key in the bound app's namespace (``bind``); arq's layout until then
        self.rules_key = keys.ROUTER_RULES

    def bind(self, url: str, namespace: str = "") -> None:
        """Use this Redis URL unless one was given (the Celery app's broker URL), and the rules of the app's
        namespace (``asyncq_namespace``: ``asyncq migrate route --namespace`` writes them)."""
        if self.url is None:
            self.url = url
        self.rules_key = rules_key(namespace)

    def sync_client(self) -> SyncRedis:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    if self.url is None:
                        raise ValueError("the router has no Redis URL: Router(url=...) or bind(url)")
                    self._client = SyncRedis(connection_pool=sync_pool(self.url))  # Sentinel too
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # --- the rules, cached ----------------------------------------------------------------------------------
    def _fresh(self) -> bool:
        return self._rules is not None and self.clock() - self._read_at < self.ttl

    def _store(self, raw: Mapping[Any, Any]) -> Rules:
        rules = Rules.from_hash(raw)
        self._rules, self._read_at = rules, self.clock()
        return rules

    def _unreadable(self, exc: Exception) -> Rules:
        """The rules key holds foreign data (another type): route by the default, and say how to fix it."""
        log.error("%s cannot be read as route rules (%s); routing every task by the default (%s) until it is "
                  "fixed: redis-cli DEL %s, then set the rules again (asyncq migrate route)", keys.ROUTER_RULES, exc,
                  self.default, keys.ROUTER_RULES)
        return self._store({})

    def _stale(self, exc: Exception) -> Rules:
        if self._rules is None:
            raise exc
        log.warning("could not refresh the route rules (%s); using the last ones read", exc)
        self._read_at = self.clock()
        return self._rules

    def rules(self) -> Rules:
        """The rules, read from Redis at most once per ``ttl`` (sync code)."""
        if self._fresh():
            assert self._rules is not None
            return self._rules
        try:
            return self._store(cast(Any, self.sync_client().hgetall(self.rules_key)))
        except ResponseError as exc:
            return self._unreadable(exc)
        except RedisError as exc:
            return self._stale(exc)

    async def arules(self, client: AsyncRedis) -> Rules:
        """The rules for async code, read with the caller's asyncio client."""
        if self._fresh():
            assert self._rules is not None
            return self._rules
        try:
            raw: Mapping[Any, Any] = await cast(Any, client.hgetall(self.rules_key))
            return self._store(raw)
        except ResponseError as exc:
            return self._unreadable(exc)
        except RedisError as exc:
            return self._stale(exc)

    def invalidate(self) -> None:
        """Forget the cached rules: the next call reads them again."""
        self._rules = None

    # --- decisions ------------------------------------------------------------------------------------------
    def decide(self, task_name: str, rules: Rules) -> str:
        """``celery`` or ``asyncq`` for one call (a canary draws once per call)."""
        rule = rules.match(task_name)
        if rule is None:
            return self.default
        if rule.target is not None:
            return rule.target
        return ASYNCQ if self.draw() * 100.0 < (rule.percent or 0.0) else CELERY

    def route(self, task_name: str) -> str:
        return self.decide(task_name, self.rules())

    async def aroute(self, task_name: str, client: AsyncRedis) -> str:
        return self.decide(task_name, await self.arules(client))


# --- the rules in Redis (the CLI's side) ----------------------------------------------------------------------
def rules_key(namespace: str = "") -> str:
    """The rules' HASH in a namespace (``keys.Keys``): an app's router reads its own namespace's rules."""
    return keys.Keys.of(namespace)(keys.ROUTER_RULES)


def set_rule(client: SyncRedis, pattern: str, value: str, namespace: str = "") -> Rule:
    rule = parse_rule(pattern, value)
    client.hset(rules_key(namespace), rule.pattern, rule.value)
    return rule


def remove_rule(client: SyncRedis, pattern: str, namespace: str = "") -> bool:
    return bool(client.hdel(rules_key(namespace), pattern))


def load_rules(client: SyncRedis, namespace: str = "") -> Rules:
    return Rules.from_hash(cast(Any, client.hgetall(rules_key(namespace))))


def explain(rules: Rules, task_name: str, default: str = CELERY) -> tuple[str, str]:
    """(where the task goes now, the rule that decides it) for ``asyncq migrate route show``."""
    rule = rules.match(task_name)
    if rule is None:
        return default, f"no rule matches: the default ({default})"
    return rule.describe(), rule.pattern
