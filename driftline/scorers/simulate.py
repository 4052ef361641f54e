"""Publish a scenario's predictions and ground truth to Kafka, paced in wall-clock time.

This is the engine of ``driftline simulate``: :func:`~driftline.streams.topics.ensure_topics`
creates the two input topics (or checks that existing ones are co-partitioned), and :func:`publish_events` logs every event
through a :class:`~driftline.scorers.sdk.DriftlineProducer` in arrival order, keyed by
``event_id``, no faster than a given rate (a :class:`TokenBucket` on the monotonic clock).

Examples
--------
A bucket of 100 events/s with room for a burst of 10 lets the first 10 through at once and then
one event every 10 ms (here on a fake clock, so nothing really sleeps):

>>> clock = FakeClock()
>>> bucket = TokenBucket(100, burst=10, clock=clock.now, sleep=clock.sleep)
>>> for _ in range(30):
...     _ = bucket.take()
>>> round(clock.t, 3)
0.2

"""

from __future__ import annotations

import itertools
import math
import numbers
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from driftline.streams.topics import KafkaSetupError, ensure_topics

if TYPE_CHECKING:
    from driftline.scorers.scenario import CreditScenario
    from driftline.scorers.sdk import DriftlineProducer

__all__ = [
    "FakeClock",
    "KafkaSetupError",
    "PublishSummary",
    "TokenBucket",
    "ensure_topics",
    "publish_events",
    "publish_scenario",
]

_PROGRESS_EVERY = 1000


