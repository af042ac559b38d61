"""asyncq installs beside the user's stack: fresh environments resolve, import and run a job end to end.

- ``pip install <asyncq> "celery[redis]==5.7.0"``: Celery 5.7 (whose kombu refuses redis-py < 6.1) and asyncq in
  one environment; a stock Celery 5.7 producer's ``send_task`` runs on an asyncq worker consuming Celery's queue,
  and Celery's ``AsyncResult.get()`` returns the value.
- ``pip install <asyncq> "redis~=8.1.0"``: an application's redis-py 8 pin; a job runs in-process.
- Nothing in ``src/asyncq`` imports arq (it is the optional ``asyncq[arq]`` extra).

Each environment is built once under ``.venvs/`` (``tests/venvs.py``) and reused; asyncq is installed editable,
so they run this checkout.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from .conftest import flushed_url, stop_process
from .venvs import VenvSpec, ensure, repo_req, run_script, venv_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

DB = 1  # shared with test_router; each test here flushes it first

WITH_CELERY57 = VenvSpec(
    "fresh-celery57", (repo_req(), "celery[redis]==5.7.0"), ("asyncq", "celery", "kombu", "redis"),
    check=lambda v: None if v["celery"] == "5.7.0" else f"pip installed celery {v['celery']}, not 5.7.0",
)
WITH_REDIS81 = VenvSpec(
    "fresh-redis81", (repo_req(), "redis~=8.1.0"), ("asyncq", "redis"),
    check=lambda v: None if v["redis"].startswith("8.1.") else f"pip installed redis {v['redis']}, not 8.1.x",
)

ASYNCQ_APP = '''
from asyncq.compat import Celery

app = Celery("inst", broker="{url}", backend="{url}")


@app.task(name="inst.add")
def add(x, y):
    return x + y
'''

CELERY_PRODUCER = '''
import json, celery, kombu, redis
from celery import Celery

app = Celery("producer", broker="{url}", backend="{url}")
result = app.send_task("inst.add", (2, 3))
print(json.dumps({{"celery": celery.__version__, "kombu": kombu.__version__, "redis": redis.__version__,
                  "value": result.get(timeout=60)}}))
'''

IN_PROCESS = '''
import asyncio, json, sys
import redis
from asyncq import App, Worker, WorkerSettings

app = App(redis_url=sys.argv[1])


@app.task(name="double")
async def double(x):
    return 2 * x


async def main():
    worker = Worker(app, WorkerSettings(handle_signals=False))
    running = asyncio.create_task(worker.main())
    try:
        value = await (await double.enqueue(21)).result(timeout=30)
    finally:
        worker.stop()
        await running
        await app.close()
    print(json.dumps({"redis": redis.__version__, "value": value}))


asyncio.run(main())
'''


def test_asyncq_and_celery_57_share_one_environment() -> None:
    venv = ensure(WITH_CELERY57)
    url = flushed_url(DB)
    with tempfile.TemporaryDirectory(prefix="asyncq-install-") as tmp:
        root = Path(tmp)
        (root / "inst_app.py").write_text(ASYNCQ_APP.format(url=url))
        log = root / "worker.log"
        with log.open("wb") as out:
            worker = subprocess.Popen(
                [str(venv.bin("asyncq")), "worker", "inst_app:app", "--celery-queues", "celery", "--redis-url", url],
                cwd=root, env=venv_env([root]), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            ran = run_script(venv, CELERY_PRODUCER.format(url=url), root, name="producer.py", timeout=120)
            assert ran.returncode == 0, f"{ran.describe()}\n--- asyncq worker ---\n{log.read_text()[-4000:]}"
            report = ran.json()
        finally:
            stop_process(worker)
    print(f"\nfresh env: {json.dumps(venv.versions)}")
    assert isinstance(report, dict) and report["value"] == 5
    assert report["celery"] == "5.7.0" and int(report["redis"].split(".")[0]) >= 6


def test_asyncq_runs_on_an_applications_redis_81_pin() -> None:
    venv = ensure(WITH_REDIS81)
    url = flushed_url(DB)
    with tempfile.TemporaryDirectory(prefix="asyncq-install-") as tmp:
        ran = run_script(venv, IN_PROCESS, Path(tmp), name="in_process.py", timeout=60, args=[url])
    report = ran.json()
    assert report == {"redis": venv.versions["redis"], "value": 42}


def test_nothing_in_asyncq_imports_arq() -> None:
    probe = '''
import importlib, pkgutil, sys, json
import asyncq
failed = {}
for mod in pkgutil.walk_packages(asyncq.__path__, "asyncq."):
    try:
        importlib.import_module(mod.name)
    except Exception as exc:  # an optional integration whose framework is missing: reported, not fatal
        failed[mod.name] = repr(exc)
print(json.dumps({"arq": sorted(m for m in sys.modules if m == "arq" or m.startswith("arq.")), "failed": failed}))
'''
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["arq"] == [], report
    assert report["failed"] == {}, report
