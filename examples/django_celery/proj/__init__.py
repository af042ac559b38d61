"""The project package. Moving this Celery project to asyncq took the two lines marked below; nothing else in
the project changed (every `from celery ...` import stays as it was)."""

import asyncq.compat  # moved to asyncq: 1/2

asyncq.compat.install_as_celery()  # moved to asyncq: 2/2 (every `import celery...` now gets asyncq.compat)

# Celery's Django recipe, unchanged: the app is loaded whenever Django starts, so @shared_task uses it.
from .celery import app as celery_app  # noqa: E402

__all__ = ("celery_app",)
