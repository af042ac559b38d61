"""The App: one project's settings, task registry, hooks and Redis connection.

There is no global app and nothing connects on import: an App opens its connection the first time it is
used, in the event loop that uses it, and ``await app.close()`` (or ``async with app``) releases it.
"""

from __future__ import annotations

import asyncio
import uuid
import weakref
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar, overload

from asyncq import keys
from asyncq.broker import REDIS_DOWN, Broker, NewJob, SyncBroker, now_ms
from asyncq.cluster import Placer
from asyncq.codec import encode_payload
from asyncq.cron import Schedule, parse_schedule
from asyncq.exceptions import ConfigurationError, SerializationError, UnknownTaskError
from asyncq.flow import check_weight
from asyncq.hooks import Hooks, SendHooks, run_sending, run_sent
from asyncq.job import Job
from asyncq.results import ResultWaiter
from asyncq.serializers import Serializer, get_serializer
from asyncq.settings import AppSettings, check_fields
from asyncq.task import JobSpec, Task, build_options
from asyncq.task_names import UnknownTaskWatch

P = ParamSpec("P")
R = TypeVar("R")

ENQUEUE_BATCH = 1000


class App:
    """``App(redis_url=...)``: register tasks with ``@app.task``, enqueue with ``await task.enqueue(...)``."""

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        serializer: str | Serializer | None = None,
        hooks: Iterable[Hooks] = (),
        settings: AppSettings | None = None,
        **options: Any,
    ) -> None:
        check_fields(AppSettings, options)
        base = settings or AppSettings.from_env()
        overrides = dict(options)
        if redis_url is not None:
            overrides["redis_url"] = redis_url
        if isinstance(serializer, str):
            overrides["serializer"] = serializer
        self.settings = AppSettings(**{**_fields(base), **overrides})
        self.serializer: Serializer = (
            serializer
            if serializer is not None and not isinstance(serializer, str)
            else get_serializer(self.settings.serializer, self.settings.signing_key or None)
        )
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.schedules: list[Schedule] = []
        self.hooks: list[Hooks] = list(hooks)
        #: producer-side hooks around every enqueue (tracing adds one)
        self.send_hooks: list[SendHooks] = []
        #: warns once per task name when live workers lack it (a mistyped name); see task_names.py
        self.unknown_tasks = UnknownTaskWatch()
        # One connection (and result waiter) per event loop: an App may serve a web server's loop and a
        # background thread's loop at once (the Celery layer's sync API does exactly that).
        self._sync_broker: SyncBroker | None = None
        #: on Redis Cluster, which shard each new job goes to (asyncq.cluster); see _cluster_placer
        self._placer_made: Placer | None = None
        self._conns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Broker, ResultWaiter]] = (
            weakref.WeakKeyDictionary()
        )
        if self.settings.tracing:  # asyncq[otel]: imported only when asked for, it needs opentelemetry-api
            from asyncq.integrations.opentelemetry import instrument

            instrument(self)

    def __repr__(self) -> str:
        return f"<asyncq App {len(self.tasks)} tasks>"

    # --- registration ------------------------------------------------------------------------------------
    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(self, fn: None = None, /, **options: Any) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def task(self, fn: Callable[P, R] | None = None, /, **options: Any) -> Any:
        """Register a task: ``@app.task`` or ``@app.task(queue=..., max_tries=..., timeout=...)``.

        Options: name, queue, priority (0-9, default 5), timeout (s), max_tries, retry (RetryPolicy),
        keep_result (s), unique (dedupe identical calls); flow control (asyncq.flow, docs/guide.md "Rate limits
        and fair share"): tenant_from (the keyword argument naming the job's tenant), rate_limit ("50/s" across
        all workers), tenant_rate_limit, max_concurrency, tenant_concurrency. Anything else raises
        ConfigurationError.
        """

        def register(f: Callable[P, R]) -> Task[P, R]:
            if not callable(f):
                raise ConfigurationError(f"@app.task decorates a function, got {f!r}")
            opts = build_options(f, self.settings.default_queue, options)
            if opts.name in self.tasks and self.tasks[opts.name].fn is not f:
                raise ConfigurationError(
                    f"two tasks are named {opts.name!r}; give one of them name=... to tell them apart"
                )
            task: Task[P, R] = Task(self, f, opts)
            self.tasks[opts.name] = task
            return task

        if fn is not None:
            return register(fn)
        return register

    def periodic(
        self, *, cron: str | None = None, every: float | None = None, timezone: str | None = None, **options: Any
    ) -> Callable[[Callable[[], R]], Task[[], R]]:
        """Register a task and run it on a schedule: ``cron="*/5 * * * *"`` or ``every=30`` (seconds).

        A cron expression is read in ``timezone`` (an IANA name; default: the App's ``timezone``, UTC unless
        set), DST-safe (see ``asyncq.cron``). Each tick runs once however many workers run: the tick is claimed
        in Redis before it is enqueued.
        """
        if timezone is not None and every is not None:
            raise ConfigurationError("timezone= goes with cron=: every= ticks are seconds since the epoch, in no zone")
        schedule_fn = parse_schedule(cron=cron, every=every, timezone=timezone or self.settings.timezone)

        def register(f: Callable[[], R]) -> Task[[], R]:
            t = self.task(**options)(f)
            self.schedules.append(Schedule(task_name=t.name, trigger=schedule_fn))
            return t

        return register

    def get_task(self, name: str) -> Task[Any, Any]:
        try:
            return self.tasks[name]
        except KeyError:
            raise UnknownTaskError(
                f"no task named {name!r} is registered on this App; known: {', '.join(sorted(self.tasks)) or '-'}"
            ) from None

    # --- connection --------------------------------------------------------------------------------------
    def _conn(self) -> tuple[Broker, ResultWaiter]:
        loop = asyncio.get_running_loop()
        conn = self._conns.get(loop)
        if conn is None and self.settings.is_cluster:
            from asyncq.broker_cluster import ClusterBroker

            broker: Broker = ClusterBroker.connect(
                self.settings.redis_url,
                connect_timeout=self.settings.connect_timeout,
                command_timeout=self.settings.command_timeout,
                max_connections=self.settings.max_connections,
                namespace=self.settings.namespace,
                shards=self.settings.queue_shards,
                wait_replicas=self.settings.enqueue_wait_replicas,
                wait_timeout=self.settings.enqueue_wait_timeout,
                pubsub=self.settings.cluster_pubsub,
            )
            conn = self._conns[loop] = (broker, ResultWaiter(broker))
        elif conn is None:
            broker = Broker.connect(
                self.settings.redis_url,
                connect_timeout=self.settings.connect_timeout,
                command_timeout=self.settings.command_timeout,
                max_connections=self.settings.max_connections,
                namespace=self.settings.namespace,
            )
            conn = self._conns[loop] = (broker, ResultWaiter(broker))
        return conn

    async def broker(self) -> Broker:
        """The Redis client for the running event loop (created on first use)."""
        return self._conn()[0]

    def results(self) -> ResultWaiter:
        """The result waiter of the running event loop."""
        return self._conn()[1]

    async def close(self) -> None:
        """Close this event loop's connection (other loops close their own)."""
        conn = self._conns.pop(asyncio.get_running_loop(), None)
        if conn is not None:
            broker, waiter = conn
            await waiter.close()
            await broker.aclose()

    async def __aenter__(self) -> App:
        await self.broker()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def set_tenant_weight(self, queue: str, tenant: str, weight: float) -> None:
        """Give ``tenant`` ``weight`` turns for every one turn of a weight-1 tenant in ``queue`` (default 1).
        Takes effect at the next claim of every worker; weight 1 removes the entry."""
        broker = await self.broker()
        await broker.set_tenant_weight(keys.check_queue_name(queue), keys.check_tenant(tenant), check_weight(weight))

    async def ping(self) -> bool:
        broker = await self.broker()
        try:
            return bool(await broker.ping())
        except REDIS_DOWN as exc:
            raise broker.unavailable(exc, "pinging") from exc

    # --- enqueue -----------------------------------------------------------------------------------------
    def job(self, job_id: str) -> Job:
        """A handle on an existing job, by id."""
        return Job(self, job_id)

    def job_id_for(self, queue: str, job_id: str | None = None, *, tenant: str | None = None) -> str:
        """The id a job of ``queue`` gets if enqueued with ``job_id=`` this (a new uuid hex if None).

        On one Redis that is ``job_id`` itself. On Redis Cluster it carries its shard (``{queue:shard}<id>``,
        ``asyncq.cluster``): callers that must know a job's id before enqueueing it (the Celery layer's task ids)
        ask here, then enqueue with ``job_id=`` the answer, which is kept as is."""
        given = job_id is not None
        raw = job_id if job_id is not None else uuid.uuid4().hex
        placer = self._cluster_placer()
        if placer is None:
            return raw
        queue = keys.check_queue_name(queue)
        return placer.place(queue, self.settings.queue_shards.get(queue, 1), raw, given=given, tenant=tenant)

    async def tick_job_id(self, schedule: Schedule, tick_ms: int) -> str:
        """The id of one tick's job of a periodic task (``cron:<name>:<tick ms>``; on Redis Cluster with the
        shard tag of the shard every tick of that schedule goes to): the dashboard finds the last tick by it."""
        raw = f"cron:{schedule.name}:{tick_ms}"
        placer = self._cluster_placer()
        if placer is None:
            return raw
        task = self.tasks.get(schedule.task_name)
        queue = schedule.queue or (task.options.queue if task else self.settings.default_queue)
        broker = await self.broker()
        await broker.refresh_layout()
        n = max(self.settings.queue_shards.get(queue, 1), broker.shard_count(queue))
        return placer.place(queue, n, raw, given=True, pin=keys.cron_last_key(schedule.name))

    def _cluster_placer(self) -> Placer | None:
        """The shard chooser on Redis Cluster, None on one Redis (read per call: the CLI may swap the settings)."""
        if not self.settings.is_cluster:
            return None
        if self._placer_made is None:
            self._placer_made = Placer()
        return self._placer_made

    async def enqueue(self, task: str | Task[Any, Any], /, *args: Any, **kwargs: Any) -> Job:
        """Enqueue by task name or Task; per-call options go through ``task.enqueue_with``."""
        name = task if isinstance(task, str) else task.name
        return (await self.enqueue_many([JobSpec(name, tuple(args), dict(kwargs))]))[0]

    def new_job(self, spec: JobSpec, now: int, *, guard_key: str = "", guard_tick: int = 0) -> NewJob:
        """The job ``spec`` becomes for ``Broker.enqueue``: id, queue, lane, run-at score and encoded payload."""
        task = self.tasks.get(spec.task_name)
        opts = spec.options
        queue = opts.queue or (task.options.queue if task else self.settings.default_queue)
        priority = opts.priority if opts.priority is not None else (
            task.options.priority if task else keys.DEFAULT_PRIORITY
        )
        if opts.at is not None:
            at = opts.at if opts.at.tzinfo else opts.at.replace(tzinfo=UTC)
            score = int(at.timestamp() * 1000)
        else:
            score = now + int((opts.delay or 0) * 1000)
        if opts.job_id:
            job_id = opts.job_id
        elif task is not None and task.options.unique:
            job_id = task.unique_id(spec.args, spec.kwargs)
        else:
            job_id = uuid.uuid4().hex
        try:
            payload = encode_payload(
                self.serializer, spec.task_name, spec.args, spec.kwargs, now, queue=queue, priority=priority,
                headers=opts.headers,
            )
        except SerializationError as exc:
            raise SerializationError(f"cannot enqueue {spec.task_name}: {exc}") from exc
        ttl_ms = max(score - now, 0) + int(self.settings.payload_ttl * 1000)
        lane = keys.lane_key(queue, priority)
        tenant = job_tenant(task, spec)
        flow = keys.flow_suffix(tenant, task.name if task and task.options.limits.any else None)
        ring = keys.fair_key(lane) if flow else ""
        placer = self._cluster_placer()
        if placer is not None:
            job_id = placer.place(
                queue, self.settings.queue_shards.get(queue, 1), job_id,
                given=bool(opts.job_id) or bool(task is not None and task.options.unique), tenant=tenant,
                pin=guard_key)
        return NewJob(job_id, lane + flow, queue, score, ttl_ms, payload, guard_key, guard_tick, ring, flow)

    async def enqueue_many(self, specs: Sequence[JobSpec], *, batch_size: int = ENQUEUE_BATCH) -> list[Job]:
        """Enqueue many jobs, one round trip per ``batch_size`` (each batch is atomic).

        Every argument is serialized before anything is sent, so a bad argument enqueues nothing.
        """
        specs, tokens = run_sending(self.send_hooks, specs) if self.send_hooks else (specs, [])
        try:
            now = now_ms()
            new = [self.new_job(spec, now) for spec in specs]
            broker = await self.broker()
            jobs: list[Job] = []
            for start in range(0, len(new), batch_size):
                chunk = new[start : start + batch_size]
                statuses = await broker.enqueue(chunk)
                jobs += self._handles(chunk, statuses, specs[start : start + batch_size])
        except BaseException as exc:
            run_sent(self.send_hooks, tokens, [], exc)
            raise
        run_sent(self.send_hooks, tokens, [j.job_id for j in jobs], None)
        await self.unknown_tasks.after_enqueue(self, {spec.task_name for spec in specs})
        return jobs

    def enqueue_many_sync(self, specs: Sequence[JobSpec], *, batch_size: int = ENQUEUE_BATCH) -> list[Job]:
        """``enqueue_many`` for sync code (no event loop needed): same payloads, same script, same guarantees.
        The returned handles are for their ids; their methods are async."""
        specs, tokens = run_sending(self.send_hooks, specs) if self.send_hooks else (specs, [])
        try:
            now = now_ms()
            new = [self.new_job(spec, now) for spec in specs]
            if self._sync_broker is None and self.settings.is_cluster:
                from asyncq.broker_cluster import SyncClusterBroker

                self._sync_broker = SyncClusterBroker(
                    self.settings.redis_url, connect_timeout=self.settings.connect_timeout,
                    command_timeout=self.settings.command_timeout, namespace=self.settings.namespace,
                    shards=self.settings.queue_shards, pubsub=self.settings.cluster_pubsub,
                    wait_replicas=self.settings.enqueue_wait_replicas, wait_timeout=self.settings.enqueue_wait_timeout)
            elif self._sync_broker is None:
                self._sync_broker = SyncBroker(self.settings.redis_url, connect_timeout=self.settings.connect_timeout,
                                               command_timeout=self.settings.command_timeout,
                                               namespace=self.settings.namespace)
            jobs: list[Job] = []
            for start in range(0, len(new), batch_size):
                chunk = new[start : start + batch_size]
                statuses = self._sync_broker.enqueue(chunk)
                jobs += self._handles(chunk, statuses, specs[start : start + batch_size])
        except BaseException as exc:
            run_sent(self.send_hooks, tokens, [], exc)
            raise
        run_sent(self.send_hooks, tokens, [j.job_id for j in jobs], None)
        self.unknown_tasks.after_enqueue_sync(self._sync_broker, {spec.task_name for spec in specs})
        return jobs

    def _handles(self, chunk: Sequence[NewJob], statuses: Sequence[int], specs: Sequence[JobSpec]) -> list[Job]:
        return [
            Job(self, nj.job_id, queue=nj.queue, priority=_lane_priority(nj.lane, spec.options.priority),
                created=status == 1, lane=nj.lane)
            for nj, status, spec in zip(chunk, statuses, specs, strict=True)
        ]

    async def enqueue_tick(self, schedule: Schedule, tick: datetime) -> bool:
        """Enqueue one tick of a periodic task unless some worker already did (True if this call did)."""
        tick_ms = int(tick.timestamp() * 1000)
        spec = JobSpec(schedule.task_name, tuple(schedule.args), dict(schedule.kwargs)).set(
            job_id=f"cron:{schedule.name}:{tick_ms}", queue=schedule.queue
        )
        nj = self.new_job(spec, now_ms(), guard_key=keys.cron_last_key(schedule.name), guard_tick=tick_ms)
        broker = await self.broker()
        return (await broker.enqueue([nj]))[0] == 1


def _lane_priority(lane: str, given: int | None) -> int:
    if given is not None:
        return given
    _, _, p = keys.base_lane(lane).partition("#p")
    return int(p) if p else keys.DEFAULT_PRIORITY


def job_tenant(task: Task[Any, Any] | None, spec: JobSpec) -> str | None:
    """The tenant of a job: the call's ``tenant=``, else the task's ``tenant_from`` keyword argument."""
    if spec.options.tenant is not None:
        return spec.options.tenant
    if task is None or task.options.tenant_from is None or task.options.tenant_from not in spec.kwargs:
        return None
    value = spec.kwargs[task.options.tenant_from]
    return None if value is None else keys.check_tenant(str(value))


def _fields(s: AppSettings) -> dict[str, Any]:
    return {name: getattr(s, name) for name in AppSettings.__dataclass_fields__}
