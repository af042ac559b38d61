"""Celery's ``celery.contrib.testing.manager`` on asyncq: ``Manager``, the helper integration tests get as
the ``manager`` fixture (waits with retries, joins, and worker-state checks).

Differences from Celery's, each because asyncq has no broadcast control channel: worker state comes from
Redis (``app.control.inspect()``: running jobs are "active", finished ones "ready"; asyncq workers never
reserve jobs ahead), and ``wait_until_idle`` waits for no job to be running (it does not purge queues).
"""

from __future__ import annotations

import itertools
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any, TextIO

from redis.exceptions import ConnectionError as RedisConnectionError

from asyncq.compat import states
from asyncq.compat.app import Celery
from asyncq.compat.exceptions import TimeoutError as CeleryTimeoutError
from asyncq.compat.result import AsyncResult, GroupResult

E_STILL_WAITING = "Still waiting for {0}.  Trying again {when}: {exc!r}"


class Sentinel(Exception):
    """Signifies the end of something (raised by ``true_or_raise`` while the condition is false)."""


def retry_over_time(fun: Callable[..., Any], catch: Any, args: Sequence[Any] = (),
                    kwargs: dict[str, Any] | None = None, errback: Callable[..., Any] | None = None,
                    max_retries: int | None = None, interval_start: float = 2, interval_step: float = 2,
                    interval_max: float = 30, timeout: float | None = None, **_: Any) -> Any:
    """kombu's ``retry_over_time``: call ``fun`` until it stops raising ``catch`` (``max_retries`` more times at
    most, sleeping the interval the errback returns, or a growing one)."""
    kwargs = kwargs or {}
    end = time.monotonic() + timeout if timeout else None
    intervals = _intervals(interval_start, interval_step, interval_max)
    for retries in itertools.count():
        try:
            return fun(*args, **kwargs)
        except catch as exc:
            if max_retries is not None and retries >= max_retries:
                raise
            if end is not None and time.monotonic() > end:
                raise
            interval = errback(exc, intervals, retries) if errback else next(intervals)
            time.sleep(interval or 0)
    raise AssertionError("unreachable")  # pragma: no cover


def _intervals(start: float, step: float, maximum: float) -> Iterator[float]:
    current = start
    while True:
        yield min(current, maximum)
        current += step


