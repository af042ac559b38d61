"""W1 drain on a Redis Cluster of 1, 2 and 3 masters, one asyncq worker process per master (issue #19).

    python benchmarks/cluster.py                  # standalone, 1, 2, 3 masters in turn; median of 3 runs
    python benchmarks/cluster.py --masters 3 --runs 1 --jobs 5000
    python benchmarks/cluster.py --masters 0,3 --pubsub sharded,classic   # SPUBLISH beside PUBLISH

Each measurement starts its own private cluster (asyncq.embedded.EmbeddedCluster: masters only, no replicas,
free ports, never 6379) and a private side Redis for the progress probe (benchmarks/_common.py: the workers
count finished jobs there, so the probe adds nothing to the cluster). W1's job shape: ``--jobs`` no-op jobs
queued first with ``app.enqueue_many`` (not timed), then the worker processes (concurrency 100, defaults
otherwise) start together at the go line; the time runs from go to the last job finished.

The queue has one shard per master (``App(queue_shards={queue: masters})``, two per master if no name in 2,000
does it), and its name is chosen so that the shards fall evenly on the masters (shard tags aim at evenly spread
slots, but a name's shards can still share a master; the benchmark measures the balanced case). Every worker
serves every shard.

Reported per row: jobs/s; jobs/s per shard; the masters' Redis CPU (INFO cpu, user + sys, summed over the
masters) per job in microseconds, and per master (the spread shows the balance); the workers' CPU per job;
and the projected ceiling per shard: 1 core / (Redis CPU per job of one shard), the rate at which one master
would be saturated if the workers were not the bottleneck. On a 2-core machine the workers are the bottleneck
(they share the cores with every master), so jobs/s does not grow with masters here: the per-shard CPU and
the ceiling are the figures that transfer to one-core-per-master hardware. "standalone" is the same drain on a
plain redis-server (the arq layout) for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import redis

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _common import DONE_KEY, FIRST_KEY, GO_KEY, LAST_KEY, NOOP, READY_KEY, noop_body  # noqa: E402

from asyncq import App, JobSpec, WorkerSettings, run_worker  # noqa: E402
from asyncq.cluster import shard_of, shard_tag  # noqa: E402
from asyncq.embedded import EmbeddedCluster, EmbeddedRedis, find_cluster_tools  # noqa: E402

CONCURRENCY = 100
DRAIN_TIMEOUT = 300.0


# --- the worker process --------------------------------------------------------------------------------------
def serve(queue: str, shards: int) -> None:
    """One worker process: the cluster's URL comes from ASYNCQ_REDIS_URL, the probe's from BENCH_REDIS_*."""
    from _common import gate, quiet_logging

    quiet_logging()
    options: dict[str, Any] = {"queue_shards": {queue: shards}} if shards > 1 else {}
    app = App(**options)
    app.task(name=NOOP, queue=queue)(noop_body)
    gate()
    asyncio.run(run_worker(app, WorkerSettings(queues=(queue,), concurrency=CONCURRENCY)))


# --- the driver ----------------------------------------------------------------------------------------------
def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for p in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in f[11:15])
    return total / os.sysconf("SC_CLK_TCK")


def redis_cpu(port: int) -> float:
    info = redis.Redis(port=port).info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def commands(port: int) -> tuple[int, int]:
    """(commands, script calls) the server ran since its last CONFIG RESETSTAT (a Lua script's commands count
    one by one; the script calls are the EVALSHA/EVAL round trips)."""
    stats = redis.Redis(port=port).info("commandstats")
    total = sum(int(v["calls"]) for k, v in stats.items() if k not in ("cmdstat_info", "cmdstat_config|resetstat"))
    scripts = sum(int(v["calls"]) for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval"))
    return total, scripts


def spread_queue(cluster: EmbeddedCluster, masters: int) -> tuple[str, int]:
    """A queue name and shard count (one shard per master, else two) whose shards fall evenly on the masters."""
    for shards in (masters, 2 * masters):
        for i in range(2000):
            name = f"w1q{i}"
            per_master = Counter(cluster.master_for(shard_tag(name, s)) for s in range(shards))
            if len(per_master) == masters and len(set(per_master.values())) == 1:
                return name, shards
    raise RuntimeError(f"no queue name spreads its shards evenly over {masters} masters")


async def prefill(url: str, queue: str, shards: int, n: int) -> Counter[int]:
    """W1's prefill (not timed): app.enqueue_many in batches of 1,000; returns the jobs per shard."""
    options: dict[str, Any] = {"queue_shards": {queue: shards}} if shards > 1 else {}
    app = App(redis_url=url, **options)
    per_shard: Counter[int] = Counter()
    try:
        for first in range(0, n, 1000):
            jobs = await app.enqueue_many([JobSpec(NOOP, (), {}).set(queue=queue)
                                           for _ in range(min(1000, n - first))], batch_size=1000)
            if shards > 1:
                per_shard.update(shard_of(j.job_id)[1] for j in jobs)  # type: ignore[index]
            else:
                per_shard[0] += len(jobs)
    finally:
        await app.close()
    return per_shard


