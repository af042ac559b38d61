"""What run.py and every system's script share: where Redis is, the progress probe, the start gate.

This module needs nothing but redis-py, so it imports in every system's environment (the project's, and
each peer's virtual environment under ``.venvs/``).

Everything runs in one Redis database that is not 0 (default 14, ``BENCH_REDIS_DB`` to change it) because
run.py FLUSHDBs it between measurements; refusing db 0 keeps a typo from wiping someone's data.

How progress is observed, the same way for every system (no system-specific key layout is read):

* Every benchmark task calls :func:`done` as its last statement. That increments an in-process counter
  (a lock and an integer: no I/O on the job's path). A daemon thread per process (started on the first
  call, so each Celery prefork child gets its own) writes the counter to Redis every ``FLUSH_EVERY``
  seconds, with commands no queue uses (``INCRBYFLOAT``, ``HINCRBYFLOAT``), so W7 can tell them apart.
* :func:`record_latency` appends a latency to an in-process list that the same thread RPUSHes in batches.
* A worker script calls :func:`gate` after its imports: it says "ready" and waits for run.py's "go", so
  several worker processes (W6) start serving at the same instant and interpreter start-up is never timed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time

import redis

REDIS_HOST = os.environ.get("BENCH_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("BENCH_REDIS_PORT", "6379"))
REDIS_DB = int(os.environ.get("BENCH_REDIS_DB", "14"))
if REDIS_DB == 0:
    raise SystemExit("the benchmark FLUSHDBs its database; refusing to use db 0 (set BENCH_REDIS_DB)")
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"

#: each worker process sets a field (its pid) here when its imports are done
READY_KEY = "bench:ready"
#: run.py sets time.time() here when every worker is ready: the start line of W1, W2, W6
GO_KEY = "bench:go"
#: the number of finished jobs, over all worker processes (INCRBYFLOAT)
DONE_KEY = "bench:done"
#: per process: time.time() of its first / last finished job (HINCRBYFLOAT: a value, written as deltas)
FIRST_KEY = "bench:first"
LAST_KEY = "bench:last"
#: latencies in seconds, one entry per job (W3, W4)
LATENCY_KEY = "bench:latency"
#: commands of our own that W7 subtracts from INFO commandstats
PROBE_COMMANDS = ("incrbyfloat", "hincrbyfloat", "rpush")

#: task kinds every system implements under these names
NOOP = "noop"  # W1, W1e, W6, W7: nothing but done()
SLEEP = "sleep"  # W2: 50 ms of (asyncio|time).sleep
LATENCY = "latency"  # W3, W4: records time.time() at start minus the producer's time.time() at enqueue
LONG = "long"  # W4: 2 s of (asyncio|time).sleep
SLEEP_SECONDS = 0.05
LONG_SECONDS = 2.0

FLUSH_EVERY = 0.005
GATE_TIMEOUT = 120.0


def client() -> redis.Redis:
    return redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)


# --- the probe: what tasks call ----------------------------------------------------------------------------
class _Probe:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.latencies: list[float] = []
        self.pid = os.getpid()
        self.thread = threading.Thread(target=self._flush_forever, name="bench-probe", daemon=True)
        self.thread.start()

    def _flush_forever(self) -> None:
        r = client()
        field = str(self.pid)
        sent_count, sent_last, sent_first = 0, 0.0, False
        while True:
            time.sleep(FLUSH_EVERY)
            with self.lock:
                count, first, last = self.count, self.first, self.last
                latencies, self.latencies = self.latencies, []
            if count == sent_count and not latencies:
                continue
            try:
                pipe = r.pipeline(transaction=False)
                if latencies:
                    pipe.rpush(LATENCY_KEY, *(repr(v) for v in latencies))
                if count != sent_count:
                    pipe.incrbyfloat(DONE_KEY, count - sent_count)
                    pipe.hincrbyfloat(LAST_KEY, field, last - sent_last)
                    if not sent_first:
                        pipe.hincrbyfloat(FIRST_KEY, field, first)
                pipe.execute()
            except redis.RedisError:
                with self.lock:  # try again next tick
                    self.latencies[:0] = latencies
                continue
            sent_count, sent_last, sent_first = count, last, True


_probe: _Probe | None = None
_probe_lock = threading.Lock()


def _get_probe() -> _Probe:
    global _probe
    p = _probe
    if p is None or p.pid != os.getpid():  # first call in this process (or a forked child)
        with _probe_lock:
            if _probe is None or _probe.pid != os.getpid():
                _probe = _Probe()
            p = _probe
    return p


def done() -> None:
    """A task finished: count it (no I/O here; the probe thread reports it within FLUSH_EVERY s)."""
    p = _get_probe()
    t = time.time()
    with p.lock:
        if p.count == 0:
            p.first = t
        p.count += 1
        p.last = t


def record_latency(enqueued_at: float) -> None:
    """Call first thing in the task: latency = now - the producer's time.time() just before enqueueing."""
    started = time.time()
    p = _get_probe()
    with p.lock:
        p.latencies.append(started - enqueued_at)


# --- the start gate: what worker scripts call ----------------------------------------------------------------
def gate() -> float:
    """Say "imports done" and wait for run.py's go (at most GATE_TIMEOUT s); returns the go time."""
    r = client()
    try:
        r.hset(READY_KEY, str(os.getpid()), repr(time.time()))
        deadline = time.monotonic() + GATE_TIMEOUT
        while time.monotonic() < deadline:
            go = r.get(GO_KEY)
            if go is not None:
                return float(go)
            time.sleep(0.001)
        raise SystemExit("no go from run.py within the gate timeout")
    finally:
        r.close()


def quiet_logging() -> None:
    """Warnings only, in every worker: per-job INFO lines would cost the system that logs more."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for name in ("celery", "taskiq", "saq", "streaq", "arq", "asyncq"):
        logging.getLogger(name).setLevel(logging.WARNING)


# --- the workloads' task bodies, shared by every async system (each registers them with its own decorator) ---
async def noop_body() -> None:
    """W1/W6/W7: the cost of the queue itself, nothing else."""
    done()


async def sleep_body() -> None:
    """W2: an I/O-bound job; with enough slots, throughput is bounded by concurrency, not CPU."""
    await asyncio.sleep(SLEEP_SECONDS)
    done()


async def latency_body(enqueued_at: float) -> None:
    """W3: the start time is taken first, then reported."""
    record_latency(enqueued_at)
    done()


async def long_body() -> None:
    """W4: the long jobs the no-ops must not wait behind."""
    await asyncio.sleep(LONG_SECONDS)
    done()
