"""A sink that holds raw rows back stores exactly what one that writes at once stores, and
inserts on its writer thread.

Both sinks write one pipeline run, batch by batch, into two databases of the same embedded chDB
engine; the buffered one must hold rows back until its threshold and store the same rows once
flushed.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import msgspec
import numpy as np
import pandas as pd
import pytest

from driftline.config import load_spec, parse_spec
from driftline.reference import load_reference
from driftline.scorers.scenario import CreditScenario
from driftline.storage import TABLES, Store, StoreError, open_store
from driftline.streams.join import LabeledRow
from driftline.streams.pipeline import Message, Output, Pipeline
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
            buffered.wait_writes()
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


def test_absent_optional_fields_are_stored_as_null_and_empty_maps(tmp_path) -> None:
    from driftline.events import Prediction
    from driftline.streams.columns import PredictionColumns

    spec = parse_spec({"model": "m", "task": "multiclass", "classes": ["a", "b", "c"], "reference": {"path": "ref.csv"},
                       "features": [{"name": "x", "kind": "numeric"}, {"name": "c", "kind": "categorical"}]})
    full = Prediction(model="m", event_id="full", version="v1", ts=1_767_225_600_000, features={"x": 1.5, "c": "k"},
                      prediction="a", score=0.75, probabilities={"a": 0.75, "b": 0.25}, explanation={"x": 0.5},
                      latency_ms=3.0)
    bare = Prediction(model="m", event_id="bare", version="v1", ts=1_767_225_600_001, features={"x": None}, prediction="b")
    with open_store(tmp_path / "store", retention_days=None) as store:
        sink = StoreSink(store, {})
        sink._feature_names["m"] = (spec.numeric_features, spec.categorical_features)
        # One batch mixes present and absent values; in the other every value is absent.
        for events in ([full, bare], [msgspec.structs.replace(bare, event_id="only-bare")]):
            out = Output()
            out.predictions.append(PredictionColumns.from_events(spec, events))
            sink.write(out)
        got = {r["event_id"]: r for r in rows(store, "predictions")}
    assert got["full"]["score"] == 0.75 and got["full"]["latency_ms"] == 3.0
    assert dict(got["full"]["probabilities"]) == {"a": 0.75, "b": 0.25} and dict(got["full"]["explanation"]) == {"x": 0.5}
    assert dict(got["full"]["features"]) == {"x": 1.5} and dict(got["full"]["cat_features"]) == {"c": "k"}
    for event_id in ("bare", "only-bare"):
        row = got[event_id]
        assert row["score"] is None and row["latency_ms"] is None, event_id
        assert not row["probabilities"] and not row["explanation"] and not row["features"], event_id
        assert row["model"] == "m" and row["schema_version"] == 1 and row["prediction"] == "b", event_id


def test_joined_rows_of_several_models_are_stored_with_their_segments(tmp_path) -> None:
    references = _references()
    t = 1_767_225_600_000
    rows = [
        LabeledRow("a", "m1", "v1", "champion", ("red", "a"), t, t + 5, 1, 0.75, None, 0, "crm"),
        LabeledRow("b", "m2", "v2", "challenger", (), t, t + 7, 0, None, None, 1, ""),
        LabeledRow("c", "m1", "v1", "champion", (None, "b"), t + 1, t + 9, True, None, None, True, ""),
        # Restored from a checkpoint written when m1 had no segments yet.
        LabeledRow("d", "m1", "v1", "champion", (), t + 2, t + 3, 0, 0.25, None, 1, ""),
    ]
    with open_store(tmp_path / "store", retention_days=None) as store:
        sink = StoreSink(store, references, buffer_rows=1_000)
        for batch in (rows, rows[:1], rows[1:2]):
            out = Output()
            out.labeled.extend(batch)
            sink.write(out)
        # Every model's block has the same Arrow types, so nothing was written before the flush.
        assert count(store, "labeled") == 0 and sink.pending_rows == 6
        sink.flush()
        got = {r["event_id"]: r for r in rows_of(store)}
    assert {k: (dict(r["segment"]), r["model"], r["version"], r["role"], r["prediction"], r["label"], r["score"],
                r["delay_ms"]) for k, r in got.items()} == {
        "a": ({"color": "red"}, "m1", "v1", "champion", "1", "0", 0.75, 5),
        "b": ({}, "m2", "v2", "challenger", "0", "1", None, 7),
        "c": ({}, "m1", "v1", "champion", "true", "true", None, 8),
        "d": ({}, "m1", "v1", "champion", "0", "1", 0.25, 1),
    }


def rows_of(store: Store) -> list[dict]:
    return store.query(f"SELECT * FROM {store.database}.labeled FINAL").to_pylist()


def _references() -> dict:
    """Two models on one small frame: m1 segmented by ``color`` with ``group`` protected, m2 plain."""

    def spec(model: str, segments: list[str], protected: str | None):
        return parse_spec({
            "model": model, "task": "binary", "reference": {"path": "ref.csv"}, "segments": segments,
            **({"protected_attribute": protected} if protected else {}),
            "features": [{"name": "x", "kind": "numeric"}, {"name": "color", "kind": "categorical"},
                         {"name": "group", "kind": "categorical"}],
        })

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=200), "color": rng.choice(["red", "blue"], 200),
                          "group": rng.choice(["a", "b"], 200), "score": rng.random(200)})
    frame["prediction"] = (frame.score > 0.5).astype(int)
    frame["label"] = (rng.random(200) > 0.5).astype(int)
    return {
        "m1": load_reference(spec("m1", ["color"], "group"), frame),
        "m2": load_reference(spec("m2", [], None), frame),
    }


class _ThreadRecordingStore(Store):
    """The embedded store, noting the thread of every insert."""

    threads: list[str]

    def insert_arrow(self, table: str, data: Any) -> int:
        self.threads.append(threading.current_thread().name)
        return super().insert_arrow(table, data)


def _labeled_rows(n: int, model: str = "m1") -> list[LabeledRow]:
    t = 1_767_225_600_000
    return [LabeledRow(f"id-{i}", model, "v1", "champion", ("red", "a"), t + i, t + i + 5, 1, 0.5, None, 0, "") for i in range(n)]


def test_a_buffering_sink_inserts_on_its_writer_thread_and_reports_a_failed_insert(tmp_path) -> None:
    references = _references()
    with open_store(tmp_path / "store", retention_days=None) as opened:
        store = _ThreadRecordingStore(opened.backend, opened.database, None)
        store.threads = []
        sink = StoreSink(store, references, buffer_rows=10)
        for start in range(0, 40, 8):
            out = Output()
            out.labeled.extend(_labeled_rows(40)[start:start + 8])
            sink.write(out)
        sink.flush()
        assert count(store, "labeled") == 40
        assert store.threads and all(name.startswith("driftline-sink") for name in store.threads)

        store.execute(f"DROP TABLE {store.database}.labeled")
        out = Output()
        out.labeled.extend(_labeled_rows(12))
        with pytest.raises(StoreError, match="labeled"):
            sink.write(out)
            sink.flush()
        store.create_schema()
        out = Output()
        out.labeled.extend(_labeled_rows(12))
        sink.write(out)
        sink.flush()
        # The failed block is not written again: the worker crashes on the error and replays
        # from its last checkpoint.
        assert store.query(f"SELECT count() AS n FROM {store.database}.labeled FINAL").to_pylist()[0]["n"] == 12
