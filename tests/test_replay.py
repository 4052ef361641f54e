"""Acceptance of `driftline replay` end to end: event files in, stored results checked against
scikit-learn and scipy computed independently on the same rows.

The replay runs in a subprocess (chDB binds one data directory per process); the store is read
here only after it exits. One scenario (a few daily windows of the credit-scoring stream) is
generated per module and replayed clean, again into the same store, with another batch size,
and with hostile lines appended.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
import yaml
from scipy import stats
from scipy.spatial.distance import jensenshannon
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from driftline.monitors.drift import UNSEEN_PSEUDO_COUNT, ks_method
from driftline.scorers.scenario import CreditScenario
from driftline.storage import open_store

DAY_MS = 86_400_000
# Five daily windows; the last holds about 60 predictions, so its KS p-values take scipy's exact
# method while the full windows take the asymptotic one.
N_EVENTS = 27_700
RESERVOIR = 10_000
AUC_RESERVOIR = 20_000
TOL = 1e-9
TABLES = ("predictions", "ground_truth", "labeled", "window_metrics", "drift_results", "dead_letters")
METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "brier")
METRIC_KEY = ["model", "version", "segment", "window_start", "metric"]
DRIFT_KEY = ["model", "version", "window_start", "target", "feature", "test"]


# --------------------------------------------------------------------------- helpers


def run_replay(files: ScenarioFiles, data_dir: Path, predictions: Path | None = None,
               ground_truth: Path | None = None, *extra: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "driftline", "replay",
        "--spec", str(files.spec),
        "--predictions", str(predictions or files.predictions),
        "--ground-truth", str(ground_truth or files.ground_truth),
        "--data-dir", str(data_dir),
        *extra,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (
        f"`{' '.join(command)}` exited with {result.returncode}\n"
        f"--- stdout (tail) ---\n{result.stdout[-3000:]}\n--- stderr (tail) ---\n{result.stderr[-3000:]}"
    )
    return result


def to_ms(values: pd.Series) -> pd.Series:
    return (values - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)


@dataclass
class Snapshot:
    """Everything a replay stored, read with FINAL after the replay process exited."""

    counts: dict[str, int]
    window_metrics: pd.DataFrame
    drift_results: pd.DataFrame
    dead_letters: pd.DataFrame


def read_store(data_dir: Path) -> Snapshot:
    with open_store(data_dir) as store:
        counts = {t: int(store.query_df(f"SELECT count() AS n FROM {t} FINAL")["n"].iloc[0]) for t in TABLES}
        metrics = store.query_df("SELECT * FROM window_metrics FINAL")
        drift = store.query_df("SELECT * FROM drift_results FINAL")
        dead = store.query_df("SELECT * FROM dead_letters FINAL")
    for frame in (metrics, drift):
        frame["window_start"] = to_ms(frame["window_start"])
        frame["window_end"] = to_ms(frame["window_end"])
    dead["payload"] = [p if isinstance(p, bytes) else p.encode() for p in dead["payload"]]
    return Snapshot(counts, metrics, drift, dead)


def is_close(got: float, want: float, tol: float = TOL) -> bool:
    """Equal within ``tol`` (relative above 1, absolute below); NaN equals only NaN."""
    if got is None or want is None:
        return got is None and want is None
    if math.isnan(want) or math.isnan(got):
        return math.isnan(want) and math.isnan(got)
    return abs(got - want) <= tol * max(1.0, abs(want))


def check(mismatches: list[str], what: str, got: float, want: float, tol: float = TOL) -> None:
    if not is_close(got, want, tol):
        diff = "" if got is None or want is None else f" (diff {got - want:.3g})"
        mismatches.append(f"{what}: stored {got!r}, library gives {want!r}{diff}")


def fail_on(mismatches: list[str], title: str) -> None:
    shown = "\n  ".join(mismatches[:25])
    more = f"\n  ... and {len(mismatches) - 25} more" if len(mismatches) > 25 else ""
    assert not mismatches, f"{title}: {len(mismatches)} mismatches\n  {shown}{more}"


def as_category(value: object) -> str | None:
    """A category as the pipeline stores it: booleans as 'true'/'false', integers as digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return str(value)