def measure(url: str, masters: list[int], queue: str, shards: int, n: int, probe: EmbeddedRedis) -> dict[str, Any]:
    """Prefill n no-ops, start one worker per master at the go line, time the drain."""
    side = redis.Redis(port=probe.port, db=14)
    side.flushdb()

    per_shard = asyncio.run(prefill(url, queue, shards, n))
    env = {**os.environ, "ASYNCQ_REDIS_URL": url, "BENCH_REDIS_HOST": "127.0.0.1",
           "BENCH_REDIS_PORT": str(probe.port), "BENCH_REDIS_DB": "14", "PYTHONPATH": str(ROOT)}
    n_workers = len(masters)
    logs = [open(f"/tmp/asyncq-cluster-bench-worker{i}.log", "wb") for i in range(n_workers)]  # noqa: SIM115
    procs = [subprocess.Popen([sys.executable, __file__, "serve", "--queue", queue, "--shards", str(shards)],
                              env=env, cwd=ROOT, stdout=logs[i], stderr=subprocess.STDOUT, start_new_session=True)
             for i in range(n_workers)]
    try:
        deadline = time.monotonic() + 60
        while side.hlen(READY_KEY) < n_workers:
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                raise RuntimeError("a worker did not start: see /tmp/asyncq-cluster-bench-worker*.log")
            time.sleep(0.01)
        pids = [p.pid for p in procs]
        cpu0 = cpu_seconds(pids)
        rcpu0 = {port: redis_cpu(port) for port in masters}
        for port in masters:
            redis.Redis(port=port).config_resetstat()
        go = time.time()
        side.set(GO_KEY, repr(go))
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while float(side.get(DONE_KEY) or 0) < n:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"the drain did not finish: {side.get(DONE_KEY)} of {n}")
            time.sleep(0.005)
        rcpu = {port: redis_cpu(port) - rcpu0[port] for port in masters}
        counted = [commands(port) for port in masters]
        cpu = cpu_seconds(pids) - cpu0
        time.sleep(0.05)
        last = max(float(v) for v in side.hvals(LAST_KEY))
        first = min(float(v) for v in side.hvals(FIRST_KEY))
        total = float(side.get(DONE_KEY) or 0)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for f in logs:
            f.close()
    seconds = last - go
    redis_total = sum(rcpu.values())
    per_job_us = redis_total / n * 1e6
    return {
        "jobs_per_s": n / seconds,
        "seconds": seconds,
        "steady_jobs_per_s": n / max(last - first, 1e-9),
        "ran": total,
        "shard_jobs": dict(sorted(per_shard.items())),
        "jobs_per_s_per_shard": n / seconds / shards,
        "jobs_per_s_per_master": n / seconds / len(masters),
        "redis_cpu_us_per_job": per_job_us,
        "redis_cpu_s_per_master": [round(rcpu[p], 3) for p in masters],
        "worker_cpu_us_per_job": cpu / n * 1e6,
        "commands_per_job": sum(c for c, _ in counted) / n,
        "scripts_per_job": sum(sc for _, sc in counted) / n,
        "redis_cores": redis_total / seconds,
        "worker_cores": cpu / seconds,
    }


