"""Event-time windows and the watermark.

Windows are tumbling, aligned to the Unix epoch, and assigned by the prediction's own
timestamp. The watermark is the largest event time seen so far; a window closes once the
watermark passes its end plus the allowed lateness. An event is late when the watermark
*before it* has already closed its window, which makes lateness independent of how a runtime
batches the stream.

Examples
--------
>>> window_starts(np.array([90_061_000]), 3_600_000)
array([90000000])
>>> late_mask(np.array([10, 5_000, 1_000, 9_000]), 0, window_ms=1_000, lateness_ms=500)
array([False, False,  True, False])

"""

from __future__ import annotations

import numpy as np


def window_starts(ts_ms: np.ndarray, window_ms: int) -> np.ndarray:
    """Start of the tumbling window holding each timestamp."""
    return ts_ms - ts_ms % window_ms


def is_closed(start_ms: int, watermark_ms: int, window_ms: int, lateness_ms: int) -> bool:
    """Whether the window starting at ``start_ms`` accepts no more events."""
    return start_ms + window_ms + lateness_ms <= watermark_ms


def running_watermarks(ts_ms: np.ndarray, watermark_ms: int) -> np.ndarray:
    """The watermark in force before each event of a batch (prefix maxima)."""
    before = np.empty_like(ts_ms)
    if len(ts_ms):
        before[0] = watermark_ms
        np.maximum.accumulate(np.maximum(ts_ms[:-1], watermark_ms), out=before[1:])
    return before


def late_mask(ts_ms: np.ndarray, watermark_ms: int, window_ms: int, lateness_ms: int) -> np.ndarray:
    """True for events whose window had closed before they arrived."""
    ends = window_starts(ts_ms, window_ms) + window_ms + lateness_ms
    return ends <= running_watermarks(ts_ms, watermark_ms)
