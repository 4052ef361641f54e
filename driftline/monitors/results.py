"""Result objects of the drift tests.

Every drift test returns a :class:`DriftResult`: the statistic, the p-value where the test
defines one, an effect size that says whether the change matters, and the sample sizes the
result rests on. :class:`DomainClassifierResult` is the multivariate counterpart.

Examples
--------
>>> r = DriftResult("age", "ks", 0.1, 0.02, 0.1, 1000, 800, True)
>>> r.test, r.n_current
('ks', 800)
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DriftResult", "DomainClassifierResult"]


@dataclass(frozen=True, slots=True)
class DriftResult:
    """The outcome of one univariate drift test on one feature.

    Parameters
    ----------
    feature
        The feature name.
    test
        ``"ks"``, ``"chi2"``, ``"psi"``, ``"wasserstein"`` or ``"js"``.
    statistic
        The test statistic (KS D, chi-squared, PSI, Wasserstein distance, JS distance).
    p_value
        The p-value, or ``None`` for tests that define none (PSI, Wasserstein, JS). ``nan``
        when the current window has no non-missing value.
    effect_size
        KS: D. chi2: Cramér's V. PSI: PSI. Wasserstein: distance / reference standard
        deviation. JS: the Jensen-Shannon distance (base 2, in [0, 1]).
    n_reference
        Non-missing reference values the profile was built from.
    n_current
        Non-missing values in the current window.
    exact
        ``True`` when the result equals the test on the full data; ``False`` when it was
        computed on a uniform sample (see :mod:`driftline.monitors.drift`).
    """

    feature: str
    test: str
    statistic: float
    p_value: float | None
    effect_size: float
    n_reference: int
    n_current: int
    exact: bool


@dataclass(frozen=True, slots=True)
class DomainClassifierResult:
    """Multivariate drift measured by how well a classifier separates reference from current.

    Parameters
    ----------
    auc
        Mean cross-validated ROC AUC. 0.5 means the two samples are indistinguishable.
    auc_std
        Standard deviation of the AUC across folds.
    importances
        Feature -> mean drop in held-out AUC when that feature is permuted, sorted descending.
    n_reference
        Reference rows used (after sampling).
    n_current
        Current rows used (after sampling).
    """

    auc: float
    auc_std: float
    importances: dict[str, float] = field(default_factory=dict)
    n_reference: int = 0
    n_current: int = 0
