"""The ``asyncq`` command, run as real subprocesses (``python -m asyncq ...``) against Redis database 11.

Workers run the way users run them: ``asyncq worker tasks:app`` from the folder that holds ``tasks.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import flushed_url, run_process_group

CLI_DB = 11
UNREACHABLE = "redis://127.0.0.1:1/0"

TASKS = '''
from asyncq import App

app = App()


@app.task(queue="cli")
async def add(a, b=0):
    return a + b


@app.task(queue="cli", max_tries=1)
def boom(x):
    raise ValueError(f"boom {x}")
'''


@pytest.fixture
def curl() -> str:
    return flushed_url(CLI_DB)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A user's project folder with a tasks module (cli_tasks.py)."""
    (tmp_path / "cli_tasks.py").write_text(textwrap.dedent(TASKS))
    return tmp_path


def env_for(url: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCQ_")}
    env.update({"COLUMNS": "200", "NO_COLOR": "1", "PYTHONUNBUFFERED": "1", **extra})
    if url is not None:
        env["ASYNCQ_REDIS_URL"] = url
    return env


def asyncq(*args: str, url: str | None, cwd: Path | None = None, timeout: float = 60,
           **env: str) -> subprocess.CompletedProcess[str]:
    # in a process group of its own: a command that overruns (asyncq demo) is killed with the redis-server and
    # worker it started, instead of leaving them running
    return run_process_group([sys.executable, "-m", "asyncq", *args], cwd=cwd, env=env_for(url, **env),
                             timeout=timeout)


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


def one_red_line(proc: subprocess.CompletedProcess[str], code: int, *phrases: str) -> str:
    """A user error: the given exit code, one 'error:' line naming the problem, no traceback."""
    assert proc.returncode == code, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, proc.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    return lines[0]


def as_json(proc: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(proc))


@pytest.fixture
def background() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait(10)


# --- help and version ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "command",
    [[], ["worker"], ["enqueue"], ["job"], ["queues"], ["dlq"], ["dlq", "list"], ["dlq", "retry"],
     ["dlq", "purge"], ["demo"]],
)
def test_help(command: list[str]) -> None:
    out = ok(asyncq(*command, "--help", url=None))
    assert "Usage: asyncq" in out
    if command and command != ["dlq"] and command != ["demo"]:
        assert "--redis-url" in out


def test_version() -> None:
    from asyncq import __version__

    assert ok(asyncq("--version", url=None)).strip() == f"asyncq {__version__}"


# --- enqueue, worker, job --------------------------------------------------------------------------------
def test_enqueue_burst_worker_and_job(curl: str, project: Path) -> None:
    job_id = ok(asyncq("enqueue", "cli_tasks.add", "[2, 3]", "--queue", "cli", url=curl)).strip()
    kw_id = ok(asyncq("enqueue", "cli_tasks.add", "[1]", "--kwargs", '{"b": 41}', "--app", "cli_tasks:app",
                      url=curl, cwd=project)).strip()
    mine = ok(asyncq("enqueue", "cli_tasks.add", "[0]", "--job-id", "my-id", "--queue", "cli", "--priority", "9",
                     url=curl)).strip()
    assert mine == "my-id"
    dup = asyncq("enqueue", "cli_tasks.add", "[0]", "--job-id", "my-id", "--queue", "cli", url=curl)
    assert ok(dup).strip() == "my-id" and "exists already" in dup.stderr
    later = ok(asyncq("enqueue", "cli_tasks.add", "[0]", "--delay", "60", "--queue", "cli", url=curl)).strip()

    queued = as_json(asyncq("job", job_id, "--json", url=curl))
    assert queued["status"] == "queued" and queued["args"] == [2, 3] and queued["queue"] == "cli"

    # The worker serves the queues its App's tasks use by default, and stops once they are empty.
    worker = asyncq("worker", "cli_tasks:app", "--burst", "--concurrency", "5", "--log-level", "warning",
                    url=curl, cwd=project)
    ok(worker)
    assert "queues default,cli" in worker.stderr

    done = as_json(asyncq("job", job_id, "--json", url=curl))
    assert done["status"] == "complete" and done["result"] == 5 and done["tries"] == 1 and done["worker"]
    assert as_json(asyncq("job", kw_id, "--json", url=curl))["result"] == 42
    assert as_json(asyncq("job", later, "--json", url=curl))["status"] == "deferred"

    shown = ok(asyncq("job", job_id, url=curl))
    assert job_id in shown and "complete" in shown and "cli_tasks.add" in shown and "5" in shown


