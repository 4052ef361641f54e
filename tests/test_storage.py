"""The embedded chDB store: schema, idempotent inserts, safe parameters, locking, docs/sql.md."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from driftline.storage import (
    ALERTS,
    COLUMNS,
    DEAD_LETTERS,
    DRIFT_RESULTS,
    GROUND_TRUTH,
    LABELED,
    MODEL_VERSIONS,
    PREDICTIONS,
    TABLES,
    WINDOW_METRICS,
    Store,
    StoreError,
    StoreLockedError,
    format_result,
    open_store,
    param_text,
    quote_identifier,
    quote_literal,
    to_arrow_batch,
)

DOCS = Path(__file__).resolve().parents[1] / "docs" / "sql.md"
HOUR = 3_600_000
NOW = (int(time.time() * 1000) // HOUR - 48) * HOUR  # two days ago, on the hour: inside the default retention

HOSTILE = [
    "it's",
    'double"quote',
    "back\\slash",
    "trailing\\",
    "`backtick`",
    "semi;colon; DROP TABLE driftline.predictions; --",
    "tab\tnew\nline",
    "\\N",
    "ünïcødé 😀 模型",
    "{m:String}",
    "",
]


@pytest.fixture
def store(tmp_path):
    with open_store(tmp_path / "data") as s:
        yield s


def predictions_batch(n: int = 6, model: str = "credit", start: int = NOW) -> dict:
    rng = np.random.default_rng(0)
    regions = ["north", "south", "east"]
    return {
        "event_id": [f"e{i}" for i in range(n)],
        "model": [model] * n,
        "version": ["v1" if i % 2 == 0 else "v2" for i in range(n)],
        "ts": np.array([start + i * 600_000 for i in range(n)], dtype="datetime64[ms]"),
        "role": ["champion" if i % 2 == 0 else "challenger" for i in range(n)],
        "features": [{"age": 30.0 + i, "income": None if i % 3 == 0 else 1000.0 * i, "vip": bool(i % 2)} for i in range(n)],
        "cat_features": [{"region": regions[i % 3]} for i in range(n)],
        "prediction": [str(i % 2) for i in range(n)],
        "score": [float(v) for v in rng.random(n)],
        "probabilities": [{"0": 0.4, "1": 0.6}] * n,
        "action": ["approve"] * n,
        "host": ["scorer-1"] * n,
        "latency_ms": [1.5] * n,
        "schema_version": [1] * n,
    }


def fill(store: Store) -> None:
    """A few rows in every table, enough for every docs/sql.md example to return rows."""
    store.insert(PREDICTIONS, predictions_batch())
    store.insert(
        GROUND_TRUTH,
        {
            "event_id": ["e0", "e1", "e2", "e2"],
            "model": ["credit"] * 4,
            "ts": [NOW + 5 * HOUR, NOW + 6 * HOUR, NOW + 7 * HOUR, NOW + 8 * HOUR],
            "label": ["0", "1", "1", "0"],
            "source": ["chargeback", "manual_review", "random_audit", "manual_review"],
        },
    )
    store.insert(
        LABELED,
        {
            "event_id": ["e0", "e1", "e2"],
            "model": ["credit"] * 3,
            "version": ["v1", "v2", "v1"],
            "role": ["champion", "challenger", "champion"],
            "segment": [{"region": "north"}, {"region": "south"}, {"region": "east"}],
            "prediction_ts": [NOW, NOW + 600_000, NOW + 1_200_000],
            "label_ts": [NOW + 5 * HOUR, NOW + 6 * HOUR, NOW + 8 * HOUR],
            "delay_ms": [5 * HOUR, 6 * HOUR - 600_000, 8 * HOUR - 1_200_000],
            "prediction": ["0", "1", "0"],
            "score": [0.2, 0.9, 0.4],
            "label": ["0", "1", "0"],
        },
    )
    windows = [NOW, NOW + HOUR]
    store.insert(
        WINDOW_METRICS,
        {
            "model": ["credit"] * 4,
            "version": ["v1"] * 4,
            "segment": ["all", "region=north", "all", "region=north"],
            "window_start": [windows[0], windows[0], windows[1], windows[1]],
            "window_end": [windows[0] + HOUR, windows[0] + HOUR, windows[1] + HOUR, windows[1] + HOUR],
            "metric": ["accuracy"] * 4,
            "value": [0.91, 0.88, 0.71, 0.65],
            "n": [100, 40, 90, 35],
            "n_predictions": [200, 80, 200, 80],
            "label_coverage": [0.5, 0.5, 0.45, 0.4375],
            "baseline": [0.9] * 4,
            "p_value": [0.7, 0.6, 0.001, 0.004],
            "threshold": [0.8] * 4,
            "breached": [0, 0, 1, 1],
            "updated_at": [NOW + 3 * HOUR] * 4,
            "revision": [1, 1, 1, 1],
        },
    )
    store.insert(
        DRIFT_RESULTS,
        {
            "model": ["credit"] * 4,
            "version": ["v1"] * 4,
            "window_start": [NOW] * 4,
            "window_end": [NOW + HOUR] * 4,
            "target": ["feature", "feature", "prediction", "label"],
            "feature": ["age", "region", "", ""],
            "test": ["ks", "chi2", "ks", "chi2"],
            "statistic": [0.31, 12.5, 0.05, 0.4],
            "p_value": [1e-6, 0.002, 0.4, 0.5],
            "p_adjusted": [4e-6, 0.004, 0.5, 0.5],
            "effect_size": [0.22, 0.15, 0.01, 0.0],
            "threshold": [0.05] * 4,
            "drifted": [1, 1, 0, 0],
            "n_reference": [10_000] * 4,
            "n_current": [200] * 4,
            "exact": [1, 1, 1, 1],
            "updated_at": [NOW + HOUR] * 4,
            "revision": [1] * 4,
        },
    )
    store.insert(
        DEAD_LETTERS,
        {
            "id": ["dl1", "dl2"],
            "source": ["driftline.predictions"] * 2,
            "position": ["0:17", "0:18"],
            "received_at": [NOW, NOW + 1],
            "reason": ["missing field", "invalid JSON"],
            "field": ["ts", ""],
            "payload": [b'{"event_id": "x"}', b"\xff\xfe not json"],
        },
    )
    store.insert(
        ALERTS,
        {
            "alert_id": ["credit/v1/accuracy/all", "credit/v1/psi/age"],
            "model": ["credit"] * 2,
            "version": ["v1"] * 2,
            "rule": ["accuracy_floor", "psi_age"],
            "severity": ["critical", "warning"],
            "status": ["open", "resolved"],
            "window_start": [NOW + HOUR] * 2,
            "window_end": [NOW + 2 * HOUR] * 2,
            "metric": ["accuracy", "psi"],
            "value": [0.71, 0.05],
            "threshold": [0.8, 0.2],
            "p_value": [0.001, None],
            "n": [90, 200],
            "message": ["accuracy 0.71 < 0.80", "psi back under 0.2"],
            "fired_at": [NOW + 3 * HOUR, NOW + 3 * HOUR],
        },
    )


def count(store: Store, table: str, final: bool = True) -> int:
    return store.query(f"SELECT count() AS n FROM driftline.{table}{' FINAL' if final else ''}").column("n")[0].as_py()


# --- schema -------------------------------------------------------------------------------------


def test_open_creates_every_table_idempotently(tmp_path):
    for _ in range(2):
        with open_store(tmp_path / "d") as s:
            names = set(s.query("SELECT name FROM system.tables WHERE database = 'driftline'").column("name").to_pylist())
    assert names == set(TABLES) | {MODEL_VERSIONS}
    with open_store(tmp_path / "d") as s:
        cols = s.query(
            "SELECT table, name, type FROM system.columns WHERE database = 'driftline' ORDER BY table, position"
        ).to_pylist()
    for table, spec in TABLES.items():
        stored = [(r["name"], r["type"]) for r in cols if r["table"] == table]
        assert stored == [(c.name, c.type) for c in spec.columns]
        assert tuple(n for n, _ in stored) == COLUMNS[table]


def test_retention_is_applied_and_changed_on_reopen(tmp_path):
    def engines(s):
        rows = s.query("SELECT name, engine_full FROM system.tables WHERE database = 'driftline'").to_pylist()
        return {r["name"]: r["engine_full"] for r in rows}

    with open_store(tmp_path / "d") as s:
        assert " TTL " not in engines(s)[PREDICTIONS]
    with open_store(tmp_path / "d", retention_days=90) as s:
        assert "toIntervalDay(90)" in engines(s)[PREDICTIONS]
        assert " TTL " not in engines(s)[WINDOW_METRICS]
    with open_store(tmp_path / "d") as s:
        assert "toIntervalDay(90)" in engines(s)[PREDICTIONS], "opening to read keeps the retention"
    with open_store(tmp_path / "d", retention_days=30) as s:
        assert "toIntervalDay(30)" in engines(s)[PREDICTIONS]
        assert "toIntervalDay(30)" in engines(s)[DEAD_LETTERS]
    with open_store(tmp_path / "d", retention_days=None) as s:
        assert " TTL " not in engines(s)[PREDICTIONS]
        s.insert(GROUND_TRUTH, {"event_id": ["old"], "model": ["m"], "ts": [0], "label": ["1"]})
        assert count(s, GROUND_TRUTH) == 1
    with open_store(tmp_path / "e", retention_days=7) as s:
        s.insert(GROUND_TRUTH, {"event_id": ["old", "new"], "model": ["m", "m"], "ts": [0, NOW], "label": ["1", "0"]})
        s.optimize(GROUND_TRUTH)
        assert s.query("SELECT event_id FROM driftline.ground_truth FINAL").column(0).to_pylist() == ["new"]


@pytest.mark.parametrize("bad", [0, -1, 10_001, 1.5, True, "90"])
def test_retention_validation(tmp_path, bad):
    with pytest.raises(ValueError, match="retention_days must be None"):
        open_store(tmp_path / "d", retention_days=bad)


def test_unknown_url_scheme_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="unsupported store URL 'kafka://x'"):
        open_store("kafka://x")


# --- inserts ------------------------------------------------------------------------------------


def test_insert_and_query_back(store):
    assert store.insert(PREDICTIONS, predictions_batch()) == 6
    rows = store.query("SELECT * FROM driftline.predictions FINAL ORDER BY event_id").to_pylist()
    assert [r["event_id"] for r in rows] == [f"e{i}" for i in range(6)]
    r0, r1 = rows[0], rows[1]
    assert dict(r0["features"]) == {"age": 30.0, "vip": 0.0}  # null income -> absent, bool -> 0/1
    assert dict(r1["features"]) == {"age": 31.0, "income": 1000.0, "vip": 1.0}
    assert dict(r0["cat_features"]) == {"region": "north"}
    assert r0["ts"] == dt.datetime.fromtimestamp(NOW / 1000, tz=dt.timezone.utc)
    assert r0["entity_id"] == "" and r0["explanation"] == [] and r0["schema_version"] == 1
    assert store.query(
        "SELECT features['age'] AS age FROM driftline.predictions FINAL WHERE event_id = 'e2'"
    ).to_pylist() == [{"age": 32.0}]
    df = store.query_df("SELECT event_id, score FROM driftline.predictions FINAL ORDER BY event_id")
    assert isinstance(df, pd.DataFrame) and len(df) == 6


def test_map_input_forms_store_the_same(tmp_path):
    names = ["a", "b", "c"]
    values = np.array([[1.0, np.nan, 3.0], [np.nan, np.nan, np.nan], [4.0, 5.0, 6.0]])
    dicts = [{k: (None if np.isnan(v) else v) for k, v in zip(names, row)} for row in values]
    per_row_keys = [[k for k, v in zip(names, row) if not np.isnan(v)] for row in values]
    per_row_vals = [[v for v in row if not np.isnan(v)] for row in values]
    base = {"event_id": ["x", "y", "z"], "model": ["m"] * 3, "version": ["v"] * 3, "ts": [NOW] * 3}
    forms = [
        {"features": dicts},
        {"features.keys": names, "features.values": values},
        {"features.keys": per_row_keys, "features.values": per_row_vals},
        {"features": [None if not d else d for d in [dict(zip(k, v)) for k, v in zip(per_row_keys, per_row_vals)]]},
    ]
    batches = [to_arrow_batch(PREDICTIONS, {**base, **f}).column("features").to_pylist() for f in forms]
    expected = [[("a", 1.0), ("c", 3.0)], [], [("a", 4.0), ("b", 5.0), ("c", 6.0)]]
    assert all(b == expected for b in batches)
    sliced = to_arrow_batch(PREDICTIONS, {**base, "features": dicts}).column("features").slice(1)
    with open_store(tmp_path / "d") as s:
        s.insert(PREDICTIONS, {k: v[1:] for k, v in base.items()} | {"features": sliced})
        got = s.query("SELECT features FROM driftline.predictions FINAL ORDER BY event_id").column(0).to_pylist()
    assert got == expected[1:]


def test_dictionary_encoded_columns_pass_through(store, monkeypatch):
    n = 3
    constant = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array(["credit"]))
    batch = to_arrow_batch(
        PREDICTIONS,
        {"event_id": ["a", "b", "c"], "model": constant, "version": constant, "host": constant, "ts": [NOW] * n,
         "features.keys": ["x"], "features.values": np.array([[1.0], [np.nan], [3.0]]),
         "cat_features.keys": ["r", "k"],
         "cat_features.values": np.array([["n", None], ["s", "n"], [np.nan, "n"]], dtype=object)},
    )
    assert pa.types.is_dictionary(batch.schema.field("model").type)
    assert pa.types.is_dictionary(batch.schema.field("features").type.key_type)
    assert pa.types.is_dictionary(batch.schema.field("cat_features").type.item_type)
    sent = []
    insert = store.backend.insert
    monkeypatch.setattr(store.backend, "insert", lambda table, data, settings: (sent.append(data), insert(table, data, settings)))
    store.insert_arrow(PREDICTIONS, batch)
    assert sent[0].schema == batch.schema  # handed to the engine as they are, not cast
    rows = store.query("SELECT model, host, features, cat_features FROM driftline.predictions FINAL ORDER BY event_id").to_pylist()
    assert [r["host"] for r in rows] == ["credit"] * 3
    assert [r["features"] for r in rows] == [[("x", 1.0)], [], [("x", 3.0)]]
    assert [r["cat_features"] for r in rows] == [[("r", "n")], [("r", "s"), ("k", "n")], [("k", "n")]]


def test_replay_does_not_double_count(store):
    fill(store)
    before = {t: count(store, t) for t in TABLES}
    fill(store)
    fill(store)
    assert {t: count(store, t) for t in TABLES} == before
    assert before[PREDICTIONS] == 6 and before[GROUND_TRUTH] == 3  # e2's later label replaced the earlier
    assert count(store, PREDICTIONS, final=False) >= 6
    store.optimize(PREDICTIONS)
    assert count(store, PREDICTIONS, final=False) == 6


def test_champion_and_challenger_with_one_event_id_are_both_kept(store):
    batch = predictions_batch(2)
    batch["event_id"] = ["same", "same"]
    store.insert(PREDICTIONS, batch)
    assert count(store, PREDICTIONS) == 2


def test_latest_revision_wins(store):
    def write(revision: int, value: float) -> None:
        store.insert(
            WINDOW_METRICS,
            {
                "model": ["credit"], "version": ["v1"], "segment": ["all"], "window_start": [NOW],
                "window_end": [NOW + HOUR], "metric": ["accuracy"], "value": [value], "n": [revision * 10],
                "n_predictions": [100], "label_coverage": [revision / 10], "updated_at": [NOW + revision],
                "revision": [revision],
            },
        )

    write(2, 0.8)
    write(3, 0.7)
    write(1, 0.9)  # an older revision replayed late must not win
    assert store.query("SELECT value, n, revision FROM driftline.window_metrics FINAL").to_pylist() == [
        {"value": 0.7, "n": 30, "revision": 3}
    ]
    assert store.query(
        "SELECT argMax(value, revision) AS v FROM driftline.window_metrics GROUP BY model, version, segment, window_start, metric"
    ).to_pylist() == [{"v": 0.7}]


def test_dead_letter_payload_bytes_round_trip(store):
    payload = b'\xff\x00{"bad": \xc3\x28}\n'
    store.insert(DEAD_LETTERS, {"id": ["a"], "received_at": [NOW], "payload": [payload], "reason": ["invalid JSON"]})
    row = store.query("SELECT payload, toValidUTF8(payload) AS text FROM driftline.dead_letters FINAL").to_pylist()[0]
    assert "\ufffd" in json.loads(format_result(store.query("SELECT * FROM driftline.dead_letters"), "json"))[0]["payload"]
    assert row["payload"] == payload
    assert row["text"].startswith("\ufffd")


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"event_id": ["a"], "model": ["m"], "version": ["v"], "ts": [0], "nope": [1]}, "predictions has no column 'nope'"),
        ({"event_id": ["a", "b"], "model": ["m"], "version": ["v"], "ts": [0]}, "equal lengths"),
        ({"event_id": ["a"], "model": ["m"], "ts": [0]}, r"missing \['version'\]"),
        ({"event_id": [None], "model": ["m"], "version": ["v"], "ts": [0]}, "is not Nullable but has 1 null"),
        ({"event_id": ["a"], "model": ["m"], "version": ["v"], "ts": ["yesterday"]}, "predictions.ts"),
        ({"event_id": ["a"], "model": ["m"], "version": ["v"], "ts": [0], "host.keys": ["x"]}, "is not a Map"),
        ({"event_id": ["a"], "model": ["m"], "version": ["v"], "ts": [0], "features.keys": [["x"]], "features.values": [[1.0, 2.0]]}, "same length in every row"),
        ({"event_id": ["a"], "model": ["m"], "version": ["v"], "ts": [0], "features.keys": ["x"]}, "needs exactly one of"),
    ],
)
def test_insert_validation(columns, message):
    with pytest.raises(ValueError, match=message):
        to_arrow_batch(PREDICTIONS, columns)


def test_unknown_table(store):
    with pytest.raises(ValueError, match="table must be one of"):
        store.insert("predictionz", {"event_id": ["a"]})


# --- parameters and quoting ---------------------------------------------------------------------


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_round_trip_through_params(store, name):
    store.insert(
        PREDICTIONS,
        {
            "event_id": ["a", "b"], "model": [name, "other"], "version": ["v", "v"], "ts": [NOW, NOW],
            "features": [{name: 1.5}, {"x": 2.0}], "cat_features": [{"k": name}, {"k": "plain"}],
        },
    )
    rows = store.query(
        "SELECT model, features[{f:String}] AS value, cat_features['k'] AS k FROM driftline.predictions FINAL "
        "WHERE model = {m:String}",
        {"m": name, "f": name},
    ).to_pylist()
    assert rows == [{"model": name, "value": 1.5, "k": name}]
    assert count(store, PREDICTIONS) == 2  # nothing dropped or injected
    echoed = store.query("SELECT {s:String} AS s, {arr:Array(String)} AS arr", {"s": name, "arr": [name, "x"]}).to_pylist()
    assert echoed == [{"s": name, "arr": [name, "x"]}]
    assert store.query(f"SELECT {quote_literal(name)} AS s").column(0)[0].as_py() == name
    if name:
        aliased = store.query(f"SELECT 1 AS {quote_identifier(name)}")
        assert aliased.column_names == [name]


def test_param_types(store):
    got = store.query(
        "SELECT {t:DateTime64(3, 'UTC')} AS t, {n:Nullable(String)} AS n, {i:UInt64} AS i, {f:Float64} AS f, "
        "{b:UInt8} AS b, {xs:Array(Float64)} AS xs",
        {"t": dt.datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=dt.timezone.utc), "n": None, "i": 2**63, "f": 0.1,
         "b": True, "xs": [1.0, 2.5]},
    ).to_pylist()[0]
    assert got == {"t": dt.datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=dt.timezone.utc), "n": None, "i": 2**63,
                   "f": 0.1, "b": 1, "xs": [1.0, 2.5]}
    assert param_text("x\ty") == "x\\ty"


@pytest.mark.parametrize("bad", ["1x", "a-b", "a b", "", "x;y"])
def test_param_names_are_validated(store, bad):
    with pytest.raises(ValueError, match="query parameter names must match"):
        store.query("SELECT 1", {bad: "v"})


def test_query_error_names_the_problem(store):
    with pytest.raises(StoreError, match="UNKNOWN_TABLE|Unknown table"):
        store.query("SELECT * FROM driftline.nope")


def test_inserts_from_two_threads_land_in_their_own_tables(store):
    import threading

    backend = store.backend
    backend.execute("CREATE TABLE driftline.left_side (x Int64, y String) ENGINE = MergeTree ORDER BY x")
    backend.execute("CREATE TABLE driftline.right_side (p Int64, q String) ENGINE = MergeTree ORDER BY p")
    errors = []

    def insert(table: str, names: tuple[str, str], offset: int) -> None:
        for _ in range(10):
            batch = pa.table({names[0]: np.arange(2_000) + offset, names[1]: [table] * 2_000})
            try:
                backend.insert(f"driftline.{table}", batch, {})
            except Exception as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)

    threads = [threading.Thread(target=insert, args=("left_side", ("x", "y"), 0)),
               threading.Thread(target=insert, args=("right_side", ("p", "q"), 10_000))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    left = store.query("SELECT count() AS n, min(x) AS lo, max(x) AS hi, groupUniqArray(y) AS ys FROM driftline.left_side")
    right = store.query("SELECT count() AS n, min(p) AS lo, max(p) AS hi, groupUniqArray(q) AS qs FROM driftline.right_side")
    assert left.to_pylist() == [{"n": 20_000, "lo": 0, "hi": 1_999, "ys": ["left_side"]}]
    assert right.to_pylist() == [{"n": 20_000, "lo": 10_000, "hi": 11_999, "qs": ["right_side"]}]


def test_closed_store(tmp_path):
    s = open_store(tmp_path / "d")
    s.close()
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.query("SELECT 1")


# --- locking ------------------------------------------------------------------------------------


def test_second_process_gets_a_plain_lock_error(tmp_path):
    data = tmp_path / "shared"
    holder = textwrap.dedent(
        f"""
        import sys, time
        from driftline.storage import open_store
        with open_store({str(data)!r}) as s:
            print("ready", flush=True)
            sys.stdin.readline()
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", holder], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLockedError) as info:
            open_store(data)
        assert str(info.value) == f"another driftline process is using {data.resolve()}; stop it or use --data-dir"
    finally:
        proc.communicate("\n", timeout=60)
    assert proc.returncode == 0
    with open_store(data) as s:  # free again once the other process is gone
        assert count(s, PREDICTIONS) == 0


