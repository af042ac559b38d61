"""asyncq beside Celery 5.6, arq 0.28, taskiq, SAQ and streaq on this machine, in one run.

    python benchmarks/run.py                        # everything, median of 3 runs, writes RESULTS.md + plots
    python benchmarks/run.py --quick                # small sizes, 1 run, prints only (--output FILE to keep)
    python benchmarks/run.py --only w1,w3 --systems asyncq,celery-prefork

README.md says what each workload measures and how each system is configured. Every system runs in its
own worker processes (``_<system>_bench.py worker``) and its own producer processes
(``_<system>_bench.py enqueue|latency|hol``), in its own Python: the project's for asyncq and arq, a
virtual environment under ``benchmarks/.venvs/`` (created here, from ``requirements/<name>.txt``) for the
peers. This script only flushes the database, starts and stops processes, and reads the probe's keys
(``_common.py``), so it needs nothing but redis-py. Every wait has a deadline: the run always ends.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import redis  # noqa: E402
from _common import (  # noqa: E402
    DONE_KEY,
    FIRST_KEY,
    GO_KEY,
    LAST_KEY,
    LATENCY_KEY,
    PROBE_COMMANDS,
    READY_KEY,
    REDIS_DB,
    REDIS_HOST,
    REDIS_PORT,
)

VENVS = HERE / ".venvs"
REQUIREMENTS = HERE / "requirements"
POLL = 0.01  # seconds between progress checks (one GET)
READY_TIMEOUT = 60.0
DRAIN_TIMEOUT = 300.0
STOP_TIMEOUT = 10.0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    """A measurement that could not be taken (deadline passed, a process died, jobs missing)."""


# --- sizes --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Config:
    drain_jobs: int = 20_000  # W1, W5 drain, W6, W7
    sleep_jobs: int = 10_000  # W2
    enqueue_jobs: int = 20_000  # W1e, W5 delay()
    latency_jobs: int = 1000  # W3
    latency_rate: float = 100.0
    hol_long: int = 20  # W4
    hol_short: int = 200
    scale: tuple[int, ...] = (1, 2, 4)  # W6 worker processes


QUICK = Config(drain_jobs=2000, sleep_jobs=2000, enqueue_jobs=2000, latency_jobs=200, scale=(1, 2))


# --- the systems --------------------------------------------------------------------------------------------
@dataclass
class Spec:
    """One system: which Python runs it, which script, and the concurrency each workload gives it."""

    key: str
    label: str
    venv: str | None  # None: the project's interpreter
    script: str
    packages: tuple[str, ...]  # reported in Versions
    drain_c: int | None  # W1 / W6 / W7 / W5 drain
    sleep_c: int | None  # W2
    settings: str  # the settings of this system, for RESULTS.md
    env: dict[str, str] = field(default_factory=dict)
    sync: bool = False  # Celery: tasks are plain def, W2 / W4 use time.sleep
    peer: bool = True  # counts as a peer for the targets
    available: bool = True
    why_unavailable: str = ""

    def python(self) -> str:
        return sys.executable if self.venv is None else str(VENVS / self.venv / "bin" / "python")

    def c_text(self, c: int | None, default: str) -> str:
        return default if c is None else str(c)


SPECS: dict[str, Spec] = {
    s.key: s
    for s in [
        Spec(
            "asyncq", "asyncq", None, "_asyncq_bench.py", ("asyncq", "redis", "hiredis"), 100, 1000,
            "`concurrency` 100 (W1/W6/W7; the default), 1000 (W2); pub/sub wake-up + 1 s safety poll; "
            "orjson payloads; results kept 3600 s; batches: `app.enqueue_many` (1000 per call)",
            peer=False,
        ),
        Spec(
            "arq", "arq 0.28", None, "_arq_bench.py", ("arq",), 100, 1000,
            "`max_jobs` 100 (W1/W6/W7), 1000 (W2), 10 (default, W3/W4); `poll_delay` 0.5 s; pickle; results kept "
            "3600 s; batches: 100 `enqueue_job` calls in flight (no batch API)",
        ),
        Spec(
            "celery-prefork", "Celery prefork", "celery", "_celery_bench.py", ("celery", "kombu", "redis"), None, 50,
            "`--pool prefork`, concurrency = CPUs (2) except W2: 50 processes; prefetch multiplier 4; early ack; "
            "Redis broker + Redis result backend (results stored); mingle/gossip/heartbeat on (defaults); "
            "plain `def` tasks (`time.sleep` in W2/W4); batches: `group(...).apply_async()` (1000)",
            env={"BENCH_CELERY_POOL": "prefork"}, sync=True,
        ),
        Spec(
            "celery-threads", "Celery threads", "celery", "_celery_bench.py", ("celery", "kombu", "redis"), None, 1000,
            "`--pool threads`, concurrency = CPUs (2) except W2: 1000 threads; otherwise as prefork",
            env={"BENCH_CELERY_POOL": "threads"}, sync=True,
        ),
        Spec(
            "taskiq", "taskiq", "taskiq", "_taskiq_bench.py", ("taskiq", "taskiq-redis", "redis"), 100, 1000,
            "`RedisStreamBroker` + `RedisAsyncResultBackend`; `max_async_tasks` 100 (default; W1/W3/W4/W6/W7), "
            "1000 (W2); one receiver process; ack when saved; batches: 100 `kiq()` in flight (no batch API)",
        ),
        Spec(
            "saq", "SAQ", "saq", "_saq_bench.py", ("saq", "redis"), 100, 1000,
            "`concurrency` 100 (W1/W6/W7), 1000 (W2), 10 (default, W3/W4); Redis queue with pub/sub "
            "notification; connection pool `max_connections` = concurrency + 100 (each dequeue loop blocks on a "
            "connection; redis-py's default cap of 100 stalls SAQ at concurrency 1000); batches: 100 `enqueue` "
            "in flight (no batch API)",
        ),
        Spec(
            "streaq", "streaq", "streaq", "_streaq_bench.py", ("streaq", "coredis"), 100, 1000,
            "`concurrency` 100 (W1/W6/W7), 1000 (W2), 16 (default, W3/W4); prefetch = concurrency (default); "
            "pickle; batches: `worker.enqueue_many` (1000 per call, one pipeline)",
        ),
    ]
}
COMPAT = Spec(
    "asyncq-compat", "asyncq.compat", None, "_compat_bench.py", ("asyncq",), 100, None,
    "`from asyncq.compat import Celery`; `noop.delay()`; the asyncq worker at concurrency 100", peer=False,
)
ALL_SYSTEMS = list(SPECS)


# --- virtual environments -----------------------------------------------------------------------------------
def ensure_venv(name: str) -> tuple[bool, str]:
    """Create ``.venvs/<name>`` from ``requirements/<name>.txt`` unless a matching one exists."""
    req = REQUIREMENTS / f"{name}.txt"
    path = VENVS / name
    stamp = path / ".bench-stamp"
    want = hashlib.sha256(req.read_bytes() + platform.python_version().encode()).hexdigest()
    if stamp.exists() and stamp.read_text() == want and (path / "bin" / "python").exists():
        return True, ""
    log(f"creating virtual environment {path} from {req.name} (once) ...")
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(path)], check=True, timeout=300)
        subprocess.run(
            [str(path / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(req)],
            check=True,
            timeout=900,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        return False, f"could not create .venvs/{name}: {exc}"
    stamp.write_text(want)
    return True, ""


def pkg_versions(spec: Spec) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for p in sys.argv[1:]:\n"
        "    try: out[p] = m.version(p)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))"
    )
    try:
        proc = subprocess.run(
            [spec.python(), "-c", code, *spec.packages], capture_output=True, text=True, timeout=60, check=True
        )
        return dict(json.loads(proc.stdout))
    except (subprocess.SubprocessError, ValueError):
        return {}


def compat_available() -> tuple[bool, str]:
    proc = subprocess.run(
        [sys.executable, "-c", "from asyncq.compat import Celery"], capture_output=True, text=True, timeout=60
    )
    if proc.returncode == 0:
        return True, ""
    last = (proc.stderr.strip().splitlines() or ["?"])[-1]
    return False, f"`from asyncq.compat import Celery` fails: {last}"


# --- processes ----------------------------------------------------------------------------------------------
def rdb() -> redis.Redis:
    return redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)


def flush(r: redis.Redis) -> None:
    assert REDIS_DB != 0
    r.flushdb()


def proc_env(spec: Spec, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(spec.env)
    env.update(extra or {})
    env["PYTHONPATH"] = str(HERE)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def produce(spec: Spec, args: list[str], timeout: float, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run the system's producer process; return what it printed after RESULT."""
    try:
        proc = subprocess.run(
            [spec.python(), str(HERE / spec.script), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=HERE,
            env=proc_env(spec, extra_env),
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"producer `{' '.join(args)}` timed out after {timeout:.0f}s") from exc
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[7:]))
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
    raise BenchError(f"producer `{' '.join(args)}` failed (exit {proc.returncode}):\n{tail}")


