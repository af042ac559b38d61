"""The parity suite's fixtures: one real worker process of the runtime under test (COMPAT_RUNTIME), started
once per session against a flushed Redis database, and stopped with SIGTERM at the end."""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from compat.proj.runtime import REDIS_URL, RUNTIME

ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "differs(reason): asyncq differs from Celery here on purpose")
    config.addinivalue_line("markers", "asyncq_only(reason): a capability Celery does not have")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        mark = item.get_closest_marker("asyncq_only")
        if mark is not None and RUNTIME == "celery":
            item.add_marker(pytest.mark.skip(reason=f"asyncq only: {mark.args[0]}"))


def worker_command(tmp: str) -> list[str]:
    if RUNTIME == "celery":
        return [sys.executable, "-m", "celery", "-A", "compat.proj.celery:app", "worker", "-B",
                "-s", os.path.join(tmp, "beat-schedule"), "-Q", "celery,priority", "-c", "4", "-P", "prefork",
                "--loglevel=WARNING", "-n", f"parity-{os.getpid()}@%h"]
    return [sys.executable, "-m", "asyncq", "worker", "compat.proj.celery:app", "--queues", "celery,priority",
            "--concurrency", "50", "--log-level", "warning"]


@pytest.fixture(scope="session")
def r() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


@pytest.fixture(scope="session", autouse=True)
def no_gc_reentry() -> Iterator[None]:
    """Celery 5.6's ``AsyncResult.__del__`` unsubscribes from the result pub/sub. Run by the cyclic garbage
    collector while this thread is inside redis-py's ``PubSub.execute_command`` (which holds a non-reentrant
    lock), it waits on that lock forever: the whole run hangs in ``AsyncResult.get()`` (seen with py-spy: the
    stack is get -> drain_events -> PubSub.unsubscribe -> __del__ -> PubSub.unsubscribe). Without cyclic
    collections during the scenarios, ``__del__`` only runs when a result's last reference goes, in test code."""
    if RUNTIME != "celery":
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.fixture(scope="session", autouse=True)
def worker(r: redis.Redis, no_gc_reentry: None) -> Iterator[subprocess.Popen[bytes]]:
    r.flushdb()
    tmp = tempfile.mkdtemp(prefix=f"parity-{RUNTIME}-")
    log = open(os.path.join(tmp, "worker.log"), "wb")  # noqa: SIM115 - closed below
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COMPAT_RUNTIME": RUNTIME}
    # its own process group: Celery's embedded beat and pool processes must not outlive the run (an orphaned
    # beat keeps sending periodic tasks into the next run's database)
    proc = subprocess.Popen(worker_command(tmp), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    from compat.proj.tasks import add

    deadline = time.monotonic() + 60
    while True:
        try:
            add.delay(0, 0).get(timeout=5)
            break
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                log.close()
                raise RuntimeError(f"{RUNTIME} worker did not start: {Path(tmp, 'worker.log').read_text()}") from None
    yield proc
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # whatever of the group is left
    log.close()
