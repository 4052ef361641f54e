"""Univariate drift tests of a window against a reference profile.

Each test takes a reference profile and a window accumulator (or, for convenience, two plain
arrays: reference values and current values) and returns a
:class:`~driftline.monitors.results.DriftResult`.

* ``ks`` (numeric): two-sample Kolmogorov-Smirnov D, two-sided, with the p-value of
  ``scipy.stats.ks_2samp`` for the method scipy's ``auto`` rule picks (exact up to 10,000
  values per side, asymptotic beyond). Effect size: D.
* ``chi2`` (categorical, or numeric on the quantile bins): Pearson chi-squared on the 2 x k
  table, no continuity correction, as ``scipy.stats.chi2_contingency(correction=False)``.
  Effect size: Cramér's V.
* ``psi`` (both): population stability index. Effect size: PSI.
* ``wasserstein`` (numeric): Wasserstein-1 distance, no p-value. Effect size: the distance
  divided by the reference standard deviation (ddof=0).
* ``js`` (both): Jensen-Shannon distance, base 2, in [0, 1], no p-value. Effect size: the
  distance.

KS and Wasserstein sort the window sample (the reference sample is sorted once, by the
profile) and walk both in one compiled pass (:mod:`driftline.monitors.ecdf`), comparing the
ECDFs after each distinct value, so ties give exactly scipy's statistic; the exact p-value for
equal sample sizes is scipy's formula compiled with the same arithmetic, for unequal sizes it
calls scipy's compiled kernel.

Exact and approximate results
-----------------------------
* ``chi2``, ``psi`` and ``js`` work on counts (the reference's quantile bins for numeric
  features, the categories for categorical ones) and are exact for those binned
  distributions: counts merge exactly, so they never depend on sampling.
* ``ks`` and ``wasserstein`` need raw values. They are exact (``exact=True``, equal to
  ``scipy.stats.ks_2samp`` and ``scipy.stats.wasserstein_distance`` on the full data, the
  latter to floating-point rounding) while
  the window's non-missing values fit the reservoir (``reservoir_size``, 10,000 by default)
  and the reference has at most ``reservoir_size`` values. Beyond that they are computed on
  uniform samples of size ``m`` (``exact=False``) and the KS p-value is the one of the
  sampled test. By the Dvoretzky-Kiefer-Wolfowitz inequality (Massart's constant; it also
  holds for sampling without replacement), with probability at least ``1 - delta`` the
  sample ECDF is within ``eps = sqrt(ln(2 / delta) / (2 m))`` of the window ECDF, so
  ``|D_sample - D| <= eps`` (``eps = 0.0136`` for ``m = 10,000``, ``delta = 0.05``; add the
  reference's own ``eps`` when it is sampled too), and the Wasserstein distance is off by at
  most ``eps * (max - min)`` of the pooled values.

Missing, empty, constant and unseen
-----------------------------------
* Missing values (NaN, +-inf, ``None``) are excluded from every test and counted by the
  accumulators; ``n_current`` is the number of non-missing window values.
* An empty window (no non-missing value) does not raise: it gives a result with
  ``n_current=0``, ``statistic``, ``effect_size`` and ``p_value`` NaN (``p_value`` stays
  ``None`` for tests without one). :func:`~driftline.monitors.fdr.benjamini_hochberg`
  leaves NaN p-values out of the family.
* Constant inputs are ordinary inputs: equal constants give D = 0, p = 1, PSI = JS = W = 0.
  A constant reference has standard deviation 0, so the Wasserstein effect size is ``0.0``
  when W = 0 and ``inf`` otherwise.
* Categories absent from the reference are pooled into one "unseen" cell. For ``chi2`` the
  reference side of that cell gets a pseudo-count of :data:`UNSEEN_PSEUDO_COUNT` (0.5) so the
  expected frequencies stay positive; the table is otherwise the observed one (columns empty
  on both sides are dropped, as ``chi2_contingency`` requires). ``psi`` floors every
  proportion at :data:`PSI_EPSILON` (1e-4) before taking logs; ``js`` is finite with empty
  bins and uses no epsilon. A table with a single non-empty column gives chi2 = 0, p = 1.

Examples
--------
>>> import numpy as np
>>> from scipy import stats
>>> rng = np.random.default_rng(0)
>>> ref, cur = rng.normal(size=500), rng.normal(0.3, 1.0, size=400)
>>> r = ks(ref, cur)
>>> s = stats.ks_2samp(ref, cur)
>>> bool(abs(r.statistic - s.statistic) < 1e-12 and abs(r.p_value - s.pvalue) < 1e-12)
True
>>> profile = NumericProfile.fit(ref, name="x")
>>> acc = profile.new_accumulator().update(cur)
>>> [res.test for res in compare(profile, acc)]
['ks', 'psi', 'wasserstein']
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Union

import numpy as np
from scipy import special, stats

from driftline.monitors.accumulators import CategoricalAccumulator, NumericAccumulator
from driftline.monitors.ecdf import ks_numerator, prob_outside_square, sorted_frame, wasserstein_sum
from driftline.monitors.profile import CategoricalProfile, NumericProfile
from driftline.monitors.results import DriftResult

try:
    # scipy's compiled kernel for the exact p-value when the sample sizes differ; no public API exposes it.
    from scipy.stats._stats_py import _compute_outer_prob_inside_method as _scipy_outer_inside
except ImportError:  # pragma: no cover - depends on the scipy build
    _scipy_outer_inside = None

__all__ = [
    "ks",
    "chi_squared",
    "psi",
    "wasserstein",
    "jensen_shannon",
    "compare",
    "compare_many",
    "DEFAULT_TESTS",
    "PSI_EPSILON",
    "UNSEEN_PSEUDO_COUNT",
]

Profile = Union[NumericProfile, CategoricalProfile]
Accumulator = Union[NumericAccumulator, CategoricalAccumulator]

PSI_EPSILON = 1e-4
UNSEEN_PSEUDO_COUNT = 0.5
DEFAULT_TESTS: dict[str, tuple[str, ...]] = {
    "numeric": ("ks", "psi", "wasserstein"),
    "categorical": ("chi2", "psi", "js"),
}
_ALIASES = {
    "ks": "ks",
    "kolmogorov_smirnov": "ks",
    "chi2": "chi2",
    "chi_squared": "chi2",
    "psi": "psi",
    "wasserstein": "wasserstein",
    "js": "js",
    "jensen_shannon": "js",
}
_VALID_TESTS = {"numeric": {"ks", "chi2", "psi", "wasserstein", "js"}, "categorical": {"chi2", "psi", "js"}}
_KS_MAX_AUTO_N = 10_000  # scipy's ks_2samp(method='auto') is exact up to this size
# scipy's exact p-value for unequal sizes costs O(n1 * n2) (0.1 s at 10,000 x 7,000): a stream
# closing many windows uses it only up to this much work, and the asymptotic method beyond.
_KS_EXACT_MAX_WORK = 1_000_000


def ks_method(n1: int, n2: int) -> str:
    """The ``method`` of ``scipy.stats.ks_2samp`` that :func:`ks` reproduces for these sizes.

    Exact for equal sizes up to 10,000 (as scipy's ``auto``) and for unequal sizes while
    ``n1 * n2 <= 1e6``; asymptotic beyond.

    >>> ks_method(10_000, 10_000), ks_method(10_000, 7_000), ks_method(900, 1_000)
    ('exact', 'asymp', 'exact')
    """
    if max(n1, n2) <= _KS_MAX_AUTO_N and (n1 == n2 or n1 * n2 <= _KS_EXACT_MAX_WORK):
        return "exact"
    return "asymp"


# --------------------------------------------------------------------------- inputs


def _numeric_pair(reference: Any, current: Any) -> tuple[NumericProfile, NumericAccumulator]:
    if isinstance(reference, NumericProfile):
        if not isinstance(current, NumericAccumulator):
            raise TypeError(f"current must be a NumericAccumulator, got {type(current).__name__}")
        return reference, current
    if isinstance(reference, CategoricalProfile):
        raise ValueError(f"this test needs a numeric feature, got the categorical profile {reference.name!r}")
    cur = np.asarray(current, dtype=np.float64).ravel()
    ref = np.asarray(reference, dtype=np.float64).ravel()
    size = max(ref.size, cur.size, 1)
    profile = NumericProfile.fit(ref, reservoir_size=size)
    return profile, profile.new_accumulator().update(cur)


def _any_pair(reference: Any, current: Any) -> tuple[Profile, Accumulator]:
    if isinstance(reference, CategoricalProfile):
        if not isinstance(current, CategoricalAccumulator):
            raise TypeError(f"current must be a CategoricalAccumulator, got {type(current).__name__}")
        return reference, current
    if isinstance(reference, NumericProfile):
        return _numeric_pair(reference, current)
    ref = np.asarray(reference)
    if ref.dtype.kind in "fiu" and np.asarray(current).dtype.kind in "fiu":
        return _numeric_pair(reference, current)
    profile = CategoricalProfile.fit(reference)
    return profile, profile.new_accumulator().update(current)


def _categorical_pair(reference: Any, current: Any) -> tuple[Profile, Accumulator]:
    if isinstance(reference, (NumericProfile, CategoricalProfile)):
        return _any_pair(reference, current)
    profile = CategoricalProfile.fit(reference)
    return profile, profile.new_accumulator().update(current)


def _empty(profile: Profile, test: str, has_p: bool) -> DriftResult:
    return DriftResult(
        profile.name, test, math.nan, math.nan if has_p else None, math.nan, profile.n_reference, 0, True
    )


def _binned(profile: Profile, acc: Accumulator) -> tuple[np.ndarray, np.ndarray]:
    """Reference and current counts on common cells; categorical gets a trailing 'unseen' cell."""
    if isinstance(profile, NumericProfile):
        if not np.array_equal(profile.edges, acc.edges):
            raise ValueError(f"current must be an accumulator of profile {profile.name!r} (bin edges differ)")
        return profile.reference_counts, acc.counts
    index = profile.index
    cur = np.zeros(len(index) + 1, dtype=np.int64)
    unseen = 0
    for key, c in acc.counts.items():
        i = index.get(key)
        if i is None:
            unseen += c
        else:
            cur[i] = c
    cur[-1] = unseen
    ref = np.append(profile.reference_counts, 0)
    return ref, cur


# --------------------------------------------------------------------------- KS


def _raw_statistics(job: tuple[NumericProfile, NumericAccumulator, set[str]]) -> dict[str, Any]:
    """The tests on raw values of one feature, sharing one sort of its window sample.

    ``ks``: ``n1 * n2 * D`` (an int); ``wasserstein``: the distance. numpy's sort and the
    compiled walks release the GIL, so features run in parallel threads.
    """
    profile, acc, tests = job
    ref, cur = profile.reference_frame, sorted_frame(acc._sample_view())
    out: dict[str, Any] = {}
    if "ks" in tests:
        out["ks"] = int(ks_numerator(ref, cur))
    if "wasserstein" in tests:
        out["wasserstein"] = float(wasserstein_sum(ref, cur)) / (float(ref.size - 2) * float(cur.size - 2))
    return out


def _prob_outside_python(m: int, n: int, g: int, h: int) -> float:  # pragma: no cover - fallback
    if m < n:
        m, n = n, m
    mg, ng = m // g, n // g
    minj, maxj = 0, min(int(np.ceil(h / mg)), n + 1)
    curlen = maxj - minj
    a = np.ones(min(2 * maxj + 2, n + 1))
    a[minj:maxj] = 0.0
    for i in range(1, m + 1):
        lastminj, lastlen = minj, curlen
        minj = min(max(int(np.floor((ng * i - h) / mg)) + 1, 0), n)
        maxj = min(int(np.ceil((ng * i + h) / mg)), n + 1)
        if maxj <= minj:
            return 1.0
        val = 0.0 if minj == 0 else 1.0
        for jj in range(maxj - minj):
            j = jj + minj
            val = (a[jj + minj - lastminj] * i + val * j) / (i + j)
            a[jj] = val
        curlen = maxj - minj
        if lastlen > curlen:
            a[maxj - minj : maxj - minj + (lastlen - curlen)] = 1
    return float(a[maxj - minj - 1])


def _ks_pvalue(n1: int, n2: int, num: int) -> tuple[float, float]:
    """(D, p) as scipy.stats.ks_2samp(method=ks_method(n1, n2)) computes them."""
    g = math.gcd(n1, n2)
    lcm = (n1 // g) * n2
    h = num // g
    d = h / lcm
    if ks_method(n1, n2) == "exact":
        if h == 0:
            return d, 1.0
        if n1 == n2:
            # A product of ratios below 1: it cannot overflow, so there is no error state to watch.
            prob = float(prob_outside_square(n1, h))
        else:
            try:
                with np.errstate(invalid="raise", over="raise"):
                    if _scipy_outer_inside is not None:
                        prob = float(_scipy_outer_inside(n1, n2, g, h))
                    else:
                        prob = _prob_outside_python(n1, n2, g, h)
            except (FloatingPointError, OverflowError):
                prob = math.nan
        if 0.0 <= prob <= 1.0:
            return d, prob
    m, n = sorted((float(n1), float(n2)), reverse=True)
    en = m * n / (m + n)
    prob = kstwo_sf(d, int(np.round(en)))
    return d, min(max(prob, 0.0), 1.0)


def kstwo_sf(d: float, n: int) -> float:
    """``scipy.stats.kstwo.sf(d, n)``, the p-value of ``ks_2samp``'s asymptotic method.

    In the tail where scipy itself approximates it by twice the one-sided p-value (``n > 140``
    and ``2.2 <= n d² < 370``, a p-value below about 0.025: a drifted window), that one-sided
    p-value is summed here instead of by ``scipy.special.smirnov``. Smirnov's formula is a sum
    of about ``n (1 - d)`` positive terms; scipy adds them in double-double arithmetic, 5 ms at
    ``n = 4,000`` and most of the time it takes to close a drifted window. Summed in log space
    with numpy they take 0.5 ms and agree with scipy to about 1e-9 relative (the drift suite
    checks both branches against scipy). Everywhere else (and beyond ``n = 1,000,000``, where
    scipy's ``smirnov`` uses an asymptotic formula) this is scipy's function.

    >>> round(kstwo_sf(0.05, 4_000), 12) == round(float(stats.kstwo.sf(0.05, 4_000)), 12)
    True
    """
    nd = n * d
    if not 140 < n <= 1_000_000 or not (0.0 < d < 0.5 and 1.0 < nd < n - 1) or not 2.2 <= nd * d < 370.0:
        return float(stats.kstwo.sf(d, n))
    j = np.arange(int(math.floor(n * (1.0 - d))) + 1, dtype=np.float64)
    with np.errstate(divide="ignore"):
        terms = (
            special.gammaln(n + 1.0) - special.gammaln(j + 1.0) - special.gammaln(n - j + 1.0)
            + (n - j) * np.log1p(np.maximum(-d - j / n, -1.0)) + (j - 1.0) * np.log(d + j / n)
        )
    return min(max(2.0 * d * float(np.exp(terms).sum()), 0.0), 1.0)


def ks(profile: Any, acc: Any) -> DriftResult:
    """Two-sample Kolmogorov-Smirnov test (two-sided), equal to ``scipy.stats.ks_2samp``.

    Parameters
    ----------
    profile
        A :class:`NumericProfile`, or reference values (array-like).
    acc
        A :class:`NumericAccumulator` of ``profile``, or current values (array-like).

    Examples
    --------
    >>> ks([1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 5.0, 6.0]).statistic
    0.5
    """
    profile, acc = _numeric_pair(profile, acc)
    if acc.n_valid == 0:
        return _empty(profile, "ks", True)
    return _ks_result(profile, acc, _raw_statistics((profile, acc, {"ks"}))["ks"])


def _ks_result(profile: NumericProfile, acc: NumericAccumulator, num: int) -> DriftResult:
    d, p = _ks_pvalue(profile.reference_sample.size, acc._sample_size(), num)
    return DriftResult(
        profile.name, "ks", d, p, d, profile.n_reference, acc.n_valid, acc.is_exact and profile.sample_is_exact
    )


# --------------------------------------------------------------------------- binned tests


def _chi2_table(ref: np.ndarray, cur: np.ndarray, categorical: bool) -> np.ndarray:
    ref = ref.astype(np.float64)
    if categorical and cur[-1] > 0:
        ref[-1] = UNSEEN_PSEUDO_COUNT
    table = np.vstack((ref, cur.astype(np.float64)))
    return table[:, table.sum(axis=0) > 0]


def _chi2_stat(table: np.ndarray) -> tuple[float, int, float]:
    """(chi2, dof, total) as scipy.stats.chi2_contingency(correction=False) computes them."""
    dof = table.shape[1] - 1
    total = table.sum()
    if dof == 0:
        return 0.0, 0, float(total)
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / total
    stat = float((((table - expected) ** 2) / expected).sum())
    return stat, dof, float(total)


def chi_squared(profile: Any, acc: Any) -> DriftResult:
    """Pearson chi-squared test of homogeneity on the 2 x k table reference vs window.

    Equal to ``scipy.stats.chi2_contingency(table, correction=False)`` on the table that
    :mod:`this module <driftline.monitors.drift>` documents (unseen categories pooled, with a
    reference pseudo-count of 0.5). Numeric profiles use their quantile bins as the cells.
    Plain-array inputs are treated as categories.

    Examples
    --------
    >>> r = chi_squared(["a"] * 50 + ["b"] * 50, ["a"] * 70 + ["b"] * 30)
    >>> round(r.statistic, 4), round(r.p_value, 4)
    (8.3333, 0.0039)
    """
    profile, acc = _categorical_pair(profile, acc)
    if acc.n_valid == 0:
        return _empty(profile, "chi2", True)
    ref, cur = _binned(profile, acc)
    stat, dof, total = _chi2_stat(_chi2_table(ref, cur, isinstance(profile, CategoricalProfile)))
    p = float(special.chdtrc(dof, stat)) if dof > 0 else 1.0
    v = math.sqrt(stat / total) if dof > 0 else 0.0
    return DriftResult(profile.name, "chi2", stat, p, v, profile.n_reference, acc.n_valid, True)


def _proportions(ref: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return ref / ref.sum(), cur / cur.sum()


def _psi_value(ref: np.ndarray, cur: np.ndarray) -> float:
    p, q = _proportions(ref, cur)
    p = np.maximum(p, PSI_EPSILON)
    q = np.maximum(q, PSI_EPSILON)
    return float(np.sum((q - p) * np.log(q / p)))


def psi(profile: Any, acc: Any) -> DriftResult:
    """Population stability index ``sum((q - p) * ln(q / p))`` over bins or categories.

    ``p`` and ``q`` are the reference and window proportions, each floored at
    :data:`PSI_EPSILON`. Numeric features use the reference's quantile bins; categorical
    ones their categories plus the pooled unseen cell. Plain numeric arrays are binned on
    10 reference quantile bins, other arrays are treated as categories.

    Examples
    --------
    >>> psi(["a", "b"] * 50, ["a", "b"] * 50).statistic
    0.0
    """
    return _binned_effect(profile, acc, "psi", _psi_value)


def _binned_effect(profile: Any, acc: Any, test: str, value_of: Any) -> DriftResult:
    """A test without a p-value on the binned distributions: the statistic is the effect size."""
    profile, acc = _any_pair(profile, acc)
    if acc.n_valid == 0:
        return _empty(profile, test, False)
    value = value_of(*_binned(profile, acc))
    return DriftResult(profile.name, test, value, None, value, profile.n_reference, acc.n_valid, True)


def _js_value(ref: np.ndarray, cur: np.ndarray) -> float:
    # scipy.spatial.distance.jensenshannon(p, q, base=2), written out to skip its input checks.
    p, q = _proportions(ref.astype(np.float64), cur.astype(np.float64))
    m = (p + q) / 2.0
    js = np.sum(special.rel_entr(p, m)) + np.sum(special.rel_entr(q, m))
    js /= np.log(2.0)
    return float(np.sqrt(js / 2.0))


def jensen_shannon(profile: Any, acc: Any) -> DriftResult:
    """Jensen-Shannon distance (base 2, in [0, 1]) between the binned distributions.

    Equal to ``scipy.spatial.distance.jensenshannon(ref_counts, cur_counts, base=2)``.

    Examples
    --------
    >>> jensen_shannon(["a"] * 10, ["b"] * 10).statistic
    1.0
    """
    return _binned_effect(profile, acc, "js", _js_value)


# --------------------------------------------------------------------------- Wasserstein


def wasserstein(profile: Any, acc: Any) -> DriftResult:
    """Wasserstein-1 distance; effect size is the distance over the reference std (ddof=0).

    Equal to ``scipy.stats.wasserstein_distance(reference, current)`` up to floating-point
    rounding (the integral is summed in one walk over both sorted samples).

    Examples
    --------
    >>> r = wasserstein([0.0, 1.0, 3.0], [5.0, 6.0, 8.0])
    >>> r.statistic
    5.0
    """
    profile, acc = _numeric_pair(profile, acc)
    if acc.n_valid == 0:
        return _empty(profile, "wasserstein", False)
    return _wasserstein_result(profile, acc, _raw_statistics((profile, acc, {"wasserstein"}))["wasserstein"])


def _wasserstein_result(profile: NumericProfile, acc: NumericAccumulator, w: float) -> DriftResult:
    if profile.std > 0:
        effect = w / profile.std
    else:
        effect = 0.0 if w == 0 else math.inf
    exact = acc.is_exact and profile.sample_is_exact
    return DriftResult(profile.name, "wasserstein", w, None, effect, profile.n_reference, acc.n_valid, exact)


# --------------------------------------------------------------------------- batches

_FUNCS = {"ks": ks, "chi2": chi_squared, "psi": psi, "wasserstein": wasserstein, "js": jensen_shannon}


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _thread_map(fn: Callable[[Any], Any], items: list[Any], n_threads: int | None) -> list[Any]:
    """``[fn(x) for x in items]``, split over up to ``n_threads`` threads of one shared pool."""
    global _POOL
    workers = min(_available_cpus() if n_threads is None else n_threads, len(items))
    if workers <= 1:
        return [fn(x) for x in items]
    with _POOL_LOCK:
        if _POOL is None or _POOL._max_workers < workers:
            _POOL = ThreadPoolExecutor(max(workers, os.cpu_count() or 1), thread_name_prefix="driftline-drift")
        pool = _POOL
    parts = pool.map(lambda k: [fn(x) for x in items[k::workers]], range(workers))
    out: list[Any] = [None] * len(items)
    for k, part in enumerate(parts):
        out[k::workers] = part
    return out


def _canonical(tests: Sequence[str], kind: str) -> list[str]:
    if isinstance(tests, str):
        raise ValueError(f"tests must be a sequence of test names, got the string {tests!r}")
    out = []
    for t in tests:
        name = _ALIASES.get(t)
        if name is None:
            raise ValueError(f"tests must be names among {sorted(_ALIASES)}, got {t!r}")
        if name not in _VALID_TESTS[kind]:
            raise ValueError(f"test {t!r} is not defined for {kind} features; valid: {sorted(_VALID_TESTS[kind])}")
        out.append(name)
    return out


def compare(profile: Profile, acc: Accumulator, tests: Sequence[str] | None = None) -> list[DriftResult]:
    """Run several tests on one feature (default: :data:`DEFAULT_TESTS` for its kind)."""
    if not isinstance(profile, (NumericProfile, CategoricalProfile)):
        raise TypeError(f"profile must be a NumericProfile or CategoricalProfile, got {type(profile).__name__}")
    names = _canonical(DEFAULT_TESTS[profile.kind] if tests is None else tests, profile.kind)
    return [_FUNCS[name](profile, acc) for name in names]


def compare_many(
    profiles: Mapping[str, Profile],
    accs: Mapping[str, Accumulator],
    tests_by_kind: Mapping[str, Sequence[str]] | None = None,
    *,
    n_threads: int | None = None,
) -> list[DriftResult]:
    """Run the tests of every feature of a window, batched across features.

    Parameters
    ----------
    profiles
        Feature name -> profile.
    accs
        Feature name -> accumulator of that profile; every profiled feature must be present.
    tests_by_kind
        ``{"numeric": [...], "categorical": [...]}``; a missing kind uses :data:`DEFAULT_TESTS`.
    n_threads
        Threads for the tests on raw values (``ks``, ``wasserstein``), one feature at a time
        each; ``None``: one per CPU this process may run on (``os.sched_getaffinity``). The
        results do not depend on it.

    Returns
    -------
    list[DriftResult]
        Feature by feature in ``profiles`` order, tests in the order given. Results equal
        :func:`compare` on each feature; KS p-values and chi-squared p-values are computed in
        batches and the KS statistics share one sort per feature.

    Examples
    --------
    >>> import numpy as np
    >>> p = {"x": NumericProfile.fit(np.arange(50.0)), "c": CategoricalProfile.fit(["a", "b"] * 5)}
    >>> a = {"x": p["x"].new_accumulator().update(np.arange(10.0, 60.0)),
    ...      "c": p["c"].new_accumulator().update(["a"] * 4)}
    >>> [(r.feature, r.test) for r in compare_many(p, a, {"numeric": ["ks"], "categorical": ["chi2"]})]
    [('x', 'ks'), ('c', 'chi2')]
    """
    if n_threads is not None and (not isinstance(n_threads, int) or isinstance(n_threads, bool) or n_threads < 1):
        raise ValueError(f"n_threads must be None or an int >= 1, got {n_threads!r}")
    tests_by_kind = dict(tests_by_kind or {})
    unknown = set(tests_by_kind) - set(DEFAULT_TESTS)
    if unknown:
        raise ValueError(f"tests_by_kind keys must be 'numeric' or 'categorical', got {sorted(unknown)}")
    plan = {kind: _canonical(tests_by_kind.get(kind, DEFAULT_TESTS[kind]), kind) for kind in DEFAULT_TESTS}
    slots: list[tuple[str, str, Profile, Accumulator]] = []
    for feature, profile in profiles.items():
        if feature not in accs:
            raise ValueError(f"accs must have an accumulator for every profiled feature; missing {feature!r}")
        acc = accs[feature]
        if isinstance(profile, NumericProfile):
            if not isinstance(acc, NumericAccumulator):
                raise TypeError(f"accs[{feature!r}] must be a NumericAccumulator, got {type(acc).__name__}")
        elif isinstance(profile, CategoricalProfile):
            if not isinstance(acc, CategoricalAccumulator):
                raise TypeError(f"accs[{feature!r}] must be a CategoricalAccumulator, got {type(acc).__name__}")
        else:
            raise TypeError(f"profiles[{feature!r}] must be a profile, got {type(profile).__name__}")
        for test in plan[profile.kind]:
            slots.append((feature, test, profile, acc))

    results: list[DriftResult | None] = [None] * len(slots)
    raw_jobs: list[tuple[int, str, NumericProfile, NumericAccumulator]] = []
    chi_jobs: list[tuple[int, Profile, Accumulator, float, int, float]] = []
    raw_tests: dict[str, tuple[NumericProfile, NumericAccumulator, set[str]]] = {}
    for i, (feature, test, profile, acc) in enumerate(slots):
        if acc.n_valid == 0:
            results[i] = _empty(profile, test, test in ("ks", "chi2"))
        elif test in ("ks", "wasserstein"):
            raw_tests.setdefault(feature, (profile, acc, set()))[2].add(test)
            raw_jobs.append((i, test, profile, acc))
        elif test == "chi2":
            ref, cur = _binned(profile, acc)
            stat, dof, total = _chi2_stat(_chi2_table(ref, cur, isinstance(profile, CategoricalProfile)))
            chi_jobs.append((i, profile, acc, stat, dof, total))
        else:
            results[i] = _FUNCS[test](profile, acc)

    raw = dict(zip(raw_tests, _thread_map(_raw_statistics, list(raw_tests.values()), n_threads)))
    for i, test, profile, acc in raw_jobs:
        value = raw[slots[i][0]][test]
        results[i] = _ks_result(profile, acc, value) if test == "ks" else _wasserstein_result(profile, acc, value)

    if chi_jobs:
        stat_arr = np.array([job[3] for job in chi_jobs])
        dof_arr = np.array([job[4] for job in chi_jobs])
        p_arr = np.where(dof_arr > 0, special.chdtrc(np.maximum(dof_arr, 1), stat_arr), 1.0).tolist()
        for (i, profile, acc, stat, dof, total), p in zip(chi_jobs, p_arr):
            v = math.sqrt(stat / total) if dof > 0 else 0.0
            results[i] = DriftResult(profile.name, "chi2", stat, p, v, profile.n_reference, acc.n_valid, True)
    return [
        r if r.feature == slot[0] else replace(r, feature=slot[0])
        for r, slot in zip(results, slots)
        if r is not None
    ]
