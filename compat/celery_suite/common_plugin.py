"""pytest plugin of both runner columns: one per-test timeout for every test.

Celery's ``flaky`` decorator marks tests ``timeout(300)``; with canvas tests that hang on asyncq today, 300 s
each would make a full run take hours. The runner replaces every ``timeout`` mark with
``$CELERY_SUITE_TIMEOUT`` seconds (pytest-timeout's signal method, so a hung ``get()`` fails the test and the
run goes on), on the test function only (fixtures bound their own waits). Celery's test files are not changed.
"""

from __future__ import annotations

import json
import os

import pytest

TIMEOUT = float(os.environ.get("CELERY_SUITE_TIMEOUT", "30"))


def pytest_configure(config: pytest.Config) -> None:
    for marker in ("flaky(reruns, reruns_delay, cause): Celery's rerun marker (no reruns here)",
                   "timeout(timeout): per-test timeout", "amqp: RabbitMQ only"):
        config.addinivalue_line("markers", marker)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.own_markers[:] = [m for m in item.own_markers if m.name != "timeout"]
        # func_only: the timer covers the test function, not pytest's report afterwards (a timeout firing while
        # pytest parses a huge test file to format a failure was an INTERNALERROR that ended the whole run)
        item.add_marker(pytest.mark.timeout(TIMEOUT, method="signal", func_only=True))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """One JSON line per finished test in ``$CELERY_SUITE_RESULTS`` (the report of a run stopped halfway)."""
    path = os.environ.get("CELERY_SUITE_RESULTS")
    if not path or not (report.when == "call" or report.outcome != "passed"):
        return
    if report.when == "teardown" and report.outcome == "passed":
        return
    message = ""
    if report.outcome != "passed":
        text = str(report.longrepr or "")
        lines = [ln for ln in text.splitlines() if ln.startswith("E ")] or text.splitlines()[-1:]
        message = lines[0][1:].strip()[:200] if lines and lines[0].startswith("E ") else (lines or [""])[0][:200]
    with open(path, "a") as out:
        out.write(json.dumps({"id": report.nodeid.removeprefix("t/integration/"), "when": report.when,
                              "outcome": report.outcome, "message": message,
                              "seconds": round(report.duration, 2)}) + "\n")
