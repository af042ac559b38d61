"""Celery's ``celery.contrib.testing.worker.start_worker`` on asyncq: a real ``asyncq worker`` process.

Celery runs its test worker in a thread of the test process. asyncq runs the worker the product runs: a
separate ``asyncq worker`` process serving :mod:`.served`, which rebuilds the test's app from its config (the
JSON-able part, see :func:`.app.config_of`), imports the task modules, and registers the class-based tasks. The
worker is ready once it answers ``celery.ping``; on exit it gets SIGTERM, then SIGKILL after
``shutdown_timeout``. Its output goes to a log file whose path is the handle's ``logfile`` (printed when it
fails to start).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncq.compat.app import Celery
from asyncq.compat.contrib.testing.app import config_of
from asyncq.compat.exceptions import TimeoutError as CeleryTimeoutError
from asyncq.compat.utils.nodenames import anon_nodename

#: the environment variable that carries the served app's description to the worker process
SPEC_ENV = "ASYNCQ_TESTING_APP"
SERVED = "asyncq.compat.contrib.testing.served:app"
#: the worker's name (its id in heartbeats, and Celery's nodename in ``inspect()`` answers)
NAME_ENV = "ASYNCQ_WORKER_NAME"
#: the file the worker follows its app's configuration from (see ``Settings.follow_file``)
CONFIG_ENV = "ASYNCQ_TESTING_CONFIG"


@dataclass
class TestWorker:
    """The handle ``start_worker`` yields (Celery yields its WorkController)."""

    __test__ = False  # not a pytest test class
    process: subprocess.Popen[bytes]
    hostname: str
    logfile: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        """The worker's output so far."""
        return self.logfile.read_text(errors="replace")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds (the whole process group)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)


