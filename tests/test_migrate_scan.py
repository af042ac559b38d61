"""``asyncq migrate scan``: small Celery projects written to tmp_path, scanned by the real command
(``python -m asyncq migrate scan``) and by the scanner directly. Nothing needs Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from asyncq.migrate import FailOn, Report, Verdict, rules, scan

CELERY_PY = '''
import os
from celery import Celery, current_app
from celery.schedules import crontab, solar

app = Celery("proj", broker="amqp://guest@localhost//", backend="redis://localhost:6379/1")
app.config_from_object("proj.celeryconfig")
app.conf.update(task_annotations={"proj.tasks.add": {"rate_limit": "10/s"}}, worker_concurrency=4)
app.conf.beat_schedule = {
    "nightly": {"task": "proj.tasks.add", "schedule": crontab(hour=3, minute=0), "options": {"expires": 60}},
    "sunrise": {"task": "proj.tasks.add", "schedule": solar("sunrise", 0, 0)},
}
app.conf.timezone = "Europe/Paris"


@app.on_after_configure.connect
def setup(sender, **kwargs):
    sender.add_periodic_task(10.0, sender.tasks["proj.tasks.add"].s(1, 2))


@current_app.task
def legacy():
    return 1
'''

SETTINGS_PY = '''
broker_url = "redis://localhost:6379/0"
task_serializer = "yaml"
CELERY_IMPORTS = ("proj.tasks",)
CELERYD_PREFETCH_MULTIPLIER = 1
task_default_retry_delay = 30
'''

TASKS_PY = '''
from celery import Task, shared_task, chain, group, chord, signals
from django.db import transaction
from .celery import app


class DbTask(Task):
    abstract = True
    autoretry_for = (IOError,)

    def __call__(self, *args, **kwargs):
        return super().__call__(*args, **kwargs)

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        pass


class Legacy(Task):
    name = "proj.legacy_class"

    def run(self, x):
        return x


app.register_task(Legacy())


@app.task(bind=True, base=DbTask, rate_limit="5/m", serializer="pickle", pydantic=True, acks_late=True)
def add(self, x, y):
    r = other.delay(x)
    r.get()
    self.update_state(state="PROGRESS")
    raise self.retry(args=(x, y), countdown=5, queue="slow")


@shared_task
async def other(x):
    return await add.apply_async((1, 2), countdown=3, queue="q", mandatory=True, retry=True)


@signals.worker_process_init.connect
def on_received(**kw): ...


@signals.task_prerun.connect
def on_prerun(**kw): ...


def view():
    transaction.on_commit(lambda: add.delay(1, 2))
    add.apply_async((1, 2), expires=30, link=other.s())
    chain(add.s(1, 2), other.s(), group(other.s(), other.s()))
    return add.s(1, 2) | other.si(3) | other.s()


def ops():
    chord([add.s(i, i) for i in range(3)])(other.s())
    other.map([1, 2])
    app.send_task("proj.tasks.add", args=(1, 2), exchange="x")
    app.control.revoke("id", terminate=True)
    app.control.rate_limit("proj.tasks.add", "1/s")
    i = app.control.inspect()
    i.active()
    i.revoked()
    i.memdump()
    return {}.get("a")
'''

CLEAN_PY = '''
from asyncq.compat import Celery

app = Celery("clean", broker="redis://127.0.0.1:6379/0")


@app.task(bind=True, max_retries=3)
async def notify(self, user_id):
    return user_id


def send():
    notify.delay(1)
    notify.apply_async((2,), countdown=5, queue="emails")
'''


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


@pytest.fixture
def celery_project(tmp_path: Path) -> Path:
    return write(tmp_path, {"proj/__init__.py": "", "proj/celery.py": CELERY_PY, "proj/celeryconfig.py": SETTINGS_PY,
                            "proj/tasks.py": TASKS_PY, "proj/broken.py": "def broken(:\n    pass\n"})


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "250", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "asyncq", "migrate", "scan", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def verdicts(report: Report | dict[str, Any], feature: str) -> set[str]:
    if isinstance(report, Report):
        return {str(f.verdict) for f in report.findings if f.feature == feature}
    found = list(report["findings"]) + [f for t in report["tasks"] for f in t["features"]]
    return {f["verdict"] for f in found if f["feature"] == feature}


# --- the command -----------------------------------------------------------------------------------------------------
def test_text_output_lists_tasks_findings_and_the_broken_file(celery_project: Path) -> None:
    proc = run_cli(celery_project, "proj")
    assert proc.returncode == 1, proc.stderr
    out = proc.stdout
    for expected in ("proj.tasks.add", "proj.legacy_class", "@shared_task", "amqp:// raises ImproperlyConfigured",
                     "self.retry(args=)", "app.register_task()", "signal worker_process_init",
                     "proj/broken.py: does not parse", "exit 1"):
        assert expected in out, expected


def test_json_output(celery_project: Path) -> None:
    proc = run_cli(celery_project, "proj", "--json")
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert data["exit_code"] == 1 and data["files_scanned"] == 4
    assert data["errors"] == [{"path": "proj/broken.py", "message": "does not parse: invalid syntax (line 1)"}]
    tasks = {t["name"]: t for t in data["tasks"]}
    assert set(tasks) == {"proj.celery.legacy", "proj.legacy_class", "proj.tasks.add", "proj.tasks.other"}
    assert tasks["proj.tasks.other"]["async"] is True and tasks["proj.tasks.other"]["kind"] == "@shared_task"
    assert tasks["proj.tasks.add"]["verdict"] == "unsupported"
    add = {f["feature"]: f for f in tasks["proj.tasks.add"]["features"]}
    assert add["@task(base=DbTask)"]["verdict"] == "unsupported"
    assert "__call__, on_failure" in add["@task(base=DbTask)"]["detail"]
    assert add["@task(rate_limit=)"]["verdict"] == "supported"
    assert add["result.get() inside a task"]["verdict"] == "unsupported"
    assert verdicts(data, "setting broker_url") == {"unsupported", "supported"}  # amqp in Celery(), redis in config


def test_exit_codes_and_fail_on(celery_project: Path, tmp_path: Path) -> None:
    assert run_cli(celery_project, "proj", "--fail-on", "never").returncode == 0
    clean = write(tmp_path / "clean", {"app.py": CLEAN_PY})
    proc = run_cli(clean, ".")
    assert proc.returncode == 0, proc.stdout
    assert "exit 0" in proc.stdout
    assert run_cli(clean, ".", "--fail-on", "no-effect").returncode == 0
    missing = run_cli(tmp_path, "no/such/dir")
    assert missing.returncode == 2 and "no such file or folder" in missing.stderr
    only_broken = write(tmp_path / "broken", {"bad.py": "def x(:\n"})
    assert run_cli(only_broken, ".").returncode == 2
    assert run_cli(tmp_path, "x", "--fail-on", "sometimes").returncode == 2


def test_show_hides_lower_verdicts(celery_project: Path) -> None:
    proc = run_cli(celery_project, "proj", "--show", "unsupported", "--exclude", "broken.py")
    assert "not shown" in proc.stdout and "signal task_prerun" not in proc.stdout
    assert "broken.py" not in proc.stdout and "signal worker_process_init" in proc.stdout


# --- the scanner -----------------------------------------------------------------------------------------------------
def test_settings_module_keys(celery_project: Path) -> None:
    report = scan([celery_project / "proj"])
    assert verdicts(report, "setting task_serializer") == {"unsupported"}
    assert verdicts(report, "setting imports (CELERY_IMPORTS)") == {"supported"}  # an old name compat maps
    assert verdicts(report, "setting worker_prefetch_multiplier (CELERYD_PREFETCH_MULTIPLIER)") == {"no-effect"}
    # verdicts that follow asyncq.compat's code: read from its source, so they change when compat does
    honoured = "task_default_retry_delay" in rules.settings_read()
    assert verdicts(report, "setting task_default_retry_delay") == {"supported" if honoured else "change"}
    assert verdicts(report, "setting task_annotations") == {"unsupported"}
    assert verdicts(report, "setting timezone") == {"supported"}  # crontabs are read in it (DST-safe)
    assert verdicts(report, "beat entry 'sunrise': solar") == {"unsupported"}
    assert verdicts(report, "beat entry 'nightly': crontab") == {"supported"}
    assert verdicts(report, "beat entry 'nightly' options['expires']") == {"change"}


def test_django_namespace_settings(tmp_path: Path) -> None:
    write(tmp_path, {
        "site/__init__.py": "",
        "site/settings.py": 'CELERY_BROKER_URL = "sqs://"\nCELERY_TASK_ALWAYS_EAGER = True\nDEBUG = True\n',
        "site/celery.py": 'from celery import Celery\napp = Celery("site")\n'
                          'app.config_from_object("django.conf:settings", namespace="CELERY")\n',
    })
    report = scan([tmp_path / "site"])
    assert verdicts(report, "setting broker_url (CELERY_BROKER_URL)") == {"unsupported"}
    assert verdicts(report, "setting task_always_eager (CELERY_TASK_ALWAYS_EAGER)") == {"supported"}
    assert not [f for f in report.findings if "DEBUG" in f.feature]


def test_calls_canvas_control_and_signals(celery_project: Path) -> None:
    report = scan([celery_project / "proj"])
    assert verdicts(report, ".apply_async(mandatory=)") == {"unsupported"}
    assert verdicts(report, ".apply_async(retry=)") == {"no-effect"}
    assert verdicts(report, ".apply_async(expires=)") == {"supported"}
    assert verdicts(report, "self.retry(queue=)") == {"change"}
    assert verdicts(report, "canvas |") == {"supported"}
    assert verdicts(report, "canvas chord()") == {"supported"}
    assert verdicts(report, "canvas .map()") == {"supported"}
    assert verdicts(report, "on_commit(... .delay ...)") == {"change"}
    assert verdicts(report, "app.control.revoke()") == {"supported"}
    assert verdicts(report, "app.control.rate_limit()") == {"unsupported"}
    assert verdicts(report, "inspect().revoked()") == {"supported"}
    assert verdicts(report, "inspect().memdump()") == {"unsupported"}
    assert verdicts(report, "signal task_prerun") == {"change"}  # real Celery's signal: `from celery import signals`
    assert verdicts(report, "signal worker_process_init") == {"unsupported"}
    sent = "on_after_configure" in rules.signals_sent()
    assert verdicts(report, "app.on_after_configure.connect") == {"supported" if sent else "unsupported"}
    assert verdicts(report, "@task(pydantic=)") == {"supported"}
    assert verdicts(report, "current_app.task") == {"supported"}
    assert verdicts(report, "app.register_task()") == {"supported"}
    assert not verdicts(report, "chain ending in a group")  # nested canvases run as in Celery
    assert verdicts(report, "DbTask.__call__()") == {"unsupported"}
    assert not [f for f in report.findings if f.feature == "result.get()" and f.line == 65]  # {}.get("a")


def test_import_through_a_project_module(tmp_path: Path) -> None:
    """compat/proj's layout: the Celery API is imported from a project module that picks the runtime."""
    write(tmp_path, {
        "p/__init__.py": "",
        "p/runtime.py": "from celery import Celery, group\nURL = 'redis://127.0.0.1:6379/0'\n",
        "p/tasks.py": "from p.runtime import Celery, URL, group\napp = Celery('p', broker=URL)\n"
                      "@app.task\ndef t(x): return x\n\ndef go():\n    return group(t.s(1), t.s(2))()\n",
    })
    report = scan([tmp_path / "p"])
    assert [t.name for t in report.tasks] == ["p.tasks.t"]
    assert verdicts(report, "setting broker_url") == {"supported"}
    assert verdicts(report, "canvas group()") == {"supported"}


