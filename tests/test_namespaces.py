"""Namespaces: ``App(namespace=...)`` / ``ASYNCQ_NAMESPACE`` / ``--namespace`` put every key and channel of an
app under ``<namespace>:``, so two apps share one Redis database without seeing each other's work; the default
keeps arq's exact layout (tests/test_arq_interop.py checks that byte for byte).

Redis database 8 of the test Redis (test_tracing.py and the compat suites use it too, one at a time: each test
flushes it first). Workers are real processes: ``asyncq worker ns_tasks:app`` per namespace.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from asyncq import App, admin
from asyncq.exceptions import ConfigurationError
from asyncq.keys import Keys
from asyncq.settings import AppSettings

from .conftest import flushed_url, run_process_group, stop_process, wait_until

NS_DB = 8
SPACES = ("billing", "shipping")

TASKS = '''
from asyncq import App

app = App()  # the namespace: ASYNCQ_NAMESPACE, or the worker's --namespace


@app.task(name="who")
async def who(x):
    return [app.settings.namespace, x]


@app.task(name="who_mail", queue="mail")
async def who_mail(x):
    return [app.settings.namespace, x]


@app.task(name="boom", max_tries=1)
async def boom(x):
    raise ValueError(f"boom {x}")


@app.periodic(every=0.5, name="tick")
async def tick():
    return app.settings.namespace
'''


def client_app(url: str, namespace: str) -> App:
    """A producer-side App of one namespace with the same task names as the workers'."""
    app = App(redis_url=url, namespace=namespace)

    @app.task(name="who")
    async def who(x: int) -> list[Any]: ...

    @app.task(name="who_mail", queue="mail")
    async def who_mail(x: int) -> list[Any]: ...

    @app.task(name="boom", max_tries=1)
    async def boom(x: int) -> None: ...

    return app


def env_for(url: str, namespace: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCQ_")}
    env.update({"COLUMNS": "200", "NO_COLOR": "1", "PYTHONUNBUFFERED": "1", "ASYNCQ_REDIS_URL": url})
    if namespace is not None:
        env["ASYNCQ_NAMESPACE"] = namespace
    return env


def cli(*args: str, url: str, cwd: Path, namespace: str | None = None) -> Any:
    proc = run_process_group([sys.executable, "-m", "asyncq", *args], cwd=cwd, env=env_for(url, namespace),
                             timeout=60)
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return json.loads(proc.stdout)


@pytest.fixture
def nurl() -> str:
    return flushed_url(NS_DB)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "ns_tasks.py").write_text(textwrap.dedent(TASKS))
    return tmp_path


