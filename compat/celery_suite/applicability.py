"""Which of Celery 5.6.3's ``t/integration`` files and tests apply to a Redis broker + Redis result backend.

"Not applicable" is only for what cannot apply to a Redis-based system (RabbitMQ, Azure, in-memory transports)
or what tests Celery's own internals (its command-line program, its prefork pool, its in-process worker
objects, its result backend's pub/sub channels), including tests that can pass only when the worker is a
thread of the test process (Celery's test worker; the issue asks for a real ``asyncq worker`` process); each
entry says which. Everything else runs in both columns.
"""

from __future__ import annotations

RUN_FILES = (
    "test_tasks.py",
    "test_canvas.py",
    "test_inspect.py",
    "test_loader.py",
    "test_dedup_chain_dispatch.py",
    "test_security.py",
)

#: whole files that are not run, with the reason (files without tests are listed as such)
NOT_APPLICABLE_FILES = {
    "test_backend.py": "Redis-only system: Azure Block Blob result backend",
    "test_native_delayed_delivery_binding.py": "Redis-only system: RabbitMQ native delayed delivery",
    "test_quorum_queue_qos_cluster_simulation.py": "Redis-only system: RabbitMQ quorum queues",
    "test_rabbitmq_chord_unlock_routing.py": "Redis-only system: RabbitMQ chord-unlock routing",
    "test_rabbitmq_default_queue_type_fallback.py": "Redis-only system: RabbitMQ queue types",
    "test_rabbitmq_quorum_queue_cycle_detection.py": "Redis-only system: RabbitMQ quorum queues",
    "test_prefork_shutdown.py": "Celery internals: its prefork pool and AMQP heartbeats (worker.consumer)",
    "test_mem_leak_in_exception_handling.py": "Celery internals: tracemalloc of Celery's eager tracer on the "
                                              "memory:// broker and cache+memory:// backend",
    "test_serialization.py": "Celery internals: starts the `celery` command-line worker from a config module",
    "test_worker.py": "Celery internals: the `celery` command line and Celery's WorkController with the "
                      "Django fixup",
    "test_django_settings.py": "no tests (a settings module)",
    "test_serialization_config.py": "no tests (a config module)",
    "test_worker_config.py": "no tests (a config module)",
}

_SUBSCRIPTIONS = (
    "Celery internals: which pub/sub channels Celery's Redis result backend holds (one `celery-task-"
    "meta-<id>` per task sent, read with PUBSUB CHANNELS); asyncq wakes waiters through one channel per "
    "process and has no per-task subscription to cancel"
)
_IN_PROCESS = (
    "Celery's in-process test worker: a `task_received` receiver connected in the test process sees the "
    "worker's requests only because Celery's test worker is a thread of that process; here the worker is "
    "a real `asyncq worker` process (as the issue asks), which sends `task_received` in its own process "
    "(tests/test_compat_stamping.py covers the request's stamps and `replaced_task_nesting` there)"
)

#: single tests of the run files that are not run (node id relative to t/integration -> reason)
NOT_APPLICABLE_TESTS: dict[str, str] = {
    "test_inspect.py::test_Inspect::test_active_queues": "Celery internals: kombu queue/exchange declarations "
                                                          "reported by a broadcast to the worker",
    "test_inspect.py::test_Inspect::test_clock": "Celery internals: the worker's Lamport clock",
    "test_inspect.py::test_Inspect::test_report": "Celery internals: the text of Celery's bug-report command",
    "test_inspect.py::test_Inspect::test_stats": "Celery's in-process test worker: asserts the worker's pid is the "
                                                 "test process's (its worker is a thread there); here the worker "
                                                 "is a real `asyncq worker` process",
    "test_tasks.py::test_task_redis_result_backend::test_asyncresult_forget_cancels_subscription": _SUBSCRIPTIONS,
    "test_tasks.py::test_task_redis_result_backend::test_asyncresult_get_cancels_subscription": _SUBSCRIPTIONS,
    "test_canvas.py::test_chord::test_redis_subscribed_channels_leak": _SUBSCRIPTIONS,
    "test_canvas.py::test_chord::test_simple_chord_with_a_delay_in_group_save": "Celery internals: monkeypatches "
        "the key-value result backend's chord counter (BaseKeyValueStoreBackend._apply_chord_incr)",
    "test_tasks.py::test_task_replacement::test_replaced_task_nesting_level_0": _IN_PROCESS,
    "test_tasks.py::test_task_replacement::test_replaced_task_nesting_level_1": _IN_PROCESS,
    "test_tasks.py::test_task_replacement::test_replaced_task_nesting_chain": _IN_PROCESS,
    "test_canvas.py::test_stamping_mechanism::test_task_received_has_access_to_stamps": _IN_PROCESS,
    "test_canvas.py::test_stamping_mechanism::test_linking_stamped_sig": _IN_PROCESS,
    "test_canvas.py::test_stamping_mechanism::test_err_linking_stamped_sig": _IN_PROCESS,
}
