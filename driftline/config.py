"""The model spec: one YAML document per monitored model.

A spec names the task, the features and their kind, the reference data, the event-time window,
how late events and labels may be, the segments, the drift tests and the thresholds. A wrong spec
fails at start with a :class:`SpecError` naming the file, the field path and what was expected.

Examples
--------
>>> spec = parse_spec('''
... model: credit
... task: binary
... features:
...   - {name: income, kind: numeric}
...   - {name: region, kind: categorical}
... reference: {path: reference.parquet}
... window: 1d
... segments: [region]
... ''')
>>> spec.window_ms, spec.label_ttl_ms // 86_400_000, spec.class_labels
(86400000, 30, [0, 1])
>>> parse_spec("model: credit\\ntask: ranking\\nfeatures: []\\nreference: {path: r.csv}")
Traceback (most recent call last):
...
driftline.config.SpecError: <spec>: task: Invalid enum value 'ranking'; expected one of binary, multiclass, regression

"""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml

NUMERIC_TESTS = ("ks", "psi", "wasserstein", "js")
CATEGORICAL_TESTS = ("chi2", "psi", "js")
BINARY_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "brier")
MULTICLASS_METRICS = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "log_loss", "brier")
REGRESSION_METRICS = ("mae", "rmse", "mape", "r2")
RESERVED_NAMES = frozenset({"prediction", "score", "label"})
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "mae", "rmse", "mape"})

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
_TEXT = re.compile(r"^[^\x00-\x1f\x7f]{1,256}$")

HYPOTHESIS_TESTS = {"numeric": "ks", "categorical": "chi2"}
BUSINESS_METRICS = ("business_value", "business_value_per_prediction")
FAIRNESS_METRICS = ("disparate_impact", "equal_opportunity_diff")
SEVERITIES = ("info", "warning", "critical")
OPS = ("<", "<=", ">", ">=")
DEFAULT_METRIC_MIN_SAMPLES = 100


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class SpecError(ValueError):
    """A spec that cannot be used: names the file, the field path and what was expected."""

    def __init__(self, source: str, path: str, message: str):
        super().__init__(f"{source}: {path}: {message}" if path else f"{source}: {message}")
        self.source, self.path, self.message = source, path, message


@functools.lru_cache(maxsize=1024)
def parse_duration(value: str | int, field: str) -> int:
    """Milliseconds in a duration such as ``"90s"``, ``"15m"``, ``"1h"``, ``"7d"`` (ints are ms).

    >>> parse_duration("1.5h", "window")
    5400000
    """
    if isinstance(value, bool):
        raise ValueError(f"{field} must be a duration like '1h' or '30d', got {value!r}")
    if isinstance(value, int):
        ms = value
    else:
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(f"{field} must be a duration like '500ms', '90s', '15m', '1h', '7d' or '2w', got {value!r}")
        ms = int(float(match.group(1)) * _UNIT_MS[match.group(2)])
    if ms <= 0:
        raise ValueError(f"{field} must be a positive duration, got {value!r}")
    return ms


class _Spec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class Feature(_Spec):
    name: str
    kind: Literal["numeric", "categorical"]

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("name must be a non-empty string")


class Reference(_Spec):
    """Where the reference (training/test) data is and which columns hold what."""

    path: str
    format: Literal["csv", "parquet"] | None = None
    prediction_column: str = "prediction"
    score_column: str | None = "score"
    label_column: str = "label"

    def __post_init__(self) -> None:
        if self.format is None:
            suffix = Path(self.path).suffix.lower()
            if suffix not in (".csv", ".parquet", ".pq"):
                raise ValueError(f"path must end in .csv or .parquet (or set format), got {self.path!r}")
            self.format = "csv" if suffix == ".csv" else "parquet"


