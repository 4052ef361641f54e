"""The one suite every drift test passes: exactness vs scipy, merge = concatenate, edge cases."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import spatial, stats

from driftline.monitors.drift import ks_method, kstwo_sf
from driftline.monitors import (
    PSI_EPSILON,
    UNSEEN_PSEUDO_COUNT,
    CategoricalAccumulator,
    CategoricalProfile,
    DriftResult,
    NumericAccumulator,
    NumericProfile,
    benjamini_hochberg,
    chi_squared,
    compare,
    compare_many,
    domain_classifier,
    jensen_shannon,
    ks,
    psi,
    wasserstein,
)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NUMERIC_TESTS = {"ks": ks, "chi2": chi_squared, "psi": psi, "wasserstein": wasserstein, "js": jensen_shannon}
CATEGORICAL_TESTS = {"chi2": chi_squared, "psi": psi, "js": jensen_shannon}


def close(a: float, b: float, tol: float = 1e-9) -> bool:
    return abs(a - b) <= tol * max(1.0, abs(b))


def p_close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 and (b < 1e-300 or abs(a - b) <= 1e-6 * b)


finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=64)
# Mixes continuous values with a few repeated ones so ties (within and across samples) occur.
numeric_values = st.lists(st.one_of(finite, st.sampled_from([0.0, -0.0, 1.0, 2.5, -3.0])), min_size=1, max_size=120)
categories = st.lists(st.sampled_from(list("abcdefg")), min_size=1, max_size=150)


def fit_pair(ref, cur, n_bins: int = 10):
    profile = NumericProfile.fit(np.asarray(ref, dtype=float), n_bins=n_bins, reservoir_size=1000, name="x")
    return profile, profile.new_accumulator().update(np.asarray(cur, dtype=float))


def bin_counts(edges: np.ndarray, x: np.ndarray) -> np.ndarray:
    bounds = np.concatenate(([-np.inf], edges, [np.inf]))
    return np.array([np.sum((x >= lo) & (x < hi)) for lo, hi in zip(bounds[:-1], bounds[1:])])


# --------------------------------------------------------------------------- exactness vs scipy


@SETTINGS
@given(numeric_values, numeric_values)
def test_ks_equals_scipy(ref, cur):
    profile, acc = fit_pair(ref, cur)
    r = ks(profile, acc)
    s = stats.ks_2samp(ref, cur, method=ks_method(len(ref), len(cur)))
    assert close(r.statistic, float(s.statistic), 1e-12)
    assert p_close(r.p_value, float(s.pvalue))
    assert r.effect_size == r.statistic and r.exact
    assert (r.n_reference, r.n_current) == (len(ref), len(cur))


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 2500), st.integers(1, 2500), st.floats(0.0, 1.0), st.integers(0, 2**32 - 1))
def test_ks_equals_scipy_larger_samples(n1, n2, shift, seed):
    rng = np.random.default_rng(seed)
    ref, cur = rng.normal(size=n1), rng.normal(shift, 1.0, size=n2)
    if seed % 2:
        cur = rng.normal(shift, 1.0, size=n1)
    r = ks(ref, cur)
    s = stats.ks_2samp(ref, cur, method=ks_method(len(ref), len(cur)))
    assert close(r.statistic, float(s.statistic), 1e-12)
    assert p_close(r.p_value, float(s.pvalue))


def test_ks_equal_sizes_at_scipy_exact_limit():
    rng = np.random.default_rng(7)
    for shift in (0.0, 0.03, 0.2):
        ref, cur = rng.normal(size=10_000), rng.normal(shift, 1.0, size=10_000)
        r, s = ks(ref, cur), stats.ks_2samp(ref, cur, method=ks_method(len(ref), len(cur)))
        assert close(r.statistic, float(s.statistic), 1e-12) and p_close(r.p_value, float(s.pvalue))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 300_000), st.floats(0.0, 400.0), st.booleans())
def test_kstwo_sf_equals_scipy(n, n_d_squared, on_grid):
    # Both sides of the tail that kstwo_sf sums itself (2.2 <= n d² < 370, n > 140), and d on
    # the 1/n grid where ks_2samp's statistics lie.
    d = min(math.sqrt(n_d_squared / n), 1.0)
    if on_grid:
        d = round(d * n) / n
    assert p_close(kstwo_sf(d, n), float(stats.kstwo.sf(d, n)))


@pytest.mark.parametrize(("n", "n_d_squared"), [(1_000_000, 5.0), (1_000_001, 5.0), (2_000_000, 3.0), (2_000_000, 10.0)])
def test_kstwo_sf_equals_scipy_around_its_asymptotic_limit(n, n_d_squared):
    d = math.sqrt(n_d_squared / n)
    assert p_close(kstwo_sf(d, n), float(stats.kstwo.sf(d, n)))


@pytest.mark.parametrize("shift", [0.02, 0.1, 0.3])
def test_ks_beyond_exact_limit_uses_scipy_asymptotic_method(shift):
    rng = np.random.default_rng(3)
    ref, cur = rng.normal(size=12_000), rng.normal(shift, 1.0, size=11_000)
    profile = NumericProfile.fit(ref, reservoir_size=20_000)
    acc = profile.new_accumulator().update(cur)
    r, s = ks(profile, acc), stats.ks_2samp(ref, cur, method=ks_method(len(ref), len(cur)))
    assert close(r.statistic, float(s.statistic), 1e-12) and p_close(r.p_value, float(s.pvalue))


@SETTINGS
@given(categories, categories)
def test_chi2_equals_scipy_with_unseen_pooled(ref, cur):
    profile = CategoricalProfile.fit(ref, name="c")
    acc = profile.new_accumulator().update(cur)
    r = chi_squared(profile, acc)
    seen = list(profile.categories)
    ref_row = [ref.count(c) for c in seen]
    cur_row = [cur.count(c) for c in seen]
    unseen = sum(1 for v in cur if v not in seen)
    if unseen:
        ref_row.append(UNSEEN_PSEUDO_COUNT)
        cur_row.append(unseen)
    table = np.array([ref_row, cur_row], dtype=float)
    table = table[:, table.sum(axis=0) > 0]
    s = stats.chi2_contingency(table, correction=False)
    assert close(r.statistic, float(s.statistic))
    assert p_close(r.p_value, float(s.pvalue))
    if table.shape[1] > 1:
        assert close(r.effect_size, math.sqrt(s.statistic / table.sum()))
        if not unseen:
            assert close(r.effect_size, float(stats.contingency.association(table.astype(int), method="cramer")))
    assert r.n_current == len(cur) and r.exact


@SETTINGS
@given(numeric_values, numeric_values)
def test_chi2_on_numeric_bins_equals_scipy(ref, cur):
    profile, acc = fit_pair(ref, cur)
    table = np.array([
        bin_counts(profile.edges, np.asarray(ref) + 0.0), bin_counts(profile.edges, np.asarray(cur) + 0.0)
    ])
    table = table[:, table.sum(axis=0) > 0]
    r = chi_squared(profile, acc)
    if table.shape[1] == 1:
        assert (r.statistic, r.p_value) == (0.0, 1.0)
    else:
        s = stats.chi2_contingency(table, correction=False)
        assert close(r.statistic, float(s.statistic)) and p_close(r.p_value, float(s.pvalue))


@SETTINGS
@given(numeric_values, numeric_values)
def test_wasserstein_equals_scipy_over_reference_std(ref, cur):
    profile, acc = fit_pair(ref, cur)
    r = wasserstein(profile, acc)
    w = stats.wasserstein_distance(ref, cur)
    assert close(r.statistic, w)
    std = float(np.std(ref))
    if std > 0:
        assert close(r.effect_size, w / std)
    else:
        assert r.effect_size == (0.0 if r.statistic == 0 else math.inf)


@SETTINGS
@given(numeric_values, numeric_values, st.integers(2, 12))
def test_js_and_psi_on_numeric_bins(ref, cur, n_bins):
    profile, acc = fit_pair(ref, cur, n_bins)
    rc = bin_counts(profile.edges, np.asarray(ref) + 0.0)
    cc = bin_counts(profile.edges, np.asarray(cur) + 0.0)
    assert close(jensen_shannon(profile, acc).statistic, float(spatial.distance.jensenshannon(rc, cc, base=2)))
    p = np.maximum(rc / rc.sum(), PSI_EPSILON)
    q = np.maximum(cc / cc.sum(), PSI_EPSILON)
    assert close(psi(profile, acc).statistic, float(np.sum((q - p) * np.log(q / p))))


@SETTINGS
@given(categories, categories)
def test_js_and_psi_on_categories(ref, cur):
    profile = CategoricalProfile.fit(ref)
    acc = profile.new_accumulator().update(cur)
    cats = list(profile.categories)
    rc = np.array([ref.count(c) for c in cats] + [0])
    cc = np.array([cur.count(c) for c in cats] + [sum(v not in cats for v in cur)])
    assert close(jensen_shannon(profile, acc).statistic, float(spatial.distance.jensenshannon(rc, cc, base=2)))
    p = np.maximum(rc / rc.sum(), PSI_EPSILON)
    q = np.maximum(cc / cc.sum(), PSI_EPSILON)
    assert close(psi(profile, acc).statistic, float(np.sum((q - p) * np.log(q / p))))


# --------------------------------------------------------------------------- accumulators


@SETTINGS
@given(numeric_values, st.lists(st.one_of(finite, st.just(math.nan)), max_size=80), st.lists(finite, max_size=80))
def test_numeric_merge_equals_concatenation(ref, a, b):
    profile = NumericProfile.fit(ref, n_bins=5, reservoir_size=200)
    acc_a = profile.new_accumulator().update(a)
    acc_b = profile.new_accumulator(seed=1).update(b)
    merged = acc_a.merge(acc_b)
    sequential = profile.new_accumulator().update(a).update(b)
    assert merged == sequential
    assert acc_b.merge(acc_a) == merged
    one_batch = profile.new_accumulator().update(list(a) + list(b))
    assert np.array_equal(one_batch.counts, merged.counts)
    summary = (one_batch.n, one_batch.n_missing, one_batch.min, one_batch.max)
    assert summary == (merged.n, merged.n_missing, merged.min, merged.max)
    assert close(one_batch.mean, merged.mean) and close(one_batch.m2, merged.m2, 1e-7)
    assert np.array_equal(np.sort(one_batch.sample()), np.sort(merged.sample()))
    for name, test in NUMERIC_TESTS.items():
        r1, r2 = test(profile, merged), test(profile, one_batch)
        assert r1.n_current == r2.n_current
        if not math.isnan(r1.statistic):
            assert close(r1.statistic, r2.statistic), name


@SETTINGS
@given(numeric_values, st.lists(st.one_of(finite, st.just(math.nan), st.just(math.inf)), max_size=300),
       st.integers(2, 80), st.booleans())
def test_numeric_bin_counts_equal_numpy(ref, values, n_bins, strided):
    """The histogram on the profile's edges, both with few edges (compared one by one, compiled)
    and with many (binary search), equals numpy's; values on the edges included."""
    profile = NumericProfile.fit(ref, n_bins=n_bins)
    x = np.array(values + profile.edges.tolist() + [-0.0], dtype=np.float64)
    if strided:
        x = np.stack([x, np.zeros_like(x)], axis=1)[:, 0]
    acc = profile.new_accumulator().update(x)
    finite_x = x[np.isfinite(x)]
    expected = np.bincount(np.searchsorted(profile.edges, finite_x, side="right"), minlength=profile.edges.size + 1)
    assert np.array_equal(acc.counts, expected)
    assert acc.n_missing == x.size - finite_x.size


