"""The App that real worker processes run on the test Redis Cluster (tests/test_cluster*.py,
benchmarks/cluster_failover.py): ``python -m asyncq worker tests.cluster_app:app`` with
ASYNCQ_REDIS_URL=redis+cluster://... and, for sharded queues, ASYNCQ_QUEUE_SHARDS.

``cluster.work`` records each start and each finish in the run log named by ASYNCQ_TEST_RUNLOG (a file, not
Redis: the counts must survive a master being killed), so a test can tell jobs that completed, that were lost
and that ran twice.
"""

from __future__ import annotations

import asyncio

import asyncq
from tests.cluster_runlog import RunLog

app = asyncq.App()
_log = RunLog.from_env()


@app.task(name="cluster.work", max_tries=20)
async def work(n: int, seconds: float) -> int:
    if _log is not None:
        _log.record("start", n)
    if seconds:
        await asyncio.sleep(seconds)
    if _log is not None:
        _log.record("done", n)
    return n


@app.task(name="cluster.echo")
async def echo(x: object) -> object:
    return x
