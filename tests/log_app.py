"""An App for tests/test_worker_logs.py, run as a real worker process (``asyncq worker tests.log_app:app``)."""

from __future__ import annotations

import asyncq

app = asyncq.App()


@app.task(name="logs.add")
async def add(x: int, y: int) -> int:
    return x + y


@app.task(name="logs.flaky", max_tries=2, retry={"base": 0.01, "jitter": False})
async def flaky(blob: str) -> str:
    if asyncq.current_job().job_try == 1:
        raise ValueError("first try fails")
    return blob[:3]


@app.task(name="logs.boom", max_tries=1)
def boom() -> None:
    raise RuntimeError("boom for the log")