@SETTINGS
@given(categories, st.lists(st.one_of(st.sampled_from(list("abcxyz")), st.none()), max_size=80), categories)
def test_categorical_merge_equals_concatenation(ref, a, b):
    profile = CategoricalProfile.fit(ref)
    merged = profile.new_accumulator().update(a).merge(profile.new_accumulator().update(b))
    assert merged == profile.new_accumulator().update(a + b)
    assert merged.n == len(a) + len(b) and merged.n_missing == a.count(None)


@SETTINGS
@given(numeric_values, st.lists(st.one_of(finite, st.just(math.nan)), max_size=200))
def test_serialisation_round_trip(ref, values):
    profile = NumericProfile.fit(ref, n_bins=4, reservoir_size=50)
    acc = profile.new_accumulator().update(values)
    back = NumericAccumulator.from_bytes(acc.to_bytes())
    assert back == acc
    assert back.update([1.0, 2.0]) == acc.update([1.0, 2.0])
    cat = CategoricalAccumulator().update([str(v)[:3] for v in values] + [None])
    assert CategoricalAccumulator.from_bytes(cat.to_bytes()) == cat


def test_reservoir_is_bounded_and_merge_is_uniform_sample():
    profile = NumericProfile.fit(np.arange(100.0), reservoir_size=1000)
    rng = np.random.default_rng(0)
    acc = profile.new_accumulator()
    for _ in range(50):
        acc.update(rng.normal(size=997))
    assert acc.n_valid == 49_850 and acc.sample().size == 1000 and not acc.is_exact
    assert len(acc.to_bytes()) < 40_000
    other = profile.new_accumulator(seed=9).update(rng.normal(size=5000))
    merged = acc.merge(other)
    assert merged.sample().size == 1000 and merged.n_valid == 54_850
    assert set(merged.sample()) <= set(acc.sample()) | set(other.sample())


