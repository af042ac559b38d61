"""The worker process: claim jobs when a slot is free, keep their leases alive, stop gracefully.

``Worker`` serves arq's data model with asyncq's loop: a Lua claim over several queues and priority lanes, a
pub/sub wake-up instead of arq's 0.5 s poll, leases renewed while jobs run, and a SIGTERM path that hands
unfinished jobs back instead of losing them. It writes arq's health-check key in arq's format, so arq tooling
still reads it, without importing arq.

Concurrency is a count of slots: a job is claimed only when a slot is free, so nothing waits in this
process's memory behind a long job (no prefetch).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Sequence
from datetime import datetime
from typing import Any

import anyio
import orjson

from asyncq import keys
from asyncq.app import App
from asyncq.broker import REDIS_DOWN, Broker, Claimed, now_ms, redact
from asyncq.context import reset_thread_limiter, set_thread_limiter
from asyncq.exceptions import ConfigurationError
from asyncq.flow import pack_limits
from asyncq.hooks import Hooks, call_hooks
from asyncq.logs import banner
from asyncq.metrics import WorkerMetrics, serve_metrics
from asyncq.settings import WorkerSettings
from asyncq.stats import StatsRecorder
from asyncq.worker.executor import Executor, RunningJob
from asyncq.worker.finisher import Finisher
from asyncq.worker.listener import Listener, cancel_requested
from asyncq.worker.scheduler import run_schedules
from asyncq.worker.sources import JobSource, SourceHost
from asyncq.worker.state import WorkerFlags, WorkerState

log = logging.getLogger("asyncq.worker")

# A stopping worker must exit even when Redis hangs (redis-py can also swallow a cancellation that lands during
# a command with a socket timeout), so every step after the grace period has a budget and is then abandoned:
# worst case, the process ends about shutdown_grace + HAND_BACK_WAIT + CLEANUP_WAIT + 3 x STOP_WAIT seconds
# after SIGTERM (the claim wait overlaps the grace period).
CLAIM_WAIT = 1.0  # a claim in flight when the stop comes (the grace period runs meanwhile)
HAND_BACK_WAIT = 3.0  # handing unfinished jobs back after the grace period
CLEANUP_WAIT = 2.0  # background tasks, listener, finisher and the sign-off, together
STOP_WAIT = 1.5  # closing connections, and each later wait of the process runner
FLAP_LOG = 5.0  # seconds between "Redis unreachable" log lines of a flapping connection
STARTUP_LOG_EVERY = 10.0  # while Redis is unreachable at start-up, say so at most this often


async def bounded(aw: Awaitable[Any], seconds: float, what: str) -> None:
    """Await ``aw`` for at most ``seconds``; past that, cancel it once, abandon it and say so."""
    task = asyncio.ensure_future(aw)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved: no "never retrieved" noise
        log.warning("shutdown: %s did not stop within %.0f s; abandoned", what, seconds)
        return
    if not task.cancelled() and task.exception() is not None:
        exc = task.exception()
        if not isinstance(exc, REDIS_DOWN):
            log.warning("shutdown: %s failed: %r", what, exc)


def arq_health_line(stats: Counter[str], ongoing: int, queued: int) -> str:
    """The health-check text arq's workers write (``arq --check`` and arq dashboards read it)."""
    return (f"{datetime.now():%b-%d %H:%M:%S} j_complete={stats['complete']} j_failed={stats['failed']} "
            f"j_retried={stats['retried']} j_ongoing={ongoing} queued={queued}")


