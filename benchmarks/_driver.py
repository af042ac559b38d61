"""The command line every system script shares (``_<system>_bench.py``), so run.py drives them all alike.

    python _X_bench.py worker --concurrency N          # gate (ready, wait for go), then serve until SIGTERM
    python _X_bench.py enqueue --kind noop --n 20000 --mode one|batch   # prints {"seconds": ...}
    python _X_bench.py latency --n 1000 --rate 100     # warm-up job, then a steady rate; prints {"rate": ...}
    python _X_bench.py hol --long 20 --short 200       # W4: long jobs, then latency-recording no-ops

A system module provides ``Producer`` (``open``, ``close``, ``send(kind, *args)``, ``send_many(kind, n)``,
``batch_size``) and ``serve(concurrency: int | None)``, which blocks running one worker process. Producers
are async; a sync system (Celery) calls its blocking API inside the coroutine, which is fine in a process
that does nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol

from _common import LATENCY, LATENCY_KEY, LONG, NOOP, client, gate, quiet_logging


class Producer(Protocol):
    batch_size: int

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def send(self, kind: str, *args: Any) -> None: ...
    async def send_many(self, kind: str, n: int) -> None: ...


def _out(obj: dict[str, Any]) -> None:
    print("RESULT " + json.dumps(obj), flush=True)


async def _enqueue(p: Producer, kind: str, n: int, mode: str) -> dict[str, Any]:
    t = time.perf_counter()
    if mode == "one":
        for _ in range(n):
            await p.send(kind)
    else:
        step = p.batch_size
        for start in range(0, n, step):
            await p.send_many(kind, min(step, n - start))
    return {"seconds": time.perf_counter() - t}


async def _wait_latency_records(n: int, timeout: float) -> None:
    r = client()
    try:
        deadline = time.monotonic() + timeout
        while r.llen(LATENCY_KEY) < n:
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out waiting for {n} latency records")
            await asyncio.sleep(0.005)
    finally:
        r.close()


async def _latency(p: Producer, n: int, rate: float) -> dict[str, Any]:
    await p.send(LATENCY, time.time())  # warm-up: connections, scripts, first dispatch; not counted
    await _wait_latency_records(1, 30)
    r = client()
    r.delete(LATENCY_KEY)
    r.close()
    t0 = time.monotonic()
    for i in range(n):
        delay = t0 + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await p.send(LATENCY, time.time())
    return {"rate": n / (time.monotonic() - t0) if n > 1 else rate}


async def _hol(p: Producer, long: int, short: int) -> dict[str, Any]:
    for _ in range(long):
        await p.send(LONG)
    for _ in range(short):
        await p.send(LATENCY, time.time())
    return {}


def main(producer_factory: Callable[[], Producer], serve: Callable[[int | None], None]) -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("worker")
    w.add_argument("--concurrency", type=int, default=None)
    e = sub.add_parser("enqueue")
    e.add_argument("--kind", default=NOOP)
    e.add_argument("--n", type=int, required=True)
    e.add_argument("--mode", choices=["one", "batch"], default="batch")
    lt = sub.add_parser("latency")
    lt.add_argument("--n", type=int, required=True)
    lt.add_argument("--rate", type=float, default=100.0)
    h = sub.add_parser("hol")
    h.add_argument("--long", type=int, default=20)
    h.add_argument("--short", type=int, default=200)
    args = ap.parse_args()
    quiet_logging()

    if args.cmd == "worker":
        gate()
        serve(args.concurrency)
        return

    async def go() -> dict[str, Any]:
        p = producer_factory()
        await p.open()
        try:
            if args.cmd == "enqueue":
                return await _enqueue(p, args.kind, args.n, args.mode)
            if args.cmd == "latency":
                return await _latency(p, args.n, args.rate)
            return await _hol(p, args.long, args.short)
        finally:
            await p.close()

    _out(asyncio.run(go()))
    sys.stdout.flush()
