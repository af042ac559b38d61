"""``@app.task(pydantic=True)``: arguments annotated with a pydantic model are validated from plain data, and a
returned model is dumped to plain data.

Why: a task's arguments and result cross Redis as JSON, so a model cannot travel as itself; with this option the
producer sends ``{"x": 1, "y": 2}`` and the body receives ``Model(x=1, y=2)``, as with Celery's option of the same
name (``pydantic_strict``, ``pydantic_context`` and ``pydantic_dump_kwargs`` too). pydantic is an optional
dependency: asking for the option without it installed is an error that says what to install.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import types
import typing
from collections.abc import Callable
from typing import Any

from asyncq.compat.exceptions import ImproperlyConfigured

#: the task options this module reads (removed from the options before the task class is built)
OPTIONS = ("pydantic", "pydantic_strict", "pydantic_context", "pydantic_dump_kwargs")


def _model_class(annotation: Any, base: type) -> type | None:
    """The model class ``annotation`` names: ``Model``, or ``Model | None`` / ``Optional[Model]``."""
    if isinstance(annotation, type):
        return annotation if issubclass(annotation, base) else None
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return _model_class(members[0], base)
    return None


class _Hints:
    """The function's annotations, resolved on first use: string annotations (``from __future__ import
    annotations``, or quoted names) may name classes defined after the task in its module."""

    def __init__(self, fun: Callable[..., Any]) -> None:
        self.fun = fun
        self.signature = inspect.signature(fun)
        self._resolved: dict[str, Any] | None = None

    def get(self) -> dict[str, Any]:
        if self._resolved is None:
            try:
                self._resolved = typing.get_type_hints(self.fun)
            except (NameError, AttributeError, TypeError):
                # an annotation that cannot be resolved: use the raw ones (a string then matches no model)
                raw = {n: p.annotation for n, p in self.signature.parameters.items()}
                self._resolved = {**raw, "return": self.signature.return_annotation}
        return self._resolved


def wrap(fun: Callable[..., Any], task_name: str, opts: dict[str, Any], app: Any) -> Callable[..., Any]:
    """``fun`` with its model arguments validated and its model result dumped; pops this module's ``OPTIONS``
    from ``opts``. Returns ``fun`` itself when ``pydantic`` is not set."""
    enabled = opts.pop("pydantic", False)
    strict = bool(opts.pop("pydantic_strict", False))
    context = dict(opts.pop("pydantic_context", None) or {})
    dump_kwargs = {"mode": "json", **(opts.pop("pydantic_dump_kwargs", None) or {})}
    if not enabled:
        return fun
    try:
        pydantic = importlib.import_module("pydantic")
    except ModuleNotFoundError as exc:
        raise ImproperlyConfigured(
            f"@task(pydantic=True) ({task_name}) needs pydantic: pip install pydantic (or drop the option and "
            "validate the arguments inside the task)") from exc
    base: type = pydantic.BaseModel
    hints = _Hints(fun)
    context = {**context, "celery_app": app, "celery_task_name": task_name}

    def convert_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> inspect.BoundArguments:
        bound = hints.signature.bind(*args, **kwargs)
        resolved = hints.get()
        for name, value in bound.arguments.items():
            model = _model_class(resolved.get(name), base)
            if model is not None and value is not None and not isinstance(value, model):
                bound.arguments[name] = model.model_validate(  # type: ignore[attr-defined]
                    value, strict=strict, context=context)
        return bound

    def dump(value: Any) -> Any:
        model = _model_class(hints.get().get("return"), base)
        if model is not None and isinstance(value, model):
            return value.model_dump(**dump_kwargs)  # type: ignore[attr-defined]
        return value

    if inspect.iscoroutinefunction(fun):
        @functools.wraps(fun)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = convert_args(args, kwargs)
            return dump(await fun(*bound.args, **bound.kwargs))

        return async_wrapper

    @functools.wraps(fun)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound = convert_args(args, kwargs)
        return dump(fun(*bound.args, **bound.kwargs))

    return wrapper
