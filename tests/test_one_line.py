"""Issue 13: a Celery project moves to asyncq by one line. One test (or more) per numbered point of the issue:

1. Django: the worker sets Django up and finds the tasks (also tests/test_examples_django_celery.py);
2. the missing app and task surface; 3. every ``import celery...`` resolves to asyncq.compat after
``install_as_celery()``, ``asyncq worker -A`` follows Celery's lookup rules, and real-Celery objects that leak in
are accepted or refused with the line to change; 4. ``config_from_object`` is lazy and reads dicts;
6. hooks and signal receivers of ``def`` tasks run in a worker thread; 7. a result backend asyncq cannot serve
fails on use, not on import; 8. canvas calling conventions; 9. quiet config, real retry limits (the latter in
the example's test). Anything that installs the alias runs in a subprocess: it changes the whole process.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import redis

from asyncq.compat import Celery, chain, chord, group
from asyncq.compat import signals as celery_signals
from asyncq.compat.exceptions import ImproperlyConfigured, MaxRetriesExceededError

from .compat_worker import ThreadWorker
from .conftest import flushed_url, redis_url

ONE_LINE_DB = 1
SRC = Path(__file__).resolve().parents[1] / "src"


def run_python(code: str, cwd: Path | None = None, env: dict[str, str] | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full_env = {**{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CELERY"))}, **(env or {})}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


# --- 3. the alias --------------------------------------------------------------------------------------------
def test_install_as_celery_aliases_the_celery_module_tree() -> None:
    out = run_python("""
        import asyncq.compat
        asyncq.compat.install_as_celery()
        asyncq.compat.install_as_celery()  # twice is fine
        import celery, celery.app.task, celery.schedules, celery.signals, celery.states, celery.result
        import celery.exceptions, celery.canvas, celery.utils.log, celery.contrib.abortable
        from celery import Celery, Task, shared_task, chain, group, chord, current_app
        from celery.app import shared_task as app_shared_task
        from celery.app.task import Task as AppTask
        from celery.schedules import crontab
        from celery.signals import task_failure
        from celery.result import AsyncResult
        from celery.utils.log import get_task_logger
        from celery.contrib.abortable import AbortableTask
        from celery.contrib.django.task import DjangoTask
        from celery.contrib.testing.app import TestApp
        import celery.contrib.pytest
        import asyncq.compat.signals, asyncq.compat.task
        assert celery is asyncq.compat and Celery is asyncq.compat.Celery
        assert celery.app.task.Task is asyncq.compat.Task is AppTask is Task
        assert task_failure is asyncq.compat.signals.task_failure
        assert crontab is asyncq.compat.crontab and AsyncResult is asyncq.compat.AsyncResult
        assert issubclass(AbortableTask, asyncq.compat.Task) and issubclass(DjangoTask, asyncq.compat.Task)
        assert app_shared_task is shared_task
        assert get_task_logger("proj.tasks").parent.name == "celery.task"
        assert celery.contrib.pytest.__name__ == "asyncq.compat.contrib.pytest"
        try:
            import celery.bin.worker
        except ModuleNotFoundError as exc:
            assert "install_as_celery() is active" in str(exc) and "15-differences" in str(exc), exc
        else:
            raise AssertionError("celery.bin.worker has no counterpart")
        print("ok")
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_a_process_that_does_not_opt_in_keeps_real_celery() -> None:
    pytest.importorskip("celery")
    out = run_python("""
        import asyncq.compat
        import celery
        from celery.schedules import crontab
        print(celery.__file__, crontab.__module__)
    """)
    assert out.returncode == 0, out.stderr
    assert "asyncq" not in out.stdout and "celery.schedules" in out.stdout


def test_installing_after_real_celery_was_imported_is_refused_with_the_fix() -> None:
    pytest.importorskip("celery")
    out = run_python("""
        import celery
        import asyncq.compat
        asyncq.compat.install_as_celery()
    """)
    assert out.returncode != 0
    assert "was imported before asyncq.compat.install_as_celery()" in out.stderr
    assert "top of your project package's __init__.py" in out.stderr


CELERY_PROJECT = {
    "proj/__init__.py": "from .celery import app as celery_app\n",
    # an unchanged Celery module: `asyncq worker -A proj` installs the alias before importing it
    "proj/celery.py": """
        import os
        from celery import Celery
        from celery.schedules import crontab

        app = Celery("proj", broker=os.environ["ONE_LINE_REDIS"])
        app.conf.beat_schedule = {"nightly": {"task": "proj.tasks.ping", "schedule": crontab(minute=0, hour=3)}}
        app.autodiscover_tasks(["proj"])
    """,
    "proj/tasks.py": """
        from celery import shared_task

        @shared_task
        def ping():
            return "pong"
    """,
    "single.py": """
        import os
        from celery import Celery

        my_app = Celery("single", broker=os.environ["ONE_LINE_REDIS"])
    """,
    "named.py": """
        import os
        from celery import Celery

        celery = Celery("named", broker=os.environ["ONE_LINE_REDIS"])
    """,
}


