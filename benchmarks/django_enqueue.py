"""``enqueue()`` calls per second from a sync Django view: asyncq's ``AsyncqBackend`` beside ``django-tasks-db``
(the database backend), in the same run, on SQLite and on PostgreSQL (when one is reachable).

    python benchmarks/django_enqueue.py                    # 3 rounds of 2,000 calls per backend and database
    python benchmarks/django_enqueue.py --calls 500 --rounds 1
    BENCH_PG_DSN=postgresql://postgres@127.0.0.1:5432/postgres python benchmarks/django_enqueue.py

Needs: the project installed (``pip install -e ".[test]"``: django, django-tasks, django-tasks-db, psycopg),
``redis-server`` on PATH. The script starts a private redis-server on a free port (never 6379) and, for
PostgreSQL, creates a database of its own (``asyncq_bench_djt_<pid>``) through ``BENCH_PG_DSN`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``) and drops it at the end; PostgreSQL is skipped, with a
message, if it cannot connect.

What is measured, per database engine (each in a child process: Django is configured once per process):

- ``loop``: one request to a sync view that calls ``task.enqueue(i)`` N times in autocommit (each call reaches
  Redis or commits its row before the next): N / the view's time;
- ``atomic``: the same N calls inside one ``transaction.atomic()``: asyncq sends each job in an on-commit
  hook (one Redis round trip per job, at commit); django-tasks-db inserts N rows in one transaction;
- ``request``: requests per second through Django's test client to a view that enqueues once, each request
  its own transaction (``ATOMIC_REQUESTS``-free, autocommit), beside the same view without the enqueue
  (``baseline``), so the cost of one enqueue in a request shows as the difference.

The median of the rounds is reported. Both backends share the Django process, settings and database; the task
is the same function, routed with ``.using(backend=...)``. (The file is not named django_tasks.py: its folder is
on sys.path and the name would shadow the django_tasks package.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

BACKENDS = ("asyncq", "database")
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


# --- the child: one database engine, both backends -----------------------------------------------------------
def configure(engine: str, db: str, redis_url: str) -> None:
    import django
    from django.conf import settings

    database: dict[str, Any] = (
        {"ENGINE": "django.db.backends.sqlite3", "NAME": db, "OPTIONS": {"timeout": 20}}
        if engine == "sqlite" else {"ENGINE": "django.db.backends.postgresql", **_pg_parts(db)}
    )
    settings.configure(
        DEBUG=os.environ.get("BENCH_DEBUG") == "1", SECRET_KEY="bench", USE_TZ=True, ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["django.contrib.contenttypes", "django_tasks", "django_tasks_db"],
        DATABASES={"default": database}, MIDDLEWARE=[], DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        TASKS={
            "default": {"BACKEND": "asyncq.integrations.django.AsyncqBackend", "QUEUES": ["default"],
                        "OPTIONS": {"redis_url": redis_url}},
            "database": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]},
        },
    )
    django.setup()


def _pg_parts(dsn: str) -> dict[str, Any]:
    from urllib.parse import urlsplit

    u = urlsplit(dsn)
    return {"NAME": u.path.lstrip("/"), "USER": u.username or "postgres", "PASSWORD": u.password or "",
            "HOST": u.hostname or "127.0.0.1", "PORT": str(u.port or 5432)}


def noop(n: int) -> int:
    """The task: never run here (only enqueued)."""
    return n


urlpatterns: list[Any] = []


def install_views(job: Any, aliases: dict[str, str]) -> None:
    """The three sync views (see the module docstring), as this module's urlpatterns."""
    from django.db import transaction
    from django.http import HttpRequest, JsonResponse
    from django.urls import path

    def loop_view(request: HttpRequest) -> JsonResponse:
        t = job.using(backend=aliases[request.GET["backend"]])
        n = int(request.GET["n"])
        start = time.perf_counter()
        if request.GET.get("atomic"):
            with transaction.atomic():
                for i in range(n):
                    t.enqueue(i)
        else:
            for i in range(n):
                t.enqueue(i)
        return JsonResponse({"seconds": time.perf_counter() - start})

    def one_view(request: HttpRequest) -> JsonResponse:
        r = job.using(backend=aliases[request.GET["backend"]]).enqueue(1)
        return JsonResponse({"id": r.id})

    def baseline_view(request: HttpRequest) -> JsonResponse:
        return JsonResponse({"id": None})

    urlpatterns[:] = [path("loop", loop_view), path("one", one_view), path("baseline", baseline_view)]