def test_lock_error_in_the_second_process(tmp_path):
    data = tmp_path / "shared"
    with open_store(data):
        probe = textwrap.dedent(
            f"""
            from driftline.storage import open_store, StoreLockedError
            try:
                open_store({str(data)!r})
            except StoreLockedError as exc:
                print(exc)
            """
        )
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == f"another driftline process is using {data.resolve()}; stop it or use --data-dir"
    assert "Cannot lock file" not in out.stderr


# --- docs/sql.md --------------------------------------------------------------------------------


def sql_blocks() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", DOCS.read_text(encoding="utf-8"), flags=re.S)


def test_docs_have_examples():
    assert len(sql_blocks()) >= 10


def test_every_docs_example_runs(store):
    fill(store)
    for sql in sql_blocks():
        result = store.query(sql)
        assert result.num_rows > 0, sql


def test_docs_describe_every_table_and_column():
    text = DOCS.read_text(encoding="utf-8")
    for table, spec in TABLES.items():
        section = text.split(f"### `{table}`", 1)[1].split("\n### ", 1)[0]
        for column in spec.columns:
            assert f"| `{column.name}` | `{column.type}` |" in section, (table, column.name)
        assert f"`({', '.join(spec.order_by)})`" in section
        assert spec.engine in section


# --- formatting ---------------------------------------------------------------------------------


