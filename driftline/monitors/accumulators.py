"""Mergeable window accumulators for drift tests.

A window never keeps its raw events. Per feature it keeps an accumulator whose state is
O(bins + reservoir) and that merges exactly with the accumulator of another partition:

* :class:`NumericAccumulator`: counts on the reference profile's quantile bins, the missing
  count (non-finite values are missing), moments merged with Chan et al.'s parallel formula,
  min/max, and a bounded uniform reservoir of raw values for the exact tests (KS, Wasserstein).
* :class:`CategoricalAccumulator`: category counts, including categories the reference never
  saw, and the missing count (``None`` and NaN are missing).

Exactness
---------
Counts, missing counts, min and max merge exactly: ``a.merge(b)`` equals one accumulator fed
``a ++ b``. Moments use the symmetric form of Chan's update (``mean = (na*ma + nb*mb) / n``,
``M2 = M2a + M2b + d**2 * na * nb / n``), so ``merge`` is commutative bit for bit and equals
feeding ``a`` then ``b`` to one accumulator bit for bit; feeding ``a ++ b`` as a single batch
agrees to floating-point rounding.

The reservoir is a bottom-k sample: every value gets an independent uniform key from the
accumulator's seeded generator and the ``capacity`` values with the smallest keys are kept.
That is a uniform sample without replacement of the window, and merging two reservoirs
(keep the ``capacity`` smallest keys of both) gives a uniform sample of the union. While the
window holds at most ``capacity`` values the reservoir holds all of them and every merge is
exact. Partitions whose reservoirs overflow and are merged should use distinct seeds
(``profile.new_accumulator(seed=partition)``) so that their keys are independent.

Examples
--------
>>> import numpy as np
>>> acc = NumericAccumulator(edges=np.array([0.0, 1.0]), capacity=100)
>>> _ = acc.update([-1.0, 0.5, 2.0, float("nan")])
>>> acc.counts.tolist(), acc.n, acc.n_missing
([1, 1, 1], 4, 1)
>>> other = NumericAccumulator(edges=np.array([0.0, 1.0]), capacity=100).update([0.25])
>>> merged = acc.merge(other)
>>> merged.counts.tolist(), merged.n_valid
([1, 2, 1], 4)
>>> NumericAccumulator.from_bytes(merged.to_bytes()) == merged
True
>>> cat = CategoricalAccumulator().update(["a", "b", "a", None])
>>> dict(cat.counts), cat.n_missing
({'a': 2, 'b': 1}, 1)
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec
import numba
import numpy as np
import pandas as pd

__all__ = ["NumericAccumulator", "CategoricalAccumulator", "count_categories"]

_FORMAT_VERSION = 1


def _new_generator(seed: int | list[int]) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(seed))


def _grown(values: np.ndarray, size: int) -> np.ndarray:
    """A new array of ``size`` slots starting with ``values``, the rest zero (``np.resize`` fills
    it with repeats, at several times the cost; zeros keep a pickled accumulator deterministic)."""
    out = np.zeros(size, dtype=values.dtype)
    out[: values.size] = values
    return out


# Up to this many inner edges a bin is found by comparing with every edge, which the compiler
# unrolls; beyond it numpy's binary search is cheaper.
_LINEAR_EDGES = 32


@numba.njit(cache=True, nogil=True)
def _add_bin_counts(edges: np.ndarray, x: np.ndarray, counts: np.ndarray) -> None:
    """``counts[k] += 1`` for each value of ``x`` with ``k`` edges ``<= x`` (finite values only).

    The same counts as ``np.bincount(np.searchsorted(edges, x, side="right"))``, which takes about
    270 µs for a batch of 12,000 values on 9 edges (a mispredicted branch per step of its binary
    search, then a second pass to count) against about 27 µs here.
    """
    m = edges.size
    for i in range(x.size):
        v = x[i]
        k = 0
        for j in range(m):
            k += edges[j] <= v
        counts[k] += 1


def _as_float_array(values: Any) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    return arr.ravel() if arr.ndim != 1 else arr


def category(value: Any) -> str | None:
    """The string key of a category value; ``None`` for missing (``None``, NaN).

    Booleans are ``"true"``/``"false"`` (as in JSON) and integral floats lose their ``.0``, so
    that a reference column read from Parquet or CSV and the same values arriving as JSON agree.

    >>> category(True), category(3.0), category(7), category(float("nan")), category("a")
    ('true', '3', '7', None, 'a')
    """
    if type(value) is str or value is None:
        return value
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)):
        if value != value:
            return None
        return str(int(value)) if float(value).is_integer() else str(value)
    return str(value)


def count_categories(values: Any) -> tuple[dict[str, int], int]:
    """Count categories in a batch; ``None`` and NaN are missing.

    Category keys are strings made by :func:`category` (``True`` -> ``"true"``, ``3`` and
    ``3.0`` -> ``"3"``). Raw values are counted first and converted once per distinct value.

    Returns
    -------
    counts, n_missing

    Examples
    --------
    >>> count_categories(["x", None, "y", "x", float("nan"), 3])
    ({'x': 2, 'y': 1, '3': 1}, 2)
    """
    if isinstance(values, np.ndarray) and values.dtype.kind in "biuf":
        flat = values.ravel()
        n_missing = 0
        if flat.dtype.kind == "f":
            nan = np.isnan(flat)
            n_missing = int(nan.sum())
            flat = flat[~nan]
        uniq, cnt = np.unique(flat, return_counts=True)
        counts_by_key: dict[str, int] = {}
        for u, c in zip(uniq.tolist(), cnt.tolist()):
            k = category(u)
            counts_by_key[k] = counts_by_key.get(k, 0) + int(c)
        return counts_by_key, n_missing
    if isinstance(values, np.ndarray):
        values = values.ravel().tolist()
    elif isinstance(values, str) or not isinstance(values, Iterable):
        raise TypeError(f"values must be an array or a list of categories, got {type(values).__name__}")
    raw = Counter(values)
    counts: dict[str, int] = {}
    n_missing = 0
    for key, c in raw.items():
        k = category(key)
        if k is None:
            n_missing += c
            continue
        counts[k] = counts.get(k, 0) + c
    return counts, n_missing


class NumericAccumulator:
    """Window state of one numeric feature.

    Parameters
    ----------
    edges
        Inner bin edges (sorted, strictly increasing) of the reference profile. Bin ``i`` holds
        ``edges[i-1] <= x < edges[i]``; the first and last bins are open-ended.
    capacity
        Reservoir capacity: the number of raw values kept for the exact tests.
    seed
        Seed of the reservoir's key generator.

    Attributes
    ----------
    counts : np.ndarray
        Counts per bin (int64), ``len(edges) + 1`` of them.
    n : int
        Values seen, missing included.
    n_missing : int
        Non-finite values seen (NaN, +-inf, ``None``).
    """

    __slots__ = (
        "edges",
        "capacity",
        "seed",
        "counts",
        "n",
        "n_missing",
        "mean",
        "m2",
        "min",
        "max",
        "_values",
        "_keys",
        "_fill",
        "_threshold",
        "_rng",
    )

    def __init__(self, edges: np.ndarray, capacity: int = 10_000, seed: int = 0) -> None:
        edges = np.asarray(edges, dtype=np.float64)
        if edges.ndim != 1 or (edges.size > 1 and not np.all(np.diff(edges) > 0)):
            raise ValueError(f"edges must be a 1-d strictly increasing array, got {edges!r}")
        if not isinstance(capacity, (int, np.integer)) or capacity < 1:
            raise ValueError(f"capacity must be an int >= 1, got {capacity!r}")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        self.edges = edges
        self.capacity = int(capacity)
        self.seed = int(seed)
        self.counts = np.zeros(edges.size + 1, dtype=np.int64)
        self.n = 0
        self.n_missing = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.min = math.inf
        self.max = -math.inf
        self._values = np.empty(0, dtype=np.float64)
        self._keys = np.empty(0, dtype=np.float64)
        self._fill = 0
        self._threshold = math.inf
        self._rng = _new_generator(self.seed)

    @property
    def n_valid(self) -> int:
        """Non-missing values seen."""
        return self.n - self.n_missing

    @property
    def variance(self) -> float:
        """Population variance (ddof=0) of the non-missing values; NaN when there are none."""
        return self.m2 / self.n_valid if self.n_valid else math.nan

    @property
    def std(self) -> float:
        """Population standard deviation (ddof=0); NaN when there are no values."""
        return math.sqrt(self.variance) if self.n_valid else math.nan

    @property
    def is_exact(self) -> bool:
        """Whether the reservoir holds every non-missing value of the window."""
        return self._sample_size() == self.n_valid

    def update(self, values: Any) -> NumericAccumulator:
        """Add a batch of values (array-like; non-finite values are counted as missing)."""
        x = _as_float_array(values)
        total = x.size
        if total == 0:
            return self
        n_ok = total
        batch_sum = float(np.add.reduce(x))
        # A finite sum proves every value finite, which skips the mask in the common case.
        if not math.isfinite(batch_sum):
            finite = np.isfinite(x)
            n_ok = int(np.count_nonzero(finite))
            if n_ok != total:
                x = x[finite]
            batch_sum = float(np.add.reduce(x)) if n_ok else 0.0
        self.n += total
        self.n_missing += total - n_ok
        if n_ok == 0:
            return self
        if self.edges.size <= _LINEAR_EDGES:
            _add_bin_counts(self.edges, x, self.counts)
        else:
            self.counts += np.bincount(np.searchsorted(self.edges, x, side="right"), minlength=self.counts.size)
        mb = batch_sum / n_ok
        d = x - mb
        # Square-and-sum rather than np.dot: a BLAS call on a batch may wake OpenBLAS threads.
        np.square(d, out=d)
        m2b = float(d.sum())
        self._combine_moments(n_ok, mb, m2b, float(x.min()), float(x.max()))
        keys = self._rng.random(n_ok)
        if self._threshold < math.inf:
            keep = keys < self._threshold
            x, keys = x[keep], keys[keep]
        self._append(x, keys)
        return self

    def _combine_moments(self, nb: int, mb: float, m2b: float, lo: float, hi: float) -> None:
        na = self.n_valid - nb
        if na == 0:
            self.mean, self.m2 = mb, m2b
        else:
            self.mean, self.m2 = _chan(na, self.mean, self.m2, nb, mb, m2b)
        self.min = min(self.min, lo)
        self.max = max(self.max, hi)

    def _append(self, x: np.ndarray, keys: np.ndarray) -> None:
        end = self._fill + x.size
        if end <= 2 * self.capacity:
            if end > self._values.size:
                size = min(2 * self.capacity, max(end, 2 * self._values.size, 64))
                self._values = _grown(self._values[: self._fill], size)
                self._keys = _grown(self._keys[: self._fill], size)
            self._values[self._fill : end] = x
            self._keys[self._fill : end] = keys
            self._fill = end
            return
        values = np.concatenate((self._values[: self._fill], x))
        allkeys = np.concatenate((self._keys[: self._fill], keys))
        self._set_bottom_k(values, allkeys)

    def _set_bottom_k(self, values: np.ndarray, keys: np.ndarray, break_ties: bool = False) -> None:
        k = self.capacity
        if values.size > k:
            if break_ties:
                # Merged keys can tie (equal seeds); ordering ties by value keeps merge commutative.
                idx = np.lexsort((values, keys))[:k]
            else:
                idx = np.argpartition(keys, k - 1)[:k]
            values, keys = values[idx], keys[idx]
            self._threshold = float(keys.max())
        size = max(values.size, min(2 * k, 64))
        self._values = _grown(values, size)
        self._keys = _grown(keys, size)
        self._fill = values.size

    def _compact(self) -> None:
        if self._fill > self.capacity:
            self._set_bottom_k(self._values[: self._fill].copy(), self._keys[: self._fill].copy())

    def _sample_size(self) -> int:
        return min(self._fill, self.capacity)

    def _sample_view(self) -> np.ndarray:
        self._compact()
        return self._values[: self._fill]

    def sample(self) -> np.ndarray:
        """The reservoir: a uniform sample (all values while they fit) of the window."""
        return self._sample_view().copy()

    def merge(self, other: NumericAccumulator) -> NumericAccumulator:
        """A new accumulator equal to one fed this window's values and ``other``'s."""
        if not isinstance(other, NumericAccumulator):
            raise TypeError(f"other must be a NumericAccumulator, got {type(other).__name__}")
        if self.capacity != other.capacity or not np.array_equal(self.edges, other.edges):
            raise ValueError("other must share this accumulator's edges and capacity")
        lo, hi = sorted((self.seed, other.seed))
        out = NumericAccumulator.__new__(NumericAccumulator)
        out.edges = self.edges
        out.capacity = self.capacity
        out.seed = self.seed if self.seed == other.seed else int(
            np.random.SeedSequence([lo, hi]).generate_state(1, np.uint32)[0]
        )
        out.counts = self.counts + other.counts
        out.n = self.n + other.n
        out.n_missing = self.n_missing + other.n_missing
        na, nb = self.n_valid, other.n_valid
        if na == 0 or nb == 0:
            out.mean, out.m2 = (other.mean, other.m2) if na == 0 else (self.mean, self.m2)
        else:
            out.mean, out.m2 = _chan(na, self.mean, self.m2, nb, other.mean, other.m2)
        out.min = min(self.min, other.min)
        out.max = max(self.max, other.max)
        out._threshold = min(self._threshold, other._threshold)
        out._rng = _new_generator([lo, hi, out.n_valid])
        values = np.concatenate((self._values[: self._fill], other._values[: other._fill]))
        keys = np.concatenate((self._keys[: self._fill], other._keys[: other._fill]))
        out._set_bottom_k(values, keys, break_ties=True)
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NumericAccumulator):
            return NotImplemented
        return (
            self.capacity == other.capacity
            and np.array_equal(self.edges, other.edges)
            and np.array_equal(self.counts, other.counts)
            and self.n == other.n
            and self.n_missing == other.n_missing
            and self.mean == other.mean
            and self.m2 == other.m2
            and self.min == other.min
            and self.max == other.max
            and np.array_equal(np.sort(self._sample_view()), np.sort(other._sample_view()))
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"NumericAccumulator(n={self.n}, n_missing={self.n_missing}, bins={self.counts.size}, "
            f"reservoir={self._sample_size()}/{self.capacity})"
        )

    def to_bytes(self) -> bytes:
        """Compact msgpack serialisation (arrays as raw little-endian bytes)."""
        self._compact()
        state = self._rng.bit_generator.state
        return msgspec.msgpack.encode(
            {
                "v": _FORMAT_VERSION,
                "kind": "numeric",
                "edges": self.edges.astype("<f8").tobytes(),
                "capacity": self.capacity,
                "seed": self.seed,
                "counts": self.counts.astype("<i8").tobytes(),
                "n": self.n,
                "n_missing": self.n_missing,
                "mean": self.mean,
                "m2": self.m2,
                "min": self.min,
                "max": self.max,
                "values": self._values[: self._fill].astype("<f8").tobytes(),
                "keys": self._keys[: self._fill].astype("<f8").tobytes(),
                "threshold": self._threshold,
                "rng": [
                    str(state["state"]["state"]),
                    str(state["state"]["inc"]),
                    state["has_uint32"],
                    state["uinteger"],
                ],
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> NumericAccumulator:
        """Inverse of :meth:`to_bytes`."""
        d = _decode(data, "numeric")
        out = cls(np.frombuffer(d["edges"], dtype="<f8").astype(np.float64), d["capacity"], d["seed"])
        out.counts = np.frombuffer(d["counts"], dtype="<i8").astype(np.int64)
        out.n, out.n_missing = d["n"], d["n_missing"]
        out.mean, out.m2, out.min, out.max = d["mean"], d["m2"], d["min"], d["max"]
        values = np.frombuffer(d["values"], dtype="<f8").astype(np.float64)
        keys = np.frombuffer(d["keys"], dtype="<f8").astype(np.float64)
        out._threshold = d["threshold"]
        out._values, out._keys, out._fill = values, keys, values.size
        s, inc, has32, uint = d["rng"]
        out._rng.bit_generator.state = {
            "bit_generator": "PCG64",
            "state": {"state": int(s), "inc": int(inc)},
            "has_uint32": has32,
            "uinteger": uint,
        }
        return out


def _chan(na: int, ma: float, m2a: float, nb: int, mb: float, m2b: float) -> tuple[float, float]:
    n = na + nb
    delta = mb - ma
    return (na * ma + nb * mb) / n, m2a + m2b + delta * delta * (na * nb / n)


def _decode(data: bytes, kind: str) -> dict[str, Any]:
    try:
        d = msgspec.msgpack.decode(data)
    except msgspec.DecodeError as exc:
        raise ValueError(f"data is not a serialised accumulator: {exc}") from None
    if not isinstance(d, dict) or d.get("kind") != kind or d.get("v") != _FORMAT_VERSION:
        raise ValueError(
            f"data must be a version {_FORMAT_VERSION} {kind} accumulator, got "
            f"kind={d.get('kind') if isinstance(d, dict) else None!r}"
        )
    return d


class CategoricalAccumulator:
    """Window state of one categorical feature: category counts and the missing count.

    Categories are compared as strings (see :func:`count_categories`); categories the
    reference never saw are counted like any other and handled by the tests.
    """

    __slots__ = ("counts", "n", "n_missing")

    def __init__(self, counts: Mapping[str, int] | None = None, n_missing: int = 0) -> None:
        self.counts: dict[str, int] = {str(k): int(v) for k, v in (counts or {}).items() if v}
        if any(v < 0 for v in self.counts.values()):
            raise ValueError(f"counts must be >= 0, got {counts!r}")
        if n_missing < 0:
            raise ValueError(f"n_missing must be >= 0, got {n_missing!r}")
        self.n_missing = int(n_missing)
        self.n = sum(self.counts.values()) + self.n_missing

    @property
    def n_valid(self) -> int:
        """Non-missing values seen."""
        return self.n - self.n_missing

    @property
    def is_exact(self) -> bool:
        """Always ``True``: category counts are exact."""
        return True

    def update(self, values: Any) -> CategoricalAccumulator:
        """Add a batch of categories (list or array; ``None``/NaN are missing)."""
        counts, n_missing = count_categories(values)
        own = self.counts
        for k, c in counts.items():
            own[k] = own.get(k, 0) + c
        self.n_missing += n_missing
        self.n += n_missing + sum(counts.values())
        return self

    def merge(self, other: CategoricalAccumulator) -> CategoricalAccumulator:
        """A new accumulator equal to one fed this window's values and ``other``'s."""
        if not isinstance(other, CategoricalAccumulator):
            raise TypeError(f"other must be a CategoricalAccumulator, got {type(other).__name__}")
        counts = dict(self.counts)
        for k, c in other.counts.items():
            counts[k] = counts.get(k, 0) + c
        return CategoricalAccumulator(counts, self.n_missing + other.n_missing)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CategoricalAccumulator):
            return NotImplemented
        return self.counts == other.counts and self.n_missing == other.n_missing

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"CategoricalAccumulator(n={self.n}, n_missing={self.n_missing}, categories={len(self.counts)})"

    def to_bytes(self) -> bytes:
        """Compact msgpack serialisation."""
        return msgspec.msgpack.encode(
            {"v": _FORMAT_VERSION, "kind": "categorical", "counts": self.counts, "n_missing": self.n_missing}
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> CategoricalAccumulator:
        """Inverse of :meth:`to_bytes`."""
        d = _decode(data, "categorical")
        return cls(d["counts"], d["n_missing"])