class Drift(_Spec):
    """Drift tests per feature kind, binning, the FDR level and the effect-size thresholds.

    A test flags drift when its Benjamini–Hochberg adjusted p-value is at most ``fdr`` (tests
    with a p-value), its effect size reaches the threshold, and the window holds at least
    ``min_samples`` values: an effect must exist *and* matter. The sample floor matters for the
    effect-only tests (PSI, Wasserstein, JS), whose estimates are biased upwards in small samples.
    """

    numeric_tests: list[Literal["ks", "psi", "wasserstein", "js"]] = msgspec.field(
        default_factory=lambda: ["ks", "psi", "wasserstein"]
    )
    categorical_tests: list[Literal["chi2", "psi", "js"]] = msgspec.field(
        default_factory=lambda: ["chi2", "psi", "js"]
    )
    bins: int = 10
    reservoir_size: int = 10_000
    fdr: float = 0.05
    min_samples: int = 1000
    thresholds: dict[Literal["ks", "chi2", "psi", "wasserstein", "js", "domain_auc"], float] = msgspec.field(
        default_factory=dict
    )
    prediction: bool = True
    label: bool = True
    domain_classifier: bool = False
    domain_sample: int = 2_000

    def __post_init__(self) -> None:
        if self.bins < 2:
            raise ValueError(f"bins must be >= 2, got {self.bins}")
        if self.reservoir_size < 100:
            raise ValueError(f"reservoir_size must be >= 100, got {self.reservoir_size}")
        if self.domain_sample < 100:
            raise ValueError(f"domain_sample must be >= 100, got {self.domain_sample}")
        if self.min_samples < 1:
            raise ValueError(f"min_samples must be >= 1, got {self.min_samples}")
        if not 0.0 < self.fdr < 1.0:
            raise ValueError(f"fdr must be in (0, 1), got {self.fdr}")
        for test, value in self.thresholds.items():
            if value < 0:
                raise ValueError(f"thresholds.{test} must be >= 0, got {value}")
        self.thresholds = {**DEFAULT_EFFECT_THRESHOLDS, **self.thresholds}


DEFAULT_EFFECT_THRESHOLDS = {"ks": 0.1, "chi2": 0.1, "psi": 0.2, "wasserstein": 0.1, "js": 0.1, "domain_auc": 0.6}


class MetricThreshold(_Spec):
    """A warning threshold on a performance metric (``min`` for scores, ``max`` for losses)."""

    name: str
    min: float | None = None
    max: float | None = None

    def __post_init__(self) -> None:
        if self.min is None and self.max is None:
            raise ValueError(f"metric {self.name!r} needs min or max")


class CostMatrix(_Spec):
    """Business value of each outcome of a binary decision (negative for a cost)."""

    tp: float = 0.0
    fp: float = 0.0
    tn: float = 0.0
    fn: float = 0.0


class EventLimits(_Spec):
    max_event_bytes: int = 64 * 1024
    max_future: str = "5m"

    def __post_init__(self) -> None:
        if self.max_event_bytes < 64:
            raise ValueError(f"max_event_bytes must be >= 64, got {self.max_event_bytes}")
        parse_duration(self.max_future, "max_future")


class Threshold(_Spec):
    """One side of an alert condition: ``value op threshold``, e.g. ``{op: ">=", value: 0.2}``."""

    op: Literal["<", "<=", ">", ">="]
    value: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.value):
            raise ValueError(f"value must be a finite number, got {self.value!r}")

    def met(self, x: float) -> bool:
        """Whether ``x op value`` holds (never for NaN).

        >>> Threshold(op=">=", value=0.2).met(0.2), Threshold(op="<", value=0.65).met(float("nan"))
        (True, False)
        """
        if self.op == "<":
            return x < self.value
        if self.op == "<=":
            return x <= self.value
        if self.op == ">":
            return x > self.value
        return x >= self.value

    def __str__(self) -> str:
        return f"{self.op} {self.value:g}"


class Condition(_Spec):
    """Fire and clear thresholds (hysteresis). ``clear`` defaults to the complement of ``fire``.

    The clear region must lie on the other side of the fire region and must not overlap it:
    between the two an open alert stays open and a closed one stays closed.
    """

    fire: Threshold
    clear: Threshold | None = None

    def __post_init__(self) -> None:
        upward = self.fire.op in (">", ">=")
        if self.clear is None:
            complement = {">": "<=", ">=": "<", "<": ">=", "<=": ">"}[self.fire.op]
            self.clear = Threshold(op=complement, value=self.fire.value)  # type: ignore[arg-type]
            return
        clear = self.clear
        wrong_side = (clear.op in (">", ">=")) == upward or (
            clear.value > self.fire.value if upward else clear.value < self.fire.value
        )
        overlap = clear.value == self.fire.value and clear.op.endswith("=") and self.fire.op.endswith("=")
        if wrong_side or overlap:
            need = "< or <= a value at most" if upward else "> or >= a value at least"
            raise ValueError(
                f"clear must be on the other side of fire without overlapping it: fire {self.fire} needs clear "
                f"{need} {self.fire.value:g}, got clear {clear}"
            )


