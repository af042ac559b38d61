"""Celery's canvas: signatures, chains, groups and chords, on asyncq jobs.

Every canvas is Celery's dict (``task, args, kwargs, options, subtask_type, immutable``; a chain keeps its steps
in ``kwargs["tasks"]``, a group its members there, a chord ``kwargs["header"]`` and ``kwargs["body"]``), so any
canvas travels inside a job's headers and comes back whole with ``from_dict``.

How one runs (``plan`` turns a canvas into the plain task calls to send now, in one round trip):

- ``freeze()`` gives every task its id first, so the result of the whole canvas (the last step of a chain, the
  members of a group, the body of a chord) can be returned before anything runs;
- a chain sends its first step and carries the rest (as dicts) in that job's headers; the worker sends the next
  step with the return value prepended (unless the step is immutable); a group followed by a step in a chain
  becomes a chord, as in Celery;
- a group sends its members (nested groups unrolled into it, as Celery does); a member may be a chain or a chord;
- a chord is a group whose members report to a *join* (``store.chord_part_done``): the member that completes the
  set sends what follows (the body, then the rest of an enclosing chain) with the ordered list of results, exactly
  once. The same join serves a group that is followed by something (a chord header holding a group, a group
  inside a chain in a chord header): where the group's results go is recorded in the join, not in the group.
- what a task's result flows into when it is done (the rest of a chain, a chord's join) is its *continuation*;
  a failure follows the same path as ``chord_error``: the body of a chord whose header failed fails with
  ``ChordError`` (its errbacks run), and the later steps of a failed chain fail too, so nothing waits forever.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from asyncq.compat import store
from asyncq.compat._state import CeleryApp, current_app
from asyncq.compat.exceptions import ImproperlyConfigured
from asyncq.compat.publish import new_task_id
from asyncq.compat.result import AsyncResult, GroupResult
from asyncq.compat.stamping import Stampable
from asyncq.compat.stamping import StampingVisitor as StampingVisitor  # celery.canvas.StampingVisitor

#: options that say where a task's result flows; a canvas's own (a group's join) is kept in them too
CHORD, INDEX = "chord", "group_index"


def _app(app: CeleryApp | None) -> CeleryApp:
    return app or current_app()


class Signature(Stampable, dict[str, Any]):  # stamp()/stamp_links(): stamping.py (H5)
    """``task.s(*args, **kwargs)``: a task call that can be passed around, chained and grouped."""

    def as_signature(self, value: Any) -> Any:
        """A link kept in this signature's options (dict or signature) as a signature of the same app
        (``Stampable.as_signature``: stamping sits below this module)."""
        return maybe_signature(value, app=self._app)

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
            self.setdefault("args", [])
            self.setdefault("kwargs", {})
            self["options"] = dict(self.get("options") or {})
        else:
            name = task if isinstance(task, str) else getattr(task, "name", None)
            if not name:
                raise ImproperlyConfigured(f"signature needs a task or a task name, got {task!r}")
            super().__init__(
                task=name, args=list(args or ()), kwargs=dict(kwargs or {}), options=dict(options or {}, **extra),
                subtask_type=subtask_type, immutable=immutable,
            )
        self._app = app

    # dict fields as attributes, as Celery has them (settable, as Celery's are)
    @property
    def task(self) -> Any:
        return self["task"]

    @property
    def name(self) -> Any:
        """The task's name (Celery's ``sig.name``)."""
        return self["task"]

    @property
    def args(self) -> tuple[Any, ...]:
        return tuple(self["args"])

    @args.setter
    def args(self, value: Iterable[Any]) -> None:
        self["args"] = list(value)

    @property
    def kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = self["kwargs"]
        return kw

    @kwargs.setter
    def kwargs(self, value: dict[str, Any]) -> None:
        self["kwargs"] = dict(value)

    @property
    def options(self) -> dict[str, Any]:
        opts: dict[str, Any] = self["options"]
        return opts

    @options.setter
    def options(self, value: dict[str, Any]) -> None:
        self["options"] = dict(value)

    @property
    def immutable(self) -> bool:
        return bool(self.get("immutable"))

    @immutable.setter
    def immutable(self, value: bool) -> None:
        self["immutable"] = bool(value)

    @property
    def subtask_type(self) -> str | None:
        return self.get("subtask_type")

    @property
    def id(self) -> str | None:
        task_id: str | None = self["options"].get("task_id")
        return task_id

    @property
    def app(self) -> CeleryApp:
        return _app(self._app)

    @property
    def type(self) -> Any:
        return self.app.tasks[self["task"]]

    def __repr__(self) -> str:
        args = ", ".join([*(repr(a) for a in self["args"]), *(f"{k}={v!r}" for k, v in self["kwargs"].items())])
        return f"{self['task']}({args}){'!' if self.immutable else ''}"

    @classmethod
    def from_dict(cls, d: dict[str, Any], app: CeleryApp | None = None) -> Signature:
        """``Signature.from_dict(d)``: the canvas of a dict form, as Celery's (a chain dict makes a chain...)."""
        return from_dict(d, app)

    def __deepcopy__(self, memo: dict[int, Any]) -> Signature:
        return from_dict(copy.deepcopy(dict(self), memo), self._app)

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

    def freeze(self, _id: str | None = None, group_id: str | None = None, **_: Any) -> Any:
        """Give the task its id now (kept when it is sent); returns its result."""
        opts = self["options"]
        if not opts.get("task_id"):  # the id prepare() keeps (on Redis Cluster it names the job's shard)
            opts["task_id"] = new_task_id(self.app, self["task"], self["args"], self["kwargs"], opts, _id)
        task_id: str = opts["task_id"]
        if group_id is not None:
            self["options"].setdefault("group_id", group_id)
        return AsyncResult(task_id, app=self.app, task_name=self["task"])

    def link(self, callback: Any) -> Any:
        return self._append_option("link", callback)

    def link_error(self, errback: Any) -> Any:
        return self._append_option("link_error", errback)

    def _append_option(self, key: str, value: Any) -> Any:
        """Add to a list option once: linking an equal signature again is a no-op, as in Celery (a body shared
        by several chords would otherwise call its errback once per chord it was linked through)."""
        items = self["options"].get(key)
        if not isinstance(items, list):
            items = self["options"][key] = [] if items is None else [items]
        if value not in items:
            items.append(value)
        return value

    def on_error(self, errback: Any) -> Signature:
        """``link_error`` that returns this signature (to chain calls: ``sig.on_error(eb).delay()``)."""
        self.link_error(errback)
        return self

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
        if isinstance(other, Signature):
            return chain(self, other, app=self._app)
        return NotImplemented

    def __ror__(self, other: Any) -> Any:
        return NotImplemented


