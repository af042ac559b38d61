"""W8 (noisy neighbour: fair share between tenants) and W9 (global rate limit and concurrency cap), issue 16.

    python benchmarks/flow.py                 # everything, about 3 minutes
    python benchmarks/flow.py --only w8       # or w8drain, w9rate, w9cap

A private redis-server (asyncq.embedded: a free port, never 6379); worker processes run this file
(``python benchmarks/flow.py worker``) with ASYNCQ_WORKER_* settings, as a deployed worker would.

- W8: a worker with concurrency 20 runs; tenant A enqueues 20,000 jobs of 10 ms, then tenants B-K enqueue 50
  jobs each. Time-to-start of B-K's jobs (start - enqueue) with fairness (each job has its tenant) against plain
  FIFO (no tenants), and the run's drain rate in both modes.
- W8 drain: W1's shape (20,000 no-op jobs queued first, one worker, concurrency 100) with the jobs spread over
  10 tenants against no tenants: what the fair claim costs per job.
- W9 rate: ``rate_limit="200/s"``, 2 worker processes, 4,000 jobs: achieved rate (jobs / (last start - first
  start)) and the most starts in any one-second window; then again with one worker SIGKILLed halfway.
- W9 cap: ``max_concurrency=10``, 2 worker processes, 1,000 jobs of 50 ms: the most ever in flight (from the
  recorded start and end of every run) and the total time against the ideal (1,000 x 50 ms / 10 = 5 s); then
  again with one worker SIGKILLed halfway (lease 2 s): nothing lost, the cap reached again after the lease.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import redis
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parents[1]

from asyncq import App, keys, run_worker  # noqa: E402
from asyncq.embedded import EmbeddedRedis  # noqa: E402

app = App()
LAT = "bench:lat"  # LIST: ms from enqueue to start of B-K's jobs
DONE = "bench:done"  # counter of finished jobs
STARTS = "bench:starts"  # LIST: "<pid> <start ms>" per run (W9 rate)
CAP_STARTS = "bench:cap:starts"  # HASH run -> "<pid> <start ms>" (W9 cap)
CAP_ENDS = "bench:cap:ends"  # HASH run -> end ms (W9 cap; none for a run the SIGKILL cut short)
_client: aioredis.Redis | None = None


def client() -> aioredis.Redis:
    global _client
    if _client is None:
        _client = aioredis.Redis.from_url(app.settings.redis_url)
    return _client


@app.task(name="w8", tenant_from="tenant")
async def w8(tenant: str | None = None, t0: float = 0.0, sleep: float = 0.0) -> None:
    if t0:
        await client().rpush(LAT, time.time() * 1000 - t0)
    if sleep:
        await asyncio.sleep(sleep)
    await client().incr(DONE)


@app.task(name="w9rate", rate_limit="200/s")
async def w9rate(n: int) -> None:
    async with client().pipeline(transaction=False) as pipe:
        pipe.rpush(STARTS, f"{os.getpid()} {time.time() * 1000:.3f}")
        pipe.incr(DONE)
        await pipe.execute()


@app.task(name="w9cap", max_concurrency=10)
async def w9cap(n: int) -> None:
    run = f"{n}:{time.time_ns()}"
    await client().hset(CAP_STARTS, run, f"{os.getpid()} {time.time() * 1000:.3f}")
    await asyncio.sleep(0.05)
    async with client().pipeline(transaction=False) as pipe:
        pipe.hset(CAP_ENDS, run, f"{time.time() * 1000:.3f}")
        pipe.incr(DONE)
        await pipe.execute()


# --- the driver ---------------------------------------------------------------------------------------------
def start_workers(url: str, n: int, **settings: object) -> list[subprocess.Popen[bytes]]:
    env = {**os.environ, "ASYNCQ_REDIS_URL": url, "PYTHONPATH": str(ROOT)}
    for k, v in settings.items():
        env[f"ASYNCQ_WORKER_{k.upper()}"] = str(v)
    procs = [subprocess.Popen([sys.executable, __file__, "worker"], cwd=ROOT, env=env) for _ in range(n)]
    r = redis.Redis.from_url(url)
    deadline = time.monotonic() + 60
    while r.zcard(keys.WORKERS_SET) < n:  # every worker has imported, connected and beaten once
        if time.monotonic() > deadline:
            raise RuntimeError("workers did not start within 60 s")
        time.sleep(0.05)
    r.close()
    return procs


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def wait_done(r: redis.Redis, n: int, timeout: float = 600) -> float:
    deadline = time.monotonic() + timeout
    while int(r.get(DONE) or 0) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {int(r.get(DONE) or 0)} of {n} jobs done within {timeout} s")
        time.sleep(0.01)
    return time.monotonic()


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def producer(url: str) -> App:
    p = App(redis_url=url)
    p.tasks.update(app.tasks)  # the producer knows the tasks' limits: limited jobs go to their flows
    return p


async def enqueue(url: str, specs: list) -> None:  # type: ignore[type-arg]
    async with producer(url) as p:
        for i in range(0, len(specs), 1000):
            await p.enqueue_many(specs[i : i + 1000])


def w8_run(url: str, fair: bool) -> dict[str, float]:
    r = redis.Redis.from_url(url)
    r.flushdb()
    procs = start_workers(url, 1, concurrency=20)
    try:
        began = time.monotonic()
        asyncio.run(enqueue(url, [w8.s(tenant="a" if fair else None, sleep=0.01) for _ in range(20_000)]))
        t0 = time.time() * 1000
        late = [w8.s(tenant=t if fair else None, t0=t0, sleep=0.01) for t in "bcdefghijk" for _ in range(50)]
        asyncio.run(enqueue(url, late))
        ended = wait_done(r, 20_500)
        lat = [float(x) for x in r.lrange(LAT, 0, -1)]
        return {"p50": pct(lat, 50), "p99": pct(lat, 99), "max": max(lat), "rate": 20_500 / (ended - began)}
    finally:
        stop(procs)
        r.close()


def w8drain_run(url: str, fair: bool) -> float:
    r = redis.Redis.from_url(url)
    r.flushdb()
    asyncio.run(enqueue(url, [w8.s(tenant=f"t{i % 10}" if fair else None) for i in range(20_000)]))
    procs = start_workers(url, 1, concurrency=100)  # starts on the full queue: the clock starts at its first beat
    try:
        began = time.monotonic()
        return 20_000 / (wait_done(r, 20_000) - began)
    finally:
        stop(procs)
        r.close()


def starts_of(r: redis.Redis) -> list[tuple[int, float, float | None]]:
    out = []
    for raw in r.lrange(STARTS, 0, -1):
        parts = raw.decode().split()
        out.append((int(parts[0]), float(parts[1]), float(parts[2]) if len(parts) > 2 else None))
    return out


def kill_halfway(r: redis.Redis, procs: list[subprocess.Popen[bytes]], at: int) -> float:
    while int(r.get(DONE) or 0) < at:
        time.sleep(0.005)
    procs[0].send_signal(signal.SIGKILL)
    procs[0].wait(10)
    return time.time() * 1000


def w9rate_run(url: str, kill: bool) -> dict[str, float]:
    r = redis.Redis.from_url(url)
    r.flushdb()
    asyncio.run(enqueue(url, [w9rate.s(n) for n in range(4000)]))
    procs = start_workers(url, 2, concurrency=50, lease=2.0)
    try:
        if kill:
            kill_halfway(r, procs, 2000)
        wait_done(r, 4000, timeout=120)
        t = sorted(s for _, s, _ in starts_of(r))
        window = max(bisect.bisect_left(t, x + 1000) - i for i, x in enumerate(t))
        return {"rate": (len(t) - 1) * 1000 / (t[-1] - t[0]), "window": window, "runs": len(t)}
    finally:
        stop(procs)
        r.close()


def w9cap_run(url: str, kill: bool) -> dict[str, float]:
    r = redis.Redis.from_url(url)
    r.flushdb()
    asyncio.run(enqueue(url, [w9cap.s(n) for n in range(1000)]))
    procs = start_workers(url, 2, concurrency=50, lease=2.0)  # the clock starts when both have beaten once
    began = time.monotonic()
    killed_at = None
    try:
        if kill:
            killed_at = kill_halfway(r, procs, 500)
        total = wait_done(r, 1000, timeout=120) - began
        ends = {k: float(v) for k, v in r.hgetall(CAP_ENDS).items()}
        events = []
        for k, v in r.hgetall(CAP_STARTS).items():
            _, start = v.split()
            end = ends.get(k, killed_at)  # a run the kill cut short was in flight until the kill
            assert end is not None, "a run neither finished nor was on the killed worker"
            events += [(float(start), 1), (end, -1)]
        n = peak = peak_after = 0
        for at, step in sorted(events):  # an end sorts before a start at the same ms
            n += step
            peak = max(peak, n)
            if killed_at is not None and at > killed_at + 2000:  # after the dead worker's leases lapsed
                peak_after = max(peak_after, n)
        return {"peak": peak, "total": total, "done": int(r.get(DONE) or 0), "peak_after_lease": peak_after}
    finally:
        stop(procs)
        r.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["w8", "w8drain", "w9rate", "w9cap"])
    args = ap.parse_args()
    with EmbeddedRedis(db=0) as server:
        url = server.url
        if args.only in (None, "w8"):
            for fair in (True, False):
                m = w8_run(url, fair)
                print(f"W8 {'fair' if fair else 'FIFO'}: B-K time-to-start p50 {m['p50']:.0f} ms, p99 "
                      f"{m['p99']:.0f} ms, max {m['max']:.0f} ms; whole run {m['rate']:.0f} jobs/s", flush=True)
        if args.only in (None, "w8drain"):
            runs: dict[bool, list[float]] = {True: [], False: []}
            for _ in range(3):  # alternating, so that other load on the machine hits both alike; medians
                for fair in (True, False):
                    runs[fair].append(w8drain_run(url, fair))
            fair_rate, plain_rate = statistics.median(runs[True]), statistics.median(runs[False])
            print(f"W8 drain (W1's shape, median of 3): 10 tenants {fair_rate:.0f} jobs/s, no tenants "
                  f"{plain_rate:.0f} jobs/s ({100 * (1 - fair_rate / plain_rate):+.1f}% cost); runs: "
                  f"{', '.join(f'{x:.0f}' for x in runs[True])} / {', '.join(f'{x:.0f}' for x in runs[False])}",
                  flush=True)
        if args.only in (None, "w9rate"):
            for kill in (False, True):
                m = w9rate_run(url, kill)
                print(f"W9 rate 200/s{' (one of 2 workers SIGKILLed halfway)' if kill else ''}: achieved "
                      f"{m['rate']:.1f}/s, most starts in a 1 s window {m['window']:.0f} (limit 200, burst 5), "
                      f"{m['runs']:.0f} runs of 4,000 jobs", flush=True)
        if args.only in (None, "w9cap"):
            for kill in (False, True):
                m = w9cap_run(url, kill)
                extra = (f"; after the lease (2 s) the cap was reached again: {m['peak_after_lease']:.0f} in flight"
                         if kill else "")
                print(f"W9 cap 10{' (one of 2 workers SIGKILLed halfway)' if kill else ''}: most in flight "
                      f"{m['peak']:.0f}, {m['done']:.0f}/1000 done in {m['total']:.2f} s (ideal 5.00 s){extra}",
                      flush=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["worker"]:
        asyncio.run(run_worker(app))
    else:
        main()