def numeric_values(values: pd.Series) -> np.ndarray:
    x = values.to_numpy(dtype=float, na_value=np.nan)
    return x[np.isfinite(x)]


def category_values(values: pd.Series) -> list[str]:
    return [c for c in map(as_category, values.tolist()) if c is not None]


def assert_same_rows(got: pd.DataFrame, want: pd.DataFrame, key: list[str], what: str,
                     ignore: tuple[str, ...] = ("updated_at",), rel: float = 0.0) -> None:
    """Same keys and, per key, the same value in every other column (NaN equals NaN).

    ``rel`` > 0 allows float columns that relative difference (summation order).
    """
    got_keys = set(map(tuple, got[key].itertuples(index=False)))
    want_keys = set(map(tuple, want[key].itertuples(index=False)))
    assert got_keys == want_keys, (
        f"{what}: different row keys; only in the new store: {sorted(got_keys - want_keys)[:10]}, "
        f"only in the reference store: {sorted(want_keys - got_keys)[:10]}"
    )
    columns = [c for c in want.columns if c not in key and c not in ignore]
    a = got.sort_values(key).reset_index(drop=True)
    b = want.sort_values(key).reset_index(drop=True)
    mismatches = []
    for column in columns:
        for i, (x, y) in enumerate(zip(a[column], b[column])):
            same = (x == y) or (pd.isna(x) and pd.isna(y)) or (
                rel > 0 and isinstance(x, float) and isinstance(y, float) and abs(x - y) <= rel * max(abs(x), abs(y))
            )
            if not same:
                mismatches.append(f"{tuple(a.loc[i, key])} {column}: {x!r} vs {y!r}")
    fail_on(mismatches, what)


# --------------------------------------------------------------------------- fixtures


@dataclass
class ScenarioFiles:
    directory: Path
    predictions: Path
    ground_truth: Path
    reference: Path
    spec: Path
    predictions_frame: pd.DataFrame
    ground_truth_frame: pd.DataFrame
    features: dict[str, str]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> ScenarioFiles:
    directory = tmp_path_factory.mktemp("replay_events")
    predictions, ground_truth, reference, spec_path = CreditScenario(seed=3, n_events=N_EVENTS).write_event_files(directory)
    spec = yaml.safe_load(spec_path.read_text())
    assert spec["window"] == "1d", f"these tests assign daily windows; the scenario's window is {spec['window']!r}"
    events = [orjson.loads(line) for line in predictions.read_bytes().splitlines()]
    frame = pd.DataFrame({
        "event_id": [e["event_id"] for e in events],
        "ts": [e["ts"] for e in events],
        "prediction": [e["prediction"] for e in events],
        "score": [e["score"] for e in events],
    })
    features = pd.DataFrame([e["features"] for e in events], dtype=object)
    kinds = {f["name"]: f["kind"] for f in spec["features"]}
    for name, kind in kinds.items():
        features[name] = (
            features[name].astype(float) if kind == "numeric" else pd.Series(list(map(as_category, features[name])), dtype=object)
        )
    frame = pd.concat([frame, features], axis=1)
    frame["window_start"] = frame["ts"] - frame["ts"] % DAY_MS
    truths = pd.DataFrame([orjson.loads(line) for line in ground_truth.read_bytes().splitlines()])
    return ScenarioFiles(
        directory, predictions, ground_truth, reference, spec_path, frame, truths, kinds,
    )


@pytest.fixture(scope="module")
def joined(files: ScenarioFiles) -> pd.DataFrame:
    """Predictions joined with their labels by pandas, on event_id."""
    truths = files.ground_truth_frame[["event_id", "label"]]
    return files.predictions_frame.merge(truths, on="event_id", how="inner", validate="one_to_one")


@dataclass
class Replay:
    data_dir: Path
    stdout: str
    snapshot: Snapshot