def _check_rate(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


class FakeClock:
    """A monotonic clock that advances only when told to sleep: for testing paced code.

    Examples
    --------
    >>> clock = FakeClock()
    >>> clock.sleep(0.25); clock.now()
    0.25
    """

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        """The current fake time in seconds."""
        return self.t

    def sleep(self, seconds: float) -> None:
        """Advance the fake time by ``seconds``."""
        self.t += seconds


class TokenBucket:
    """Let events through at ``rate`` per second on average, with bursts of at most ``burst``.

    The bucket holds up to ``burst`` tokens and refills at ``rate`` tokens per second of the
    monotonic clock; :meth:`take` removes tokens and sleeps off any deficit. A stall (a slow
    broker, a paused process) is not caught up beyond ``burst`` events.

    Parameters
    ----------
    rate
        Events per second, > 0.
    burst
        Bucket size in events; default: 10 ms worth of events, at least 1.
    clock, sleep
        The monotonic clock and the sleep function (injected in tests).

    Examples
    --------
    >>> TokenBucket(0)
    Traceback (most recent call last):
    ...
    ValueError: rate must be a finite number > 0, got 0
    >>> clock = FakeClock()
    >>> bucket = TokenBucket(1000, clock=clock.now, sleep=clock.sleep)
    >>> bucket.burst
    10.0
    >>> sum(bucket.take() for _ in range(2010)) == clock.t
    True
    >>> round(clock.t, 3)
    2.0
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = time.sleep,
    ) -> None:
        if _check_rate("rate", rate) == 0:
            raise ValueError(f"rate must be a finite number > 0, got {rate!r}")
        self.rate = float(rate)
        if burst is None:
            burst = max(1.0, self.rate / 100)
        elif _check_rate("burst", burst) < 1:
            raise ValueError(f"burst must be a finite number >= 1, got {burst!r}")
        self.burst = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._last = clock()

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self.rate:g}, burst={self.burst:g})"

    def take(self, n: int = 1) -> float:
        """Remove ``n`` tokens, sleeping until the bucket has refilled enough; return the seconds
        slept."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate) - n
        self._last = now
        if self._tokens >= 0:
            return 0.0
        delay = -self._tokens / self.rate
        self._sleep(delay)
        return delay


@dataclass(frozen=True)
class PublishSummary:
    """What :func:`publish_events` logged and what became of it.

    ``delivered``, ``failed`` and ``dropped`` are the producer's counters over this call (see
    :meth:`~driftline.scorers.sdk.DriftlineProducer.stats`); ``seconds`` runs from the first
    event to the end of the final flush.

    Examples
    --------
    >>> s = PublishSummary(predictions=900, ground_truth=600, delivered=1500, failed=0, dropped=0, seconds=3.0)
    >>> s.events, s.rate, s.ok
    (1500, 500.0, True)
    """

    predictions: int
    ground_truth: int
    delivered: int
    failed: int
    dropped: int
    seconds: float

    @property
    def events(self) -> int:
        """Predictions and ground truths logged."""
        return self.predictions + self.ground_truth

    @property
    def rate(self) -> float:
        """Events per second over the whole call (``inf`` when it took no measurable time)."""
        return self.events / self.seconds if self.seconds > 0 else math.inf

    @property
    def ok(self) -> bool:
        """Every logged event was delivered."""
        return self.failed == 0 and self.dropped == 0 and self.delivered == self.events


def publish_events(
    events: Iterable[tuple[int, str, dict[str, Any]]],
    producer: DriftlineProducer,
    rate: float,
    progress: Callable[[int], Any] | None = None,
    *,
    flush_timeout: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Any] = time.sleep,
) -> PublishSummary:
    """Log ``(arrival_ts, kind, event)`` tuples in their order, at most ``rate`` events/s.

    Predictions go through :meth:`~driftline.scorers.sdk.DriftlineProducer.log_prediction`,
    ground truths through ``log_ground_truth``, with every field of the event (its own
    ``event_id`` and ``ts``), so they are keyed by ``event_id``. Then the producer is flushed.

    Parameters
    ----------
    events
        What :meth:`driftline.scorers.scenario.CreditScenario.events` yields: ``kind`` is
        ``"prediction"`` or ``"ground_truth"``, ``event`` a contract dict (``schema_version``
        1, which the producer adds itself).
    producer
        Where to log; give it ``block_on_full=True`` so that publishing faster than the broker
        takes waits for room in its queue instead of dropping events.
    rate
        Events (predictions plus ground truths) per second of wall-clock time; ``0``: as fast
        as possible.
    progress
        Called with the number of events logged so far, every 1,000 events and at the end.
    flush_timeout
        Seconds the final flush may take (``None``: until every event is delivered or failed).
    clock, sleep
        Monotonic clock and sleep for the pacing (injected in tests).

    Returns
    -------
    PublishSummary
        Counts logged per kind, and delivered / failed / dropped over this call.
    """
    rate = _check_rate("rate", rate)
    bucket = TokenBucket(rate, clock=clock, sleep=sleep) if rate > 0 else None
    before = producer.stats()
    log_prediction, log_ground_truth = producer.log_prediction, producer.log_ground_truth
    counts = {"prediction": 0, "ground_truth": 0}
    started = clock()
    n = 0
    for n, (_, kind, event) in enumerate(events, start=1):
        if bucket is not None:
            bucket.take()
        fields = {k: v for k, v in event.items() if k != "schema_version"}
        if kind == "prediction":
            log_prediction(**fields)
        elif kind == "ground_truth":
            log_ground_truth(**fields)
        else:
            raise ValueError(f"event kind must be 'prediction' or 'ground_truth', got {kind!r}")
        counts[kind] += 1
        if progress is not None and n % _PROGRESS_EVERY == 0:
            progress(n)
    producer.flush(timeout=flush_timeout)
    seconds = clock() - started
    if progress is not None:
        progress(n)
    after = producer.stats()
    return PublishSummary(
        predictions=counts["prediction"],
        ground_truth=counts["ground_truth"],
        delivered=after["delivered"] - before["delivered"],
        failed=after["failed"] - before["failed"],
        dropped=after["dropped"] - before["dropped"],
        seconds=seconds,
    )


def publish_scenario(
    scenario: CreditScenario,
    producer: DriftlineProducer,
    rate: float,
    progress: Callable[[int], Any] | None = None,
    *,
    limit: int | None = None,
    flush_timeout: float | None = None,
) -> PublishSummary:
    """Publish ``scenario.events()`` (or its first ``limit`` events) with :func:`publish_events`."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be an int >= 0 or None, got {limit!r}")
    events = scenario.events()
    if limit is not None:
        events = itertools.islice(events, limit)
    return publish_events(events, producer, rate, progress, flush_timeout=flush_timeout)