def test_sampled_ks_is_within_dkw_bound_and_not_exact():
    rng = np.random.default_rng(11)
    ref, cur = rng.normal(size=2000), rng.normal(0.1, 1.0, size=40_000)
    profile = NumericProfile.fit(ref, reservoir_size=2000)
    acc = profile.new_accumulator()
    for batch in np.array_split(cur, 40):
        acc.update(batch)
    r = ks(profile, acc)
    full = stats.ks_2samp(ref, cur, method=ks_method(len(ref), len(cur))).statistic
    eps = math.sqrt(math.log(2 / 1e-6) / (2 * 2000))
    assert not r.exact and abs(r.statistic - full) <= eps
    assert r.n_current == 40_000
    exact_sample = stats.ks_2samp(ref, acc.sample())
    assert close(r.statistic, float(exact_sample.statistic)) and p_close(r.p_value, float(exact_sample.pvalue))


def test_merge_rejects_other_bins():
    a = NumericProfile.fit([1.0, 2.0, 3.0]).new_accumulator()
    b = NumericProfile.fit([5.0, 6.0, 9.0]).new_accumulator()
    with pytest.raises(ValueError, match="edges"):
        a.merge(b)


# --------------------------------------------------------------------------- edge cases, every test


@pytest.mark.parametrize("name", list(NUMERIC_TESTS))
def test_empty_window_gives_nan_result(name):
    profile = NumericProfile.fit([1.0, 2.0, 3.0], name="x")
    acc = profile.new_accumulator().update([math.nan, None, math.inf])
    r = NUMERIC_TESTS[name](profile, acc)
    assert isinstance(r, DriftResult) and r.n_current == 0 and r.n_reference == 3
    assert math.isnan(r.statistic) and math.isnan(r.effect_size)
    assert (r.p_value is None) == (name in ("psi", "wasserstein", "js"))
    if r.p_value is not None:
        assert math.isnan(r.p_value)


