"""Run counts across processes, in a file rather than in Redis, so they survive the very failovers the cluster tests
cause (a counter on a killed master could lose increments together with the jobs it counts)."""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from pathlib import Path

#: the environment variable naming a worker process's run log (tests/cluster_app.py writes it)
RUNLOG_ENV = "ASYNCQ_TEST_RUNLOG"


class RunLog:
    """Append-only ``<event> <n> <unix time>`` lines from any number of processes (O_APPEND writes of one short
    line are atomic), read back as counts per job number or as times."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    @classmethod
    def from_env(cls) -> RunLog | None:
        value = os.environ.get(RUNLOG_ENV)
        return cls(value) if value else None

    def record(self, event: str, n: int) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{event} {n} {time.time():.4f}\n".encode())
        finally:
            os.close(fd)

    def _lines(self) -> list[list[str]]:
        with contextlib.suppress(FileNotFoundError):
            return [line.split() for line in self.path.read_text().splitlines()]
        return []

    def counts(self, event: str) -> Counter[int]:
        """How many times each job number recorded ``event``."""
        return Counter(int(p[1]) for p in self._lines() if len(p) >= 2 and p[0] == event and p[1].isdigit())

    def times(self, event: str) -> list[float]:
        """The times of every ``event``, sorted."""
        return sorted(float(p[2]) for p in self._lines() if len(p) == 3 and p[0] == event)
