"""The reference a model is compared with: profiles and baselines built once from its data.

The reference file (CSV or Parquet) holds the training or test data: the features, the model's
predictions and scores, and the labels. From it come one drift profile per feature (quantile
bins, category counts, the sorted values for exact tests), profiles of the prediction and of
the label (prediction and target drift), and a metric accumulator that is the performance
baseline windows are tested against.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
import pandas as pd

from driftline.config import ModelSpec, SpecError
from driftline.monitors import CategoricalProfile, NumericProfile
from driftline.monitors.accumulators import category
from driftline.monitors.metrics import BinaryAccumulator, MulticlassAccumulator, RegressionAccumulator

Profile = NumericProfile | CategoricalProfile
MetricAccumulator = BinaryAccumulator | MulticlassAccumulator | RegressionAccumulator


def categorical_values(values: Any) -> np.ndarray:
    """:func:`category` of every value, as an object array."""
    memo: dict[tuple[type, Any], str | None] = {}
    converted = []
    for v in values:
        if type(v) is str or v is None:
            converted.append(v)
            continue
        key = (type(v), v)
        text = memo.get(key)
        if text is None:
            text = memo[key] = category(v)
        converted.append(text)
    out = np.empty(len(converted), dtype=object)
    out[:] = converted
    return out


def new_metric_accumulator(spec: ModelSpec) -> MetricAccumulator:
    if spec.task == "binary":
        return BinaryAccumulator(positive_label=spec.positive_label)
    if spec.task == "multiclass":
        return MulticlassAccumulator(classes=spec.class_labels)
    return RegressionAccumulator()


def update_metric_accumulators(
    spec: ModelSpec,
    accumulators: Sequence[MetricAccumulator],
    groups: np.ndarray | None,
    labels: Any,
    predictions: Any,
    scores: Any,
    probabilities: Any = None,
) -> None:
    """Feed joined rows to metric accumulators, choosing the inputs the task needs.

    Row ``i`` goes to ``accumulators[groups[i]]`` (all rows to the first for ``None``), in one
    pass (see :meth:`~driftline.monitors.metrics.BinaryAccumulator.update_groups`). ``scores``
    and ``probabilities`` hold ``None`` for a row without them: binary rows without a score count
    for the confusion-based metrics only; multiclass rows with class probabilities also count
    for log loss and Brier.
    """
    n = len(labels)
    ids = np.zeros(n, dtype=np.intp) if groups is None else groups
    if spec.task == "binary":
        # The confusion counts come from the prediction the system made; the score feeds the
        # ranking and probability metrics (ROC AUC, log loss, Brier) only.
        y_true, y_pred, score = np.asarray(labels), np.asarray(predictions), np.asarray(scores, dtype=object)
        scored = np.fromiter((s is not None for s in score), dtype=bool, count=n)
        if scored.all():
            BinaryAccumulator.update_groups(accumulators, ids, y_true, score.astype(float), y_pred=y_pred)
            return
        if scored.any():
            BinaryAccumulator.update_groups(
                accumulators, ids[scored], y_true[scored], score[scored].astype(float), y_pred=y_pred[scored]
            )
        unscored = ~scored
        BinaryAccumulator.update_groups(accumulators, ids[unscored], y_true[unscored], y_pred=y_pred[unscored])
    elif spec.task == "multiclass":
        classes = [str(c) for c in spec.class_labels]
        y_true, y_pred = np.asarray(labels, dtype=object), np.asarray(predictions, dtype=object)
        rows = [None] * n if probabilities is None else list(probabilities)
        with_proba = np.fromiter((bool(p) for p in rows), dtype=bool, count=n)
        if with_proba.any():
            matrix = np.array([[p.get(c, 0.0) for c in classes] for p in rows if p], dtype=float)
            MulticlassAccumulator.update_groups(
                accumulators, ids[with_proba], y_true[with_proba], y_pred[with_proba], proba=matrix
            )
        if not with_proba.all():
            without = ~with_proba
            MulticlassAccumulator.update_groups(accumulators, ids[without], y_true[without], y_pred[without])
    else:
        RegressionAccumulator.update_groups(
            accumulators, ids, np.asarray(labels, dtype=float), np.asarray(predictions, dtype=float)
        )


# The parts of a spec and its reference that shape the state a stream keeps for the model
# (pending joins, open windows and their accumulators), with the spec fields each comes from.
STATE_PARTS = {
    "task": "task, classes, positive_label",
    "features": "features",
    "segments": "segments",
    "protected_attribute": "protected_attribute",
    "window": "window",
    "profiles": "numeric bins (reference data, drift.bins), drift.reservoir_size, drift.prediction, drift.label",
    "domain_sample": "drift.domain_classifier, drift.domain_sample, the order of features",
}


@dataclass
class ModelReference:
    """Everything a model's windows are compared against."""

    spec: ModelSpec
    profiles: dict[str, Profile]
    prediction_profiles: dict[str, Profile]
    label_profile: Profile | None
    baseline: MetricAccumulator
    n_rows: int
    domain_reference: pd.DataFrame | None = None

    def state_signature(self) -> dict[str, str]:
        """Each of :data:`STATE_PARTS` as canonical JSON: state built under one signature cannot
        be carried on under another (a window's accumulators are binned on the reference's
        quantiles, its joined rows hold the segments' and the protected attribute's values by
        position). Thresholds, alert rules, metrics, the cost matrix, the FDR level, lateness and
        the label TTL are read when rows are emitted and may change freely.
        """
        spec = self.spec
        profiles = [*self.profiles.values(), *self.prediction_profiles.values()]
        if self.label_profile is not None:
            profiles.append(self.label_profile)
        # Typed: a class 1 and a class "1" are different labels to the join and the metrics.
        parts: dict[str, Any] = {
            "task": [spec.task, [] if spec.task == "regression" else list(spec.class_labels),
                     spec.positive_label if spec.task == "binary" else None],
            "features": sorted([f.name, f.kind] for f in spec.features),
            "segments": spec.segments,
            "protected_attribute": spec.protected_attribute,
            "window": spec.window_ms,
            "profiles": sorted(
                [p.name, p.kind, p.edges.tolist(), p.reservoir_size, p.seed] if isinstance(p, NumericProfile)
                else [p.name, p.kind]
                for p in profiles
            ),
            # The domain classifier's row sample holds the features in the spec's order.
            "domain_sample": [spec.drift.domain_sample, [f.name for f in spec.features]] if spec.drift.domain_classifier else None,
        }
        return {name: msgspec.json.encode(value).decode() for name, value in parts.items()}