class ManagerMixin:
    """The :class:`Manager` capabilities (Celery's mixin of the same name)."""

    app: Celery

    def _init_manager(self, block_timeout: float = 30 * 60.0, no_join: bool = False, stdout: TextIO | None = None,
                      stderr: TextIO | None = None) -> None:
        self.stdout = sys.stdout if stdout is None else stdout
        self.stderr = sys.stderr if stderr is None else stderr
        self.connerrors: tuple[type[BaseException], ...] = (RedisConnectionError, ConnectionError)
        self.block_timeout = block_timeout
        self.no_join = no_join

    def remark(self, s: str, sep: str = "-") -> None:
        print(f"{sep}{s}", file=self.stdout)

    def warn(self, s: str) -> None:
        print(s, file=self.stderr)

    def missing_results(self, r: Sequence[AsyncResult]) -> list[str]:
        return [res.id for res in r if not res.ready()]

    def wait_for(self, fun: Callable[..., Any], catch: Any, desc: str = "thing", args: Sequence[Any] = (),
                 kwargs: dict[str, Any] | None = None, errback: Callable[..., Any] | None = None,
                 max_retries: int = 10, interval_start: float = 0.1, interval_step: float = 0.5,
                 interval_max: float = 5.0, emit_warning: bool = False, **options: Any) -> Any:
        """Call ``fun`` until it stops raising ``catch`` (the event has not happened yet while it raises)."""

        def on_error(exc: BaseException, intervals: Iterator[float], retries: int) -> float:
            interval = next(intervals)
            if emit_warning:
                self.warn(E_STILL_WAITING.format(desc, when=f"in {interval:.2f} seconds", exc=exc))
            if errback:
                errback(exc, interval, retries)
            return interval

        return self.retry_over_time(fun, catch, args=args, kwargs=kwargs or {}, errback=on_error,
                                    max_retries=max_retries, interval_start=interval_start,
                                    interval_step=interval_step, interval_max=interval_max, **options)

    def ensure_not_for_a_while(self, fun: Callable[..., Any], catch: Any, desc: str = "thing",
                               max_retries: int = 20, interval_start: float = 0.1, interval_step: float = 0.02,
                               interval_max: float = 1.0, emit_warning: bool = False, **options: Any) -> None:
        """Make sure something does not happen (at least for a while)."""
        try:
            self.wait_for(fun, catch, desc=desc, max_retries=max_retries, interval_start=interval_start,
                          interval_step=interval_step, interval_max=interval_max, emit_warning=emit_warning)
        except catch:
            pass
        else:
            raise AssertionError(f"Should not have happened: {desc}")

    def retry_over_time(self, *args: Any, **kwargs: Any) -> Any:
        return retry_over_time(*args, **kwargs)

    def join(self, r: Any, propagate: bool = False, max_retries: int = 10, **kwargs: Any) -> Any:
        """Wait for ``r`` (a result or a set of them), retrying on timeouts ``max_retries`` times."""
        if self.no_join:
            return None
        if isinstance(r, AsyncResult):
            r = GroupResult(None, [r], app=self.app)
        for _ in range(max_retries) if max_retries else itertools.count(0):
            try:
                return r.get(propagate=propagate, **kwargs)
            except (TimeoutError, CeleryTimeoutError) as exc:
                waiting_for = self.missing_results(r)
                self.remark(f"Still waiting for {len(waiting_for)}/{len(r)}: [{', '.join(waiting_for)[:200]}]: "
                            f"{exc!r}", "!")
            except self.connerrors as exc:
                self.remark(f"join: connection lost: {exc!r}", "!")
        raise AssertionError("Test failed: Missing task results")

    def inspect(self, timeout: float = 3.0) -> Any:
        return self.app.control.inspect(timeout=timeout)

    def query_tasks(self, ids: Sequence[str], timeout: float = 0.5) -> Iterator[tuple[str, dict[str, Any]]]:
        """Celery's ``inspect().query_task(*ids)`` answer, built from Redis: {worker: {id: [state, info]}}
        with state "active" (running now) or "ready" (finished)."""
        found: dict[str, dict[str, Any]] = defaultdict(dict)
        wanted = set(ids)
        for worker, jobs in (self.inspect(timeout).active() or {}).items():
            for job in jobs:
                if job.get("id") in wanted:
                    found[worker][job["id"]] = ["active", job]
        for task_id in wanted - {i for jobs in found.values() for i in jobs}:
            res = self.app.AsyncResult(task_id)
            if res.state in states.READY_STATES:
                found["redis"][task_id] = ["ready", {"id": task_id}]
        yield from found.items()

    def query_task_states(self, ids: Sequence[str], timeout: float = 0.5) -> dict[str, set[str]]:
        by_state: dict[str, set[str]] = defaultdict(set)
        for _, reply in self.query_tasks(ids, timeout=timeout):
            for task_id, (state, _info) in reply.items():
                by_state[state].add(task_id)
        return by_state

    def assert_accepted(self, ids: Sequence[str], interval: float = 0.5,
                        desc: str = "waiting for tasks to be accepted", **policy: Any) -> Any:
        return self.assert_task_worker_state(self.is_accepted, ids, interval=interval, desc=desc, **policy)

    def assert_received(self, ids: Sequence[str], interval: float = 0.5,
                        desc: str = "waiting for tasks to be received", **policy: Any) -> Any:
        return self.assert_task_worker_state(self.is_received, ids, interval=interval, desc=desc, **policy)

    def assert_result_tasks_in_progress_or_completed(self, async_results: Sequence[AsyncResult],
                                                     interval: float = 0.5,
                                                     desc: str = "waiting for tasks to be started or completed",
                                                     **policy: Any) -> Any:
        return self.assert_task_state_from_result(self.is_result_task_in_progress, async_results,
                                                  interval=interval, desc=desc, **policy)

    def assert_task_state_from_result(self, fun: Callable[..., Any], results: Sequence[AsyncResult],
                                      interval: float = 0.5, **policy: Any) -> Any:
        return self.wait_for(partial(self.true_or_raise, fun, results, timeout=interval), (Sentinel,), **policy)

    @staticmethod
    def is_result_task_in_progress(results: Sequence[AsyncResult], **kwargs: Any) -> bool:
        return all(result.state in (states.STARTED, states.SUCCESS) for result in results)

    def assert_task_worker_state(self, fun: Callable[..., Any], ids: Sequence[str], interval: float = 0.5,
                                 **policy: Any) -> Any:
        return self.wait_for(partial(self.true_or_raise, fun, ids, timeout=interval), (Sentinel,), **policy)

    def is_received(self, ids: Sequence[str], **kwargs: Any) -> bool:
        return self._ids_matches_state(["reserved", "active", "ready"], ids, **kwargs)

    def is_accepted(self, ids: Sequence[str], **kwargs: Any) -> bool:
        return self._ids_matches_state(["active", "ready"], ids, **kwargs)

    def _ids_matches_state(self, expected_states: Sequence[str], ids: Sequence[str], timeout: float = 0.5) -> bool:
        found = self.query_task_states(ids, timeout=timeout)
        return all(any(t in found[k] for k in expected_states) for t in ids)

    def true_or_raise(self, fun: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        res = fun(*args, **kwargs)
        if not res:
            raise Sentinel()
        return res

    def wait_until_idle(self, timeout: float = 60.0) -> None:
        """As Celery's: discard the tasks still waiting in the app's queues (left over by earlier tests), then
        wait until no job is running on any worker (at most ``timeout`` seconds, then TimeoutError)."""
        deadline = time.monotonic() + timeout
        while self.app.control.purge():
            pass
        inspect = self.app.control.inspect()
        while sum(len(jobs) for jobs in (inspect.active() or {}).values()):
            if time.monotonic() > deadline:
                raise CeleryTimeoutError(f"workers still busy after {timeout} s")
            time.sleep(0.1)


class Manager(ManagerMixin):
    """Test helpers for task integration tests."""

    def __init__(self, app: Celery, **kwargs: Any) -> None:
        self.app = app
        self._init_manager(**kwargs)