@pytest.mark.parametrize("name", list(CATEGORICAL_TESTS))
def test_empty_categorical_window_gives_nan_result(name):
    profile = CategoricalProfile.fit(["a", "b"])
    r = CATEGORICAL_TESTS[name](profile, profile.new_accumulator().update([None]))
    assert r.n_current == 0 and math.isnan(r.statistic)


@pytest.mark.parametrize("name", list(NUMERIC_TESTS))
def test_constant_inputs_show_no_drift(name):
    profile = NumericProfile.fit([4.0] * 50)
    assert profile.edges.size == 2
    r = NUMERIC_TESTS[name](profile, profile.new_accumulator().update([4.0] * 30))
    assert r.statistic == 0.0 and r.effect_size == 0.0
    if r.p_value is not None:
        assert r.p_value == 1.0


@pytest.mark.parametrize("name", list(NUMERIC_TESTS))
def test_constant_reference_detects_other_constant(name):
    profile = NumericProfile.fit([4.0] * 50)
    r = NUMERIC_TESTS[name](profile, profile.new_accumulator().update([5.0] * 30))
    assert r.statistic > 0
    if name == "wasserstein":
        assert r.statistic == 1.0 and r.effect_size == math.inf
    if r.p_value is not None:
        assert r.p_value < 1e-6