@pytest.fixture
def worker_procs(nurl: str, project: Path) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """One real worker process per namespace, serving the same queue names (default, mail): billing's named with
    --namespace, shipping's with ASYNCQ_NAMESPACE."""
    how = {"billing": (["--namespace", "billing"], None), "shipping": ([], "shipping")}
    procs = {
        ns: subprocess.Popen(
            [sys.executable, "-m", "asyncq", "worker", "ns_tasks:app", "--queues", "default,mail",
             "--log-level", "warning", *how[ns][0]],
            cwd=project, env=env_for(nurl, how[ns][1]), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        for ns in SPACES
    }
    yield procs
    for proc in procs.values():
        stop_process(proc)


# --- the namespace value ------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["a:b", "a#b", "{a}", "a b", "", "x" * 65])
def test_a_bad_namespace_says_what_is_allowed(bad: str) -> None:
    if bad == "":  # '' is the default: no prefix
        assert App(redis_url="redis://127.0.0.1:1/0", namespace=bad).settings.namespace == ""
        return
    with pytest.raises(ConfigurationError, match="invalid namespace .*letters, digits"):
        App(redis_url="redis://127.0.0.1:1/0", namespace=bad)


def test_namespace_from_the_environment() -> None:
    assert AppSettings.from_env({"ASYNCQ_NAMESPACE": "billing"}).namespace == "billing"
    assert AppSettings.from_env({}).namespace == ""
    with pytest.raises(ConfigurationError, match="invalid namespace"):
        AppSettings.from_env({"ASYNCQ_NAMESPACE": "bill:ing"})
    assert Keys.of("billing")("arq:queue") == "billing:arq:queue"
    assert Keys.of(None)("arq:queue") == "arq:queue"


# --- the default is arq's layout; a namespace prefixes everything ---------------------------------------------
async def test_the_default_writes_arqs_keys_and_a_namespace_prefixes_them(nurl: str) -> None:
    plain, billing = client_app(nurl, ""), client_app(nurl, "billing")
    try:
        j1 = await plain.tasks["who"].enqueue(1)
        j2 = await billing.tasks["who_mail"].enqueue(2)
        (j3,) = billing.enqueue_many_sync([billing.tasks["who"].s(3)])  # sync producers (SyncBroker) too
        r = redis.Redis.from_url(nurl)
        found = {k.decode() for k in r.keys("*")}
        r.close()
        assert {"arq:queue", f"arq:job:{j1.job_id}", "asyncq:queues"} <= found
        assert {"billing:arq:queue:mail", f"billing:arq:job:{j2.job_id}", "billing:asyncq:queues", "billing:arq:queue",
                f"billing:arq:job:{j3.job_id}"} <= found
        assert {k for k in found if not k.startswith("billing:")} == {"arq:queue", f"arq:job:{j1.job_id}",
                                                                        "asyncq:queues"}
        again = await plain.tasks["who"].enqueue_with((1,), job_id=j2.job_id)  # ids are per namespace: not a duplicate
        assert await again.status() == "queued"
    finally:
        await plain.close()
        await billing.close()


# --- two apps, one database, real workers ---------------------------------------------------------------------
async def test_two_namespaces_on_one_database_never_see_each_other(
    nurl: str, project: Path, worker_procs: dict[str, subprocess.Popen[bytes]]
) -> None:
    apps = {ns: client_app(nurl, ns) for ns in SPACES}
    try:
        # workers: each app lists its own worker only
        async def one_live_worker_each() -> bool:
            lists = [await admin.list_workers(a) for a in apps.values()]
            return all(len([w for w in ws if w.alive]) == 1 for ws in lists)

        await wait_until(one_live_worker_each, timeout=60)
        pids = {ns: [w.pid for w in await admin.list_workers(a)] for ns, a in apps.items()}
        assert pids == {ns: [p.pid] for ns, p in worker_procs.items()}

        # pauses: billing pauses 'mail'; shipping's 'mail' (same name) keeps running
        await (await apps["billing"].broker()).pause("mail")
        held = await apps["billing"].tasks["who_mail"].enqueue(0)
        shipped = await apps["shipping"].tasks["who_mail"].enqueue(0)
        assert await shipped.result(timeout=30) == ["shipping", 0]

        # jobs and results: the same ids in both namespaces, each run by its own app's worker
        jobs = {ns: [await a.tasks["who"].enqueue_with((i,), job_id=f"same-{i}") for i in range(20)]
                for ns, a in apps.items()}
        for ns, js in jobs.items():
            assert [await j.result(timeout=30) for j in js] == [[ns, i] for i in range(20)]

        # dead letters: each app sees its own
        dead = {ns: await a.tasks["boom"].enqueue(ns) for ns, a in apps.items()}
        for ns, j in dead.items():
            with pytest.raises(ValueError, match=f"boom {ns}"):
                await j.result(timeout=30)
        for ns, a in apps.items():
            letters = await admin.list_dead_letters(a)
            assert [d.job_id for d in letters] == [dead[ns].job_id]

        # periodic ticks: both namespaces tick (one shared tick key would let only one of them fire)
        async def both_ticked() -> bool:
            lasts = [await (await a.broker()).cron_lasts(["tick"]) for a in apps.values()]
            return all(last[0] is not None for last in lasts)

        await wait_until(both_ticked, timeout=30)

        # the paused job is still waiting in billing
        assert await held.status() == "queued"
        mail = {ns: next(q for q in await admin.queue_stats(a, ["mail"]) if q.queue == "mail")
                for ns, a in apps.items()}
        assert (mail["billing"].length, mail["shipping"].length) == (1, 0)

        # stats: each app's totals count its own 20 'who' jobs and its own dead letter, not the other's 40 and 2
        async def stats_of_who() -> list[tuple[int, int]]:
            rows = [(await (await a.broker()).stats_totals(["default"]))[0] for a in apps.values()]
            return [(int(r.get(b"succeeded|who", 0)), int(r.get(b"dead|boom", 0)) + int(r.get(b"failed|boom", 0)))
                    for r in rows]

        async def all_counted() -> bool:
            return all(n == 20 and bad > 0 for n, bad in await stats_of_who())

        await wait_until(all_counted, timeout=30)
        assert await stats_of_who() == [(20, 2), (20, 2)]  # 'boom': one failed and one dead, its own

        # the CLI with --namespace sees only its app
        q_billing = cli("queues", "--json", "--namespace", "billing", url=nurl, cwd=project)
        q_env = cli("queues", "--json", url=nurl, cwd=project, namespace="shipping")
        q_plain = cli("queues", "--json", url=nurl, cwd=project)
        paused = {name: {q["queue"] for q in out["queues"] if q["paused"]}
                  for name, out in (("billing", q_billing), ("shipping", q_env))}
        assert paused == {"billing": {"mail"}, "shipping": set()}
        assert [w["pid"] for w in q_billing["workers"]] == [worker_procs["billing"].pid]
        assert [w["pid"] for w in q_env["workers"]] == [worker_procs["shipping"].pid]
        assert q_plain["queues"] == [] and q_plain["workers"] == []
        dlq_billing = cli("dlq", "list", "--json", "--namespace", "billing", url=nurl, cwd=project)
        assert [d["job_id"] for d in dlq_billing] == [dead["billing"].job_id]
        job_billing = cli("job", "same-3", "--json", "--namespace", "billing", url=nurl, cwd=project)
        assert job_billing["result"] == ["billing", 3]

        # no key escapes: every key in the database is under one of the two prefixes
        r = redis.Redis.from_url(nurl)
        try:
            escaped = [k for k in r.scan_iter("*") if not k.decode().startswith(("billing:", "shipping:"))]
            channels = [c.decode() for c in r.execute_command("PUBSUB", "CHANNELS", "*")]
        finally:
            r.close()
        assert escaped == []
        assert channels and all(c.startswith(("billing:", "shipping:")) for c in channels), channels
    finally:
        for a in apps.values():
            await a.close()
    for ns, proc in worker_procs.items():
        assert proc.poll() is None, f"the {ns} worker died: {proc.stderr.read() if proc.stderr else ''}"


# --- asyncq.compat: a Celery app's asyncq_namespace ------------------------------------------------------------
def test_a_celery_apps_asyncq_namespace_prefixes_asyncqs_keys_and_leaves_celerys_alone() -> None:
    from asyncq.compat import Celery

    from .compat_worker import ThreadWorker

    url = flushed_url(NS_DB)
    app = Celery("ns", broker=url, backend=url)
    app.conf.asyncq_namespace = "celeryns"

    @app.task(bind=True)
    def add(self: Any, a: int, b: int) -> int:
        self.update_state(state="PROGRESS", meta={"a": a})
        return a + b

    try:
        with ThreadWorker(app):
            assert add.delay(1, 2).get(timeout=20) == 3
        r = redis.Redis.from_url(url)
        found = sorted(k.decode() for k in r.scan_iter("*"))
        r.close()
        ours = [k for k in found if k.startswith("celeryns:")]
        assert any(k.startswith("celeryns:arq:result:") for k in ours), found
        assert any(k.startswith("celeryns:asyncq:celery:state:") for k in ours), found
        # what is left is Celery's layout (its result documents), which Celery clients read unprefixed
        assert all(k.startswith("celery-task-meta-") for k in found if k not in ours), found
    finally:
        app.close()


def test_route_rules_are_per_namespace(nurl: str, tmp_path: Path) -> None:
    from asyncq.compat.router import Router

    proc = run_process_group([sys.executable, "-m", "asyncq", "migrate", "route", "set", "billing.*", "asyncq",
                              "--namespace", "billing"], cwd=tmp_path, env=env_for(nurl, None), timeout=60)
    assert proc.returncode == 0, proc.stderr
    r = redis.Redis.from_url(nurl)
    assert [k.decode() for k in r.scan_iter("*")] == ["billing:asyncq:router:rules"]
    r.close()
    billing, plain = Router(), Router()
    billing.bind(nurl, "billing")
    plain.bind(nurl)
    try:
        assert billing.route("billing.charge") == "asyncq"
        assert plain.route("billing.charge") == "celery"  # the default: no rule in arq's layout
    finally:
        billing.close()
        plain.close()


async def test_the_dashboard_of_a_namespace_shows_its_app_only(nurl: str) -> None:
    import httpx

    from asyncq.web import create_dashboard_app

    apps = {ns: client_app(nurl, ns) for ns in SPACES}
    try:
        jobs = {"billing": await apps["billing"].tasks["who_mail"].enqueue(1),
                "shipping": await apps["shipping"].tasks["who"].enqueue(2)}
        for ns, a in apps.items():
            transport = httpx.ASGITransport(app=create_dashboard_app(a), client=("127.0.0.1", 50000))
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
                queues = (await c.get("/api/queues")).json()
                names = {q["queue"] for q in queues}
                assert names == ({"mail"} if ns == "billing" else {"default"}), queues
                for other, j in jobs.items():
                    status = (await c.get(f"/api/jobs/{j.job_id}")).status_code
                    assert status == (200 if other == ns else 404)
    finally:
        for a in apps.values():
            await a.close()


DJANGO_CHECK = '''
import django
from django.conf import settings
settings.configure(INSTALLED_APPS=[], TASKS={})
django.setup()
from asyncq.integrations.django_backend import AsyncqBackend
def backend(options):
    return AsyncqBackend("default", {"BACKEND": "asyncq.integrations.django_backend.AsyncqBackend",
                                     "QUEUES": ["default"], "OPTIONS": options})
print(backend({"namespace": "billing", "redis_url": "redis://127.0.0.1:1/0"}).app.settings.namespace)
print([e.msg for e in backend({"namespace": "bad:ns"}).check() if "namespace" in e.msg])
'''


def test_django_tasks_backend_options_take_a_namespace(tmp_path: Path) -> None:
    pytest.importorskip("django")
    proc = run_process_group([sys.executable, "-c", DJANGO_CHECK], cwd=tmp_path, env=env_for("redis://127.0.0.1:1/0",
                             None), timeout=60)
    assert proc.returncode == 0, proc.stderr
    named, errors = proc.stdout.strip().splitlines()
    assert named == "billing"
    assert "invalid namespace 'bad:ns'" in errors
