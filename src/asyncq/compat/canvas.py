"""Celery's canvas: signatures, chains, groups and chords, on asyncq jobs.

How each runs:
- a signature is Celery's dict (``task, args, kwargs, options, subtask_type, immutable``);
- a chain pre-assigns every step's id, enqueues the first step and carries the rest in the job's headers; the
  worker enqueues the next step with the return value prepended (unless the step is immutable);
- a group enqueues all members in one round trip;
- a chord's header members record their results in Redis; the member that completes the set enqueues the
  body with the ordered list of results (exactly once, guarded by SETNX); a failed member makes the body fail
  with ``ChordError``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from asyncq.compat._state import CeleryApp, current_app
from asyncq.compat.exceptions import ImproperlyConfigured
from asyncq.compat.result import AsyncResult, GroupResult


def _app(app: CeleryApp | None) -> CeleryApp:
    return app or current_app()


class Signature(dict[str, Any]):
    """``task.s(*args, **kwargs)``: a task call that can be passed around, chained and grouped."""

    def __init__(
        self,
        task: Any = None,
        args: Iterable[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
        subtask_type: str | None = None,
        immutable: bool = False,
        app: CeleryApp | None = None,
        **extra: Any,
    ) -> None:
        if isinstance(task, dict):  # from its dict form
            super().__init__(task)
            self.setdefault("options", {})
        else:
            name = task if isinstance(task, str) else getattr(task, "name", None)
            if not name:
                raise ImproperlyConfigured(f"signature needs a task or a task name, got {task!r}")
            super().__init__(
                task=name, args=list(args or ()), kwargs=dict(kwargs or {}), options=dict(options or {}, **extra),
                subtask_type=subtask_type, immutable=immutable,
            )
        self._app = app

    # dict fields as attributes, as Celery has them
    task = property(lambda self: self["task"])
    args = property(lambda self: tuple(self["args"]))
    kwargs = property(lambda self: self["kwargs"])
    options = property(lambda self: self["options"])
    immutable = property(lambda self: bool(self.get("immutable")))
    id = property(lambda self: self["options"].get("task_id"))

    @property
    def app(self) -> CeleryApp:
        return _app(self._app)

    @property
    def type(self) -> Any:
        return self.app.tasks[self["task"]]

    def __repr__(self) -> str:
        args = ", ".join([*(repr(a) for a in self["args"]), *(f"{k}={v!r}" for k, v in self["kwargs"].items())])
        return f"{self['task']}({args}){'!' if self.immutable else ''}"

    def clone(self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None, **opts: Any) -> Signature:
        new_args = list(self["args"]) if self.immutable else [*(args or ()), *self["args"]]
        new_kwargs = dict(self["kwargs"]) if self.immutable else {**self["kwargs"], **(kwargs or {})}
        return Signature(self["task"], new_args, new_kwargs, {**self["options"], **opts},
                         self.get("subtask_type"), self.immutable, app=self._app)

    def set(self, immutable: bool | None = None, **options: Any) -> Signature:
        if immutable is not None:
            self["immutable"] = immutable
        self["options"].update(options)
        return self

    def freeze(self, _id: str | None = None) -> AsyncResult:
        task_id = self["options"].setdefault("task_id", _id or str(uuid.uuid4()))
        return AsyncResult(task_id, app=self.app, task_name=self["task"])

    def link(self, callback: Signature) -> Signature:
        self["options"].setdefault("link", []).append(dict(callback))
        return callback

    def link_error(self, errback: Signature) -> Signature:
        self["options"].setdefault("link_error", []).append(dict(errback))
        return errback

    def apply_async(self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None,
                    **options: Any) -> Any:
        """Send it; returns an AsyncResult (a GroupResult for a group)."""
        if self.app.conf.task_always_eager:
            return self.apply(args, kwargs)
        sig = self.clone(args, kwargs, **options)
        return self.app.send_task(sig["task"], sig["args"], sig["kwargs"], **sig["options"])

    async def aapply_async(self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None,
                           **options: Any) -> Any:
        sig = self.clone(args, kwargs, **options)
        return await self.app.asend_task(sig["task"], sig["args"], sig["kwargs"], **sig["options"])

    def delay(self, *args: Any, **kwargs: Any) -> Any:
        return self.apply_async(args, kwargs)

    def apply(self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None, **options: Any) -> Any:
        sig = self.clone(args, kwargs)
        return self.type.apply(sig["args"], sig["kwargs"], **{**sig["options"], **options})

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        sig = self.clone(args, kwargs)
        return self.type(*sig["args"], **sig["kwargs"])

    def __or__(self, other: Any) -> Any:
        if isinstance(other, group):
            return chain(self, other)
        if isinstance(other, chain):
            return chain(self, *other.tasks)
        if isinstance(other, Signature):
            return chain(self, other)
        return NotImplemented


def signature(varies: Any, *args: Any, **kwargs: Any) -> Signature:
    if isinstance(varies, Signature):
        return varies
    return Signature(varies, *args, **kwargs)


subtask = signature


def maybe_signature(d: Any, app: CeleryApp | None = None) -> Signature | None:
    if d is None:
        return None
    if isinstance(d, Signature):
        return d
    return Signature(dict(d), app=app)


class chain(Signature):
    """``chain(a.s(1), b.s(), c.s())`` or ``a.s(1) | b.s() | c.s()``: each result feeds the next step."""

    def __init__(self, *tasks: Any, app: CeleryApp | None = None, **options: Any) -> None:
        flat: list[Any] = []
        for t in tasks[0] if len(tasks) == 1 and not isinstance(tasks[0], dict) else tasks:
            flat.extend(t.tasks if isinstance(t, chain) else [t])
        self.tasks: list[Signature] = [t if isinstance(t, group) else Signature(t, app=app) if not isinstance(
            t, Signature) else t for t in flat]
        dict.__init__(self, task="celery.chain", args=[], kwargs={}, options=dict(options),
                      subtask_type="chain", immutable=False)
        self._app = app

    def __repr__(self) -> str:
        return " | ".join(repr(t) for t in self.tasks)

    def clone(self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None, **opts: Any) -> chain:
        """A copy whose first step gets ``args``/``kwargs`` (partial application, as in Celery)."""
        steps = [t.clone() for t in self.tasks]
        if steps and (args or kwargs):
            steps[0] = steps[0].clone(args, kwargs)
        return chain(*steps, app=self._app, **{**self["options"], **opts})

    def __or__(self, other: Any) -> Any:
        if isinstance(other, chain):
            return chain(*self.tasks, *other.tasks)
        if isinstance(other, Signature):
            return chain(*self.tasks, other)
        return NotImplemented

    def _steps(self) -> list[Signature]:
        """Plain signatures; a group followed by a step becomes a chord."""
        steps: list[Signature] = []
        i = 0
        while i < len(self.tasks):
            t = self.tasks[i]
            if isinstance(t, group):
                if i + 1 >= len(self.tasks):
                    raise ImproperlyConfigured("a chain ending in a group is not supported; add a final step "
                                               "(that makes it a chord) or apply the group on its own")
                if any(isinstance(m, chain | group | chord) for m in t.tasks):
                    raise ImproperlyConfigured(
                        "a group followed by a step is a chord, and a chord header of chains or groups is not "
                        "supported: its members must be task signatures"
                    )
                steps.append(chord(t, self.tasks[i + 1]))
                i += 2
            else:
                steps.append(t)
                i += 1
        return steps

    def apply_async(self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None,
                    **options: Any) -> Any:
        if self.app.conf.task_always_eager:
            return self.apply(args, kwargs)
        return self.app.bridge.run(self.aapply_async(args, kwargs, **options))

    def apply(self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None,
              **options: Any) -> Any:
        """Run every step here, in order (eager): each result feeds the next; stops at the first failure."""
        result: Any = None
        for i, step in enumerate(self._steps()):
            step_args = (args or ()) if i == 0 else (result.get(),)
            result = step.clone(step_args, kwargs if i == 0 else None).apply()
            if result.failed():
                break
        return result

    async def aapply_async(self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None,
                           **options: Any) -> AsyncResult:
        steps = [s.clone() for s in self._steps()]
        if not steps:
            raise ImproperlyConfigured("an empty chain has nothing to run")
        parent: AsyncResult | None = None
        for s in steps:  # pre-assign every id so the whole chain's results can be waited on now
            _last(s).freeze()
        for s in steps:
            sid = _last(s).id
            parent = AsyncResult(sid, app=self.app, task_name=s["task"], parent=parent)
        first, rest = steps[0], steps[1:]
        first_opts = {**options, "chain": [_as_dict(s) for s in rest]} if rest else dict(options)
        if isinstance(first, chord):
            await first.aapply_async(args, kwargs, chain=[_as_dict(s) for s in rest])
        else:
            await first.aapply_async(args, kwargs, **first_opts)
        assert parent is not None
        return parent

    def delay(self, *args: Any, **kwargs: Any) -> Any:
        return self.apply_async(args, kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """``chain(a.s(1), b.s())()`` sends the chain, as in Celery (args go to the first step)."""
        return self.apply_async(args, kwargs)


_CANVAS_NAMES = frozenset({"celery.chain", "celery.group", "celery.chord"})


def _last(s: Signature) -> Signature:
    """The signature whose result is the step's result (a chord's body)."""
    if isinstance(s, chord):
        if s.body is None:
            raise ImproperlyConfigured("a chord needs a body")
        return s.body
    return s


def _as_dict(s: Signature) -> dict[str, Any]:
    if isinstance(s, chord):
        return {"task": "celery.chord", "args": [], "kwargs": {}, "subtask_type": "chord", "immutable": False,
                "options": {}, "header": [dict(h) for h in s.header.tasks], "body": dict(_last(s))}
    return dict(s)


def from_dict(d: dict[str, Any], app: CeleryApp | None = None) -> Signature:
    if d.get("subtask_type") == "chord":
        return chord(group(*[Signature(dict(h), app=app) for h in d["header"]]), Signature(dict(d["body"]), app=app))
    return Signature(dict(d), app=app)


class group(Signature):
    """``group(a.s(i) for i in range(10))``: run in parallel; ``get()`` returns the results in order."""

    def __init__(self, *tasks: Any, app: CeleryApp | None = None, **options: Any) -> None:
        items = list(tasks[0]) if len(tasks) == 1 and not isinstance(tasks[0], dict) else list(tasks)
        self.tasks: list[Signature] = [t if isinstance(t, Signature) else Signature(t, app=app) for t in items]
        dict.__init__(self, task="celery.group", args=[], kwargs={}, options=dict(options),
                      subtask_type="group", immutable=False)
        self._app = app

    def __repr__(self) -> str:
        return f"group([{', '.join(repr(t) for t in self.tasks)}])"

    def clone(self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None, **opts: Any) -> group:
        return group(*[t.clone(args, kwargs) for t in self.tasks], app=self._app, **{**self["options"], **opts})

    def __or__(self, other: Any) -> Any:
        if isinstance(other, Signature) and not isinstance(other, group):
            return chord(self, other)
        return NotImplemented

    def apply_async(self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None,
                    **options: Any) -> GroupResult:
        if self.app.conf.task_always_eager:
            return self.apply(args, kwargs)
        return self.app.bridge.run(self.aapply_async(args, kwargs, **options))

    def apply(self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None,
              **options: Any) -> GroupResult:
        return GroupResult(str(uuid.uuid4()), [t.clone(args, kwargs).apply() for t in self.tasks], app=self.app)

    async def aapply_async(self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None,
                           **options: Any) -> GroupResult:
        gid = options.pop("group_id", None) or str(uuid.uuid4())
        results: list[Any] = [None] * len(self.tasks)
        plain: list[tuple[int, Signature]] = []
        for i, t in enumerate(self.tasks):
            if isinstance(t, chain | group | chord):  # a nested canvas runs as its own unit
                results[i] = await t.clone(args, kwargs).aapply_async(**options)
                continue
            m = t.clone(args, kwargs, **options, group_id=gid, group_index=i)
            m.freeze()
            plain.append((i, m))
        sent = await self.app.asend_many([m for _, m in plain])  # one round trip for the plain members
        for (i, _), res in zip(plain, sent, strict=True):
            results[i] = res
        return GroupResult(gid, results, app=self.app)

    def delay(self, *args: Any, **kwargs: Any) -> GroupResult:
        return self.apply_async(args, kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> GroupResult:
        return self.apply_async(args, kwargs)


class chord(Signature):
    """``chord(header_group, body)`` or ``group(...) | body``: the body gets the list of header results."""

    def __init__(self, header: Any, body: Any = None, app: CeleryApp | None = None, **options: Any) -> None:
        self.header = header if isinstance(header, group) else group(*header, app=app)
        self.body: Signature | None = maybe_signature(body, app) if body is not None else None
        dict.__init__(self, task="celery.chord", args=[], kwargs={}, options=dict(options),
                      subtask_type="chord", immutable=False)
        self._app = app

    def __repr__(self) -> str:
        return f"chord({self.header!r}, {self.body!r})"

    def clone(self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None, **opts: Any) -> chord:
        body = self.body.clone() if self.body is not None else None
        return chord(self.header.clone(args, kwargs), body, app=self._app, **{**self["options"], **opts})

    def __call__(self, body: Any = None, **options: Any) -> Any:
        if body is not None:
            self.body = maybe_signature(body, self._app)
        return self.apply_async(**options)

    def apply_async(self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None,
                    **options: Any) -> Any:
        if self.app.conf.task_always_eager:
            return self.apply(args, kwargs)
        return self.app.bridge.run(self.aapply_async(args, kwargs, **options))

    def apply(self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None,
              **options: Any) -> Any:
        header = self.header.apply(args, kwargs)
        return _last(self).clone(([r.get() for r in header.results],)).apply()

    async def aapply_async(self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None,
                           **options: Any) -> AsyncResult:
        if self.body is None:
            raise ImproperlyConfigured("a chord needs a body: chord(header)(body) or chord(header, body)")
        body_result = self.body.freeze()
        gid = str(uuid.uuid4())
        body = dict(self.body)
        if options.get("chain"):
            body["options"] = {**body["options"], "chain": options.pop("chain")}
        size = len(self.header.tasks)
        if size == 0:
            await self.body.aapply_async(([],))
            return body_result
        chord_meta = {"group_id": gid, "size": size, "body": body}
        members = []
        if any(isinstance(t, chain | group | chord) or t.get("task") in _CANVAS_NAMES for t in self.header.tasks):
            raise ImproperlyConfigured(
                "a chord header of chains or groups is not supported: its members must be task signatures "
                "(run the inner canvases first, or make each member one task)"
            )
        for i, t in enumerate(self.header.tasks):
            assert t is not None
            m = t.clone(args, kwargs, group_id=gid, group_index=i, chord=chord_meta)
            m.freeze()
            members.append(m)
        await self.app.asend_many(members)
        return body_result