def test_format_result(store):
    fill(store)
    t = store.query(
        "SELECT event_id, ts, features, score FROM driftline.predictions FINAL WHERE event_id IN ('e0', 'e1') ORDER BY event_id"
    )
    as_json = json.loads(format_result(t, "json"))
    assert as_json[0]["event_id"] == "e0" and as_json[0]["features"] == {"age": 30.0, "vip": 0.0}
    assert as_json[0]["ts"].startswith(dt.datetime.fromtimestamp(NOW / 1000, tz=dt.timezone.utc).strftime("%Y-%m-%dT%H"))
    csv_text = format_result(t, "csv")
    assert csv_text.splitlines()[0] == "event_id,ts,features,score"
    assert '"{""age"":30.0,""vip"":0.0}"' in csv_text
    table_text = format_result(t, "table")
    assert "event_id" in table_text and "e1" in table_text and "2 rows" in table_text
    empty = store.query("SELECT 1 AS x WHERE 0")
    assert format_result(empty, "csv") == "x\n" and format_result(empty, "json") == "[]"
    with pytest.raises(ValueError, match="fmt must be one of"):
        format_result(t, "xml")


# --- throughput ---------------------------------------------------------------------------------


def test_insert_throughput_is_reported(store):
    n, k = 100_000, 20
    rng = np.random.default_rng(1)
    columns = {
        "event_id": np.char.add("ev-", np.arange(n).astype(str)).astype(object),
        "model": ["credit"] * n,
        "version": ["v1"] * n,
        "ts": NOW + np.arange(n, dtype=np.int64),
        "features.keys": [f"f{i}" for i in range(k)],
        "features.values": rng.normal(size=(n, k)),
        "score": rng.random(n),
    }
    t0 = time.perf_counter()
    store.insert(PREDICTIONS, columns)
    elapsed = time.perf_counter() - t0
    print(f"\nchDB insert: {n:,} predictions rows x {k} features in {elapsed:.2f} s = {n / elapsed:,.0f} rows/s")
    assert count(store, PREDICTIONS) == n
