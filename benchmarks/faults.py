"""Fault runs: many jobs through real worker processes while workers are SIGKILLed or Redis is restarted.

    python benchmarks/faults.py kill   --jobs 50000 --workers 3      # SIGKILL a random worker every 2-5 s
    python benchmarks/faults.py outage --jobs 50000 --outage 20      # stop Redis (SHUTDOWN, AOF on), restart
    python benchmarks/faults.py calm   --jobs 5000 --fuzz 1000       # no faults; garbage written into the keys
    python benchmarks/faults.py backlog --backlog 40000               # SIGKILL a worker ahead of 40,000 newer jobs

Everything runs on redis-servers of its own (free ports, temp directories; never the shared one on 6379):
the queue's, and a second one where the task records each start and completion (``_fault_app.py``), which
survives the queue's outage. The run ends when every job has completed or been dead-lettered, when nothing
moved for ``--stall`` seconds, or at ``--timeout``; then it waits (up to ``--settle``) until no job is left
in the queue or in flight, so a late second run is still counted. It prints a report and writes it as JSON
with ``--json FILE``. See benchmarks/README.md, "Fault runs", for what each number means.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._fault_app import DONE_LOG, STORE_ENV, Store  # noqa: E402
from benchmarks._redis_proc import RedisProc  # noqa: E402

from asyncq import App, JobSpec, keys  # noqa: E402

LANE = keys.lane_key(keys.DEFAULT_QUEUE)  # every job of the run goes to the default queue and priority


# --- workers ------------------------------------------------------------------------------------------------
@dataclass
class Slot:
    """One of the N worker processes; restarted in place when it is killed or exits."""

    index: int
    proc: subprocess.Popen[bytes] | None = None
    started: int = 0
    env: dict[str, str] = field(default_factory=dict)  # on top of the fleet's (e.g. its own concurrency)


class Fleet:
    def __init__(self, n: int, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.slots = [Slot(i) for i in range(n)]
        self.crashes: list[dict[str, Any]] = []
        self.t0 = time.time()

    def add(self, env: dict[str, str]) -> Slot:
        """One more slot (not started) whose worker gets ``env`` on top of the fleet's."""
        slot = Slot(len(self.slots), env=env)
        self.slots.append(slot)
        return slot

    def start(self, slot: Slot) -> None:
        slot.started += 1
        log = (self.log_dir / f"worker{slot.index}.log").open("ab")
        log.write(f"\n=== start {slot.started} at +{time.time() - self.t0:.1f}s ===\n".encode())
        log.flush()
        slot.proc = subprocess.Popen(
            [sys.executable, "-m", "asyncq", "worker", "benchmarks._fault_app:app"], cwd=ROOT,
            env={**self.env, **slot.env},
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, close_fds=True, start_new_session=True,
        )
        log.close()

    def start_all(self) -> None:
        for slot in self.slots:
            self.start(slot)

    def reap_crashed(self) -> None:
        """A worker that exited on its own is a crash: note its exit code and log tail, start it again."""
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is not None:
                self.crashes.append({
                    "at": round(time.time() - self.t0, 1), "worker": slot.index, "pid": slot.proc.pid,
                    "rc": slot.proc.returncode, "log": self.log_tail(slot),
                })
                self.start(slot)

    def kill(self, slot: Slot) -> int:
        assert slot.proc is not None
        pid = slot.proc.pid
        slot.proc.send_signal(signal.SIGKILL)
        slot.proc.wait(10)
        slot.proc = None
        return pid

    def log_tail(self, slot: Slot, lines: int = 4) -> str:
        with contextlib.suppress(OSError):
            text = (self.log_dir / f"worker{slot.index}.log").read_text(errors="replace").strip().splitlines()
            return " | ".join(line.strip()[:300] for line in text[-lines:])
        return ""

    def stop_all(self, grace: float = 20.0) -> dict[int, int | None]:
        """SIGTERM every worker, SIGKILL what is left after ``grace``; returns the exit codes."""
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is None:
                slot.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        codes: dict[int, int | None] = {}
        for slot in self.slots:
            if slot.proc is None:
                continue
            try:
                codes[slot.index] = slot.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                slot.proc.kill()
                slot.proc.wait(10)
                codes[slot.index] = None  # did not stop on SIGTERM: killed
        return codes


