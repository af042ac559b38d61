"""A Celery project half-way through its move to asyncq, both runtimes on one Redis.

Starts a stock Celery worker (``celery -A proj.celery_app worker -P threads -Q celery``) and an asyncq worker
(``asyncq worker proj.celery_asyncq:app``), then:

- strategy A, a routed producer (``asyncq.compat.Celery(..., asyncq_router=True)``): route rules set with
  ``asyncq migrate route set``, a canary, a cut-over and a rollback by rule change;
- strategy B, the unchanged producer (``from celery import Celery``): a second asyncq worker consumes Celery's
  own queues (``--celery-queues celery,notifications``) next to the Celery worker; rollback by stopping it.

Every call prints where it was sent and which runtime ran it. Both workers are stopped at the end and the route
rules are put back as they were. Exit status 0 when everything behaved as described, 1 otherwise.

    python demo.py [--redis-url redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


class Workers:
    """The worker processes this demo starts, their logs, and a clean stop."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.procs: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}

    def start(self, name: str, tool: str, *args: str) -> None:
        """Start ``tool args`` (``celery`` or ``asyncq``, from this Python) in the background."""
        print(f"$ {tool} {' '.join(shlex.quote(a) for a in args)} &")
        log = self.logs / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", tool, *args], cwd=HERE, env=self.env, stdout=out,
                                    stderr=subprocess.STDOUT)
        self.procs[name] = (proc, log)

    def stop(self, name: str) -> int:
        proc, _ = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # both runtimes: warm shutdown, running tasks finish first
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
                return -9
        return proc.returncode

    def log(self, name: str) -> str:
        return self.procs[name][1].read_text(errors="replace")


class DemoError(Exception):
    pass


def cli(url: str, *args: str) -> str:
    """Run ``asyncq <args>`` as a user would, print the command and its output."""
    print(f"$ asyncq {' '.join(shlex.quote(a) for a in args)}")
    out = subprocess.run([sys.executable, "-m", "asyncq", *args, "--redis-url", url], capture_output=True,
                         text=True, timeout=30, env={**os.environ, "COLUMNS": "110"})
    if out.returncode != 0:
        raise DemoError(f"asyncq {' '.join(args)} failed:\n{out.stdout}{out.stderr}")
    text = out.stdout.rstrip()
    if text:
        print("    " + text.replace("\n", "\n    "))
    return text


def sent_to(result: Any) -> str:
    """Where a routed call went: a Celery message (its result is read from Celery's backend) or an asyncq job."""
    from asyncq.compat.result import CeleryBackendResult

    return "celery" if isinstance(result, CeleryBackendResult) else "asyncq"


def line(call: str, via: str, value: dict[str, str]) -> None:
    print(f"  {call:<36} {via:<26} ran on {value['ran_on']:<7} {value['result']}")


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise DemoError(f"unexpected: {what}")


def many(results: list[Any], timeout: float = 30) -> Counter[str]:
    return Counter(r.get(timeout=timeout)["ran_on"] for r in results)


