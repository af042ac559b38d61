"""Celery's wire formats on Redis, for running asyncq and Celery side by side on one Redis.

- ``kombu_layout``: Celery's (kombu's) key names: the queue lists and their priority buckets, the result keys.
  They are Celery's names, not asyncq's, so they live here and not in ``asyncq.keys``.
- ``encode``: a Celery message protocol v2 envelope, as ``Task.apply_async`` writes it, that a stock Celery
  worker accepts.
- ``results``: Celery's Redis result backend, read the way Celery's ``AsyncResult.get()`` reads it.

Nothing here imports Celery or kombu: the formats are reproduced, and the tests compare them with real Celery.
"""

from __future__ import annotations

from asyncq.celery_protocol.encode import encode_message, message_bytes
from asyncq.celery_protocol.kombu_layout import PRIORITY_STEPS, SEP, meta_key, queue_list_key
from asyncq.celery_protocol.results import CeleryMeta, read_meta, rebuild_celery_exception, wait_meta

__all__ = [
    "PRIORITY_STEPS",
    "SEP",
    "CeleryMeta",
    "encode_message",
    "message_bytes",
    "meta_key",
    "queue_list_key",
    "read_meta",
    "rebuild_celery_exception",
    "wait_meta",
]
