"""One failover run on a Redis Cluster, shared by tests/test_cluster_failover.py (2,000 jobs) and
benchmarks/cluster_failover.py (20,000 jobs): a producer enqueues jobs over several shards at a steady rate while
worker processes run them, and a master is SIGKILLed (its replica is promoted after the node timeout) or handed
over with ``CLUSTER FAILOVER`` part-way through. A killed master is restarted once its replica took over: it
rejoins as the new master's replica, as a repaired machine would.

Counting. Each job ``n`` has the job id ``f<n>`` (the cluster layout tags it with its shard), so an enqueue that
failed while the master changed is retried with the same id and enqueued once. A job counts as *enqueued* once
Redis acknowledged it (with ``wait_replicas``: once a replica acknowledged it too, asyncq's WAIT option). The
task (tests/cluster_app.py) writes "start n" and "done n" to a run log on disk, which no failover can roll back.
*Completed*: done at least once. *Lost*: enqueued, never done within the drain window (no progress for
``drain_window`` seconds). *Run twice*: started more than once (a run whose start or outcome the killed master
acknowledged but had not yet replicated, or a lease that lapsed while the shard had no master).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from asyncq import App, JobSpec
from asyncq.cluster import shard_tag
from asyncq.embedded import EmbeddedCluster
from asyncq.exceptions import BrokerUnavailable
from tests.cluster_runlog import RUNLOG_ENV, RunLog

ROOT = Path(__file__).resolve().parent.parent
QUEUE = "default"  # cluster.work's queue


@dataclass
class FailoverReport:
    mode: str  # "kill" (SIGKILL of a master) or "manual" (CLUSTER FAILOVER on its replica)
    jobs: int
    shards: int
    wait_replicas: int
    enqueued: int = 0
    completed: int = 0
    lost: int = 0
    run_twice: int = 0
    finished_twice: int = 0
    #: enqueue calls that failed while the master changed and were retried with the same ids
    enqueue_retries: int = 0
    #: the longest one batch of enqueues took, retries included
    longest_enqueue_s: float = 0.0
    killed_port: int = 0
    new_master: int = 0
    #: from the kill (or CLUSTER FAILOVER) to every node agreeing on the new master
    failover_s: float = 0.0
    #: kill mode: from the kill until the restarted node is the new master's synced replica
    rejoined_s: float = 0.0
    #: the longest gap between two consecutive completions
    longest_pause_s: float = 0.0
    wall_s: float = 0.0
    errors: list[str] = field(default_factory=list)
    logs: Path | None = None

    def line(self) -> str:
        return (f"{self.mode}: {self.jobs:,} jobs over {self.shards} shards, wait_replicas={self.wait_replicas}: "
                f"enqueued {self.enqueued:,}, completed {self.completed:,}, lost {self.lost}, run twice "
                f"{self.run_twice}; failover {self.failover_s:.1f} s"
                + (f" (killed node back as a replica at {self.rejoined_s:.1f} s)" if self.rejoined_s else "")
                + f", longest pause in completions "
                f"{self.longest_pause_s:.1f} s, enqueue retries {self.enqueue_retries} (longest batch "
                f"{self.longest_enqueue_s:.1f} s), wall {self.wall_s:.1f} s")


def start_worker(cluster: EmbeddedCluster, log: Path, runlog: Path, shards: int,
                 **settings: object) -> subprocess.Popen[bytes]:
    env = {**os.environ, "ASYNCQ_REDIS_URL": cluster.url, "PYTHONPATH": str(ROOT), RUNLOG_ENV: str(runlog),
           "ASYNCQ_QUEUE_SHARDS": f"{QUEUE}={shards}"}
    for key, value in settings.items():
        env[f"ASYNCQ_WORKER_{key.upper()}"] = str(value)
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "asyncq", "worker", "tests.cluster_app:app"],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass
class FailoverRun:
    """The parts of one run; :func:`run_failover` puts them together."""

    cluster: EmbeddedCluster
    app: App
    runs: RunLog
    report: FailoverReport
    rate: float
    job_seconds: float
    batch: int
    acked: set[int] = field(default_factory=set)

    async def fail_over(self, target: int) -> None:
        t0 = time.monotonic()
        if self.report.mode == "kill":
            self.cluster.kill_master(target)
            self.report.new_master = await asyncio.to_thread(self.cluster.wait_failover, target, 60.0)
            self.report.failover_s = time.monotonic() - t0
            # the lost machine comes back as the new master's replica, as an operator would bring it back (until
            # then the shard has no replica: enqueue_wait_replicas cannot be met there)
            await asyncio.to_thread(self.cluster.restart_node, target, 60.0)
            self.report.rejoined_s = time.monotonic() - t0
        else:
            self.report.new_master = await asyncio.to_thread(self.cluster.failover, master_port=target, timeout=60.0)
            self.report.failover_s = time.monotonic() - t0

    async def enqueue(self, numbers: range) -> None:
        """One batch, retried with the same ids until Redis acknowledges it."""
        specs = [JobSpec("cluster.work", (n, self.job_seconds), {}).set(job_id=f"f{n}") for n in numbers]
        t0 = time.monotonic()
        while True:
            try:
                await self.app.enqueue_many(specs)
                break
            except BrokerUnavailable as exc:  # the master is changing (or WAIT timed out): same ids again
                self.report.enqueue_retries += 1
                if time.monotonic() - t0 > 120:
                    self.report.errors.append(f"enqueue of jobs {numbers.start}.. kept failing: {exc}")
                    raise
            except redis.RedisError as exc:  # should not escape asyncq unwrapped: counted, then retried
                self.report.enqueue_retries += 1
                self.report.errors.append(f"unwrapped {type(exc).__name__}: {exc}")
            await asyncio.sleep(0.1)
        self.report.longest_enqueue_s = max(self.report.longest_enqueue_s, time.monotonic() - t0)
        self.acked.update(numbers)

    async def produce(self, target: int, kill_at: float) -> None:
        """Every job at a steady rate; the failover starts once ``kill_at`` of them are enqueued."""
        jobs = self.report.jobs
        failing: asyncio.Task[None] | None = None
        start = time.monotonic()
        for first in range(0, jobs, self.batch):
            if failing is None and first >= kill_at * jobs:
                failing = asyncio.create_task(self.fail_over(target))
            delay = start + first / self.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.enqueue(range(first, min(jobs, first + self.batch)))
        if failing is not None:
            await failing
        self.report.enqueued = len(self.acked)

    async def drain(self, window: float) -> None:
        """Until every acknowledged job is done, or nothing new finished for ``window`` seconds."""
        last_count, last_progress = -1, time.monotonic()
        while True:
            done = self.runs.counts("done")
            if self.acked <= set(done):
                return
            if len(done) != last_count:
                last_count, last_progress = len(done), time.monotonic()
            elif time.monotonic() - last_progress > window:
                return
            await asyncio.sleep(0.2)

    def count(self) -> None:
        done, started = self.runs.counts("done"), self.runs.counts("start")
        self.report.completed = len(self.acked & set(done))
        self.report.lost = len(self.acked - set(done))
        self.report.run_twice = sum(1 for c in started.values() if c > 1)
        self.report.finished_twice = sum(1 for c in done.values() if c > 1)
        times = self.runs.times("done")
        self.report.longest_pause_s = max((b - a for a, b in itertools.pairwise(times)), default=0.0)


async def run_failover(
    cluster: EmbeddedCluster,
    *,
    jobs: int = 2000,
    shards: int = 3,
    rate: float = 1000.0,
    job_seconds: float = 0.005,
    kill_at: float = 0.4,
    mode: str = "kill",
    workers: int = 2,
    concurrency: int = 50,
    lease: float = 3.0,
    wait_replicas: int = 0,
    drain_window: float = 30.0,
    batch: int = 50,
    directory: Path | None = None,
) -> FailoverReport:
    """Produce ``jobs`` at ``rate`` per second; at ``kill_at`` (a fraction of the jobs enqueued) kill or fail
    over the master of shard 0; wait for the drain; count. Worker logs and the run log stay in ``directory``."""
    if mode not in ("kill", "manual"):
        raise ValueError(f"mode is 'kill' or 'manual', not {mode!r}")
    work = directory or Path(tempfile.mkdtemp(prefix="asyncq-failover-"))
    runs = RunLog(work / "runs.log")
    report = FailoverReport(mode=mode, jobs=jobs, shards=shards, wait_replicas=wait_replicas, logs=work)
    options: dict[str, object] = {"queue_shards": {QUEUE: shards}}
    if wait_replicas:
        options["enqueue_wait_replicas"] = wait_replicas
    app = App(redis_url=cluster.url, **options)  # type: ignore[arg-type]
    run = FailoverRun(cluster, app, runs, report, rate=rate, job_seconds=job_seconds, batch=batch)
    procs = [start_worker(cluster, work / f"worker{i}.log", runs.path, shards, concurrency=concurrency,
                          lease=lease) for i in range(workers)]
    began = time.monotonic()
    try:
        await app.ping()
        report.killed_port = cluster.master_for(shard_tag(QUEUE, 0))
        await run.produce(report.killed_port, kill_at)
        await run.drain(drain_window)
        for i, proc in enumerate(procs):
            if proc.poll() is not None:
                report.errors.append(f"worker {i} exited with {proc.returncode}: see {work}/worker{i}.log")
    finally:
        for proc in procs:
            stop_worker(proc)
        with contextlib.suppress(Exception):
            await app.close()
    report.wall_s = time.monotonic() - began
    run.count()
    return report
