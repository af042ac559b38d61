"""asyncq: an asyncio-native task queue on arq and Redis, with a Celery compatibility layer.

    from asyncq import App

    app = App(redis_url="redis://127.0.0.1:6379/0")

    @app.task(queue="emails", max_tries=5, timeout=30)
    async def send_email(user_id: int) -> str: ...

    job = await send_email.enqueue(42)
    value = await job.result(timeout=10)
"""

from asyncq._version import __version__ as __version__
from asyncq.app import App as App
from asyncq.context import JobContext as JobContext
from asyncq.context import current_job as current_job
from asyncq.exceptions import AsyncqError as AsyncqError
from asyncq.exceptions import BrokerUnavailable as BrokerUnavailable
from asyncq.exceptions import ConfigurationError as ConfigurationError
from asyncq.exceptions import DeserializationError as DeserializationError
from asyncq.exceptions import JobAborted as JobAborted
from asyncq.exceptions import JobDeadLettered as JobDeadLettered
from asyncq.exceptions import JobError as JobError
from asyncq.exceptions import JobNotFound as JobNotFound
from asyncq.exceptions import JobTimeout as JobTimeout
from asyncq.exceptions import RemoteTaskError as RemoteTaskError
from asyncq.exceptions import Retry as Retry
from asyncq.exceptions import SerializationError as SerializationError
from asyncq.exceptions import TaskExited as TaskExited
from asyncq.exceptions import TaskTimeout as TaskTimeout
from asyncq.exceptions import UnknownTaskError as UnknownTaskError
from asyncq.hooks import Hooks as Hooks
from asyncq.job import Job as Job
from asyncq.job import JobInfo as JobInfo
from asyncq.job import JobStatus as JobStatus
from asyncq.retry import RetryPolicy as RetryPolicy
from asyncq.settings import AppSettings as AppSettings
from asyncq.settings import WorkerSettings as WorkerSettings
from asyncq.task import JobSpec as JobSpec
from asyncq.task import Task as Task
from asyncq.worker import Worker as Worker
from asyncq.worker import run_worker as run_worker

__all__ = [
    "App",
    "AppSettings",
    "AsyncqError",
    "BrokerUnavailable",
    "ConfigurationError",
    "DeserializationError",
    "Hooks",
    "Job",
    "JobAborted",
    "JobContext",
    "JobDeadLettered",
    "JobError",
    "JobInfo",
    "JobNotFound",
    "JobSpec",
    "JobStatus",
    "JobTimeout",
    "RemoteTaskError",
    "Retry",
    "RetryPolicy",
    "SerializationError",
    "Task",
    "TaskExited",
    "TaskTimeout",
    "UnknownTaskError",
    "Worker",
    "WorkerSettings",
    "__version__",
    "current_job",
    "run_worker",
]
