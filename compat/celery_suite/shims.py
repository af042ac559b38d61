"""Runner shims for asyncq.compat gaps that would stop Celery's task module from importing at all (so no test
of the column could run). Each is listed in the report; each makes the import pass and nothing more: the tests
of the feature still fail. Imported by the asyncq column's test process and its worker process.

None is needed today: ``@shared_task(pydantic=True)``, the last one, is implemented by asyncq.compat
(``asyncq.compat.pydantic_args``). The hook stays so that a gap found in a newer Celery suite can be shimmed
(and reported) the same way.
"""

from __future__ import annotations

#: what the shims did in this process (for the report)
SHIMS: list[str] = []


def install() -> None:
    """Apply the shims (none today)."""
