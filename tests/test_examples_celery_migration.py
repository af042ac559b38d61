"""examples/celery_migration, run as a user runs it (Redis db 6, like the other example tests): its demo starts a
stock Celery worker and asyncq workers, sends calls through the router (strategy A) and through an unchanged
Celery producer (strategy B), and checks itself (exit 1 with the workers' logs when a call ran on the wrong
runtime). Here: it exits 0, both runtimes ran calls, and it left nothing running and no route rules behind."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
import redis

from .conftest import flushed_url, run_process_group

pytest.importorskip("celery")
pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "celery_migration"


def test_demo_runs_both_runtimes_and_stops_them() -> None:
    url = flushed_url(6)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ASYNCQ_")}, "PYTHONUNBUFFERED": "1"}
    # in a process group of its own: if the demo overruns, its Celery and asyncq workers are killed with it
    out = run_process_group([sys.executable, "demo.py", "--redis-url", url], cwd=EXAMPLE, env=env, timeout=110)
    assert out.returncode == 0, f"--- stdout\n{out.stdout}\n--- stderr\n{out.stderr}"
    text = out.stdout
    # strategy A: each call runs where the router sent it
    assert re.search(r"billing\.charge\(42, 1999\)\s+sent to celery\s+ran on celery", text), text
    assert re.search(r"notifications\.send_push\(7, 'hello'\)\s+sent to asyncq\s+ran on asyncq", text), text
    assert "reports.render x40 at 25%" in text and "reports.render x10: {'asyncq': 10}" in text
    assert "$ asyncq migrate route show" in text and "billing.charge: celery  (rule: billing.*)" in text
    # strategy B: the unchanged producer; the moved task on asyncq, the unknown one left to Celery
    assert re.search(r"notifications\.send_push\(8, 'hi'\)\s+Celery queue notifications\s+ran on asyncq", text)
    assert re.search(r"billing\.charge\(43, 2500\)\s+Celery queue celery\s+ran on celery", text), text
    assert "--celery-queues celery,notifications" in text
    # both rollbacks: everything on Celery afterwards
    assert text.count("reports.render x10: {'celery': 10}") == 2, text
    assert "celery: exit 0, asyncq: exit 0, consumer: exit 0" in text
    client = redis.Redis.from_url(url)
    try:
        assert client.hlen("asyncq:router:rules") == 0  # the demo put the (empty) rules back
        assert client.llen("celery") == 0 and client.llen("notifications") == 0
    finally:
        client.close()