class Worker:
    """Runs the tasks of one App. Create it and ``await worker.run()`` inside an event loop (or call
    ``asyncq.run_worker``); ``asyncq worker`` runs it as a whole process."""

    def __init__(self, app: App, settings: WorkerSettings | None = None, *, sources: Sequence[JobSource] = (),
                 **overrides: Any) -> None:
        if not app.tasks:
            raise ConfigurationError(
                "this App has no tasks registered; import the module that defines them "
                "(asyncq worker mypackage.tasks:app)"
            )
        self.app = app
        self.settings = settings or WorkerSettings.from_env(**overrides)
        if settings is not None and overrides:
            raise ConfigurationError("pass either settings= or keyword overrides, not both")
        self.worker_id = self.settings.name or (
            f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}".replace(":", "-"))
        self.recorder = StatsRecorder()  # job statistics for the dashboard, flushed every stats_interval
        self.hooks: list[Hooks] = [*app.hooks, self.recorder] if self.settings.stats_interval else list(app.hooks)
        self.metrics: WorkerMetrics | None = None
        if self.settings.metrics_port:
            self.metrics = WorkerMetrics(in_flight=lambda: len(self.running),
                                         celery_names=self.settings.metrics_celery_names)
            self.hooks.append(self.metrics)
        self.stats: Counter[str] = Counter()
        self.running: dict[str, RunningJob] = {}
        self.stopping = asyncio.Event()
        self.flags = WorkerFlags()
        self._wake = asyncio.Event()
        self._packed_limits: bytes | None = None
        self._slot_free = asyncio.Event()
        self._redis_ok = True
        self._redis_back = asyncio.Event()
        self._last_outage = -1e9  # monotonic time of the last failed Redis call
        self._outage_pending = False  # tell the fleet (claim.lua's reconnect window) before the next claim
        self._last_down_log = -1e9  # monotonic time "Redis unreachable" was last logged (see redis_down)
        self._down_logged = False
        #: ids of jobs whose outcome waits for Redis to answer (claiming waits for them after an outage)
        self.holding: set[str] = set()
        self._loop_beat = time.monotonic()  # the claim loop's last sign of progress (the watchdog reads it)
        self._loop_state = "starting"
        self._wedged_logged = False
        self._broken_logged: dict[str, float] = {}
        self._stop_at: float | None = None  # monotonic time of the stop request (the grace period starts there)
        self.queues = self.settings.queues or default_queues(app)
        #: extra job sources (asyncq worker --celery-queues): their jobs wait in asyncq queues served after ours
        self.sources = tuple(sources)
        for source in self.sources:
            self.queues = (*self.queues, *(q for q in source.queues if q not in self.queues))
        self._lanes = [lane for q in self.queues for lane in keys.lanes_by_priority(q)]
        self._lane_queues = [q for q in self.queues for _ in keys.lanes_by_priority(q)]
        self._tasks: set[asyncio.Task[Any]] = set()
        self._background: list[asyncio.Task[Any]] = []
        self.broker: Broker = None  # type: ignore[assignment]  # set in run(), in the loop that uses it
        self.executor: Executor = None  # type: ignore[assignment]
        self.finisher: Finisher = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<asyncq Worker {self.worker_id} queues={','.join(self.queues)} running={len(self.running)}>"

    # --- Redis health ------------------------------------------------------------------------------------
    def redis_down(self, exc: BaseException) -> None:
        if self._redis_ok and time.monotonic() - self._last_down_log >= FLAP_LOG:
            # a flapping link (on Redis Cluster: one master failing over while the others answer) logs one
            # unreachable/reachable pair per FLAP_LOG seconds, not one per call
            log.error("Redis unreachable (%s); the worker keeps running, holds the outcomes it cannot write and "
                      "retries with backoff", exc)
            self._last_down_log = time.monotonic()
            self._down_logged = True
        self._redis_ok = False
        self._redis_back.clear()
        self._last_outage = time.monotonic()
        self._outage_pending = True

    def _redis_up(self) -> None:
        if not self._redis_ok and self._down_logged:
            log.warning("Redis is reachable again; writing held outcomes, then claiming resumes")
            self._down_logged = False
        self._redis_ok = True
        self._redis_back.set()

    async def wait_for_redis(self, timeout: float) -> None:
        """Sleep ``timeout`` seconds, or less if Redis is seen answering again meanwhile."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._redis_back.wait()

    def health(self) -> str:
        """What the worker is doing, for its heartbeat: serving, full, redis-down, wedged or stopping.

        Wedged: the claim loop made no progress for ``wedged_after`` seconds although it had free slots (a hung
        connection, a swallowed cancellation). Such a worker must not look alive in `asyncq queues`.
        """
        if self.stopping.is_set():
            return "stopping"
        age = time.monotonic() - self._loop_beat
        if self._loop_state != "full" and age > self.settings.wedged_after:
            if not self._wedged_logged:
                self._wedged_logged = True
                log.error("worker %s is wedged: its claim loop made no progress for %.0f s (last step: %s); "
                          "restart it", self.worker_id, age, self._loop_state)
            return "wedged"
        self._wedged_logged = False
        if not self._redis_ok:
            return "redis-down"
        return "full" if self._loop_state == "full" else "serving"

    def _beat(self, state: str) -> None:
        self._loop_beat = time.monotonic()
        self._loop_state = state

    def _note_broken(self, broken: dict[str, str]) -> None:
        """Log keys the claim script had to skip (foreign data in asyncq's keys), at most every 5 minutes each."""
        now = time.monotonic()
        for key, error in broken.items():
            if now - self._broken_logged.get(key, -1e9) > 300:
                self._broken_logged[key] = now
                log.error("Redis key %s holds data asyncq cannot use (%s); its jobs are skipped until it is "
                          "repaired or deleted (redis-cli TYPE / DEL)", key, error)

    # --- run ---------------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Serve (``main``), then release the App's connections."""
        try:
            await self.main()
        finally:
            await bounded(self.close(), STOP_WAIT, "closing the Redis connections")

    async def main(self) -> None:
        """Serve until SIGTERM/SIGINT (or ``stop()``), or, in burst mode, until the queues are empty."""
        self.broker = await self.app.broker()
        self.finisher = Finisher(self.broker)
        self.state = WorkerState(
            app=self.app, settings=self.settings, worker_id=self.worker_id, broker=self.broker,
            finisher=self.finisher, hooks=self.hooks, stats=self.stats, holding=self.holding,
            limiter=anyio.CapacityLimiter(self.settings.threads), redis_down=self.redis_down,
            wait_for_redis=self.wait_for_redis, flags=self.flags,
        )
        self.executor = Executor(self.state)
        limiter_token = set_thread_limiter(self.state.limiter)  # inherited by every job task created below
        loop = asyncio.get_running_loop()
        installed = []
        if self.settings.handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, self._on_signal, sig)
                    installed.append(sig)
        listener = Listener(self.broker, self.queues, self._wake.set, self._on_abort, self.redis_down)
        metrics_server = None
        try:
            if self.metrics is not None:
                metrics_server = await serve_metrics(
                    self.metrics.registry, self.settings.metrics_host, self.settings.metrics_port
                )
            if not await self._await_redis():
                return  # stopped before Redis ever answered: nothing was claimed, nothing to hand back
            self.finisher.start()
            listener.start()
            self._background = [
                asyncio.create_task(self._renew_loop(), name="asyncq-leases"),
                asyncio.create_task(self._heartbeat_loop(), name="asyncq-heartbeat"),
                asyncio.create_task(run_schedules(self.app, self.stopping), name="asyncq-scheduler"),
            ]
            if self.settings.stats_interval:
                self._background.append(asyncio.create_task(
                    self.recorder.run(self.broker, self.settings.stats_interval), name="asyncq-stats"))
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await asyncio.wait_for(listener.subscribed.wait(), timeout=2.0)
            log.info(*banner(self.worker_id, self.queues, self.settings.concurrency, self.settings.lease,
                             sorted(self.app.tasks)))
            await call_hooks(self.hooks, "on_worker_start", self)
            host = self._source_host()
            feeding = []
            for source in self.sources:
                feeding.append((source.name, asyncio.create_task(source.run(host), name=f"asyncq-{source.name}")))
                self._background.extend(asyncio.create_task(loop, name=f"asyncq-{name}")
                                        for name, loop in source.side_loops(host).items())
            await self._serve_until_stopped()
            for name, feed in feeding:  # a source settles what it took before it stops: never cancel it mid-batch
                # bounded all the same, for a Redis that hangs
                await bounded(feed, self.settings.shutdown_grace + HAND_BACK_WAIT, f"the job source {name}")
            await self._drain()
            await call_hooks(self.hooks, "on_worker_stop", self)
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            for t in self._background:
                t.cancel()
            if metrics_server is not None:
                metrics_server.close()
            await bounded(
                asyncio.gather(*self._background, listener.stop(), self.finisher.stop(), return_exceptions=True),
                CLEANUP_WAIT, "background tasks, the listener and the finisher",
            )
            # last, so that no heartbeat can write the worker's key again after it is deleted
            await bounded(self._sign_off(), STOP_WAIT, "the last statistics and the worker's sign-off")
            log.info("worker %s stopped: %s", self.worker_id, dict(self.stats))
            reset_thread_limiter(limiter_token)

    async def _await_redis(self) -> bool:
        """Before serving, wait until Redis answers, saying so every ``STARTUP_LOG_EVERY`` seconds, instead of
        announcing a worker that cannot claim anything. False if the worker was stopped meanwhile."""
        delay, first, last_log = 0.25, time.monotonic(), -1e9
        while not self.stopping.is_set():
            try:
                if not await self._ping_or_stop():
                    return False
            except REDIS_DOWN as exc:
                now = time.monotonic()
                if now - last_log >= STARTUP_LOG_EVERY:
                    last_log = now
                    log.error("Redis at %s is unreachable (%s); not serving yet, trying again until it answers "
                              "(waited %.0f s)", redact(self.app.settings.redis_url), exc, now - first)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self.stopping.wait()
                delay = min(delay * 2, 2.0)
                continue
            if last_log > -1e9:
                log.warning("Redis answers after %.0f s; starting", time.monotonic() - first)
            return True
        return False

    async def _ping_or_stop(self) -> bool:
        """PING, unless a stop request comes first (False): a Redis that hangs must not hold up a stop."""
        async def answer() -> bool:
            return bool(await self.broker.ping())

        ping = asyncio.create_task(answer(), name="asyncq-startup-ping")
        stop = asyncio.create_task(self.stopping.wait())
        try:
            await asyncio.wait({ping, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not ping.done():
            ping.cancel()  # not awaited: redis-py may sit on the cancellation; the loop's end bounds it
            return False
        ping.result()  # Redis's error, if it failed
        return True

    def _source_host(self) -> SourceHost:
        return SourceHost(
            broker=self.broker, settings=self.settings, worker_id=self.worker_id, stopping=self.stopping,
            free_slots=lambda: self.settings.concurrency - len(self.running), redis_down=self.redis_down,
            new_job=self.app.new_job,
        )

    async def _sign_off(self) -> None:
        with contextlib.suppress(*REDIS_DOWN):
            await self.recorder.flush(self.broker)
        with contextlib.suppress(*REDIS_DOWN):
            await self.broker.sign_off(self.worker_id)

    async def close(self) -> None:
        """Release the App's connections."""
        await self.app.close()

    def stop(self) -> None:
        """Ask the worker to stop claiming and shut down gracefully (what SIGTERM does)."""
        if self._stop_at is None:
            self._stop_at = time.monotonic()
        self.stopping.set()
        self._wake.set()
        self._slot_free.set()

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.stopping.is_set():
            log.warning("second %s: handing back running jobs now", sig.name)
            self._hand_back_all()
            return
        log.info("%s: no new jobs; waiting up to %.0fs for %d running job(s)", sig.name,
                 self.settings.shutdown_grace, len(self.running))
        self.stop()

    # --- claiming ----------------------------------------------------------------------------------------
    async def _claim_loop(self) -> None:
        backoff = 0.1
        while not self.stopping.is_set():
            self._beat("claiming")
            try:
                pause = await self._claim_once()
            except REDIS_DOWN as exc:
                self.redis_down(exc)
                pause = backoff
                backoff = min(backoff * 2, 5.0)
            except Exception:  # last resort: no data and no bug of ours may stop a worker from serving
                log.exception("the claim loop hit an unexpected error; it goes on in 1 s (please report this)")
                pause = 1.0
            else:
                backoff = 0.1
            self._beat("idle")
            await self._sleep(pause)

    async def _serve_until_stopped(self) -> None:
        """Run the claim loop until it ends (burst mode) or a stop is asked for; a claim that Redis does not
        answer gets ``CLAIM_WAIT`` seconds after the stop, then it is abandoned (shutdown stays bounded)."""
        claim_loop = asyncio.create_task(self._claim_loop(), name="asyncq-claim")
        stop = asyncio.create_task(self.stopping.wait(), name="asyncq-stop")
        try:
            await asyncio.wait({claim_loop, stop}, return_when=asyncio.FIRST_COMPLETED)
            await bounded(claim_loop, CLAIM_WAIT, "the claim loop")
        finally:
            stop.cancel()

    async def _claim_once(self) -> float:
        """One claim; returns how long to sleep before the next (0: claim again at once)."""
        free = self.settings.concurrency - len(self.running)
        if free <= 0:
            self._beat("full")
            self._slot_free.clear()
            await self._slot_free.wait()
            return 0.0
        reconnect_until = 0
        if self._outage_pending:
            await self._after_outage()
            if time.monotonic() - self._last_outage < self.settings.reconnect_grace:
                reconnect_until = now_ms() + int(self.settings.reconnect_grace * 1000)
        self._wake.clear()
        want = min(free, self.settings.claim_batch)
        async with asyncio.timeout(self.app.settings.command_timeout + 5):  # a hung connection must not wedge
            claimed, next_due, broken = await self.broker.claim(
                self._lanes, self._lane_queues, want, int(self.settings.lease * 1000), self.worker_id,
                reconnect_until_ms=reconnect_until, limits=self._flow_limits(),
            )
        outage = self.broker.take_claim_outage()  # a cluster shard failed after others answered (broker_cluster)
        if outage is None:
            self._outage_pending = False
            self._redis_up()
        else:
            self.redis_down(outage)
        if broken:
            self._note_broken(broken)
        for c in claimed:
            self._start(c)
        if outage is not None:
            return 0.1  # the next claim first settles what the outage held (_after_outage), as after any outage
        if len(claimed) >= want:
            return 0.0  # there may be more: claim again while these run
        # The lanes are drained (a partial or empty claim): a new job announces itself (a wake-up that
        # arrived during the claim is still set) and the script said when the next scheduled one is due,
        # so sleep instead of sending an empty claim before the claimed jobs even start.
        nothing_soon = next_due < 0 or next_due > now_ms() + 1000
        if not claimed and self.settings.burst and not self.running and nothing_soon:
            log.info("burst mode: queues empty, stopping")
            self.stopping.set()
            return 0.0
        timeout = self.settings.poll_interval
        if next_due >= 0:
            timeout = max(0.0, min(timeout, (next_due - now_ms()) / 1000))
        return timeout

    def _flow_limits(self) -> bytes:
        """This worker's task limits for the claim script (rate limits and caps are enforced there, fleet-wide;
        a limited job waits queued and the claim says when it may start, which the sleep below honours)."""
        if self._packed_limits is None:
            self._packed_limits = pack_limits((t.name, t.options.limits) for t in self.app.tasks.values())
        return self._packed_limits

    async def _after_outage(self) -> None:
        """Back from a Redis outage: take back leases that lapsed meanwhile and write the held outcomes first,
        so that no job this worker still runs, or has finished, is claimed again."""
        await self.broker.ping()
        self._redis_up()
        await self._renew_all()
        deadline = time.monotonic() + self.settings.outcome_hold
        while self.holding and not self.stopping.is_set() and time.monotonic() < deadline:
            self._beat("writing held outcomes")
            await asyncio.sleep(0.05)

    async def _sleep(self, timeout: float) -> None:
        """Sleep until woken (new job, free slot, stop) or ``timeout`` seconds pass."""
        if timeout <= 0 or self._wake.is_set():
            return
        # No helper tasks on this path (it is the idle worker's path to a new job): a timer and one future.
        # A finished job sets _wake too, so burst mode also wakes when a slot frees.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()

    def _start(self, c: Claimed) -> None:
        running = self.running.get(c.job_id)
        if running is not None and running.task is not None and not running.task.done():
            # This worker's own lease on a job it is still running lapsed (its loop stalled past the lease, e.g.
            # on an overloaded machine) and the claim handed the job back to it: keep the run, take the new lease,
            # never start a second copy next to the first.
            log.warning("job %s: its lease lapsed while it ran here (this worker stalled > %.1fs); keeping the run "
                        "under the new lease", c.job_id, self.settings.lease)
            running.claimed = c
            if running.ctx is not None:
                running.ctx.recoveries = c.recoveries
            return
        rj = RunningJob(claimed=c)
        self.running[c.job_id] = rj
        task = asyncio.create_task(self._run_one(rj), name=f"asyncq-job-{c.job_id}")
        rj.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_one(self, rj: RunningJob) -> None:
        try:
            await self.executor.run(rj)
        except asyncio.CancelledError:
            if rj.hand_back and not rj.started:  # stopped before the task body began: give it back
                with contextlib.suppress(*REDIS_DOWN):
                    await self.broker.requeue(rj.lease, now_ms(), give_back_try=True)
        except Exception:
            log.exception("job %s: unexpected error in the worker; its lease will expire and it re-runs",
                          rj.claimed.job_id)
        finally:
            self.running.pop(rj.claimed.job_id, None)
            self._slot_free.set()
            self._wake.set()

    # --- leases and aborts -------------------------------------------------------------------------------
    async def _renew_loop(self) -> None:
        period = self.settings.lease / 3
        while not cancel_requested():
            await asyncio.sleep(period)
            try:
                await self._renew_all()
            except REDIS_DOWN as exc:
                self.redis_down(exc)
            except Exception:
                log.exception("renewing leases failed unexpectedly; trying again in %.1f s", period)

    async def _renew_all(self) -> None:
        jobs = list(self.running.values())
        if not jobs:
            return
        lease_ms = int(self.settings.lease * 1000)
        statuses: list[int] = []
        for start in range(0, len(jobs), 1000):
            chunk = jobs[start : start + 1000]
            statuses += await self.broker.renew([rj.lease for rj in chunk], lease_ms)
        self._redis_up()
        for rj, status in zip(jobs, statuses, strict=True):
            if status == 0 and rj.task is not None and not rj.task.done() and not rj.settling:
                log.error("job %s lost its lease to another claim (this worker was cut off or stalled > %.1fs); "
                          "cancelling it here so it never runs twice at once", rj.claimed.job_id,
                          self.settings.lease)
                rj.lease_lost = True
                rj.task.cancel()
            elif status == 2:
                self._on_abort(rj.claimed.job_id)

    def _on_abort(self, job_id: str) -> None:
        rj = self.running.get(job_id)
        if rj is not None and rj.task is not None and not rj.abort_requested and rj.started:
            log.info("job %s: abort requested; cancelling", job_id)
            rj.abort_requested = True
            rj.task.cancel()

    # --- heartbeat ---------------------------------------------------------------------------------------
    async def _heartbeat_loop(self) -> None:
        started = now_ms()
        interval = self.settings.heartbeat_interval
        queued = 0  # arq's health line counts the first queue's lane; read in each beat, written in the next
        while not cancel_requested():
            beat = {
                "id": self.worker_id,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "queues": list(self.queues),
                "concurrency": self.settings.concurrency,
                "running": len(self.running),
                "state": self.health(),
                "holding": len(self.holding),
                "started": started,
                "last_beat": now_ms(),
                "stats": dict(self.stats),
                "tasks": sorted(self.app.tasks),
            }
            try:
                queued = await self.broker.heartbeat(
                    self.worker_id, orjson.dumps(beat), interval, self.queues[0],
                    arq_health_line(self.stats, len(self.running), queued))
            except REDIS_DOWN as exc:
                self.redis_down(exc)
            except Exception:
                log.exception("writing the heartbeat failed unexpectedly; trying again in %.1f s", interval)
            await asyncio.sleep(interval)

    # --- shutdown ----------------------------------------------------------------------------------------
    async def _drain(self) -> None:
        if not self._tasks:
            return
        # the grace period counts from the stop request, not from the end of a claim that Redis left hanging
        deadline = (self._stop_at or time.monotonic()) + self.settings.shutdown_grace
        while self._tasks and time.monotonic() < deadline:
            await asyncio.wait(set(self._tasks), timeout=deadline - time.monotonic())
        if self._tasks:
            log.warning("grace period over: handing %d unfinished job(s) back to their queues", len(self._tasks))
            self._hand_back_all()
            await asyncio.wait(set(self._tasks), timeout=HAND_BACK_WAIT)
        self.flags.stopped_hard = True
        if self._tasks:  # a hand-back Redis does not answer: the lease runs out and the job runs again
            log.warning("%d job(s) could not be handed back in %.0f s; their leases will expire and they run "
                        "again", len(self._tasks), HAND_BACK_WAIT)

    def _hand_back_all(self) -> None:
        for rj in list(self.running.values()):
            if rj.task is not None and not rj.task.done() and not rj.settling:  # an outcome is never thrown away
                rj.hand_back = True
                rj.task.cancel()


def default_queues(app: App) -> tuple[str, ...]:
    """The App's default queue, then every other queue its tasks use: what a worker serves unless told."""
    others = sorted({t.options.queue for t in app.tasks.values()} - {app.settings.default_queue})
    return (app.settings.default_queue, *others)


async def run_worker(app: App, settings: WorkerSettings | None = None, *, sources: Sequence[JobSource] = (),
                     **overrides: Any) -> Worker:
    """Create and run a worker in the current loop; returns it after it stopped (for its stats)."""
    worker = Worker(app, settings, sources=sources, **overrides)
    try:
        await worker.main()
    finally:
        await bounded(app.close(), STOP_WAIT, "closing the Redis connections")
    return worker
