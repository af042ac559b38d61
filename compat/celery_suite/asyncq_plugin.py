"""pytest plugin of the runner's asyncq column: ``celery`` resolves to asyncq.compat before Celery's conftest
imports it. Uses ``asyncq.compat.install_as_celery()`` when asyncq has it (ASYNCQ_SUITE_ALIAS=standin forces the
runner's stand-in, compat/celery_suite/alias.py), and says which in the report header."""

from __future__ import annotations

import os

import pytest

import asyncq.compat
from compat.celery_suite import alias, shims

shims.install()
os.environ["ASYNCQ_TESTING_PRELOAD"] = "compat.celery_suite.alias_preload"
_real = getattr(asyncq.compat, "install_as_celery", None)
if _real is not None and os.environ.get("ASYNCQ_SUITE_ALIAS") != "standin":
    _real()
    alias.USED.update(alias.fill_gaps())
    WHICH = "asyncq.compat.install_as_celery()"
else:
    alias.install()
    os.environ["ASYNCQ_SUITE_ALIAS_STANDIN"] = "1"
    WHICH = "the runner's stand-in alias (compat/celery_suite/alias.py)"


def pytest_report_header(config: pytest.Config) -> str:
    return f"celery resolves to asyncq.compat through {WHICH}"


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get("ASYNCQ_SUITE_STANDINS")
    if path:
        with open(path, "w") as out:
            used = sorted(alias.USED) + sorted(set(shims.SHIMS))
            out.write(WHICH + "\n" + "\n".join(used) + "\n")