def test_worker_queues_option_and_failed_job(curl: str, project: Path) -> None:
    failing = ok(asyncq("enqueue", "cli_tasks.boom", "[7]", "--app", "cli_tasks:app", url=curl, cwd=project))
    other = ok(asyncq("enqueue", "cli_tasks.add", "[1, 1]", "--queue", "other", url=curl)).strip()
    ok(asyncq("worker", "cli_tasks:app", "--queues", "cli", "--burst", "--threads", "2", "--lease", "5",
              "--shutdown-grace", "1", url=curl, cwd=project))
    assert as_json(asyncq("job", other, "--json", url=curl))["status"] == "queued"  # not served

    info = as_json(asyncq("job", failing.strip(), "--json", url=curl))
    assert info["status"] == "failed" and info["error"] == "ValueError: boom 7"
    assert "Traceback" in info["traceback"] and info["dead_letter_reason"] == "failed: retries exhausted"
    shown = ok(asyncq("job", failing.strip(), url=curl))
    assert "ValueError: boom 7" in shown and "raise ValueError" in shown


def test_enqueue_wait_with_a_running_worker(curl: str, project: Path, background: list[Any]) -> None:
    worker = subprocess.Popen(
        [sys.executable, "-m", "asyncq", "worker", "cli_tasks:app", "--log-level", "warning"],
        cwd=project, env=env_for(curl), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    background.append(worker)

    waited = asyncq("enqueue", "cli_tasks.add", "[20, 22]", "--queue", "cli", "--wait", "20", url=curl)
    job_id, result = ok(waited).strip().splitlines()
    assert json.loads(result) == 42 and len(job_id) == 32

    failed = asyncq("enqueue", "cli_tasks.boom", "[1]", "--queue", "cli", "--wait", "20", url=curl)
    one_red_line(failed, 1, "failed", "ValueError: boom 1", "asyncq job")

    waited_job = ok(asyncq("enqueue", "cli_tasks.add", "[1, 2]", "--queue", "cli", url=curl)).strip()
    assert as_json(asyncq("job", waited_job, "--wait", "20", "--json", url=curl))["result"] == 3

    stats = as_json(asyncq("queues", "--json", url=curl))
    assert [w["queues"] for w in stats["workers"]] == [["default", "cli"]]

    nobody = asyncq("enqueue", "cli_tasks.add", "[1]", "--queue", "unserved", "--wait", "0.5", url=curl)
    one_red_line(nobody, 1, "did not finish within 0.5 s", "--wait")

    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0


# --- queues and dead letters -----------------------------------------------------------------------------
def test_queues(curl: str, project: Path) -> None:
    empty = ok(asyncq("queues", url=curl))
    assert "no queues yet" in empty and "workers alive: 0" in empty

    for _ in range(3):
        ok(asyncq("enqueue", "cli_tasks.add", "[1]", "--queue", "cli", url=curl))
    ok(asyncq("enqueue", "cli_tasks.add", "[1]", "--queue", "cli", "--delay", "60", url=curl))
    ok(asyncq("enqueue", "cli_tasks.boom", "[1]", "--queue", "bad", url=curl))
    ok(asyncq("worker", "cli_tasks:app", "--queues", "bad", "--burst", url=curl, cwd=project))

    stats = as_json(asyncq("queues", "--json", url=curl))
    by_name = {q["queue"]: q for q in stats["queues"]}
    assert set(by_name) == {"cli", "bad"}
    assert by_name["cli"]["length"] == 3 and by_name["cli"]["scheduled"] == 1
    assert by_name["cli"]["in_flight"] == 0 and by_name["cli"]["oldest_age"] >= 0
    assert by_name["bad"]["dead_letters"] == 1 and by_name["bad"]["length"] == 0
    assert stats["workers"] == []

    table = ok(asyncq("queues", url=curl))
    for header in ("queue", "length", "oldest age", "in flight", "scheduled", "dead letters", "workers alive: 0"):
        assert header in table
    assert "cli" in table and "bad" in table


def test_dlq_list_retry_purge(curl: str, project: Path) -> None:
    assert "no dead letters" in ok(asyncq("dlq", "list", url=curl))
    for i in range(3):
        ok(asyncq("enqueue", "cli_tasks.boom", f"[{i}]", "--queue", "cli", url=curl))
    ok(asyncq("enqueue", "cli_tasks.boom", "[9]", "--queue", "bad", url=curl))
    ok(asyncq("worker", "cli_tasks:app", "--queues", "cli,bad", "--burst", url=curl, cwd=project))

    letters = as_json(asyncq("dlq", "list", "--json", url=curl))
    assert len(letters) == 4
    assert {d["queue"] for d in letters} == {"cli", "bad"}
    assert all(d["error"].startswith("ValueError: boom") and d["reason"] for d in letters)
    cli_letters = as_json(asyncq("dlq", "list", "--queue", "cli", "--json", url=curl))
    assert sorted(d["args"] for d in cli_letters) == [[0], [1], [2]]
    assert len(as_json(asyncq("dlq", "list", "--limit", "1", "--json", url=curl))) == 1
    listed = ok(asyncq("dlq", "list", url=curl))
    assert all(d["job_id"] in listed for d in letters) and "ValueError: boom" in listed

    first = cli_letters[0]["job_id"]
    assert f"retried {first}" in ok(asyncq("dlq", "retry", first, url=curl))
    one_red_line(asyncq("dlq", "retry", first, url=curl), 1, "no dead letter", first, "asyncq dlq list")
    assert "retried 2 dead letter(s)" in ok(asyncq("dlq", "retry", "--all", "--queue", "cli", url=curl))
    stats = {q["queue"]: q for q in as_json(asyncq("queues", "--json", url=curl))["queues"]}
    assert stats["cli"]["length"] == 3 and stats["cli"]["dead_letters"] == 0 and stats["bad"]["dead_letters"] == 1

    # The retried jobs fail again (the task always does) and are back in the store.
    ok(asyncq("worker", "cli_tasks:app", "--queues", "cli", "--burst", url=curl, cwd=project))
    assert len(as_json(asyncq("dlq", "list", "--json", url=curl))) == 4

    refused = asyncq("dlq", "purge", "--all", url=curl)  # stdin is not a terminal
    one_red_line(refused, 2, "--yes")
    assert "purged 1 dead letter(s)" in ok(asyncq("dlq", "purge", first, "--yes", url=curl))
    assert "purged 1 dead letter(s)" in ok(asyncq("dlq", "purge", "--all", "--queue", "bad", "--yes", url=curl))
    assert "purged 2 dead letter(s)" in ok(asyncq("dlq", "purge", "--all", "--yes", url=curl))
    assert as_json(asyncq("dlq", "list", "--json", url=curl)) == []


def test_dlq_purge_of_an_unknown_id_fails_like_retry(curl: str) -> None:
    purge = asyncq("dlq", "purge", "nope", "--yes", url=curl)
    one_red_line(purge, 1, "no dead letter", "nope", "asyncq dlq list")
    assert "purged 0 dead letter(s)" in purge.stdout
    one_red_line(asyncq("dlq", "retry", "nope", url=curl), 1, "no dead letter", "nope", "asyncq dlq list")


def test_dlq_bad_selections(curl: str) -> None:
    one_red_line(asyncq("dlq", "retry", url=curl), 2, "--all")
    one_red_line(asyncq("dlq", "retry", "abc", "--all", url=curl), 2, "not both")
    one_red_line(asyncq("dlq", "purge", "abc", "--queue", "q", "--yes", url=curl), 2, "--queue goes with --all")
    one_red_line(asyncq("dlq", "list", "--queue", "a:b", url=curl), 2, "invalid queue name")


# --- errors ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "phrases"),
    [
        (["enqueue", "t", "[1, 2"], ["ARGS_JSON is not valid JSON", "example"]),
        (["enqueue", "t", '{"a": 1}'], ["ARGS_JSON must be a JSON list"]),
        (["enqueue", "t", "[]", "--kwargs", "[1]"], ["--kwargs must be a JSON object"]),
        (["enqueue", "t", "--kwargs", "{oops}"], ["--kwargs is not valid JSON"]),
        (["enqueue", "t", "--priority", "12"], ["invalid priority 12"]),
        (["enqueue", "t", "--queue", "a#b"], ["invalid queue name"]),
        (["worker", "no_such_module:app"], ["no module 'no_such_module'"]),
        (["worker", "cli_tasks:nope"], ["has no attribute 'nope'"]),
        (["worker", "cli_tasks:add"], ["is a Task, not an asyncq App"]),
        (["worker", "not a path"], ["not an import path"]),
        (["worker", "cli_tasks:app", "--log-level", "loud"], ["--log-level"]),
        (["worker", "cli_tasks:app", "--concurrency", "0"], ["concurrency must be >= 1"]),
        (["enqueue", "t", "--app", "cli_tasks:missing"], ["has no attribute 'missing'"]),
        (["queues", "--redis-url", "http://127.0.0.1:6379"], ["is not a Redis URL", "redis://"]),
    ],
)
def test_bad_input_exits_2(curl: str, project: Path, args: list[str], phrases: list[str]) -> None:
    one_red_line(asyncq(*args, url=curl, cwd=project), 2, *phrases)


