"""The ClickHouse schema of driftline: tables, columns, engines and keys.

The schema is written once, as data, and rendered to DDL for every backend (embedded chDB now,
a ClickHouse server later). Every table is a ``ReplacingMergeTree`` whose ``ORDER BY`` key is the
row's deterministic identity, so a replay after a crash rewrites rows instead of adding them.
Merges happen in the background: readers deduplicate with ``FINAL`` (or ``argMax`` on the version
column), as the queries in ``docs/sql.md`` do.

Examples
--------
>>> from driftline.storage.schema import PREDICTIONS, TABLES, COLUMNS
>>> COLUMNS[PREDICTIONS][:4]
('event_id', 'model', 'version', 'ts')
>>> TABLES[PREDICTIONS].order_by
('model', 'version', 'event_id')
>>> print(TABLES["window_metrics"].engine)
ReplacingMergeTree(revision)
>>> "TTL toDateTime(ts) + INTERVAL 30 DAY" in create_table_sql(TABLES[PREDICTIONS], retention_days=30)
True

"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pyarrow as pa

__all__ = [
    "ALERTS",
    "COLUMNS",
    "Column",
    "DATABASE",
    "DEAD_LETTERS",
    "DEFAULT_RETENTION_DAYS",
    "DRIFT_RESULTS",
    "GROUND_TRUTH",
    "LABELED",
    "MODEL_VERSIONS",
    "PREDICTIONS",
    "TABLES",
    "TableSpec",
    "WINDOW_METRICS",
    "MAX_RETENTION_DAYS",
    "arrow_type",
    "check_retention",
    "create_database_sql",
    "create_table_sql",
    "create_view_sql",
    "model_versions_select",
    "modify_ttl_sql",
    "ttl_expression",
]

DATABASE = "driftline"
DEFAULT_RETENTION_DAYS = 90

PREDICTIONS = "predictions"
GROUND_TRUTH = "ground_truth"
LABELED = "labeled"
WINDOW_METRICS = "window_metrics"
DRIFT_RESULTS = "drift_results"
DEAD_LETTERS = "dead_letters"
ALERTS = "alerts"
MODEL_VERSIONS = "model_versions"

TS = "DateTime64(3, 'UTC')"
LC = "LowCardinality(String)"


@dataclass(frozen=True)
class Column:
    """One column: its name, its ClickHouse type and what it holds.

    Parameters
    ----------
    name
        Column name.
    type
        ClickHouse type, e.g. ``"Map(String, Float64)"``.
    doc
        One line for ``docs/sql.md``.
    binary
        The column holds raw bytes (a ClickHouse ``String`` is a byte string); batches carry it as
        Arrow ``binary`` instead of ``string``.

    """

    name: str
    type: str
    doc: str = ""
    binary: bool = False

    @property
    def nullable(self) -> bool:
        return self.type.startswith("Nullable(")

    @property
    def is_map(self) -> bool:
        return self.type.startswith("Map(")

    @property
    def arrow_type(self) -> pa.DataType:
        return pa.binary() if self.binary else arrow_type(self.type)


@dataclass(frozen=True)
class TableSpec:
    """One table: columns, engine, keys and retention.

    Parameters
    ----------
    name
        Table name inside the ``driftline`` database.
    columns
        The columns, in order.
    order_by
        The sorting key, which is also the row's identity for ``ReplacingMergeTree``.
    version
        The ``ReplacingMergeTree`` version column: of rows with the same key, the one with the
        largest version survives; ``None`` keeps the last inserted.
    partition_by
        Partition expression, or ``None``.
    ttl_column
        Rows expire ``retention_days`` after this column's time; ``None`` keeps rows forever.
    doc
        What one row is, for ``docs/sql.md``.

    """

    name: str
    columns: tuple[Column, ...]
    order_by: tuple[str, ...]
    version: str | None = None
    partition_by: str | None = None
    ttl_column: str | None = None
    doc: str = ""
    by_name: dict[str, Column] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {c.name: c for c in self.columns})
        missing = [k for k in (*self.order_by, self.version, self.ttl_column) if k and k not in self.by_name]
        if missing:
            raise ValueError(f"table {self.name!r}: key columns {missing} are not columns")

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def engine(self) -> str:
        return f"ReplacingMergeTree({self.version or ''})"


_SCALAR_ARROW = {
    "String": pa.string(),
    "Float64": pa.float64(),
    "Float32": pa.float32(),
    "UInt8": pa.uint8(),
    "UInt16": pa.uint16(),
    "UInt32": pa.uint32(),
    "UInt64": pa.uint64(),
    "Int64": pa.int64(),
    "Int32": pa.int32(),
}
_WRAPPER = re.compile(r"^(LowCardinality|Nullable)\((.*)\)$")
_MAP = re.compile(r"^Map\((\w+),\s*(.+)\)$")


def arrow_type(ch_type: str) -> pa.DataType:
    """Arrow type that carries values of a ClickHouse type into an insert.

    Examples
    --------
    >>> arrow_type("LowCardinality(String)")
    DataType(string)
    >>> arrow_type("Map(String, Float64)")
    MapType(map<string, double>)
    >>> arrow_type("DateTime64(3, 'UTC')")
    TimestampType(timestamp[ms, tz=UTC])

    """
    t = ch_type.strip()
    while (m := _WRAPPER.match(t)) is not None:
        t = m.group(2).strip()
    if t in _SCALAR_ARROW:
        return _SCALAR_ARROW[t]
    if t.startswith("DateTime64(3"):
        return pa.timestamp("ms", tz="UTC")
    if (m := _MAP.match(t)) is not None:
        return pa.map_(arrow_type(m.group(1)), arrow_type(m.group(2)))
    raise ValueError(f"ch_type has no Arrow mapping here, got {ch_type!r}")


def _c(name: str, type_: str, doc: str, **kw: bool) -> Column:
    return Column(name, type_, doc, **kw)


_SCHEMA_VERSION = _c("schema_version", "UInt16", "Version of the event contract the row came from.")

TABLES: dict[str, TableSpec] = {
    t.name: t
    for t in (
        TableSpec(
            PREDICTIONS,
            (
                _c("event_id", "String", "Unique id of the prediction event (join key with ground truth)."),
                _c("model", LC, "Model name."),
                _c("version", LC, "Model version."),
                _c("ts", TS, "Event time of the prediction (UTC, ms)."),
                _c("role", LC, "champion, challenger, or an A/B arm."),
                _c("features", "Map(String, Float64)", "Numeric and boolean features (bool as 0/1); a null feature is an absent key."),
                _c("cat_features", "Map(String, String)", "Categorical features; a null feature is an absent key."),
                _c("prediction", "String", "The predicted class or value, as text."),
                _c("score", "Nullable(Float64)", "Score of the positive class or the regression output."),
                _c("probabilities", "Map(String, Float64)", "Class -> probability (multiclass)."),
                _c("action", "String", "What the system did with the prediction."),
                _c("explanation", "Map(String, Float64)", "Feature -> contribution, when the scorer sends one."),
                _c("host", "String", "Host that scored the request."),
                _c("latency_ms", "Nullable(Float64)", "Scoring latency in milliseconds."),
                _c("entity_id", "String", "Entity the prediction is about (sticky A/B splits); '' when absent."),
                _SCHEMA_VERSION,
            ),
            order_by=("model", "version", "event_id"),
            partition_by="toDate(ts)",
            ttl_column="ts",
            doc="One row per prediction event, as received (a champion and its shadow challenger may share an event_id).",
        ),
        TableSpec(
            GROUND_TRUTH,
            (
                _c("event_id", "String", "Id of the prediction this label is for."),
                _c("model", LC, "Model name."),
                _c("ts", TS, "When the truth became known (UTC, ms)."),
                _c("label", "String", "The true class or value, as text."),
                _c("label_value", "Nullable(Float64)", "The label as a number when it is one (regression, 0/1)."),
                _c("source", LC, "Where the label came from, e.g. chargeback, manual_review, random_audit."),
                _SCHEMA_VERSION,
            ),
            order_by=("model", "event_id"),
            version="ts",
            partition_by="toDate(ts)",
            ttl_column="ts",
            doc="One row per ground-truth event; a later label for the same event replaces an earlier one.",
        ),
        TableSpec(
            LABELED,
            (
                _c("event_id", "String", "Prediction event id."),
                _c("model", LC, "Model name."),
                _c("version", LC, "Model version that made the prediction."),
                _c("role", LC, "champion, challenger, or an A/B arm."),
                _c("segment", "Map(String, String)", "Values of the spec's segment features for this row."),
                _c("prediction_ts", TS, "Event time of the prediction."),
                _c("label_ts", TS, "Time the label became known."),
                _c("delay_ms", "Int64", "label_ts - prediction_ts in milliseconds."),
                _c("prediction", "String", "Predicted class or value, as text."),
                _c("score", "Nullable(Float64)", "Score of the positive class or the regression output."),
                _c("label", "String", "True class or value, as text."),
            ),
            order_by=("model", "version", "event_id"),
            version="label_ts",
            partition_by="toDate(prediction_ts)",
            ttl_column="prediction_ts",
            doc="One row per prediction joined with its label (the join's output).",
        ),
        TableSpec(
            WINDOW_METRICS,
            (
                _c("model", LC, "Model name."),
                _c("version", LC, "Model version."),
                _c("segment", "String", "'all', or one segment value such as 'region=north'."),
                _c("window_start", TS, "Window start (prediction event time, inclusive)."),
                _c("window_end", TS, "Window end (exclusive)."),
                _c("metric", LC, "Metric name, e.g. accuracy, roc_auc, mae."),
                _c("value", "Float64", "Metric value on the labeled rows of the window."),
                _c("n", "UInt64", "Labeled rows the value is computed on."),
                _c("n_predictions", "UInt64", "Predictions in the window (labeled or not)."),
                _c("label_coverage", "Float64", "n / n_predictions."),
                _c("baseline", "Nullable(Float64)", "The metric on the reference data."),
                _c("p_value", "Nullable(Float64)", "One-sided p-value of 'worse than baseline'."),
                _c("threshold", "Nullable(Float64)", "Alert threshold from the spec."),
                _c("breached", "UInt8", "1 when the value is past the threshold."),
                _c("updated_at", TS, "When this revision was computed."),
                _c("revision", "UInt64", "Increases every time the window is written again (late labels)."),
            ),
            order_by=("model", "version", "segment", "window_start", "metric"),
            version="revision",
            partition_by="toYYYYMM(window_start)",
            doc="One row per (model, version, segment, window, metric); rewritten as late labels arrive.",
        ),
        TableSpec(
            DRIFT_RESULTS,
            (
                _c("model", LC, "Model name."),
                _c("version", LC, "Model version."),
                _c("window_start", TS, "Window start (inclusive)."),
                _c("window_end", TS, "Window end (exclusive)."),
                _c("target", LC, "'feature', 'prediction', 'label' (target drift) or 'multivariate' (domain classifier)."),
                _c("feature", "String", "Feature name ('' for prediction and label drift)."),
                _c("test", LC, "Test name: ks, chi2, psi, wasserstein, js; domain_auc (statistic = cross-validated AUC) and domain_importance (one row per feature: its permutation importance)."),
                _c("statistic", "Float64", "Test statistic."),
                _c("p_value", "Nullable(Float64)", "p-value where the test defines one."),
                _c("p_adjusted", "Nullable(Float64)", "Benjamini-Hochberg adjusted p-value within the window's family."),
                _c("effect_size", "Float64", "Effect size (PSI, normalised Wasserstein, JS distance, ...)."),
                _c("threshold", "Nullable(Float64)", "Drift threshold from the spec."),
                _c("drifted", "UInt8", "1 when the test flags drift."),
                _c("n_reference", "UInt64", "Reference sample size."),
                _c("n_current", "UInt64", "Window sample size."),
                _c("exact", "UInt8", "1 when computed on raw values, 0 when from binned accumulators."),
                _c("updated_at", TS, "When this revision was computed."),
                _c("revision", "UInt64", "Increases every time the result is written again."),
            ),
            order_by=("model", "version", "window_start", "target", "feature", "test"),
            version="revision",
            partition_by="toYYYYMM(window_start)",
            doc="One row per (model, version, window, target, feature, test).",
        ),
        TableSpec(
            DEAD_LETTERS,
            (
                _c("id", "String", "Deterministic id (hash of source, position and payload)."),
                _c("source", "String", "Topic or file the event came from."),
                _c("position", "String", "Partition/offset or line number."),
                _c("received_at", TS, "When the event was rejected."),
                _c("reason", "String", "The full reason: code, field, expected and received value (docs/events.md)."),
                _c("code", LC, "The reason code alone, e.g. wrong_type, missing_field, unknown_model, late_event."),
                _c("field", "String", "Offending field path ('' when not about one field)."),
                _c("payload", "String", "The original bytes, unchanged (use toValidUTF8(payload) to read as text).", binary=True),
            ),
            order_by=("id",),
            ttl_column="received_at",
            doc="One row per rejected input event.",
        ),
        TableSpec(
            ALERTS,
            (
                _c("alert_id", "String", "Alert key: stable across open, update and resolved."),
                _c("model", LC, "Model name."),
                _c("version", LC, "Model version."),
                _c("rule", "String", "Rule name from the spec."),
                _c("severity", LC, "e.g. warning, critical."),
                _c("status", LC, "open, update or resolved."),
                _c("window_start", TS, "Window the alert is about (start)."),
                _c("window_end", TS, "Window end."),
                _c("metric", "String", "Metric or test the rule watches."),
                _c("value", "Float64", "Observed value."),
                _c("threshold", "Nullable(Float64)", "Threshold crossed."),
                _c("p_value", "Nullable(Float64)", "p-value, when the rule is a test."),
                _c("n", "UInt64", "Sample size behind the value."),
                _c("message", "String", "Human-readable message."),
                _c("fired_at", TS, "Event time of this state: the end of the window whose result produced it (increases with revision)."),
                _c("feature", "String", "Drift rules: the feature reported (the worst one for a rule on any feature); '' for metric rules."),
                _c("segment", "String", "Metric rules: the segment reported, e.g. 'all' or 'region=north'; '' for drift rules."),
                _c("p_adjusted", "Nullable(Float64)", "Drift rules: Benjamini-Hochberg adjusted p-value over the window's family of tests."),
                _c("family_size", "Nullable(UInt32)", "Drift rules: number of tests in that family."),
                _c("revision", "UInt64", "State number of the alert: 0 when it opens, +1 for every later state."),
                _c("retrain", "UInt8", "1 when the rule is a retraining trigger (a retrain request went to driftline.retrain on open)."),
            ),
            order_by=("alert_id",),
            version="fired_at",
            doc="The latest state of each alert.",
        ),
    )
}

COLUMNS: dict[str, tuple[str, ...]] = {name: spec.column_names for name, spec in TABLES.items()}

def model_versions_select(database: str = DATABASE) -> str:
    """The ``SELECT`` behind the ``model_versions`` view."""
    return f"""SELECT
    model,
    version,
    min(ts) AS first_seen,
    max(ts) AS last_seen,
    count() AS n_predictions
