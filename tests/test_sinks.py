"""A sink that holds raw rows back stores exactly what one that writes at once stores.

Both sinks write one pipeline run, batch by batch, into two databases of the same embedded chDB
engine; the buffered one must hold rows back until its threshold and store the same rows once
flushed.
"""

from __future__ import annotations

import math

import pytest

from driftline.config import load_spec
from driftline.reference import load_reference
from driftline.scorers.scenario import CreditScenario
from driftline.storage import TABLES, Store, open_store
from driftline.streams.pipeline import Message, Pipeline
from driftline.streams.sinks import StoreSink
from driftline.streams.sources import merged

RAW = ("predictions", "ground_truth", "labeled", "dead_letters")
WALL_CLOCK = {"updated_at", "received_at"}


def rows(store: Store, table: str) -> list[dict]:
    spec = TABLES[table]
    columns = ", ".join(c for c in spec.column_names if c not in WALL_CLOCK)
    found = store.query(
        f"SELECT {columns} FROM {store.database}.{table} FINAL ORDER BY {', '.join(spec.order_by)}"
    ).to_pylist()
    return [{k: "NaN" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()} for row in found]


def count(store: Store, table: str) -> int:
    return store.query(f"SELECT count() AS n FROM {store.database}.{table}").to_pylist()[0]["n"]


def test_buffered_sink_stores_what_a_direct_sink_stores(tmp_path) -> None:
    scenario = CreditScenario(seed=11, n_events=2_000, n_reference=1_000, n_train=1_000, rate_per_s=0.02)
    predictions, ground_truth, _, spec_path = scenario.write_event_files(tmp_path / "events")
    spec = load_spec(spec_path)
    references = {spec.model: load_reference(spec)}
    messages = list(merged(predictions, ground_truth))
    messages.insert(50, Message("prediction", b"{not json", "sink-test", "bad-0"))
    with open_store(tmp_path / "store", retention_days=None) as store:
        direct_store = Store(store.backend, "direct", None)
        direct_store.create_schema()
        buffered = StoreSink(store, references, buffer_rows=1_500)
        direct = StoreSink(direct_store, references)
        pipeline = Pipeline(references)
        held_back = written_early = False
        for start in range(0, len(messages), 300):
            out = pipeline.process(messages[start:start + 300])
            buffered.write(out)
            direct.write(out)
            assert buffered.pending_rows < buffered.buffer_rows
            stored = sum(count(store, t) for t in RAW)
            assert stored + buffered.pending_rows == sum(count(direct_store, t) for t in RAW)
            held_back |= buffered.pending_rows > 0
            written_early |= stored > 0
        out = pipeline.finish()
        buffered.write(out)
        direct.write(out)
        assert held_back and written_early
        buffered.flush()
        assert buffered.pending_rows == 0 and buffered.pending_since is None
        for table in TABLES:
            got, want = rows(store, table), rows(direct_store, table)
            assert got == want, table
            if table in RAW:
                assert len(got) > 0, table


def test_buffer_rows_is_validated() -> None:
    with pytest.raises(ValueError, match="buffer_rows must be an int >= 0, got -1"):
        StoreSink(None, {}, buffer_rows=-1)  # type: ignore[arg-type]
