"""Mergeable window accumulators for model performance metrics.

One accumulator holds everything a window needs to report its classification or regression
metrics, in state that never grows with the number of rows (beyond a bounded reservoir for
ROC AUC). Two accumulators of the same kind merge into one that equals accumulating the
concatenated rows, so partial windows from several partitions, or a window that keeps
receiving late labels, combine without touching raw events.

Exactness
---------
* Confusion counts and row counts merge exactly.
* Means and sums of squared deviations (log loss, Brier, errors, label variance) are kept as
  :class:`Moments` and combined with Chan et al.'s parallel formula: exact up to floating-point
  rounding (relative differences around 1e-15), and numerically stable, unlike raw sums of
  squares.
* ROC AUC is computed on a bounded reservoir of ``(score, label)`` pairs. While a window holds at
  most ``reservoir_size`` scored rows the reservoir holds all of them and the AUC is exact. Beyond
  that it is a uniform random sample without replacement (bottom-k sampling on a deterministic
  hash of each row, so a replay gives the same sample) and the AUC is an estimate whose standard
  error is about the Hanley–McNeil standard error at the sample's class counts times
  ``sqrt(1 - m / N)`` (m rows sampled out of N): for AUC 0.8, a 20,000-row sample with 10 %
  positives gives about 0.005. ``metrics()["roc_auc_n"]`` reports m.

Missing and invalid values
--------------------------
A row whose label, score or prediction is missing (``None``/NaN) or non-finite (±inf) is
excluded and counted in ``n_invalid``: bad input never stops the stream. A value of the wrong
kind (a probability outside [0, 1], a class not in ``classes``, arrays of different lengths)
is a caller error and raises ``ValueError`` naming the argument.

Undefined metrics are NaN, never an exception: every metric of an empty window; precision with no
predicted positive; recall with no positive; ROC AUC with one class present; R² with constant
labels. Macro averages skip undefined per-class values, like scikit-learn's
``zero_division=np.nan``.

"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import msgspec
import numpy as np
import pandas as pd

__all__ = [
    "BinaryAccumulator",
    "Moments",
    "MulticlassAccumulator",
    "RegressionAccumulator",
    "accumulator_from_bytes",
]

_EPS = float(np.finfo(np.float64).eps)
_FORMAT_VERSION = 1


def _nan_div(num: float, den: float) -> float:
    return num / den if den else math.nan


def _as_1d(values: Any, name: str, dtype: Any = None) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a 1-d array of numbers, got {values!r:.80}") from exc
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-d, got an array of shape {arr.shape}")
    return arr


def _check_lengths(**arrays: np.ndarray | None) -> int:
    lengths = {name: len(a) for name, a in arrays.items() if a is not None}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"arrays must have the same length, got {lengths}")
    return next(iter(lengths.values()))


def _missing(arr: np.ndarray) -> np.ndarray:
    """Mask of missing entries: NaN / ±inf in float arrays, None / NaN in object arrays."""
    if arr.dtype.kind == "f":
        return ~np.isfinite(arr)
    if arr.dtype.kind in "biu":
        return np.zeros(arr.shape, dtype=bool)
    if arr.dtype.kind == "O":
        return np.asarray(pd.isna(arr), dtype=bool)
    return np.zeros(arr.shape, dtype=bool)


def _check_positive_label(label: Any) -> Any:
    if label is None or (isinstance(label, float) and math.isnan(label)):
        raise ValueError(f"positive_label must be a label value, got {label!r}")
    return label


def _is_label(values: np.ndarray, label: Any) -> np.ndarray:
    """Boolean mask of ``values == label`` for numeric, string and object arrays."""
    if values.dtype.kind in "biuf" and isinstance(label, (bool, int, float, np.number)):
        return values == label
    return np.asarray(values == np.asarray(label, dtype=object), dtype=bool)


def _group_ids(groups: Any, n: int, n_groups: int, name: str = "groups") -> np.ndarray:
    """``groups`` (the parameter ``name``) as an index array of ``n`` rows into ``n_groups``
    accumulators (``None``: all in the first)."""
    if groups is None:
        return np.zeros(n, dtype=np.intp)
    ids = np.asarray(groups)
    if ids.shape != (n,) or ids.dtype.kind not in "iu":
        raise ValueError(f"{name} must be a 1-d array of {n} ints, got {ids.dtype} of shape {ids.shape}")
    if n and (ids.min() < 0 or ids.max() >= n_groups):
        raise ValueError(f"{name} must index accumulators (0 to {n_groups - 1}), got {ids.min()} to {ids.max()}")
    return ids.astype(np.intp, copy=False)


def _same_kind(accumulators: Sequence[Any], kind: type, *params: str) -> Any:
    """The first of ``accumulators``, after checking that all are ``kind`` with equal ``params``."""
    if not len(accumulators):
        raise ValueError(f"accumulators must hold at least one {kind.__name__}, got none")
    first = accumulators[0]
    for acc in accumulators:
        if not isinstance(acc, kind) or any(getattr(acc, name) != getattr(first, name) for name in params):
            raise ValueError(
                f"accumulators must all be {kind.__name__}s with the same {' and '.join(params)}, got {acc!r}"
            )
    return first


def _count_invalid(accumulators: Sequence[Any], ids: np.ndarray) -> None:
    """Add the invalid rows of each group (``ids``: the group of each) to its accumulator."""
    for acc, count in zip(accumulators, np.bincount(ids, minlength=len(accumulators)).tolist()):
        acc.n_invalid += count


def _spans(ids: np.ndarray, n_groups: int) -> tuple[np.ndarray | None, list[int]]:
    """The rows ordered by group (keeping their order within a group; ``None`` when already
    ordered) and where each group's rows start in that order (``n_groups + 1`` bounds)."""
    counts = np.bincount(ids, minlength=n_groups)
    bounds = [0, *np.cumsum(counts).tolist()]
    order = None if n_groups == 1 or bool(np.all(ids[1:] >= ids[:-1])) else np.argsort(ids, kind="stable")
    return order, bounds


