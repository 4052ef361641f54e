"""Benjamini-Hochberg control of the false discovery rate over one window's family of tests.

Benjamini, Y. and Hochberg, Y. (1995). Controlling the false discovery rate: a practical and
powerful approach to multiple testing. JRSS B 57(1), 289-300.

The adjusted p-values equal ``scipy.stats.false_discovery_control(p, method="bh")`` on the
defined p-values. ``None`` and NaN p-values (tests without a p-value, empty windows) are left
out of the family: their adjusted value is NaN and they are never rejected.

Examples
--------
>>> rejected, adjusted = benjamini_hochberg([0.01, 0.04, None, 0.03, 0.5])
>>> rejected.tolist()
[True, False, False, False, False]
>>> [round(a, 4) for a in adjusted.tolist()]
[0.04, 0.0533, nan, 0.0533, 0.5]
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["benjamini_hochberg"]


def benjamini_hochberg(p_values: Iterable[float | None], alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Benjamini-Hochberg step-up procedure.

    Parameters
    ----------
    p_values
        P-values of the family; ``None``/NaN entries are excluded.
    alpha
        Target false discovery rate, in (0, 1).

    Returns
    -------
    rejected : np.ndarray of bool
        Whether each hypothesis is rejected (adjusted p-value <= ``alpha``).
    p_adjusted : np.ndarray of float
        BH-adjusted p-values, NaN for excluded entries.
    """
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be a float in (0, 1), got {alpha!r}")
    p = np.array([np.nan if v is None else v for v in p_values], dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p_values must be one-dimensional, got shape {p.shape}")
    defined = ~np.isnan(p)
    if np.any((p[defined] < 0) | (p[defined] > 1)):
        raise ValueError(f"p_values must lie in [0, 1], got {p[defined][(p[defined] < 0) | (p[defined] > 1)].tolist()}")
    adjusted = np.full(p.size, np.nan)
    family = p[defined]
    m = family.size
    if m:
        order = np.argsort(family)
        scaled = family[order] * (m / np.arange(1, m + 1.0))
        stepped = np.minimum.accumulate(scaled[::-1])[::-1]
        out = np.empty(m)
        out[order] = np.minimum(stepped, 1.0)
        adjusted[defined] = out
    rejected = np.zeros(p.size, dtype=bool)
    rejected[defined] = adjusted[defined] <= alpha
    return rejected, adjusted