@pytest.mark.parametrize("name", list(NUMERIC_TESTS))
def test_nan_values_are_missing_and_excluded(name):
    rng = np.random.default_rng(2)
    ref, cur = rng.normal(size=300), rng.normal(0.3, 1, size=200)
    with_nan_ref = np.concatenate([ref, [np.nan] * 7])
    with_nan_cur = np.concatenate([cur[:100], [np.nan, -np.inf], cur[100:]])
    p1, a1 = fit_pair(with_nan_ref, with_nan_cur)
    p2, a2 = fit_pair(ref, cur)
    assert p1.n_missing == 7 and a1.n_missing == 2 and a1.n_valid == 200
    r1, r2 = NUMERIC_TESTS[name](p1, a1), NUMERIC_TESTS[name](p2, a2)
    assert r1 == r2


@pytest.mark.parametrize("name", list(CATEGORICAL_TESTS))
def test_unseen_categories_raise_drift(name):
    profile = CategoricalProfile.fit(["a", "b"] * 100)
    same = CATEGORICAL_TESTS[name](profile, profile.new_accumulator().update(["a", "b"] * 50))
    new = CATEGORICAL_TESTS[name](profile, profile.new_accumulator().update(["a", "b", "zz", "yy"] * 25))
    assert same.statistic == pytest.approx(0.0, abs=1e-12)
    assert new.statistic > 0.1 and new.n_current == 100
    if new.p_value is not None:
        assert new.p_value < 1e-6


def test_single_category_table():
    profile = CategoricalProfile.fit(["a"] * 10)
    r = chi_squared(profile, profile.new_accumulator().update(["a"] * 5))
    assert (r.statistic, r.p_value, r.effect_size) == (0.0, 1.0, 0.0)


def test_validation_messages():
    with pytest.raises(ValueError, match=r"n_bins must be an int >= 2, got 1"):
        NumericProfile.fit([1.0, 2.0], n_bins=1)
    with pytest.raises(ValueError, match="at least one finite value"):
        NumericProfile.fit([math.nan])
    with pytest.raises(ValueError, match="not defined for categorical"):
        compare(CategoricalProfile.fit(["a"]), CategoricalAccumulator(), ["ks"])
    with pytest.raises(ValueError, match="missing 'y'"):
        compare_many({"y": NumericProfile.fit([1.0])}, {})
    with pytest.raises(ValueError, match="alpha must be"):
        benjamini_hochberg([0.1], alpha=2)