def test_compat_proj_scans_with_only_import_changes() -> None:
    root = Path(__file__).resolve().parents[1]
    report = scan([root / "compat" / "proj"])
    assert not report.errors and len(report.tasks) >= 20
    assert not [f for f in report.findings if f.verdict in (Verdict.unsupported, Verdict.check)]
    assert {f.feature.split(" ")[0] for f in report.findings if f.verdict is Verdict.change} == {"from"}
    assert report.exit_code(FailOn.unsupported) == 0 and report.exit_code(FailOn.change) == 1


# --- the scanner tells the truth (issue 13): one test per false positive or miss ---------------------------------
ONE_IMPORT_CHANGED = {
    "proj/__init__.py": "",
    "proj/celery.py": 'from asyncq.compat import Celery\nfrom proj.base import BaseTask\n'
                      'app = Celery("proj", task_cls=BaseTask)\n'
                      'app.config_from_object("django.conf:settings", namespace="CELERY")\n'
                      'app.set_default()\nconn = app.broker_connection()\nsteps = app.steps\n'
                      'app.on_after_finalize.connect(lambda sender, **kw: None)\n',
    "proj/base.py": "from celery import Task\n\nclass BaseTask(Task):\n    def on_failure(self, *a): pass\n",
    "proj/settings/base.py": 'CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"\nCELERY_RESULT_BACKEND = "django-db"\n'
                             'CELERY_TASK_SERIALIZER = "json"\n',
    "proj/settings/prod.py": "from .base import *\nDEBUG = False\n",
    "proj/tasks.py": "from asyncq.compat import shared_task\nfrom celery.signals import task_failure\n"
                     "from celery.schedules import crontab\nfrom celery.result import AsyncResult\n"
                     "from celery.utils.log import get_task_logger\n\n"
                     "@shared_task\ndef count(total=1):\n    return total\n\n"
                     "@task_failure.connect\ndef on_fail(**kw): ...\n\n"
                     "def go():\n    count.delay(3, total=3)\n    return AsyncResult('x')\n",
}