def run(url: str, workers: Workers) -> None:
    import redis
    from proj import billing, tasks
    from proj.celery_app import app as celery_app  # the unchanged producer (strategy B)
    from proj.celery_asyncq import app as routed_app  # the routed producer (strategy A)

    client = redis.Redis.from_url(url)
    client.ping()

    print("\n== Both runtimes, one Redis ==")
    workers.start("celery", "celery", "-A", "proj.celery_app", "worker", "-P", "threads", "-c", "4",
                             "-Q", "celery", "-n", f"demo-{os.getpid()}@%h", "--loglevel=WARNING",
                             "--without-mingle", "--without-gossip", "--without-heartbeat")
    workers.start("asyncq", "asyncq", "worker", "proj.celery_asyncq:app", "--queues", "celery,notifications",
                  "--log-level", "warning")
    value = billing.charge.delay(1, 100).get(timeout=60)  # waits for the Celery worker to come up
    expect(value["ran_on"] == "celery", "billing.charge must run on Celery")
    print("  the Celery worker answers")

    # --- strategy A ---------------------------------------------------------------------------------------
    print("\n== Strategy A: the producer asks the route rules (asyncq.compat, asyncq_router=True) ==")
    cli(url, "migrate", "route", "set", "billing.*", "celery")
    cli(url, "migrate", "route", "set", "notifications.*", "asyncq")
    cli(url, "migrate", "route", "set", "reports.render", "25%")
    cli(url, "migrate", "route", "show", "billing.charge", "notifications.send_push", "reports.render")

    r = routed_app.send_task("billing.charge", (42, 1999))  # only the Celery workers know billing.*
    value = r.get(timeout=30)
    line("billing.charge(42, 1999)", f"sent to {sent_to(r)}", value)
    expect(sent_to(r) == "celery" and value["ran_on"] == "celery", "billing.* is routed to Celery")
    r = routed_app.send_task("notifications.send_push", (7, "hello"))
    value = r.get(timeout=30)
    line("notifications.send_push(7, 'hello')", f"sent to {sent_to(r)}", value)
    expect(sent_to(r) == "asyncq" and value["ran_on"] == "asyncq", "notifications.* is routed to asyncq")

    canary = [routed_app.send_task("reports.render", (i,)) for i in range(40)]
    values = [c.get(timeout=30) for c in canary]
    ran = Counter(v["ran_on"] for v in values)
    expect(all(sent_to(c) == v["ran_on"] for c, v in zip(canary, values, strict=True)),
           "every canary call runs where the router sent it")
    print(f"  reports.render x40 at 25%: ran on asyncq {ran['asyncq']}, on celery {ran['celery']}"
          "  (a draw per call)")

    print("-- cut over: all of reports.render to asyncq")
    cli(url, "migrate", "route", "set", "reports.render", "asyncq")
    routed_app.asyncq_router.invalidate()  # this producer re-reads the rules now; any other within 2 s
    ran = many([routed_app.send_task("reports.render", (i,)) for i in range(10)])
    print(f"  reports.render x10: {dict(ran)}")
    expect(ran == Counter(asyncq=10), "after the cut-over every call runs on asyncq")

    print("-- roll back, by a rule change (no deploy, no restart)")
    cli(url, "migrate", "route", "set", "reports.render", "celery")
    routed_app.asyncq_router.invalidate()
    ran = many([routed_app.send_task("reports.render", (i,)) for i in range(10)])
    print(f"  reports.render x10: {dict(ran)}")
    expect(ran == Counter(celery=10), "after the rollback every call runs on Celery")
    cli(url, "migrate", "route", "show", "reports.render")

    # --- strategy B ---------------------------------------------------------------------------------------
    print("\n== Strategy B: the producer is unchanged (from celery import Celery); asyncq also consumes "
          "Celery's queues ==")
    workers.start("consumer", "asyncq", "worker", "proj.celery_asyncq:app", "--celery-queues", "celery,notifications",
                  "--concurrency", "4", "--log-level", "warning")
    r = celery_app.send_task("notifications.send_push", (8, "hi"))  # queue "notifications": no Celery worker
    value = r.get(timeout=60)  # (Celery's own AsyncResult, reading Celery's result backend)
    line("notifications.send_push(8, 'hi')", "Celery queue notifications", value)
    expect(value["ran_on"] == "asyncq", "the moved task runs on asyncq")
    value = billing.charge.delay(43, 2500).get(timeout=30)
    line("billing.charge(43, 2500)", "Celery queue celery", value)
    expect(value["ran_on"] == "celery", "a task asyncq does not know is put back for the Celery worker")
    ran = many([tasks.render.delay(i) for i in range(40)])
    print(f"  reports.render x40 on the shared queue: ran on asyncq {ran['asyncq']}, on celery {ran['celery']}"
          "  (whoever takes the message first)")
    expect(sum(ran.values()) == 40, "every call ran")
    put_back = [ln.split(": ", 1)[-1] for ln in workers.log("consumer").splitlines() if "put back" in ln]
    if put_back:
        print(f"  asyncq consumer log: {put_back[0]}")

    print("-- roll back: stop consuming Celery's queue (SIGTERM: adopted tasks finish first)")
    code = workers.stop("consumer")
    expect(code == 0, f"the consumer stopped cleanly (exit {code})")
    ran = many([tasks.render.delay(i) for i in range(10)])
    print(f"  reports.render x10: {dict(ran)}")
    expect(ran == Counter(celery=10), "without the consumer every call runs on Celery")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", default=os.environ.get("ASYNCQ_REDIS_URL", "redis://127.0.0.1:6379/0"),
                        help="Redis for both runtimes (default: $ASYNCQ_REDIS_URL, else redis://127.0.0.1:6379/0)")
    url = parser.parse_args().redis_url
    os.environ["ASYNCQ_REDIS_URL"] = url  # proj/settings.py, the workers and the asyncq CLI read it
    sys.path.insert(0, str(HERE))
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)}

    import redis

    from asyncq import keys

    client = redis.Redis.from_url(url)
    try:
        saved_rules = client.hgetall(keys.ROUTER_RULES)  # the demo puts the route rules back as it found them
    except redis.RedisError as exc:
        print(f"cannot reach Redis at {url}: {exc}. Start redis-server or pass --redis-url.", file=sys.stderr)
        return 1
    print(f"Redis: {url}")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="celery-migration-") as logs:
        workers = Workers(env, Path(logs))
        failed = None
        try:
            run(url, workers)
        except Exception as exc:  # reported below, with the workers' logs
            failed = exc
        finally:
            print("\n== Stopping both workers ==")
            codes = {name: workers.stop(name) for name in list(workers.procs)}
            print("  " + ", ".join(f"{name}: exit {code}" for name, code in codes.items()))
            client.delete(keys.ROUTER_RULES)
            if saved_rules:
                client.hset(keys.ROUTER_RULES, mapping=saved_rules)
            client.close()
        if failed is None and any(codes.values()):
            failed = DemoError(f"a worker did not stop cleanly: {codes}")
        if failed is not None:
            for name in workers.procs:
                print(f"--- {name} worker log (end)\n{workers.log(name)[-3000:]}", file=sys.stderr)
            print(f"demo failed: {type(failed).__name__}: {failed}", file=sys.stderr)
            return 1
    print(f"done in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
