"""The Celery layer's one piece of global state, and the app type its lower modules are written against.

Celery code relies on a *current app* (``current_app``, ``@shared_task``), so asyncq.compat keeps one, here and
nowhere else (Celery keeps the same globals in ``celery/_state.py``). Lower modules (canvas, result, task,
publish, control, sending, receiving, runtime) take a ``CeleryApp``, the small Protocol below, and never import
``compat/app.py``: only the package's face (``asyncq.compat``) and ``app.py`` itself know the ``Celery`` class.
``app.py`` registers the factory of the default app when it is imported (always, through the package).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from asyncq.app import App
from asyncq.compat.bridge import LoopThread
from asyncq.compat.config import Settings
from asyncq.compat.ratelimit import RateLimiter
from asyncq.compat.request import current_request


class Revoker(Protocol):
    """``app.control`` as the lower modules use it."""

    def revoke(self, task_id: str | Iterable[str], destination: Any = None, terminate: bool = False,
               signal: Any = None, **kwargs: Any) -> None: ...

    async def arevoke(self, ids: list[str], *, terminate: bool = False) -> None: ...

    async def ais_revoked(self, task_id: str) -> bool: ...

    def revoke_by_stamped_headers(self, headers: dict[str, Any], destination: Any = None, terminate: bool = False,
                                  signal: Any = None, reply: bool = False, **kwargs: Any
                                  ) -> list[dict[str, Any]] | None: ...


class CeleryApp(Protocol):
    """What compat's modules need of a Celery app (``asyncq.compat.Celery`` is the one implementation).

    Results, tasks and signatures are ``Any`` here: their classes live in modules that import this one."""

    @property
    def main(self) -> str | None: ...

    @property
    def conf(self) -> Settings: ...

    @property
    def tasks(self) -> dict[str, Any]: ...

    @property
    def bridge(self) -> LoopThread: ...

    @property
    def control(self) -> Revoker: ...

    @property
    def origin(self) -> str: ...

    #: run before and after every ``def`` task in its worker thread (the Django fixup's connection check)
    thread_fixups: list[Callable[[], None]]

    #: side by side with Celery: True, or the Router built from it on first use (``sending.router_of``)
    asyncq_router: Any

    @property
    def asyncq_app(self) -> App: ...

    def send_task(self, name: str, args: Any = None, kwargs: Any = None, countdown: float | None = None,
                  eta: Any = None, task_id: str | None = None, **options: Any) -> Any: ...

    async def asend_task(self, name: str, args: Any = None, kwargs: Any = None, countdown: float | None = None,
                         eta: Any = None, task_id: str | None = None, **options: Any) -> Any: ...

    async def asend_many(self, sigs: Sequence[Any]) -> list[Any]: ...

    def state_key(self, task_id: str) -> str: ...

    def store_state(self, task_id: str, state: str, meta: Any) -> None: ...

    async def save_group(self, group_id: str, ids: list[str]) -> None: ...

    async def load_group(self, group_id: str) -> list[str] | None: ...

    def rate_limiter(self, task: Any) -> RateLimiter: ...


_current: CeleryApp | None = None
_default_factory: Callable[[], CeleryApp] | None = None
#: ``@shared_task`` functions and their options: every app created later registers them too
shared_tasks: list[tuple[Callable[..., Any], dict[str, Any]]] = []


def set_current_app(app: CeleryApp) -> None:
    global _current
    _current = app


def set_default_app_factory(factory: Callable[[], CeleryApp]) -> None:
    global _default_factory
    _default_factory = factory


def get_current_app() -> CeleryApp:
    """The most recently created app (Celery's default app), created on demand."""
    if _current is None:
        if _default_factory is None:  # pragma: no cover - asyncq.compat always imports app.py first
            raise RuntimeError("asyncq.compat.app was not imported; import asyncq.compat")
        set_current_app(_default_factory())
    assert _current is not None
    return _current


class _CurrentApp:
    """Celery's ``current_app`` proxy: ``current_app.conf``, ``@current_app.task`` reach the current app;
    calling it (``current_app()``) returns the app itself."""

    def __call__(self) -> CeleryApp:
        return get_current_app()

    def __getattr__(self, name: str) -> Any:
        return getattr(get_current_app(), name)

    def __repr__(self) -> str:
        return f"<current_app: {get_current_app()!r}>"


current_app = _CurrentApp()


def get_current_task() -> Any:
    """The task running in this context (a worker job or an eager ``apply()``), or None."""
    request = current_request.get()
    name = getattr(request, "task", None)
    return get_current_app().tasks.get(name) if request is not None and name else None


class _CurrentTask:
    """Celery's ``current_task`` proxy: the running task (``current_task.request.id``); false outside a task."""

    def __bool__(self) -> bool:
        return get_current_task() is not None

    def __getattr__(self, name: str) -> Any:
        task = get_current_task()
        if task is None:
            raise AttributeError(f"current_task: no task is running here (its {name!r} is not available)")
        return getattr(task, name)

    def __repr__(self) -> str:
        return f"<current_task: {get_current_task()!r}>"


current_task = _CurrentTask()