def test_compare_many_equals_compare():
    rng = np.random.default_rng(5)
    profiles, accs = {}, {}
    for i in range(4):
        profiles[f"n{i}"] = NumericProfile.fit(rng.normal(size=500), name=f"n{i}")
        accs[f"n{i}"] = profiles[f"n{i}"].new_accumulator().update(rng.normal(0.1 * i, 1, size=300 + i))
    profiles["c"] = CategoricalProfile.fit(rng.choice(list("abc"), 400), name="c")
    accs["c"] = profiles["c"].new_accumulator().update(rng.choice(list("abcd"), 300))
    profiles["e"] = NumericProfile.fit([1.0, 2.0], name="e")
    accs["e"] = profiles["e"].new_accumulator()
    all_numeric = ["ks", "psi", "wasserstein", "js", "chi2"]
    single = [r for f in profiles for r in compare(profiles[f], accs[f], all_numeric if f != "c" else None)]
    for n_threads in (1, 2, 3, None):
        many = compare_many(profiles, accs, {"numeric": all_numeric}, n_threads=n_threads)
        assert len(many) == len(single) == 6 * 5 - 2
        for a, b in zip(many, single):
            assert (a.feature, a.test, a.n_current) == (b.feature, b.test, b.n_current)
            if not math.isnan(a.statistic):
                assert a == b


@pytest.mark.parametrize("n_threads", [0, -1, 1.5, True, "2"])
def test_compare_many_rejects_a_bad_thread_count(n_threads):
    profile = NumericProfile.fit([1.0, 2.0], name="x")
    with pytest.raises(ValueError, match="n_threads must be None or an int >= 1"):
        compare_many({"x": profile}, {"x": profile.new_accumulator()}, n_threads=n_threads)


# --------------------------------------------------------------------------- FDR and domain classifier


@SETTINGS
@given(st.lists(st.one_of(st.floats(0.0, 1.0), st.none(), st.just(math.nan)), max_size=40), st.floats(0.001, 0.5))
def test_benjamini_hochberg_equals_scipy(ps, alpha):
    rejected, adjusted = benjamini_hochberg(ps, alpha)
    defined = [i for i, p in enumerate(ps) if p is not None and not math.isnan(p)]
    assert np.isnan(np.delete(adjusted, defined)).all() and not np.delete(rejected, defined).any()
    if defined:
        expected = stats.false_discovery_control([ps[i] for i in defined], method="bh")
        np.testing.assert_allclose(adjusted[defined], expected, rtol=1e-12, atol=1e-15)
        assert np.array_equal(rejected[defined], expected <= alpha)


def test_domain_classifier_names_the_shifted_feature():
    rng = np.random.default_rng(0)
    n = 800
    ref = pd.DataFrame({
        "a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.choice(["x", "y", "z"], n),
    })
    cur = pd.DataFrame({
        "a": rng.normal(size=n), "b": rng.normal(1.5, 1.0, size=n), "c": rng.choice(["x", "y", "z"], n),
    })
    shifted = domain_classifier(ref, cur, max_rows=600, cv=3)
    assert shifted.auc > 0.8 and next(iter(shifted.importances)) == "b"
    assert list(shifted.importances.values()) == sorted(shifted.importances.values(), reverse=True)
    assert shifted.n_reference == shifted.n_current == 600
    same = domain_classifier(ref, ref.sample(frac=1.0, random_state=1).reset_index(drop=True).assign(
        a=rng.normal(size=n), b=rng.normal(size=n)), max_rows=600, cv=3)
    assert abs(same.auc - 0.5) < 0.08


def test_a_profile_with_an_unframed_reference_is_refused():
    profile = NumericProfile.fit(np.arange(5.0), name="x")
    with pytest.raises(ValueError, match="reference_frame must be reference_sample framed"):
        replace(profile, reference_frame=profile.reference_sample)