def _tree(pid: int) -> list[int]:
    """pid and all its descendants (Celery prefork children)."""
    children: dict[int, list[int]] = defaultdict(list)
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children[ppid].append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for p in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in f[11:15])  # utime stime cutime cstime
    return total / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pids: list[int]) -> float:
    """Sum of VmHWM over the processes (a prefork pool's children each count; shared pages count twice)."""
    total = 0
    for p in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
    return total / 1024


class Workers:
    """N worker processes of one system, each in its own session so the whole tree can be signalled."""

    def __init__(self, spec: Spec, n: int, concurrency: int | None, r: redis.Redis) -> None:
        self.spec, self.n, self.concurrency, self.r = spec, n, concurrency, r
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Any] = []

    def __enter__(self) -> Workers:
        argv = [self.spec.python(), str(HERE / self.spec.script), "worker"]
        if self.concurrency is not None:
            argv += ["--concurrency", str(self.concurrency)]
        extra = {"BENCH_CONCURRENCY": str(self.concurrency)} if self.concurrency is not None else {}
        for _ in range(self.n):
            lf = tempfile.NamedTemporaryFile(prefix=f"bench-{self.spec.key}-", suffix=".log", delete=False)
            self.logs.append(lf)
            self.procs.append(
                subprocess.Popen(
                    argv, stdout=lf, stderr=subprocess.STDOUT, cwd=HERE, env=proc_env(self.spec, extra),
                    start_new_session=True,
                )
            )
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        for lf in self.logs:
            lf.close()
            if exc[0] is None:
                os.unlink(lf.name)
        if exc[0] is not None:
            log(f"  worker logs kept: {', '.join(lf.name for lf in self.logs)}")

    def check_alive(self) -> None:
        for p, lf in zip(self.procs, self.logs, strict=True):
            if p.poll() is not None:
                tail = "\n".join(Path(lf.name).read_text(errors="replace").splitlines()[-15:])
                raise BenchError(f"worker exited with code {p.returncode}:\n{tail}")

    def go(self) -> float:
        """Wait until every worker finished its imports, then start them all at once; returns the go time."""
        deadline = time.monotonic() + READY_TIMEOUT
        while self.r.hlen(READY_KEY) < self.n:
            self.check_alive()
            if time.monotonic() > deadline:
                raise BenchError("workers did not start in time")
            time.sleep(POLL)
        t = time.time()
        self.r.set(GO_KEY, repr(t))
        return t

    def pids(self) -> list[int]:
        out: list[int] = []
        for p in self.procs:
            out += _tree(p.pid)
        return out

    def stop(self) -> None:
        """SIGTERM to each worker's process group (graceful in every system), SIGKILL after STOP_TIMEOUT."""
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(max(0.1, deadline - time.monotonic()))
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)  # the group: also prefork children left behind
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)


def wait_done(r: redis.Redis, n: int, timeout: float, workers: Workers) -> int:
    """Poll the probe's count until n jobs finished; returns how many GETs it took (W7 subtracts them)."""
    deadline = time.monotonic() + timeout
    polls = 0
    while True:
        polls += 1
        v = r.get(DONE_KEY)
        if v is not None and float(v) >= n:
            return polls
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f}s: {0 if v is None else float(v):.0f} of {n} jobs done")
        workers.check_alive()
        time.sleep(POLL)