def one_run(label: str, masters: int, pubsub: str, n: int, probe: EmbeddedRedis) -> dict[str, Any]:
    """One measurement on a fresh standalone server (masters == 0) or cluster (``pubsub``: the App's
    ``cluster_pubsub``, through ASYNCQ_CLUSTER_PUBSUB for this process and the workers)."""
    os.environ["ASYNCQ_CLUSTER_PUBSUB"] = pubsub
    if masters == 0:
        with EmbeddedRedis(executable=find_cluster_tools()[0]) as server:  # the cluster's Redis version
            result = measure(server.url, [server.port or 0], "w1q", 1, n, probe)
    else:
        with EmbeddedCluster(masters=masters, replicas=0) as cluster:
            ports = cluster.masters()
            queue, shards = spread_queue(cluster, masters) if masters > 1 else ("w1q", 1)
            result = measure(cluster.url, ports, queue, shards, n, probe)
    print(f"  {label}: {result['jobs_per_s']:.0f} jobs/s, Redis {result['redis_cpu_us_per_job']:.1f} µs/job",
          file=sys.stderr, flush=True)
    return result


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The median run (by jobs/s), whole, with every run's jobs/s and the median Redis CPU per job."""
    best = sorted(results, key=lambda r: r["jobs_per_s"])[len(results) // 2]
    best["jobs_per_s_runs"] = [round(r["jobs_per_s"]) for r in results]
    best["redis_cpu_us_per_job_median"] = cpu = statistics.median(r["redis_cpu_us_per_job"] for r in results)
    # one job costs its shard's master this much; one core per master saturates at:
    best["ceiling_per_master_core"] = 1e6 / cpu if cpu > 0 else 0.0
    return best


def table(rows: dict[str, dict[str, Any]], n: int, runs: int) -> str:
    out = [
        f"W1 drain: {n:,} no-op jobs queued first, then one worker process (concurrency {CONCURRENCY}) per master; "
        f"median of {runs} run(s); {os.cpu_count()} CPU(s) shared by the masters and the workers.",
        "",
        "| setup | shards | jobs/s | jobs/s per master | jobs/s per shard | Redis CPU µs/job (all masters) | "
        "Redis CPU s per master | Redis commands/job (script calls) | worker CPU µs/job | "
        "cores busy: workers / Redis | "
        "projected ceiling per master core (jobs/s) | jobs/s per run |",
        "|---|--:|--:|--:|--:|--:|---|--:|--:|--:|--:|---|",
    ]
    for label, r in rows.items():
        out.append(
            f"| {label} | {len(r['shard_jobs'])} | {r['jobs_per_s']:,.0f} | {r['jobs_per_s_per_master']:,.0f} | "
            f"{r['jobs_per_s_per_shard']:,.0f} | "
            f"{r['redis_cpu_us_per_job_median']:.1f} | {' / '.join(f'{c:.2f}' for c in r['redis_cpu_s_per_master'])} | "
            f"{r['commands_per_job']:.1f} ({r['scripts_per_job']:.2f}) | {r['worker_cpu_us_per_job']:.0f} | "
            f"{r['worker_cores']:.2f} / {r['redis_cores']:.2f} | "
            f"{r['ceiling_per_master_core']:,.0f} | {', '.join(map(str, r['jobs_per_s_runs']))} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    s = sub.add_parser("serve", help="(internal) one worker process")
    s.add_argument("--queue", required=True)
    s.add_argument("--shards", type=int, required=True)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--masters", default="0,1,2,3", help="comma-separated; 0 is a standalone redis-server")
    parser.add_argument("--pubsub", default="auto",
                        help="the clusters' cluster_pubsub, comma-separated for one row each: auto (sharded on "
                             "Redis >= 7), sharded, classic")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    if args.command == "serve":
        serve(args.queue, args.shards)
        return
    configs: dict[str, tuple[int, str]] = {}
    for k in (int(x) for x in args.masters.split(",")):
        for mode in (["auto"] if k == 0 else args.pubsub.split(",")):
            label = "standalone" if k == 0 else f"cluster, {k} master{'s' if k > 1 else ''}"
            configs[label + (f" ({mode} pub/sub)" if mode != "auto" else "")] = (k, mode)
    results: dict[str, list[dict[str, Any]]] = {label: [] for label in configs}
    with EmbeddedRedis() as probe:
        for i in range(args.runs):  # each run goes through every setup in turn: load drift hits them all alike
            print(f"run {i + 1} of {args.runs}", file=sys.stderr, flush=True)
            for label, (k, mode) in configs.items():
                results[label].append(one_run(label, k, mode, args.jobs, probe))
    rows = {label: summary(rs) for label, rs in results.items()}
    print(table(rows, args.jobs, args.runs))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