# --- fuzz ---------------------------------------------------------------------------------------------------
FUZZ_KINDS = (
    "non-utf8-id",        # a lane member whose id is not UTF-8 (half of them with a good payload)
    "garbage-payload",    # arq:job:<id> is random bytes
    "wrong-type-job",     # arq:job:<id> is a HASH / LIST (WRONGTYPE)
    "retry-not-integer",  # good payload, arq:retry:<id> is not an integer
    "lease-without-ttl",  # good payload, arq:in-progress:<id> held forever by nobody
    "wrong-field-types",  # JSON payload with a dict as args, a list as kwargs, a string as enqueue time
    "bad-score",          # good payload, lane score -inf or negative
    "unknown-task",       # good payload for a task no worker has (waits unknown_task_wait, by design)
)


@dataclass
class FuzzEntry:
    kind: str
    job_id: bytes
    n: int | None  # the record number if the payload is a good `work` job


def good_payload(function: str, n: int) -> bytes:
    return orjson.dumps({"t": None, "f": function, "a": [n, 0.01], "k": {}, "et": int(time.time() * 1000),
                         "q": keys.DEFAULT_QUEUE, "p": keys.DEFAULT_PRIORITY})


def write_fuzz(r: redis.Redis, rng: random.Random, count: int, first_n: int, serial: int) -> list[FuzzEntry]:
    """Write ``count`` bad entries straight into asyncq's keys, due now (so among the good jobs)."""
    entries = []
    pipe = r.pipeline(transaction=False)
    now = int(time.time() * 1000)
    for i in range(count):
        kind = FUZZ_KINDS[(serial + i) % len(FUZZ_KINDS)]
        n = first_n + serial + i
        jid = f"fz{serial + i}-{kind}".encode()
        score: float = now
        record: int | None = None
        if kind == "non-utf8-id":
            jid = b"\xff\xfe" + rng.randbytes(6) + f"-{serial + i}".encode()
            if i % 2 == 0:
                pipe.set(keys.JOB_PREFIX.encode() + jid, good_payload("work", n))
                record = n
        elif kind == "garbage-payload":
            pipe.set(keys.JOB_PREFIX.encode() + jid, rng.randbytes(rng.randint(0, 64)))
        elif kind == "wrong-type-job":
            if i % 2 == 0:
                pipe.hset(keys.JOB_PREFIX.encode() + jid, "f", "work")
            else:
                pipe.rpush(keys.JOB_PREFIX.encode() + jid, "work")
        elif kind == "retry-not-integer":
            pipe.set(keys.JOB_PREFIX.encode() + jid, good_payload("work", n))
            pipe.set(keys.RETRY_PREFIX.encode() + jid, rng.choice([b"x", b"1.5", b"\xff", b"99999999999999999999"]))
            record = n
        elif kind == "lease-without-ttl":
            pipe.set(keys.JOB_PREFIX.encode() + jid, good_payload("work", n))
            pipe.set(keys.IN_PROGRESS_PREFIX.encode() + jid, b"ghost-worker:0:" + jid)
            record = n
        elif kind == "wrong-field-types":
            pipe.set(keys.JOB_PREFIX.encode() + jid, orjson.dumps(
                {"t": "x", "f": "work", "a": {"n": n, "seconds": 0.01}, "k": [1], "et": "soon", "q": 5, "p": "hi"}
            ))
        elif kind == "bad-score":
            pipe.set(keys.JOB_PREFIX.encode() + jid, good_payload("work", n))
            score = float("-inf") if i % 2 == 0 else -rng.randint(1, 10**12)
            record = n
        elif kind == "unknown-task":
            pipe.set(keys.JOB_PREFIX.encode() + jid, good_payload("fault_no_such_task", n))
        pipe.zadd(LANE, {jid: score})
        entries.append(FuzzEntry(kind, jid, record))
    pipe.execute()
    return entries


# --- the run ------------------------------------------------------------------------------------------------
@dataclass
class Kill:
    at: float  # Unix time
    worker: int
    pid: int
    in_flight: dict[int, float]  # job n -> start time, as recorded by the task (started, not completed)


@dataclass
class Run:
    args: argparse.Namespace
    t0: float = field(default_factory=time.time)
    kills: list[Kill] = field(default_factory=list)
    outage: dict[str, float] = field(default_factory=dict)
    done_before_stop: set[int] = field(default_factory=set)
    fuzz: list[FuzzEntry] = field(default_factory=list)
    end_reason: str = ""
    alive_at_end: int = 0
    backlog: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)


def job_seconds(rng: random.Random, args: argparse.Namespace) -> float:
    if rng.random() < args.long_fraction:
        return args.long_seconds
    return round(rng.uniform(args.short_min, args.short_max), 3)


