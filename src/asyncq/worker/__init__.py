"""The worker: lifecycle (claiming, leases, shutdown), executor (one job), and their helpers."""

from asyncq.worker.lifecycle import Worker as Worker
from asyncq.worker.lifecycle import run_worker as run_worker

__all__ = ["Worker", "run_worker"]
