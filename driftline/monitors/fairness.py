"""Group fairness of a binary classifier across a protected attribute's groups.

Per group the accumulator counts rows, predicted positives, actual positives and true
positives; these merge exactly. From them:

* **disparate impact**: each group's selection rate (share predicted positive) divided by the
  highest selection rate among groups. A ratio below 0.8 fails the four-fifths rule of the US
  Uniform Guidelines on Employee Selection Procedures (29 CFR 1607.4(D)).
* **equal-opportunity difference**: the largest minus the smallest true positive rate across
  groups (Hardt, Price and Srebro, 2016, "Equality of Opportunity in Supervised Learning").

Rows with a missing group, label or prediction are excluded and counted in ``n_invalid``.
A group's true positive rate is NaN when it has no positive; such groups are left out of the
equal-opportunity difference, which is NaN when fewer than two groups have one. Disparate-impact
ratios are NaN when no group has any predicted positive.

"""

from __future__ import annotations

import math
from dataclasses import dataclass
from collections.abc import Sequence
from typing import Any

import msgspec
import numpy as np
import pandas as pd

from driftline.monitors.metrics import (
    _as_1d,
    _check_lengths,
    _check_positive_label,
    _count_invalid,
    _group_ids,
    _is_label,
    _missing,
    _same_kind,
)

__all__ = ["FairnessAccumulator", "FairnessResult"]

_FORMAT_VERSION = 1


@dataclass(frozen=True)
class FairnessResult:
    """Fairness of one window.

    Attributes
    ----------
    groups
        Groups with at least ``min_n`` rows, in sorted order.
    n, selection_rate, true_positive_rate, disparate_impact
        Per group (mappings keyed by group).
    favoured_group
        The group with the highest selection rate (None when undefined).
    min_disparate_impact
        Smallest disparate-impact ratio (NaN when undefined).
    four_fifths_violations
        Groups whose ratio is below ``four_fifths``.
    equal_opportunity_difference
        Max minus min true positive rate over groups where it is defined.
    excluded_groups
        Groups with fewer than ``min_n`` rows, left out of both measures.

    """

    groups: tuple[Any, ...]
    n: dict[Any, int]
    selection_rate: dict[Any, float]
    true_positive_rate: dict[Any, float]
    disparate_impact: dict[Any, float]
    favoured_group: Any
    min_disparate_impact: float
    four_fifths_violations: tuple[Any, ...]
    equal_opportunity_difference: float
    excluded_groups: tuple[Any, ...]


def _sort_key(group: Any) -> tuple[str, Any]:
    return (type(group).__name__, group)