@pytest.mark.parametrize(("spec", "name"), [("proj", "proj"), ("proj.celery", "proj"), ("proj.celery:app", "proj"),
                                            ("single", "single"), ("named", "named")])
def test_worker_dash_a_follows_celerys_lookup_rules(tmp_path: Path, spec: str, name: str) -> None:
    write(tmp_path, CELERY_PROJECT)
    env = {"ONE_LINE_REDIS": flushed_url(ONE_LINE_DB), "PYTHONPATH": str(SRC)}
    out = subprocess.run([sys.executable, "-m", "asyncq", "worker", "-A", spec, "--burst"], cwd=tmp_path,
                         env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"asyncq worker: {spec} on " in out.stderr
    if name == "proj":
        assert "proj.tasks.ping" in out.stderr  # autodiscovered, on the worker's task list


def test_worker_shows_the_real_error_of_a_celery_app_and_names_real_celery(tmp_path: Path) -> None:
    write(tmp_path, {
        "broken.py": """
            from asyncq.compat import Celery

            app = Celery("broken", broker="redis://127.0.0.1:1/0", include=["missing_tasks_module"])
        """,
        "stock.py": """
            from celery import Celery

            app = Celery("stock", broker="redis://127.0.0.1:1/0")
        """,
    })
    out = subprocess.run([sys.executable, "-m", "asyncq", "worker", "broken:app", "--burst"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "missing_tasks_module" in out.stderr and "not an asyncq App" not in out.stderr
    if importlib.util.find_spec("celery") is not None:
        out = subprocess.run([sys.executable, "-m", "asyncq", "worker", "stock:app", "--burst"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 2
        assert "real Celery's app" in out.stderr and "from asyncq.compat import Celery" in out.stderr


def test_real_celery_crontab_is_accepted_and_a_real_celery_task_base_is_refused(
        caplog: pytest.LogCaptureFixture) -> None:
    celery = pytest.importorskip("celery")
    from celery import signals as real_signals
    from celery.schedules import crontab as real_crontab
    from celery.schedules import solar

    app = Celery("leaks", broker=redis_url(ONE_LINE_DB))
    app.conf.beat_schedule = {"n": {"task": "x", "schedule": real_crontab(minute="*/5", hour="3")}}

    def receiver(**kwargs: object) -> None: ...

    real_signals.task_failure.connect(receiver)
    try:
        with caplog.at_level(logging.WARNING, logger="asyncq.compat"):
            (entry,) = app.asyncq_app.schedules
    finally:
        real_signals.task_failure.disconnect(receiver)
    assert entry.entry_name == "n"
    messages = [r.getMessage() for r in caplog.records]
    assert any("real Celery" in m and "install_as_celery" in m for m in messages)
    assert any("`from celery.signals import task_failure` to `from asyncq.compat.signals import task_failure`" in m
               for m in messages)
    sunset = solar.__new__(solar)  # solar() needs the ephem package; its fields are enough here
    sunset.event, sunset.lat, sunset.lon = "sunset", 0, 0
    with pytest.raises(ImproperlyConfigured, match=r"from celery.schedules import solar"):
        app.add_periodic_task(sunset, app.signature("x"), name="s")
    with pytest.raises(ImproperlyConfigured, match=r"change `from celery import Task` to `from asyncq.compat import "
                                                   r"Task`"):
        app.task(base=celery.Task)(lambda: None)
    with pytest.raises(ImproperlyConfigured, match="install_as_celery"):
        Celery("leaks", broker=redis_url(ONE_LINE_DB), task_cls=celery.Task)
    app.close()


# --- 1 and 4. Django and config_from_object ------------------------------------------------------------------
def test_config_from_object_is_lazy_and_reads_dicts_objects_and_paths(tmp_path: Path) -> None:
    app = Celery("conf")
    app.config_from_object("no_such_settings_module_xyz")  # nothing is read yet (Django: settings still importing)
    with pytest.raises(ModuleNotFoundError):
        app.conf.broker_url  # noqa: B018
    app = Celery("conf")
    app.config_from_object({"broker_url": redis_url(ONE_LINE_DB), "task_ignore_result": True, "CELERY_X": 1})
    assert app.conf.broker_url == redis_url(ONE_LINE_DB) and app.conf.task_ignore_result is True
    app = Celery("conf")
    app.config_from_object({"CELERY_BROKER_URL": redis_url(ONE_LINE_DB), "CELERY_TASK_DEFAULT_QUEUE": "jobs",
                            "DEBUG": True}, namespace="CELERY")
    assert app.conf.broker_url == redis_url(ONE_LINE_DB) and app.conf.task_default_queue == "jobs"
    assert app.asyncq_app.settings.redis_url == redis_url(ONE_LINE_DB)  # the dict's broker, not a default Redis
    app.close()


def test_django_settings_module_sets_django_up_and_autodiscovers_installed_apps(tmp_path: Path) -> None:
    pytest.importorskip("django")
    write(tmp_path, {
        "site_settings.py": """
            import os
            SECRET_KEY = "x"
            INSTALLED_APPS = ["shopapp"]
            DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
            CELERY_BROKER_URL = os.environ["ONE_LINE_REDIS"]
            CELERY_RESULT_BACKEND = "django-db"  # asyncq cannot serve it: importing must still work
        """,
        "shopapp/__init__.py": "",
        "shopapp/models.py": """
            from django.db import models

            class Item(models.Model):
                name = models.CharField(max_length=10)
        """,
        "shopapp/tasks.py": """
            from celery import shared_task
            from shopapp.models import Item  # needs django.setup() before this import

            @shared_task
            def count():
                return Item.objects.count()
        """,
        "siteproj.py": """
            import asyncq.compat
            asyncq.compat.install_as_celery()
            from celery import Celery

            app = Celery("site")
            app.config_from_object("django.conf:settings", namespace="CELERY")
            app.autodiscover_tasks()
        """,
    })
    out = run_python("""
        import siteproj  # the settings are not read here (lazy), Django is not set up yet
        from django.apps import apps
        assert not apps.ready
        try:
            siteproj.app.finalize()
        except Exception as exc:
            print("first use:", type(exc).__name__, exc)
        siteproj.app.conf.result_backend = None
        siteproj.app.finalize()
        print("ready:", apps.ready, sorted(t for t in siteproj.app.tasks if t.startswith("shopapp")))
        print("fixups:", [f.__name__ for f in siteproj.app.thread_fixups])
    """, cwd=tmp_path, env={"DJANGO_SETTINGS_MODULE": "site_settings", "ONE_LINE_REDIS": redis_url(ONE_LINE_DB)})
    assert out.returncode == 0, out.stderr
    assert "first use: ImproperlyConfigured result_backend='django-db'" in out.stdout
    assert "Use the Redis backend" in out.stdout
    assert "ready: True ['shopapp.tasks.count']" in out.stdout
    assert "fixups: ['recycle_connections']" in out.stdout


# --- 2 and 7. the missing surface; settings that cannot be honoured --------------------------------------------
def test_app_surface_projects_use() -> None:
    app = Celery("surface", broker=redis_url(ONE_LINE_DB), set_as_current=False)
    other = Celery("other", broker=redis_url(ONE_LINE_DB))
    app.set_default()
    from asyncq.compat import current_app

    assert current_app() is app
    app.steps["worker"].add(object)  # accepted (bootsteps do not run in asyncq)
    conn = app.broker_connection()
    assert conn.channel().client.ping() is True  # a health check's usual probe
    assert conn.ensure_connection(max_retries=1) is conn
    conn.release()
    with app.connection() as c:
        assert c.connected
    finalized = []
    app.on_after_finalize.connect(lambda sender, **kw: finalized.append(sender))

    @app.task(bind=True, max_retries=0)
    def t(self: object) -> None: ...

    assert t.MaxRetriesExceededError is MaxRetriesExceededError
    app.finalize()
    assert finalized == [app]
    app.close()
    other.close()


def test_settings_asyncq_cannot_honour_fail_on_use_not_on_import() -> None:
    app = Celery("dj", broker=redis_url(ONE_LINE_DB), backend="django-db")
    app.conf.update(worker_pool="prefork", broker_transport_options={"visibility_timeout": 10})

    @app.task
    def t() -> None: ...

    with pytest.raises(ImproperlyConfigured, match="Use the Redis backend") as info:
        t.delay()
    assert "RabbitMQ" not in str(info.value)
    app.close()


# --- 6. hooks and receivers of def tasks in a worker thread -----------------------------------------------------
def test_hooks_and_signal_receivers_of_def_tasks_run_off_the_event_loop() -> None:
    app = Celery("hooks", broker=flushed_url(ONE_LINE_DB), backend=redis_url(ONE_LINE_DB))
    seen: dict[str, bool] = {}

    def on_loop() -> bool:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False
        return True

    from asyncq.compat import Task

    class Recording(Task):
        def on_failure(self, exc: BaseException, *args: object) -> None:
            seen["on_failure"] = on_loop()

        def after_return(self, *args: object) -> None:
            seen["after_return"] = on_loop()

    def receiver(sender: object = None, **kwargs: object) -> None:
        seen[f"signal:{kwargs['signal'].name}"] = on_loop()  # type: ignore[attr-defined]

    @app.task(base=Recording, name="hooks.boom")
    def boom() -> None:
        raise KeyError("the task's own error")

    @app.task(base=Recording, name="hooks.aboom")
    async def aboom() -> None:
        raise KeyError("async")

    celery_signals.task_failure.connect(receiver)
    celery_signals.task_prerun.connect(receiver)
    try:
        with ThreadWorker(app):
            with pytest.raises(KeyError, match="the task's own error"):
                boom.delay().get(timeout=10)
            assert seen == {"signal:task_prerun": False, "on_failure": False, "signal:task_failure": False,
                            "after_return": False}
            seen.clear()
            with pytest.raises(KeyError):
                aboom.delay().get(timeout=10)
            assert seen["on_failure"] is True  # an async def task's hooks stay on its loop
    finally:
        celery_signals.task_failure.disconnect(receiver)
        celery_signals.task_prerun.disconnect(receiver)
        app.close()


# --- 8. canvas calling conventions -------------------------------------------------------------------------
def test_chain_group_chord_are_called_as_in_celery() -> None:
    app = Celery("canvas", broker=flushed_url(ONE_LINE_DB), backend=redis_url(ONE_LINE_DB))

    @app.task(name="canvas.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="canvas.tsum")
    def tsum(xs: list[int]) -> int:
        return sum(xs)

    try:
        with ThreadWorker(app):
            assert chain(add.s(1, 2), add.s(3))().get(timeout=10) == 6  # was KeyError: 'celery.chain'
            assert (add.s(1, 1) | add.s(1))().get(timeout=10) == 3
            assert chain(add.s(1, 2), add.s(3)).delay().get(timeout=10) == 6
            assert group(add.s(i, i) for i in range(3))().get(timeout=10) == [0, 2, 4]
            assert chord([add.s(1, 1), add.s(2, 2)], tsum.s())().get(timeout=10) == 6
            assert chord([add.s(1, 1), add.s(2, 2)])(tsum.s()).get(timeout=10) == 6
            assert (group(add.s(1, 1), add.s(2, 2)) | tsum.s()).apply_async().get(timeout=10) == 6
    finally:
        app.close()


def test_no_redis_connection_on_import_or_config() -> None:
    app = Celery("lazy", broker="redis://127.0.0.1:1/0")
    app.config_from_object({"task_default_queue": "q"})
    assert app.conf.task_default_queue == "q"  # nothing connected: port 1 would refuse
    with pytest.raises(redis.ConnectionError):
        app.broker_connection().ensure_connection()
    app.close()


def test_current_task_is_the_running_task() -> None:
    from asyncq.compat import current_task

    app = Celery("current", broker=redis_url(ONE_LINE_DB), task_always_eager=True)

    @app.task(name="current.who")
    def who() -> str:
        return f"{current_task.name} {current_task.request.id}"

    assert not current_task
    result = who.apply(task_id="t-1")
    assert result.get() == "current.who t-1"
    app.close()


def test_thread_fixups_run_around_every_def_body_in_its_thread() -> None:
    """The Django fixup's connection check is a thread fixup: run in the body's thread before and after it."""
    app = Celery("fixups", broker=flushed_url(ONE_LINE_DB), backend=redis_url(ONE_LINE_DB))
    calls: list[int] = []
    app.thread_fixups.append(lambda: calls.append(threading.get_ident()))

    @app.task(name="fixups.body")
    def body() -> int:
        calls.append(threading.get_ident())
        return threading.get_ident()

    @app.task(name="fixups.abody")
    async def abody() -> int:
        return 1

    try:
        with ThreadWorker(app):
            ident = body.delay().get(timeout=10)
            assert calls == [ident, ident, ident]  # before, the body, after: one thread
            assert abody.delay().get(timeout=10) == 1
            assert len(calls) == 3  # nothing for an async def task (Django's async ORM checks its own)
    finally:
        app.close()
