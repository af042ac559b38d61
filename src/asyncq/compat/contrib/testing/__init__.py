"""Mirror of ``celery.contrib.testing``: helpers for testing Celery-style code on asyncq.

- :mod:`.app`: ``TestApp`` and ``setup_default_app`` (an app for a test, made current for its duration);
- :mod:`.worker`: ``start_worker`` (a real ``asyncq worker`` process serving the app's tasks);
- :mod:`.manager`: ``Manager`` (waits, joins and worker-state checks used by integration tests);
- :mod:`.tasks`: the ``celery.ping`` task ``start_worker`` uses to know the worker is serving.

The pytest fixtures built on them are in :mod:`asyncq.compat.contrib.pytest`.
"""
