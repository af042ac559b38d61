"""Tasks for tests/test_compat_app_surface.py's real-worker test of ``worker_deduplicate_successful_tasks``
(a test worker process imports this module to serve them)."""

from __future__ import annotations

from typing import Any

from asyncq.compat import shared_task, states
from asyncq.compat.exceptions import Reject


@shared_task(bind=True, acks_late=True, name="dedup_app.store_then_reject")
def store_then_reject(self: Any) -> str:
    """First delivery: record SUCCESS, then ask to be delivered again; the second delivery is deduplicated."""
    if not self.request.delivery_info.get("redelivered"):
        self.backend.store_result(self.request.id, "first-pass", states.SUCCESS)
        raise Reject(requeue=True)
    return "ran-again"


@shared_task(name="dedup_app.identity")
def identity(x: Any) -> Any:
    return x
