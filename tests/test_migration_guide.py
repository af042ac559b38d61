"""The migration guide's code runs: every fenced ``python`` block in migration_guide/*.md whose first line is a
``# test:`` marker is executed here, against the test run's Redis (database 9, flushed before each block).

Markers (first line of the block):
- ``# test: file=proj/tasks.py``: the block is written to that path in the page's project folder (not run);
- ``# test: runnable``: the block is run as a script, with the page's project folder as working directory;
- ``# test: runnable worker=proj.celery:app [--queues a,b]``: the same, while a real
  ``python -m asyncq worker proj.celery:app ...`` runs in that folder (stopped with SIGTERM afterwards);
- ``# test: runnable python=arq ...``: the block runs with arq 0.28 installed (the ``asyncq[arq]`` venv of
  ``tests/venvs.py``: arq pins redis-py < 6, so it is not in the project's environment); the worker does not.

Blocks use ``redis://127.0.0.1:6379/<db>`` as a reader would; here every such URL is replaced by the test database's,
so a block never reaches a Redis on 127.0.0.1:6379.
Blocks without a marker are illustrative (Celery's "before" code, Django settings, ...).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from .conftest import redis_url
from .venvs import ARQ028, ensure, venv_env

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "migration_guide"
URL = redis_url(9)
READER_URL = re.compile(r"redis://(?:127\.0\.0\.1|localhost):6379/\d+")
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
MARKER = re.compile(r"^# test: (runnable|file=(\S+))(?: python=(arq))?(?: worker=(.+))?$")


def collect() -> list[tuple[str, str, list[tuple[str, str]], str | None, str | None]]:
    """(test id, code, files written before it, worker command, python) for every runnable block."""
    out = []
    for page in sorted(GUIDE.glob("*.md")):
        files: list[tuple[str, str]] = []
        n = 0
        for match in BLOCK.finditer(page.read_text(encoding="utf-8")):
            code = match.group(1)
            first, _, body = code.partition("\n")
            marker = MARKER.match(first.strip())
            if marker is None:
                continue
            body = READER_URL.sub(lambda _: URL, body)
            if marker.group(2):
                files.append((marker.group(2), body))
                continue
            n += 1
            out.append((f"{page.stem}#{n}", body, list(files), marker.group(4), marker.group(3)))
    return out


BLOCKS = collect()


def test_every_page_is_linked_from_the_index() -> None:
    index = (GUIDE / "README.md").read_text(encoding="utf-8")
    pages = sorted(p.name for p in GUIDE.glob("*.md") if p.name != "README.md")
    assert len(pages) == 19
    missing = [p for p in pages if f"({p})" not in index]
    assert not missing, f"pages not linked from migration_guide/README.md: {missing}"


def test_there_are_runnable_blocks() -> None:
    assert len(BLOCKS) >= 10


@pytest.mark.parametrize(("code", "files", "worker", "python"), [b[1:] for b in BLOCKS], ids=[b[0] for b in BLOCKS])
def test_block_runs(code: str, files: list[tuple[str, str]], worker: str | None, python: str | None,
                    tmp_path: Path) -> None:
    client = redis.Redis.from_url(URL)
    client.flushdb()
    client.close()
    for rel, text in files:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        for parent in path.relative_to(tmp_path).parents:
            init = tmp_path / parent / "__init__.py"
            if parent != Path(".") and not init.exists():
                init.write_text("")
    script = tmp_path / "snippet.py"
    script.write_text(code, encoding="utf-8")
    env = {**os.environ, "ASYNCQ_REDIS_URL": URL, "PYTHONPATH": str(tmp_path)}
    proc = None
    if worker:
        log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            [sys.executable, "-m", "asyncq", "worker", *shlex.split(worker), "--log-level", "warning"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    interpreter, snippet_env = sys.executable, env
    if python == "arq":
        interpreter = str(ensure(ARQ028).python)
        snippet_env = venv_env([tmp_path], ASYNCQ_REDIS_URL=URL)
    try:
        run = subprocess.run(
            [interpreter, str(script)], cwd=tmp_path, env=snippet_env, capture_output=True, text=True, timeout=40
        )
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            log.close()
    worker_log = (tmp_path / "worker.log").read_text() if worker else ""
    assert run.returncode == 0, (
        f"block failed:\n{code}\n--- stdout\n{run.stdout}\n--- stderr\n{run.stderr}\n--- worker\n{worker_log}"
    )
