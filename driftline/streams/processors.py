"""Window processors: input drift on predictions, performance on joined rows.

Both are runtime-agnostic: they keep every piece of state in the mapping they are given
(a ``dict`` in the embedded runtime, a changelog-backed Table under Faust), take batches of
decoded events and return plain result rows. Window state is a set of mergeable accumulators,
O(features x bins) per window whatever the number of events.

* :class:`DriftProcessor` accumulates each (model, version, window) of predictions; when the
  watermark closes the window it runs the spec's drift tests on every feature and on the
  prediction, controls the false discovery rate over that family (Benjamini–Hochberg) and
  emits one row per test.
* :class:`PerformanceProcessor` counts predictions per window and segment and accumulates the
  joined rows of the window their *prediction* belongs to. A window's metric rows are emitted
  when it closes and again each time late labels change it, with the label coverage and a
  revision number (the labeled-row count) so that the store keeps the latest version.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from driftline.config import BINARY_METRICS, MULTICLASS_METRICS, REGRESSION_METRICS, ModelSpec
from driftline.monitors import NumericProfile, benjamini_hochberg, compare_many, domain_classifier
from driftline.monitors.rows import RowSample, row_keys
from driftline.monitors.baseline import supported_metrics, worse_than_baseline
from driftline.monitors.business import business_value
from driftline.monitors.fairness import FairnessAccumulator
from driftline.reference import (
    MetricAccumulator,
    ModelReference,
    categorical_values,
    category,
    feature_frame,
    new_metric_accumulator,
    update_metric_accumulators,
)
from driftline.streams.columns import PredictionColumns
from driftline.streams.join import LabeledRow, segment_matrix
from driftline.streams.state import State
from driftline.streams.windows import is_closed, late_mask, window_starts

ALL = "all"
_MIN_DOMAIN_ROWS = 50


def group_rows(columns: list[np.ndarray]) -> list[tuple[tuple[Any, ...], np.ndarray]]:
    """Row indices per distinct combination of the columns' values, in first-seen order.

    >>> [(key, idx.tolist()) for key, idx in group_rows([np.array(["a", "b", "a"], dtype=object), np.array([1, 1, 1])])]
    [(('a', 1), [0, 2]), (('b', 1), [1])]
    """
    n = len(columns[0])
    codes = np.zeros(n, dtype=np.int64)
    for column in columns:
        own, uniques = pd.factorize(column, use_na_sentinel=False)
        _, codes = np.unique(codes * len(uniques) + own, return_inverse=True)
    _, first, inverse, counts = np.unique(codes, return_index=True, return_inverse=True, return_counts=True)
    groups = np.split(np.argsort(inverse, kind="stable"), np.cumsum(counts)[:-1])
    seen = np.argsort(first, kind="stable")
    keys = zip(*(np.asarray(column)[first[seen]].tolist() for column in columns))
    return [(key, groups[g]) for key, g in zip(keys, seen.tolist())]


@dataclass
class DriftWindow:
    """Accumulators of one (model, version, window) of predictions."""

    model: str
    version: str
    start: int
    accumulators: dict[str, Any]
    n: int = 0
    rows: RowSample | None = None

    def merge(self, other: DriftWindow) -> DriftWindow:
        """The window of both partial windows' predictions (partitions of one stream)."""
        accumulators = {name: acc.merge(other.accumulators[name]) for name, acc in self.accumulators.items()}
        rows = self.rows.merge(other.rows) if self.rows is not None and other.rows is not None else self.rows
        return DriftWindow(self.model, self.version, self.start, accumulators, self.n + other.n, rows)


