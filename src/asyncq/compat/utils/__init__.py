"""Mirror of ``celery.utils``: the helpers Celery projects import (``celery.utils.log.get_task_logger``)."""

from __future__ import annotations

import uuid as _uuid


def uuid() -> str:
    """``celery.utils.uuid()``: a new random task id."""
    return str(_uuid.uuid4())


gen_unique_id = uuid

__all__ = ["gen_unique_id", "uuid"]
