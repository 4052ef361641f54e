"""The same replay gives the same query results on chDB and on a ClickHouse server.

One pipeline run (a small credit-scoring scenario plus hostile invalid events) writes every batch
to both stores through a tee, so both receive identical rows, including the wall-clock
``updated_at``. Then the same ``SELECT ... FINAL ORDER BY <table key>`` runs on both and the
results must be equal, value for value.

The server here is Debian's clickhouse-server 18.16 (see DESIGN.md): it has no DateTime64, Map
or TTL, so driftline's schema (which :func:`~driftline.storage.open_store` creates on ClickHouse
24.x or later) cannot be created there. On an old server the test creates the same tables with
the types it has: ``DateTime`` for ``DateTime64(3, 'UTC')``, ``String`` for
``LowCardinality(String)``, and no ``Map`` columns (the predictions' feature maps and the labeled
rows' segment map are not compared). Sub-second timestamps (event times, ``updated_at``,
``received_at``) are compared at second precision, which is what ``DateTime`` keeps; window
bounds are whole seconds and are compared as stored. On a 24.x or later server the real schema
is used and the same comparison runs.

Floats are compared exactly: both paths carry IEEE doubles in binary (Arrow buffers into chDB;
clickhouse-driver's native Float64 columns into the server) and read them back in binary, so a
value round-trips bit for bit. NaN is compared as NaN.
"""

from __future__ import annotations

import math
import os
import re
import uuid
from typing import Any

import pytest

from driftline.config import load_spec
from driftline.reference import load_reference
from driftline.scorers.scenario import CreditScenario
from driftline.storage import (
    ALERTS,
    DEAD_LETTERS,
    DRIFT_RESULTS,
    GROUND_TRUTH,
    LABELED,
    PREDICTIONS,
    TABLES,
    WINDOW_METRICS,
    ServerBackend,
    Store,
    open_store,
    to_arrow_batch,
)
from driftline.storage.schema import TableSpec
from driftline.streams.embedded import EmbeddedRunner
from driftline.streams.pipeline import Message
from driftline.streams.sources import merged

pytestmark = pytest.mark.clickhouse_server

SUBSECOND = {"ts", "prediction_ts", "label_ts", "updated_at", "received_at"}
COMPARED = (WINDOW_METRICS, DRIFT_RESULTS, DEAD_LETTERS, ALERTS, PREDICTIONS, GROUND_TRUTH, LABELED)
INVALID = [
    (b"{not json", "malformed"),
    (b'{"event_id": "x1", "model": "credit"}', "missing fields"),
    (b'{"event_id": "it\'s; DROP TABLE predictions; --", "model": "credit", "version": "v1", "ts": "soon"}', "hostile id"),
    (b"\xff\xfe not utf-8 \x00", "invalid UTF-8"),
    (b'{"event_id": "x2", "model": "no such model", "version": "v1", "ts": 1767571200000, "features": {}}', "unknown model"),
]


def legacy_type(ch_type: str) -> str | None:
    """The 18.16 column type for a driftline type; ``None`` for ``Map`` (not available)."""
    if ch_type.startswith("Map("):
        return None
    ch_type = re.sub(r"DateTime64\(3, 'UTC'\)", "DateTime", ch_type)
    return re.sub(r"LowCardinality\((\w+)\)", r"\1", ch_type)


def legacy_table_sql(spec: TableSpec, database: str) -> str:
    columns = [(c.name, legacy_type(c.type)) for c in spec.columns]
    body = ",\n".join(f"    {name} {t}" for name, t in columns if t is not None)
    parts = [f"CREATE TABLE {database}.{spec.name}\n(\n{body}\n)", f"ENGINE = {spec.engine}"]
    if spec.partition_by:
        parts.append(f"PARTITION BY {spec.partition_by}")
    parts.append(f"ORDER BY ({', '.join(spec.order_by)})")
    return "\n".join(parts)


class LegacyColumns:
    """Insert path onto the 18.16 tables: the same Arrow batch, without the Map columns."""

    def __init__(self, store: Store):
        self.store = store

    def insert(self, table: str, columns: dict[str, Any]) -> int:
        batch = to_arrow_batch(table, columns)
        maps = [c for c in batch.column_names if TABLES[table].by_name[c].is_map]
        return self.store.insert_arrow(table, batch.drop_columns(maps))


class Tee:
    """A store for :class:`StoreSink` that writes every batch to two stores."""

    def __init__(self, *stores: Any):
        self.stores = stores

    def insert(self, table: str, columns: dict[str, Any]) -> int:
        counts = {store.insert(table, columns) for store in self.stores}
        assert len(counts) == 1, counts
        return counts.pop()


