"""The test project with misconfigured asyncq backends: ``manage.py check`` must report each mistake
(tests/test_django_tasks.py::test_system_checks)."""

from djt_site.settings import *  # noqa: F403

TASKS = {
    "default": TASKS["default"],  # noqa: F405 (the good one: the tasks modules must still import)
    "typo": {
        "BACKEND": "asyncq.integrations.django.AsyncqBackend",
        "QUEUES": ["default", "bad queue!"],
        "OPTIONS": {"redis_url": "http://not-redis", "max_tries": 0, "enqueue_on_comit": False},
    },
    "empty": {"BACKEND": "asyncq.integrations.django.AsyncqBackend", "QUEUES": [],
              "OPTIONS": {"timeout": "5", "keep_result": -1, "database": "replica"}},
}
