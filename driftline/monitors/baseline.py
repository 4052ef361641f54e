"""Is a window's metric significantly worse than the reference baseline?

Both sides are accumulators of the same kind: the window's and one filled once from the
reference data. The test is one-sided (H1: the window is worse) and treats the two as
independent samples.

* Proportions (accuracy, precision, recall): two-proportion z-test with the pooled proportion;
  when the rarer outcome's expected count in the smaller sample is below ``min_expected`` the
  exact one-sided Fisher test on the 2 x 2 table replaces it. Fisher is exact for two samples;
  an exact binomial test against the baseline proportion would ignore the baseline's own
  sampling error, which matters when the reference is small too.
* ROC AUC: z-test with the Hanley & McNeil (1982) standard error of each AUC, from its value and
  the window's class counts.
* Mean losses and errors (log loss, Brier, MAE, MSE, RMSE, MAPE): Welch's t-test on the per-row
  values, summarised by mergeable :class:`~driftline.monitors.metrics.Moments`. RMSE is tested
  on the squared errors (its square, the MSE) and reported in RMSE units.

The p-value is NaN when the test is undefined: a side has no rows for the metric, the metric
itself is NaN, or (Welch) a side has fewer than two rows. When the standard error is zero (both
sides constant) the p-value is 0.0 if the window is worse and 1.0 otherwise.

References
----------
Hanley, J. A. and McNeil, B. J. (1982). The meaning and use of the area under a receiver
operating characteristic (ROC) curve. Radiology 143(1), 29-36.

"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable

# scipy.special's ufuncs, not stats.norm / stats.t: the distribution objects cost ~100 us of
# argument checking per call, and every window re-emission runs these tests per metric and segment.
from scipy import special, stats

from driftline.monitors.metrics import (
    BinaryAccumulator,
    Moments,
    MulticlassAccumulator,
    RegressionAccumulator,
)

__all__ = ["BaselineTest", "hanley_mcneil_se", "supported_metrics", "worse_than_baseline"]

Accumulator = BinaryAccumulator | MulticlassAccumulator | RegressionAccumulator


@dataclass(frozen=True)
class BaselineTest:
    """Result of :func:`worse_than_baseline`.

    Attributes
    ----------
    metric
        Metric name.
    value, baseline
        The metric in the window and in the reference.
    delta
        ``value - baseline``.
    p_value
        One-sided p-value of "the window is worse"; NaN when undefined.
    n, n_baseline
        Rows behind each side (the denominator for precision / recall, scored rows for ROC AUC
        and log loss).
    statistic
        z or t statistic of ``value - baseline`` (Fisher: the sample odds ratio).
    method
        ``"z_test"``, ``"fisher_exact"``, ``"hanley_mcneil"``, ``"welch_t"`` or ``"undefined"``.
    higher_is_better
        Direction of the metric.

    """

    metric: str
    value: float
    baseline: float
    delta: float
    p_value: float
    n: int
    n_baseline: int
    statistic: float
    method: str
    higher_is_better: bool

    def is_worse(self, alpha: float = 0.05) -> bool:
        """Whether the window is significantly worse at level ``alpha``."""
        return bool(self.p_value < alpha)


def _binary_proportion(metric: str) -> Callable[[Any], tuple[int, int]]:
    def counts(acc: BinaryAccumulator) -> tuple[int, int]:
        c = acc.confusion
        if metric == "accuracy":
            return c["tp"] + c["tn"], acc.n
        if metric == "precision":
            return c["tp"], c["tp"] + c["fp"]
        return c["tp"], c["tp"] + c["fn"]

    return counts


def _multiclass_accuracy(acc: MulticlassAccumulator) -> tuple[int, int]:
    return int(acc.confusion_matrix().trace()), acc.n


_PROPORTIONS: dict[type, dict[str, Callable[[Any], tuple[int, int]]]] = {
    BinaryAccumulator: {m: _binary_proportion(m) for m in ("accuracy", "precision", "recall")},
    MulticlassAccumulator: {"accuracy": _multiclass_accuracy},
}

_MEANS: dict[type, dict[str, Callable[[Any], Moments]]] = {
    BinaryAccumulator: {
        "log_loss": lambda a: a.log_loss_moments,
        "brier": lambda a: a.brier_moments,
    },
    MulticlassAccumulator: {
        "log_loss": lambda a: a.log_loss_moments,
        "brier": lambda a: a.brier_moments,
    },
    RegressionAccumulator: {
        "mae": lambda a: a.abs_error_moments,
        "mse": lambda a: a.squared_error_moments,
        "rmse": lambda a: a.squared_error_moments,
        "mape": lambda a: a.ape_moments,
    },
}


def supported_metrics(accumulator_type: type) -> list[str]:
    """Metrics :func:`worse_than_baseline` can test for an accumulator class."""
    return list(_supported(accumulator_type))


@functools.cache
def _supported(accumulator_type: type) -> tuple[str, ...]:
    names = list(_PROPORTIONS.get(accumulator_type, {})) + list(_MEANS.get(accumulator_type, {}))
    if accumulator_type is BinaryAccumulator:
        names.append("roc_auc")
    return tuple(sorted(names))


def hanley_mcneil_se(auc: float, n_positive: int, n_negative: int) -> float:
    """Hanley–McNeil standard error of a ROC AUC; NaN when a class is empty or ``auc`` is NaN.

    Examples
    --------
    >>> round(hanley_mcneil_se(0.8, 100, 900), 5)
    0.02723

    """
    if n_positive < 1 or n_negative < 1 or math.isnan(auc):
        return math.nan
    q1 = auc / (2.0 - auc)
    q2 = 2.0 * auc * auc / (1.0 + auc)
    var = (
        auc * (1.0 - auc)
        + (n_positive - 1) * (q1 - auc * auc)
        + (n_negative - 1) * (q2 - auc * auc)
    ) / (n_positive * n_negative)
    return math.sqrt(max(var, 0.0))


def _zero_se_p(delta: float, higher_is_better: bool) -> float:
    worse = delta < 0 if higher_is_better else delta > 0
    return 0.0 if worse else 1.0


def _undefined(metric: str, value: float, baseline: float, n: int, n_b: int,
               higher: bool) -> BaselineTest:
    return BaselineTest(metric, value, baseline, value - baseline, math.nan, n, n_b,
                        math.nan, "undefined", higher)


def _proportion_test(metric: str, x_c: int, n_c: int, x_b: int, n_b: int,
                     min_expected: float) -> BaselineTest:
    value = x_c / n_c if n_c else math.nan
    base = x_b / n_b if n_b else math.nan
    if not n_c or not n_b:
        return _undefined(metric, value, base, n_c, n_b, True)
    delta = value - base
    pooled = (x_c + x_b) / (n_c + n_b)
    if min(n_c, n_b) * min(pooled, 1.0 - pooled) < min_expected:
        res = stats.fisher_exact([[x_c, n_c - x_c], [x_b, n_b - x_b]], alternative="less")
        return BaselineTest(metric, value, base, delta, float(res.pvalue), n_c, n_b,
                            float(res.statistic), "fisher_exact", True)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_c + 1.0 / n_b))
    z = delta / se
    return BaselineTest(metric, value, base, delta, float(special.ndtr(z)), n_c, n_b, z,
                        "z_test", True)


def _welch_test(metric: str, cur: Moments, ref: Moments) -> BaselineTest:
    transform = math.sqrt if metric == "rmse" else float
    value = transform(cur.mean) if cur.n else math.nan
    base = transform(ref.mean) if ref.n else math.nan
    if cur.n < 2 or ref.n < 2:
        return _undefined(metric, value, base, cur.n, ref.n, False)
    a = cur.variance() / cur.n
    b = ref.variance() / ref.n
    diff = cur.mean - ref.mean
    if a + b == 0.0:
        return BaselineTest(metric, value, base, value - base, _zero_se_p(diff, False), cur.n,
                            ref.n, math.copysign(math.inf, diff) if diff else 0.0, "welch_t",
                            False)
    t = diff / math.sqrt(a + b)
    df = (a + b) ** 2 / (a * a / (cur.n - 1) + b * b / (ref.n - 1))
    return BaselineTest(metric, value, base, value - base, float(special.stdtr(df, -t)), cur.n,
                        ref.n, t, "welch_t", False)


def _auc_test(cur: BinaryAccumulator, ref: BinaryAccumulator) -> BaselineTest:
    value, base = cur.roc_auc(), ref.roc_auc()
    n_c, n_b = cur.n_scored, ref.n_scored
    if math.isnan(value) or math.isnan(base):
        return _undefined("roc_auc", value, base, n_c, n_b, True)
    se_c = hanley_mcneil_se(value, cur.n_scored_positive, n_c - cur.n_scored_positive)
    se_b = hanley_mcneil_se(base, ref.n_scored_positive, n_b - ref.n_scored_positive)
    se = math.hypot(se_c, se_b)
    delta = value - base
    if se == 0.0:
        return BaselineTest("roc_auc", value, base, delta, _zero_se_p(delta, True), n_c, n_b,
                            math.copysign(math.inf, delta) if delta else 0.0, "hanley_mcneil",
                            True)
    z = delta / se
    return BaselineTest("roc_auc", value, base, delta, float(special.ndtr(z)), n_c, n_b, z,
                        "hanley_mcneil", True)


def worse_than_baseline(
    metric: str,
    current: Accumulator,
    baseline: Accumulator,
    *,
    min_expected: float = 5.0,
) -> BaselineTest:
    """One-sided test that ``current``'s ``metric`` is worse than ``baseline``'s.

    Parameters
    ----------
    metric
        One of :func:`supported_metrics` for the accumulators' class.
    current
        The window's accumulator.
    baseline
        The reference accumulator, of the same class.
    min_expected
        Proportion tests switch from the z-test to Fisher's exact test when the rarer
        outcome's expected count in the smaller sample is below this.

    Examples
    --------
    >>> import numpy as np
    >>> ref = BinaryAccumulator()
    >>> _ = ref.update(np.r_[np.ones(500), np.zeros(500)],
    ...                np.r_[np.full(450, .9), np.full(50, .1), np.full(500, .2)])
    >>> cur = BinaryAccumulator()
    >>> _ = cur.update(np.r_[np.ones(100), np.zeros(100)],
    ...                np.r_[np.full(70, .9), np.full(30, .1), np.full(100, .2)])
    >>> res = worse_than_baseline("recall", cur, ref)
    >>> res.value, res.baseline, res.method, res.p_value < 1e-6
    (0.7, 0.9, 'z_test', True)

    """
    if type(current) is not type(baseline):
        raise TypeError(
            "current and baseline must be accumulators of the same class, got "
            f"{type(current).__name__} and {type(baseline).__name__}"
        )
    kind = type(current)
    if metric not in _supported(kind):
        raise ValueError(f"metric must be one of {supported_metrics(kind)} for {kind.__name__}, got {metric!r}")
    if isinstance(min_expected, bool) or not isinstance(min_expected, (int, float)) or (
        min_expected < 0
    ):
        raise ValueError(f"min_expected must be a number >= 0, got {min_expected!r}")
    if metric == "roc_auc":
        return _auc_test(current, baseline)
    if metric in _PROPORTIONS.get(kind, {}):
        counts = _PROPORTIONS[kind][metric]
        return _proportion_test(metric, *counts(current), *counts(baseline), min_expected)
    moments = _MEANS[kind][metric]
    return _welch_test(metric, moments(current), moments(baseline))