def _check_probabilities(p: np.ndarray, name: str) -> None:
    if p.size and (p.min() < 0.0 or p.max() > 1.0):
        bad = p[(p < 0.0) | (p > 1.0)][0]
        raise ValueError(f"{name} must hold probabilities in [0, 1], got {bad!r}")


class Moments:
    """Count, mean and sum of squared deviations of a stream of numbers, exactly mergeable.

    Batches are combined with the parallel formula of Chan, Golub and LeVeque (1979), which
    is stable where a running sum of squares would lose precision.

    Parameters
    ----------
    n
        Number of values.
    mean
        Their mean (0.0 when ``n == 0``).
    m2
        Sum of squared deviations from the mean.

    Examples
    --------
    >>> a = Moments.of([1.0, 2.0]); b = Moments.of([3.0, 4.0, 5.0])
    >>> m = a.merge(b)
    >>> m.n, m.mean, m.variance()
    (5, 3.0, 2.5)

    """

    __slots__ = ("n", "mean", "m2")

    def __init__(self, n: int = 0, mean: float = 0.0, m2: float = 0.0) -> None:
        self.n = int(n)
        self.mean = float(mean)
        self.m2 = float(m2)

    @classmethod
    def of(cls, values: Any) -> Moments:
        x = np.asarray(values, dtype=np.float64)
        if x.size == 0:
            return cls()
        mean = float(np.add.reduce(x)) / x.size
        d = x - mean
        return cls(x.size, mean, float((d * d).sum()))

    @classmethod
    def of_groups(cls, values: Any, groups: np.ndarray, n_groups: int) -> list[Moments]:
        """Moments of each group's values, ``values[groups == g]`` for ``g`` in ``range(n_groups)``.

        One group is :meth:`of` (pairwise summation); several are summed per group with
        ``np.bincount``, in one pass instead of a pass per group, so their last digits may
        differ from :meth:`of`'s.

        >>> [m.to_tuple() for m in Moments.of_groups([1.0, 5.0, 3.0], np.array([0, 1, 0]), 3)]
        [(2, 2.0, 2.0), (1, 5.0, 0.0), (0, 0.0, 0.0)]
        """
        if n_groups == 1:
            return [cls.of(values)]
        x = np.asarray(values, dtype=np.float64)
        n = np.bincount(groups, minlength=n_groups)
        mean = np.bincount(groups, weights=x, minlength=n_groups) / np.maximum(n, 1)
        d = x - mean[groups]
        m2 = np.bincount(groups, weights=d * d, minlength=n_groups)
        return [cls(k, mu, s) for k, mu, s in zip(n.tolist(), mean.tolist(), m2.tolist())]

    def update(self, values: Any) -> Moments:
        """Add a batch of values in place."""
        return self.add(Moments.of(values))

    def add(self, other: Moments) -> Moments:
        """Add another stream's moments in place."""
        self.n, self.mean, self.m2 = self._combine(other)
        return self

    def merge(self, other: Moments) -> Moments:
        """Moments of the union of both streams."""
        return Moments(*self._combine(other))

    def _combine(self, other: Moments) -> tuple[int, float, float]:
        if other.n == 0:
            return self.n, self.mean, self.m2
        if self.n == 0:
            return other.n, other.mean, other.m2
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.n / n)
        m2 = self.m2 + other.m2 + delta * delta * (self.n * other.n / n)
        return n, mean, m2

    def variance(self, ddof: int = 1) -> float:
        """Variance with ``ddof`` delta degrees of freedom; NaN when ``n <= ddof``."""
        return self.m2 / (self.n - ddof) if self.n > ddof else math.nan

    def to_tuple(self) -> tuple[int, float, float]:
        return (self.n, self.mean, self.m2)

    def copy(self) -> Moments:
        return Moments(self.n, self.mean, self.m2)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Moments):
            return NotImplemented
        return self.to_tuple() == other.to_tuple()

    def __repr__(self) -> str:
        return f"Moments(n={self.n}, mean={self.mean!r}, m2={self.m2!r})"


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _sample_keys(scores: np.ndarray, labels: np.ndarray, start: int, seed: int) -> np.ndarray:
    # A hash of (seed, ordinal, score, label) instead of an RNG: replays and restarts draw the
    # same sample, and partitions sharing a seed still draw (almost surely) different keys.
    ordinal = np.arange(start, start + len(scores), dtype=np.uint64)
    x = _mix64(ordinal * _GOLDEN + np.uint64(seed & 0xFFFFFFFFFFFFFFFF))
    x = _mix64(x ^ np.ascontiguousarray(scores, dtype=np.float64).view(np.uint64)
               ^ labels.astype(np.uint64))
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