class EffectGate(_Spec):
    """An effect size that must be reached beside the p-value, e.g. ``{test: psi, min: 0.2}``."""

    test: Literal["ks", "chi2", "psi", "wasserstein", "js"]
    min: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.min) or self.min < 0:
            raise ValueError(f"min must be a finite number >= 0, got {self.min!r}")


class AlertRule(_Spec):
    """One alert rule: what it watches, when it fires and clears, how loud it is.

    ``on: drift`` rules watch a drift ``test`` of a ``feature`` (``"*"`` or omitted: any input
    feature, one alert for all of them; ``prediction``, ``score`` or ``label`` for prediction
    and target drift); ``on: metric`` rules watch a ``metric`` of a ``segment`` (``"all"`` by
    default, ``"*"`` for any segment). See ``docs/config.md``.
    """

    name: str
    on: Literal["drift", "metric"]
    test: Literal["ks", "chi2", "psi", "wasserstein", "js", "domain_auc"] | None = None
    metric: str | None = None
    feature: str | None = None
    segment: str | None = None
    condition: Condition | None = None
    p_value: float | None = None
    effect: EffectGate | None = None
    for_windows: int = 1
    min_samples: int | None = None
    min_label_coverage: float | None = None
    severity: Literal["info", "warning", "critical"] = "warning"
    cooldown: str | int | None = None
    retrain: bool = False

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"name must be 1-128 characters of letters, digits, '_', '.', '-', got {_show(self.name)}")
        drift = self.on == "drift"
        if drift and self.test is None:
            raise ValueError("test must be set for a drift rule (ks, chi2, psi, wasserstein, js or domain_auc)")
        if drift and self.metric is not None:
            raise ValueError(f"metric must not be set for a drift rule (name the drift test with 'test'), got {_show(self.metric)}")
        if not drift and self.metric is None:
            raise ValueError("metric must be set for a metric rule, e.g. roc_auc or accuracy")
        if not drift and self.test is not None:
            raise ValueError(f"test must not be set for a metric rule (name the metric with 'metric'), got {_show(self.test)}")
        for field, text in (("metric", self.metric), ("feature", self.feature), ("segment", self.segment)):
            if text is not None and not _TEXT.match(text):
                raise ValueError(f"{field} must be 1-256 printable characters, got {_show(text)}")
        if drift and self.segment is not None:
            raise ValueError("segment must not be set for a drift rule (drift is per feature)")
        if not drift and self.feature is not None:
            raise ValueError("feature must not be set for a metric rule (metrics are per segment)")
        if not drift and self.effect is not None:
            raise ValueError("effect must not be set for a metric rule (it gates drift tests)")
        if drift and self.min_label_coverage is not None:
            raise ValueError("min_label_coverage must not be set for a drift rule (drift needs no labels)")
        if not drift and self.condition is None:
            raise ValueError("condition must be set for a metric rule: {fire: {op, value}, clear: {op, value}}")
        if self.p_value is not None and not 0.0 < self.p_value < 1.0:
            raise ValueError(f"p_value must be in (0, 1), got {self.p_value!r}")
        if isinstance(self.for_windows, bool) or not 1 <= self.for_windows <= 1000:
            raise ValueError(f"for_windows must be an int in [1, 1000], got {self.for_windows!r}")
        if self.min_samples is not None and self.min_samples < 1:
            raise ValueError(f"min_samples must be >= 1, got {self.min_samples!r}")
        if self.min_label_coverage is not None and not 0.0 <= self.min_label_coverage <= 1.0:
            raise ValueError(f"min_label_coverage must be in [0, 1], got {self.min_label_coverage!r}")
        if self.cooldown is not None:
            parse_duration(self.cooldown, "cooldown")

    @property
    def cooldown_ms(self) -> int:
        return 0 if self.cooldown is None else parse_duration(self.cooldown, "cooldown")

    @property
    def watched(self) -> str:
        """The test or metric the rule compares with its thresholds."""
        return self.test if self.on == "drift" else self.metric  # type: ignore[return-value]

    @property
    def subject(self) -> str:
        """The feature (drift) or segment (metric) the rule watches; ``"*"`` for any."""
        if self.on == "drift":
            return self.feature or "*"
        return self.segment or "all"