def wait_latencies(r: redis.Redis, n: int, timeout: float, workers: Workers) -> list[float]:
    deadline = time.monotonic() + timeout
    while r.llen(LATENCY_KEY) < n:
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f}s: {r.llen(LATENCY_KEY)} of {n} latency records")
        workers.check_alive()
        time.sleep(POLL)
    return sorted(float(v) * 1000 for v in r.lrange(LATENCY_KEY, 0, -1))


def percentile(sorted_values: list[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    k = (len(sorted_values) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def redis_cpu(r: redis.Redis) -> float:
    """The Redis server's CPU seconds so far (user + sys, main thread and all)."""
    info = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def commandstats(r: redis.Redis) -> dict[str, int]:
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in r.info("commandstats").items()}


# --- workloads ----------------------------------------------------------------------------------------------
def drain(
    spec: Spec, cfg: Config, r: redis.Redis, kind: str, n: int, concurrency: int | None, workers: int = 1
) -> dict[str, Any]:
    """Queue n jobs (the system's fastest way), start the workers, time from go to the last job finished.

    Also W7's figures: Redis commands per job (INFO commandstats, reset right before go, our own probe and
    poll commands subtracted) and the workers' CPU seconds per 1,000 jobs (all processes of the tree)."""
    flush(r)
    prefill(spec, kind, n)
    with Workers(spec, workers, concurrency, r) as ws:
        deadline = time.monotonic() + READY_TIMEOUT
        while r.hlen(READY_KEY) < workers:  # imports done everywhere: now reset the counters
            ws.check_alive()
            if time.monotonic() > deadline:
                raise BenchError("workers did not start in time")
            time.sleep(POLL)
        cpu0 = cpu_seconds(ws.pids())
        rcpu0 = redis_cpu(r)
        r.config_resetstat()
        go = ws.go()
        polls = wait_done(r, n, DRAIN_TIMEOUT, ws)
        pids = ws.pids()
        cpu = cpu_seconds(pids) - cpu0
        rcpu = redis_cpu(r) - rcpu0
        rss = peak_rss_mb(pids)
        stats = commandstats(r)
        time.sleep(3 * 0.005 + 0.02)  # let the probes' last writes land
        last = max(float(v) for v in r.hvals(LAST_KEY))
        first = min(float(v) for v in r.hvals(FIRST_KEY))
        total = float(r.get(DONE_KEY) or 0)
    if total < n:
        raise BenchError(f"{total:.0f} jobs ran for {n} queued")
    if total > n:  # the timing stands (n jobs had finished), but the system ran some job twice: say so
        NOTES.append(
            f"{spec.label}, {n:,} {kind} jobs, {workers} worker process(es): {total - n:.0f} job(s) ran twice "
            "(a job finished more times than jobs were queued)"
        )
    for k in ("info", "config|resetstat", "hlen", *PROBE_COMMANDS):
        stats.pop(k, None)
    stats["get"] = stats.get("get", 0) - polls - 1  # our polls, and the go key read by each worker's gate...
    stats["set"] = stats.get("set", 0) - 1  # ... and run.py's SET of the go key
    gate_gets = sum(1 for _ in range(workers))  # the gate polls every ms before go; counted approximately
    stats["get"] = max(0, stats["get"] - gate_gets)
    stats = {k: v for k, v in stats.items() if v > 0}
    seconds = last - go
    return {
        "seconds": seconds,
        "jobs_per_s": n / seconds,
        "steady_jobs_per_s": n / max(last - first, 1e-9),
        "first_job_s": first - go,
        "rss_mb": rss,
        "cpu_per_1000": cpu / n * 1000,
        "redis_cpu_per_1000": rcpu / n * 1000,
        "worker_cores": cpu / seconds if seconds > 0 else 0.0,
        "redis_cores": rcpu / seconds if seconds > 0 else 0.0,
        "cmds_per_job": sum(stats.values()) / n,
        "cmds": {k: v / n for k, v in sorted(stats.items(), key=lambda kv: -kv[1])},
    }


def prefill(spec: Spec, kind: str, n: int, producers: int = 2) -> None:
    """Queue n jobs before a drain (not timed): the system's batch mode, in two producer processes at once
    (the machine's CPUs) so that slow producers (Celery) do not eat the time budget."""
    parts = [n // producers + (1 if i < n % producers else 0) for i in range(producers)]
    procs = [
        subprocess.Popen(
            [spec.python(), str(HERE / spec.script), "enqueue", "--kind", kind, "--n", str(k), "--mode", "batch"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=HERE, env=proc_env(spec),
        )
        for k in parts if k > 0
    ]
    deadline = time.monotonic() + DRAIN_TIMEOUT
    failed = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            failed.append("timed out")
            continue
        if p.returncode != 0 or "RESULT " not in out:
            failed.append("\n".join(err.strip().splitlines()[-5:]))
    if failed:
        raise BenchError(f"prefill of {n} jobs failed: {failed[0]}")


#: correctness observations made while measuring (a job that ran twice), listed in RESULTS.md
NOTES: list[str] = []


def w1(spec: Spec, cfg: Config, r: redis.Redis) -> dict[str, Any]:
    return drain(spec, cfg, r, "noop", cfg.drain_jobs, spec.drain_c)


def w2(spec: Spec, cfg: Config, r: redis.Redis) -> dict[str, Any]:
    return drain(spec, cfg, r, "sleep", cfg.sleep_jobs, spec.sleep_c)


def w3(spec: Spec, cfg: Config, r: redis.Redis) -> dict[str, Any]:
    """Idle worker with default settings; a steady rate of jobs; enqueue-to-start latency."""
    flush(r)
    with Workers(spec, 1, None, r) as ws:
        ws.go()
        time.sleep(1.0)  # let it settle into its idle state (subscribed / polling / pool forked)
        out = produce(
            spec, ["latency", "--n", str(cfg.latency_jobs), "--rate", str(cfg.latency_rate)],
            timeout=cfg.latency_jobs / cfg.latency_rate + 90,
        )
        values = wait_latencies(r, cfg.latency_jobs, 30, ws)
    return {
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": values[-1],
        "rate": out["rate"],
    }


def w4(spec: Spec, cfg: Config, r: redis.Redis) -> dict[str, Any]:
    """One worker, default settings: long jobs first, then no-ops; how long do the no-ops wait?"""
    flush(r)
    with Workers(spec, 1, None, r) as ws:
        ws.go()
        time.sleep(1.5)
        produce(spec, ["hol", "--long", str(cfg.hol_long), "--short", str(cfg.hol_short)], timeout=90)
        values = wait_latencies(r, cfg.hol_short, 120, ws)
    return {"p50": percentile(values, 50), "p99": percentile(values, 99), "max": values[-1]}


def w1e(spec: Spec, cfg: Config, r: redis.Redis) -> dict[str, Any]:
    """Producer-side rate with no worker running, one by one and in the system's batches."""
    out: dict[str, Any] = {}
    n = cfg.enqueue_jobs
    for mode in ("one", "batch"):
        flush(r)
        res = produce(spec, ["enqueue", "--kind", "noop", "--n", str(n), "--mode", mode], timeout=DRAIN_TIMEOUT)
        out[mode] = n / res["seconds"]
    return out


def w5(spec: Spec, cfg: Config, r: redis.Redis) -> dict[str, Any]:
    """delay() calls/s (one by one, no worker); for asyncq.compat also the asyncq worker draining them."""
    flush(r)
    res = produce(spec, ["enqueue", "--kind", "noop", "--n", str(cfg.enqueue_jobs), "--mode", "one"], DRAIN_TIMEOUT)
    out: dict[str, Any] = {"delay_per_s": cfg.enqueue_jobs / res["seconds"]}
    if spec.key == COMPAT.key:
        d = drain(spec, cfg, r, "noop", cfg.drain_jobs, spec.drain_c)
        out["drain_jobs_per_s"] = d["jobs_per_s"]
        out["drain_rss_mb"] = d["rss_mb"]
    return out


def w6(spec: Spec, cfg: Config, r: redis.Redis) -> dict[str, Any]:
    """W1 with more worker processes (one process is W1 itself: run.py reuses W1's runs when it has them)."""
    out: dict[str, Any] = {}
    for k in cfg.scale:
        if k == 1 and W6_REUSE_W1:
            continue
        d = drain(spec, cfg, r, "noop", cfg.drain_jobs, spec.drain_c, workers=k)
        out[f"x{k}"] = d["jobs_per_s"]
    return out


W6_REUSE_W1 = False


@dataclass
class Workload:
    key: str
    title: str
    run: Callable[[Spec, Config, redis.Redis], dict[str, Any]]


WORKLOADS = [
    Workload("w3", "W3 latency", w3),
    Workload("w4", "W4 head-of-line", w4),
    Workload("w1", "W1 drain (+W7 cost)", w1),
    Workload("w2", "W2 sleep", w2),
    Workload("w1e", "W1e enqueue", w1e),
    Workload("w5", "W5 compat", w5),
    Workload("w6", "W6 scale-out", w6),
]
W_KEYS = [w.key for w in WORKLOADS] + ["w7"]


# --- collecting ---------------------------------------------------------------------------------------------
@dataclass
class Results:
    runs: dict[str, dict[str, list[dict[str, Any]]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )
    failures: list[str] = field(default_factory=list)

    def all(self, wl: str, system: str, metric: str) -> list[float]:
        return [run[metric] for run in self.runs.get(wl, {}).get(system, []) if metric in run]

    def minimum(self, wl: str, system: str, metric: str) -> float | None:
        values = self.all(wl, system, metric)
        return min(values) if values else None

    def median(self, wl: str, system: str, metric: str) -> float | None:
        values = self.all(wl, system, metric)
        return statistics.median(values) if values else None


def measure(  # noqa: C901 (one loop with its per-workload choices)
    cfg: Config, runs: int, wanted: list[str], specs: list[Spec], scale_specs: list[Spec]) -> Results:
    """Workload by workload, run by run, the systems in turn within a run so drift hits all alike."""
    res = Results()
    r = rdb()
    try:
        for wl in WORKLOADS:
            if wl.key not in wanted and not (wl.key == "w1" and "w7" in wanted):
                continue
            if wl.key == "w5":
                targets = [s for s in specs if s.key == "celery-prefork"] + [COMPAT]
                targets = [s for s in targets if s.available]
            elif wl.key == "w6":
                targets = [s for s in scale_specs if s.available]
            elif wl.key == "w1e":  # both Celery rows share one producer: measure it once
                targets = [s for s in specs if s.available and not (s.key == "celery-threads" and
                                                                    any(x.key == "celery-prefork" for x in specs))]
            else:
                targets = [s for s in specs if s.available]
            for i in range(runs):
                for s in targets:
                    label = f"{wl.title} · {s.label} · run {i + 1}/{runs}"
                    t = time.perf_counter()
                    try:
                        figures = wl.run(s, cfg, r)
                    except (BenchError, redis.RedisError, subprocess.SubprocessError, ValueError) as exc:
                        res.failures.append(f"{label}: {str(exc).splitlines()[0]}")
                        log(f"{label}: FAILED {exc}")
                        continue
                    res.runs[wl.key][s.key].append(figures)
                    shown = ", ".join(f"{k}={v:,.2f}" for k, v in figures.items() if isinstance(v, float | int))
                    log(f"{label}: {shown}  ({time.perf_counter() - t:.1f}s)")
        if W6_REUSE_W1:  # W6 with one process is W1: take W1's runs
            for key, runs_ in res.runs.get("w1", {}).items():
                if key in res.runs.get("w6", {}):
                    for w6run, w1run in zip(res.runs["w6"][key], runs_, strict=False):
                        w6run["x1"] = w1run["jobs_per_s"]
        if "celery-prefork" in res.runs.get("w1e", {}) and any(s.key == "celery-threads" for s in specs):
            res.runs["w1e"]["celery-threads"] = res.runs["w1e"]["celery-prefork"]
        flush(r)
    finally:
        r.close()
    return res


# --- reporting ----------------------------------------------------------------------------------------------
def fmt(v: float | None, digits: int = 1) -> str:
    return "—" if v is None else f"{v:,.{digits}f}"


def spread(values: list[float], digits: int = 0) -> str:
    return ", ".join(f"{v:,.{digits}f}" for v in values) or "—"


def machine_info() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError, IndexError, ValueError):
        kb = int(Path("/proc/meminfo").read_text().splitlines()[0].split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "mem": mem,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def best(res: Results, wl: str, metric: str, peers: list[Spec], low: bool) -> tuple[str, float] | None:
    cands = [(s.label, v) for s in peers if (v := res.median(wl, s.key, metric)) is not None]
    if not cands:
        return None
    return (min if low else max)(cands, key=lambda kv: kv[1])


class Report:
    def __init__(self, res: Results, cfg: Config, specs: list[Spec], scale_specs: list[Spec], runs: int) -> None:
        self.res, self.cfg, self.specs, self.scale_specs, self.runs = res, cfg, specs, scale_specs, runs
        self.peers = [s for s in specs if s.peer]

    def rows_for(self, wl: str) -> list[Spec]:
        return [s for s in self.specs if s.key in self.res.runs.get(wl, {}) or not s.available]

    def unavailable(self, s: Spec) -> str:
        return f"| {s.label} | not measured: {s.why_unavailable} |"

    def w3(self) -> list[str]:
        c = self.cfg
        rows = [
            f"## W3 latency: {c.latency_jobs:,} jobs at {c.latency_rate:g} jobs/s, idle worker, default settings",
            "",
            "Enqueue-to-start latency in ms: the task's `time.time()` as its first statement minus the producer's "
            "`time.time()` just before the enqueue call. Lower is better.",
            "",
            "| System | p50 ms | p95 ms | p99 ms | max ms | achieved rate/s | p99 per run |",
            "|---|--:|--:|--:|--:|--:|---|",
        ]
        for s in self.rows_for("w3"):
            if not s.available:
                rows.append(self.unavailable(s))
                continue
            m = {k: self.res.median("w3", s.key, k) for k in ("p50", "p95", "p99", "max", "rate")}
            rows.append(
                f"| {s.label} | {fmt(m['p50'])} | {fmt(m['p95'])} | {fmt(m['p99'])} | {fmt(m['max'])} | "
                f"{fmt(m['rate'])} | {spread(self.res.all('w3', s.key, 'p99'), 1)} |"
            )
        return rows

    def w4(self) -> list[str]:
        c = self.cfg
        rows = [
            f"## W4 head-of-line: one worker, default settings, {c.hol_long} jobs of 2 s then {c.hol_short} no-ops",
            "",
            "Enqueue-to-start latency of the no-ops in ms (enqueued right after the long jobs). Lower is better: "
            "a no-op should not wait behind long jobs while the worker has free slots.",
            "",
            "| System | no-op p50 ms | no-op p99 ms | max ms | p99 per run |",
            "|---|--:|--:|--:|---|",
        ]
        for s in self.rows_for("w4"):
            if not s.available:
                rows.append(self.unavailable(s))
                continue
            m = {k: self.res.median("w4", s.key, k) for k in ("p50", "p99", "max")}
            rows.append(
                f"| {s.label} | {fmt(m['p50'])} | {fmt(m['p99'])} | {fmt(m['max'])} | "
                f"{spread(self.res.all('w4', s.key, 'p99'), 1)} |"
            )
        return rows

    def drain_table(self, wl: str, title: str, note: str) -> list[str]:
        rows = [
            f"## {title}",
            "",
            note,
            "",
            "| System | concurrency | jobs/s | wall s | first job s | steady jobs/s | worker peak RSS MB | "
            "CPU cores busy: worker / Redis | jobs/s per run |",
            "|---|--:|--:|--:|--:|--:|--:|--:|---|",
        ]
        for s in self.rows_for(wl):
            if not s.available:
                rows.append(self.unavailable(s))
                continue
            c = s.drain_c if wl == "w1" else s.sleep_c
            rows.append(
                f"| {s.label} | {s.c_text(c, 'default (2)')} | {fmt(self.res.median(wl, s.key, 'jobs_per_s'), 0)} | "
                f"{fmt(self.res.median(wl, s.key, 'seconds'), 2)} | "
                f"{fmt(self.res.median(wl, s.key, 'first_job_s'), 2)} | "
                f"{fmt(self.res.median(wl, s.key, 'steady_jobs_per_s'), 0)} | "
                f"{fmt(self.res.median(wl, s.key, 'rss_mb'))} | "
                f"{fmt(self.res.median(wl, s.key, 'worker_cores'), 2)} / "
                f"{fmt(self.res.median(wl, s.key, 'redis_cores'), 2)} | "
                f"{spread(self.res.all(wl, s.key, 'jobs_per_s'))} |"
            )
        return rows

    def w1e(self) -> list[str]:
        rows = [
            f"## W1e enqueue: {self.cfg.enqueue_jobs:,} no-op jobs, no worker running",
            "",
            "Producer jobs/s, one process. One by one: each enqueue awaited before the next (a web request "
            "enqueueing one job). Batches: the system's batch API, or 100 calls in flight where it has none "
            "(see Settings).",
            "",
            "| System | one by one jobs/s | batches jobs/s | one by one per run | batches per run |",
            "|---|--:|--:|---|---|",
        ]
        for s in self.rows_for("w1e"):
            if not s.available:
                rows.append(self.unavailable(s))
                continue
            rows.append(
                f"| {s.label} | {fmt(self.res.median('w1e', s.key, 'one'), 0)} | "
                f"{fmt(self.res.median('w1e', s.key, 'batch'), 0)} | {spread(self.res.all('w1e', s.key, 'one'))} | "
                f"{spread(self.res.all('w1e', s.key, 'batch'))} |"
            )
        return rows

    def w5(self) -> list[str]:
        rows = [
            "## W5 Celery compatibility: `task.delay()`",
            "",
            f"`delay()` calls/s, {self.cfg.enqueue_jobs:,} calls one by one, no worker running; then one asyncq "
            f"worker (concurrency 100) draining {self.cfg.drain_jobs:,} jobs sent by `asyncq.compat`'s `delay()`.",
            "",
            "| Producer | delay() calls/s | per run | drain jobs/s | drain worker peak RSS MB |",
            "|---|--:|---|--:|--:|",
        ]
        for s in [SPECS["celery-prefork"], COMPAT]:
            if not s.available:
                rows.append(f"| {s.label} | not available yet: {s.why_unavailable} | | | |")
                continue
            label = "Celery 5.6 `delay()`" if s.key != COMPAT.key else "asyncq.compat `delay()`"
            rows.append(
                f"| {label} | {fmt(self.res.median('w5', s.key, 'delay_per_s'), 0)} | "
                f"{spread(self.res.all('w5', s.key, 'delay_per_s'))} | "
                f"{fmt(self.res.median('w5', s.key, 'drain_jobs_per_s'), 0)} | "
                f"{fmt(self.res.median('w5', s.key, 'drain_rss_mb'))} |"
            )
        return rows

    def w6(self) -> list[str]:
        ks = self.cfg.scale
        rows = [
            f"## W6 scale-out: W1 ({self.cfg.drain_jobs:,} no-ops) with {', '.join(map(str, ks))} worker processes",
            "",
            "jobs/s from the common start line to the last job; speed-up against one process in brackets. The "
            f"machine has {os.cpu_count()} CPUs shared with Redis and the producer, so more processes than CPUs "
            "cannot scale.",
            "",
            "| System | " + " | ".join(f"{k} process{'es' if k > 1 else ''}" for k in ks) + " |",
            "|---|" + "--:|" * len(ks),
        ]
        for s in self.scale_specs:
            if s.key not in self.res.runs.get("w6", {}):
                continue
            base = self.res.median("w6", s.key, "x1")
            cells = []
            for k in ks:
                v = self.res.median("w6", s.key, f"x{k}")
                sp = f" ({v / base:.2f}x)" if v and base and k > 1 else ""
                cells.append(f"{fmt(v, 0)}{sp}")
            rows.append(f"| {s.label} | " + " | ".join(cells) + " |")
        return rows

    def w7(self) -> list[str]:
        rows = [
            f"## W7 cost per job (measured during W1: {self.cfg.drain_jobs:,} no-ops, one worker)",
            "",
            "Redis commands per job from `INFO commandstats` (reset when the worker starts; commands run inside Lua "
            "scripts count one by one, so scripting hides nothing; the benchmark's own probe and poll commands are "
            "subtracted), the worker's CPU seconds per 1,000 jobs (all its processes) and the Redis server's "
            "(`INFO cpu`). "
            "Lower is better. "
            "INFO commandstats is server-wide: other clients of the same Redis during a run (other developers' "
            "tests) can only add to it, so the table shows the least of the runs, which is the least disturbed "
            "(every run is listed); CPU figures are medians.",
            "",
            "| System | commands/job (least of the runs) | per run | worker CPU s / 1,000 jobs | "
            "Redis CPU s / 1,000 jobs | "
            "top commands per job |",
            "|---|--:|---|--:|--:|---|",
        ]
        for s in self.rows_for("w1"):
            if not s.available:
                rows.append(self.unavailable(s))
                continue
            runs = self.res.runs.get("w1", {}).get(s.key, [])
            top = ""
            if runs:
                mid = min(runs, key=lambda x: x["cmds_per_job"])
                top = ", ".join(f"{k} {v:.2f}" for k, v in list(mid["cmds"].items())[:7])
            rows.append(
                f"| {s.label} | {fmt(self.res.minimum('w1', s.key, 'cmds_per_job'), 2)} | "
                f"{spread(self.res.all('w1', s.key, 'cmds_per_job'), 2)} | "
                f"{fmt(self.res.median('w1', s.key, 'cpu_per_1000'), 3)} | "
                f"{fmt(self.res.median('w1', s.key, 'redis_cpu_per_1000'), 3)} | {top} |"
            )
        return rows

    def targets(self) -> list[str]:
        res, P = self.res, self.peers
        out = [
            "## Targets (issue 6)",
            "",
            "Each asyncq figure beside the best peer measured in this run (peers: Celery prefork and threads, arq, "
            "taskiq, SAQ, streaq).",
            "",
            "| Target | asyncq | best peer | status |",
            "|---|--:|--:|---|",
        ]

        def row(name: str, ours: float | None, peer: tuple[str, float] | None, ok: bool | None, u: str, d: int) -> None:
            ptxt = "—" if peer is None else f"{peer[1]:,.{d}f} {u} ({peer[0]})"
            status = "not measured" if ok is None else ("**met**" if ok else "**not met**")
            if "information" in name:
                status = "(no target)"
            out.append(f"| {name} | {fmt(ours, d)} {u if ours is not None else ''} | {ptxt} | {status} |")

        v = res.median("w1", "asyncq", "jobs_per_s")
        b = best(res, "w1", "jobs_per_s", P, low=False)
        row("W1 drain ≥ 2.5x the fastest peer", v, b, None if v is None or b is None else v >= 2.5 * b[1], "jobs/s", 0)
        v = res.median("w1e", "asyncq", "batch")
        b = best(res, "w1e", "batch", P, low=False)
        row("W1e batched enqueue ≥ 50,000 jobs/s", v, b, None if v is None else v >= 50_000, "jobs/s", 0)
        v = res.median("w1e", "asyncq", "one")
        b = best(res, "w1e", "one", P, low=False)
        row("W1e one-by-one ≥ the fastest peer's", v, b, None if v is None or b is None else v >= b[1], "jobs/s", 0)
        v = res.median("w2", "asyncq", "seconds")
        b = best(res, "w2", "seconds", P, low=True)
        row("W2 wall ≤ 1.5 s", v, b, None if v is None else v <= 1.5, "s", 2)
        v = res.median("w2", "asyncq", "rss_mb")
        b = best(res, "w2", "rss_mb", P, low=True)
        row("W2 peak RSS < 150 MB", v, b, None if v is None else v < 150, "MB", 1)
        v = res.median("w3", "asyncq", "p50")
        b = best(res, "w3", "p50", P, low=True)
        row("W3 p50 ≤ the best peer's", v, b, None if v is None or b is None else v <= b[1], "ms", 2)
        v = res.median("w3", "asyncq", "p99")
        b = best(res, "w3", "p99", P, low=True)
        row("W3 p99 ≤ 1.5 ms", v, b, None if v is None else v <= 1.5, "ms", 2)
        v = res.median("w4", "asyncq", "p99")
        b = best(res, "w4", "p99", P, low=True)
        row("W4 no-ops' p99 ≤ 20 ms, default settings", v, b, None if v is None else v <= 20, "ms", 1)
        v = res.median("w5", COMPAT.key, "delay_per_s")
        c = res.median("w5", "celery-prefork", "delay_per_s")
        row(
            "W5 asyncq.compat delay() ≥ 2x Celery's", v, None if c is None else ("Celery", c),
            None if v is None or c is None else v >= 2 * c, "calls/s", 0,
        )
        x1, x2 = res.median("w6", "asyncq", "x1"), res.median("w6", "asyncq", "x2")
        sp = None if not x1 or not x2 else x2 / x1
        peer_sp = [
            (s.label, b2 / b1) for s in self.scale_specs if s.peer
            if (b1 := res.median("w6", s.key, "x1")) and (b2 := res.median("w6", s.key, "x2"))
        ]
        bsp = max(peer_sp, key=lambda kv: kv[1]) if peer_sp else None
        row("W6 near-linear to 2 cores (2 processes ≥ 1.7x one)", sp, bsp, None if sp is None else sp >= 1.7, "x", 2)
        v = res.minimum("w1", "asyncq", "cmds_per_job")
        cands = [(s.label, m) for s in P if (m := res.minimum("w1", s.key, "cmds_per_job")) is not None]
        b = min(cands, key=lambda kv: kv[1]) if cands else None
        row("W7 Redis commands/job ≤ the leanest peer's", v, b, None if v is None or b is None else v <= b[1], "", 2)
        v = res.median("w1", "asyncq", "cpu_per_1000")
        b = best(res, "w1", "cpu_per_1000", P, low=True)
        ok = None if v is None or b is None else v <= b[1]
        row("W7 worker CPU s / 1,000 jobs (for information)", v, b, ok, "s", 3)
        return out

    def settings(self) -> list[str]:
        rows = ["## Settings per system", "", "| System | Settings |", "|---|---|"]
        for s in [*self.specs, COMPAT]:
            rows.append(f"| {s.label} | {s.settings} |")
        return rows


def write_report(
    res: Results, cfg: Config, specs: list[Spec], scale_specs: list[Spec], wanted: list[str], command: str,
    runs: int, vers: dict[str, dict[str, str]], server: str, load: tuple[tuple[float, ...], tuple[float, ...]],
    plots: list[str], started: float,
) -> str:
    m = machine_info()
    rep = Report(res, cfg, specs, scale_specs, runs)
    vtext = "; ".join(
        f"{label}: " + ", ".join(f"{k} {v}" for k, v in pv.items()) for label, pv in vers.items() if pv
    )
    lines = [
        "# asyncq beside Celery, arq, taskiq, SAQ and streaq: benchmark results",
        "",
        f"Generated by `{command}` on {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} in "
        f"{(time.time() - started) / 60:.0f} min. Every figure is the **median of {runs} run(s)**; the per-run "
        "columns show the spread. README.md says what each workload measures and how to read it.",
        "",
        f"- Machine: {m['nproc']} CPUs (`nproc`), {m['cpu']}, {m['mem']}, Linux {m['kernel']}, Python {m['python']}. "
        "Redis, the workers and the producer share these CPUs.",
        f"- Load average (1/5/15 min) at the start: {'/'.join(f'{x:.2f}' for x in load[0])}, at the end: "
        f"{'/'.join(f'{x:.2f}' for x in load[1])}. Other developers run test suites on this machine and on this "
        "Redis at the same time, which disturbs timings: compare systems within this file (runs alternate between "
        "systems so disturbances hit all of them alike), and treat single-run outliers as noise.",
        f"- Redis server {server} at {REDIS_HOST}:{REDIS_PORT}, db {REDIS_DB}, FLUSHDB before every measurement.",
        f"- Versions: {vtext}.",
        "",
    ]
    if "w1" in wanted or "w1e" in wanted or "w3" in wanted:
        lines += [*rep.targets(), ""]
    sections: dict[str, Callable[[], list[str]]] = {
        "w1": lambda: rep.drain_table(
            "w1", f"W1 drain: {cfg.drain_jobs:,} no-op jobs queued first, then one worker process",
            "jobs/s = jobs / (last job finished - start line); the start line is when every worker process has "
            "finished its imports (connection set-up and the first fetch are inside). 'first job' is the time from "
            "the start line to the first job finished; 'steady' is jobs/s from the first to the last job.",
        ),
        "w2": lambda: rep.drain_table(
            "w2", f"W2 I/O-bound: {cfg.sleep_jobs:,} jobs of a 50 ms sleep (ideal at concurrency 1000: "
            f"{cfg.sleep_jobs / 1000 * 0.05:.2f} s)",
            "`await asyncio.sleep(0.05)` for async systems at concurrency 1000; `time.sleep(0.05)` for Celery, "
            "whose concurrency is in the table. Wall s is the figure; lower is better. Peak RSS is the sum of "
            "VmHWM over the worker's processes.",
        ),
        "w3": rep.w3,
        "w4": rep.w4,
        "w1e": rep.w1e,
        "w5": rep.w5,
        "w6": rep.w6,
        "w7": rep.w7,
    }
    for key in ("w1", "w1e", "w2", "w3", "w4", "w5", "w6", "w7"):
        if key in wanted or (key == "w7" and "w1" in wanted):
            lines += [*sections[key](), ""]
    lines += [*rep.settings(), ""]
    if plots:
        lines += ["## Plots", ""] + [f"![{p}](plots/{p})" for p in plots] + [""]
    if NOTES:
        lines += ["## Observations", ""] + [f"- {n}" for n in NOTES] + [""]
    if res.failures:
        lines += ["## Failed measurements", ""] + [f"- {f}" for f in res.failures] + [""]
    return "\n".join(lines)


def summary_json(res: Results, cfg: Config, specs: list[Spec], scale_specs: list[Spec]) -> dict[str, Any]:
    """Medians per workload and system, for the plots."""
    metrics = {
        "w1": ["jobs_per_s", "rss_mb", "cmds_per_job", "cpu_per_1000"],
        "w2": ["seconds", "rss_mb"],
        "w3": ["p50", "p95", "p99", "max"],
        "w4": ["p50", "p99"],
        "w1e": ["one", "batch"],
        "w5": ["delay_per_s", "drain_jobs_per_s"],
        "w6": [f"x{k}" for k in cfg.scale],
    }
    labels = {s.key: s.label for s in [*specs, COMPAT]}
    out: dict[str, Any] = {"labels": labels, "scale": list(cfg.scale), "data": {}}
    for wl, ms in metrics.items():
        for key in res.runs.get(wl, {}):
            out["data"].setdefault(wl, {})[key] = {
                m: (res.minimum if m == "cmds_per_job" else res.median)(wl, key, m) for m in ms
            }
    return out


def make_plots(summary: dict[str, Any], outdir: Path) -> list[str]:
    ok, why = ensure_venv("plots")
    if not ok:
        log(f"no plots: {why}")
        return []
    outdir.mkdir(exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(summary, f)
    try:
        proc = subprocess.run(
            [str(VENVS / "plots" / "bin" / "python"), str(HERE / "_plots.py"), f.name, str(outdir)],
            capture_output=True, text=True, timeout=300,
        )
    finally:
        os.unlink(f.name)
    if proc.returncode != 0:
        log(f"plots failed: {proc.stderr[-2000:]}")
        return []
    return [line.strip() for line in proc.stdout.splitlines() if line.strip().endswith(".png")]


# --- entry --------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="asyncq beside Celery, arq, taskiq, SAQ, streaq (benchmarks/README.md)")
    p.add_argument("--quick", action="store_true", help="small sizes, 1 run, no RESULTS.md unless --output")
    p.add_argument("--runs", type=int, help="runs per figure, the median is reported (default 3, --quick 1)")
    p.add_argument("--only", default=",".join(W_KEYS), help=f"comma-separated workloads (all: {','.join(W_KEYS)})")
    p.add_argument("--systems", default=",".join(ALL_SYSTEMS), help=f"comma-separated (all: {','.join(ALL_SYSTEMS)})")
    p.add_argument(
        "--scale-systems", default="asyncq,taskiq,saq",
        help="systems measured in W6 (default: asyncq and the two fastest peers of W1, to fit the time budget; "
        "any of --systems)",
    )
    p.add_argument("--output", type=Path, help="where to write the report (default benchmarks/RESULTS.md)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:  # noqa: C901
    args = parse_args(argv)
    started = time.time()
    cfg = QUICK if args.quick else Config()
    runs = args.runs or (1 if args.quick else 3)
    wanted = [w.strip().lower() for w in args.only.split(",") if w.strip()]
    unknown = set(wanted) - set(W_KEYS)
    if unknown:
        raise SystemExit(f"unknown workload(s): {', '.join(sorted(unknown))}; choose from {', '.join(W_KEYS)}")
    names = [s.strip() for s in args.systems.split(",") if s.strip()]
    bad = [n for n in names if n not in SPECS]
    if bad:
        raise SystemExit(f"unknown system(s): {', '.join(bad)}; choose from {', '.join(SPECS)}")
    specs = [SPECS[n] for n in names]
    scale_specs = [SPECS[n.strip()] for n in args.scale_systems.split(",") if n.strip() in SPECS and n.strip() in names]
    output = args.output or (None if args.quick else HERE / "RESULTS.md")
    command = ("python benchmarks/run.py " + " ".join(argv if argv is not None else sys.argv[1:])).strip()

    for venv in sorted({s.venv for s in specs if s.venv}):
        ok, why = ensure_venv(venv)
        for s in specs:
            if s.venv == venv and not ok:
                s.available, s.why_unavailable = False, why
    if "w5" in wanted:
        COMPAT.available, COMPAT.why_unavailable = compat_available()
        if not COMPAT.available:
            log(f"W5: asyncq.compat not available yet ({COMPAT.why_unavailable})")

    r = rdb()
    try:
        r.ping()
        server = r.info("server")["redis_version"]
    except redis.RedisError as exc:
        raise SystemExit(f"no Redis at {REDIS_HOST}:{REDIS_PORT}: {exc}") from exc
    finally:
        r.close()
    global W6_REUSE_W1
    W6_REUSE_W1 = "w1" in wanted and 1 in cfg.scale
    load0 = os.getloadavg()
    res = measure(cfg, runs, wanted, specs, scale_specs)
    load1 = os.getloadavg()

    vers: dict[str, dict[str, str]] = {}
    for s in specs + ([COMPAT] if COMPAT.available and "w5" in wanted else []):
        label = s.venv or "project"
        if label not in vers:
            vers[label] = pkg_versions(s)
    plots: list[str] = []
    if output is not None and not args.no_plots:
        summary = summary_json(res, cfg, specs, scale_specs)
        (HERE / "results.json").write_text(json.dumps(summary, indent=1))
        plots = make_plots(summary, HERE / "plots")
    text = write_report(
        res, cfg, specs, scale_specs, wanted, command, runs, vers, server, (load0, load1), plots, started
    )
    print(text)
    if output is not None:
        output.write_text(text)
        log(f"written {output}")


if __name__ == "__main__":
    main()