class _Reservoir:
    """Bounded uniform sample of (score, label) pairs; all of them while they fit."""

    __slots__ = ("capacity", "seed", "n_seen", "size", "scores", "labels", "keys", "threshold")

    def __init__(self, capacity: int, seed: int) -> None:
        self.capacity = capacity
        self.seed = seed
        self.n_seen = 0
        self.size = 0
        self.scores = np.empty(0, dtype=np.float64)
        self.labels = np.empty(0, dtype=np.uint8)
        self.keys: np.ndarray | None = None
        self.threshold = math.inf

    def _reserve(self, needed: int, limit: int) -> None:
        if needed <= len(self.scores):
            return
        cap = min(max(needed, 2 * len(self.scores), 256), limit)
        for name in ("scores", "labels") + (("keys",) if self.keys is not None else ()):
            old = getattr(self, name)
            new = np.empty(cap, dtype=old.dtype)
            new[: self.size] = old[: self.size]
            setattr(self, name, new)

    def _append(self, scores: np.ndarray, labels: np.ndarray, keys: np.ndarray | None) -> None:
        m = len(scores)
        self._reserve(self.size + m, 2 * self.capacity if keys is not None else self.capacity)
        self.scores[self.size : self.size + m] = scores
        self.labels[self.size : self.size + m] = labels
        if keys is not None:
            self.keys[self.size : self.size + m] = keys
        self.size += m

    def add(self, scores: np.ndarray, labels: np.ndarray) -> None:
        m = len(scores)
        if m == 0:
            return
        if self.keys is None and self.size + m <= self.capacity:
            self._append(scores, labels, None)
            self.n_seen += m
            return
        if self.keys is None:
            self._assign_keys()
        keys = _sample_keys(scores, labels, self.n_seen, self.seed)
        self.n_seen += m
        keep = keys < self.threshold
        if not keep.all():
            scores, labels, keys = scores[keep], labels[keep], keys[keep]
        # Candidates are buffered up to 2 x capacity and compacted in bulk: O(1) amortised per row.
        while len(scores):
            room = 2 * self.capacity - self.size
            self._append(scores[:room], labels[:room], keys[:room])
            scores, labels, keys = scores[room:], labels[room:], keys[room:]
            if self.size >= 2 * self.capacity:
                self.compact()
                if len(keys):
                    keep = keys < self.threshold
                    scores, labels, keys = scores[keep], labels[keep], keys[keep]

    def _assign_keys(self) -> None:
        keys = _sample_keys(self.scores[: self.size], self.labels[: self.size], 0, self.seed)
        self.keys = np.empty(len(self.scores), dtype=np.float64)
        self.keys[: self.size] = keys

    def compact(self) -> None:
        """Keep the rows with the ``capacity`` smallest keys, ordered by key (canonical form)."""
        if self.keys is None:
            return
        keys = self.keys[: self.size]
        if self.size > self.capacity:
            idx = np.argpartition(keys, self.capacity - 1)[: self.capacity]
            idx = idx[np.argsort(keys[idx], kind="stable")]
        else:
            idx = np.argsort(keys, kind="stable")
        self.scores = self.scores[idx]
        self.labels = self.labels[idx]
        self.keys = keys[idx]
        self.size = len(idx)
        if self.size >= self.capacity:
            self.threshold = float(self.keys[-1])

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        self.compact()
        return self.scores[: self.size], self.labels[: self.size]

    def merge(self, other: _Reservoir) -> _Reservoir:
        out = _Reservoir(self.capacity, self.seed)
        parts = [r for r in (self, other) if r.size]
        out.n_seen = self.n_seen + other.n_seen
        if self.keys is None and other.keys is None and out.n_seen <= out.capacity:
            for r in parts:
                out._append(r.scores[: r.size], r.labels[: r.size], None)
            return out
        out.keys = np.empty(0, dtype=np.float64)
        for r in parts:
            keys = (r.keys[: r.size] if r.keys is not None
                    else _sample_keys(r.scores[: r.size], r.labels[: r.size], 0, r.seed))
            out._reserve(out.size + r.size, out.size + r.size)
            out._append(r.scores[: r.size], r.labels[: r.size], keys)
        out.compact()
        return out

    def copy(self) -> _Reservoir:
        out = _Reservoir(self.capacity, self.seed)
        out.n_seen, out.size, out.threshold = self.n_seen, self.size, self.threshold
        out.scores = self.scores[: self.size].copy()
        out.labels = self.labels[: self.size].copy()
        out.keys = None if self.keys is None else self.keys[: self.size].copy()
        return out

    def state(self) -> dict[str, Any]:
        self.compact()
        return {
            "n_seen": self.n_seen,
            "scores": self.scores[: self.size].tobytes(),
            "labels": self.labels[: self.size].tobytes(),
            "keys": None if self.keys is None else self.keys[: self.size].tobytes(),
        }

    @classmethod
    def from_state(cls, capacity: int, seed: int, state: dict[str, Any]) -> _Reservoir:
        out = cls(capacity, seed)
        out.n_seen = state["n_seen"]
        out.scores = np.frombuffer(state["scores"], dtype=np.float64).copy()
        out.labels = np.frombuffer(state["labels"], dtype=np.uint8).copy()
        out.size = len(out.scores)
        if state["keys"] is not None:
            out.keys = np.frombuffer(state["keys"], dtype=np.float64).copy()
            if out.size >= capacity:
                out.threshold = float(out.keys[-1])
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Reservoir):
            return NotImplemented
        a, b = self.state(), other.state()
        return (self.capacity, self.seed) == (other.capacity, other.seed) and a == b


def _encode(kind: str, payload: dict[str, Any]) -> bytes:
    return msgspec.msgpack.encode({"kind": kind, "version": _FORMAT_VERSION, **payload})


def _decode(data: bytes, kind: str) -> dict[str, Any]:
    try:
        payload = msgspec.msgpack.decode(data)
    except msgspec.DecodeError as exc:
        raise ValueError(f"data is not a serialised accumulator: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("kind") != kind:
        got = payload.get("kind") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"data must hold a {kind!r} accumulator, got {got!r}")
    if payload.get("version") != _FORMAT_VERSION:
        raise ValueError(
            f"data has format version {payload.get('version')!r}, expected {_FORMAT_VERSION}"
        )
    return payload


def _moments_from(state: Sequence[Any]) -> Moments:
    return Moments(*state)