class ModelSpec(_Spec):
    """One monitored model. See ``docs/config.md`` for every field."""

    model: str
    task: Literal["binary", "multiclass", "regression"]
    features: list[Feature]
    reference: Reference
    classes: list[int | str] | None = None
    positive_label: int | str = 1
    window: str = "1h"
    allowed_lateness: str = "5m"
    label_ttl: str = "30d"
    segments: list[str] = msgspec.field(default_factory=list)
    drift: Drift = msgspec.field(default_factory=Drift)
    metrics: list[MetricThreshold] = msgspec.field(default_factory=list)
    cost_matrix: CostMatrix | None = None
    protected_attribute: str | None = None
    limits: EventLimits = msgspec.field(default_factory=EventLimits)
    alerts: list[AlertRule] | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.model):
            raise ValueError(f"model must be 1-128 characters of letters, digits, '_', '.', '-', got {self.model!r}")
        parse_duration(self.window, "window")
        parse_duration(self.allowed_lateness, "allowed_lateness")
        parse_duration(self.label_ttl, "label_ttl")

    @property
    def window_ms(self) -> int:
        return parse_duration(self.window, "window")

    @property
    def allowed_lateness_ms(self) -> int:
        return parse_duration(self.allowed_lateness, "allowed_lateness")

    @property
    def label_ttl_ms(self) -> int:
        return parse_duration(self.label_ttl, "label_ttl")

    @property
    def max_future_ms(self) -> int:
        return parse_duration(self.limits.max_future, "limits.max_future")

    @property
    def class_labels(self) -> list[int | str]:
        """The classes a prediction or label may take (binary default ``[0, 1]``)."""
        if self.classes is not None:
            return list(self.classes)
        return [0, 1] if self.task == "binary" else []

    @property
    def numeric_features(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "numeric"]

    @property
    def categorical_features(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "categorical"]

    @property
    def alert_rules(self) -> list[AlertRule]:
        """The rules in force: ``alerts`` with defaults filled in, or :func:`default_alert_rules`."""
        return alert_rules(self)


def _check_semantics(spec: ModelSpec) -> list[tuple[str, str]]:
    """Cross-field rules msgspec's types cannot state; returns (path, message) pairs."""
    problems: list[tuple[str, str]] = []
    names = [f.name for f in spec.features]
    kinds = {f.name: f.kind for f in spec.features}
    if not names:
        problems.append(("features", "expected at least one feature"))
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            problems.append((f"features[{i}].name", f"duplicate feature {name!r}"))
        if name in RESERVED_NAMES:
            problems.append((f"features[{i}].name", f"{name!r} is reserved for the model's output; rename the feature"))
        seen.add(name)
    if spec.task in ("binary", "multiclass"):
        labels = spec.class_labels
        if spec.task == "multiclass" and len(labels) < 3:
            problems.append(("classes", "multiclass needs a list of at least 3 class labels"))
        if spec.task == "binary" and len(labels) != 2:
            problems.append(("classes", f"binary needs exactly 2 class labels, got {labels}"))
        if len(set(map(type, labels))) > 1:
            problems.append(("classes", f"class labels must be all int or all str, got {labels}"))
        if spec.task == "binary" and spec.positive_label not in labels:
            problems.append(("positive_label", f"expected one of {labels}, got {spec.positive_label!r}"))
    elif spec.classes is not None:
        problems.append(("classes", "regression models have no classes"))
    for i, segment in enumerate(spec.segments):
        if kinds.get(segment) != "categorical":
            problems.append((f"segments[{i}]", f"expected a categorical feature of this spec, got {segment!r}"))
    if spec.protected_attribute is not None and kinds.get(spec.protected_attribute) != "categorical":
        problems.append(
            ("protected_attribute", f"expected a categorical feature of this spec, got {spec.protected_attribute!r}")
        )
    allowed = {"binary": BINARY_METRICS, "multiclass": MULTICLASS_METRICS, "regression": REGRESSION_METRICS}[spec.task]
    for i, metric in enumerate(spec.metrics):
        if metric.name not in allowed:
            problems.append((f"metrics[{i}].name", f"expected one of {', '.join(allowed)} for task {spec.task}, got {metric.name!r}"))
    if spec.cost_matrix is not None and spec.task != "binary":
        problems.append(("cost_matrix", "a tp/fp/tn/fn cost matrix applies to binary models only"))
    problems.extend(_check_alerts(spec))
    if spec.allowed_lateness_ms > spec.label_ttl_ms:
        problems.append(("allowed_lateness", "must not exceed label_ttl"))
    if spec.label_ttl_ms < spec.window_ms + spec.allowed_lateness_ms:
        problems.append((
            "label_ttl",
            f"must be at least window + allowed_lateness ({spec.window} + {spec.allowed_lateness}): the join "
            "remembers event ids for label_ttl to reject redelivered events while their window is open",
        ))
    return problems


