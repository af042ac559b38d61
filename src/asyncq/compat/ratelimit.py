"""``rate_limit="10/s"``: Celery's per-worker rate limit (a token bucket of capacity 1), not a global one.

Each worker process spaces the starts of a task's jobs at least ``1 / rate`` apart. A job waiting for its turn
keeps its slot and its lease, as a Celery worker keeps the message.
"""

from __future__ import annotations

import asyncio
import time

from asyncq.compat.exceptions import ImproperlyConfigured

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(rate: str | float | int) -> float:
    """Jobs per second from ``"N/s" | "N/m" | "N/h"`` or a number (per second)."""
    if isinstance(rate, int | float):
        return float(rate)
    count, _, unit = str(rate).partition("/")
    try:
        return float(count) / _UNITS[unit or "s"]
    except (ValueError, KeyError):
        raise ImproperlyConfigured(f"rate_limit={rate!r}: use 'N/s', 'N/m' or 'N/h'") from None


class RateLimiter:
    def __init__(self, rate: str | float | int) -> None:
        per_second = parse_rate(rate)
        self.interval = 0.0 if per_second <= 0 else 1.0 / per_second
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        if self.interval == 0:
            return
        async with self._lock:
            now = time.monotonic()
            wait = self._next - now
            self._next = max(now, self._next) + self.interval
        if wait > 0:
            await asyncio.sleep(wait)