def _mid_ranks(values: np.ndarray) -> np.ndarray:
    """``scipy.stats.rankdata(values)`` (ties get the mean of their ranks), value for value.

    Written out because a window's AUC is recomputed on every re-emission, mostly over a few
    hundred scores, where scipy's argument handling cost four times the ranking itself.

    >>> _mid_ranks(np.array([0.3, 0.1, 0.3, 0.2])).tolist()
    [3.5, 1.0, 3.5, 2.0]
    """
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    first = np.empty(ordered.size, dtype=bool)
    first[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    ends = np.append(starts[1:], ordered.size)
    ranks = np.empty(ordered.size)
    ranks[order] = ((starts + ends + 1) / 2.0)[np.cumsum(first) - 1]
    return ranks


class BinaryAccumulator:
    """Performance of a binary classifier over a window of labeled rows.

    Parameters
    ----------
    positive_label
        The label of the positive class. Rows whose label equals it are positive; every other
        non-missing label is negative.
    threshold
        Predicted class is positive when ``score >= threshold`` (unless ``y_pred`` is given).
    reservoir_size
        Maximum number of ``(score, label)`` pairs kept for ROC AUC. The AUC is exact while the
        window has at most this many scored rows, a uniform-sample estimate beyond.
    seed
        Salt of the reservoir's sampling hash.

    Examples
    --------
    >>> acc = BinaryAccumulator()
    >>> _ = acc.update([1, 0, 1, 0], [0.9, 0.2, 0.4, 0.6])
    >>> m = acc.metrics()
    >>> m["accuracy"], m["precision"], m["recall"], m["roc_auc"]
    (0.5, 0.5, 0.5, 0.75)
    >>> acc.confusion
    {'tp': 1, 'fp': 1, 'tn': 1, 'fn': 1}
    >>> BinaryAccumulator.from_bytes(acc.to_bytes()) == acc
    True

    """

    kind = "binary"

    def __init__(
        self,
        positive_label: Any = 1,
        threshold: float = 0.5,
        reservoir_size: int = 20_000,
        seed: int = 0,
    ) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not (
            0.0 <= threshold <= 1.0
        ):
            raise ValueError(f"threshold must be a number in [0, 1], got {threshold!r}")
        if isinstance(reservoir_size, bool) or not isinstance(reservoir_size, int) or (
            reservoir_size < 1
        ):
            raise ValueError(f"reservoir_size must be an int >= 1, got {reservoir_size!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        self.positive_label = _check_positive_label(positive_label)
        self.threshold = float(threshold)
        self.reservoir_size = reservoir_size
        self.seed = seed
        self._counts = np.zeros(4, dtype=np.int64)  # tp, fp, tn, fn
        self.n_invalid = 0
        self.n_scored_positive = 0
        self._log_loss = Moments()
        self._brier = Moments()
        self._reservoir = _Reservoir(reservoir_size, seed)

    def update(
        self, y_true: Any, y_score: Any = None, *, y_pred: Any = None
    ) -> BinaryAccumulator:
        """Add a batch of labeled rows.

        Parameters
        ----------
        y_true
            Labels, 1-d.
        y_score
            Probability of the positive class per row, in [0, 1]. Optional when ``y_pred`` is
            given; score-based metrics (ROC AUC, log loss, Brier) then use scored batches only.
        y_pred
            Predicted labels (same encoding as ``y_true``); defaults to
            ``y_score >= threshold``.

        """
        self.update_groups([self], None, y_true, y_score, y_pred=y_pred)
        return self

    @staticmethod
    def update_groups(
        accumulators: Sequence[BinaryAccumulator], groups: Any, y_true: Any, y_score: Any = None, *, y_pred: Any = None
    ) -> None:
        """Add rows to several accumulators in one pass: row ``i`` goes to ``accumulators[groups[i]]``.

        The same as each accumulator's :meth:`update` with its rows, in their order (the loss
        means up to their last digits, see :meth:`Moments.of_groups`), without a pass per
        accumulator: a batch of joined rows brings a few rows to each of many segments. The
        accumulators must share ``positive_label`` and ``threshold``.

        >>> a, b = BinaryAccumulator(), BinaryAccumulator()
        >>> BinaryAccumulator.update_groups([a, b], np.array([0, 1, 0]), [1, 0, 0], [0.9, 0.2, 0.7])
        >>> a.confusion, b.confusion
        ({'tp': 1, 'fp': 1, 'tn': 0, 'fn': 0}, {'tp': 0, 'fp': 0, 'tn': 1, 'fn': 0})
        """
        first = _same_kind(accumulators, BinaryAccumulator, "positive_label", "threshold")
        if y_score is None and y_pred is None:
            raise ValueError("update needs y_score or y_pred, got neither")
        yt = _as_1d(y_true, "y_true")
        ys = None if y_score is None else _as_1d(y_score, "y_score", np.float64)
        yp = None if y_pred is None else _as_1d(y_pred, "y_pred")
        n = _check_lengths(y_true=yt, y_score=ys, y_pred=yp)
        if n == 0:
            return
        n_groups = len(accumulators)
        ids = _group_ids(groups, n, n_groups)
        bad = _missing(yt)
        if ys is not None:
            bad |= ~np.isfinite(ys)
        if yp is not None:
            bad |= _missing(yp)
        if bad.any():
            _count_invalid(accumulators, ids[bad])
            ok = ~bad
            yt, ids = yt[ok], ids[ok]
            ys = None if ys is None else ys[ok]
            yp = None if yp is None else yp[ok]
        if ys is not None:
            _check_probabilities(ys, "y_score")
        truth = _is_label(yt, first.positive_label)
        pred = ys >= first.threshold if yp is None else _is_label(yp, first.positive_label)
        # Confusion cell index tp=0, fp=1, tn=2, fn=3 from (truth, pred) in one bincount.
        cell = np.where(pred, np.where(truth, 0, 1), np.where(truth, 3, 2))
        counts = np.bincount(ids * 4 + cell, minlength=4 * n_groups).reshape(n_groups, 4)
        for acc, row in zip(accumulators, counts):
            acc._counts += row
        if ys is None or not len(ys):
            return
        comp = 1.0 - ys
        losses = Moments.of_groups(-np.log(np.clip(np.where(truth, ys, comp), _EPS, 1.0 - _EPS)), ids, n_groups)
        miss = np.where(truth, comp, ys)
        briers = Moments.of_groups(miss * miss, ids, n_groups)
        positives = np.bincount(ids[truth], minlength=n_groups).tolist()
        order, bounds = _spans(ids, n_groups)
        if order is not None:
            ys, truth = ys[order], truth[order]
        flags = truth.view(np.uint8)
        for k, acc in enumerate(accumulators):
            lo, hi = bounds[k], bounds[k + 1]
            if lo < hi:
                acc._log_loss.add(losses[k])
                acc._brier.add(briers[k])
                acc.n_scored_positive += positives[k]
                acc._reservoir.add(ys[lo:hi], flags[lo:hi])

    @property
    def n(self) -> int:
        """Number of valid rows accumulated."""
        return int(self._counts.sum())

    @property
    def n_scored(self) -> int:
        """Number of valid rows that carried a score."""
        return self._log_loss.n

    @property
    def confusion(self) -> dict[str, int]:
        """Confusion counts ``{"tp", "fp", "tn", "fn"}``."""
        tp, fp, tn, fn = (int(c) for c in self._counts)
        return {"tp": tp, "fp": fp, "tn": tn, "fn": fn}

    def confusion_matrix(self) -> np.ndarray:
        """Counts as scikit-learn's ``confusion_matrix``: ``[[tn, fp], [fn, tp]]``."""
        tp, fp, tn, fn = self._counts
        return np.array([[tn, fp], [fn, tp]], dtype=np.int64)

    @property
    def log_loss_moments(self) -> Moments:
        """Moments of the per-row log loss of scored rows."""
        return self._log_loss.copy()

    @property
    def brier_moments(self) -> Moments:
        """Moments of the per-row squared error ``(label - score)²`` of scored rows."""
        return self._brier.copy()

    def auc_sample(self) -> tuple[np.ndarray, np.ndarray]:
        """The reservoir's scores and 0/1 labels (all scored rows while they fit)."""
        scores, labels = self._reservoir.sample()
        return scores.copy(), labels.copy()

    def roc_auc(self) -> float:
        # Windows are re-emitted on every late label: the AUC is cached until the rows change.
        cached = getattr(self, "_auc_cache", None)
        if cached is not None and cached[0] == self.n_scored:
            return cached[1]
        scores, labels = self._reservoir.sample()
        n_pos = int(labels.sum())
        if n_pos == 0 or n_pos == len(labels):
            auc = math.nan
        else:
            # Mann-Whitney U / (n1 n0) from mid-ranks equals sklearn's roc_auc_score and avoids
            # building the ROC curve.
            ranks = _mid_ranks(scores)
            u = float(ranks[labels.astype(bool)].sum()) - n_pos * (n_pos + 1) / 2.0
            auc = u / (n_pos * (len(labels) - n_pos))
        self._auc_cache = (self.n_scored, auc)
        return auc

    def metrics(self) -> dict[str, float]:
        """Metrics of the window; undefined ones are NaN."""
        tp, fp, tn, fn = (int(c) for c in self._counts)
        n = tp + fp + tn + fn
        n_scored = self.n_scored
        return {
            "n": float(n),
            "n_invalid": float(self.n_invalid),
            "n_scored": float(n_scored),
            "positive_rate": _nan_div(tp + fn, n),
            "predicted_positive_rate": _nan_div(tp + fp, n),
            "accuracy": _nan_div(tp + tn, n),
            "precision": _nan_div(tp, tp + fp),
            "recall": _nan_div(tp, tp + fn),
            "f1": _nan_div(2 * tp, 2 * tp + fp + fn),
            "roc_auc": self.roc_auc(),
            "roc_auc_n": float(self._reservoir.size),
            "log_loss": self._log_loss.mean if n_scored else math.nan,
            "brier": self._brier.mean if n_scored else math.nan,
        }

    def _check_mergeable(self, other: Any) -> None:
        if not isinstance(other, BinaryAccumulator):
            raise TypeError(f"other must be a BinaryAccumulator, got {type(other).__name__}")
        mine = (self.positive_label, self.threshold, self.reservoir_size, self.seed)
        theirs = (other.positive_label, other.threshold, other.reservoir_size, other.seed)
        if mine != theirs:
            raise ValueError(
                "other must have the same (positive_label, threshold, reservoir_size, seed), "
                f"got {theirs} vs {mine}"
            )

    def merge(self, other: BinaryAccumulator) -> BinaryAccumulator:
        """A new accumulator holding the rows of both."""
        self._check_mergeable(other)
        out = self._empty_like()
        out._counts = self._counts + other._counts
        out.n_invalid = self.n_invalid + other.n_invalid
        out.n_scored_positive = self.n_scored_positive + other.n_scored_positive
        out._log_loss = self._log_loss.merge(other._log_loss)
        out._brier = self._brier.merge(other._brier)
        out._reservoir = self._reservoir.merge(other._reservoir)
        return out

    def _empty_like(self) -> BinaryAccumulator:
        return BinaryAccumulator(self.positive_label, self.threshold, self.reservoir_size,
                                 self.seed)

    def copy(self) -> BinaryAccumulator:
        out = self._empty_like()
        out._counts = self._counts.copy()
        out.n_invalid, out.n_scored_positive = self.n_invalid, self.n_scored_positive
        out._log_loss, out._brier = self._log_loss.copy(), self._brier.copy()
        out._reservoir = self._reservoir.copy()
        return out

    def to_bytes(self) -> bytes:
        """Compact MessagePack form (arrays as raw little-endian bytes)."""
        return _encode(self.kind, {
            "positive_label": self.positive_label,
            "threshold": self.threshold,
            "reservoir_size": self.reservoir_size,
            "seed": self.seed,
            "counts": self._counts.tolist(),
            "n_invalid": self.n_invalid,
            "n_scored_positive": self.n_scored_positive,
            "log_loss": self._log_loss.to_tuple(),
            "brier": self._brier.to_tuple(),
            "reservoir": self._reservoir.state(),
        })

    @classmethod
    def from_bytes(cls, data: bytes) -> BinaryAccumulator:
        s = _decode(data, cls.kind)
        out = cls(s["positive_label"], s["threshold"], s["reservoir_size"], s["seed"])
        out._counts = np.array(s["counts"], dtype=np.int64)
        out.n_invalid = s["n_invalid"]
        out.n_scored_positive = s["n_scored_positive"]
        out._log_loss = _moments_from(s["log_loss"])
        out._brier = _moments_from(s["brier"])
        out._reservoir = _Reservoir.from_state(out.reservoir_size, out.seed, s["reservoir"])
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BinaryAccumulator):
            return NotImplemented
        return (
            (self.positive_label, self.threshold, self.reservoir_size, self.seed)
            == (other.positive_label, other.threshold, other.reservoir_size, other.seed)
            and np.array_equal(self._counts, other._counts)
            and self.n_invalid == other.n_invalid
            and self.n_scored_positive == other.n_scored_positive
            and self._log_loss == other._log_loss
            and self._brier == other._brier
            and self._reservoir == other._reservoir
        )

    def __repr__(self) -> str:
        return f"BinaryAccumulator(n={self.n}, confusion={self.confusion})"


class MulticlassAccumulator:
    """Performance of a multiclass classifier over a window of labeled rows.

    Parameters
    ----------
    classes
        The class labels, all strings or all numbers, at least two. Columns of a probability
        matrix follow this order.

    Examples
    --------
    >>> acc = MulticlassAccumulator(["a", "b", "c"])
    >>> _ = acc.update(["a", "b", "c", "c"],
    ...                proba=[[.8, .1, .1], [.2, .7, .1], [.1, .6, .3], [0, 0, 1]])
    >>> m = acc.metrics()
    >>> m["accuracy"], round(m["log_loss"], 4)
    (0.75, 0.4459)
    >>> acc.confusion_matrix().tolist()
    [[1, 0, 0], [0, 1, 0], [0, 1, 1]]

    """

    kind = "multiclass"

    def __init__(self, classes: Sequence[Any]) -> None:
        values = list(classes) if not isinstance(classes, (str, bytes)) else None
        if values is None or len(values) < 2:
            raise ValueError(f"classes must be a sequence of at least 2 labels, got {classes!r}")
        if len(set(values)) != len(values):
            raise ValueError(f"classes must be distinct, got {classes!r}")
        numeric = all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
                      for v in values)
        if not (numeric or all(isinstance(v, str) for v in values)):
            raise ValueError(f"classes must be all strings or all numbers, got {classes!r}")
        self.classes = tuple(v.item() if isinstance(v, np.generic) else v for v in values)
        self._lookup = np.asarray(self.classes, dtype=np.float64 if numeric else object)
        self._order = np.argsort(self._lookup, kind="stable")
        self._sorted = self._lookup[self._order]
        k = len(self.classes)
        self._cm = np.zeros((k, k), dtype=np.int64)
        self.n_invalid = 0
        self._log_loss = Moments()
        self._brier = Moments()

    def _index(self, labels: np.ndarray, name: str) -> np.ndarray:
        if self._lookup.dtype.kind == "f":
            try:
                labels = labels.astype(np.float64)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{name} holds labels not in classes {self.classes}") from exc
        else:
            labels = labels.astype(object)
        try:
            pos = np.searchsorted(self._sorted, labels)
        except TypeError as exc:
            raise ValueError(f"{name} holds labels not in classes {self.classes}") from exc
        pos = np.minimum(pos, len(self._sorted) - 1)
        found = self._sorted[pos] == labels
        if not np.all(found):
            unknown = sorted({str(v) for v in labels[~np.asarray(found, dtype=bool)]})[:5]
            raise ValueError(f"{name} holds labels not in classes {self.classes}: {unknown}")
        return self._order[pos]

    def update(
        self, y_true: Any, y_pred: Any = None, *, proba: Any = None
    ) -> MulticlassAccumulator:
        """Add a batch of labeled rows.

        Parameters
        ----------
        y_true
            True class labels, 1-d.
        y_pred
            Predicted class labels; defaults to the argmax of ``proba`` (first class on ties).
        proba
            Class probabilities, shape ``(n, len(classes))``, columns in ``classes`` order.
            Log loss and Brier use the rows that carry them.

        """
        self.update_groups([self], None, y_true, y_pred, proba=proba)
        return self

    @staticmethod
    def update_groups(
        accumulators: Sequence[MulticlassAccumulator], groups: Any, y_true: Any, y_pred: Any = None, *, proba: Any = None
    ) -> None:
        """Add rows to several accumulators in one pass: row ``i`` goes to ``accumulators[groups[i]]``.

        As :meth:`BinaryAccumulator.update_groups`; the accumulators must share ``classes``.

        >>> a, b = MulticlassAccumulator(["x", "y"]), MulticlassAccumulator(["x", "y"])
        >>> MulticlassAccumulator.update_groups([a, b], np.array([1, 1, 0]), ["x", "y", "y"], ["x", "x", "y"])
        >>> a.n, b.confusion_matrix().tolist()
        (1, [[1, 0], [1, 0]])
        """
        first = _same_kind(accumulators, MulticlassAccumulator, "classes")
        if y_pred is None and proba is None:
            raise ValueError("update needs y_pred or proba, got neither")
        yt = _as_1d(y_true, "y_true")
        yp = None if y_pred is None else _as_1d(y_pred, "y_pred")
        pm = None
        k = len(first.classes)
        if proba is not None:
            try:
                pm = np.asarray(proba, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise ValueError(
                    f"proba must be a 2-d array of numbers, got {proba!r:.80}"
                ) from exc
            if pm.ndim != 2 or pm.shape[1] != k:
                raise ValueError(f"proba must have shape (n, {k}), got {pm.shape}")
        n = _check_lengths(y_true=yt, y_pred=yp, proba=pm)
        if n == 0:
            return
        n_groups = len(accumulators)
        ids = _group_ids(groups, n, n_groups)
        bad = _missing(yt)
        if yp is not None:
            bad |= _missing(yp)
        if pm is not None:
            bad |= ~np.isfinite(pm).all(axis=1)
        if bad.any():
            _count_invalid(accumulators, ids[bad])
            ok = ~bad
            yt, ids = yt[ok], ids[ok]
            yp = None if yp is None else yp[ok]
            pm = None if pm is None else pm[ok]
        if pm is not None:
            _check_probabilities(pm, "proba")
        t = first._index(yt, "y_true")
        p = first._index(yp, "y_pred") if yp is not None else np.argmax(pm, axis=1)
        # Only the cells that occur are counted: groups x classes² can be large.
        used, counts = np.unique((ids * k + t) * k + p, return_counts=True)
        owner, cell = np.divmod(used, k * k)
        starts = np.flatnonzero(np.diff(owner, prepend=-1)).tolist()
        for lo, hi in zip(starts, [*starts[1:], len(used)]):
            accumulators[int(owner[lo])]._cm.reshape(-1)[cell[lo:hi]] += counts[lo:hi]
        if pm is None or not len(t):
            return
        rows = np.arange(len(t))
        p_true = np.clip(pm[rows, t], _EPS, 1.0 - _EPS)
        sq = (pm * pm).sum(axis=1) - 2.0 * pm[rows, t] + 1.0
        for acc, loss, brier in zip(
            accumulators, Moments.of_groups(-np.log(p_true), ids, n_groups), Moments.of_groups(sq, ids, n_groups)
        ):
            acc._log_loss.add(loss)
            acc._brier.add(brier)

    @property
    def n(self) -> int:
        return int(self._cm.sum())

    @property
    def n_scored(self) -> int:
        return self._log_loss.n

    @property
    def log_loss_moments(self) -> Moments:
        return self._log_loss.copy()

    @property
    def brier_moments(self) -> Moments:
        return self._brier.copy()

    def confusion_matrix(self) -> np.ndarray:
        """k x k counts, rows true class, columns predicted class, in ``classes`` order."""
        return self._cm.copy()

    def metrics(self) -> dict[str, float]:
        """Accuracy, macro precision / recall / F1, log loss, Brier (sum over classes)."""
        cm = self._cm
        n = int(cm.sum())
        tp = np.diag(cm).astype(np.float64)
        pred = cm.sum(axis=0)
        true = cm.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.where(pred > 0, tp / pred, np.nan)
            recall = np.where(true > 0, tp / true, np.nan)
            den = pred + true
            f1 = np.where(den > 0, 2 * tp / den, np.nan)

        def macro(values: np.ndarray) -> float:
            defined = values[~np.isnan(values)]
            return float(defined.mean()) if defined.size else math.nan

        return {
            "n": float(n),
            "n_invalid": float(self.n_invalid),
            "n_scored": float(self.n_scored),
            "accuracy": _nan_div(float(tp.sum()), n),
            "precision_macro": macro(precision),
            "recall_macro": macro(recall),
            "f1_macro": macro(f1),
            "log_loss": self._log_loss.mean if self.n_scored else math.nan,
            "brier": self._brier.mean if self.n_scored else math.nan,
        }

    def merge(self, other: MulticlassAccumulator) -> MulticlassAccumulator:
        if not isinstance(other, MulticlassAccumulator):
            raise TypeError(f"other must be a MulticlassAccumulator, got {type(other).__name__}")
        if other.classes != self.classes:
            raise ValueError(f"other must have classes {self.classes}, got {other.classes}")
        out = MulticlassAccumulator(self.classes)
        out._cm = self._cm + other._cm
        out.n_invalid = self.n_invalid + other.n_invalid
        out._log_loss = self._log_loss.merge(other._log_loss)
        out._brier = self._brier.merge(other._brier)
        return out

    def copy(self) -> MulticlassAccumulator:
        return self.merge(MulticlassAccumulator(self.classes))

    def to_bytes(self) -> bytes:
        return _encode(self.kind, {
            "classes": list(self.classes),
            "cm": self._cm.tobytes(),
            "n_invalid": self.n_invalid,
            "log_loss": self._log_loss.to_tuple(),
            "brier": self._brier.to_tuple(),
        })

    @classmethod
    def from_bytes(cls, data: bytes) -> MulticlassAccumulator:
        s = _decode(data, cls.kind)
        out = cls(s["classes"])
        k = len(out.classes)
        out._cm = np.frombuffer(s["cm"], dtype=np.int64).reshape(k, k).copy()
        out.n_invalid = s["n_invalid"]
        out._log_loss = _moments_from(s["log_loss"])
        out._brier = _moments_from(s["brier"])
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MulticlassAccumulator):
            return NotImplemented
        return (
            self.classes == other.classes
            and np.array_equal(self._cm, other._cm)
            and self.n_invalid == other.n_invalid
            and self._log_loss == other._log_loss
            and self._brier == other._brier
        )

    def __repr__(self) -> str:
        return f"MulticlassAccumulator(classes={self.classes}, n={self.n})"