@pytest.fixture(scope="module")
def clean(files: ScenarioFiles, tmp_path_factory: pytest.TempPathFactory) -> Replay:
    data_dir = tmp_path_factory.mktemp("replay_clean") / "store"
    result = run_replay(files, data_dir)
    return Replay(data_dir, result.stdout, read_store(data_dir))


# --------------------------------------------------------------------------- tests


def test_replay_processes_every_event(files: ScenarioFiles, joined: pd.DataFrame, clean: Replay) -> None:
    counts = clean.snapshot.counts
    n_windows = files.predictions_frame["window_start"].nunique()
    assert 4 <= n_windows <= 5, f"the scenario should span 4-5 daily windows, got {n_windows}"
    assert counts["predictions"] == len(files.predictions_frame), f"predictions stored: {counts}"
    assert counts["ground_truth"] == len(files.ground_truth_frame), f"ground truth stored: {counts}"
    assert counts["labeled"] == len(joined), f"labeled rows stored {counts['labeled']}, pandas joins {len(joined)}"
    assert counts["dead_letters"] == 0, (
        f"a clean scenario must leave no dead letters, got {counts['dead_letters']}:\n"
        f"{clean.snapshot.dead_letters[['code', 'field', 'reason']].head(10)}"
    )
    stored_windows = set(clean.snapshot.window_metrics["window_start"])
    assert stored_windows == set(files.predictions_frame["window_start"]), (
        f"window_metrics windows {sorted(stored_windows)} != prediction windows "
        f"{sorted(set(files.predictions_frame['window_start']))}"
    )


def sklearn_metrics(rows: pd.DataFrame) -> dict[str, float]:
    y = rows["label"].to_numpy(dtype=int)
    score = rows["score"].to_numpy(dtype=float)
    y_pred = rows["prediction"].to_numpy(dtype=int)
    both_classes = len(np.unique(y)) == 2
    return {
        "accuracy": accuracy_score(y, y_pred),
        "precision": precision_score(y, y_pred, zero_division=np.nan),
        "recall": recall_score(y, y_pred, zero_division=np.nan),
        "f1": f1_score(y, y_pred, zero_division=np.nan),
        "roc_auc": roc_auc_score(y, score) if both_classes else math.nan,
        "log_loss": log_loss(y, score, labels=[0, 1]),
        "brier": brier_score_loss(y, score, pos_label=1),
    }


def test_window_metrics_equal_scikit_learn(files: ScenarioFiles, joined: pd.DataFrame, clean: Replay) -> None:
    stored = clean.snapshot.window_metrics
    stored = stored[stored["metric"].isin(METRICS)]
    predictions = files.predictions_frame
    labeled_per_window = joined.groupby("window_start").size()
    assert labeled_per_window.max() <= AUC_RESERVOIR, (
        f"the stored ROC AUC is exact only up to {AUC_RESERVOIR} labeled rows per window; "
        f"this scenario has {labeled_per_window.max()}"
    )
    assert labeled_per_window.min() > 0, f"every window should have labeled rows: {labeled_per_window.to_dict()}"
    mismatches: list[str] = []
    checked = 0
    for start, window_predictions in predictions.groupby("window_start"):
        window_rows = joined[joined["window_start"] == start]
        segments = {"all": (window_predictions, window_rows)}
        for region, part in window_predictions.groupby("region"):
            segments[f"region={region}"] = (part, window_rows[window_rows["region"] == region])
        stored_segments = set(stored.loc[stored["window_start"] == start, "segment"])
        assert stored_segments == set(segments), (
            f"window {start}: stored segments {sorted(stored_segments)}, expected {sorted(segments)}"
        )
        for segment, (segment_predictions, rows) in segments.items():
            got = stored[(stored["window_start"] == start) & (stored["segment"] == segment)].set_index("metric")
            assert set(got.index) == set(METRICS), f"window {start} {segment}: stored metrics {sorted(got.index)}"
            want = sklearn_metrics(rows) if len(rows) else dict.fromkeys(METRICS, math.nan)
            n, n_predictions = len(rows), len(segment_predictions)
            for metric in METRICS:
                row = got.loc[metric]
                where = f"window {start} {segment} {metric}"
                check(mismatches, where, float(row["value"]), float(want[metric]))
                if int(row["n"]) != n:
                    mismatches.append(f"{where}: n stored {int(row['n'])}, joined rows {n}")
                if int(row["n_predictions"]) != n_predictions:
                    mismatches.append(f"{where}: n_predictions stored {int(row['n_predictions'])}, predictions {n_predictions}")
                if float(row["label_coverage"]) != n / n_predictions:
                    mismatches.append(f"{where}: label_coverage stored {row['label_coverage']!r}, expected {n / n_predictions!r}")
                checked += 1
    fail_on(mismatches, f"window metrics vs scikit-learn ({checked} values checked)")
    assert checked >= 4 * 8 * len(METRICS), f"only {checked} metric values were checked"


