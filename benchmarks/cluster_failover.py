"""A Redis Cluster master lost under load: 20,000 jobs over 3 shards, completed / lost / run twice (issue #19).

    python benchmarks/cluster_failover.py                      # SIGKILL the master of shard 0 at 40 %
    python benchmarks/cluster_failover.py --wait-replicas 1    # enqueue waits for a replica (WAIT) first
    python benchmarks/cluster_failover.py --mode manual        # CLUSTER FAILOVER on its replica instead
    python benchmarks/cluster_failover.py --jobs 5000 --rate 1000 --workers 3 --runs 3

It starts its own cluster (asyncq.embedded.EmbeddedCluster: 3 masters x 1 replica, node timeout 2 s, free
private ports, never 6379), ``--workers`` processes of ``asyncq worker tests.cluster_app:app``, and a producer
in this process that enqueues ``--jobs`` jobs (``cluster.work``, 5 ms each) at ``--rate`` per second over
``--shards`` shards of one queue; when ``--kill-at`` of them are enqueued, the master serving shard 0 is
SIGKILLed (its replica takes over after the node timeout) or handed over with ``CLUSTER FAILOVER``. The
counting (a run log on disk, which no failover rolls back) is tests/cluster_failover_run.py's:

- enqueued: acknowledged by Redis (with --wait-replicas, by a replica too); an enqueue that failed while the
  master changed is retried with the same job ids, so it is enqueued once;
- completed: finished at least once; lost: enqueued, never finished, with no progress for --drain-window s;
- run twice: started more than once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.cluster_failover_run import run_failover  # noqa: E402

from asyncq.embedded import EmbeddedCluster  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--shards", type=int, default=3)
    parser.add_argument("--rate", type=float, default=2000.0, help="jobs enqueued per second")
    parser.add_argument("--kill-at", type=float, default=0.4, help="fraction of the jobs enqueued at the failover")
    parser.add_argument("--mode", choices=("kill", "manual"), default="kill")
    parser.add_argument("--wait-replicas", type=int, default=0, help="asyncq's enqueue_wait_replicas (WAIT)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--lease", type=float, default=5.0)
    parser.add_argument("--drain-window", type=float, default=60.0)
    parser.add_argument("--node-timeout-ms", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=1, help="runs, each on a fresh cluster")
    parser.add_argument("--keep-logs", action="store_true",
                        help="keep the worker logs and run log of a clean run too (kept anyway when a job was "
                             "lost or ran twice)")
    parser.add_argument("--json", help="also write the reports to this file")
    args = parser.parse_args()
    reports = []
    for i in range(args.runs):
        with EmbeddedCluster(masters=3, replicas=1, node_timeout_ms=args.node_timeout_ms,
                             new_session=True) as cluster:
            report = asyncio.run(run_failover(
                cluster, jobs=args.jobs, shards=args.shards, rate=args.rate, kill_at=args.kill_at, mode=args.mode,
                workers=args.workers, concurrency=args.concurrency, lease=args.lease,
                wait_replicas=args.wait_replicas, drain_window=args.drain_window))
        reports.append(report)
        print(f"run {i + 1}: {report.line()}", flush=True)
        for error in report.errors:
            print("  error:", error)
        if args.keep_logs or report.errors or report.lost or report.run_twice:
            print(f"  logs and run log: {report.logs}")
        elif report.logs is not None:
            shutil.rmtree(report.logs, ignore_errors=True)
    if len(reports) > 1:
        print(f"{len(reports)} runs: lost {[r.lost for r in reports]}, run twice {[r.run_twice for r in reports]}, "
              f"failover s {[round(r.failover_s, 1) for r in reports]}, "
              f"longest pause s {[round(r.longest_pause_s, 1) for r in reports]}")
    if args.json:
        Path(args.json).write_text(json.dumps([{k: str(v) if isinstance(v, Path) else v
                                                for k, v in asdict(r).items()} for r in reports], indent=2))


if __name__ == "__main__":
    main()
