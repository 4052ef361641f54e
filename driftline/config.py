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
    if spec.allowed_lateness_ms > spec.label_ttl_ms:
        problems.append(("allowed_lateness", "must not exceed label_ttl"))
    if spec.label_ttl_ms < spec.window_ms + spec.allowed_lateness_ms:
        problems.append((
            "label_ttl",
            f"must be at least window + allowed_lateness ({spec.window} + {spec.allowed_lateness}): the join "
            "remembers event ids for label_ttl to reject redelivered events while their window is open",
        ))
    return problems


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
    try:
        spec = msgspec.convert(data, ModelSpec)
    except msgspec.ValidationError as error:
        path, message = _explain(error)
        enum = _ENUM.match(message)
        leaf = re.sub(r"\[\d+\]$", "", path.rsplit(".", 1)[-1])
        if enum is not None and leaf in _CHOICES:
            message = f"Invalid enum value {enum.group('got')}; expected one of {', '.join(_CHOICES[leaf])}"
        raise SpecError(source, path, message) from None
    problems = _check_semantics(spec)
    if problems:
        path, message = problems[0]
        raise SpecError(source, path, message)
    return spec


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