def enqueue_all(app: App, queue_r: redis.Redis, rng: random.Random, run: Run) -> None:
    args = run.args
    batch = 1000
    fuzz_left = args.fuzz
    batches = max(1, (args.jobs + batch - 1) // batch)
    for b, start in enumerate(range(0, args.jobs, batch)):
        specs = [
            JobSpec("work", (n, job_seconds(rng, args)), {}).set(job_id=f"j{n}")
            for n in range(start, min(start + batch, args.jobs))
        ]
        app.enqueue_many_sync(specs)
        share = fuzz_left // (batches - b)
        if share:
            run.fuzz += write_fuzz(queue_r, rng, share, args.jobs, len(run.fuzz))
            fuzz_left -= share


def dead_letters(queue_r: redis.Redis) -> dict[bytes, dict[str, Any]]:
    """Dead letters by id; also by ``raw_id_hex`` when the meta has it (an id that is not UTF-8)."""
    out = {}
    for jid, raw in queue_r.hgetall(keys.DLQ_META).items():
        try:
            meta = orjson.loads(raw)
        except orjson.JSONDecodeError:
            meta = {"reason": "(meta is not JSON)"}
        meta = meta if isinstance(meta, dict) else {"reason": "(meta is not an object)"}
        out[jid] = meta
        with contextlib.suppress(TypeError, ValueError):
            out.setdefault(bytes.fromhex(meta["raw_id_hex"]), meta)
    return out


def good_id(jid: bytes) -> int | None:
    if jid.startswith(b"j") and jid[1:].isdigit():
        return int(jid[1:])
    return None


def progress(store: Store, queue_r: redis.Redis | None, jobs: int) -> tuple[int, int]:
    """(good jobs completed, good jobs dead-lettered); the second is -1 while the queue's Redis is down."""
    done = sum(1 for n in store.done() if 0 <= n < jobs)
    dead = -1
    if queue_r is not None:
        with contextlib.suppress(redis.RedisError):
            dead = sum(1 for jid in queue_r.hkeys(keys.DLQ_META) if good_id(jid) is not None)
    return done, dead


def good_left_in_queue(queue_r: redis.Redis) -> int:
    """Good jobs still in the lane (queued, running, or finished without their outcome written)."""
    return sum(1 for jid in queue_r.zrange(LANE, 0, -1) if good_id(jid) is not None)


def backlog_setup(app: App, store: Store, fleet: Fleet, run: Run, rng: random.Random) -> None:
    """backlog mode, up to the kill: the victim worker (concurrency = --held) starts the --held jobs, whose
    first run sleeps --hold-first s (they are still running at the kill; a second run sleeps --held-seconds);
    then --backlog newer jobs are enqueued, the --workers other workers start on them, and once they have
    completed --kill-after-done backlog jobs the victim is SIGKILLed (and not restarted). The rest of the run is
    the usual loop: it ends when every job has completed or been dead-lettered."""
    args = run.args
    held = range(args.held)
    app.enqueue_many_sync([
        JobSpec("work", (n, args.held_seconds), {"first_seconds": args.hold_first}).set(job_id=f"j{n}") for n in held
    ])
    victim = fleet.add({"ASYNCQ_WORKER_CONCURRENCY": str(args.held)})
    fleet.start(victim)
    deadline = time.time() + 60
    while set(store.starts()) != set(held):
        if time.time() > deadline or (victim.proc is not None and victim.proc.poll() is not None):
            raise RuntimeError(f"the victim worker did not start the {args.held} held jobs within 60 s; "
                               f"log: {fleet.log_tail(victim)}")
        time.sleep(0.1)
    t = time.time()
    for start in range(args.held, args.jobs, 1000):
        app.enqueue_many_sync([JobSpec("work", (n, job_seconds(rng, args)), {}).set(job_id=f"j{n}")
                               for n in range(start, min(start + 1000, args.jobs))])
    run.backlog["enqueue_s"] = round(time.time() - t, 1)
    if set(store.starts()) != set(held):
        raise RuntimeError("the victim worker started backlog jobs: its slots were not all taken by held jobs")
    run.t0 = fleet.t0 = time.time()
    for slot in fleet.slots:
        if slot is not victim:
            fleet.start(slot)
    while sum(1 for n in store.done() if n >= args.held) < args.kill_after_done:
        if time.time() - run.t0 > 120:
            raise RuntimeError("the workers completed no backlog job within 120 s")
        fleet.reap_crashed()
        time.sleep(0.05)
    assert victim.proc is not None
    running = store.running_on(victim.proc.pid)
    pid = fleet.kill(victim)
    killed_at = time.time()
    started = store.starts()
    run.kills.append(Kill(killed_at - run.t0, victim.index, pid, running))
    run.backlog["not_started_at_kill"] = sum(1 for n in range(args.held, args.jobs) if n not in started)
    print(f"  +{killed_at - run.t0:6.1f}s  SIGKILL victim (pid {pid}, {len(running)} held jobs in flight); "
          f"{run.backlog['not_started_at_kill']} backlog jobs not started yet", file=sys.stderr)


def backlog_report(run: Run, store: Store) -> dict[str, Any]:
    """When the victim's jobs started again and completed, and how much of the backlog went before them."""
    args = run.args
    t_kill = run.t0 + run.kills[0].at
    held = list(run.kills[0].in_flight)
    restarts: list[float] = []
    completions: list[float] = []
    for n in held:
        later = [s.at for s in store.start_log(n) if s.at > t_kill]
        if later:
            restarts.append(min(later))
        ends = [t for t in store.done_times(n) if t > t_kill]
        if ends:
            completions.append(min(ends))
    firsts = store.first_start_times(list(range(args.held, args.jobs)))
    last_restart = max(restarts) if len(restarts) == len(held) and held else None
    last_done = max(completions) if len(completions) == len(held) and held else None
    out: dict[str, Any] = {
        "backlog": args.jobs - args.held, "held_in_flight_at_kill": len(held), "lease_s": args.lease,
        "enqueue_s": run.backlog.get("enqueue_s"),
        "backlog_not_started_at_kill": run.backlog.get("not_started_at_kill"),
        "held_first_started_again_s": _r(min(restarts) - t_kill) if restarts else None,
        "held_all_started_again_s": _r(last_restart - t_kill) if last_restart else None,
        "held_all_completed_s": _r(last_done - t_kill) if last_done else None,
        "held_never_started_again": len(held) - len(restarts),
    }
    if last_restart is not None:
        out["backlog_started_after_kill_before_held"] = sum(1 for t in firsts.values() if t_kill < t < last_restart)
        out["backlog_not_started_when_held_restarted"] = (args.jobs - args.held) - sum(
            1 for t in firsts.values() if t < last_restart)
    return out


class Driver:
    """The monitoring loop: restarts crashed workers, kills workers or stops Redis, watches progress."""

    def __init__(self, run: Run, queue: RedisProc, store: Store, fleet: Fleet, rng: random.Random) -> None:
        self.run, self.queue, self.store, self.fleet, self.rng = run, queue, store, fleet, rng
        self.args = run.args
        self.queue_r = redis.Redis.from_url(queue.url(), socket_timeout=5)
        self.next_kill = time.time() + rng.uniform(self.args.kill_min, self.args.kill_max)
        self.outage_state = "before"
        self.done = 0

    def kill_one(self) -> None:
        slot = self.rng.choice(self.fleet.slots)
        pid = self.fleet.kill(slot)
        killed_at = time.time()
        self.run.kills.append(Kill(killed_at - self.run.t0, slot.index, pid, self.store.running_on(pid)))
        self.fleet.start(slot)
        self.next_kill = killed_at + self.rng.uniform(self.args.kill_min, self.args.kill_max)

    def outage_step(self, now: float) -> None:
        args, run = self.args, self.run
        if self.outage_state == "before":
            due = (now - run.t0 >= args.outage_at if args.outage_at is not None
                   else self.done >= args.outage_after * args.jobs)
            if due:
                run.done_before_stop = {n for n in self.store.done() if 0 <= n < args.jobs}
                run.outage["stopped_at"] = time.time() - run.t0
                self.queue_r.close()
                self.queue.shutdown()
                run.outage["stop_took"] = time.time() - run.t0 - run.outage["stopped_at"]
                self.outage_state = "down"
        elif self.outage_state == "down" and now - run.t0 >= run.outage["stopped_at"] + args.outage:
            self.queue.start()
            run.outage["restarted_at"] = time.time() - run.t0
            self.queue_r = redis.Redis.from_url(self.queue.url(), socket_timeout=5)
            self.outage_state = "after"

    def loop(self) -> None:
        args, run = self.args, self.run
        last_change, last_seen = time.time(), (-1, -1)
        next_check = 0.0
        while True:
            now = time.time()
            self.fleet.reap_crashed()
            if args.mode == "kill" and now >= self.next_kill:
                self.kill_one()
            if args.mode == "outage":
                self.outage_step(now)
            if now >= next_check:
                next_check = now + 1.0
                down = self.outage_state == "down"
                self.done, dead = progress(self.store, None if down else self.queue_r, args.jobs)
                if (self.done, dead) != last_seen:
                    last_seen, last_change = (self.done, dead), now
                    print(f"  +{now - run.t0:6.1f}s  completed {self.done}  dead-lettered {max(dead, 0)}  "
                          f"kills {len(run.kills)}  crashes {len(self.fleet.crashes)}", file=sys.stderr)
                if dead >= 0 and self.done + dead >= args.jobs:
                    run.end_reason = "all jobs completed or dead-lettered"
                    return
                if now - last_change > args.stall and not down:
                    run.end_reason = f"stalled: nothing completed or dead-lettered for {args.stall:.0f} s"
                    return
                if now - run.t0 > args.timeout:
                    run.end_reason = f"timeout after {args.timeout:.0f} s"
                    return
            time.sleep(0.05)

    def settle(self) -> None:
        """A job whose outcome was not written is still in the lane and may run again: wait for that."""
        if self.outage_state == "down":  # ended (timeout) during the outage: bring Redis back to read it
            self.outage_step(float("inf"))
        self.run.alive_at_end = sum(1 for slot in self.fleet.slots if slot.proc and slot.proc.poll() is None)
        stuck = not self.run.end_reason.startswith("all jobs")
        deadline = time.time() + (0 if stuck else self.args.settle)
        left = -1
        with contextlib.suppress(redis.RedisError):
            left = good_left_in_queue(self.queue_r)
        while left != 0 and time.time() < deadline:
            self.fleet.reap_crashed()
            with contextlib.suppress(redis.RedisError):
                left = good_left_in_queue(self.queue_r)
                if left == 0:
                    break
            time.sleep(0.5)
        self.run.outage["settled_left"] = left
        self.queue_r.close()


def report(run: Run, queue: RedisProc, store: Store, fleet: Fleet, stop_codes: dict[int, int | None]) -> dict[str, Any]:
    args = run.args
    jobs = args.jobs
    queue_r = redis.Redis.from_url(queue.url(), socket_timeout=10)
    starts, done = store.starts(), store.done()
    dlq = dead_letters(queue_r)
    good_dead = {n: m for j, m in dlq.items() if (n := good_id(j)) is not None}
    completed = {n for n in range(jobs) if done.get(n, 0) >= 1}
    started_twice = [n for n in range(jobs) if starts.get(n, 0) > 1]
    completed_twice = [n for n in range(jobs) if done.get(n, 0) > 1]
    lost = [n for n in range(jobs) if n not in completed and n not in good_dead]
    reasons = Counter(str(m.get("reason") or "(no reason)")[:120] for m in good_dead.values())
    out: dict[str, Any] = {
        "mode": args.mode, "jobs": jobs, "workers": args.workers, "concurrency": args.concurrency,
        "lease": args.lease, "seed": args.seed, "asyncq": run.source, "end": run.end_reason,
        "duration_s": round(time.time() - run.t0, 1),
        "completed": len(completed),
        "dead_lettered": len(good_dead),
        "dead_letter_reasons": dict(reasons.most_common()),
        "completed_and_dead_lettered": len(completed & set(good_dead)),
        "started_more_than_once": len(started_twice),
        "completed_more_than_once": len(completed_twice),
        "lost": len(lost),
        "lost_sample": lost[:20],
        "still_in_queue_at_end": run.outage.get("settled_left"),
        "workers_alive_at_end": run.alive_at_end,
        "worker_crashes": len(fleet.crashes),
        "worker_crash_codes": dict(Counter(str(c["rc"]) for c in fleet.crashes)),
        "worker_crash_samples": fleet.crashes[:5],
        "exit_codes_on_sigterm": stop_codes,
    }
    if args.mode == "kill":
        out["kills"] = kill_report(run, store)
    if args.mode == "backlog" and run.kills:
        out["backlog"] = backlog_report(run, store)
    if args.mode == "outage":
        before = run.done_before_stop
        restarted = run.outage.get("restarted_at")
        ran_again = []
        if restarted is not None:
            t_stop = run.t0 + run.outage["stopped_at"]
            ran_again = [n for n in before if any(s.at > t_stop for s in store.start_log(n))]
        out["outage"] = {
            "stopped_at_s": round(run.outage.get("stopped_at", -1), 1),
            "restarted_at_s": round(restarted, 1) if restarted is not None else None,
            "down_s": round(restarted - run.outage["stopped_at"], 1) if restarted is not None else None,
            "completed_before_stop": len(before),
            "completed_before_stop_then_started_again": len(ran_again),
        }
    if run.fuzz:
        fates: dict[str, Counter[str]] = {}
        for e in run.fuzz:
            if e.job_id in dlq:
                fate = "dead-lettered: " + str(dlq[e.job_id].get("reason") or "")[:80]
            elif e.n is not None and done.get(e.n):
                fate = "completed"
            elif queue_r.zscore(LANE, e.job_id) is not None:
                fate = "still in the queue"
            else:
                fate = "gone (no dead letter)"
            fates.setdefault(e.kind, Counter())[fate] += 1
        out["fuzz"] = {"entries": len(run.fuzz), "fates": {k: dict(v) for k, v in fates.items()}}
    queue_r.close()
    return out


def kill_report(run: Run, store: Store) -> dict[str, Any]:
    """Per kill: how long until the killed worker's in-flight jobs started again / completed elsewhere."""
    per_kill: list[dict[str, Any]] = []
    late_bound = 2 * run.args.lease
    for k in run.kills:
        t_kill = run.t0 + k.at
        restart_after, done_after = [], []
        late: list[dict[str, Any]] = []
        for n in k.in_flight:
            later = [s.at - t_kill for s in store.start_log(n) if s.at > t_kill]
            if later:
                restart_after.append(min(later))
                if min(later) > late_bound:
                    late.append({"n": n, "started_again_s": _r(min(later)), "starts": [
                        f"+{s.at - run.t0:.2f}s pid {s.pid} try {s.job_try} recoveries {s.recoveries}"
                        for s in store.start_log(n)]})
            ends = [t - t_kill for t in store.done_times(n) if t > t_kill]
            if ends:
                done_after.append(min(ends))
        per_kill.append({
            "at_s": round(k.at, 1), "worker": k.worker, "in_flight": len(k.in_flight),
            "first_restart_s": _r(min(restart_after, default=None)),
            "all_restarted_s": _r(max(restart_after, default=None)) if len(restart_after) == len(k.in_flight)
            else None,
            "never_restarted": len(k.in_flight) - len(restart_after),
            "first_completion_s": _r(min(done_after, default=None)),
            "started_again_later_than_2_leases": len(late),
            "late_sample": late[:5],
        })

    def dist(name: str) -> dict[str, float | None]:
        xs = [p[name] for p in per_kill if p[name] is not None]
        return {"n": len(xs), "p50": _r(statistics.median(xs)) if xs else None, "max": _r(max(xs, default=None))}

    # completed > once: how long before the kill of its process the first completion was recorded (the window
    # between the task's end and its outcome reaching Redis)
    kill_at = {k.pid: run.t0 + k.at for k in run.kills}
    gaps = []
    for n, count in store.done().items():
        if count > 1:
            first = store.r.lindex(f"{DONE_LOG}{n}", 0)
            if isinstance(first, bytes):
                at, pid = first.decode().split("|")
                if int(pid) in kill_at:
                    gaps.append(kill_at[int(pid)] - float(at))
    with_jobs = [p for p in per_kill if p["in_flight"]]
    return {
        "late_restarts": sum(p["started_again_later_than_2_leases"] for p in per_kill),
        "completed_twice_first_completion_before_kill_s": {
            "n": len(gaps), "p50": _r(statistics.median(gaps)) if gaps else None, "max": _r(max(gaps, default=None))},
        "count": len(per_kill),
        "with_jobs_in_flight": len(with_jobs),
        "all_restarted_s": dist("all_restarted_s"),
        "first_completion_s": dist("first_completion_s"),
        "never_restarted_jobs": sum(p["never_restarted"] for p in per_kill),
        "per_kill": per_kill,
    }


def asyncq_source() -> dict[str, Any]:
    """Which asyncq the run measured (the workers import the same): its directory, and the git commit and
    uncommitted changes of the tree it lives in, so a run of a half-edited working tree is visible."""
    import asyncq

    pkg = Path(asyncq.__file__).resolve().parent
    out: dict[str, Any] = {"path": str(pkg), "version": getattr(asyncq, "__version__", None)}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        git = ["git", "-C", str(pkg)]
        out["commit"] = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                       timeout=10, check=True).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "--", "."], capture_output=True, text=True,
                               timeout=10, check=True).stdout.split("\n")
        out["uncommitted"] = [line[3:] for line in dirty if line.strip()]
    return out


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 2)


