"""When and how soon a failed job is tried again.

A policy, not a loop: the worker asks ``delay_for(try_number, exc)`` after a failure and either reschedules the
job in Redis (so a delayed retry survives a worker restart) or dead-letters it. Jitter spreads a burst of
failures (an endpoint that went down) so the retries do not all land on it in the same millisecond.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from asyncq.exceptions import ConfigurationError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with a cap and full jitter.

    delay(n) = min(max_delay, base * factor ** (n - 1)) for the n-th failed try; with ``jitter`` the delay is
    drawn uniformly from [delay / 2, delay]. ``retry_on`` lists the exception types that are retried (default:
    any Exception); ``dont_retry_on`` wins over it.
    """

    base: float = 1.0
    factor: float = 2.0
    max_delay: float = 300.0
    jitter: bool = True
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    dont_retry_on: tuple[type[BaseException], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.base < 0 or self.max_delay < 0:
            raise ConfigurationError("RetryPolicy: base and max_delay must be >= 0 seconds")
        if self.factor < 1:
            raise ConfigurationError("RetryPolicy: factor must be >= 1 (1 means a constant delay)")
        for name in ("retry_on", "dont_retry_on"):
            value = getattr(self, name)
            if not isinstance(value, Sequence) or not all(
                isinstance(t, type) and issubclass(t, BaseException) for t in value
            ):
                raise ConfigurationError(f"RetryPolicy.{name} must be a tuple of exception classes, got {value!r}")
            object.__setattr__(self, name, tuple(value))

    def should_retry(self, exc: BaseException) -> bool:
        if isinstance(exc, self.dont_retry_on):
            return False
        return isinstance(exc, self.retry_on)

    def delay_for(self, failed_try: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before the try after ``failed_try`` (1-based)."""
        raw = min(self.max_delay, self.base * self.factor ** max(0, failed_try - 1))
        if not self.jitter or raw == 0:
            return raw
        return (rng or random).uniform(raw / 2, raw)


NO_RETRY = RetryPolicy(retry_on=())