class FairnessAccumulator:
    """Mergeable per-group counts of a binary classifier's outcomes.

    Parameters
    ----------
    positive_label
        Label of the positive (favourable) outcome, for both ``y_true`` and ``y_pred``.

    Examples
    --------
    >>> acc = FairnessAccumulator()
    >>> _ = acc.update(["a", "a", "a", "a", "b", "b", "b", "b"],
    ...                [1, 1, 0, 0, 1, 1, 0, 0],
    ...                [1, 1, 1, 0, 1, 0, 0, 0])
    >>> r = acc.result()
    >>> r.selection_rate, r.disparate_impact["b"], r.four_fifths_violations
    ({'a': 0.75, 'b': 0.25}, 0.3333333333333333, ('b',))
    >>> r.equal_opportunity_difference
    0.5

    """

    kind = "fairness"

    def __init__(self, positive_label: Any = 1) -> None:
        self.positive_label = _check_positive_label(positive_label)
        self.n_invalid = 0
        self._counts: dict[Any, np.ndarray] = {}  # group -> [n, predicted+, actual+, true+]

    def update(self, groups: Any, y_true: Any, y_pred: Any) -> FairnessAccumulator:
        """Add a batch of rows: protected-attribute group, label and predicted label."""
        FairnessAccumulator.update_groups([self], None, groups, y_true, y_pred)
        return self

    @staticmethod
    def update_groups(
        accumulators: Sequence[FairnessAccumulator], ids: Any, groups: Any, y_true: Any, y_pred: Any
    ) -> None:
        """Add rows to several accumulators in one pass: row ``i`` goes to ``accumulators[ids[i]]``
        (``ids=None``: every row to the first).

        The same as :meth:`update` of each accumulator with its rows (a stream's batch brings a
        few rows to each of many windows, and a pass per window cost more than its rows).

        >>> a, b = FairnessAccumulator(), FairnessAccumulator()
        >>> FairnessAccumulator.update_groups([a, b], [0, 1, 0], ["x", "y", "y"], [1, 0, 1], [1, 1, 0])
        >>> a.counts(), b.counts()
        ({'x': {'n': 1, 'predicted_positive': 1, 'positive': 1, 'true_positive': 1}, \
'y': {'n': 1, 'predicted_positive': 0, 'positive': 1, 'true_positive': 0}}, \
{'y': {'n': 1, 'predicted_positive': 1, 'positive': 0, 'true_positive': 0}})
        """
        positive = _same_kind(accumulators, FairnessAccumulator, "positive_label").positive_label
        g = _as_1d(groups, "groups")
        yt = _as_1d(y_true, "y_true")
        yp = _as_1d(y_pred, "y_pred")
        n = _check_lengths(groups=g, y_true=yt, y_pred=yp)
        owner = _group_ids(ids, n, len(accumulators), "ids")
        bad = _missing(g) | _missing(yt) | _missing(yp)
        if bad.any():
            _count_invalid(accumulators, owner[bad])
            ok = ~bad
            g, yt, yp, owner = g[ok], yt[ok], yp[ok], owner[ok]
        if not len(g):
            return
        codes, uniques = pd.factorize(g, sort=False)
        truth = _is_label(yt, positive)
        pred = _is_label(yp, positive)
        k = len(uniques)
        cells = owner * k + codes
        size = len(accumulators) * k
        table = np.stack([
            np.bincount(cells, minlength=size),
            np.bincount(cells[pred], minlength=size),
            np.bincount(cells[truth], minlength=size),
            np.bincount(cells[truth & pred], minlength=size),
        ], axis=1).astype(np.int64)
        keys = [u.item() if isinstance(u, np.generic) else u for u in uniques]
        for cell in np.flatnonzero(table[:, 0]).tolist():
            acc, key, row = accumulators[cell // k], keys[cell % k], table[cell]
            if key in acc._counts:
                acc._counts[key] += row
            else:
                acc._counts[key] = row.copy()

    @property
    def n(self) -> int:
        return int(sum(int(c[0]) for c in self._counts.values()))

    def counts(self) -> dict[Any, dict[str, int]]:
        """Per-group ``{"n", "predicted_positive", "positive", "true_positive"}``."""
        names = ("n", "predicted_positive", "positive", "true_positive")
        return {g: dict(zip(names, (int(v) for v in c)))
                for g, c in sorted(self._counts.items(), key=lambda kv: _sort_key(kv[0]))}

    def result(self, min_n: int = 1, four_fifths: float = 0.8) -> FairnessResult:
        """Disparate impact and equal-opportunity difference over groups with >= ``min_n`` rows."""
        if isinstance(min_n, bool) or not isinstance(min_n, int) or min_n < 1:
            raise ValueError(f"min_n must be an int >= 1, got {min_n!r}")
        if isinstance(four_fifths, bool) or not isinstance(four_fifths, (int, float)) or not (
            0.0 < four_fifths <= 1.0
        ):
            raise ValueError(f"four_fifths must be a number in (0, 1], got {four_fifths!r}")
        ordered = sorted(self._counts, key=_sort_key)
        kept = tuple(g for g in ordered if self._counts[g][0] >= min_n)
        excluded = tuple(g for g in ordered if self._counts[g][0] < min_n)
        n = {g: int(self._counts[g][0]) for g in kept}
        selection = {g: self._counts[g][1] / self._counts[g][0] for g in kept}
        tpr = {g: (self._counts[g][3] / self._counts[g][2]) if self._counts[g][2] else math.nan
               for g in kept}
        selection = {g: float(v) for g, v in selection.items()}
        tpr = {g: float(v) for g, v in tpr.items()}
        top = max(selection.values(), default=0.0)
        if top > 0:
            favoured = max(kept, key=lambda g: selection[g])
            impact = {g: selection[g] / top for g in kept}
            violations = tuple(g for g in kept if impact[g] < four_fifths)
            min_impact = min(impact.values())
        else:
            favoured = None
            impact = {g: math.nan for g in kept}
            violations = ()
            min_impact = math.nan
        defined = [v for v in tpr.values() if not math.isnan(v)]
        eod = max(defined) - min(defined) if len(defined) >= 2 else math.nan
        return FairnessResult(kept, n, selection, tpr, impact, favoured, min_impact, violations,
                              eod, excluded)

    def merge(self, other: FairnessAccumulator) -> FairnessAccumulator:
        if not isinstance(other, FairnessAccumulator):
            raise TypeError(f"other must be a FairnessAccumulator, got {type(other).__name__}")
        if other.positive_label != self.positive_label:
            raise ValueError(
                f"other must have positive_label {self.positive_label!r}, "
                f"got {other.positive_label!r}"
            )
        out = FairnessAccumulator(self.positive_label)
        out.n_invalid = self.n_invalid + other.n_invalid
        for source in (self._counts, other._counts):
            for g, c in source.items():
                out._counts[g] = out._counts[g] + c if g in out._counts else c.copy()
        return out

    def to_bytes(self) -> bytes:
        groups = sorted(self._counts, key=_sort_key)
        return msgspec.msgpack.encode({
            "kind": self.kind,
            "version": _FORMAT_VERSION,
            "positive_label": self.positive_label,
            "n_invalid": self.n_invalid,
            "groups": groups,
            "counts": [self._counts[g].tolist() for g in groups],
        })

    @classmethod
    def from_bytes(cls, data: bytes) -> FairnessAccumulator:
        try:
            s = msgspec.msgpack.decode(data)
        except msgspec.DecodeError as exc:
            raise ValueError(f"data is not a serialised accumulator: {exc}") from exc
        if not isinstance(s, dict) or s.get("kind") != cls.kind:
            raise ValueError("data must hold a 'fairness' accumulator")
        if s.get("version") != _FORMAT_VERSION:
            raise ValueError(
                f"data has format version {s.get('version')!r}, expected {_FORMAT_VERSION}"
            )
        out = cls(s["positive_label"])
        out.n_invalid = s["n_invalid"]
        out._counts = {g: np.array(c, dtype=np.int64) for g, c in zip(s["groups"], s["counts"])}
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FairnessAccumulator):
            return NotImplemented
        return (
            self.positive_label == other.positive_label
            and self.n_invalid == other.n_invalid
            and self._counts.keys() == other._counts.keys()
            and all(np.array_equal(c, other._counts[g]) for g, c in self._counts.items())
        )

    def __repr__(self) -> str:
        return f"FairnessAccumulator(groups={len(self._counts)}, n={self.n})"