def test_drift_statistics_equal_scipy(files: ScenarioFiles, joined: pd.DataFrame, clean: Replay) -> None:
    reference = pd.read_parquet(files.reference)
    drift = clean.snapshot.drift_results
    predictions = files.predictions_frame
    numeric = [f for f, kind in files.features.items() if kind == "numeric"] + ["score"]
    categorical = [f for f, kind in files.features.items() if kind == "categorical"] + ["prediction"]
    target = {"score": "prediction", "prediction": "prediction"}
    mismatches: list[str] = []
    methods: set[str] = set()
    checked = 0

    def stored(start: int, feature: str, test: str) -> pd.Series:
        rows = drift[(drift["window_start"] == start) & (drift["feature"] == feature) & (drift["test"] == test)]
        assert len(rows) == 1, f"window {start}: expected one stored {test} row for {feature!r}, got {len(rows)}"
        row = rows.iloc[0]
        assert row["target"] == target.get(feature, "feature"), f"window {start} {feature} {test}: target {row['target']!r}"
        return row

    def chi2_table(ref: list[str], cur: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The documented 2 x k table: reference categories, plus one pooled cell for unseen ones."""
        ref_count, cur_count = Counter(ref), Counter(cur)
        categories = sorted(ref_count)
        unseen = sum(n for c, n in cur_count.items() if c not in ref_count)
        ref_counts = np.array([ref_count[c] for c in categories] + [0], dtype=float)
        cur_counts = np.array([cur_count[c] for c in categories] + [unseen], dtype=float)
        observed = np.vstack([ref_counts, cur_counts])
        if cur_counts[-1] > 0:
            observed[0, -1] = UNSEEN_PSEUDO_COUNT
        return observed[:, observed.sum(axis=0) > 0], ref_counts, cur_counts

    for start, window in predictions.groupby("window_start"):
        where = f"window {start}"
        for feature in numeric:
            ref = numeric_values(reference[feature])
            cur = numeric_values(window[feature])
            assert len(ref) <= RESERVOIR and len(cur) <= RESERVOIR, (
                f"{where} {feature}: {len(ref)} reference and {len(cur)} window values; the exact KS needs both "
                f"<= {RESERVOIR} (the reservoir)"
            )
            ks_row = stored(start, feature, "ks")
            methods.add(ks_method(len(ref), len(cur)))
            expected = stats.ks_2samp(ref, cur, method=ks_method(len(ref), len(cur)))
            check(mismatches, f"{where} {feature} ks statistic", ks_row["statistic"], expected.statistic)
            check(mismatches, f"{where} {feature} ks p-value", ks_row["p_value"], expected.pvalue)
            check(mismatches, f"{where} {feature} ks effect size", ks_row["effect_size"], expected.statistic)
            w_row = stored(start, feature, "wasserstein")
            distance = stats.wasserstein_distance(ref, cur)
            check(mismatches, f"{where} {feature} wasserstein distance", w_row["statistic"], distance)
            check(mismatches, f"{where} {feature} wasserstein / reference std (ddof=0)", w_row["effect_size"],
                  distance / np.std(ref, ddof=0))
            for row in (ks_row, w_row, stored(start, feature, "psi")):
                if (int(row["n_reference"]), int(row["n_current"])) != (len(ref), len(cur)):
                    mismatches.append(f"{where} {feature} {row['test']}: n_reference/n_current stored "
                                      f"{int(row['n_reference'])}/{int(row['n_current'])}, non-missing {len(ref)}/{len(cur)}")
            if not (ks_row["exact"] and w_row["exact"]):
                mismatches.append(f"{where} {feature}: ks/wasserstein stored as not exact although the window fits the reservoir")
            checked += 1
        for feature in categorical:
            ref = category_values(reference[feature])
            cur = category_values(window[feature])
            table, ref_counts, cur_counts = chi2_table(ref, cur)
            expected = stats.chi2_contingency(table, correction=False)
            row = stored(start, feature, "chi2")
            check(mismatches, f"{where} {feature} chi2 statistic", row["statistic"], expected.statistic)
            check(mismatches, f"{where} {feature} chi2 p-value", row["p_value"], expected.pvalue)
            js_row = stored(start, feature, "js")
            check(mismatches, f"{where} {feature} js distance", js_row["statistic"],
                  float(jensenshannon(ref_counts, cur_counts, base=2)))
            for r in (row, js_row, stored(start, feature, "psi")):
                if (int(r["n_reference"]), int(r["n_current"])) != (len(ref), len(cur)):
                    mismatches.append(f"{where} {feature} {r['test']}: n_reference/n_current stored "
                                      f"{int(r['n_reference'])}/{int(r['n_current'])}, non-missing {len(ref)}/{len(cur)}")
            checked += 1

        labels = [as_category(v) for v in joined.loc[joined["window_start"] == start, "label"]]
        label_rows = drift[(drift["window_start"] == start) & (drift["target"] == "label") & (drift["test"] == "chi2")]
        assert len(label_rows) == (1 if labels else 0), (
            f"{where}: expected {1 if labels else 0} label-drift chi2 row ({len(labels)} labeled rows), got {len(label_rows)}"
        )
        if labels:
            table, _, _ = chi2_table(category_values(reference["label"]), labels)
            expected = stats.chi2_contingency(table, correction=False)
            check(mismatches, f"{where} label chi2 statistic", label_rows.iloc[0]["statistic"], expected.statistic)
            check(mismatches, f"{where} label chi2 p-value", label_rows.iloc[0]["p_value"], expected.pvalue)
            if int(label_rows.iloc[0]["n_current"]) != len(labels):
                mismatches.append(f"{where} label chi2: n_current {int(label_rows.iloc[0]['n_current'])}, labeled rows {len(labels)}")

        family = drift[(drift["window_start"] == start) & drift["target"].isin(["feature", "prediction"])]
        with_p = family[family["p_value"].notna()]
        assert len(with_p) == len(numeric) + len(categorical), (
            f"{where}: the family should hold one KS or chi2 p-value per column, got {len(with_p)}"
        )
        adjusted = stats.false_discovery_control(with_p["p_value"].to_numpy(), method="bh")
        for (_, row), want in zip(with_p.iterrows(), adjusted):
            check(mismatches, f"{where} {row['feature']} {row['test']} BH-adjusted p-value", row["p_adjusted"], float(want))
        without_p = family[family["p_value"].isna()]
        if without_p["p_adjusted"].notna().any():
            mismatches.append(f"{where}: tests without a p-value have an adjusted p-value: "
                              f"{without_p.loc[without_p['p_adjusted'].notna(), ['feature', 'test']].values.tolist()}")
    fail_on(mismatches, f"drift results vs scipy ({checked} column-windows checked)")
    assert checked >= 4 * (len(numeric) + len(categorical)), f"only {checked} column-windows were checked"
    assert methods == {"exact", "asymp"}, f"the scenario should exercise both KS p-value methods, got {methods}"


def test_replaying_the_same_files_again_changes_nothing(files: ScenarioFiles, clean: Replay) -> None:
    run_replay(files, clean.data_dir)
    again = read_store(clean.data_dir)
    assert again.counts == clean.snapshot.counts, (
        f"a second replay of the same files changed the FINAL counts: first {clean.snapshot.counts}, "
        f"after the second {again.counts}"
    )
    assert_same_rows(again.window_metrics, clean.snapshot.window_metrics, METRIC_KEY,
                     "window_metrics FINAL after replaying twice")
    assert_same_rows(again.drift_results, clean.snapshot.drift_results, DRIFT_KEY,
                     "drift_results FINAL after replaying twice")


def test_batch_size_does_not_change_results(files: ScenarioFiles, clean: Replay,
                                            tmp_path_factory: pytest.TempPathFactory) -> None:
    data_dir = tmp_path_factory.mktemp("replay_batch_1000") / "store"
    run_replay(files, data_dir, None, None, "--batch-size", "1000")
    small = read_store(data_dir)
    assert small.counts == clean.snapshot.counts, (
        f"FINAL counts differ between --batch-size 1000 {small.counts} and the default 20000 {clean.snapshot.counts}"
    )
    # Means merged from per-batch moments (Chan et al.) differ from one pass in the last bits only.
    ignore, rel = ("updated_at", "revision"), 1e-12
    assert_same_rows(small.window_metrics, clean.snapshot.window_metrics, METRIC_KEY,
                     "window_metrics FINAL, --batch-size 1000 vs 20000", ignore, rel)
    assert_same_rows(small.drift_results, clean.snapshot.drift_results, DRIFT_KEY,
                     "drift_results FINAL, --batch-size 1000 vs 20000", ignore, rel)


# --------------------------------------------------------------------------- hostile input


@dataclass
class BadLine:
    data: bytes
    code: str
    field: str


def hostile_predictions(files: ScenarioFiles) -> list[BadLine]:
    """About 180 prediction lines that break the contract in every documented way."""
    lines = files.predictions.read_bytes().splitlines()
    last_window = files.predictions_frame["window_start"].max()
    in_last_window = [line for line, start in zip(lines, files.predictions_frame["window_start"]) if start == last_window]
    base = orjson.loads(in_last_window[0])

    def variant(i: int, **changes: object) -> dict:
        event = json.loads(json.dumps(base))
        event["event_id"] = f"hostile-{i}"
        for key, value in changes.items():
            if key.startswith("f_"):
                event["features"][key[2:]] = value
            else:
                event[key] = value
        return event

    def without(i: int, name: str) -> bytes:
        event = variant(i)
        del event[name]
        return orjson.dumps(event)

    padding = "x" * 100_000
    makers = [
        lambda i: BadLine(b'{"event_id": "hostile-%d", "model": "credit", "ts": ' % i, "invalid_json", ""),
        lambda i: BadLine(b"\xff\xfe not json %d \x00" % i, "invalid_json", ""),
        lambda i: BadLine(b"[%d, 2, 3]" % i, "wrong_type", ""),
        lambda i: BadLine(orjson.dumps(variant(i, event_id=i)), "wrong_type", "event_id"),
        lambda i: BadLine(orjson.dumps(variant(i, ts="2026-01-09T10:00:00Z")), "wrong_type", "ts"),
        lambda i: BadLine(orjson.dumps(variant(i, f_income="lots")), "wrong_type", "features.income"),
        lambda i: BadLine(orjson.dumps(variant(i, f_region=3.5)), "wrong_type", "features.region"),
        lambda i: BadLine(orjson.dumps(variant(i, score=0.5)).replace(b'"score":0.5', b'"score":NaN'), "non_finite", ""),
        lambda i: BadLine(orjson.dumps(variant(i, f_age=38)).replace(b'"age":38', b'"age":1e999'), "non_finite", "features.age"),
        lambda i: BadLine(orjson.dumps(variant(i, explanation={"age": 0.1}, host=padding)), "oversize", ""),
        lambda i: BadLine(orjson.dumps(variant(i, model="fraud")), "unknown_model", "model"),
        lambda i: BadLine(orjson.dumps(variant(i, ts=4_102_444_800_000)), "future_timestamp", "ts"),
        lambda i: BadLine(without(i, "version"), "missing_field", "version"),
        lambda i: BadLine(without(i, "features"), "missing_field", "features"),
        lambda i: BadLine(orjson.dumps(variant(i, prediction=2)), "invalid_value", "prediction"),
        lambda i: BadLine(orjson.dumps(variant(i, score=1.5)), "out_of_range", "score"),
    ]
    bad = [makers[i % len(makers)](i) for i in range(16 * 11)]
    bad += [BadLine(line, "duplicate_event_id", "event_id") for line in in_last_window[-12:]]
    return bad


def hostile_ground_truth(files: ScenarioFiles) -> tuple[list[BadLine], list[bytes]]:
    """Invalid and duplicate labels (dead-lettered on arrival) and orphans (labels of no prediction)."""
    lines = files.ground_truth.read_bytes().splitlines()
    last = orjson.loads(lines[-1])
    bad = [BadLine(line, "duplicate_label", "event_id") for line in lines[:5]]
    bad += [
        BadLine(orjson.dumps({**last, "event_id": f"hostile-label-{i}", "label": 7}), "invalid_value", "label")
        for i in range(5)
    ]
    bad += [
        BadLine(orjson.dumps({k: v for k, v in {**last, "event_id": f"hostile-label-{i}"}.items() if k != "label"}),
                "missing_field", "label")
        for i in range(5, 10)
    ]
    # Orphans as a producer using the standard library would write them (spaces after separators).
    orphans = [
        json.dumps({"event_id": f"ghost-{i}", "model": "credit", "ts": last["ts"], "label": i % 2, "source": "audit"}).encode()
        for i in range(15)
    ]
    return bad, orphans


@dataclass
class HostileReplay:
    prediction_lines: dict[int, BadLine]
    truth_lines: dict[int, BadLine]
    orphans: list[bytes]
    predictions_path: Path
    ground_truth_path: Path
    snapshot: Snapshot


@pytest.fixture(scope="module")
def hostile(files: ScenarioFiles, tmp_path_factory: pytest.TempPathFactory) -> HostileReplay:
    directory = tmp_path_factory.mktemp("replay_hostile")
    predictions = directory / "hostile_predictions.jsonl"
    ground_truth = directory / "hostile_ground_truth.jsonl"
    bad_predictions = hostile_predictions(files)
    bad_truths, orphans = hostile_ground_truth(files)
    n_predictions = len(files.predictions.read_bytes().splitlines())
    n_truths = len(files.ground_truth.read_bytes().splitlines())
    predictions.write_bytes(files.predictions.read_bytes() + b"".join(b.data + b"\n" for b in bad_predictions))
    ground_truth.write_bytes(
        files.ground_truth.read_bytes() + b"".join(b.data + b"\n" for b in bad_truths) + b"".join(o + b"\n" for o in orphans)
    )
    data_dir = directory / "store"
    run_replay(files, data_dir, predictions, ground_truth)
    return HostileReplay(
        {n_predictions + 1 + i: b for i, b in enumerate(bad_predictions)},
        {n_truths + 1 + i: b for i, b in enumerate(bad_truths)},
        orphans, predictions, ground_truth, read_store(data_dir),
    )


def test_hostile_lines_are_dead_lettered_with_reason_and_bytes(hostile: HostileReplay) -> None:
    dead = hostile.snapshot.dead_letters
    n_bad = len(hostile.prediction_lines) + len(hostile.truth_lines) + len(hostile.orphans)
    assert n_bad >= 200, f"the hostile files should add about 200 bad lines, got {n_bad}"
    assert len(dead) == n_bad, (
        f"expected exactly one dead letter per bad line ({n_bad}), got {len(dead)}; codes: "
        f"{dead['code'].value_counts().to_dict()}"
    )
    mismatches: list[str] = []
    for path, expected in ((hostile.predictions_path, hostile.prediction_lines),
                           (hostile.ground_truth_path, hostile.truth_lines)):
        rows = dead[dead["source"] == path.name].set_index("position")
        for number, bad in expected.items():
            where = f"{path.name} line {number} ({bad.data[:60]!r})"
            if f"line {number}" not in rows.index:
                mismatches.append(f"{where}: no dead letter (expected {bad.code} at {bad.field!r})")
                continue
            row = rows.loc[f"line {number}"]
            if (row["code"], row["field"]) != (bad.code, bad.field):
                mismatches.append(f"{where}: stored code/field {row['code']!r}/{row['field']!r}, expected "
                                  f"{bad.code!r}/{bad.field!r} (reason: {row['reason']})")
            if not row["reason"].startswith(bad.code):
                mismatches.append(f"{where}: reason {row['reason']!r} does not start with the code {bad.code!r}")
            if row["payload"] != bad.data:
                mismatches.append(f"{where}: payload is not the original bytes ({len(row['payload'])} vs {len(bad.data)} bytes)")
    orphans = dead[dead["code"] == "orphan_label"]
    stored_ids = sorted(orjson.loads(p)["event_id"] for p in orphans["payload"])
    expected_ids = sorted(orjson.loads(o)["event_id"] for o in hostile.orphans)
    if stored_ids != expected_ids:
        mismatches.append(f"orphan labels: stored event ids {stored_ids}, expected {expected_ids}")
    if set(orphans["field"]) - {"event_id"}:
        mismatches.append(f"orphan labels: field {sorted(set(orphans['field']))}, expected 'event_id'")
    by_id = {orjson.loads(o)["event_id"]: orjson.loads(o) for o in hostile.orphans}
    for payload in orphans["payload"]:
        event = orjson.loads(payload)
        if {k: event.get(k) for k in by_id[event["event_id"]]} != by_id.get(event["event_id"]):
            mismatches.append(f"orphan label {event['event_id']}: payload {payload!r} does not hold the original event")
    fail_on(mismatches, "dead letters of the hostile lines")


def test_orphan_labels_keep_their_original_bytes(hostile: HostileReplay) -> None:
    dead = hostile.snapshot.dead_letters
    orphans = dead[dead["code"] == "orphan_label"]
    stored = sorted(orphans["payload"])
    original = sorted(hostile.orphans)
    assert stored == original, (
        "orphan-label dead letters must carry the original line bytes (docs/events.md: 'goes to ... the "
        "dead_letters table with its original bytes'; schema: payload = 'The original bytes, unchanged'); "
        f"first original {original[0]!r}, first stored {stored[0]!r}; stored source/position "
        f"{orphans[['source', 'position']].head(2).values.tolist()} instead of "
        f"{hostile.ground_truth_path.name!r}/'line N'"
    )


def test_hostile_lines_leave_window_metrics_unchanged(hostile: HostileReplay, clean: Replay) -> None:
    counts = {k: v for k, v in hostile.snapshot.counts.items() if k != "dead_letters"}
    expected = {k: v for k, v in clean.snapshot.counts.items() if k != "dead_letters"}
    # Orphan labels are valid ground-truth events: stored as received, dead-lettered when they never join.
    expected["ground_truth"] += len(hostile.orphans)
    assert counts == expected, f"FINAL counts with hostile lines {counts}, expected {expected} (clean + orphan labels)"
    assert_same_rows(hostile.snapshot.window_metrics, clean.snapshot.window_metrics, METRIC_KEY,
                     "window_metrics FINAL, hostile vs clean files")


def test_hostile_lines_leave_drift_results_unchanged(hostile: HostileReplay, clean: Replay) -> None:
    assert_same_rows(hostile.snapshot.drift_results, clean.snapshot.drift_results, DRIFT_KEY,
                     "drift_results FINAL, hostile vs clean files (rejected duplicates must not count)")