@pytest.fixture(scope="module")
def server_store(clickhouse_server):
    """A fresh database on the server: driftline's schema (24.x+) or the 18.16 variant."""
    database = f"driftline_eq_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    url = f"clickhouse://default:@{clickhouse_server.host}:{clickhouse_server.port}/{database}"
    backend = ServerBackend(url, retries=3, backoff=0.1)
    legacy = backend.server_version < (24,)
    if legacy:
        backend.execute(f"CREATE DATABASE {database}")
        for name in COMPARED:
            backend.execute(legacy_table_sql(TABLES[name], database))
        store = Store(backend, database, None)
    else:
        backend.close()
        store = open_store(url, retention_days=None)
    yield store, legacy
    try:
        store.execute(f"DROP DATABASE IF EXISTS {database}")
    finally:
        store.close()


@pytest.fixture(scope="module")
def stores(server_store, tmp_path_factory):
    """Both stores after one replay written to each."""
    server, legacy = server_store
    directory = tmp_path_factory.mktemp("equality")
    scenario = CreditScenario(seed=13, n_events=3_000, n_reference=2_000, n_train=2_000, rate_per_s=0.02)
    predictions, ground_truth, _, spec_path = scenario.write_event_files(directory / "events")
    spec = load_spec(spec_path)
    messages = list(merged(predictions, ground_truth))
    for i, (data, _) in enumerate(INVALID):
        messages.insert(100 + 400 * i, Message("prediction", data, "equality-test", f"bad-{i}"))
    embedded = open_store(directory / "chdb", retention_days=None)
    try:
        sink = Tee(embedded, LegacyColumns(server) if legacy else server)
        summary = EmbeddedRunner({spec.model: load_reference(spec)}, sink, batch_size=700).run(messages)
        server.backend.flush(60)
        yield embedded, server, legacy, summary
    finally:
        embedded.close()


def plain(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return value


def select(store: Store, table: str, columns: list[str]) -> list[tuple]:
    spec = TABLES[table]
    exprs = [f"toUInt32(toDateTime({c})) AS {c}" if c in SUBSECOND else c for c in columns]
    rows = store.query(
        f"SELECT {', '.join(exprs)} FROM {store.database}.{table} FINAL ORDER BY {', '.join(spec.order_by)}"
    ).to_pylist()
    return [tuple(plain(row[c]) for c in columns) for row in rows]


def shared_columns(table: str, legacy: bool) -> list[str]:
    return [c.name for c in TABLES[table].columns if not (legacy and legacy_type(c.type) is None)]


@pytest.mark.parametrize("table", [WINDOW_METRICS, DRIFT_RESULTS, DEAD_LETTERS, ALERTS])
def test_result_tables_are_identical(stores, table):
    embedded, server, legacy, summary = stores
    columns = shared_columns(table, legacy)
    assert columns == list(TABLES[table].column_names), "result tables have no Map columns: all compared"
    left, right = select(embedded, table, columns), select(server, table, columns)
    assert len(left) > 0
    if table == DEAD_LETTERS:
        assert len(left) == summary.dead_letters == len(INVALID)
    assert left == right


@pytest.mark.parametrize("table", [PREDICTIONS, GROUND_TRUTH, LABELED])
def test_raw_event_tables_are_identical_on_shared_columns(stores, table):
    embedded, server, legacy, summary = stores
    columns = shared_columns(table, legacy)
    left, right = select(embedded, table, columns), select(server, table, columns)
    expected = {PREDICTIONS: summary.predictions, GROUND_TRUTH: summary.ground_truth, LABELED: summary.labeled}[table]
    assert len(left) == expected > 0
    assert left == right


def test_counts_and_aggregates_agree(stores):
    embedded, server, _, summary = stores
    sql = """SELECT
        (SELECT count() FROM {db}.predictions FINAL) AS predictions,
        (SELECT count() FROM {db}.ground_truth FINAL) AS ground_truth,
        (SELECT count() FROM {db}.labeled FINAL) AS labeled,
        (SELECT count() FROM {db}.window_metrics FINAL) AS window_metrics,
        (SELECT count() FROM {db}.drift_results FINAL WHERE drifted = 1) AS drifted,
        (SELECT count() FROM {db}.dead_letters FINAL) AS dead_letters,
        (SELECT uniqExact(window_start) FROM {db}.window_metrics FINAL) AS windows"""
    left = embedded.query(sql.format(db=embedded.database)).to_pylist()
    right = server.query(sql.format(db=server.database)).to_pylist()
    assert left == right
    row = left[0]
    assert (row["predictions"], row["ground_truth"], row["labeled"], row["dead_letters"]) == (
        summary.predictions, summary.ground_truth, summary.labeled, summary.dead_letters
    )
    assert row["windows"] >= 2 and row["drifted"] >= 0
