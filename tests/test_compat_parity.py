"""The Celery parity suite (compat/) as part of the test command: every scenario must pass under real Celery 5.6
and under asyncq.compat, each with a real worker process, against the test run's Redis (database 8). The report
goes to build/test-output/compat-REPORT.md; the tracked compat/REPORT.md is regenerated only by an explicit
`python compat/run.py` (see CONTRIBUTING.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "build" / "test-output" / "compat-REPORT.md"

pytestmark = pytest.mark.slow


@pytest.mark.timeout(600)
def test_parity_suite_passes_on_celery_and_asyncq() -> None:
    pytest.importorskip("celery")
    try:
        proc = subprocess.run([sys.executable, "compat/run.py", "--report", str(REPORT)], cwd=ROOT,
                              capture_output=True, text=True, timeout=580)
    except subprocess.TimeoutExpired as exc:  # show how far it got: which runtime, which scenarios were slow
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        pytest.fail(f"compat/run.py did not finish in 580 s; its output so far:\n{out[-6000:]}")
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    report = REPORT.read_text()
    assert "FAIL" not in report and "Passed: Celery" in report