def test_worker_module_that_raises_on_import(curl: str, tmp_path: Path) -> None:
    (tmp_path / "broken_tasks.py").write_text("import json\nraise RuntimeError('bad config')\n")
    proc = asyncq("worker", "broken_tasks", url=curl, cwd=tmp_path)
    assert proc.returncode == 1
    assert "RuntimeError: bad config" in proc.stderr  # the user's own bug: its traceback is shown
    assert "error: importing 'broken_tasks' raised RuntimeError" in proc.stderr


def test_worker_module_without_tasks(curl: str, tmp_path: Path) -> None:
    (tmp_path / "empty_tasks.py").write_text("from asyncq import App\napp = App()\n")
    one_red_line(asyncq("worker", "empty_tasks", "--burst", url=curl, cwd=tmp_path), 2, "no tasks registered")


@pytest.mark.parametrize(
    "args",
    [
        ["queues"],
        ["enqueue", "some.task", "[1]"],
        ["job", "abc"],
        ["dlq", "list"],
        ["dlq", "retry", "--all"],
        ["dlq", "purge", "--all", "--yes"],
    ],
)
def test_redis_unreachable(args: list[str]) -> None:
    one_red_line(asyncq(*args, "--redis-url", UNREACHABLE, url=None), 1, "unreachable", "127.0.0.1:1")


