from __future__ import annotations


import numpy as np
import orjson
import pandas as pd
import pytest
import yaml
from scipy.stats import chi2_contingency, ks_2samp
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

from driftline.scorers.scenario import START_MS, CreditScenario

DAY_MS = 86_400_000
SHIFTED_NUMERIC = ("age", "income", "credit_utilization", "debt_to_income")
SHIFTED_CATEGORICAL = ("channel", "region")


def small(seed: int = 3, **kwargs) -> CreditScenario:
    """Same time span as the default (about 29 days), a tenth of the events."""
    params = dict(seed=seed, n_reference=1_000, n_events=20_000, n_train=3_000, rate_per_s=0.008)
    params.update(kwargs)
    return CreditScenario(**params)


@pytest.fixture(scope="module")
def default():
    sc = CreditScenario()
    return sc, sum(1 for _ in sc.events())


@pytest.fixture(scope="module")
def frame(default) -> pd.DataFrame:
    return default[0].stream_frame()


@pytest.fixture(scope="module")
def small_events():
    sc = small()
    return sc, list(sc.events())


@pytest.fixture(scope="module")
def small_scenario(small_events) -> CreditScenario:
    return small_events[0]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"seed": -1}, "seed must be an int >= 0, got -1"),
        ({"n_events": 0}, "n_events must be an int >= 1, got 0"),
        ({"n_reference": 10.5}, "n_reference must be an int >= 100, got 10.5"),
        ({"rate_per_s": 0}, "rate_per_s must be a finite float > 0, got 0"),
        ({"covariate_shift_at": 1.5}, r"covariate_shift_at must be a float in \[0, 1\], got 1.5"),
        ({"concept_drift_at": float("nan")}, "concept_drift_at must be a float in"),
        ({"label_coverage": -0.1}, "label_coverage must be a float in"),
        ({"decision_threshold": 1.0}, r"decision_threshold must be a float in \(0, 1\), got 1.0"),
        ({"review_threshold": 0.4}, r"review_threshold must be a float in \(0, decision_threshold=0.35\]"),
        ({"audit_rate": True}, "audit_rate must be a float in"),
    ],
)
def test_parameters_are_validated(params, message):
    with pytest.raises(ValueError, match=message):
        CreditScenario(**params)


def test_same_seed_same_scenario_other_seed_differs():
    a, b, c = (small(seed=s, n_events=4_000, rate_per_s=0.0016) for s in (11, 11, 12))
    pd.testing.assert_frame_equal(a.reference_frame(), b.reference_frame())
    head_a = [e for _, e in zip(range(3_000), a.events())]
    assert head_a == [e for _, e in zip(range(3_000), b.events())]
    assert head_a != [e for _, e in zip(range(3_000), c.events())]


def test_reference_frame_is_the_models_scored_test_set(small_scenario):
    sc = small_scenario
    ref = sc.reference_frame()
    assert list(ref.columns) == [*sc.feature_names, "prediction", "score", "label"]
    assert len(ref) == 1_000
    assert 0.08 <= ref["label"].mean() <= 0.15
    np.testing.assert_array_equal(ref["prediction"], (ref["score"] >= sc.decision_threshold).astype(int))
    np.testing.assert_allclose(sc.model.predict_proba(sc.encode(ref))[:, 1], ref["score"], rtol=0, atol=1e-12)
    assert 0.68 <= roc_auc_score(ref["label"], ref["score"]) <= 0.85
    assert ref["months_employed"].isna().any() and ref["has_mortgage"].dtype == bool


def test_events_are_in_arrival_order_and_follow_the_contract(small_events):
    sc, events = small_events
    arrivals = [a for a, _, _ in events]
    assert arrivals == sorted(arrivals)
    predictions = [e for _, k, e in events if k == "prediction"]
    truths = [e for _, k, e in events if k == "ground_truth"]
    assert len(predictions) == 20_000 and len(predictions) + len(truths) == len(events)
    assert len({e["event_id"] for e in predictions}) == 20_000
    for e in predictions[:500]:
        assert set(e) == {
            "schema_version", "event_id", "model", "version", "ts", "features", "prediction",
            "score", "action", "role", "host", "latency_ms", "entity_id",
        }
        assert (e["schema_version"], e["model"], e["version"], e["role"]) == (1, "credit", "v1", "champion")
        assert isinstance(e["ts"], int) and e["ts"] >= START_MS
        assert list(e["features"]) == list(sc.feature_names)
        assert all(v is None or isinstance(v, (int, float, str, bool)) for v in e["features"].values())
        assert isinstance(e["features"]["has_mortgage"], bool)
        assert e["action"] == "decline" if e["prediction"] == 1 else e["action"] in ("approve", "review")
        assert e["host"] in ("scorer-1", "scorer-2", "scorer-3") and e["entity_id"].startswith("cust-")
    missing = np.mean([e["features"]["months_employed"] is None for e in predictions])
    assert 0.01 < missing < 0.03
    for e in truths[:500]:
        assert set(e) == {"schema_version", "event_id", "model", "ts", "label", "source"}
        assert e["label"] in (0, 1) and e["source"] in ("collections", "chargeback", "manual_review", "random_audit")