def _as_row_value(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


class DriftProcessor:
    """Accumulate predictions per window and test each closed window against the reference."""

    def __init__(self, state: State, references: dict[str, ModelReference]):
        self.state = state
        self.references = references

    def watermark(self, model: str) -> int:
        return self.state.get(("watermark", model), 0)

    def late(self, model: str, ts: np.ndarray) -> np.ndarray:
        """Mask of the late events of a batch: those whose window the watermark had closed.

        Every decoded prediction advances the watermark (a late one cannot), duplicates
        included, so the watermark is the same whichever batches the stream was cut into.
        """
        spec = self.references[model].spec
        watermark = self.watermark(model)
        late = late_mask(ts, watermark, spec.window_ms, spec.allowed_lateness_ms)
        if len(ts):
            self.state[("watermark", model)] = max(watermark, int(ts.max()))
        return late

    def add(self, batch: PredictionColumns) -> None:
        """Accumulate a batch of one model's accepted (on time, not duplicate) predictions."""
        if not len(batch):
            return
        model = batch.model
        ref = self.references[model]
        spec = ref.spec
        columns: dict[str, Any] = {}
        for j, name in enumerate(spec.numeric_features):
            columns[name] = batch.numeric[:, j]
        for j, name in enumerate(spec.categorical_features):
            columns[name] = batch.categorical[:, j]
        for name, profile in ref.prediction_profiles.items():
            values = getattr(batch, name)
            columns[name] = values.astype(float) if isinstance(profile, NumericProfile) else values
        starts = window_starts(batch.ts, spec.window_ms)
        for (version, start), idx in group_rows([batch.version, starts]):
            key = ("drift", model, version, start)
            window = self.state.get(key)
            if window is None:
                accs = {name: p.new_accumulator() for name, p in {**ref.profiles, **ref.prediction_profiles}.items()}
                rows = RowSample(spec.drift.domain_sample) if spec.drift.domain_classifier else None
                window = DriftWindow(model, version, start, accs, rows=rows)
            everything = len(idx) == len(batch)
            for name, acc in window.accumulators.items():
                acc.update(columns[name] if everything else columns[name][idx])
            if window.rows is not None:
                window.rows.update(row_keys([batch.event_id[i] for i in idx.tolist()]), batch.numeric[idx], batch.categorical[idx])
            window.n += len(idx)
            self.state[key] = window

    def close_windows(self, force: bool = False) -> list[DriftWindow]:
        """Remove and return every window the watermark has closed (all of them when ``force``)."""
        ready = []
        for key, window in list(self.state.items()):
            if key[0] != "drift":
                continue
            spec = self.references[window.model].spec
            if force or is_closed(window.start, self.watermark(window.model), spec.window_ms, spec.allowed_lateness_ms):
                ready.append((key, window))
        ready.sort(key=lambda kv: (kv[1].start, kv[1].model, kv[1].version))
        for key, _ in ready:
            del self.state[key]
        return [window for _, window in ready]

    def close(self, force: bool = False) -> list[dict[str, Any]]:
        """Test every window the watermark has closed (all windows when ``force``)."""
        return [row for window in self.close_windows(force) for row in window_drift_rows(self.references[window.model], window)]


def window_drift_rows(ref: ModelReference, window: DriftWindow) -> list[dict[str, Any]]:
    """The drift rows of a closed window: every test of the spec, and the domain classifier."""
    spec = ref.spec
    tests = {"numeric": spec.drift.numeric_tests, "categorical": spec.drift.categorical_tests}
    profiles = {**ref.profiles, **ref.prediction_profiles}
    results = compare_many(profiles, window.accumulators, tests)
    rows = drift_rows(spec, window.model, window.version, window.start, results,
                      {name: "prediction" for name in ref.prediction_profiles}, revision=window.n)
    if window.rows is not None and ref.domain_reference is not None and len(window.rows) >= _MIN_DOMAIN_ROWS:
        rows.extend(_domain_rows(window, ref))
    return rows


def _domain_rows(window: DriftWindow, ref: ModelReference) -> list[dict[str, Any]]:
    """Domain-classifier drift on the window's row sample: one AUC row, one row per feature
    importance (target ``multivariate``)."""
    spec = ref.spec
    assert window.rows is not None and window.rows.numeric is not None and window.rows.categorical is not None
    current = feature_frame(spec, window.rows.numeric, window.rows.categorical)
    result = domain_classifier(ref.domain_reference, current, max_rows=spec.drift.domain_sample)
    threshold = spec.drift.thresholds["domain_auc"]
    common = {
        "model": window.model, "version": window.version, "window_start": window.start,
        "window_end": window.start + spec.window_ms, "target": "multivariate", "p_value": None,
        "p_adjusted": None, "n_reference": result.n_reference, "n_current": result.n_current,
        "exact": 0, "revision": window.n,
    }
    drifted = result.auc >= threshold and window.n >= spec.drift.min_samples
    rows = [{**common, "feature": "*", "test": "domain_auc", "statistic": result.auc,
             "effect_size": result.auc, "threshold": threshold, "drifted": int(drifted)}]
    rows.extend(
        {**common, "feature": name, "test": "domain_importance", "statistic": value, "effect_size": value,
         "threshold": None, "drifted": 0}
        for name, value in result.importances.items()
    )
    return rows


def drift_rows(
    spec: ModelSpec,
    model: str,
    version: str,
    start: int,
    results: list[Any],
    targets: dict[str, str],
    revision: int,
) -> list[dict[str, Any]]:
    """One stored row per test result, with BH-adjusted p-values over the whole family."""
    p_values = np.array([np.nan if r.p_value is None else r.p_value for r in results], dtype=float)
    _, adjusted = benjamini_hochberg(p_values, alpha=spec.drift.fdr)
    rows = []
    thresholds = spec.drift.thresholds
    for result, p_adj in zip(results, adjusted):
        threshold = thresholds.get(result.test)
        effect = float(result.effect_size)
        significant = result.p_value is None or (not math.isnan(p_adj) and p_adj <= spec.drift.fdr)
        drifted = bool(
            result.n_current >= spec.drift.min_samples and significant and threshold is not None and effect >= threshold
        )
        rows.append({
            "model": model,
            "version": version,
            "window_start": start,
            "window_end": start + spec.window_ms,
            "target": targets.get(result.feature, "feature"),
            "feature": result.feature,
            "test": result.test,
            "statistic": float(result.statistic),
            "p_value": _as_row_value(result.p_value),
            "p_adjusted": _as_row_value(p_adj),
            "effect_size": effect,
            "threshold": threshold,
            "drifted": int(drifted),
            "n_reference": int(result.n_reference),
            "n_current": int(result.n_current),
            "exact": int(result.exact),
            "revision": revision,
        })
    return rows


@dataclass
class Segment:
    n_predictions: int
    metrics: MetricAccumulator


@dataclass
class PerformanceWindow:
    """One (model, version, window) of performance state: all its segments."""

    model: str
    version: str
    start: int
    segments: dict[str, Segment]
    labels: Any
    fairness: FairnessAccumulator | None
    n_labeled: int = 0
    closed: bool = False
    dirty: bool = False

    def merge(self, other: PerformanceWindow) -> PerformanceWindow:
        """The window of both partial windows' predictions and labeled rows."""
        segments = dict(self.segments)
        for key, segment in other.segments.items():
            mine = segments.get(key)
            segments[key] = segment if mine is None else Segment(
                mine.n_predictions + segment.n_predictions, mine.metrics.merge(segment.metrics))
        labels = self.labels.merge(other.labels) if self.labels is not None and other.labels is not None else self.labels
        fairness = (
            self.fairness.merge(other.fairness) if self.fairness is not None and other.fairness is not None
            else self.fairness
        )
        return PerformanceWindow(self.model, self.version, self.start, segments, labels, fairness,
                                 self.n_labeled + other.n_labeled)


def segment_key(name: str, value: Any) -> str:
    """The key of the segment where feature ``name`` has ``value``."""
    text = category(value)
    return f"{name}={'(missing)' if text is None else text}"


def segment_keys(spec: ModelSpec, values: tuple[Any, ...]) -> list[str]:
    """``all`` and the key of each segment a row with these segment values belongs to."""
    return [ALL, *(segment_key(name, value) for name, value in zip(spec.segments, values))]


def _segment(window: PerformanceWindow, spec: ModelSpec, key: str) -> Segment:
    """The window's segment ``key``, created empty when it has none."""
    segment = window.segments.get(key)
    if segment is None:
        segment = window.segments[key] = Segment(0, new_metric_accumulator(spec))
    return segment


class PerformanceProcessor:
    """Windowed performance of joined rows, re-emitted as late labels arrive."""

    def __init__(self, state: State, references: dict[str, ModelReference]):
        self.state = state
        self.references = references
        self._segments = {m: [r.spec.categorical_features.index(n) for n in r.spec.segments] for m, r in references.items()}
        self.late_labels = 0

    def watermark(self, model: str) -> int:
        return self.state.get(("watermark", model), 0)

    def _dropped(self, spec: ModelSpec, model: str, start: int) -> bool:
        return start + spec.window_ms + spec.label_ttl_ms <= self.watermark(model)

    def _window(self, model: str, version: str, start: int) -> PerformanceWindow:
        key = ("perf", model, version, start)
        window = self.state.get(key)
        if window is None:
            ref = self.references[model]
            fairness = (
                FairnessAccumulator(positive_label=ref.spec.positive_label)
                if ref.spec.protected_attribute and ref.spec.task == "binary" else None
            )
            labels = ref.label_profile.new_accumulator() if ref.label_profile is not None else None
            window = PerformanceWindow(model, version, start, {}, labels, fairness)
        return window

    def add_predictions(self, batch: PredictionColumns) -> None:
        """Count accepted (not late, not duplicate) predictions per window and segment."""
        if not len(batch):
            return
        model = batch.model
        spec = self.references[model].spec
        segments = [batch.categorical[:, j] for j in self._segments[model]]
        for (version, start, *values), idx in group_rows([batch.version, window_starts(batch.ts, spec.window_ms), *segments]):
            window = self._window(model, version, start)
            for key in segment_keys(spec, tuple(values)):
                _segment(window, spec, key).n_predictions += len(idx)
            self.state[("perf", model, version, start)] = window
        watermark = int(batch.ts.max())
        if watermark > self.watermark(model):
            self.state[("watermark", model)] = watermark

    def add_labeled(self, rows: list[LabeledRow]) -> None:
        """Accumulate joined rows into the window and segments of their prediction.

        A model's rows go to their segments' accumulators in one pass
        (:func:`~driftline.reference.update_metric_accumulators`): a batch brings a few rows to
        each of many (window, segment) pairs, and a pass per pair cost more than its rows.
        """
        if not rows:
            return
        window_ms = {model: ref.spec.window_ms for model, ref in self.references.items()}
        models = np.array([r.model for r in rows], dtype=object)
        ts = np.array([r.prediction_ts for r in rows], dtype=np.int64)
        spans = np.array([window_ms[m] for m in models.tolist()], dtype=np.int64) if len(window_ms) > 1 else next(iter(window_ms.values()))
        starts = ts - ts % spans
        versions = np.array([r.version for r in rows], dtype=object)
        by_model = [((models[0],), np.arange(len(rows)))] if len(window_ms) == 1 else group_rows([models])
        for (model,), of_model in by_model:
            spec = self.references[model].spec
            accumulators: list[MetricAccumulator] = []
            members: list[np.ndarray] = []
            groups: list[np.ndarray] = []
            touched: list[PerformanceWindow] = []
            fair: list[FairnessAccumulator] = []
            fair_members: list[np.ndarray] = []
            fair_ids: list[np.ndarray] = []
            # Segment values are category texts already (None: missing), then the protected attribute's.
            n_seg = len(spec.segments)
            carried = segment_matrix([rows[i] for i in of_model.tolist()], n_seg + bool(spec.protected_attribute))
            for (version, start), local in group_rows([versions[of_model], starts[of_model]]):
                if ("perf", model, version, start) not in self.state and self._dropped(spec, model, start):
                    # The join refuses labels older than the TTL, so this only guards the invariant
                    # that a dropped window is never rebuilt from a partial set of rows.
                    self.late_labels += len(local)
                    continue
                window = self._window(model, version, start)
                picked = of_model[local]
                members.append(picked)
                groups.append(np.full(len(picked), len(accumulators)))
                accumulators.append(_segment(window, spec, ALL).metrics)
                for k, name in enumerate(spec.segments):
                    codes, uniques = pd.factorize(carried[local, k], use_na_sentinel=False)
                    members.append(picked)
                    groups.append(codes + len(accumulators))
                    accumulators.extend(_segment(window, spec, segment_key(name, value)).metrics for value in uniques.tolist())
                self._add_window_rows(spec, window, [rows[i] for i in picked.tolist()])
                if window.fairness is not None:
                    fair_members.append(local)
                    fair_ids.append(np.full(len(local), len(fair)))
                    fair.append(window.fairness)
                touched.append(window)
            if accumulators:
                take = np.concatenate(members)
                chosen = [rows[i] for i in take.tolist()]
                update_metric_accumulators(
                    spec, accumulators, np.concatenate(groups), [r.label for r in chosen], [r.prediction for r in chosen],
                    [r.score for r in chosen], [r.probabilities for r in chosen],
                )
            if fair:
                local = np.concatenate(fair_members)
                chosen = [rows[i] for i in of_model[local].tolist()]
                FairnessAccumulator.update_groups(
                    fair, np.concatenate(fair_ids), categorical_values(carried[local, n_seg]),
                    np.array([r.label for r in chosen]), np.array([r.prediction for r in chosen]),
                )
            for window in touched:
                self.state[("perf", window.model, window.version, window.start)] = window

    def _add_window_rows(self, spec: ModelSpec, window: PerformanceWindow, rows: list[LabeledRow]) -> None:
        """What a window keeps of its joined rows besides the segments' metrics and fairness
        (both updated for all windows at once): the label profile (target drift) and the count."""
        if window.labels is not None:
            window.labels.update(np.array([r.label for r in rows], dtype=float if spec.task == "regression" else object))
        window.n_labeled += len(rows)
        window.dirty = True

    def emit_windows(self, force: bool = False) -> list[PerformanceWindow]:
        """Closed windows that changed since their last emission (all windows when ``force``).

        Windows older than the label TTL are dropped after their final emission.
        """
        emitted: list[PerformanceWindow] = []
        for key, window in sorted(
            ((k, w) for k, w in self.state.items() if k[0] == "perf"), key=lambda kv: (kv[1].start, kv[1].model, kv[1].version)
        ):
            spec = self.references[window.model].spec
            watermark = self.watermark(window.model)
            closed = force or is_closed(window.start, watermark, spec.window_ms, spec.allowed_lateness_ms)
            if closed and (not window.closed or window.dirty):
                emitted.append(window)
                window.closed, window.dirty = True, False
                self.state[key] = window
            if not force and self._dropped(spec, window.model, window.start):
                del self.state[key]
        return emitted

    def emit(self, force: bool = False) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Metric rows and target-drift rows of the windows :meth:`emit_windows` returns."""
        metric_rows: list[dict[str, Any]] = []
        drift_out: list[dict[str, Any]] = []
        for window in self.emit_windows(force):
            rows, target_rows = window_performance_rows(self.references[window.model], window)
            metric_rows.extend(rows)
            drift_out.extend(target_rows)
        return metric_rows, drift_out


def window_performance_rows(
    ref: ModelReference, window: PerformanceWindow
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Metric rows (per segment, with baseline tests and fairness) and target-drift rows of a window."""
    spec = ref.spec
    thresholds = {m.name: m for m in spec.metrics}
    end = window.start + spec.window_ms
    rows: list[dict[str, Any]] = []
    baseline_values = ref.baseline.metrics()
    testable = frozenset(supported_metrics(type(ref.baseline)))
    for segment_key in sorted(window.segments):
        segment = window.segments[segment_key]
        acc = segment.metrics
        values = acc.metrics()
        n = int(acc.n)
        coverage = n / segment.n_predictions if segment.n_predictions else math.nan
        named = {k: v for k, v in values.items() if k in _REPORTED}
        if spec.cost_matrix is not None and n:
            value = business_value(acc, _costs(spec))
            named["business_value"] = value.total
            named["business_value_per_prediction"] = value.per_prediction
        for metric, value in named.items():
            test = None
            if metric in testable and n:
                test = worse_than_baseline(metric, acc, ref.baseline)
            limit = thresholds.get(metric)
            threshold = None if limit is None else (limit.min if limit.min is not None else limit.max)
            breached = False
            if limit is not None and not math.isnan(value):
                breached = (limit.min is not None and value < limit.min) or (limit.max is not None and value > limit.max)
            rows.append({
                "model": window.model,
                "version": window.version,
                "segment": segment_key,
                "window_start": window.start,
                "window_end": end,
                "metric": metric,
                "value": float(value),
                "n": n,
                "n_predictions": int(segment.n_predictions),
                "label_coverage": float(coverage) if not math.isnan(coverage) else 0.0,
                "baseline": _as_row_value(baseline_values.get(metric)),
                "p_value": None if test is None else _as_row_value(test.p_value),
                "threshold": threshold,
                "breached": int(breached),
                "revision": window.n_labeled,
            })
    if window.fairness is not None and window.fairness.n:
        report = window.fairness.result()
        for metric, value in (("disparate_impact", report.min_disparate_impact), ("equal_opportunity_diff", report.equal_opportunity_difference)):
            all_segment = window.segments.get(ALL)
            rows.append({
                "model": window.model, "version": window.version, "segment": f"{spec.protected_attribute}=*",
                "window_start": window.start, "window_end": end, "metric": metric, "value": float(value),
                "n": int(window.fairness.n), "n_predictions": int(all_segment.n_predictions if all_segment else 0),
                "label_coverage": float(window.fairness.n / all_segment.n_predictions) if all_segment and all_segment.n_predictions else 0.0,
                "baseline": None, "p_value": None, "threshold": 0.8 if metric == "disparate_impact" else None,
                "breached": int(metric == "disparate_impact" and not math.isnan(value) and value < 0.8),
                "revision": window.n_labeled,
            })
    target_rows: list[dict[str, Any]] = []
    if window.labels is not None and ref.label_profile is not None and window.n_labeled:
        kind = "numeric" if spec.task == "regression" else "categorical"
        tests = {kind: spec.drift.numeric_tests if kind == "numeric" else spec.drift.categorical_tests}
        results = compare_many({"label": ref.label_profile}, {"label": window.labels}, tests)
        target_rows = drift_rows(spec, window.model, window.version, window.start, results, {"label": "label"}, window.n_labeled)
    return rows, target_rows


_REPORTED = frozenset(BINARY_METRICS + MULTICLASS_METRICS + REGRESSION_METRICS)


def _costs(spec: ModelSpec) -> dict[str, float]:
    cm = spec.cost_matrix
    assert cm is not None
    return {"tp": cm.tp, "fp": cm.fp, "tn": cm.tn, "fn": cm.fn}