def test_redis_unreachable_through_env() -> None:
    one_red_line(asyncq("queues", url=UNREACHABLE), 1, "unreachable", "ASYNCQ_REDIS_URL")


def test_unknown_job(curl: str) -> None:
    one_red_line(asyncq("job", "no-such-job", url=curl), 1, "no job no-such-job", "check the id")
    one_red_line(asyncq("job", "no-such-job", "--wait", "1", url=curl), 1, "no-such-job")


# --- demo ---------------------------------------------------------------------------------------------------------
def test_demo_with_embedded_redis() -> None:
    started = time.monotonic()
    proc = asyncq("demo", url=None, timeout=60)  # ASYNCQ_REDIS_URL unset: the demo starts its own Redis
    elapsed = time.monotonic() - started
    out = ok(proc)
    assert "started a private Redis" in out
    for label in ("send_webhook", "resize_image", "flaky_charge"):
        assert label in out
    assert "charged on try 2" in out
    assert "asyncq.compat" in out
    assert out.strip().endswith("done")
    assert elapsed < 30


def test_demo_with_redis_url(curl: str) -> None:
    out = ok(asyncq("demo", url=curl, timeout=60))
    assert "using the Redis at ASYNCQ_REDIS_URL" in out and out.strip().endswith("done")
    stats = {q["queue"]: q for q in as_json(asyncq("queues", "--json", url=curl))["queues"]}
    assert stats["demo"]["length"] == 0 and stats["demo"]["dead_letters"] == 0


def test_demo_with_unreachable_redis_url() -> None:
    one_red_line(asyncq("demo", url=UNREACHABLE, timeout=60), 1, "unreachable")
