"""One suite for every performance metric: exact vs scikit-learn, merge = concatenate,
serialisation, empty / single-class / constant / NaN inputs; plus the baseline test, business
value and fairness."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_absolute_percentage_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
    root_mean_squared_error,
)

from driftline.monitors.baseline import hanley_mcneil_se, supported_metrics, worse_than_baseline
from driftline.monitors.business import business_value
from driftline.monitors.fairness import FairnessAccumulator
from driftline.monitors.metrics import (
    BinaryAccumulator,
    Moments,
    MulticlassAccumulator,
    RegressionAccumulator,
    _mid_ranks,
    accumulator_from_bytes,
)

RTOL = 1e-9
NAN = np.nan
CLASSES = ("ham", "eggs", "spam")  # deliberately unsorted: proba columns follow this order


def close(got: float, want: float, rtol: float = RTOL) -> bool:
    if math.isnan(want):
        return math.isnan(got)
    return math.isclose(got, want, rel_tol=rtol, abs_tol=1e-12)


# ---------------------------------------------------------------- data strategies

scores = st.one_of(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]),
                   st.floats(0.0, 1.0, allow_nan=False))


@st.composite
def binary_data(draw, min_size=0):
    n = draw(st.integers(min_size, 60))
    y = draw(hnp.arrays(np.int64, n, elements=st.integers(0, 1)))
    s = draw(hnp.arrays(np.float64, n, elements=scores))
    return y, s, draw(st.integers(0, n))


@st.composite
def multiclass_data(draw, min_size=0):
    n = draw(st.integers(min_size, 60))
    idx = draw(hnp.arrays(np.int64, n, elements=st.integers(0, 2)))
    raw = draw(hnp.arrays(np.int64, (n, 3), elements=st.integers(0, 20))).astype(np.float64)
    raw[raw.sum(axis=1) == 0] = 1.0
    proba = raw / raw.sum(axis=1, keepdims=True)
    y = np.array(CLASSES, dtype=object)[idx]
    return y, proba, draw(st.integers(0, n))


# Labels on a grid of quarters: sums are exact, so near-degenerate label variance (where any
# two correct algorithms disagree in the 9th digit) cannot arise by accident.
labels_r = st.integers(-400, 400).map(lambda v: v / 4)
preds_r = st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False)


@st.composite
def regression_data(draw, min_size=0):
    n = draw(st.integers(min_size, 60))
    y = draw(hnp.arrays(np.float64, n, elements=labels_r))
    p = draw(hnp.arrays(np.float64, n, elements=preds_r))
    return y, p, draw(st.integers(0, n))


# ---------------------------------------------------------------- sklearn references

def _two_classes(y):
    return len(np.unique(y)) == 2


BINARY = {
    "accuracy": lambda y, s, p: accuracy_score(y, p),
    "precision": lambda y, s, p: precision_score(y, p, zero_division=NAN),
    "recall": lambda y, s, p: recall_score(y, p, zero_division=NAN),
    "f1": lambda y, s, p: f1_score(y, p, zero_division=NAN),
    "roc_auc": lambda y, s, p: roc_auc_score(y, s) if _two_classes(y) else NAN,
    "log_loss": lambda y, s, p: log_loss(y, s, labels=[0, 1]),
    "brier": lambda y, s, p: brier_score_loss(y, s, labels=[0, 1]),
    "positive_rate": lambda y, s, p: float(np.mean(y)),
    "predicted_positive_rate": lambda y, s, p: float(np.mean(p)),
}

MULTICLASS = {
    "accuracy": lambda y, pr, p: accuracy_score(y, p),
    "precision_macro": lambda y, pr, p: precision_score(
        y, p, labels=list(CLASSES), average="macro", zero_division=NAN),
    "recall_macro": lambda y, pr, p: recall_score(
        y, p, labels=list(CLASSES), average="macro", zero_division=NAN),
    "f1_macro": lambda y, pr, p: f1_score(
        y, p, labels=list(CLASSES), average="macro", zero_division=NAN),
    # sklearn orders proba columns by sorted label; ours follow CLASSES.
    "log_loss": lambda y, pr, p: log_loss(y, pr[:, _SORTED], labels=sorted(CLASSES)),
    "brier": lambda y, pr, p: brier_score_loss(
        y, pr[:, _SORTED], labels=sorted(CLASSES), scale_by_half=False),
}
_SORTED = np.argsort(CLASSES)


def _r2(y, p):
    if len(y) < 2 or np.all(y == y[0]):
        return NAN
    return r2_score(y, p, force_finite=False)


REGRESSION = {
    "mae": lambda y, p: mean_absolute_error(y, p),
    "rmse": lambda y, p: root_mean_squared_error(y, p),
    "mape": lambda y, p: mean_absolute_percentage_error(y[y != 0], p[y != 0]) if np.any(y != 0)
    else NAN,
    "r2": _r2,
}

CASES = ([("binary", m) for m in BINARY] + [("multiclass", m) for m in MULTICLASS]
         + [("regression", m) for m in REGRESSION])
CASE_IDS = [f"{t}-{m}" for t, m in CASES]


def make(task):
    return {"binary": BinaryAccumulator, "multiclass": lambda: MulticlassAccumulator(CLASSES),
            "regression": RegressionAccumulator}[task]()


def feed(task, acc, data, sl=slice(None)):
    x, z = data[0][sl], data[1][sl]
    if task == "binary":
        acc.update(x, z)
    elif task == "multiclass":
        acc.update(x, proba=z)
    else:
        acc.update(x, z)
    return acc


def reference(task, metric, data):
    x, z = data[0], data[1]
    if len(x) == 0:
        return NAN
    if task == "binary":
        return BINARY[metric](x, z, (z >= 0.5).astype(int))
    if task == "multiclass":
        pred = np.array(CLASSES, dtype=object)[np.argmax(z, axis=1)]
        return MULTICLASS[metric](x, z, pred)
    return REGRESSION[metric](x, z)


STRATEGY = {"binary": binary_data, "multiclass": multiclass_data, "regression": regression_data}

# ---------------------------------------------------------------- the shared suite


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize(("task", "metric"), CASES, ids=CASE_IDS)
@settings(deadline=None, max_examples=25)
@given(data=st.data())
def test_equals_sklearn(task, metric, data):
    d = data.draw(STRATEGY[task]())
    got = feed(task, make(task), d).metrics()[metric]
    assert close(got, reference(task, metric, d)), (got, reference(task, metric, d))


@pytest.mark.parametrize(("task", "metric"), CASES, ids=CASE_IDS)
@settings(deadline=None, max_examples=12)
@given(data=st.data())
def test_merge_equals_concatenation(task, metric, data):
    d = data.draw(STRATEGY[task]())
    cut = d[2]
    whole = feed(task, make(task), d)
    a = feed(task, make(task), d, slice(None, cut))
    b = feed(task, make(task), d, slice(cut, None))
    merged = a.merge(b)
    assert merged.n == whole.n == len(d[0])
    assert close(merged.metrics()[metric], whole.metrics()[metric], 1e-12)
    batched = make(task)
    for start in range(0, len(d[0]), 7):
        feed(task, batched, d, slice(start, start + 7))
    assert close(batched.metrics()[metric], whole.metrics()[metric], 1e-12)


def feed_groups(task, accs, groups, data):
    x, z = data[0], data[1]
    if task == "multiclass":
        MulticlassAccumulator.update_groups(accs, groups, x, proba=z)
    else:
        type(accs[0]).update_groups(accs, groups, x, z)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize(("task", "metric"), CASES, ids=CASE_IDS)
@settings(deadline=None, max_examples=12)
@given(data=st.data())
def test_grouped_update_equals_sklearn_per_group(task, metric, data):
    d = data.draw(STRATEGY[task]())
    n_groups = data.draw(st.integers(1, 4))
    groups = data.draw(hnp.arrays(np.int64, len(d[0]), elements=st.integers(0, n_groups - 1)))
    accs = [make(task) for _ in range(n_groups)]
    feed_groups(task, accs, groups, d)
    for g, acc in enumerate(accs):
        rows = (d[0][groups == g], d[1][groups == g])
        alone = feed(task, make(task), rows)
        assert acc.n == alone.n == len(rows[0])
        assert close(acc.metrics()[metric], reference(task, metric, rows)), (g, acc.metrics()[metric])
        assert close(acc.metrics()[metric], alone.metrics()[metric], 1e-12)
        if task == "binary":
            np.testing.assert_array_equal(acc.auc_sample()[0], alone.auc_sample()[0])


def test_grouped_update_counts_invalid_rows_per_group_and_checks_its_inputs():
    a, b = BinaryAccumulator(), BinaryAccumulator()
    BinaryAccumulator.update_groups([a, b], np.array([0, 1, 1]), [1, None, 0], [0.9, 0.5, np.inf])
    assert (a.n, a.n_invalid, b.n, b.n_invalid) == (1, 0, 0, 2)
    with pytest.raises(ValueError, match="groups must index accumulators"):
        BinaryAccumulator.update_groups([a], np.array([0, 1]), [1, 0], [0.2, 0.3])
    with pytest.raises(ValueError, match="groups must be a 1-d array of 2 ints"):
        BinaryAccumulator.update_groups([a, b], np.array([0.0, 1.0]), [1, 0], [0.2, 0.3])
    with pytest.raises(ValueError, match="same positive_label and threshold"):
        BinaryAccumulator.update_groups([a, BinaryAccumulator(threshold=0.3)], np.array([0, 1]), [1, 0], [0.2, 0.3])
    with pytest.raises(ValueError, match="same classes"):
        MulticlassAccumulator.update_groups([MulticlassAccumulator(["a", "b"]), MulticlassAccumulator(["b", "a"])], None, ["a"], ["a"])
    r = RegressionAccumulator()
    RegressionAccumulator.update_groups([r, RegressionAccumulator()], np.array([0, 0]), [1.0, np.nan], [1.0, 2.0])
    assert (r.n, r.n_invalid) == (1, 1)


@pytest.mark.parametrize(("task", "metric"), CASES, ids=CASE_IDS)
def test_empty_window_is_nan(task, metric):
    acc = make(task)
    feed(task, acc, (np.array([]), np.empty((0, 3)) if task == "multiclass" else np.array([])))
    m = acc.metrics()
    assert m["n"] == 0.0 and math.isnan(m[metric])
    assert acc.merge(make(task)) == acc
    assert accumulator_from_bytes(acc.to_bytes()) == acc


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize(("task", "metric"), CASES, ids=CASE_IDS)
@settings(deadline=None, max_examples=12)
@given(data=st.data())
def test_missing_values_are_excluded_and_counted(task, metric, data):
    d = data.draw(STRATEGY[task](min_size=1))
    x, z = d[0], d[1]
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=len(x), max_size=len(x))))
    x_bad = x.astype(object) if task == "multiclass" else x.astype(np.float64)
    z_bad = z.copy()
    bad_value = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    corrupt_first = data.draw(st.booleans())
    if corrupt_first:
        x_bad[mask] = None if task == "multiclass" else np.nan
    else:
        z_bad[mask] = bad_value
    got = feed(task, make(task), (x_bad, z_bad)).metrics()
    assert got["n_invalid"] == mask.sum() and got["n"] == (~mask).sum()
    assert close(got[metric], reference(task, metric, (x[~mask], z[~mask])))


TASKS = ["binary", "multiclass", "regression"]


@pytest.mark.parametrize("task", TASKS)
@settings(deadline=None, max_examples=15)
@given(data=st.data())
def test_serialisation_round_trip(task, data):
    d = data.draw(STRATEGY[task]())
    acc = feed(task, make(task), d)
    blob = acc.to_bytes()
    back = type(acc).from_bytes(blob)
    assert back == acc and accumulator_from_bytes(blob) == acc
    assert back.to_bytes() == blob
    got = back.metrics()
    for k, v in acc.metrics().items():
        assert close(got[k], v, 0.0)


@pytest.mark.parametrize("task", TASKS)
def test_serialised_state_is_bounded(task):
    rng = np.random.default_rng(0)
    sizes = []
    for n in (10_000, 100_000):
        acc = make(task)
        if task == "binary":
            acc = BinaryAccumulator(reservoir_size=1_000)
            y = rng.integers(0, 2, n)
            acc.update(y, rng.random(n))
        elif task == "multiclass":
            acc.update(rng.choice(CLASSES, n), proba=rng.dirichlet(np.ones(3), n))
        else:
            acc.update(rng.normal(size=n), rng.normal(size=n))
        sizes.append(len(acc.to_bytes()))
    assert sizes[1] <= sizes[0] + 32  # only varint widths of counts may grow


@pytest.mark.parametrize("task", TASKS)
def test_wrong_inputs_name_the_argument(task):
    acc = make(task)
    with pytest.raises(ValueError, match="same length"):
        feed(task, acc, (np.zeros(3), np.full((2, 3), 1 / 3) if task == "multiclass"
                         else np.zeros(2)))
    with pytest.raises(TypeError, match="other must be"):
        acc.merge(object())
    with pytest.raises(ValueError, match="data"):
        type(acc).from_bytes(b"\x93\x01\x02\x03")


# ---------------------------------------------------------------- binary specifics

def test_binary_single_class_and_constant_scores():
    acc = BinaryAccumulator()
    acc.update([1, 1, 1], [0.9, 0.8, 0.2])
    m = acc.metrics()
    assert math.isnan(m["roc_auc"]) and m["recall"] == pytest.approx(2 / 3)
    acc = BinaryAccumulator()
    acc.update([0, 1, 0, 1], [0.3] * 4)
    m = acc.metrics()
    assert math.isnan(m["precision"]) and m["recall"] == 0.0 and m["roc_auc"] == 0.5
    assert m["f1"] == 0.0 and m["predicted_positive_rate"] == 0.0


def test_binary_string_labels_and_explicit_predictions():
    acc = BinaryAccumulator(positive_label="fraud", threshold=0.7)
    y = np.array(["fraud", "ok", "fraud", "ok", None], dtype=object)
    acc.update(y, [0.9, 0.6, 0.65, 0.1, 0.5])
    assert acc.confusion == {"tp": 1, "fp": 0, "tn": 2, "fn": 1} and acc.n_invalid == 1
    acc2 = BinaryAccumulator(positive_label="fraud")
    acc2.update(["fraud", "ok"], y_pred=["ok", "ok"])
    m = acc2.metrics()
    assert m["recall"] == 0.0 and m["n_scored"] == 0 and math.isnan(m["log_loss"])
    np.testing.assert_array_equal(acc.confusion_matrix(),
                                  confusion_matrix([1, 0, 1, 0], [1, 0, 0, 0]))


def test_binary_rejects_out_of_range_scores():
    with pytest.raises(ValueError, match="y_score must hold probabilities"):
        BinaryAccumulator().update([0, 1], [0.5, 1.5])
    with pytest.raises(ValueError, match="y_score or y_pred"):
        BinaryAccumulator().update([0, 1])
    with pytest.raises(ValueError, match="threshold"):
        BinaryAccumulator(threshold=2)
    with pytest.raises(ValueError, match="reservoir_size"):
        BinaryAccumulator(reservoir_size=0)
    with pytest.raises(ValueError, match="same"):
        BinaryAccumulator(threshold=0.4).merge(BinaryAccumulator())


def _auc_data(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.2 * y)))
    return y, s


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.float64, st.integers(1, 300), elements=st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.9, 1.0]) | st.floats(0, 1)))
def test_mid_ranks_equal_scipy_rankdata(values):
    assert _mid_ranks(values).tolist() == stats.rankdata(values).tolist()


def test_reservoir_is_exact_while_it_fits_and_a_bounded_sample_beyond():
    y, s = _auc_data(30_000, 1)
    exact = BinaryAccumulator(reservoir_size=30_000)
    exact.update(y, s)
    assert exact.metrics()["roc_auc"] == pytest.approx(roc_auc_score(y, s), rel=1e-12)
    sampled = BinaryAccumulator(reservoir_size=5_000)
    for i in range(0, len(y), 997):
        sampled.update(y[i:i + 997], s[i:i + 997])
    m = sampled.metrics()
    assert m["roc_auc_n"] == 5_000
    se = hanley_mcneil_se(m["roc_auc"], int(y.sum()) * 5_000 // len(y), 5_000 // 2)
    assert abs(m["roc_auc"] - roc_auc_score(y, s)) < 4 * se * math.sqrt(1 - 5_000 / len(y))
    scores, labels = sampled.auc_sample()
    pairs = set(zip(s.tolist(), y.tolist()))
    assert all((a, b) in pairs for a, b in zip(scores.tolist(), labels.tolist()))


def test_reservoir_sample_is_uniform_over_positions_and_partitions():
    n, k, reps = 2_000, 100, 60
    hits_pos = np.zeros(10)
    from_a = []
    for seed in range(reps):
        rng = np.random.default_rng(seed)
        s = rng.random(n)
        y = rng.integers(0, 2, n)
        acc = BinaryAccumulator(reservoir_size=k, seed=seed)
        for i in range(0, n, 50):
            acc.update(y[i:i + 50], s[i:i + 50])
        kept, _ = acc.auc_sample()
        pos = np.searchsorted(np.sort(s), kept)
        order = np.argsort(s)
        hits_pos += np.bincount(order[pos] * 10 // n, minlength=10)
        a = BinaryAccumulator(reservoir_size=k, seed=seed)
        a.update(y[:600], s[:600])
        b = BinaryAccumulator(reservoir_size=k, seed=seed)
        b.update(y[600:], s[600:])
        merged, _ = a.merge(b).auc_sample()
        from_a.append(np.isin(merged, s[:600]).sum())
    assert stats.chisquare(hits_pos).pvalue > 1e-3
    assert np.mean(from_a) == pytest.approx(k * 600 / n, rel=0.05)


def test_reservoir_state_survives_round_trip_and_replay():
    y, s = _auc_data(5_000, 2)
    a = BinaryAccumulator(reservoir_size=300)
    a.update(y[:2_000], s[:2_000])
    b = BinaryAccumulator.from_bytes(a.to_bytes())
    for acc in (a, b):
        for i in range(2_000, 5_000, 333):
            acc.update(y[i:i + 333], s[i:i + 333])
    assert a == b
    c = BinaryAccumulator(reservoir_size=300)
    c.update(y[:2_000], s[:2_000])
    for i in range(2_000, 5_000, 333):
        c.update(y[i:i + 333], s[i:i + 333])
    assert c == a  # deterministic: a replay draws the same sample


def test_merge_fits_exactly_when_combined_size_fits():
    y, s = _auc_data(400, 3)
    whole = BinaryAccumulator(reservoir_size=400)
    whole.update(y, s)
    a = BinaryAccumulator(reservoir_size=400)
    a.update(y[:150], s[:150])
    b = BinaryAccumulator(reservoir_size=400)
    b.update(y[150:], s[150:])
    merged = a.merge(b)
    np.testing.assert_array_equal(merged.auc_sample()[0], whole.auc_sample()[0])
    assert merged.metrics()["roc_auc"] == whole.metrics()["roc_auc"]


# ---------------------------------------------------------------- multiclass / regression specifics

@settings(deadline=None, max_examples=20)
@given(d=multiclass_data())
def test_multiclass_confusion_matrix_equals_sklearn(d):
    y, proba, _ = d
    acc = MulticlassAccumulator(CLASSES)
    pred = np.array(CLASSES, dtype=object)[np.argmax(proba, axis=1)] if len(y) else y
    acc.update(y, pred, proba=proba)
    want = confusion_matrix(y, pred, labels=list(CLASSES)) if len(y) else np.zeros((3, 3))
    np.testing.assert_array_equal(acc.confusion_matrix(), want)


def test_multiclass_numeric_classes_and_hard_predictions():
    acc = MulticlassAccumulator([2, 0, 1])
    acc.update([0, 1, 2, 2, np.nan], [0, 2, 2, 1, 0])
    m = acc.metrics()
    assert m["accuracy"] == 0.5 and m["n_invalid"] == 1 and math.isnan(m["log_loss"])
    with pytest.raises(ValueError, match="y_true holds labels not in classes"):
        acc.update([7], [0])
    with pytest.raises(ValueError, match="proba must have shape"):
        acc.update([0], proba=[[1.0, 0.0]])
    with pytest.raises(ValueError, match="classes must be distinct"):
        MulticlassAccumulator([1, 1])


def test_regression_zero_labels_excluded_from_mape_only():
    acc = RegressionAccumulator()
    acc.update([0.0, 2.0, 4.0], [1.0, 1.0, 5.0])
    m = acc.metrics()
    assert m["n_mape_excluded"] == 1 and m["mape"] == pytest.approx(0.375)
    assert m["mae"] == pytest.approx(1.0) and m["n"] == 3


def test_regression_moments_are_stable_for_large_offsets():
    rng = np.random.default_rng(4)
    y = 1e9 + rng.normal(size=20_000)
    p = y + rng.normal(scale=0.5, size=20_000)
    acc = RegressionAccumulator()
    for i in range(0, len(y), 1_000):
        acc.update(y[i:i + 1_000], p[i:i + 1_000])
    assert acc.metrics()["r2"] == pytest.approx(r2_score(y, p), rel=1e-6)
    assert acc.label_moments.variance() == pytest.approx(np.var(y, ddof=1), rel=1e-9)


@settings(deadline=None, max_examples=50)
@given(xs=st.lists(st.floats(-1e6, 1e6), max_size=40), cut=st.integers(0, 40))
def test_moments_merge_equals_two_pass(xs, cut):
    x = np.array(xs)
    m = Moments.of(x[:cut]).merge(Moments.of(x[cut:]))
    assert m.n == len(x)
    if len(x):
        assert m.mean == pytest.approx(np.mean(x), rel=1e-9, abs=1e-6)
    if len(x) > 1:
        assert m.variance() == pytest.approx(np.var(x, ddof=1), rel=1e-9, abs=1e-6)


# ---------------------------------------------------------------- worse than baseline

def _binary(y, s):
    acc = BinaryAccumulator()
    acc.update(np.asarray(y), np.asarray(s, dtype=float))
    return acc


def test_proportion_z_test_matches_hand_formula_and_norm_sf():
    rng = np.random.default_rng(5)
    ref_y, ref_s = rng.integers(0, 2, 4_000), rng.random(4_000)
    cur_y, cur_s = rng.integers(0, 2, 900), rng.random(900)
    ref, cur = _binary(ref_y, ref_s), _binary(cur_y, cur_s)
    for metric, (xc, nc, xb, nb) in {
        "accuracy": (((cur_s >= .5) == cur_y).sum(), 900, ((ref_s >= .5) == ref_y).sum(), 4_000),
        "recall": (((cur_s >= .5) & (cur_y == 1)).sum(), cur_y.sum(),
                   ((ref_s >= .5) & (ref_y == 1)).sum(), ref_y.sum()),
        "precision": (((cur_s >= .5) & (cur_y == 1)).sum(), (cur_s >= .5).sum(),
                      ((ref_s >= .5) & (ref_y == 1)).sum(), (ref_s >= .5).sum()),
    }.items():
        res = worse_than_baseline(metric, cur, ref)
        pooled = (xc + xb) / (nc + nb)
        z = (xb / nb - xc / nc) / math.sqrt(pooled * (1 - pooled) * (1 / nc + 1 / nb))
        assert res.method == "z_test" and (res.n, res.n_baseline) == (nc, nb)
        assert res.p_value == pytest.approx(stats.norm.sf(z), rel=1e-9)
        assert res.value == pytest.approx(xc / nc) and res.delta == pytest.approx(xc / nc - xb / nb)


def test_small_windows_use_fisher_exact_and_approach_binomtest_for_large_baselines():
    ref = _binary([1] * 198_000 + [0] * 2_000, [0.9] * 200_000)
    cur = _binary([1] * 17 + [0] * 3, [0.9] * 20)
    res = worse_than_baseline("accuracy", cur, ref)
    assert res.method == "fisher_exact"
    table = [[17, 3], [198_000, 2_000]]
    assert res.p_value == pytest.approx(stats.fisher_exact(table, alternative="less").pvalue,
                                        rel=1e-9)
    binom = stats.binomtest(17, 20, p=0.99, alternative="less").pvalue
    assert res.p_value == pytest.approx(binom, rel=0.05)


def test_auc_test_uses_hanley_mcneil():
    y_b, s_b = _auc_data(3_000, 6)
    y_c, s_c = _auc_data(800, 7)
    s_c = np.where(np.random.default_rng(8).random(800) < 0.3, 0.5, s_c)
    ref, cur = _binary(y_b, s_b), _binary(y_c, s_c)
    res = worse_than_baseline("roc_auc", cur, ref)
    a_c, a_b = roc_auc_score(y_c, s_c), roc_auc_score(y_b, s_b)

    def hm(a, n1, n0):
        q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
        return math.sqrt((a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n0 - 1) * (q2 - a * a))
                         / (n1 * n0))

    se = math.hypot(hm(a_c, y_c.sum(), 800 - y_c.sum()), hm(a_b, y_b.sum(), 3_000 - y_b.sum()))
    assert res.method == "hanley_mcneil"
    assert res.p_value == pytest.approx(stats.norm.sf((a_b - a_c) / se), rel=1e-9)
    assert res.p_value < 0.01


@pytest.mark.parametrize("metric", ["mae", "mse", "rmse", "mape"])
def test_regression_welch_matches_scipy(metric):
    rng = np.random.default_rng(9)
    yb, yc = rng.normal(10, 3, 2_000), rng.normal(10, 3, 300)
    pb, pc = yb + rng.normal(0, 1, 2_000), yc + rng.normal(0.3, 1.3, 300)
    ref, cur = RegressionAccumulator(), RegressionAccumulator()
    for i in range(0, 2_000, 250):
        ref.update(yb[i:i + 250], pb[i:i + 250])
    cur.update(yc, pc)
    per_row = {"mae": lambda y, p: np.abs(p - y), "mse": lambda y, p: (p - y) ** 2,
               "rmse": lambda y, p: (p - y) ** 2, "mape": lambda y, p: np.abs(p - y) / np.abs(y)}
    ec, eb = per_row[metric](yc, pc), per_row[metric](yb, pb)
    res = worse_than_baseline(metric, cur, ref)
    raw = stats.ttest_ind(ec, eb, equal_var=False, alternative="greater")
    summ = stats.ttest_ind_from_stats(ec.mean(), ec.std(ddof=1), len(ec), eb.mean(),
                                      eb.std(ddof=1), len(eb), equal_var=False,
                                      alternative="greater")
    assert res.method == "welch_t"
    assert res.p_value == pytest.approx(raw.pvalue, rel=1e-9)
    assert res.p_value == pytest.approx(summ.pvalue, rel=1e-9)
    assert res.statistic == pytest.approx(raw.statistic, rel=1e-9)
    want = math.sqrt(ec.mean()) if metric == "rmse" else ec.mean()
    assert res.value == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("metric", ["log_loss", "brier"])
def test_classification_losses_welch_matches_scipy(metric):
    y_b, s_b = _auc_data(2_000, 10)
    y_c, s_c = _auc_data(500, 11)
    s_c = np.clip(s_c + 0.1, 0, 1)
    per_row = {"log_loss": lambda y, s: -np.log(np.clip(np.where(y == 1, s, 1 - s),
                                                         np.finfo(float).eps, 1)),
               "brier": lambda y, s: (y - s) ** 2}
    ec, eb = per_row[metric](y_c, s_c), per_row[metric](y_b, s_b)
    res = worse_than_baseline(metric, _binary(y_c, s_c), _binary(y_b, s_b))
    want = stats.ttest_ind(ec, eb, equal_var=False, alternative="greater").pvalue
    assert res.p_value == pytest.approx(want, rel=1e-9)


def test_multiclass_baseline_metrics():
    rng = np.random.default_rng(12)
    accs = []
    for n in (3_000, 500):
        acc = MulticlassAccumulator(CLASSES)
        acc.update(rng.choice(CLASSES, n), proba=rng.dirichlet(np.ones(3), n))
        accs.append(acc)
    assert supported_metrics(MulticlassAccumulator) == ["accuracy", "brier", "log_loss"]
    for metric in ("accuracy", "log_loss", "brier"):
        res = worse_than_baseline(metric, accs[1], accs[0])
        assert 0.0 <= res.p_value <= 1.0 and res.n == 500 and res.n_baseline == 3_000


def test_baseline_undefined_and_degenerate_cases():
    ref = _binary([1, 0, 1, 0], [0.9, 0.1, 0.8, 0.2])
    empty = BinaryAccumulator()
    for metric in supported_metrics(BinaryAccumulator):
        res = worse_than_baseline(metric, empty, ref)
        assert math.isnan(res.p_value) and res.method == "undefined" and res.n == 0
    same = worse_than_baseline("accuracy", _binary([1] * 50 + [0] * 50, [.9] * 50 + [.1] * 50),
                               _binary([1] * 50 + [0] * 50, [.9] * 50 + [.1] * 50))
    assert same.p_value == 1.0 and same.delta == 0.0
    c, b = RegressionAccumulator(), RegressionAccumulator()
    c.update([1.0, 2.0], [2.0, 3.0])
    b.update([1.0, 2.0], [1.5, 2.5])
    assert worse_than_baseline("mae", c, b).p_value == 0.0
    assert worse_than_baseline("mae", b, c).p_value == 1.0
    with pytest.raises(ValueError, match="metric must be one of"):
        worse_than_baseline("r2", c, b)
    with pytest.raises(TypeError, match="same class"):
        worse_than_baseline("accuracy", ref, c)


def test_same_distribution_gives_calibrated_p_values():
    rng = np.random.default_rng(13)
    ps = []
    for _ in range(300):
        y = rng.integers(0, 2, 700)
        s = rng.random(700)
        ps.append(worse_than_baseline("accuracy", _binary(y[:200], s[:200]),
                                      _binary(y[200:], s[200:])).p_value)
    assert np.mean(np.array(ps) < 0.05) < 0.09


# ---------------------------------------------------------------- business value

def test_business_value_binary_and_multiclass():
    acc = _binary([1, 1, 0, 0, 0], [0.9, 0.2, 0.8, 0.1, 0.3])
    cost = {"tp": 10.0, "fp": -2.0, "fn": -8.0, "tn": 0.5}
    v = business_value(acc, cost)
    assert v.total == pytest.approx(10 - 8 - 2 + 2 * 0.5) and v.n == 5
    assert v.per_prediction == pytest.approx(v.total / 5)
    matrix = confusion_matrix([1, 1, 0, 0, 0], [1, 0, 1, 0, 0])
    assert business_value(matrix, [[0.5, -2.0], [-8.0, 10.0]]) == v
    assert business_value(acc.confusion, cost) == v
    mc = MulticlassAccumulator(CLASSES)
    mc.update(["ham", "spam", "eggs"], ["ham", "eggs", "eggs"])
    values = np.arange(9.0).reshape(3, 3)
    assert business_value(mc, values).total == float((mc.confusion_matrix() * values).sum())
    assert math.isnan(business_value(BinaryAccumulator(), cost).per_prediction)
    with pytest.raises(ValueError, match="cost_matrix keys"):
        business_value(acc, {"tpp": 1.0})
    with pytest.raises(ValueError, match="cost_matrix must have the shape"):
        business_value(mc, cost)


# ---------------------------------------------------------------- fairness

@st.composite
def fairness_data(draw):
    n = draw(st.integers(0, 80))
    g = np.array(draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=n, max_size=n)),
                 dtype=object)
    y = draw(hnp.arrays(np.int64, n, elements=st.integers(0, 1)))
    p = draw(hnp.arrays(np.int64, n, elements=st.integers(0, 1)))
    return g, y, p, draw(st.integers(0, n))


@pytest.mark.filterwarnings("ignore")
@settings(deadline=None, max_examples=25)
@given(d=fairness_data())
def test_fairness_against_hand_computation(d):
    g, y, p, cut = d
    acc = FairnessAccumulator()
    acc.update(g, y, p)
    res = acc.result()
    groups = sorted(set(g.tolist()))
    assert list(res.groups) == groups
    sel = {k: float(np.mean(p[g == k])) for k in groups}
    tpr = {k: recall_score(y[g == k], p[g == k], zero_division=NAN) for k in groups}
    for k in groups:
        assert res.n[k] == (g == k).sum()
        assert close(res.selection_rate[k], sel[k]) and close(res.true_positive_rate[k], tpr[k])
        top = max(sel.values())
        assert close(res.disparate_impact[k], sel[k] / top if top else NAN)
    defined = [v for v in tpr.values() if not math.isnan(v)]
    assert close(res.equal_opportunity_difference,
                 max(defined) - min(defined) if len(defined) > 1 else NAN)
    assert set(res.four_fifths_violations) == {k for k in groups
                                               if res.disparate_impact[k] < 0.8}
    a, b = FairnessAccumulator(), FairnessAccumulator()
    a.update(g[:cut], y[:cut], p[:cut])
    b.update(g[cut:], y[cut:], p[cut:])
    assert a.merge(b) == acc
    assert FairnessAccumulator.from_bytes(acc.to_bytes()) == acc


@settings(deadline=None, max_examples=25)
@given(d=fairness_data(), data=st.data())
def test_fairness_grouped_update_equals_update_per_group(d, data):
    g, y, p, _ = d
    g = g.astype(object)
    g[data.draw(hnp.arrays(bool, len(g)))] = None  # missing groups count as invalid per accumulator
    n_acc = data.draw(st.integers(1, 4))
    ids = data.draw(hnp.arrays(np.int64, len(g), elements=st.integers(0, n_acc - 1)))
    grouped = [FairnessAccumulator() for _ in range(n_acc)]
    FairnessAccumulator.update_groups(grouped, ids, g, y, p)
    for k, acc in enumerate(grouped):
        alone = FairnessAccumulator().update(g[ids == k], y[ids == k], p[ids == k])
        assert acc == alone and acc.n_invalid == alone.n_invalid


def test_fairness_grouped_update_checks_its_inputs():
    with pytest.raises(ValueError, match="ids must index accumulators"):
        FairnessAccumulator.update_groups([FairnessAccumulator()], [0, 1], ["a", "b"], [1, 0], [1, 1])
    with pytest.raises(ValueError, match="same positive_label"):
        FairnessAccumulator.update_groups([FairnessAccumulator(), FairnessAccumulator("yes")], [0, 1], ["a", "b"], [1, 0], [1, 1])


def test_fairness_missing_groups_min_n_and_validation():
    acc = FairnessAccumulator()
    acc.update(np.array(["x", None, "y", "y", "z"], dtype=object), [1, 1, 1, 0, 1],
               [1, 1, 0, 0, 1])
    assert acc.n_invalid == 1 and acc.n == 4
    res = acc.result(min_n=2)
    assert res.groups == ("y",) and res.excluded_groups == ("x", "z")
    assert math.isnan(res.min_disparate_impact) and res.favoured_group is None
    with pytest.raises(ValueError, match="min_n"):
        acc.result(min_n=0)
    with pytest.raises(ValueError, match="same length"):
        acc.update(["a"], [1, 0], [1, 0])
