"""Celery 5.6.3's own integration suite (t/integration, unchanged) on asyncq.compat, as part of the test command.

Runs the ratchet subset (compat/celery_suite/ratchet.txt: the Celery tests that pass on asyncq today) through
``python -m compat.celery_suite --subset``: Celery's test files with ``celery`` resolving to asyncq.compat,
asyncq's Celery pytest fixtures, and a real ``asyncq worker`` process on database 13 of this run's Redis. Every
listed test must pass, so a regression fails here; a test that starts passing is added to the list. Skips when
the celery sdist is neither cached (~/.cache/asyncq) nor downloadable. The whole suite, both columns (real
Celery beside asyncq), is ``python -m compat.celery_suite --full`` (compat/celery_suite/README.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from compat.celery_suite.applicability import RUN_FILES
from compat.celery_suite.run import SdistUnavailable, read_ratchet, suite_root

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "build" / "test-output" / "celery-suite-subset-REPORT.md"

pytestmark = pytest.mark.slow


def test_ratchet_list_names_tests_of_the_run_files() -> None:
    ratchet = read_ratchet()
    assert len(ratchet) >= 20, "compat/celery_suite/ratchet.txt lost its tests"
    assert all(line.split("::")[0] in RUN_FILES for line in ratchet), ratchet


@pytest.mark.timeout(900)
def test_celery_integration_subset_passes_on_asyncq() -> None:
    try:
        suite_root()
    except SdistUnavailable as exc:
        pytest.skip(f"Celery's integration suite needs the celery 5.6.3 sdist: {exc}")
    try:
        proc = subprocess.run([sys.executable, "-m", "compat.celery_suite", "--subset", "--report", str(REPORT)],
                              cwd=ROOT, capture_output=True, text=True, timeout=880)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        pytest.fail(f"the Celery suite subset did not finish in 880 s; its output so far:\n{out[-5000:]}")
    if proc.returncode == 3:
        pytest.skip(proc.stdout.strip()[-500:])
    failed = [line for line in proc.stdout.splitlines() if line.startswith("RATCHET FAILED")]
    log = ROOT / "build" / "test-output" / "celery-suite-asyncq.log"
    assert proc.returncode == 0, ("\n".join(failed) or proc.stdout[-3000:]) + f"\n(pytest log: {log})\n" \
        + proc.stderr[-2000:]
