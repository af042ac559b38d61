"""``celery.contrib.django.task.DjangoTask``: the task base Celery's Django fixup installs, with
``delay_on_commit`` / ``apply_async_on_commit``. asyncq.compat's ``Task`` has both already, so this is the same
class under Celery's name, for projects that set ``task_cls="celery.contrib.django.task:DjangoTask"``."""

from __future__ import annotations

from asyncq.compat.task import Task


class DjangoTask(Task):
    """A Task whose ``delay_on_commit`` sends after the current Django transaction commits (returns None)."""


__all__ = ["DjangoTask"]
