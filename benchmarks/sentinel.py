"""Redis Sentinel failover under load: does every acknowledged job complete, how many run twice, how long do
completions stop?

    python benchmarks/sentinel.py                        # 60 s at 200 jobs/s, failovers at 20 s and 40 s
    python benchmarks/sentinel.py --duration 120 --rate 500 --failovers 3

It starts its own setup (tests/sentinel_cluster.py: one master, one replica, three ``redis-server
--sentinel``, all on free private ports, never 6379), one ``asyncq worker tests.sentinel_app:app`` process on
the ``redis+sentinel://`` URL, and a producer in this process that enqueues ``sentinel.work(n, 0.05)`` at a
steady rate through the same URL. ``SENTINEL FAILOVER`` runs at evenly spaced times (each one swaps master and
replica). An enqueue that fails (BrokerUnavailable while the master changes) is retried with the same job id,
so it is enqueued once; the producer counts a job as enqueued once Redis acknowledged it.

Reported: jobs enqueued (acknowledged), completed, lost (acknowledged, never completed), run twice (started
more than once), the longest pause between two consecutive completions, the longest an enqueue call was
retried, and the failover times. Redis replicates asynchronously, so a write the old master acknowledged
after the replica was promoted and before Sentinel demoted it is gone after the failover: such a job is lost
(an enqueue) or runs again after its lease (a finish). That window is Redis's, not asyncq's; the numbers say
how often it was hit.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.sentinel_app import DONE, RUNS  # noqa: E402
from tests.sentinel_cluster import SentinelCluster  # noqa: E402

from asyncq import App  # noqa: E402
from asyncq.exceptions import BrokerUnavailable  # noqa: E402
from asyncq.task import JobSpec  # noqa: E402


async def produce(app: App, rate: float, duration: float, acked: set[int], stalls: list[float]) -> None:
    start = time.monotonic()
    n = 0
    while (now := time.monotonic()) - start < duration:
        target = int((now - start) * rate)
        while n < target:
            spec = JobSpec("sentinel.work", (n, 0.05), {}).set(job_id=f"s{n}")
            began = time.monotonic()
            while True:
                try:
                    await app.enqueue_many([spec])
                    break
                except BrokerUnavailable:
                    await asyncio.sleep(0.1)
            stalls.append(time.monotonic() - began)
            acked.add(n)
            n += 1
        await asyncio.sleep(0.01)


async def failovers(cluster: SentinelCluster, times: list[float], log: list[str]) -> None:
    start = time.monotonic()
    for at in times:
        await asyncio.sleep(max(0.0, at - (time.monotonic() - start)))
        began = time.monotonic()
        new = await asyncio.to_thread(cluster.failover)
        log.append(f"failover at {at:.0f} s: new master :{new} after {time.monotonic() - began:.1f} s")


def read(cluster: SentinelCluster) -> tuple[dict[int, int], list[tuple[int, float]]]:
    r = redis.Redis(port=cluster.master_port())
    runs = {int(k): int(v) for k, v in r.hgetall(RUNS).items()}
    done = [(int(m), float(t)) for m, t in r.zrange(DONE, 0, -1, withscores=True)]
    return runs, done


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=60.0, help="seconds of producing (default 60)")
    p.add_argument("--rate", type=float, default=200.0, help="jobs per second (default 200)")
    p.add_argument("--failovers", type=int, default=2, help="SENTINEL FAILOVERs, evenly spaced (default 2)")
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--min-replicas-to-write", type=int, default=0,
                   help="the data servers' min-replicas-to-write (default 0, Redis's default: off)")
    args = p.parse_args()
    times = [args.duration * (i + 1) / (args.failovers + 1) for i in range(args.failovers)]
    cluster_args = {"min_replicas_to_write": args.min_replicas_to_write}
    with SentinelCluster(**cluster_args) as cluster, tempfile.TemporaryDirectory() as tmp:
        url = cluster.url(0)
        env = {**os.environ, "ASYNCQ_REDIS_URL": url, "ASYNCQ_WORKER_LEASE": "5", "PYTHONPATH": str(ROOT)}
        log_path = Path(tmp) / "worker.log"
        with log_path.open("wb") as out:
            worker = subprocess.Popen(
                [sys.executable, "-m", "asyncq", "worker", "tests.sentinel_app:app", "--concurrency",
                 str(args.concurrency), "--log-level", "info"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        acked: set[int] = set()
        stalls: list[float] = []
        events: list[str] = []
        try:
            async with App(redis_url=url) as app:
                await asyncio.gather(produce(app, args.rate, args.duration, acked, stalls),
                                     failovers(cluster, times, events))
            last, same_since = -1, time.monotonic()
            while time.monotonic() - same_since < 30:  # until all are done or nothing moves for 30 s
                _, done = read(cluster)
                if len(done) >= len(acked):
                    break
                if len(done) != last:
                    last, same_since = len(done), time.monotonic()
                await asyncio.sleep(0.5)
        finally:
            worker.terminate()
            worker.wait(60)
        runs, done = read(cluster)
        completed = {n for n, _ in done}
        stamps = sorted(t for _, t in done)
        pause = max((b - a for a, b in itertools.pairwise(stamps)), default=0.0)
        print(f"redis-server {redis.Redis(port=cluster.master_port()).info('server')['redis_version']}, "
              f"min-replicas-to-write {args.min_replicas_to_write}, {args.duration:.0f} s at {args.rate:.0f} jobs/s, "
              f"worker concurrency {args.concurrency}, lease 5 s")
        for line in events:
            print(line)
        succeeded = Counter(int(m) for m in re.findall(r"sentinel\.work\[s(\d+)\] succeeded", log_path.read_text()))
        print(f"jobs enqueued (acknowledged): {len(acked)}")
        print(f"completed (recorded in Redis by the task): {len(completed & acked)}")
        print(f"lost (acknowledged, never completed): {len(acked - completed)}; of these never run at all "
              f"(no 'succeeded' line in the worker's log): {len(acked - set(succeeded))}")
        print(f"run twice or more: {sum(1 for v in runs.values() if v > 1)} (Redis counts), "
              f"{sum(1 for v in succeeded.values() if v > 1)} (succeeded twice in the worker's log)")
        print(f"longest pause between completions: {pause:.2f} s")
        print(f"longest enqueue retried through: {max(stalls, default=0.0):.2f} s")
        print(f"worker exit code: {worker.returncode}; log lines: {len(log_path.read_text().splitlines())}")
        if not acked <= completed:
            print("the worker's last log lines:\n" + "\n".join(log_path.read_text().splitlines()[-40:]))
            return 1
        return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
