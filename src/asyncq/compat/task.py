"""Celery's ``Task`` class: what ``@app.task`` returns and what ``base=`` subclasses extend.

Calling works as in Celery (``delay``, ``apply_async``, ``apply``, ``s``/``si``, ``retry``, ``update_state``,
``self.request``), plus ``adelay`` / ``aapply_async`` for async code, which never block the event loop.
``async def`` task bodies are allowed: the reason to move.
"""

from __future__ import annotations

import functools
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

from asyncq.compat import canvas, stamping, states
from asyncq.compat._state import CeleryApp, current_app
from asyncq.compat.canvas import Signature, chain, chord, from_dict, group
from asyncq.compat.eager import run_eagerly
from asyncq.compat.exceptions import Ignore, ImproperlyConfigured, MaxRetriesExceededError, Retry
from asyncq.compat.request import DIRECT, Context, current_request
from asyncq.compat.result import AsyncResult, EagerResult
from asyncq.compat.retry import ExceptionInfo as ExceptionInfo
from asyncq.compat.retry import backoff as backoff
from asyncq.compat.transactions import on_sqlalchemy_commit


class Task:
    """A Celery-style task. Class attributes are the options; ``run`` is the body."""

    name: str = ""
    _app: CeleryApp | None = None
    bind: bool = False
    typing: bool = True
    max_retries: int | None = 3
    #: None: the app's ``task_default_retry_delay`` (180 s unless configured)
    default_retry_delay: float | None = None
    autoretry_for: tuple[type[BaseException], ...] = ()
    dont_autoretry_for: tuple[type[BaseException], ...] = ()
    retry_kwargs: dict[str, Any] = {}
    retry_backoff: bool | float = False
    retry_backoff_max: float = 600
    retry_jitter: bool = True
    acks_late: bool | None = None
    ignore_result: bool | None = None
    track_started: bool | None = None
    time_limit: float | None = None
    soft_time_limit: float | None = None
    rate_limit: str | None = None
    queue: str | None = None
    priority: int | None = None
    serializer: str | None = None
    expires: Any = None
    reject_on_worker_lost: bool | None = None
    throws: tuple[type[BaseException], ...] = ()
    #: Celery's base classes mark themselves abstract; nothing reads it here
    abstract: bool = False
    #: Celery's per-task exception attribute (``except self.MaxRetriesExceededError:``)
    MaxRetriesExceededError = MaxRetriesExceededError

    def run(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("Tasks must define the run method.")

    # --- identity -----------------------------------------------------------------------------------------
    @property
    def app(self) -> CeleryApp:
        return self._app or current_app()

    def __repr__(self) -> str:
        return f"<@task: {self.name} of {self.app.main or '__main__'}>"

    @property
    def request(self) -> Context:
        return current_request.get() or DIRECT

    @property
    def backend(self) -> Any:
        """Celery's ``task.backend``: the app's result backend (``app.backend``: ``store_result``, ``get_task_meta``
        ...)."""
        return getattr(self.app, "backend")  # noqa: B009 - the CeleryApp protocol does not declare it

    # --- calling ------------------------------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """A direct call runs the body here, like calling the function (``request.called_directly``)."""
        return self.run(*args, **kwargs)

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        return self.apply_async(args, kwargs)

    async def adelay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        return await self.aapply_async(args, kwargs)

    def apply_async(self, args: Any = None, kwargs: Any = None, task_id: str | None = None,
                    producer: Any = None, link: Any = None, link_error: Any = None, shadow: str | None = None,
                    **options: Any) -> AsyncResult:
        opts = _options(task_id, link, link_error, shadow, options)
        if self.app.conf.task_always_eager:
            return self.apply(args, kwargs, task_id=task_id, link=link, link_error=link_error)
        result: AsyncResult = self.app.send_task(self.name, args, kwargs, **opts)
        return result

    async def aapply_async(self, args: Any = None, kwargs: Any = None, task_id: str | None = None,
                           producer: Any = None, link: Any = None, link_error: Any = None,
                           shadow: str | None = None, **options: Any) -> AsyncResult:
        opts = _options(task_id, link, link_error, shadow, options)
        if self.app.conf.task_always_eager:
            return self.apply(args, kwargs, task_id=task_id, link=link, link_error=link_error)
        result: AsyncResult = await self.app.asend_task(self.name, args, kwargs, **opts)
        return result

    def apply(self, args: Any = None, kwargs: Any = None, task_id: str | None = None, link: Any = None,
              link_error: Any = None, throw: bool | None = None, **options: Any) -> EagerResult:
        """Run the task here and now (eager), returning an EagerResult; ``throw`` re-raises its exception."""
        return run_eagerly(self, tuple(args or ()), dict(kwargs or {}), task_id or str(uuid.uuid4()),
                           link=link, link_error=link_error,
                           throw=self.app.conf.task_eager_propagates if throw is None else throw)

    def delay_on_commit(self, *args: Any, **kwargs: Any) -> None:
        """Send after the current Django transaction commits (dropped on rollback); returns None, as Celery."""
        from django.db import transaction

        transaction.on_commit(functools.partial(self.delay, *args, **kwargs))

    def apply_async_on_commit(self, args: Any = None, kwargs: Any = None, *, session: Any = None,
                              **options: Any) -> None:
        """Send after commit: the Django transaction, or with ``session=`` a SQLAlchemy session's."""
        send = functools.partial(self.apply_async, args, kwargs, **options)
        if session is None:
            from django.db import transaction

            transaction.on_commit(send)
            return
        on_sqlalchemy_commit(session, send)

    # --- signatures ---------------------------------------------------------------------------------------
    def signature(self, args: Any = None, kwargs: Any = None, *starargs: Any, **options: Any) -> Signature:
        return Signature(self.name, args, kwargs, options, app=self._app)

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        return Signature(self.name, args, kwargs, app=self._app)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        return Signature(self.name, args, kwargs, immutable=True, app=self._app)

    subtask = signature

    def map(self, it: Any) -> Signature:
        return Signature("celery.map", (self.name, list(it)), app=self._app)

    def starmap(self, it: Any) -> Signature:
        return Signature("celery.starmap", (self.name, [list(a) for a in it]), app=self._app)

    def chunks(self, it: Any, n: int) -> group:
        items = [list(a) for a in it]
        parts = [items[i : i + n] for i in range(0, len(items), n)]
        return group(*[Signature("celery.starmap", (self.name, part), app=self._app) for part in parts],
                     app=self._app)

    # --- inside a running task ----------------------------------------------------------------------------
    def retry(self, args: Any = None, kwargs: Any = None, exc: BaseException | None = None, throw: bool = True,
              eta: datetime | None = None, countdown: float | None = None, max_retries: Any = ...,
              **options: Any) -> Retry:
        """Ask for another try: raises ``Retry`` (returns it with ``throw=False``), or, past ``max_retries``,
        raises ``exc`` or ``MaxRetriesExceededError``."""
        request = self.request
        if request.called_directly:
            current = sys.exc_info()[1]
            raise exc or current or Retry("Task can be retried", None)
        if args is not None or kwargs is not None:
            raise NotImplementedError("retry(args=..., kwargs=...) is not supported: the retried job keeps its "
                                      "arguments; enqueue a new call instead")
        limit = self.max_retries if max_retries is ... else max_retries
        if limit is not None and request.retries + 1 > limit:
            if exc is not None:
                raise exc
            raise MaxRetriesExceededError(
                f"Can't retry {self.name}[{request.id}] args:{request.args} kwargs:{request.kwargs}",
                task_args=request.args, task_kwargs=request.kwargs,
            )
        if eta is not None:
            when: float = max(0.0, (eta if eta.tzinfo else eta.replace(tzinfo=UTC)).timestamp()
                              - datetime.now(UTC).timestamp())
        else:
            default = self.default_retry_delay
            if default is None:
                default = self.app.conf.task_default_retry_delay or 0
            when = float(default if countdown is None else countdown)
        signal = Retry(exc=exc, when=when)
        signal.limit = limit
        if request.is_eager:
            raise signal
        if throw:
            raise signal
        return signal

    def replace(self, sig: Signature) -> Any:
        """End this task and let ``sig`` (a task, chain, group or chord) stand in for it, as Celery does.

        What belongs to this task moves to the replacement: its callbacks (onto the replacement's final task),
        its errbacks (onto each step), the rest of the chain it is a step of (appended, each step keeping its
        id), and its chord or group membership (the final task reports to the chord in this task's place). A
        group is made a chord with ``celery.accumulate``, so the result is the group's list.

        asyncq cannot enqueue a second job under the running job's id, so the replacement's final task gets
        its own id and this job ends with a mark naming it (``REPLACED_MARK``): ``AsyncResult(this id)`` follows
        the mark and reads the replacement's state, value or exception. Raises ``Ignore`` in a worker (use
        ``return self.replace(...)`` or ``raise self.replace(...)``); eagerly, returns the replacement's result.
        """
        if "chord" in sig.options:
            raise ImproperlyConfigured("A signature replacing a task must not be part of a chord")
        if isinstance(sig, chain) and not sig.tasks:
            raise ImproperlyConfigured("Cannot replace with an empty chain")
        request = self.request
        replacement, final_id = _replacement(self, sig, request)
        if not request.called_directly and not request.is_eager:
            request.replaced_by = final_id  # runtime ends this job with REPLACED_MARK -> final_id
        return self.on_replace(replacement)

    def on_replace(self, sig: Signature) -> Any:
        """Apply the replacement; a base class may override it (to stamp ``sig``, say) and call super()."""
        if self.request.is_eager:
            return sig.apply().get()
        sig.apply_async()
        raise Ignore("Replaced by new task")

    def add_to_chord(self, sig: Signature, lazy: bool = False) -> Any:
        """Add ``sig`` (a task or a canvas) to the chord this task is a header member of: the body then waits for
        it too and gets its result after the original members' (Celery's Redis-backend feature). Returns its
        result (``sig.delay()``), or with ``lazy=True`` the signature, for you to send."""
        request = self.request
        join = request.chord
        if not join:
            raise ValueError("Current task is not member of any chord")
        index = self.app.bridge.run(canvas.join_add_member(self.app, join))
        member = canvas.with_continuation(sig, join, index)
        lineage: dict[str, Any] = {"root_id": request.root_id} if request.root_id else {}
        for t in _tasks_in(member):  # sent from the bridge loop, where this task's request is not current
            t.set(parent_id=request.id, **lineage)
        return member if lazy else member.delay()

    def update_state(self, task_id: str | None = None, state: str | None = None, meta: Any = None,
                     **kwargs: Any) -> None:
        """Store a custom state (e.g. PROGRESS with ``meta``) that ``AsyncResult.state/.info`` show."""
        tid = task_id or self.request.id
        if tid is None:
            return
        self.app.store_state(tid, state or states.PENDING, meta)

    # --- hooks for custom bases (no-ops) ------------------------------------------------------------------
    def before_start(self, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None: ...

    def on_success(self, retval: Any, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None: ...

    def on_failure(self, exc: BaseException, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                   einfo: Any) -> None: ...

    def on_retry(self, exc: BaseException, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                 einfo: Any) -> None: ...

    def after_return(self, status: str, retval: Any, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                     einfo: Any) -> None: ...

    def AsyncResult(self, task_id: str, **kwargs: Any) -> AsyncResult:
        return AsyncResult(task_id, app=self.app, task_name=self.name, **kwargs)


def _options(task_id: str | None, link: Any, link_error: Any, shadow: str | None,
             options: dict[str, Any]) -> dict[str, Any]:
    opts = dict(options)
    for key, value in (("task_id", task_id), ("link", link), ("link_error", link_error), ("shadow", shadow)):
        if value is not None:
            opts[key] = value
    return opts


def _final(sig: Signature) -> Signature:
    """The task whose result is the canvas's result: the last step of a chain, a chord's body."""
    while True:
        if isinstance(sig, chain) and sig.tasks:
            sig = sig.tasks[-1]
        elif isinstance(sig, chord) and sig.body is not None:
            sig = sig.body
        else:
            return sig


def _tasks_in(sig: Signature) -> list[Signature]:
    """The task signatures of a canvas: chain steps, group members, a chord's header and body."""
    if isinstance(sig, chain | group):
        return [t for s in sig.tasks for t in _tasks_in(s)]
    if isinstance(sig, chord):
        return [t for s in sig.header.tasks for t in _tasks_in(s)] + ([] if sig.body is None else _tasks_in(sig.body))
    return [sig]


def _append(sig: Signature, key: str, items: list[Any]) -> None:
    """Add links without touching a list another signature may share (clone() copies options shallowly)."""
    if items:
        sig["options"][key] = [*(sig["options"].get(key) or []), *items]


def _replacement(task: Task, sig: Signature, request: Context) -> tuple[Signature, str]:
    """``sig`` with the replaced task's callbacks, errbacks, chain rest and chord membership (Task.replace), and
    the id of its final task (whose result becomes the replaced task's)."""
    app = task.app
    nesting = int(request.replaced_task_nesting or 0) + 1
    steps: list[Signature] = [t.clone() for t in sig.tasks] if isinstance(sig, chain) else [sig.clone()]
    callbacks = [*(request.callbacks or ()), *(sig.options.get("link") or ())] if isinstance(sig, chain) \
        else list(request.callbacks or ())
    errbacks = [*(request.errbacks or ()), *(sig.options.get("link_error") or ())] if isinstance(sig, chain) \
        else list(request.errbacks or ())
    if isinstance(steps[-1], group):  # the group's list is the result (one member too): Celery's group | accumulate
        steps[-1] = chord(steps[-1], Signature("celery.accumulate", kwargs={"index": 0}, app=app), app=app)
    final = _final(steps[-1])
    _append(final, "link", [dict(c) for c in callbacks])
    for step in steps:
        _append(_final(step), "link_error", [dict(e) for e in errbacks])
    membership = {"chord": request.chord, "group_id": request.group, "group_index": request.group_index}
    final.set(**{k: v for k, v in membership.items() if v is not None})
    final_id = final.freeze().id
    # the replacement is sent from the bridge's loop, where this task's request is not current: say whose
    # children its tasks are (Celery: the same root, and the replaced task as the parent of what runs first)
    lineage: dict[str, Any] = {"root_id": request.root_id} if request.root_id else {}
    for i, step in enumerate(steps):
        for t in _tasks_in(step):
            first = i == 0 and not (isinstance(step, chord) and t is _final(step))
            parent: dict[str, Any] = {"parent_id": request.id} if first and not request.called_directly else {}
            t.set(replaced_task_nesting=nesting, **lineage, **parent)
    for rest in request.chain or ():  # the chain this task is a step of goes on after the replacement
        steps.append(from_dict(dict(rest), app))
        for t in _tasks_in(steps[-1]):
            t.set(replaced_task_nesting=nesting)
    replacement = steps[0] if len(steps) == 1 else chain(*steps, app=app)
    carried = stamping.options_of(request)  # the replaced task's stamps go on to its replacement
    return (stamping.stamp(replacement, None, **carried) if carried else replacement), final_id