def metric_names(spec: ModelSpec) -> tuple[str, ...]:
    """Every metric the pipeline emits for this spec (what a metric rule may watch)."""
    names = {"binary": BINARY_METRICS, "multiclass": MULTICLASS_METRICS, "regression": REGRESSION_METRICS}[spec.task]
    if spec.cost_matrix is not None and spec.task == "binary":
        names = names + BUSINESS_METRICS
    if spec.protected_attribute is not None and spec.task == "binary":
        names = names + FAIRNESS_METRICS
    return names


def _drift_kinds(spec: ModelSpec, feature: str) -> list[str]:
    """Feature kinds a drift rule's feature covers (``[]`` for prediction, score and label)."""
    kinds = {f.name: f.kind for f in spec.features}
    if feature == "*":
        return sorted(set(kinds.values()))
    return [kinds[feature]] if feature in kinds else []


def _check_alerts(spec: ModelSpec) -> list[tuple[str, str]]:
    if not spec.alerts:
        return []
    problems: list[tuple[str, str]] = []
    tests = {"numeric": spec.drift.numeric_tests, "categorical": spec.drift.categorical_tests}
    configured = sorted(set(spec.drift.numeric_tests) | set(spec.drift.categorical_tests)) + (
        ["domain_auc"] if spec.drift.domain_classifier else []
    )
    outputs = (["prediction", "score"] if spec.drift.prediction else []) + (["label"] if spec.drift.label else [])
    features = [f.name for f in spec.features]
    metrics = metric_names(spec)
    seen: set[str] = set()
    for i, rule in enumerate(spec.alerts):
        at = f"alerts[{i}]"
        if rule.name in seen:
            problems.append((f"{at}.name", f"duplicate alert rule name {rule.name!r}"))
        seen.add(rule.name)
        if rule.on == "metric":
            if rule.metric not in metrics:
                problems.append((f"{at}.metric", f"expected one of {', '.join(metrics)} for this spec, got {_show(rule.metric)}"))
            fairness = rule.metric in FAIRNESS_METRICS
            segment = f"{spec.protected_attribute}=*" if fairness and rule.segment is None else rule.subject
            name, _, value = segment.partition("=")
            valid = (
                segment == f"{spec.protected_attribute}=*" if fairness
                else segment in ("all", "*") or (name in spec.segments and value != "")
            )
            if not valid:
                expected = (
                    f"'{spec.protected_attribute}=*' (fairness metrics are over the protected attribute)" if fairness
                    else "'all', '*' or '<segment>=<value>' with a segment of this spec"
                    + (f" ({', '.join(spec.segments)})" if spec.segments else " (it has none)")
                )
                problems.append((f"{at}.segment", f"expected {expected}, got {_show(segment)}"))
            continue
        feature = rule.subject
        if rule.test not in configured:
            problems.append((f"{at}.test", f"expected a drift test this spec runs ({', '.join(configured)}), got {rule.test!r}"))
            continue
        if rule.test == "domain_auc":
            if feature != "*":
                problems.append((f"{at}.feature", f"domain_auc is one test over all features: omit feature or use '*', got {_show(feature)}"))
            if rule.p_value is not None:
                problems.append((f"{at}.p_value", "domain_auc has no p-value; use condition on the AUC"))
            if rule.effect is not None:
                problems.append((f"{at}.effect", "domain_auc is an effect size itself; use condition on the AUC"))
            continue
        if feature != "*" and feature not in features and feature not in outputs:
            choices = ", ".join(["*"] + features + outputs)
            problems.append((f"{at}.feature", f"expected one of {_show(choices)[1:-1]}, got {_show(feature)}"))
            continue
        kinds = _drift_kinds(spec, feature)
        covered = [k for k in kinds if rule.test in tests[k]]
        if kinds and not covered:
            problems.append((f"{at}.test", f"{rule.test!r} is not run on {kinds[0]} feature {feature!r} (drift.{kinds[0]}_tests)"))
            continue
        if rule.p_value is not None and rule.test not in HYPOTHESIS_TESTS.values():
            missing = [k for k in covered if HYPOTHESIS_TESTS[k] not in tests[k]]
            if missing:
                problems.append((
                    f"{at}.p_value",
                    f"{rule.test} has no p-value, so p_value applies to the feature's {HYPOTHESIS_TESTS[missing[0]]} test, "
                    f"which drift.{missing[0]}_tests does not run",
                ))
        if rule.effect is not None and any(rule.effect.test not in tests[k] for k in covered):
            k = next(k for k in covered if rule.effect.test not in tests[k])
            problems.append((f"{at}.effect.test", f"{rule.effect.test!r} is not among drift.{k}_tests, so it is never computed"))
    return problems


