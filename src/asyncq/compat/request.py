"""``self.request``: Celery's per-execution context, one per running job (a ContextVar, not thread-local state,
because one asyncq worker runs thousands of jobs of the same task at once)."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any


class Context:
    """Celery's ``Task.request`` fields; unknown attributes read as None, as in Celery."""

    id: str | None = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}
    retries: int = 0
    is_eager: bool = False
    eta: str | None = None
    expires: str | None = None
    group: str | None = None
    group_index: int | None = None
    root_id: str | None = None
    parent_id: str | None = None
    hostname: str | None = None
    delivery_info: dict[str, Any] = {}
    headers: dict[str, Any] = {}
    callbacks: list[Any] | None = None
    errbacks: list[Any] | None = None
    chain: list[Any] | None = None
    chord: Any = None
    timelimit: tuple[float | None, float | None] = (None, None)
    ignore_result: bool = False
    shadow: str | None = None
    called_directly: bool = True
    origin: str | None = None
    reply_to: str | None = None
    correlation_id: str | None = None
    #: the message properties Celery keeps (``app_id``, ``correlation_id``, ``priority`` ...), as sent
    properties: dict[str, Any] = {}
    #: Celery's stamping (stamping.py): the names of the stamps, and their values
    stamped_headers: list[str] | None = None
    stamps: dict[str, Any] | None = None
    #: how many ``replace()`` calls led to this task (0: none)
    replaced_task_nesting: int = 0
    #: set by ``Task.replace``: the id whose result stands for this task's (REPLACED_MARK)
    replaced_by: str | None = None

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)
        if "correlation_id" not in fields:
            self.correlation_id = self.id

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return None

    @property
    def time_limit(self) -> float | None:
        return self.timelimit[0]

    @property
    def soft_time_limit(self) -> float | None:
        return self.timelimit[1]

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __repr__(self) -> str:
        return f"<Context: {self.as_dict()!r}>"


DIRECT = Context()

#: the result of a replaced job: ``{REPLACED_MARK: id}`` names the task whose outcome is the replaced task's
#: (``Task.replace``); AsyncResult follows it
REPLACED_MARK = "__celery_replaced__"

current_request: ContextVar[Context | None] = ContextVar("asyncq_celery_request", default=None)
