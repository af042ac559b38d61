"""Which of Celery 5.6.3's ``t/integration`` files and tests apply to a Redis broker + Redis result backend.

"Not applicable" is only for what cannot apply to a Redis-based system (RabbitMQ, Azure, in-memory transports)
or what tests Celery's own internals (its command-line program, its prefork pool, its in-process worker
objects); each entry says which. Everything else runs in both columns.
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

#: single tests of the run files that are not run (node id relative to t/integration -> reason)
NOT_APPLICABLE_TESTS: dict[str, str] = {
    "test_inspect.py::test_Inspect::test_active_queues": "Celery internals: kombu queue/exchange declarations "
                                                          "reported by a broadcast to the worker",
    "test_inspect.py::test_Inspect::test_clock": "Celery internals: the worker's Lamport clock",
    "test_inspect.py::test_Inspect::test_report": "Celery internals: the text of Celery's bug-report command",
}
