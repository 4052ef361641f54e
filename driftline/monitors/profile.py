"""Reference profiles: everything the drift tests need from the reference, computed once.

A profile is built from one reference (training) column and then compared with many windows.

* :class:`NumericProfile`: quantile bin edges of the reference and its counts on them, a
  sorted sample of the reference values for the exact tests (all of them when the reference
  has at most ``reservoir_size`` values, a uniform sample without replacement otherwise),
  the mean and standard deviation (ddof=0) of all non-missing values, and the missing count.
  Non-finite values (NaN, +-inf, ``None``) are missing.
* :class:`CategoricalProfile`: the reference categories and their counts (``None`` and NaN
  are missing; categories are compared as strings).

Examples
--------
>>> import numpy as np
>>> p = NumericProfile.fit(np.arange(100.0), n_bins=4, name="x")
>>> p.edges.tolist(), p.reference_counts.tolist()
([24.75, 49.5, 74.25], [25, 25, 25, 25])
>>> acc = p.new_accumulator().update([10.0, 90.0])
>>> acc.counts.tolist()
[1, 0, 0, 1]
>>> c = CategoricalProfile.fit(["a", "b", "a", None], name="colour")
>>> c.categories, c.reference_counts.tolist(), c.n_missing
(('a', 'b'), [2, 1], 1)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from driftline.monitors.accumulators import (
    CategoricalAccumulator,
    NumericAccumulator,
    count_categories,
)
from driftline.monitors.ecdf import frame

__all__ = ["NumericProfile", "CategoricalProfile"]

def _name_of(values: Any, name: str | None) -> str:
    if name is not None:
        return str(name)
    series_name = getattr(values, "name", None)
    return "" if series_name is None else str(series_name)


@dataclass(frozen=True, eq=False)
class NumericProfile:
    """Reference profile of one numeric feature. Build it with :meth:`fit`.

    Attributes
    ----------
    name : str
    edges : np.ndarray
        Inner bin edges (strictly increasing); ``len(edges) + 1`` bins, the outer ones open.
    reference_counts : np.ndarray
        Reference counts per bin.
    reference_sample : np.ndarray
        Sorted reference values used by KS and Wasserstein.
    n_reference : int
        Non-missing reference values.
    n_missing : int
        Missing reference values.
    mean, std : float
        Mean and standard deviation (ddof=0) of all non-missing reference values.
    reservoir_size : int
        Capacity of the reference sample and of the accumulators' reservoirs.
    reference_frame : np.ndarray
        :attr:`reference_sample` framed by ``-inf`` and ``+inf`` (see :mod:`driftline.monitors.ecdf`).
    seed : int
        Seed of the reference sample and default seed of new accumulators.
    """

    kind: ClassVar[str] = "numeric"
    name: str
    edges: np.ndarray
    reference_counts: np.ndarray
    reference_sample: np.ndarray
    n_reference: int
    n_missing: int
    mean: float
    std: float
    reservoir_size: int
    seed: int
    reference_frame: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        # The compiled walks index the frame without bounds checks: it must be exactly framed.
        frame_ = self.reference_frame
        if (
            frame_.dtype != np.float64 or frame_.shape != (self.reference_sample.size + 2,)
            or frame_[0] != -np.inf or frame_[-1] != np.inf
        ):
            raise ValueError("reference_frame must be reference_sample framed by -inf and +inf (use NumericProfile.fit)")

    @classmethod
    def fit(
        cls,
        values: Any,
        n_bins: int = 10,
        reservoir_size: int = 10_000,
        *,
        name: str | None = None,
        seed: int = 0,
    ) -> NumericProfile:
        """Profile a reference column.

        Parameters
        ----------
        values
            Reference values (array-like, pandas Series); non-finite values are missing.
        n_bins
            Number of quantile bins; fewer result when quantiles coincide (ties). A constant
            reference gets three bins: below, equal to and above the constant.
        reservoir_size
            Reference values kept for the exact tests, and the window reservoir capacity.
        name
            Feature name (defaults to the Series name).
        seed
            Seed for sampling the reference when it exceeds ``reservoir_size``.
        """
        if not isinstance(n_bins, (int, np.integer)) or isinstance(n_bins, bool) or n_bins < 2:
            raise ValueError(f"n_bins must be an int >= 2, got {n_bins!r}")
        if not isinstance(reservoir_size, (int, np.integer)) or reservoir_size < 1:
            raise ValueError(f"reservoir_size must be an int >= 1, got {reservoir_size!r}")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        try:
            x = np.asarray(values, dtype=np.float64).ravel()
        except (TypeError, ValueError):
            raise ValueError("values must be numeric (float-convertible)") from None
        finite = np.isfinite(x)
        valid = x[finite] + 0.0
        if valid.size == 0:
            raise ValueError(f"values must contain at least one finite value, got {x.size} missing")
        q = np.quantile(valid, np.linspace(0.0, 1.0, n_bins + 1)[1:-1])
        edges = np.unique(q)
        if valid.min() == valid.max():
            c = float(valid[0])
            edges = np.array([c, np.nextafter(c, np.inf)])
        ref_counts = np.bincount(np.searchsorted(edges, valid, side="right"), minlength=edges.size + 1)
        if valid.size > reservoir_size:
            rng = np.random.default_rng(seed)
            sample = np.sort(rng.choice(valid, size=int(reservoir_size), replace=False))
        else:
            sample = np.sort(valid)
        return cls(
            name=_name_of(values, name),
            edges=edges,
            reference_counts=ref_counts.astype(np.int64),
            reference_sample=sample,
            n_reference=int(valid.size),
            n_missing=int(x.size - valid.size),
            mean=float(valid.mean()),
            std=float(valid.std()),
            reservoir_size=int(reservoir_size),
            seed=int(seed),
            reference_frame=frame(sample),
        )

    @property
    def sample_is_exact(self) -> bool:
        """Whether :attr:`reference_sample` holds every non-missing reference value."""
        return self.reference_sample.size == self.n_reference

    def new_accumulator(self, seed: int | None = None) -> NumericAccumulator:
        """An empty window accumulator on this profile's bins (``seed`` defaults to the profile's)."""
        return NumericAccumulator(self.edges, self.reservoir_size, self.seed if seed is None else seed)


@dataclass(frozen=True, eq=False)
class CategoricalProfile:
    """Reference profile of one categorical feature. Build it with :meth:`fit`.

    Attributes
    ----------
    name : str
    categories : tuple[str, ...]
        Reference categories, most frequent first (ties by name).
    reference_counts : np.ndarray
        Counts aligned with :attr:`categories`.
    n_reference : int
        Non-missing reference values.
    n_missing : int
        Missing reference values.
    """

    kind: ClassVar[str] = "categorical"
    name: str
    categories: tuple[str, ...]
    reference_counts: np.ndarray
    n_reference: int
    n_missing: int
    index: dict[str, int] = field(repr=False)

    @classmethod
    def fit(cls, values: Any, *, name: str | None = None) -> CategoricalProfile:
        """Profile a reference column of categories (``None``/NaN are missing)."""
        counts, n_missing = count_categories(values)
        if not counts:
            raise ValueError(f"values must contain at least one non-missing category, got {n_missing} missing")
        items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        categories = tuple(k for k, _ in items)
        return cls(
            name=_name_of(values, name),
            categories=categories,
            reference_counts=np.array([c for _, c in items], dtype=np.int64),
            n_reference=int(sum(counts.values())),
            n_missing=int(n_missing),
            index={k: i for i, k in enumerate(categories)},
        )

    def new_accumulator(self) -> CategoricalAccumulator:
        """An empty window accumulator."""
        return CategoricalAccumulator()