def child(engine: str, db: str, redis_url: str, calls: int, rounds: int, requests: int) -> dict[str, Any]:
    configure(engine, db, redis_url)
    import redis
    from django.core.management import call_command
    from django.test import Client
    from django_tasks import task
    from django_tasks_db.models import DBTaskResult

    from asyncq.keys import lane_key

    call_command("migrate", verbosity=0)
    job = task(noop)
    globals()["noop"] = job  # the task's import path (__main__.noop) must name the Task, as django-tasks-db checks
    out: dict[str, Any] = {"engine": engine, "django": __import__("django").get_version()}
    install_views(job, {"asyncq": "default", "database": "database"})
    client = Client(raise_request_exception=True)
    r = redis.Redis.from_url(redis_url)

    def reset() -> None:
        r.flushdb()
        DBTaskResult.objects.all().delete()

    def rate_loop(backend: str, atomic: bool) -> float:
        reset()
        params = {"backend": backend, "n": calls, **({"atomic": "1"} if atomic else {})}
        answer = client.get("/loop", params)
        assert answer.status_code == 200, answer.content[-2000:]
        seconds = float(answer.json()["seconds"])
        stored = r.zcard(lane_key("default")) if backend == "asyncq" else DBTaskResult.objects.count()
        assert stored == calls, f"{backend}: {stored} of {calls} enqueued tasks stored"  # none went missing
        return calls / seconds

    def rate_requests(url: str, backend: str | None) -> float:
        reset()
        params = {"backend": backend} if backend else {}
        start = time.perf_counter()
        for _ in range(requests):
            assert client.get(url, params).status_code == 200
        return requests / (time.perf_counter() - start)

    for backend in BACKENDS:  # warm up: connections, imports, prepared statements
        client.get("/loop", {"backend": backend, "n": 50})
    results: dict[str, list[float]] = {}
    for _ in range(rounds):  # interleaved, so drift on a shared machine hits both alike
        for backend in BACKENDS:
            results.setdefault(f"loop/{backend}", []).append(rate_loop(backend, False))
            results.setdefault(f"atomic/{backend}", []).append(rate_loop(backend, True))
            results.setdefault(f"request/{backend}", []).append(rate_requests("/one", backend))
        results.setdefault("request/baseline", []).append(rate_requests("/baseline", None))
    out["rates"] = {k: statistics.median(v) for k, v in results.items()}
    out["runs"] = results
    r.close()
    return out


# --- the parent: Redis, PostgreSQL, one child per engine, the report -----------------------------------------
def pg_database(dsn: str) -> tuple[str | None, str]:
    """Create a private database; (its DSN, "") or (None, why not)."""
    try:
        import psycopg
    except ImportError:
        return None, "psycopg is not installed (pip install 'psycopg[binary]')"
    name = f"asyncq_bench_djt_{os.getpid()}"
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # any failure means: no PostgreSQL for this run
        return None, f"cannot use PostgreSQL at {dsn}: {exc}".strip()
    base, _, _ = dsn.rpartition("/")
    return f"{base}/{name}", ""


def pg_drop(admin_dsn: str, dsn: str) -> None:
    import psycopg

    name = dsn.rpartition("/")[2]
    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_child(args: argparse.Namespace, engine: str, db: str, redis_url: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", engine, "--db", db, "--redis-url", redis_url,
           "--calls", str(args.calls), "--rounds", str(args.rounds), "--requests", str(args.requests)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"the {engine} run failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def report(results: list[dict[str, Any]], args: argparse.Namespace, skipped: list[str]) -> str:
    import importlib.metadata as md

    lines = [
        f"# enqueue() from a sync Django view: asyncq beside django-tasks-db ({time.strftime('%Y-%m-%d %H:%M')})",
        "",
        f"Django {results[0]['django']}, django-tasks {md.version('django-tasks')}, django-tasks-db "
        f"{md.version('django-tasks-db')}, Python {platform.python_version()}, {os.cpu_count()} CPUs; "
        f"{args.calls} calls per view, {args.requests} requests, median of {args.rounds} rounds. "
        "Calls (or requests) per second, higher is better.",
        "",
        "| database | measure | asyncq (Redis) | django-tasks-db | asyncq / db |",
        "|---|---|---:|---:|---:|",
    ]
    for res in results:
        rates = res["rates"]
        for measure in ("loop", "atomic", "request"):
            a, d = rates[f"{measure}/asyncq"], rates[f"{measure}/database"]
            lines.append(f"| {res['engine']} | {measure} | {a:,.0f} | {d:,.0f} | {a / d:.2f}x |")
    lines.append("")
    lines += [f"Baseline ({res['engine']}): the same request without the enqueue: "
              f"{res['rates']['request/baseline']:,.0f} requests/s." for res in results]
    lines += [f"Skipped: {s}" for s in skipped]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="enqueue() calls per view (loop, atomic)")
    parser.add_argument("--requests", type=int, default=1000, help="requests per round (request, baseline)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--engines", default="sqlite,postgres")
    parser.add_argument("--output", help="also write the report (Markdown) to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.db, args.redis_url, args.calls, args.rounds, args.requests)))
        return

    import tempfile

    from _redis_proc import RedisProc

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    results: list[dict[str, Any]] = []
    skipped: list[str] = []
    with RedisProc(name="asyncq-djt-bench") as server, tempfile.TemporaryDirectory() as tmp:
        redis_url = server.url(0)
        print(f"private redis-server at {redis_url}", file=sys.stderr)
        for engine in engines:
            if engine == "sqlite":
                results.append(run_child(args, "sqlite", str(Path(tmp) / "bench.sqlite3"), redis_url))
            elif engine == "postgres":
                admin = os.environ.get("BENCH_PG_DSN", DEFAULT_PG)
                dsn, why = pg_database(admin)
                if dsn is None:
                    print(f"PostgreSQL skipped: {why}", file=sys.stderr)
                    skipped.append(f"PostgreSQL ({why})")
                    continue
                try:
                    results.append(run_child(args, "postgres", dsn, redis_url))
                finally:
                    pg_drop(admin, dsn)
            else:
                raise SystemExit(f"unknown engine {engine!r}: sqlite, postgres")
    text = report(results, args, skipped)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")


if __name__ == "__main__":
    main()
