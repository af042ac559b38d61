"""Runner shims for asyncq.compat gaps that would stop Celery's task module from importing at all (so no test
of the column could run). Each is listed in the report; each makes the import pass and nothing more: the tests
of the feature still fail. Imported by the asyncq column's test process and its worker process.

- ``@shared_task(pydantic=True)``: asyncq.compat raises ImproperlyConfigured when the app registers the task.
  The shim drops the option (the task then receives the plain dict, so Celery's pydantic tests fail).
"""

from __future__ import annotations

from typing import Any

from asyncq.compat.app import Celery

SHIMS: list[str] = []
_original = Celery._create_task


def _create_task(self: Celery, fun: Any, opts: dict[str, Any]) -> Any:
    if opts.pop("pydantic", None):
        SHIMS.append(f"pydantic=True dropped for {fun.__module__}.{fun.__name__}")
    return _original(self, fun, opts)


def install() -> None:
    """Apply the shims (once)."""
    if Celery._create_task is not _create_task:
        Celery._create_task = _create_task  # type: ignore[method-assign]
