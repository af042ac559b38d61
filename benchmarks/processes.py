"""``asyncq worker --processes N --burst`` draining a backlog, as a user runs it: the supervisor and N worker
processes, timed from the command's start (interpreter start-up and imports included) to its exit.

    python benchmarks/processes.py                       # 20,000 no-op jobs, --processes 1 and 2, 3 runs each
    python benchmarks/processes.py --jobs 50000 --processes 1,2,4 --runs 5

It starts a private redis-server (asyncq.embedded: a free port, never 6379), or uses BENCH_REDIS_PORT's
server on 127.0.0.1 (database 14, flushed before every run). The jobs are ``echo`` of tests/proc_app.py,
queued with ``enqueue_many`` before the clock starts. Runs alternate between the process counts so that
other load on the machine hits them alike; the median is printed. ``run.py``'s W6 measures the same scaling
with its own start line (imports excluded).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]

from asyncq import App  # noqa: E402
from asyncq.embedded import EmbeddedRedis  # noqa: E402
from asyncq.task import JobSpec  # noqa: E402


@contextlib.contextmanager
def server() -> Iterator[str]:
    port = os.environ.get("BENCH_REDIS_PORT")
    if port:
        yield f"redis://127.0.0.1:{int(port)}/14"
        return
    with EmbeddedRedis(db=14) as embedded:
        yield embedded.url


async def fill(url: str, jobs: int) -> None:
    redis.Redis.from_url(url).flushdb()
    async with App(redis_url=url) as app:
        for start in range(0, jobs, 1000):
            await app.enqueue_many([JobSpec("echo", (i,), {}) for i in range(start, min(jobs, start + 1000))])


def drain(url: str, processes: int) -> float:
    env = {**os.environ, "ASYNCQ_REDIS_URL": url, "PYTHONPATH": str(ROOT)}
    began = time.monotonic()
    subprocess.run([sys.executable, "-m", "asyncq", "worker", "tests.proc_app:app", "--burst", "--processes",
                    str(processes), "--log-level", "warning"], cwd=ROOT, env=env, check=True, timeout=600)
    return time.monotonic() - began


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--processes", default="1,2", help="comma-separated process counts (default 1,2)")
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    counts = [int(x) for x in args.processes.split(",")]
    seconds: dict[int, list[float]] = {n: [] for n in counts}
    with server() as url:
        for _ in range(args.runs):
            for n in counts:
                asyncio.run(fill(url, args.jobs))
                seconds[n].append(drain(url, n))
    print(f"{args.jobs:,} no-op jobs, {os.cpu_count()} CPUs; seconds from the command's start to its exit")
    base = statistics.median(seconds[counts[0]])
    for n in counts:
        med = statistics.median(seconds[n])
        runs = ", ".join(f"{s:.2f}" for s in seconds[n])
        print(f"--processes {n}: median {med:.2f} s = {args.jobs / med:,.0f} jobs/s "
              f"(x{base / med:.2f} of --processes {counts[0]}); runs: {runs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
