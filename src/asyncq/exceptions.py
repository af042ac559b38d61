"""Every error asyncq raises, in one tree, so callers can catch ``AsyncqError`` and know they caught all of ours.

::

    AsyncqError
    ├── ConfigurationError          bad option, bad URL, unknown task option: fix the code or config
    │   └── UnknownTaskError        a task name this process has not registered
    ├── SerializationError          an argument or result the serializer cannot encode
    ├── DeserializationError        bytes in Redis that cannot be decoded (wrong serializer, bad signature)
    ├── BrokerUnavailable           Redis cannot be reached; nothing was enqueued
    ├── JobError                    about one job
    │   ├── JobNotFound             no job or result under that id
    │   ├── JobTimeout              waiting for a result ran out of time (the job may still run)
    │   ├── TaskTimeout             the task ran past its own timeout and was cancelled
    │   ├── TaskExited              the task raised SystemExit or KeyboardInterrupt (the job failed, not the worker)
    │   ├── JobAborted              the job was aborted before or while it ran
    │   ├── JobDeadLettered         the job ended in the dead-letter store
    │   └── RemoteTaskError         the task raised an exception whose type is not importable here
    └── Retry                       raised *inside* a task to ask for another try (a control-flow signal)

Each message says what went wrong and what to do about it.
"""

from __future__ import annotations

from typing import Any


class AsyncqError(Exception):
    """Root of every asyncq exception."""


class ConfigurationError(AsyncqError, ValueError):
    """An option, URL or argument that asyncq cannot accept. Subclasses ValueError so generic code still works."""


class UnknownTaskError(ConfigurationError, KeyError):
    """A task name that is not registered on this App."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class SerializationError(AsyncqError, TypeError):
    """An argument or result the configured serializer cannot encode."""


class DeserializationError(AsyncqError):
    """Bytes that cannot be decoded: another serializer wrote them, or the signature does not match."""


class MalformedMessage(DeserializationError):
    """A Celery message that cannot be run as it is (bad base64, bad JSON, not protocol v2); dead-lettered with
    this text as the reason."""


class BrokerUnavailable(AsyncqError, ConnectionError):
    """Redis is unreachable. Raised by enqueue so that no job is silently lost."""


class JobError(AsyncqError):
    """An error about one job; ``job_id`` names it."""

    def __init__(self, message: str, *, job_id: str | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id


class JobNotFound(JobError, LookupError):
    """No job and no result under that id (never enqueued, or its result expired)."""


class JobTimeout(JobError, TimeoutError):
    """Waiting for a result took longer than the timeout. The job itself may still be queued or running."""


class TaskTimeout(JobError, TimeoutError):
    """The task ran longer than its ``timeout`` and was cancelled (a plain ``def`` task's thread is abandoned)."""


class TaskExited(JobError):
    """A task body raised SystemExit or KeyboardInterrupt: that ends the job (a failure), never the worker."""


class JobAborted(JobError):
    """The job was aborted (``Job.abort``) before it finished."""


class JobDeadLettered(JobError):
    """The job could not run (unknown task, undecodable payload, lease lost too often) and was dead-lettered."""


class RemoteTaskError(JobError):
    """The task raised an exception whose class cannot be rebuilt in this process.

    ``exc_type`` is the dotted name of the original class and ``remote_traceback`` its traceback text.
    """

    def __init__(
        self,
        message: str,
        *,
        job_id: str | None = None,
        exc_type: str = "",
        remote_traceback: str = "",
    ) -> None:
        super().__init__(message, job_id=job_id)
        self.exc_type = exc_type
        self.remote_traceback = remote_traceback


class Retry(AsyncqError):
    """Raise inside a task to have it tried again after ``defer`` seconds (counts as a try).

    ``defer=None`` uses the task's retry policy to choose the delay.
    """

    def __init__(self, defer: float | None = None, *, reason: str = "") -> None:
        super().__init__(reason or f"retry requested (defer={defer})")
        self.defer = defer
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.defer,), {"reason": self.reason})