def test_every_ground_truth_follows_its_prediction(small_events):
    _, events = small_events
    seen: dict[str, tuple[int, int, str]] = {}
    labeled = set()
    for arrival, kind, event in events:
        if kind == "prediction":
            seen[event["event_id"]] = (arrival, event["ts"], event["action"])
            continue
        assert event["event_id"] in seen and event["event_id"] not in labeled
        pred_arrival, pred_ts, action = seen[event["event_id"]]
        assert arrival > pred_arrival and event["ts"] > pred_ts
        assert (event["source"] == "random_audit") == (action == "decline")
        labeled.add(event["event_id"])


def test_label_coverage_and_partially_labeled_tail(small_scenario):
    sc = small_scenario
    f = sc.stream_frame()
    assert f["labeled"].sum() == round(0.7 * len(f))
    declined = f["action"] == "decline"
    assert f.loc[declined & f["labeled"], "source"].eq("random_audit").all()
    assert abs(f.loc[declined, "labeled"].mean() - 0.1) < 0.03
    mature = f["ts"] < sc.end_ms - 14 * DAY_MS
    assert (f.loc[mature, "label_emitted"] == f.loc[mature, "labeled"]).all()
    assert abs(f.loc[mature, "label_emitted"].mean() - 0.7) < 0.03
    day = (f["ts"] - sc.start_ms) // DAY_MS
    per_day = f.groupby(day)["label_emitted"].mean()
    assert per_day.iloc[-1] < 0.2 and per_day.iloc[-5:].lt(0.6).all()
    assert (per_day > 0.45).sum() >= 0.7 * len(per_day)


def test_default_stream_spans_weeks(default, frame):
    sc, n_events = default
    assert n_events == 200_000 + int(frame["label_emitted"].sum())
    n_windows = int((frame["ts"].max() - START_MS) // DAY_MS) + 1
    assert 20 <= n_windows <= 40
    assert 0.08 <= frame.loc[~frame["covariate_shifted"], "label"].mean() <= 0.15


def test_covariate_shift_is_visible_on_inputs_only(frame):
    before = frame[~frame["covariate_shifted"]]
    after = frame[frame["covariate_shifted"] & ~frame["concept_drifted"]]
    drifted = frame[frame["concept_drifted"]]
    for name in SHIFTED_NUMERIC:
        assert ks_2samp(before[name].dropna(), after[name].dropna()).pvalue < 1e-6, name
    for name in SHIFTED_CATEGORICAL:
        table = pd.crosstab(frame.loc[before.index.union(after.index), name], frame["covariate_shifted"])
        assert chi2_contingency(table).pvalue < 1e-6, name
    assert ks_2samp(before["loan_amount"], after["loan_amount"]).pvalue > 0.01
    assert ks_2samp(after["age"], drifted["age"]).pvalue > 0.01
    assert ks_2samp(after["credit_utilization"], drifted["credit_utilization"]).pvalue > 0.01


def test_concept_drift_degrades_the_model_but_covariate_shift_does_not(frame):
    labeled = frame[frame["label_emitted"]]
    periods = {
        "before": labeled[~labeled["covariate_shifted"]],
        "shifted": labeled[labeled["covariate_shifted"] & ~labeled["concept_drifted"]],
        "drifted": labeled[labeled["concept_drifted"]],
    }
    auc = {k: roc_auc_score(g["label"], g["score"]) for k, g in periods.items()}
    loss = {k: log_loss(g["label"], g["score"]) for k, g in periods.items()}
    acc = {k: accuracy_score(g["label"], g["prediction"]) for k, g in periods.items()}
    assert abs(auc["shifted"] - auc["before"]) <= 0.03, auc
    assert auc["shifted"] - auc["drifted"] >= 0.08, auc
    assert auc["before"] - auc["drifted"] >= 0.08, auc
    assert loss["drifted"] > loss["shifted"] + 0.1 and acc["drifted"] < acc["shifted"] - 0.05


def test_write_event_files_round_trip(tmp_path, small_events):
    sc, streamed = small_events[0], [e for _, _, e in small_events[1]]
    pred_path, gt_path, ref_path, spec_path = sc.write_event_files(tmp_path / "demo")
    predictions = [orjson.loads(line) for line in pred_path.read_bytes().splitlines()]
    truths = [orjson.loads(line) for line in gt_path.read_bytes().splitlines()]
    assert sorted(predictions + truths, key=lambda e: (e["event_id"], "label" in e)) == sorted(
        streamed, key=lambda e: (e["event_id"], "label" in e)
    )
    for events in (predictions, truths):
        ts = [e["ts"] for e in events]
        assert ts == sorted(ts)
    pd.testing.assert_frame_equal(pd.read_parquet(ref_path), sc.reference_frame(), check_dtype=False)
    spec = yaml.safe_load(spec_path.read_text())
    assert spec == sc.spec_dict(str(ref_path.resolve()))
    assert [f["name"] for f in spec["features"]] == list(sc.feature_names)
    assert spec["protected_attribute"] in sc.feature_names and spec["segments"] == ["region"]