def default_alert_rules(spec: ModelSpec) -> list[AlertRule]:
    """The rules in force when a spec has no ``alerts`` key.

    * ``input_drift``: one alert for the input features, firing when some feature's PSI reaches
      ``drift.thresholds.psi`` *and* its KS (numeric) or chi-squared (categorical) test has a
      Benjamini–Hochberg adjusted p-value of at most ``drift.fdr`` (on at least
      ``drift.min_samples`` values); clearing when every feature's PSI is below half the
      threshold. Left out when PSI or the significance test is not run on some feature kind.
    * ``<metric>_min`` / ``<metric>_max`` for each ``metrics`` threshold: fires when the metric of
      segment ``all`` is past it on at least 100 labeled rows, clears when it is back.

    Examples
    --------
    >>> spec = parse_spec({"model": "m", "task": "binary", "features": [{"name": "x", "kind": "numeric"}],
    ...                    "reference": {"path": "r.csv"}, "metrics": [{"name": "roc_auc", "min": 0.7}]})
    >>> [(r.name, r.watched, str(r.condition.fire), str(r.condition.clear)) for r in default_alert_rules(spec)]
    [('input_drift', 'psi', '>= 0.2', '< 0.1'), ('roc_auc_min', 'roc_auc', '< 0.7', '>= 0.7')]
    """
    rules: list[AlertRule] = []
    tests = {"numeric": spec.drift.numeric_tests, "categorical": spec.drift.categorical_tests}
    kinds = {f.kind for f in spec.features}
    if all("psi" in tests[k] and HYPOTHESIS_TESTS[k] in tests[k] for k in kinds):
        psi = spec.drift.thresholds["psi"]
        rules.append(AlertRule(
            name="input_drift", on="drift", test="psi",
            condition=Condition(fire=Threshold(op=">=", value=psi), clear=Threshold(op="<", value=psi / 2)),
            p_value=spec.drift.fdr, min_samples=spec.drift.min_samples,
        ))
    for limit in spec.metrics:
        for bound, fire, clear in (("min", "<", ">="), ("max", ">", "<=")):
            value = getattr(limit, bound)
            if value is not None:
                rules.append(AlertRule(
                    name=f"{limit.name}_{bound}", on="metric", metric=limit.name,
                    condition=Condition(fire=Threshold(op=fire, value=value), clear=Threshold(op=clear, value=value)),
                    min_samples=DEFAULT_METRIC_MIN_SAMPLES,
                ))
    return rules


