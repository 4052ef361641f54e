"""A bounded, mergeable uniform sample of whole rows (for multivariate drift).

The domain classifier needs joint rows, not per-feature summaries. :class:`RowSample` keeps the
``capacity`` rows with the smallest keys, where a row's key is a hash of its identity (the
event id). That is bottom-k sampling: the kept rows are a uniform sample without replacement,
the same rows whatever the order or batching of the stream, and the sample of two partitions
merged equals the sample of their union.

Examples
--------
>>> import numpy as np
>>> a = RowSample(capacity=3).update(row_keys(["e1", "e2"]), np.array([[1.0], [2.0]]), np.array([["x"], ["y"]], dtype=object))
>>> b = RowSample(capacity=3).update(row_keys(["e3", "e4"]), np.array([[3.0], [4.0]]), np.array([["z"], ["w"]], dtype=object))
>>> both = RowSample(capacity=3).update(row_keys(["e1", "e2", "e3", "e4"]),
...     np.array([[1.0], [2.0], [3.0], [4.0]]), np.array([["x"], ["y"], ["z"], ["w"]], dtype=object))
>>> sorted(a.merge(b).numeric[:, 0].tolist()) == sorted(both.numeric[:, 0].tolist())
True
>>> a.merge(b).n_seen, len(a.merge(b))
(4, 3)

"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


def row_keys(ids: Sequence[str]) -> np.ndarray:
    """64-bit sampling keys from row identities (BLAKE2b, stable across processes)."""
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(i.encode(), digest_size=8).digest(), "little") for i in ids),
        dtype=np.uint64,
        count=len(ids),
    )


class RowSample:
    """Bottom-k uniform sample of rows with numeric and categorical columns.

    Parameters
    ----------
    capacity
        Rows kept at most.
    """

    def __init__(self, capacity: int = 2_000):
        if not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be an int >= 1, got {capacity!r}")
        self.capacity = capacity
        self.n_seen = 0
        self.keys = np.empty(0, dtype=np.uint64)
        self.numeric: np.ndarray | None = None
        self.categorical: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.keys)

    def update(self, keys: np.ndarray, numeric: np.ndarray, categorical: np.ndarray) -> RowSample:
        """Offer a batch of rows (``numeric`` is n x p floats, ``categorical`` n x q objects)."""
        if not len(keys) == len(numeric) == len(categorical):
            raise ValueError(f"keys, numeric and categorical must have the same length, got "
                             f"{len(keys)}, {len(numeric)}, {len(categorical)}")
        self.n_seen += len(keys)
        if self.numeric is None:
            self.numeric, self.categorical = numeric[:0], categorical[:0]
        self._keep(np.concatenate([self.keys, keys]), np.concatenate([self.numeric, numeric]),
                   np.concatenate([self.categorical, categorical]))
        return self

    def _keep(self, keys: np.ndarray, numeric: np.ndarray, categorical: np.ndarray) -> None:
        if len(keys) > self.capacity:
            chosen = np.argpartition(keys, self.capacity - 1)[: self.capacity]
            chosen.sort()
            keys, numeric, categorical = keys[chosen], numeric[chosen], categorical[chosen]
        self.keys, self.numeric, self.categorical = keys, numeric, categorical

    def merge(self, other: RowSample) -> RowSample:
        """The sample of both streams (equal to sampling their union)."""
        if other.capacity != self.capacity:
            raise ValueError(f"capacity must match to merge, got {self.capacity} and {other.capacity}")
        merged = RowSample(self.capacity)
        merged.n_seen = self.n_seen + other.n_seen
        parts = [s for s in (self, other) if s.numeric is not None]
        if parts:
            merged._keep(np.concatenate([s.keys for s in parts]), np.concatenate([s.numeric for s in parts]),
                         np.concatenate([s.categorical for s in parts]))
        return merged
