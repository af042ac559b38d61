"""Celery's signals: ``@task_prerun.connect`` receivers run where Celery would run them.

Publish signals fire in the producer; task and worker signals fire in the asyncq worker. A receiver that
raises is logged and does not break the task (Celery's ``send_robust`` behaviour for task signals).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("asyncq.compat.signals")

Receiver = Callable[..., Any]


class Signal:
    def __init__(self, name: str, providing_args: set[str] | None = None) -> None:
        self.name = name
        self.providing_args = providing_args or set()
        self._receivers: list[tuple[Any, Receiver]] = []

    def __repr__(self) -> str:
        return f"<Signal: {self.name}>"

    def connect(self, receiver: Receiver | None = None, *, sender: Any = None, weak: bool = False,
                dispatch_uid: Any = None) -> Any:
        """Connect ``receiver``; used bare (``@sig.connect``) or with options (``@sig.connect(sender=...)``)."""

        def add(fn: Receiver) -> Receiver:
            key = dispatch_uid or fn
            if not any(k is key or k == key for k, _ in self._receivers):
                self._receivers.append((key, _SenderFilter(fn, sender) if sender is not None else fn))
            return fn

        return add(receiver) if receiver is not None else add

    def disconnect(self, receiver: Receiver | None = None, *, dispatch_uid: Any = None, **_: Any) -> bool:
        key = dispatch_uid or receiver
        before = len(self._receivers)
        self._receivers = [(k, r) for k, r in self._receivers if not (k is key or k == key)]
        return len(self._receivers) < before

    def send(self, sender: Any = None, **named: Any) -> list[tuple[Receiver, Any]]:
        out: list[tuple[Receiver, Any]] = []
        for _, receiver in list(self._receivers):
            try:
                out.append((receiver, receiver(signal=self, sender=sender, **named)))
            except Exception as exc:
                log.exception("signal %s: receiver %r raised", self.name, receiver)
                out.append((receiver, exc))
        return out

    send_robust = send

    @property
    def receivers(self) -> list[Receiver]:
        return [r for _, r in self._receivers]


class _SenderFilter:
    """Calls the receiver only for one sender (a task, a task name, or anything else compared by ==)."""

    def __init__(self, fn: Receiver, sender: Any) -> None:
        self.fn = fn
        self.sender = sender

    def __call__(self, *, sender: Any = None, **named: Any) -> Any:
        if sender is self.sender or sender == self.sender or getattr(sender, "name", None) == self.sender:
            return self.fn(sender=sender, **named)
        return None


before_task_publish = Signal("before_task_publish")
after_task_publish = Signal("after_task_publish")
task_received = Signal("task_received")
task_prerun = Signal("task_prerun")
task_postrun = Signal("task_postrun")
task_success = Signal("task_success")
task_failure = Signal("task_failure")
task_retry = Signal("task_retry")
task_revoked = Signal("task_revoked")
worker_ready = Signal("worker_ready")
worker_shutdown = Signal("worker_shutdown")
worker_process_init = Signal("worker_process_init")