def alert_rules(spec: ModelSpec) -> list[AlertRule]:
    """The spec's rules with every default resolved (or :func:`default_alert_rules` when it has
    no ``alerts`` key): feature ``*``, segment ``all``, the drift condition from
    ``drift.thresholds``, ``min_samples`` from ``drift.min_samples`` (drift) or 100 (metrics),
    ``min_label_coverage`` 0; fairness metrics default to segment ``<protected_attribute>=*``."""
    resolved = []
    for rule in default_alert_rules(spec) if spec.alerts is None else spec.alerts:
        changes: dict[str, Any] = {}
        if rule.on == "drift":
            changes["feature"] = rule.subject
            if rule.condition is None:
                threshold = spec.drift.thresholds[rule.test]  # type: ignore[index]
                changes["condition"] = Condition(fire=Threshold(op=">=", value=threshold))
            if rule.min_samples is None:
                changes["min_samples"] = spec.drift.min_samples
        else:
            fairness = rule.metric in FAIRNESS_METRICS and rule.segment is None
            changes["segment"] = f"{spec.protected_attribute}=*" if fairness else rule.subject
            if rule.min_samples is None:
                changes["min_samples"] = DEFAULT_METRIC_MIN_SAMPLES
            if rule.min_label_coverage is None:
                changes["min_label_coverage"] = 0.0
        resolved.append(msgspec.structs.replace(rule, **changes))
    return resolved


_ENUM = re.compile(r"^Invalid enum value (?P<got>.+)$")


def _explain(error: msgspec.ValidationError) -> tuple[str, str]:
    text = str(error)
    path = ""
    match = re.search(r" - at `\$\.?(?P<path>[^`]*)`$", text)
    if match is not None:
        path = match.group("path")
        text = text[: match.start()]
    missing = re.match(r"^Object missing required field `(?P<field>[^`]+)`", text)
    if missing is not None:
        return ".".join(p for p in (path, missing.group("field")) if p), "required field is missing"
    unknown = re.match(r"^Object contains unknown field `(?P<field>[^`]+)`", text)
    if unknown is not None:
        return ".".join(p for p in (path, unknown.group("field")) if p), "unknown field (check the spelling; see docs/config.md)"
    named = re.match(r"^(?P<field>[a-z_]+(?:\.[a-z_]+)*) (?:must|needs) ", text)
    if named is not None:
        return ".".join(p for p in (path, named.group("field")) if p), text
    return path, text


_CHOICES = {
    "task": ("binary", "multiclass", "regression"),
    "kind": ("numeric", "categorical"),
    "numeric_tests": NUMERIC_TESTS,
    "categorical_tests": CATEGORICAL_TESTS,
    "format": ("csv", "parquet"),
    "on": ("drift", "metric"),
    "severity": SEVERITIES,
    "op": OPS,
    "test": NUMERIC_TESTS + ("chi2", "domain_auc"),
}


def parse_spec(text: str | dict[str, Any], source: str = "<spec>") -> ModelSpec:
    """Validate a spec given as YAML text or an already parsed mapping."""
    if isinstance(text, str):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise SpecError(source, "", f"not valid YAML: {error}") from None
    else:
        data = text
    if not isinstance(data, dict):
        raise SpecError(source, "", f"expected a mapping at the top level, got {type(data).__name__}")
    data = _unmangle_on(data)
    try:
        spec = msgspec.convert(data, ModelSpec)
    except msgspec.ValidationError as error:
        path, message = _explain(error)
        enum = _ENUM.match(message)
        leaf = re.sub(r"\[\d+\]$", "", path.rsplit(".", 1)[-1])
        if enum is not None and leaf in _CHOICES:
            choices = ("ks", "chi2", "psi", "wasserstein", "js") if path.endswith("effect.test") else _CHOICES[leaf]
            message = f"Invalid enum value {enum.group('got')}; expected one of {', '.join(choices)}"
        raise SpecError(source, path, message) from None
    problems = _check_semantics(spec)
    if problems:
        path, message = problems[0]
        raise SpecError(source, path, message)
    return spec


def _unmangle_on(data: dict[str, Any]) -> dict[str, Any]:
    """YAML 1.1 reads a bare ``on`` key as ``True``; give alert rules their ``on`` back."""
    rules = data.get("alerts")
    if not isinstance(rules, list) or not any(isinstance(r, dict) and True in r for r in rules):
        return data
    fixed = [
        {("on" if key is True else key): value for key, value in r.items()} if isinstance(r, dict) and "on" not in r else r
        for r in rules
    ]
    return {**data, "alerts": fixed}


def load_spec(path: str | Path) -> ModelSpec:
    """Read and validate a spec file; the reference path is resolved relative to the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise SpecError(str(path), "", f"cannot read the spec: {error.strerror}") from None
    spec = parse_spec(text, str(path))
    reference = Path(spec.reference.path)
    if not reference.is_absolute():
        spec.reference.path = str((path.parent / reference).resolve())
    return spec