class RegressionAccumulator:
    """Performance of a regression model over a window of labeled rows.

    MAE, RMSE and R² use every valid row. MAPE (a fraction, like scikit-learn's) uses the rows
    with ``y_true != 0``; the others are counted in ``n_mape_excluded``. R² is
    ``1 - SSE / SST`` with SST from the labels' mergeable moments; it is NaN when the labels are
    constant (scikit-learn's ``force_finite=False`` gives NaN or -inf there).

    Examples
    --------
    >>> acc = RegressionAccumulator()
    >>> _ = acc.update([3.0, -0.5, 2.0, 7.0], [2.5, 0.0, 2.0, 8.0])
    >>> m = acc.metrics()
    >>> m["mae"], m["rmse"], round(m["r2"], 6)
    (0.5, 0.6123724356957945, 0.948608)

    """

    kind = "regression"

    def __init__(self) -> None:
        self.n_invalid = 0
        self._y = Moments()
        self._abs = Moments()
        self._sq = Moments()
        self._ape = Moments()

    def update(self, y_true: Any, y_pred: Any) -> RegressionAccumulator:
        """Add a batch of (label, prediction) rows."""
        self.update_groups([self], None, y_true, y_pred)
        return self

    @staticmethod
    def update_groups(accumulators: Sequence[RegressionAccumulator], groups: Any, y_true: Any, y_pred: Any) -> None:
        """Add rows to several accumulators in one pass: row ``i`` goes to ``accumulators[groups[i]]``.

        As :meth:`BinaryAccumulator.update_groups` (all four moments up to their last digits).

        >>> a, b = RegressionAccumulator(), RegressionAccumulator()
        >>> RegressionAccumulator.update_groups([a, b], np.array([0, 1, 0]), [1.0, 2.0, 3.0], [1.5, 2.0, 2.0])
        >>> a.metrics()["mae"], b.metrics()["mae"]
        (0.75, 0.0)
        """
        _same_kind(accumulators, RegressionAccumulator)
        yt = _as_1d(y_true, "y_true", np.float64)
        yp = _as_1d(y_pred, "y_pred", np.float64)
        n = _check_lengths(y_true=yt, y_pred=yp)
        if n == 0:
            return
        n_groups = len(accumulators)
        ids = _group_ids(groups, n, n_groups)
        ok = np.isfinite(yt) & np.isfinite(yp)
        if not ok.all():
            _count_invalid(accumulators, ids[~ok])
            yt, yp, ids = yt[ok], yp[ok], ids[ok]
        err = yp - yt
        abs_err = np.abs(err)
        nz = yt != 0
        for acc, y, a, sq, ape in zip(
            accumulators,
            Moments.of_groups(yt, ids, n_groups),
            Moments.of_groups(abs_err, ids, n_groups),
            Moments.of_groups(err * err, ids, n_groups),
            Moments.of_groups(abs_err[nz] / np.abs(yt[nz]), ids[nz], n_groups),
        ):
            acc._y.add(y)
            acc._abs.add(a)
            acc._sq.add(sq)
            acc._ape.add(ape)

    @property
    def n(self) -> int:
        return self._y.n

    @property
    def n_mape_excluded(self) -> int:
        return self._y.n - self._ape.n

    @property
    def label_moments(self) -> Moments:
        return self._y.copy()

    @property
    def abs_error_moments(self) -> Moments:
        return self._abs.copy()

    @property
    def squared_error_moments(self) -> Moments:
        return self._sq.copy()

    @property
    def ape_moments(self) -> Moments:
        return self._ape.copy()

    def metrics(self) -> dict[str, float]:
        n = self.n
        sse = self._sq.mean * n
        return {
            "n": float(n),
            "n_invalid": float(self.n_invalid),
            "n_mape_excluded": float(self.n_mape_excluded),
            "mae": self._abs.mean if n else math.nan,
            "rmse": math.sqrt(self._sq.mean) if n else math.nan,
            "mape": self._ape.mean if self._ape.n else math.nan,
            "r2": 1.0 - sse / self._y.m2 if n >= 2 and self._y.m2 > 0 else math.nan,
        }

    def merge(self, other: RegressionAccumulator) -> RegressionAccumulator:
        if not isinstance(other, RegressionAccumulator):
            raise TypeError(f"other must be a RegressionAccumulator, got {type(other).__name__}")
        out = RegressionAccumulator()
        out.n_invalid = self.n_invalid + other.n_invalid
        out._y = self._y.merge(other._y)
        out._abs = self._abs.merge(other._abs)
        out._sq = self._sq.merge(other._sq)
        out._ape = self._ape.merge(other._ape)
        return out

    def copy(self) -> RegressionAccumulator:
        return self.merge(RegressionAccumulator())

    def to_bytes(self) -> bytes:
        return _encode(self.kind, {
            "n_invalid": self.n_invalid,
            "y": self._y.to_tuple(),
            "abs": self._abs.to_tuple(),
            "sq": self._sq.to_tuple(),
            "ape": self._ape.to_tuple(),
        })

    @classmethod
    def from_bytes(cls, data: bytes) -> RegressionAccumulator:
        s = _decode(data, cls.kind)
        out = cls()
        out.n_invalid = s["n_invalid"]
        out._y, out._abs = _moments_from(s["y"]), _moments_from(s["abs"])
        out._sq, out._ape = _moments_from(s["sq"]), _moments_from(s["ape"])
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RegressionAccumulator):
            return NotImplemented
        return (
            self.n_invalid == other.n_invalid
            and (self._y, self._abs, self._sq, self._ape)
            == (other._y, other._abs, other._sq, other._ape)
        )

    def __repr__(self) -> str:
        return f"RegressionAccumulator(n={self.n})"


_KINDS: dict[str, type] = {
    c.kind: c for c in (BinaryAccumulator, MulticlassAccumulator, RegressionAccumulator)
}


def accumulator_from_bytes(
    data: bytes,
) -> BinaryAccumulator | MulticlassAccumulator | RegressionAccumulator:
    """Decode any accumulator serialised by ``to_bytes``.

    Examples
    --------
    >>> acc = RegressionAccumulator().update([1.0, 2.0], [1.5, 2.5])
    >>> accumulator_from_bytes(acc.to_bytes()) == acc
    True

    """
    try:
        kind = msgspec.msgpack.decode(data).get("kind")
    except (msgspec.DecodeError, AttributeError) as exc:
        raise ValueError("data is not a serialised accumulator") from exc
    if kind not in _KINDS:
        raise ValueError(f"data must hold one of {sorted(_KINDS)} accumulators, got {kind!r}")
    return _KINDS[kind].from_bytes(data)