FROM {database}.{PREDICTIONS} FINAL
GROUP BY model, version"""


MAX_RETENTION_DAYS = 10_000


def check_retention(retention_days: int | None) -> None:
    """Validate ``retention_days``: ``None`` (keep forever) or an int in [1, 10000].

    The bound keeps ``ts + retention`` inside ClickHouse's ``DateTime`` range (up to 2106), which
    a TTL expression must use.
    """
    if retention_days is None:
        return
    if isinstance(retention_days, bool) or not isinstance(retention_days, int) or not 1 <= retention_days <= MAX_RETENTION_DAYS:
        raise ValueError(
            f"retention_days must be None (keep forever) or an int in [1, {MAX_RETENTION_DAYS}], got {retention_days!r}"
        )


def ttl_expression(spec: TableSpec, retention_days: int | None) -> str | None:
    """``TTL`` expression of a table, or ``None`` when its rows never expire."""
    check_retention(retention_days)
    if spec.ttl_column is None or retention_days is None:
        return None
    return f"toDateTime({spec.ttl_column}) + INTERVAL {retention_days} DAY"


def create_database_sql(database: str = DATABASE) -> str:
    return f"CREATE DATABASE IF NOT EXISTS {database}"


def create_table_sql(
    spec: TableSpec, database: str = DATABASE, retention_days: int | None = DEFAULT_RETENTION_DAYS
) -> str:
    """``CREATE TABLE IF NOT EXISTS`` statement of one table."""
    cols = ",\n".join(f"    {c.name} {c.type}" for c in spec.columns)
    parts = [f"CREATE TABLE IF NOT EXISTS {database}.{spec.name}\n(\n{cols}\n)", f"ENGINE = {spec.engine}"]
    if spec.partition_by:
        parts.append(f"PARTITION BY {spec.partition_by}")
    parts.append(f"ORDER BY ({', '.join(spec.order_by)})")
    ttl = ttl_expression(spec, retention_days)
    if ttl:
        parts.append(f"TTL {ttl}")
        parts.append("SETTINGS ttl_only_drop_parts = 1" if spec.partition_by else "")
    return "\n".join(p for p in parts if p)


def modify_ttl_sql(
    spec: TableSpec, database: str = DATABASE, retention_days: int | None = DEFAULT_RETENTION_DAYS
) -> str:
    """``ALTER TABLE`` that sets (or, for ``None``, removes) the retention of an existing table."""
    if spec.ttl_column is None:
        raise ValueError(f"table {spec.name!r} has no TTL column")
    ttl = ttl_expression(spec, retention_days)
    if ttl is None:
        return f"ALTER TABLE {database}.{spec.name} REMOVE TTL"
    return f"ALTER TABLE {database}.{spec.name} MODIFY TTL {ttl} SETTINGS materialize_ttl_after_modify = 0"


def create_view_sql(database: str = DATABASE) -> str:
    """``model_versions``: a view over ``predictions``, exact under replays and free to maintain."""
    return f"CREATE VIEW IF NOT EXISTS {database}.{MODEL_VERSIONS} AS\n{model_versions_select(database)}"