class _Canvas(Signature):
    """What chains, groups and chords share: sent through ``plan`` on the app's loop."""

    @property
    def app(self) -> CeleryApp:
        """The app given, else its first task's (``task.s()`` carries the task's app, as in Celery), else the
        current app."""
        if self._app is not None:
            return self._app
        kw = self["kwargs"]
        for t in [*(kw.get("tasks") or ()), *([kw["header"]] if kw.get("header") is not None else []),
                  *([kw["body"]] if kw.get("body") is not None else [])]:
            if isinstance(t, Signature) and (t._app is not None or isinstance(t, _Canvas)):
                return t.app
        return current_app()

    def apply_async(self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None,
                    **options: Any) -> Any:
        if self.app.conf.task_always_eager:
            return self.apply(args, kwargs)
        return self.app.bridge.run(self.aapply_async(args, kwargs, **options))

    async def aapply_async(self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None,
                           **options: Any) -> Any:
        """Freeze a copy (ids already given by ``freeze()`` are kept), send what runs first, return its result."""
        sig = self.clone()
        frozen = set(task_ids(sig))  # ids given before this send: a canvas sent again runs again, as in Celery
        task_id = options.pop("task_id", None)
        sig["options"].update(options)
        result = sig.freeze(task_id, _stream=True)  # a chord sent here may send a generated header as generated
        await store.forget_finished(sig.app, [i for i in task_ids(sig) if i in frozen])
        await send(sig.app, sig, tuple(args or ()), dict(kwargs or {}))
        if isinstance(result, GroupResult) and len(result) == 1 and isinstance(result[0], GroupResult):
            return result[0]  # group(a | group(b, c)): Celery returns the inner group's result
        return result

    def delay(self, *args: Any, **kwargs: Any) -> Any:
        return self.apply_async(args, kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """``chain(a.s(1), b.s())()`` sends the canvas, as in Celery (args go to what runs first)."""
        return self.apply_async(args, kwargs)


def signature(varies: Any, *args: Any, **kwargs: Any) -> Signature:
    if isinstance(varies, Signature):
        return varies
    if isinstance(varies, dict):
        return from_dict(varies, kwargs.get("app"))
    return Signature(varies, *args, **kwargs)


subtask = signature


def maybe_signature(d: Any, app: CeleryApp | None = None, clone: bool = False) -> Any:
    if d is None:
        return None
    if isinstance(d, Signature):
        return d.clone() if clone else d
    if isinstance(d, list | tuple):
        return [maybe_signature(s, app) for s in d]
    return from_dict(dict(d), app)


def from_dict(d: dict[str, Any], app: CeleryApp | None = None) -> Signature:
    """A canvas from its dict form (as it travels in a job's headers), nested canvases included."""
    if isinstance(d, Signature) and type(d) is not Signature:
        return d
    kind = d.get("subtask_type")
    kw = d.get("kwargs") or {}
    opts = dict(d.get("options") or {})
    if kind == "chain":
        c = chain(*[from_dict(t, app) for t in kw.get("tasks", ())], app=app, **opts)
        return c
    if kind == "group":
        return group(*[from_dict(t, app) for t in kw.get("tasks", ())], app=app, **opts)
    if kind == "chord":
        return chord(from_dict(kw["header"], app) if isinstance(kw.get("header"), dict) else
                     [from_dict(t, app) for t in kw.get("header", ())],
                     from_dict(kw["body"], app) if kw.get("body") is not None else None, app=app, **opts)
    if kind is None and d.get("task") in ("celery.chain", "celery.group", "celery.chord"):
        raise ImproperlyConfigured(f"{d.get('task')} signature without its subtask_type: {d!r}")
    return Signature(dict(d), app=app) if not isinstance(d, Signature) else d


class chain(_Canvas):
    """``chain(a.s(1), b.s(), c.s())`` or ``a.s(1) | b.s() | c.s()``: each result feeds the next step."""

    def __init__(self, *tasks: Any, app: CeleryApp | None = None, **options: Any) -> None:
        items = tasks[0] if len(tasks) == 1 and not isinstance(tasks[0], dict) else tasks
        flat: list[Signature] = []
        for t in items:
            s = t if isinstance(t, Signature) else from_dict(dict(t), app)
            if isinstance(s, chain) and not s.options.get("task_id"):
                flat.extend(s._unwrapped())  # a chain in a chain is flattened; its links move to its steps
            else:
                flat.append(s)
        dict.__init__(self, task="celery.chain", args=[], kwargs={"tasks": flat}, options=dict(options),
                      subtask_type="chain", immutable=False)
        self._app = app

    @property
    def tasks(self) -> list[Signature]:
        steps: list[Signature] = self["kwargs"]["tasks"]
        return steps

    @tasks.setter
    def tasks(self, value: Iterable[Signature]) -> None:
        self["kwargs"]["tasks"] = list(value)

    def _unwrapped(self) -> list[Signature]:
        """The steps, with this chain's own links moved onto them (Celery: link on the last, errbacks on all)."""
        steps = [t.clone() for t in self.tasks]
        if steps:
            for cb in self.options.get("link") or ():
                steps[-1].link(cb)
            for eb in self.options.get("link_error") or ():
                for s in steps:
                    s.link_error(eb)
        return steps

    def __repr__(self) -> str:
        return " | ".join(repr(t) for t in self.tasks)

    def clone(self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None, **opts: Any) -> chain:
        """A copy whose first step gets ``args``/``kwargs`` (partial application, as in Celery)."""
        steps = [t.clone() for t in self.tasks]
        if steps and (args or kwargs):
            steps[0] = steps[0].clone(args, kwargs)
        new = chain(app=self._app, **{**self["options"], **opts})
        new.tasks = steps
        return new

    def __or__(self, other: Any) -> Any:
        if isinstance(other, chain) and not other.options:
            return chain(*self._unwrapped(), *other.tasks, app=self._app)
        if isinstance(other, Signature):
            return chain(*self._unwrapped(), other, app=self._app)
        return NotImplemented

    def steps(self) -> list[Signature]:
        """The steps as they run: a group followed by a step is a chord whose body is that step (from the end,
        so ``g1 | g2 | t`` is ``chord(g1, chord(g2, t))``), and the chain's own links sit on its steps."""
        linked = self.options.get("link") or self.options.get("link_error")
        return _upgrade(self._unwrapped() if linked else self.tasks, self._app)

    def freeze(self, _id: str | None = None, group_id: str | None = None, **_: Any) -> Any:
        if _id is not None:  # the chain's id is its last task's (``c.freeze(last.id)``; ``c.id`` reads it)
            self["options"]["task_id"] = _id
        steps = _upgrade(self.tasks, self._app)  # the steps themselves (copies made later keep their ids)
        if not steps:
            raise ImproperlyConfigured("an empty chain has nothing to run")
        result: Any = None
        for i, s in enumerate(steps):
            r = s.freeze(_id if i == len(steps) - 1 else None)
            if result is not None:
                _link_parent(r, result)
            result = r
        return result

    def apply(self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None,
              **options: Any) -> Any:
        """Run every step here, in order (eager): each result feeds the next; stops at the first failure."""
        result: Any = None
        for i, step in enumerate(self.steps()):
            step_args = tuple(args or ()) if i == 0 else (result.get(),)
            result = step.clone(step_args, kwargs if i == 0 else None).apply()
            if result.failed():
                break
        return result


class group(_Canvas):
    """``group(a.s(i) for i in range(10))``: run in parallel; ``get()`` returns the results in order."""

    def __init__(self, *tasks: Any, app: CeleryApp | None = None, **options: Any) -> None:
        if len(tasks) == 1 and isinstance(tasks[0], dict) and not isinstance(tasks[0], Signature) \
                and tasks[0].get("subtask_type") == "group":
            tasks = tuple(from_dict(tasks[0], app)["kwargs"]["tasks"])
        #: a generator of members, consumed only as they are sent (a chord header: Celery sends each member as
        #: it is generated, so the first ones may run before the generator is done)
        self._lazy: Iterator[Any] | None = None
        #: the result ``freeze()`` gave while the members were still to be generated: filled as they are sent
        self._pending: GroupResult | None = None
        members: list[Signature] = []
        if len(tasks) == 1 and isinstance(tasks[0], Iterator):
            self._lazy = tasks[0]
        else:
            items = list(tasks[0]) if len(tasks) == 1 and not isinstance(tasks[0], dict) else list(tasks)
            members = [_sig(t, app) for t in items]
        dict.__init__(self, task="celery.group", args=[], kwargs={"tasks": members}, options=dict(options),
                      subtask_type="group", immutable=False)
        self._app = app

    @property
    def tasks(self) -> list[Signature]:
        if self._lazy is not None:  # asked for the list: generate it all now
            lazy, self._lazy = self._lazy, None
            self["kwargs"]["tasks"] = [_sig(t, self._app) for t in lazy]
        members: list[Signature] = self["kwargs"]["tasks"]
        return members

    @tasks.setter
    def tasks(self, value: Iterable[Signature]) -> None:
        self["kwargs"]["tasks"] = list(value)

    def generated(self) -> Iterator[Signature]:
        """The members as they are generated (all of them, once); a group made from a list yields its list."""
        if self._lazy is None:
            yield from self.tasks
            return
        lazy, self._lazy = self._lazy, None
        for t in lazy:
            s = _sig(t, self._app)
            self["kwargs"]["tasks"].append(s)
            yield s

    def __repr__(self) -> str:
        return f"group([{', '.join(repr(t) for t in self.tasks)}])"

    def __len__(self) -> int:
        return len(self.tasks)

    def __mul__(self, n: int) -> group:
        return group(*[t.clone() for _ in range(n) for t in self.tasks], app=self._app)

    def clone(self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None, **opts: Any) -> group:
        new = group(app=self._app, **{**self["options"], **opts})
        if self._lazy is not None:  # the copy takes the generator over, still unconsumed
            lazy, self._lazy = self._lazy, None
            new._lazy = (t.clone(args, kwargs) for t in (_sig(x, self._app) for x in lazy))
            return new
        new.tasks = [t.clone(args, kwargs) for t in self.tasks]
        return new

    def __or__(self, other: Any) -> Any:
        if isinstance(other, Signature) and _plain(other):
            return chord(self, other, app=self._app)
        if isinstance(other, Signature):
            return chain(self, other, app=self._app)
        return NotImplemented

    def link(self, callback: Any) -> Any:
        """As in Celery: the callback is linked (immutable) to the first member only."""
        if not self.tasks:
            return callback
        return self.tasks[0].link(_sig(callback, self._app).clone().set(immutable=True))

    def link_error(self, errback: Any) -> Any:
        """As in Celery: every member gets (a copy of) the errback, so it may run once per failed member, each
        time with that member's id (Celery asks for ``clone(immutable=True)``, which only sets an option)."""
        eb = _sig(errback, self._app)
        return tuple(t.link_error(eb.clone()) for t in self.tasks)

    def units(self) -> list[Signature]:
        """The members as they run: nested groups unrolled into this one (Celery does the same)."""
        out: list[Signature] = []
        for t in self.tasks:
            out.extend(t.units() if isinstance(t, group) else [t])
        return out

    def freeze(self, _id: str | None = None, group_id: str | None = None, _lazy: bool = False,
               **_: Any) -> GroupResult:
        """The group's result, every member with its id. ``_lazy`` (a chord header about to be streamed by the
        chord's sender): a generated group stays ungenerated and its result fills as the members are sent;
        anywhere else the generator is consumed now (the result must hold every member; a group carried in a
        job's headers must carry its members)."""
        gid = self["options"].setdefault("group_id", _id or group_id or str(uuid.uuid4()))
        if self._lazy is not None and _lazy:  # members still to be generated: their results join as they are sent
            if self._pending is None:
                self._pending = GroupResult(gid, [], app=self.app)
            return self._pending
        return GroupResult(gid, [u.freeze(group_id=gid) for u in self.units()], app=self.app)

    @property
    def id(self) -> str | None:
        gid: str | None = self["options"].get("group_id")
        return gid

    def apply(self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None,
              **options: Any) -> GroupResult:
        return GroupResult(str(uuid.uuid4()), [t.clone(args, kwargs).apply() for t in self.units()], app=self.app)


class chord(_Canvas):
    """``chord(header_group, body)`` or ``group(...) | body``: the body gets the list of header results."""

    def __init__(self, header: Any = None, body: Any = None, app: CeleryApp | None = None, **options: Any) -> None:
        if isinstance(header, group):
            head = header
        elif isinstance(header, Signature | Iterator):  # a generator stays one, sent as it is generated
            head = group(header, app=app)
        else:
            head = group(*(header or ()), app=app)
        dict.__init__(self, task="celery.chord", args=[], kwargs={"header": head, "body": _sig(body, app),
                                                                   "kwargs": {}},
                      options=dict(options), subtask_type="chord", immutable=False)
        self._app = app

    @property
    def header(self) -> group:
        head: group = self["kwargs"]["header"]
        return head

    @property
    def tasks(self) -> list[Signature]:
        return self.header.tasks

    @property
    def body(self) -> Any:
        return self["kwargs"]["body"]

    @body.setter
    def body(self, value: Any) -> None:
        self["kwargs"]["body"] = _sig(value, self._app)

    def __repr__(self) -> str:
        return f"chord({self.header!r}, {self.body!r})"

    def clone(self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None, **opts: Any) -> chord:
        body = self.body.clone() if self.body is not None else None
        return chord(self.header.clone(args, kwargs), body, app=self._app, **{**self["options"], **opts})

    def __call__(self, body: Any = None, **options: Any) -> Any:
        if body is not None:
            self.body = body
        return self.apply_async(**options)

    def link(self, callback: Any) -> Any:
        return self._body().link(callback)

    def link_error(self, errback: Any) -> Any:
        if self.app.conf.get("task_allow_error_cb_on_chord_header"):
            eb = _sig(errback, self._app)
            for t in self.header.tasks:
                t.link_error(eb.clone())
        return self._body().link_error(errback)

    def _body(self) -> Signature:
        if self.body is None:
            raise ImproperlyConfigured("a chord needs a body: chord(header)(body) or chord(header, body)")
        body: Signature = self.body
        return body

    def freeze(self, _id: str | None = None, group_id: str | None = None, _stream: bool = False,
               **_: Any) -> Any:
        header = self.header.freeze(group_id=self["options"].get("group_id"), _lazy=_stream)
        result = self._body().freeze(_id)
        _link_parent(result, header)  # as in Celery: the body's result has the header's as parent
        return result

    @property
    def id(self) -> str | None:
        return self.body.id if self.body is not None else None

    def apply(self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None,
              **options: Any) -> Any:
        header = self.header.apply(args, kwargs)  # (a generated header is generated in full here)
        return self._body().clone(([r.get() for r in header.results],)).apply()


def task_ids(sig: Signature) -> list[str]:
    """The ids already given to the tasks of a canvas (its chain steps, group and chord members, bodies)."""
    if isinstance(sig, chain):
        return [i for t in sig.tasks for i in task_ids(t)]
    if isinstance(sig, group):
        return [] if sig._lazy is not None else [i for t in sig.tasks for i in task_ids(t)]
    if isinstance(sig, chord):
        return [*task_ids(sig.header), *(task_ids(sig.body) if sig.body is not None else [])]
    return [sig.id] if sig.id else []


def _link_parent(result: Any, parent: Any) -> None:
    """Make ``parent`` the parent of the oldest result in ``result``'s parent chain (a chain's step results, a
    chord's body result after its header's), unless that chain has ``parent`` already."""
    oldest = result
    while getattr(oldest, "parent", None) is not None:
        if oldest is parent:
            return
        oldest = oldest.parent
    if oldest is not parent:
        oldest.parent = parent


def _upgrade(tasks: list[Signature], app: CeleryApp | None) -> list[Signature]:
    out: list[Signature] = []
    for t in reversed(tasks):
        if isinstance(t, group) and len(t.tasks) == 1:  # a group of one task is that task (as in Celery)
            t = t.tasks[0]
        if isinstance(t, group) and out:
            out[-1] = chord(t, out[-1], app=app)
        else:
            out.append(t)
    return out[::-1]


def _sig(s: Any, app: CeleryApp | None) -> Any:
    if s is None or isinstance(s, Signature):
        return s
    if not isinstance(s, dict) and callable(getattr(s, "s", None)):  # a task where a signature goes: task.s()
        return s.s()
    return from_dict(dict(s), app)


# --- running a canvas: what to send now, and what each task's result flows into ---------------------------------
def with_continuation(sig: Signature, meta: dict[str, Any], index: int) -> Signature:
    """A copy of ``sig`` whose result is part ``index`` of the join ``meta`` (it goes to the tail: a chain's
    last step, a chord's body; a group keeps it and makes its own join report there)."""
    if isinstance(sig, chain):
        new = sig.clone()
        steps = new.steps()
        steps[-1] = with_continuation(steps[-1], meta, index)
        new.tasks, new["options"] = steps, {k: v for k, v in new.options.items() if k not in ("link", "link_error")}
        return new
    if isinstance(sig, chord):
        new_chord = sig.clone()
        new_chord.body = with_continuation(new_chord._body(), meta, index)
        return new_chord
    return sig.clone(chord=meta, group_index=index)


async def send(app: CeleryApp, sig: Signature, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None,
               chain_rest: list[dict[str, Any]] | None = None, failure: str | None = None,
               error: dict[str, Any] | None = None) -> None:
    """Send what runs first of a frozen canvas (one round trip), with what follows it carried along."""
    out: list[Signature] = []
    await plan(app, sig, args, kwargs or {}, out, chain_rest or [], failure, error)
    if out:
        await app.asend_many(out)


async def plan(app: CeleryApp, sig: Signature, args: tuple[Any, ...], kwargs: dict[str, Any],
               out: list[Signature], chain_rest: list[dict[str, Any]], failure: str | None = None,
               error: dict[str, Any] | None = None) -> None:
    """Add to ``out`` the plain task calls that start ``sig`` (partial ``args``/``kwargs`` applied), each carrying
    its continuation: ``chain_rest`` (what follows ``sig`` in a chain) and the join in its options.

    ``failure``: do not run, fail with ``ChordError(failure)`` (a chord header failed: the errbacks run);
    ``error`` too: an earlier step of the chain failed with that exception (``codec.encode_error``): fail with
    it again, without calling the errbacks (they ran where the failure happened), as Celery marks every later
    step of a failed chain with the same exception."""
    if isinstance(sig, chain):
        steps = sig.steps()
        if not steps:
            raise ImproperlyConfigured("an empty chain has nothing to run")
        for s in steps:
            s.freeze()
        rest = [dict(s) for s in steps[1:]] + chain_rest
        await plan(app, steps[0], args, kwargs, out, rest, failure, error)
    elif isinstance(sig, chord):
        body = sig._body()
        body.freeze()
        if sig.header._lazy is not None and failure is None:
            await _stream_header(app, sig.header, args, kwargs, [dict(body), *chain_rest])
            return
        sig.header.freeze(group_id=sig.options.get("group_id"))
        await plan(app, sig.header, args, kwargs, out, [dict(body), *chain_rest], failure, error)
    elif isinstance(sig, group):
        await _plan_group(app, sig, args, kwargs, out, chain_rest, failure, error)
    else:
        opts: dict[str, Any] = {}
        if chain_rest:
            opts["chain"] = [*(sig.options.get("chain") or ()), *chain_rest]
        if failure is not None and error is None:
            opts["chord_error"] = failure
        elif failure is not None:
            opts["chain_error"] = {"message": failure, "error": error}
        s = sig.clone(args, kwargs, **opts)
        s.freeze()
        out.append(s)


async def _plan_group(app: CeleryApp, sig: group, args: tuple[Any, ...], kwargs: dict[str, Any],
                      out: list[Signature], chain_rest: list[dict[str, Any]], failure: str | None,
                      error: dict[str, Any] | None) -> None:
    gid = sig.freeze().id
    units = sig.units()
    parent = sig.options.get(CHORD)
    if not chain_rest and parent is None:  # the results go nowhere: the members run on their own
        for i, u in enumerate(units):
            member = u.clone(group_id=gid, group_index=i) if _plain(u) else u
            await plan(app, member, args, kwargs, out, [], failure, error)
        return
    join: dict[str, Any] = {"group_id": gid, "size": len(units), "chain": chain_rest}
    if parent is not None:
        join["parent"], join["index"] = parent, int(sig.options.get(INDEX) or 0)
    if not units:
        await joined(app, join, [])
        return
    for i, u in enumerate(units):
        await plan(app, with_continuation(u, join, i), args, kwargs, out, [], failure, error)


async def _stream_header(app: CeleryApp, header: group, args: tuple[Any, ...], kwargs: dict[str, Any],
                         chain_rest: list[dict[str, Any]]) -> None:
    """A chord header given as a generator: each member is sent as soon as it is generated (its size is
    unknown to the join until the generator is done; then the join learns it and may complete right away)."""
    gid = str(header.freeze(_lazy=True).id)
    pending = header._pending
    join: dict[str, Any] = {"group_id": gid, "size": None, "chain": chain_rest}
    n = 0
    for member in header.generated():
        for u in member.units() if isinstance(member, group) else [member]:
            r = u.freeze(group_id=gid)
            if pending is not None:
                pending.results.append(r)
            out: list[Signature] = []
            await plan(app, with_continuation(u, join, n), args, kwargs, out, [])
            await app.asend_many(out)
            n += 1
    serializer = app.asyncq_app.serializer
    parts = await store.chord_set_size(app, gid, n)
    if parts is not None:
        await joined(app, {**join, "size": n}, [serializer.loads(p) for p in parts])


def _plain(s: Signature) -> bool:
    return not isinstance(s, chain | group | chord)


async def joined(app: CeleryApp, join: dict[str, Any], results: list[Any]) -> None:
    """A join is complete: send what follows with the results, or report them to the enclosing join."""
    rest = _after(join)
    if rest:
        await send(app, from_dict(rest[0], app), (results,), chain_rest=rest[1:])
    elif join.get("parent") is not None:
        await part_done(app, join["parent"], int(join.get("index") or 0), results)


def _after(join: dict[str, Any]) -> list[dict[str, Any]]:
    """What a join sends when complete (a chord from a Celery producer names only its ``body``)."""
    if join.get("chain"):
        return list(join["chain"])
    return [join["body"]] if join.get("body") else []


async def part_done(app: CeleryApp, join: dict[str, Any], index: int, value: Any) -> None:
    """Record one result of a join; the one that completes the set sends what follows, exactly once."""
    serializer = app.asyncq_app.serializer
    size = None if join.get("size") is None else int(join["size"])  # None: a generated header, size not known yet
    parts = await store.chord_part_done(app, join["group_id"], index, serializer.dumps(value), size)
    if parts is not None:
        await joined(app, join, [serializer.loads(p) for p in parts])


async def join_add_member(app: CeleryApp, join: dict[str, Any]) -> int:
    """``Task.add_to_chord``: the join now waits for one more member; returns that member's index (after the
    original members, in the order they were added). Send the member with ``chord=join`` and this index."""
    if join.get("size") is None:
        raise ImproperlyConfigured("add_to_chord() inside a chord whose header is a generator is not supported: "
                                   "give the chord a list of header members")
    return int(join["size"]) + await store.chord_grow(app, join["group_id"]) - 1


async def part_failed(app: CeleryApp, join: dict[str, Any], message: str) -> None:
    """A member of a join failed: what follows fails with ``ChordError`` (its errbacks run), exactly once."""
    if not await store.chord_fire(app, join["group_id"]):
        return
    rest = _after(join)
    if rest:
        await send(app, from_dict(rest[0], app), chain_rest=rest[1:], failure=message)
    elif join.get("parent") is not None:
        await part_failed(app, join["parent"], message)


async def propagate_failure(app: CeleryApp, chain_rest: list[dict[str, Any]], join: dict[str, Any] | None,
                            message: str, error: dict[str, Any]) -> None:
    """A task failed with ``error``: the rest of its chain fails with it too (quietly: its errbacks ran
    already), else its join fails (``message`` is the ``ChordError`` its body gets)."""
    if chain_rest:
        await send(app, from_dict(chain_rest[0], app), chain_rest=chain_rest[1:], failure=message, error=error)
    elif join is not None:
        await part_failed(app, join, message)