def print_kills(out: dict[str, Any]) -> None:
    if "kills" not in out:
        return
    k = out["kills"]
    print(f"  kills                {k['count']} ({k['with_jobs_in_flight']} with jobs in flight)")
    print(f"  recovery: all in-flight jobs started again  p50 {k['all_restarted_s']['p50']} s  "
          f"max {k['all_restarted_s']['max']} s  (over {k['all_restarted_s']['n']} kills)")
    print(f"  recovery: first of them completed           p50 {k['first_completion_s']['p50']} s  "
          f"max {k['first_completion_s']['max']} s")
    print(f"  in-flight jobs started again later than 2 leases after their kill: {k['late_restarts']}")
    g = k["completed_twice_first_completion_before_kill_s"]
    if g["n"]:
        print(f"  completed > once: first completion recorded before the kill of its process by p50 {g['p50']} s, "
              f"max {g['max']} s ({g['n']} jobs)")
    if k["never_restarted_jobs"]:
        print(f"  in-flight jobs never started again: {k['never_restarted_jobs']}")


def print_backlog(out: dict[str, Any]) -> None:
    if "backlog" not in out:
        return
    b = out["backlog"]
    print(f"  backlog              {b['backlog']} jobs ({b['backlog_not_started_at_kill']} not started at the "
          f"kill); victim held {b['held_in_flight_at_kill']} jobs; lease {b['lease_s']} s")
    print(f"  after the SIGKILL:   first held job started again {b['held_first_started_again_s']} s, all "
          f"{b['held_all_started_again_s']} s, all completed {b['held_all_completed_s']} s")
    if "backlog_started_after_kill_before_held" in b:
        print(f"  backlog jobs started between the kill and the last held restart: "
              f"{b['backlog_started_after_kill_before_held']}; not started yet then: "
              f"{b['backlog_not_started_when_held_restarted']}")
    if b["held_never_started_again"]:
        print(f"  held jobs never started again: {b['held_never_started_again']}")


