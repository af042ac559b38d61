"""Enqueue after commit with SQLAlchemy: the call is sent when the session commits and dropped on rollback,
so a task never reads a row that is not committed yet (or that never will be)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def on_sqlalchemy_commit(session: Any, send: Callable[[], Any]) -> None:
    from sqlalchemy import event

    state = {"done": False}

    def after_commit(_session: Any) -> None:
        if not state["done"]:
            state["done"] = True
            send()

    def after_rollback(_session: Any) -> None:
        state["done"] = True  # dropped: the data it would read is gone

    if not session.in_transaction():
        session.begin()  # what the session's first statement would do (autobegin), so rollback is seen
    event.listen(session, "after_commit", after_commit, once=True)
    event.listen(session, "after_rollback", after_rollback, once=True)
