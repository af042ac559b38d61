"""Mirror of Celery's ``celery.contrib`` package.

After :func:`asyncq.compat.install_as_celery`, ``import celery.contrib.X`` resolves to
``asyncq.compat.contrib.X`` when that module exists: ``abortable`` (AbortableTask), and the
test helpers ``testing`` and ``pytest`` (Celery's pytest fixtures), so a project's own test
suite keeps its imports.
"""