@pytest.fixture
def one_import(tmp_path: Path) -> Report:
    write(tmp_path, ONE_IMPORT_CHANGED)
    return scan([tmp_path / "proj"])


def finding(report: Report, feature: str) -> Any:
    found = [f for f in report.findings if f.feature == feature]
    assert len(found) == 1, (feature, [f.feature for f in report.findings])
    return found[0]


@pytest.mark.parametrize("module,name", [("celery.signals", "task_failure"), ("celery.schedules", "crontab"),
                                         ("celery.result", "AsyncResult"), ("celery.utils.log", "get_task_logger")])
def test_imports_that_still_reach_real_celery_are_reported(one_import: Report, module: str, name: str) -> None:
    f = finding(one_import, f"from {module} import {name}")
    assert f.verdict is Verdict.change and "still imports real Celery" in f.detail
    if rules.can_install_as_celery():  # the advice follows what asyncq.compat offers at scan time
        assert "asyncq.compat.install_as_celery() at the top of the project package" in f.detail


def test_a_receiver_on_real_celerys_signal_is_not_supported(one_import: Report) -> None:
    f = finding(one_import, "signal task_failure")
    assert f.verdict is Verdict.change and "never runs" in f.detail


def test_install_as_celery_in_the_project_makes_celery_imports_resolve(tmp_path: Path) -> None:
    write(tmp_path, {**ONE_IMPORT_CHANGED,
                     "proj/__init__.py": "import asyncq.compat\nasyncq.compat.install_as_celery()\n"})
    report = scan([tmp_path / "proj"])
    installed = rules.can_install_as_celery()
    # resolved imports are not findings (as for asyncq.compat imports); unresolved ones stay a change
    assert verdicts(report, "from celery.signals import task_failure") == (set() if installed else {"change"})
    assert verdicts(report, "from celery import Task") == (set() if installed else {"change"})
    assert verdicts(report, "Celery(task_cls=)") == ({"supported"} if installed else {"unsupported"})
    assert finding(report, "signal task_failure").verdict is Verdict.supported  # compat's signal once installed


