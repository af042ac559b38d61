"""examples/plain_asyncio, run as a user runs it (Redis db 6): with a worker inside, and with `asyncq worker`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .conftest import flushed_url

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "plain_asyncio"


def env(url: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("ASYNCQ_")}, "ASYNCQ_REDIS_URL": url,
            "PYTHONUNBUFFERED": "1"}


def test_plain_asyncio_with_its_own_worker() -> None:
    out = subprocess.run([sys.executable, "main.py"], cwd=EXAMPLE, env=env(flushed_url(6)), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "counted 50 sentences, 550 words" in out.stdout and "shout: ASYNCQ" in out.stdout
    assert "complete after 1 try" in out.stdout


def test_plain_asyncio_with_a_separate_worker_process() -> None:
    e = env(flushed_url(6))
    worker = subprocess.Popen([sys.executable, "-m", "asyncq", "worker", "main:app"], cwd=EXAMPLE, env=e,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        out = subprocess.run([sys.executable, "main.py", "--no-worker"], cwd=EXAMPLE, env=e, capture_output=True,
                             text=True, timeout=60)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert out.returncode == 0, out.stderr
    assert "counted 50 sentences" in out.stdout and "shout: ASYNCQ" in out.stdout