def print_report(out: dict[str, Any]) -> None:
    print(f"\nfault run: {out['mode']}, {out['jobs']} jobs, {out['workers']} workers x {out['concurrency']}, "
          f"lease {out['lease']} s, seed {out['seed']}")
    src = out["asyncq"]
    print(f"  asyncq {src['path']} at {src.get('commit', '?')}"
          + (f", UNCOMMITTED CHANGES in {len(src['uncommitted'])} files" if src.get("uncommitted") else ""))
    print(f"  ended: {out['end']} after {out['duration_s']} s")
    print(f"  completed            {out['completed']}")
    print(f"  dead-lettered        {out['dead_lettered']}")
    for reason, count in out["dead_letter_reasons"].items():
        print(f"      {count:6d}  {reason}")
    print(f"  started > once       {out['started_more_than_once']}")
    print(f"  completed > once     {out['completed_more_than_once']}")
    print(f"  lost                 {out['lost']}" + (f"  e.g. {out['lost_sample'][:5]}" if out["lost"] else ""))
    print(f"  still queued at end  {out['still_in_queue_at_end']}")
    print(f"  worker crashes       {out['worker_crashes']}  exit codes {out['worker_crash_codes']}")
    if out["end"].startswith("stalled"):
        print(f"  workers alive but idle while jobs were queued (wedged): {out['workers_alive_at_end']}")
    for c in out["worker_crash_samples"][:3]:
        print(f"      +{c['at']}s worker {c['worker']} rc {c['rc']}: {c['log'][-300:]}")
    print_kills(out)
    print_backlog(out)
    if "outage" in out:
        o = out["outage"]
        print(f"  Redis stopped at +{o['stopped_at_s']} s, restarted at +{o['restarted_at_s']} s "
              f"(down {o['down_s']} s)")
        print(f"  completed before the stop: {o['completed_before_stop']}; of those started again after it: "
              f"{o['completed_before_stop_then_started_again']}")
    if "fuzz" in out:
        print(f"  fuzz entries         {out['fuzz']['entries']}")
        for kind, fates in out["fuzz"]["fates"].items():
            print(f"      {kind:20s} " + "; ".join(f"{v} {k}" for k, v in fates.items()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["kill", "outage", "calm", "backlog"])
    p.add_argument("--jobs", type=int, default=50_000)
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=100, help="per worker (ASYNCQ_WORKER_CONCURRENCY)")
    p.add_argument("--lease", type=float, default=10.0, help="worker lease, s (the worker's default: 10)")
    p.add_argument("--short-min", type=float, default=0.01, help="short jobs sleep uniformly in [min, max] s")
    p.add_argument("--short-max", type=float, default=0.2)
    p.add_argument("--long-fraction", type=float, default=0.05, help="share of long jobs")
    p.add_argument("--long-seconds", type=float, default=2.0)
    p.add_argument("--kill-min", type=float, default=2.0, help="kill: seconds between kills, uniform [min, max]")
    p.add_argument("--kill-max", type=float, default=5.0)
    p.add_argument("--outage", type=float, default=20.0, help="outage: seconds Redis stays down")
    p.add_argument("--outage-at", type=float, default=None,
                   help="outage: stop Redis this many seconds into the run (default: see --outage-after)")
    p.add_argument("--outage-after", type=float, default=0.4,
                   help="outage: stop Redis once this share of the jobs completed (default 0.4)")
    p.add_argument("--backlog", type=int, default=40_000,
                   help="backlog: newer jobs queued behind the victim's (the run has --held + --backlog jobs)")
    p.add_argument("--held", type=int, default=20, help="backlog: jobs the victim is running (its concurrency)")
    p.add_argument("--hold-first", type=float, default=600.0,
                   help="backlog: the held jobs' first run sleeps this long (still running at the kill)")
    p.add_argument("--held-seconds", type=float, default=0.5, help="backlog: the held jobs' second run")
    p.add_argument("--kill-after-done", type=int, default=500,
                   help="backlog: SIGKILL the victim once the other workers completed this many backlog jobs")
    p.add_argument("--fuzz", type=int, default=0, help="bad entries written into asyncq's keys among the jobs")
    p.add_argument("--max-recoveries", type=int, default=None, help="sets ASYNCQ_MAX_RECOVERIES for the workers")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout", type=float, default=1800.0, help="give up after this many seconds")
    p.add_argument("--stall", type=float, default=120.0, help="give up when nothing moved for this long")
    p.add_argument("--settle", type=float, default=60.0, help="at the end, wait this long for the queue to empty")
    p.add_argument("--json", type=Path, default=None, help="also write the report here")
    p.add_argument("--logs", type=Path, default=None, help="keep the worker logs in this directory")
    args = p.parse_args(argv)
    if args.jobs < 1 or args.workers < 1:
        p.error("--jobs and --workers must be >= 1")
    if args.mode == "backlog":
        if args.held < 1 or args.backlog < 1 or args.fuzz:
            p.error("backlog: --held and --backlog must be >= 1, and --fuzz is not supported")
        args.jobs = args.held + args.backlog  # held jobs are 0 .. held-1, the backlog follows

    rng = random.Random(args.seed)
    log_dir = args.logs or Path(os.environ.get("TMPDIR", "/tmp")) / f"asyncq-faults-{os.getpid()}"
    log_dir.mkdir(parents=True, exist_ok=True)
    run = Run(args)
    run.source = asyncq_source()
    if run.source.get("uncommitted"):
        print(f"warning: asyncq in {run.source['path']} has uncommitted changes "
              f"({', '.join(run.source['uncommitted'][:5])}): the run measures that working tree", file=sys.stderr)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    # SIGTERM, and SIGINT even where it was ignored (a background job of a non-interactive shell), end the run
    # through the cleanup below, so no worker or redis-server is left behind
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    queue = RedisProc(appendonly=args.mode == "outage", name="asyncq-faults-queue")
    store_server = RedisProc(name="asyncq-faults-store")
    fleet: Fleet | None = None
    try:
        queue.start()
        store_server.start()
        store = Store(store_server.url())
        env = {
            **os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "ASYNCQ_REDIS_URL": queue.url(),
            STORE_ENV: store_server.url(), "ASYNCQ_WORKER_CONCURRENCY": str(args.concurrency),
            "ASYNCQ_WORKER_LEASE": str(args.lease), "ASYNCQ_WORKER_SHUTDOWN_GRACE": "5",
        }
        if args.max_recoveries is not None:
            env["ASYNCQ_MAX_RECOVERIES"] = str(args.max_recoveries)
        app = App(redis_url=queue.url())
        queue_r = redis.Redis.from_url(queue.url())
        print(f"enqueueing {args.jobs} jobs" + (f" and {args.fuzz} fuzz entries" if args.fuzz else "")
              + f" on redis-server :{queue.port}; records on :{store_server.port}; logs in {log_dir}",
              file=sys.stderr)
        fleet = Fleet(args.workers, env, log_dir)
        if args.mode == "backlog":
            backlog_setup(app, store, fleet, run, rng)
        else:
            enqueue_all(app, queue_r, rng, run)
            run.t0 = fleet.t0 = time.time()
            fleet.start_all()
        queue_r.close()
        driver = Driver(run, queue, store, fleet, rng)
        driver.loop()
        driver.settle()
        stop_codes = fleet.stop_all()
        out = report(run, queue, store, fleet, stop_codes)
        print_report(out)
        if args.json:
            args.json.write_text(json.dumps(out, indent=2) + "\n")
            print(f"\nwrote {args.json}")
        store.close()
        return 0
    finally:
        if fleet is not None:
            fleet.stop_all(grace=5)
        queue.close()
        store_server.close()


if __name__ == "__main__":
    sys.exit(main())