def test_task_cls_built_on_celery_task(one_import: Report, tmp_path: Path) -> None:
    f = finding(one_import, "Celery(task_cls=)")
    assert f.verdict is Verdict.unsupported and "built on real celery.Task" in f.detail
    ok = write(tmp_path / "ok", {"p/__init__.py": "",
                                 "p/c.py": "from asyncq.compat import Celery, Task\nclass B(Task): pass\n"
                                           "app = Celery('p', broker='redis://h/0', task_cls='p.c:B')\n"})
    assert verdicts(scan([ok / "p"]), "Celery(task_cls=)") == {"supported"}


def test_django_db_result_backend_says_use_redis(one_import: Report) -> None:
    f = finding(one_import, "setting result_backend (CELERY_RESULT_BACKEND)")
    assert f.verdict is Verdict.change and "use the Redis backend" in f.detail


@pytest.mark.parametrize("attr", ["set_default", "steps", "broker_connection", "on_after_finalize"])
def test_app_attributes_compat_lacks(one_import: Report, attr: str) -> None:
    feature = f"app.{attr}.connect" if attr == "on_after_finalize" else f"app.{attr}"
    found = verdicts(one_import, feature)
    if rules.app_attr_missing(attr):
        assert found == {"unsupported"}
    else:  # asyncq.compat has it now: no false alarm
        assert "unsupported" not in found or (attr == "on_after_finalize" and attr not in rules.signals_sent())


def test_json_serializer_is_accepted(one_import: Report) -> None:
    assert verdicts(one_import, "setting task_serializer (CELERY_TASK_SERIALIZER)") == {"supported"}


def test_a_tasks_own_keyword_argument_is_not_an_option(one_import: Report) -> None:
    assert verdicts(one_import, ".delay()") == {"supported"}
    assert not [f for f in one_import.findings if f.feature.startswith(".delay(")
                and f.feature != ".delay()"]


def test_settings_folder_without_init(one_import: Report) -> None:
    assert "proj/settings/__init__.py" not in ONE_IMPORT_CHANGED  # a namespace folder, as many Django projects have
    paths = {f.path for f in one_import.findings if f.feature.startswith("setting ")}
    assert len(paths) == 1 and paths.pop().endswith("proj/settings/base.py")
