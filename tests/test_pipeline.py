"""The processing core: join in either order, event-time windows, late labels, dead letters."""

from __future__ import annotations

import numpy as np
import orjson
import pandas as pd
import pytest

from driftline.config import parse_spec
from driftline.reference import load_reference
from driftline.streams.pipeline import GROUND_TRUTH, PREDICTION, Message, MessageBatch, Pipeline

DAY = 86_400_000
T0 = 1_767_571_200_000  # 2026-01-05, a window boundary


def make_spec(**overrides):
    spec = {
        "model": "m",
        "task": "binary",
        "features": [{"name": "x", "kind": "numeric"}, {"name": "color", "kind": "categorical"}],
        "reference": {"path": "unused.parquet"},
        "window": "1d",
        "allowed_lateness": "1h",
        "label_ttl": "10d",
        "segments": ["color"],
    }
    spec.update(overrides)
    return parse_spec(spec)


def reference_frame(n=2_000, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    score = 1 / (1 + np.exp(-x))
    return pd.DataFrame({
        "x": x,
        "color": rng.choice(["red", "green", "blue"], size=n),
        "score": score,
        "prediction": (score >= 0.5).astype(int),
        "label": (rng.random(n) < score).astype(int),
    })


@pytest.fixture
def pipeline():
    spec = make_spec()
    return Pipeline({"m": load_reference(spec, reference_frame())}, now_ms=lambda: T0 + 365 * DAY)


def prediction(i, ts, x=0.0, color="red", score=0.7, **extra):
    event = {"event_id": f"e{i}", "model": "m", "version": "v1", "ts": ts,
             "features": {"x": x, "color": color}, "prediction": int(score >= 0.5), "score": score}
    event.update(extra)
    return Message(PREDICTION, orjson.dumps(event), "test", f"p{i}")


def label(i, ts, value=1):
    return Message(GROUND_TRUTH, orjson.dumps({"event_id": f"e{i}", "model": "m", "ts": ts, "label": value}),
                   "test", f"g{i}")


def metric(out, name, segment="all"):
    rows = [r for r in out.window_metrics if r["metric"] == name and r["segment"] == segment]
    return rows[-1] if rows else None


def test_join_in_either_order(pipeline):
    out = pipeline.process([label(1, T0 + 10), prediction(1, T0), prediction(2, T0 + 5)])
    assert [r.event_id for r in out.labeled] == ["e1"]
    out = pipeline.process([label(2, T0 + 20)])
    assert [(r.event_id, r.delay_ms) for r in out.labeled] == [("e2", 15)]


def test_window_closes_on_watermark_and_reemits_on_late_labels(pipeline):
    out = pipeline.process([prediction(i, T0 + i * 1000, score=0.9) for i in range(10)])
    assert out.window_metrics == [] and out.drift_results == []
    out = pipeline.process([prediction(100, T0 + DAY + 2 * 3_600_000)])
    assert {r["window_start"] for r in out.drift_results} == {T0}
    first = metric(out, "accuracy")
    assert first["n"] == 0 and first["n_predictions"] == 10 and first["label_coverage"] == 0.0
    out = pipeline.process([label(i, T0 + 3 * DAY, value=1) for i in range(4)])
    again = metric(out, "accuracy")
    assert (again["window_start"], again["n"], again["label_coverage"], again["value"]) == (T0, 4, 0.4, 1.0)
    assert again["revision"] > first["revision"]
    assert metric(out, "accuracy", "color=red")["n"] == 4
    assert [r for r in out.drift_results if r["target"] == "label"], "target drift re-computed with the labels"


def test_late_prediction_goes_to_dead_letters(pipeline):
    pipeline.process([prediction(1, T0 + DAY + 2 * 3_600_000)])
    out = pipeline.process([prediction(2, T0 + 10)])
    assert [d["code"] for d in out.dead_letters] == ["late_event"]
    assert out.dead_letters[0]["payload"] == prediction(2, T0 + 10).data

    fresh = Pipeline(pipeline.references, now_ms=lambda: T0 + 365 * DAY)
    fresh.process([prediction(1, T0 + DAY + 1_800_000)])
    within = fresh.process([prediction(3, T0 + DAY - 10)])
    assert within.dead_letters == [], "inside allowed_lateness the event still counts"


def test_lateness_does_not_depend_on_batching():
    events = [prediction(1, T0 + DAY + 2 * 3_600_000), prediction(2, T0 + 10), prediction(3, T0 + 20)]
    spec = make_spec()
    ref = load_reference(spec, reference_frame())
    one = Pipeline({"m": ref}, now_ms=lambda: T0 + 365 * DAY).process(events)
    split = Pipeline({"m": ref}, now_ms=lambda: T0 + 365 * DAY)
    dead = [d["code"] for batch in ([events[0]], events[1:]) for d in split.process(batch).dead_letters]
    assert [d["code"] for d in one.dead_letters] == dead == ["late_event", "late_event"]


def test_duplicates_and_orphans(pipeline):
    out = pipeline.process([prediction(1, T0), prediction(1, T0 + 1), label(1, T0 + 2), label(1, T0 + 3), label(9, T0)])
    assert sorted(d["code"] for d in out.dead_letters) == ["duplicate_event_id", "duplicate_label"]
    assert len(out.labeled) == 1
    out = pipeline.finish()
    assert [(d["code"], d["field"]) for d in out.dead_letters] == [("orphan_label", "event_id")]
    assert orjson.loads(out.dead_letters[0]["payload"])["event_id"] == "e9"


def test_labels_expire_after_ttl(pipeline):
    pipeline.process([label(7, T0)])
    out = pipeline.process([prediction(i, T0 + 11 * DAY + i) for i in range(3)])
    assert [d["code"] for d in out.dead_letters] == ["orphan_label"]
    assert pipeline.process([prediction(7, T0 + 11 * DAY + 5)]).labeled == []


def test_invalid_events_are_dead_lettered_and_the_stream_continues(pipeline):
    bad = [
        Message(PREDICTION, b"{oops", "test", "1"),
        prediction(1, T0, x="high"),
        prediction(2, T0, model="other"),
        prediction(3, T0 + 400 * DAY),
        Message(GROUND_TRUTH, b'{"event_id": "e5", "model": "m", "ts": 1767571200000, "label": 3}', "test", "2"),
    ]
    out = pipeline.process(bad + [prediction(4, T0)])
    assert [(d["code"], d["field"]) for d in out.dead_letters] == [
        ("invalid_json", ""), ("wrong_type", "features.x"), ("unknown_model", "model"),
        ("future_timestamp", "ts"), ("invalid_value", "label"),
    ]
    assert [event_id for batch in out.predictions for event_id in batch.event_id] == ["e4"]
    assert len({d["id"] for d in out.dead_letters}) == 5
    assert out.dead_letters[0]["payload"] == b"{oops"


def test_drift_detected_on_shifted_feature_only():
    spec = make_spec()
    pipeline = Pipeline({"m": load_reference(spec, reference_frame())}, now_ms=lambda: T0 + 365 * DAY)
    rng = np.random.default_rng(1)
    shifted = [prediction(i, T0 + i, x=float(v), color=str(c)) for i, (v, c) in
               enumerate(zip(rng.normal(1.0, 1.0, 3000), rng.choice(["red", "green", "blue"], 3000)))]
    pipeline.process(shifted)
    rows = pipeline.finish().drift_results
    drifted = {(r["feature"], r["test"]) for r in rows if r["drifted"]}
    assert ("x", "ks") in drifted and ("x", "psi") in drifted
    assert not any(f == "color" for f, _ in drifted)
    assert all(r["n_current"] == 3000 and r["n_reference"] == 2000 for r in rows if r["feature"] == "x")
    family = [r for r in rows if r["p_value"] is not None]
    assert all(r["p_adjusted"] >= r["p_value"] for r in family)


def test_window_state_does_not_grow_with_events(pipeline):
    sizes = []
    for batch in range(4):
        pipeline.process([prediction(batch * 5000 + i, T0 + batch * 5000 + i, x=float(i % 7)) for i in range(5000)])
        window = pipeline.drift.state[("drift", "m", "v1", T0)]
        sizes.append(sum(len(acc.to_bytes()) for acc in window.accumulators.values()))
    assert sizes[-1] <= sizes[1] * 1.05, sizes


def test_multiclass_and_regression_windows_match_scikit_learn():
    from sklearn.metrics import accuracy_score, f1_score, log_loss, mean_absolute_error, r2_score

    rng = np.random.default_rng(5)
    n = 600
    x = rng.normal(size=n)
    classes = ["a", "b", "c"]
    frame = pd.DataFrame({"x": x, "color": rng.choice(["red", "blue"], n), "score": 0.5,
                          "prediction": rng.choice(classes, n), "label": rng.choice(classes, n)})
    spec = make_spec(task="multiclass", classes=classes, segments=[])
    pipe = Pipeline({"m": load_reference(spec, frame)}, now_ms=lambda: T0 + 365 * DAY)
    proba = rng.dirichlet([1, 1, 1], size=n)
    predicted = [classes[i] for i in proba.argmax(axis=1)]
    truth = list(rng.choice(classes, n))
    events = []
    for i in range(n):
        event = {"event_id": f"e{i}", "model": "m", "version": "v1", "ts": T0 + i, "features": {"x": float(x[i])},
                 "prediction": predicted[i], "probabilities": dict(zip(classes, proba[i].tolist()))}
        events.append(Message(PREDICTION, orjson.dumps(event), "t", str(i)))
        events.append(Message(GROUND_TRUTH, orjson.dumps({"event_id": f"e{i}", "model": "m", "ts": T0 + i, "label": truth[i]}), "t", str(i)))
    pipe.process(events)
    rows = {r["metric"]: r["value"] for r in pipe.finish().window_metrics if r["segment"] == "all"}
    assert rows["accuracy"] == pytest.approx(accuracy_score(truth, predicted), abs=1e-12)
    assert rows["f1_macro"] == pytest.approx(f1_score(truth, predicted, average="macro"), abs=1e-9)
    assert rows["log_loss"] == pytest.approx(log_loss(truth, proba, labels=classes), abs=1e-9)

    y = rng.normal(10, 2, n)
    reg_frame = pd.DataFrame({"x": x, "color": "red", "score": 0.0, "prediction": y + rng.normal(0, 1, n), "label": y})
    reg = Pipeline({"m": load_reference(make_spec(task="regression", segments=[]), reg_frame)}, now_ms=lambda: T0 + 365 * DAY)
    pred = y + rng.normal(0.5, 1.0, n)
    messages = []
    for i in range(n):
        messages.append(Message(PREDICTION, orjson.dumps({"event_id": f"r{i}", "model": "m", "version": "v1", "ts": T0 + i,
                                                          "features": {"x": float(x[i])}, "prediction": float(pred[i])}), "t", str(i)))
        messages.append(Message(GROUND_TRUTH, orjson.dumps({"event_id": f"r{i}", "model": "m", "ts": T0 + i, "label": float(y[i])}), "t", str(i)))
    reg.process(messages)
    rows = {r["metric"]: r["value"] for r in reg.finish().window_metrics if r["segment"] == "all"}
    assert rows["mae"] == pytest.approx(mean_absolute_error(y, pred), rel=1e-12)
    assert rows["r2"] == pytest.approx(r2_score(y, pred), rel=1e-9)


def test_domain_classifier_names_the_shifted_feature():
    spec = make_spec(drift={"domain_classifier": True, "domain_sample": 600})
    frame = reference_frame()
    pipe = Pipeline({"m": load_reference(spec, frame)}, now_ms=lambda: T0 + 365 * DAY)
    rng = np.random.default_rng(2)
    same = [prediction(i, T0 + i, x=float(v), color=str(c)) for i, (v, c) in
            enumerate(zip(rng.normal(0.0, 1.0, 1500), rng.choice(["red", "green", "blue"], 1500)))]
    shifted = [prediction(10_000 + i, T0 + DAY + i, x=float(v), color=str(c)) for i, (v, c) in
               enumerate(zip(rng.normal(1.5, 1.0, 1500), rng.choice(["red", "green", "blue"], 1500)))]
    pipe.process(same + shifted)
    rows = [r for r in pipe.finish().drift_results if r["target"] == "multivariate"]
    auc = {r["window_start"]: r for r in rows if r["test"] == "domain_auc"}
    assert auc[T0]["statistic"] < 0.6 and not auc[T0]["drifted"]
    assert auc[T0 + DAY]["statistic"] > 0.75 and auc[T0 + DAY]["drifted"]
    assert auc[T0 + DAY]["n_current"] == 600
    importances = [r for r in rows if r["test"] == "domain_importance" and r["window_start"] == T0 + DAY]
    assert max(importances, key=lambda r: r["effect_size"])["feature"] == "x"


def test_nullable_pandas_missing_values_are_missing_not_a_category():
    frame = reference_frame()
    frame["color"] = frame["color"].astype("string")
    frame.loc[::5, "color"] = pd.NA
    ref = load_reference(make_spec(), frame)
    assert "<NA>" not in ref.profiles["color"].categories and ref.profiles["color"].n_missing == 400
    pipe = Pipeline({"m": ref}, now_ms=lambda: T0 + 365 * DAY)
    rng = np.random.default_rng(4)
    colors = [None if i % 5 == 0 else str(c) for i, c in enumerate(rng.choice(["red", "green", "blue"], 2000))]
    pipe.process([prediction(i, T0 + i, x=float(v), color=c) for i, (v, c) in enumerate(zip(rng.normal(size=2000), colors))])
    assert not any(r["drifted"] for r in pipe.finish().drift_results if r["feature"] == "color")


def test_reference_classes_are_mapped_and_checked():
    from driftline.config import SpecError

    frame = reference_frame()
    frame["label"] = frame["label"].astype(str)
    frame["prediction"] = frame["prediction"].astype(bool)
    spec = make_spec(classes=["0", "1"], positive_label="1")
    with pytest.raises(SpecError, match="reference.prediction: expected one of the classes"):
        load_reference(spec, frame)
    frame["prediction"] = frame["prediction"].astype(int)
    baseline = load_reference(spec, frame).baseline.metrics()
    assert baseline["positive_rate"] > 0.3 and baseline["recall"] > 0.3


def batches(messages, size):
    return [messages[i:i + size] for i in range(0, len(messages), size)]


def run_in_batches(messages, size, spec=None):
    spec = spec or make_spec()
    pipe = Pipeline({"m": load_reference(spec, reference_frame())}, now_ms=lambda: T0 + 365 * DAY)
    outs = [pipe.process(batch) for batch in batches(messages, size)] + [pipe.finish()]
    labeled = sorted(r.event_id for o in outs for r in o.labeled)
    dead = sorted((d["code"], d["position"]) for o in outs for d in o.dead_letters)
    final: dict = {}
    for o in outs:
        for r in o.window_metrics:
            key = (r["window_start"], r["segment"], r["metric"])
            if key not in final or r["revision"] >= final[key]["revision"]:
                final[key] = r
    values = {k: (r["n"], r["n_predictions"], r["revision"]) for k, r in final.items()}
    return labeled, dead, values


@pytest.mark.parametrize("stream", [
    # a label right at the TTL edge, after the watermark moved on
    [prediction(1, T0 + 1000), prediction(2, T0 + 10 * DAY + 3_600_000), label(1, T0 + 10 * DAY + 7_200_000)],
    # a duplicate id with a later ts moving the watermark
    [prediction(1, T0 + 1000), prediction(1, T0 + 5 * DAY), prediction(2, T0 + 2000), label(2, T0 + 3_600_000)],
    # a label that waits across batches for its prediction
    [label(3, T0 + 500), prediction(4, T0 + 600), prediction(3, T0 + 700), label(4, T0 + 800)],
    # a late label for an early window after later windows closed
    [prediction(i, T0 + i * 1000) for i in range(4)] + [label(0, T0 + 5000), prediction(10, T0 + 10 * DAY + 79_200_000),
                                                        prediction(11, T0 + 11 * DAY), label(1, T0 + 11 * DAY + 1)],
])
def test_results_do_not_depend_on_batching(stream):
    whole = run_in_batches(stream, len(stream))
    for size in (1, 2, 3):
        assert run_in_batches(stream, size) == whole, size


def test_join_watermark_is_per_model():
    frame = reference_frame()
    a, b = make_spec(), make_spec(model="b")
    pipe = Pipeline({"m": load_reference(a, frame), "b": load_reference(b, frame)}, now_ms=lambda: T0 + 365 * DAY)
    late_b = orjson.dumps({"event_id": "x", "model": "b", "version": "v1", "ts": T0, "features": {"x": 0.0, "color": "red"},
                           "prediction": 1, "score": 0.9})
    out = pipe.process([prediction(1, T0 + 20 * DAY), Message(PREDICTION, late_b, "t", "b1"),
                        Message(GROUND_TRUTH, orjson.dumps({"event_id": "x", "model": "b", "ts": T0 + 1, "label": 1}), "t", "b2")])
    assert [r.event_id for r in out.labeled] == ["x"]
    assert out.dead_letters == []


def test_a_batch_of_runs_gives_what_its_messages_give():
    """What the Faust worker hands over (one run of records per topic) and the same messages one
    by one produce the same rows, dead letters (with their positions) and orphan origins."""
    predictions = [prediction(1, T0), prediction(1, T0 + 1), Message(PREDICTION, b"{oops", "", ""), prediction(2, T0 + 2)]
    labels = [label(1, T0 + 5), label(1, T0 + 6), label(9, T0 + 7), Message(GROUND_TRUTH, b"[]", "", "")]
    runs = [("preds", "3:", [100, 101, 102, 103], predictions), ("truth", "3:", [7, 8, 9, 10], labels)]
    messages = [
        Message(m.kind, m.data, topic, f"{prefix}{offset}")
        for topic, prefix, offsets, batch in runs for offset, m in zip(offsets, batch)
    ]
    batch = MessageBatch()
    for topic, prefix, offsets, run in runs:
        batch.add_run(run[0].kind, topic, [m.data for m in run], prefix, offsets)
    outs = []
    for given in (messages, batch):
        pipe = Pipeline({"m": load_reference(make_spec(), reference_frame())}, now_ms=lambda: T0 + 365 * DAY)
        out = pipe.process(given)
        out.extend(pipe.finish())
        outs.append(out)
    by_messages, by_runs = outs
    assert [(d["code"], d["source"], d["position"]) for d in by_runs.dead_letters] == [
        ("invalid_json", "preds", "3:102"), ("wrong_type", "truth", "3:10"), ("duplicate_event_id", "preds", "3:101"),
        ("duplicate_label", "truth", "3:8"), ("orphan_label", "truth", "3:9"),
    ]
    assert by_runs.dead_letters == by_messages.dead_letters
    assert by_runs.labeled == by_messages.labeled and len(by_runs.labeled) == 1
    assert by_runs.window_metrics == by_messages.window_metrics and by_runs.window_metrics


def test_a_run_needs_one_offset_per_message():
    with pytest.raises(ValueError, match="data and offsets must have the same length, got 2 and 1"):
        MessageBatch().add_run(PREDICTION, "preds", [b"{}", b"{}"], "0:", [5])
    with pytest.raises(ValueError, match="a batch made of Message objects takes no runs"):
        MessageBatch.of([prediction(1, T0)]).add_run(PREDICTION, "preds", [], "0:", [])