def _jsonable(config: Mapping[str, Any]) -> dict[str, Any]:
    """The part of ``config`` that can reach another process as JSON (sets become lists; the rest is left
    out: the worker logs nothing about it, Celery's own test worker shares the object instead)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        value = sorted(value) if isinstance(value, set | frozenset) else value
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        out[key] = value
    return out


#: names of the test workers this process runs now (a worker's name must be unique among live workers)
_LIVE: set[str] = set()


def _free_name() -> str:
    """Celery's default node name for a test worker (``gen<pid>@<host>``); a second worker running at the same
    time (a test that starts its own next to the session worker) gets ``gen<pid>-2@<host>`` and so on."""
    name = anon_nodename()
    n = 1
    while name in _LIVE:
        n += 1
        head, _, host = anon_nodename().partition("@")
        name = f"{head}-{n}@{host}"
    return name


def _uses_celery_alias() -> bool:
    celery = sys.modules.get("celery")
    return celery is not None and getattr(celery, "__name__", "").startswith("asyncq.compat")


def task_modules(app: Celery) -> list[str]:
    """The modules that define the tasks ``app`` knows now. Celery's test worker runs in the test process and
    shares the app object, so it serves every task the test registered; the asyncq worker process imports these
    modules to know the same tasks (a task defined inside a function cannot be imported and is not served)."""
    modules = []
    for task in list(app.tasks.values()):
        module = getattr(task, "__module__", None) or ""
        if module and module != "__main__" and not module.startswith(("asyncq.", "celery.")):
            modules.append(module)
    return list(dict.fromkeys(modules))


def worker_spec(app: Celery, includes: Iterable[str] = (), class_tasks: Iterable[type] = ()) -> dict[str, Any]:
    """What :mod:`.served` needs to rebuild ``app`` in the worker process."""
    name, config = config_of(app)
    return {
        "main": name,
        "config": _jsonable(config),
        "includes": list(dict.fromkeys([*includes, *(config.get("include") or ())])),
        "task_modules": task_modules(app),
        "class_tasks": [f"{cls.__module__}:{cls.__qualname__}" for cls in class_tasks],
        "alias": _uses_celery_alias(),
    }


def _queues(app: Celery, config: Mapping[str, Any], queues: Any) -> str:
    if queues:
        names = [queues] if isinstance(queues, str) else [getattr(q, "name", q) for q in queues]
        return ",".join(str(n) for n in names)
    return str(config.get("task_default_queue") or app.conf.task_default_queue or "celery")


@contextmanager
def start_worker(app: Celery, concurrency: int = 1, pool: str = "solo", loglevel: str | int = "warning",
                 logfile: str | None = None, perform_ping_check: bool = True, ping_task_timeout: float = 10.0,
                 shutdown_timeout: float = 10.0, *, includes: Iterable[str] = (), class_tasks: Iterable[type] = (),
                 queues: Any = None, startup_timeout: float = 60.0, **kwargs: Any) -> Iterator[TestWorker]:
    """Start an ``asyncq worker`` process serving ``app``'s tasks; stop it when the block ends.

    ``concurrency`` is the number of jobs in flight, 1 by default as in Celery's test worker (a test that
    queues slow tasks before a quick one relies on it: the quick one waits, so it can still be revoked or
    expire). ``pool`` is accepted and unused: asyncq runs ``def`` tasks in threads and ``async def`` tasks on the
    loop. ``hostname`` is the worker's name (Celery's nodename: what ``inspect()`` answers are keyed by),
    ``gen<pid>@<host>`` of the test process by default, as in Celery. Other WorkController options
    (``without_heartbeat`` ...) are accepted and have no asyncq meaning.
    """
    spec = worker_spec(app, includes, class_tasks)
    level = loglevel if isinstance(loglevel, str) else {10: "debug", 20: "info", 30: "warning"}.get(loglevel, "error")
    log_path = Path(logfile) if logfile else Path(tempfile.mkdtemp(prefix="asyncq-test-worker-")) / "worker.log"
    hostname = str(kwargs.get("hostname") or _free_name())
    _LIVE.add(hostname)
    # the worker follows the app's configuration while it runs (Celery's test worker shares the app object):
    # every change is written to this file, which the worker re-reads when it is replaced
    config_path = log_path.parent / "config.json"
    _write_config(config_path, app)
    stop_watching = app.conf.watch(lambda key, value: _write_config(config_path, app))
    env = {**os.environ, SPEC_ENV: json.dumps(spec), NAME_ENV: hostname, CONFIG_ENV: str(config_path),
           "PYTHONPATH": os.pathsep.join(p for p in sys.path if p and Path(p).is_dir())}
    cmd = [sys.executable, "-m", "asyncq", "worker", SERVED, "--queues", _queues(app, spec["config"], queues),
           "--concurrency", str(max(1, concurrency)), "--log-level", level.lower(),
           "--redis-url", str(spec["config"]["broker_url"])]
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    handle = TestWorker(process=proc, hostname=hostname, logfile=log_path)
    try:
        if perform_ping_check:
            _wait_ready(app, handle, ping_task_timeout, startup_timeout)
        yield handle
    finally:
        stop_watching()
        handle.stop(shutdown_timeout)
        _LIVE.discard(hostname)


def _write_config(path: Path, app: Celery) -> None:
    """The app's JSON-able configuration, replaced atomically (a reader sees the old file or the new one)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(_jsonable(config_of(app)[1])))
    os.replace(tmp, path)


def _wait_ready(app: Celery, handle: TestWorker, ping_timeout: float, startup_timeout: float) -> None:
    deadline = time.monotonic() + startup_timeout
    result = app.send_task("celery.ping")
    while True:
        if handle.process.poll() is not None:
            raise RuntimeError(f"the asyncq test worker exited with {handle.process.returncode}:\n{handle.log()}")
        try:
            if result.get(timeout=min(ping_timeout, 5.0)) == "pong":
                return
        except CeleryTimeoutError:
            if time.monotonic() > deadline:
                handle.stop()
                raise RuntimeError(f"the asyncq test worker did not answer celery.ping within {startup_timeout} s; "
                                   f"its log ({handle.logfile}):\n{handle.log()[-5000:]}") from None
