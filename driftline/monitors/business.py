"""Business value of a window's predictions from a cost / benefit matrix.

Each outcome (true class, predicted class) has a value per prediction: benefits positive,
costs negative. The value of a window is the sum over its confusion counts; the value per
prediction divides it by the number of rows, so windows of different sizes compare.

"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from driftline.monitors.metrics import BinaryAccumulator, MulticlassAccumulator

__all__ = ["BusinessValue", "business_value"]

_BINARY_CELLS = ("tp", "fp", "tn", "fn")


@dataclass(frozen=True)
class BusinessValue:
    """Value of a window.

    Attributes
    ----------
    total
        Sum of ``count * value`` over all outcomes.
    per_prediction
        ``total / n``; NaN for an empty window.
    n
        Number of predictions.

    """

    total: float
    per_prediction: float
    n: int


def _binary_matrix(cells: Mapping[str, Any], name: str) -> np.ndarray:
    unknown = set(cells) - set(_BINARY_CELLS)
    if unknown:
        raise ValueError(
            f"{name} keys must be among {list(_BINARY_CELLS)}, got unknown {sorted(unknown)}"
        )
    v = {k: cells.get(k, 0) for k in _BINARY_CELLS}
    # scikit-learn's layout: rows are the true class, columns the prediction, negative first.
    return np.array([[v["tn"], v["fp"]], [v["fn"], v["tp"]]], dtype=np.float64)


def _as_matrix(value: Any, name: str) -> np.ndarray:
    if isinstance(value, (BinaryAccumulator, MulticlassAccumulator)):
        return value.confusion_matrix().astype(np.float64)
    if isinstance(value, Mapping):
        return _binary_matrix(value, name)
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a mapping or a square matrix, got {value!r:.80}") from exc
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 2:
        raise ValueError(f"{name} must be a k x k matrix with k >= 2, got shape {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError(f"{name} must hold finite numbers, got {value!r:.80}")
    return m


def business_value(confusion: Any, cost_matrix: Any) -> BusinessValue:
    """Value of a window's predictions.

    Parameters
    ----------
    confusion
        The window's outcomes: a ``BinaryAccumulator`` or ``MulticlassAccumulator``, a binary
        mapping ``{"tp", "fp", "tn", "fn"}`` of counts, or a k x k count matrix (rows true
        class, columns predicted class, as scikit-learn's ``confusion_matrix``).
    cost_matrix
        Value of one prediction per outcome, in the same form: a binary mapping (missing keys
        are worth 0) or a k x k matrix.

    Returns
    -------
    BusinessValue

    Examples
    --------
    >>> v = business_value({"tp": 30, "fp": 10, "tn": 950, "fn": 10},
    ...                    {"tp": 100.0, "fp": -5.0, "fn": -100.0})
    >>> v.total, v.per_prediction, v.n
    (1950.0, 1.95, 1000)

    """
    counts = _as_matrix(confusion, "confusion")
    values = _as_matrix(cost_matrix, "cost_matrix")
    if counts.shape != values.shape:
        raise ValueError(
            f"cost_matrix must have the shape of confusion {counts.shape}, got {values.shape}"
        )
    if (counts < 0).any():
        raise ValueError(f"confusion must hold counts >= 0, got {counts.tolist()}")
    n = int(counts.sum())
    total = float((counts * values).sum())
    return BusinessValue(total=total, per_prediction=total / n if n else math.nan, n=n)