def _read(spec: ModelSpec) -> pd.DataFrame:
    path = spec.reference.path
    try:
        if spec.reference.format == "csv":
            return pd.read_csv(path)
        return pd.read_parquet(path)
    except FileNotFoundError:
        raise SpecError(path, "reference.path", "file not found") from None
    except Exception as error:  # noqa: BLE001 - any reader error means the file is unusable
        raise SpecError(path, "reference.path", f"cannot read {spec.reference.format}: {error}") from None


def fit_profile(name: str, kind: str, values: Any, spec: ModelSpec) -> Profile:
    if kind == "numeric":
        return NumericProfile.fit(
            np.asarray(pd.to_numeric(pd.Series(values), errors="coerce"), dtype=float),
            n_bins=spec.drift.bins,
            reservoir_size=spec.drift.reservoir_size,
            name=name,
        )
    return CategoricalProfile.fit(values, name=name)


def prediction_kinds(spec: ModelSpec, has_score: bool) -> dict[str, str]:
    """The prediction columns watched for prediction drift, and how each is tested."""
    if spec.task == "regression":
        return {"prediction": "numeric"}
    kinds = {"prediction": "categorical"}
    if spec.task == "binary" and has_score:
        kinds["score"] = "numeric"
    return kinds


def _as_classes(spec: ModelSpec, data: pd.DataFrame, column: str) -> list[Any]:
    """A label or prediction column as the spec's class labels (a CSV may read ``"1"`` as 1,
    Parquet may hold booleans); a value that is no class fails naming the column."""
    values = data[column].tolist()
    if spec.task == "regression":
        return values
    lookup = {category(c): c for c in spec.class_labels}
    out: list[Any] = []
    for value in values:
        key = category(value)
        if key is None:
            out.append(None)
        elif key in lookup:
            out.append(lookup[key])
        else:
            raise SpecError(spec.reference.path, f"reference.{column}",
                            f"expected one of the classes {spec.class_labels}, got {value!r}")
    return out


def load_reference(spec: ModelSpec, frame: pd.DataFrame | None = None) -> ModelReference:
    """Build a model's reference from its spec (reads the reference file unless ``frame``)."""
    data = _read(spec) if frame is None else frame
    where = spec.reference.path
    needed = [f.name for f in spec.features] + [spec.reference.prediction_column, spec.reference.label_column]
    missing = [c for c in needed if c not in data.columns]
    if missing:
        raise SpecError(where, "reference", f"columns {missing} are missing from the reference data")
    if len(data) < 2:
        raise SpecError(where, "reference", f"expected at least 2 rows, got {len(data)}")
    profiles = {f.name: fit_profile(f.name, f.kind, data[f.name].to_numpy(), spec) for f in spec.features}
    score_col = spec.reference.score_column
    has_score = bool(score_col) and score_col in data.columns
    labels = _as_classes(spec, data, spec.reference.label_column)
    predictions = _as_classes(spec, data, spec.reference.prediction_column)
    outputs = {"prediction": predictions, "score": data[score_col].tolist() if has_score else None}
    prediction_profiles = {
        name: fit_profile(name, kind, np.asarray(outputs[name], dtype=object if kind == "categorical" else float), spec)
        for name, kind in prediction_kinds(spec, has_score).items()
        if spec.drift.prediction
    }
    label_kind = "numeric" if spec.task == "regression" else "categorical"
    label_profile = (
        fit_profile("label", label_kind, np.asarray(labels, dtype=object if label_kind == "categorical" else float), spec)
        if spec.drift.label else None
    )
    baseline = new_metric_accumulator(spec)
    scores = outputs["score"] if has_score else [None] * len(data)
    update_metric_accumulators(spec, [baseline], None, labels, predictions, scores)
    domain_reference = None
    if spec.drift.domain_classifier:
        sample = data.sample(n=min(len(data), spec.drift.domain_sample), random_state=0)
        domain_reference = feature_frame(
            spec,
            sample[spec.numeric_features].to_numpy(dtype=float, na_value=np.nan),
            sample[spec.categorical_features].to_numpy(dtype=object),
        )
    return ModelReference(spec, profiles, prediction_profiles, label_profile, baseline, len(data), domain_reference)


def feature_frame(spec: ModelSpec, numeric: np.ndarray, categorical: np.ndarray) -> pd.DataFrame:
    """Rows of features as a DataFrame, categories normalised as the accumulators count them."""
    frame = pd.DataFrame(numeric.reshape(len(numeric), -1), columns=spec.numeric_features)
    for j, name in enumerate(spec.categorical_features):
        frame[name] = categorical_values(categorical[:, j])
    return frame
