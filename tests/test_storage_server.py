"""The ClickHouse server backend on a real server (Debian's clickhouse-server 18.16).

18.16 lacks DateTime64, Map and TTL, so these tests use a table it supports and exercise the
driver network path: connect, batch insert, parameters, SQL errors, an outage mid-stream with
the local buffer, and back-pressure. The outage lasts ``DRIFTLINE_OUTAGE_SECONDS`` (default 15;
the issue's 60 s works too, at the cost of a slower suite). The tests that stop the server
restart it before they end.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from driftline.storage import ServerBackend, Store, StoreError, StoreUnavailableError, open_store
from driftline.storage.base import INSERT_SETTINGS
from driftline.storage.server import ServerAddress, inline_params

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "clickhouse-server.sh"
OUTAGE_SECONDS = float(os.environ.get("DRIFTLINE_OUTAGE_SECONDS", "15"))
TABLE_DDL = (
    "CREATE TABLE IF NOT EXISTS {db}.test_x (id UInt64, model String, ts DateTime, value Float64) "
    "ENGINE = ReplacingMergeTree ORDER BY (model, id)"
)
HOSTILE = [
    "it's",
    'double"quote',
    "back\\slash",
    "trailing\\",
    "`backtick`",
    "semi;colon; DROP TABLE test_x; --",
    "tab\tnew\nline",
    "\\N",
    "ünïcødé 😀 模型",
    "{m:String}",
    "/* c */ -- x",
    "",
]
T0 = 1_700_000_000


def batch(start: int, n: int, model: str = "m") -> pa.Table:
    ids = np.arange(start, start + n, dtype=np.uint64)
    return pa.table({
        "id": ids,
        "model": pa.array([model] * n),
        "ts": pa.array((T0 + ids.astype(np.int64)) * 1000, pa.timestamp("ms", "UTC")),
        "value": ids.astype(np.float64) / 2,
    })


def script(action: str) -> None:
    subprocess.run(["bash", str(SCRIPT), action], check=True, capture_output=True, timeout=120)


def answers() -> bool:
    return subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True, timeout=30).returncode == 0


def totals(backend: ServerBackend, db: str, final: bool = True) -> tuple[int, int]:
    row = backend.query(f"SELECT count() AS n, sum(id) AS s FROM {db}.test_x{' FINAL' if final else ''}").to_pylist()[0]
    return row["n"], row["s"]


@pytest.fixture(scope="module")
def server(clickhouse_server):
    """A database unique to this run with an empty ``test_x``; the server runs again at the end."""
    db = f"driftline_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    address = ServerAddress(clickhouse_server.host, clickhouse_server.port, db, "default", "")
    with ServerBackend(address, retries=2, backoff=0.05) as admin:
        admin.execute(f"CREATE DATABASE IF NOT EXISTS {db}")
    yield address
    script("start")
    with ServerBackend(address, retries=5, backoff=0.2) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {db}")


@pytest.fixture
def table(server):
    with ServerBackend(server, retries=2, backoff=0.05) as admin:
        admin.execute(f"DROP TABLE IF EXISTS {server.database}.test_x")
        admin.execute(TABLE_DDL.format(db=server.database))
    return f"{server.database}.test_x"


# -- without a server ------------------------------------------------------------------------


def test_url_parsing_and_env_credentials(monkeypatch):
    monkeypatch.delenv("DRIFTLINE_CLICKHOUSE_USER", raising=False)
    monkeypatch.delenv("DRIFTLINE_CLICKHOUSE_PASSWORD", raising=False)
    a = ServerAddress.from_url("clickhouse://ana:p%40ss@10.0.0.1:9440/metrics")
    assert (a.host, a.port, a.database, a.user, a.password) == ("10.0.0.1", 9440, "metrics", "ana", "p@ss")
    b = ServerAddress.from_url("clickhouse://h")
    assert (b.port, b.database, b.user, b.password) == (9000, "driftline", "default", "")
    monkeypatch.setenv("DRIFTLINE_CLICKHOUSE_USER", "svc")
    monkeypatch.setenv("DRIFTLINE_CLICKHOUSE_PASSWORD", "env-secret")
    c = ServerAddress.from_url("clickhouse://h:9000/db")
    assert (c.user, c.password) == ("svc", "env-secret")
    assert ServerAddress.from_url("clickhouse://u:url-secret@h/db").password == "url-secret"
    for text in (repr(c), str(c), c.url):
        assert "env-secret" not in text
    with pytest.raises(ValueError, match=r"url must look like .*u:\*\*\*@") as info:
        ServerAddress.from_url("http://u:hidden@h/db")
    assert "hidden" not in str(info.value)
    with pytest.raises(ValueError, match="database must be a plain identifier"):
        ServerAddress.from_url("clickhouse://h/bad-name")
    with pytest.raises(ValueError, match="query string"):
        ServerAddress.from_url("clickhouse://h/db?secure=1")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"retries": -1}, "retries must be an int >= 0, got -1"),
        ({"buffer_rows": 0}, "buffer_rows must be an int >= 1, got 0"),
        ({"backoff": 0}, "backoff must be a number > 0, got 0"),
        ({"max_backoff": 0.1}, r"max_backoff must be a number >= backoff \(0.2\), got 0.1"),
        ({"buffer_timeout": -1.0}, "buffer_timeout must be a number > 0, got -1.0"),
    ],
)
def test_invalid_parameters_name_the_parameter(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ServerBackend("clickhouse://127.0.0.1:1/db", **kwargs)


def test_inline_params_only_replaces_placeholders_outside_literals():
    sql = "SELECT {a:String}, '{a:String}', `{a:String}` /* {a:String} */ -- {a:String}\n, {n:Nullable(UInt8)}"
    out = inline_params(sql, {"a": "x'; DROP", "n": "\\N"})
    assert out == (
        "SELECT 'x\\'; DROP', '{a:String}', `{a:String}` /* {a:String} */ -- {a:String}\n, CAST(NULL AS Nullable(UInt8))"
    )
    assert inline_params("SELECT {t:Identifier}", {"t": "we`ird"}) == "SELECT `we\\`ird`"
    with pytest.raises(TypeError, match="must be in text form"):
        inline_params("SELECT {a:String}", {"a": 3})


def test_driftline_schema_columns_convert_to_driver_values():
    from driftline.storage import PREDICTIONS, TABLES, to_arrow_batch
    from driftline.storage.server import _python_values

    data = to_arrow_batch(PREDICTIONS, {
        "event_id": ["a", "b"], "model": ["m", "m"], "version": ["v1", "v1"], "ts": [1_700_000_000_123, 1_700_000_000_456],
        "features.keys": ["x", "y"], "features.values": np.array([[1.0, np.nan], [2.0, 3.0]]),
        "cat_features.keys": ["r"], "cat_features.values": np.array([["n"], [None]], dtype=object),
        "score": [0.5, None],
    })
    spec = TABLES[PREDICTIONS]
    values = {n: _python_values(data.column(n).combine_chunks(), spec.by_name[n].type) for n in data.column_names}
    assert values["ts"] == [1_700_000_000_123, 1_700_000_000_456]
    assert values["features"] == [{"x": 1.0}, {"x": 2.0, "y": 3.0}]
    assert values["cat_features"] == [{"r": "n"}, {}]
    assert values["score"] == [0.5, None]
    assert values["model"] == ["m", "m"]


# -- on the server ---------------------------------------------------------------------------


@pytest.mark.clickhouse_server
def test_connect_and_batch_insert_100k(server, table):
    with ServerBackend(server) as backend:
        assert backend.server_version[:1] >= (18,)
        assert repr(backend) == f"ServerBackend('clickhouse://default@{server.host}:{server.port}/{server.database}')"
        n = 100_000
        start = time.perf_counter()
        backend.insert(table, batch(0, n), INSERT_SETTINGS)
        elapsed = time.perf_counter() - start
        result = backend.query(f"SELECT count() AS n, sum(id) AS s, min(ts) AS lo, max(ts) AS hi, sum(value) AS v FROM {table}")
        row = result.to_pylist()[0]
        assert (row["n"], row["s"], row["v"]) == (n, n * (n - 1) // 2, n * (n - 1) / 4)
        assert (row["lo"].timestamp(), row["hi"].timestamp()) == (T0, T0 + n - 1)
        assert result.schema.field("lo").type.tz is not None
        stats = backend.stats()
        assert (stats["sent_rows"], stats["buffered_rows"], stats["retries"], stats["failures"]) == (n, 0, 0, 0)
        assert elapsed < 20


@pytest.mark.clickhouse_server
def test_hostile_names_round_trip_through_params(server, table):
    with ServerBackend(server) as backend:
        store = Store(backend, server.database, None)
        for i, name in enumerate(HOSTILE):
            backend.insert(table, batch(i, 1, model=name), {})
        backend.insert(table, batch(100, 1, model="other"), {})
        for i, name in enumerate(HOSTILE):
            rows = store.query(
                f"SELECT model, id, {{m:String}} AS echo FROM {table} WHERE model = {{m:String}} AND has({{ids:Array(UInt64)}}, id)",
                {"m": name, "ids": [i, 999]},
            ).to_pylist()
            assert rows == [{"model": name, "id": i, "echo": name}]
        assert totals(backend, server.database) == (len(HOSTILE) + 1, sum(range(len(HOSTILE))) + 100)


@pytest.mark.clickhouse_server
def test_sql_errors_raise_at_once_without_retry(server, table):
    with ServerBackend(server, retries=5, backoff=1.0) as backend:
        start = time.perf_counter()
        with pytest.raises(StoreError, match="Syntax error") as info:
            backend.execute("SELEC 1")
        assert "Stack trace" not in str(info.value) and not isinstance(info.value, StoreUnavailableError)
        with pytest.raises(StoreError, match="doesn't exist"):
            backend.insert(f"{server.database}.no_such_table", batch(0, 10), {})
        with pytest.raises(StoreError, match="no columns"):
            backend.insert(table, batch(0, 10).append_column("extra", pa.array([1] * 10)), {})
        assert time.perf_counter() - start < 2
        stats = backend.stats()
        assert (stats["retries"], stats["failures"], stats["buffered_rows"]) == (0, 3, 0)


@pytest.mark.clickhouse_server
def test_password_never_in_errors_repr_or_logs(server, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    secret = f"pw-{uuid.uuid4().hex}"
    url = f"clickhouse://default:{secret}@{server.host}:{server.port}/{server.database}"
    with pytest.raises(StoreError) as info:
        ServerBackend(url, retries=0)
    monkeypatch.setenv("DRIFTLINE_CLICKHOUSE_PASSWORD", secret)
    with pytest.raises(StoreError) as env_info:
        open_store(f"clickhouse://{server.host}:{server.port}/{server.database}")
    for exc in (info.value, env_info.value):
        assert "password" in str(exc).lower()
        assert secret not in str(exc) and secret not in repr(exc)
    assert secret not in repr(ServerAddress.from_url(url))
    assert secret not in caplog.text
    assert all(secret not in str(r.args) for r in caplog.records)


@pytest.mark.clickhouse_server
def test_open_store_url_explains_an_old_server(server, monkeypatch):
    monkeypatch.delenv("DRIFTLINE_CLICKHOUSE_PASSWORD", raising=False)
    db = f"{server.database}_schema"
    with pytest.raises(StoreError, match=r"ClickHouse 18\.16.* needs ClickHouse 24\.x or later"):
        open_store(f"clickhouse://{server.host}:{server.port}/{db}", retention_days=None)
    with ServerBackend(server) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {db}")


@pytest.mark.clickhouse_server
def test_outage_mid_stream_loses_nothing(server, table):
    rows_per_batch = 1000
    backend = ServerBackend(server, connect_timeout=2, send_receive_timeout=10, backoff=0.05, max_backoff=1.0)
    done = threading.Event()
    produced = [0]
    peak = [0]
    errors: list[BaseException] = []

    def produce() -> None:
        deadline = time.monotonic() + OUTAGE_SECONDS + 90
        try:
            while not done.is_set() and produced[0] < 2000 and time.monotonic() < deadline:
                backend.insert(table, batch(produced[0] * rows_per_batch, rows_per_batch), INSERT_SETTINGS)
                produced[0] += 1
                peak[0] = max(peak[0], backend.stats()["buffered_rows"])
                time.sleep(0.03)
        except BaseException as exc:  # re-raised in the test thread
            errors.append(exc)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        time.sleep(0.5)
        script("stop")
        assert not answers(), "the server still answers after scripts/clickhouse-server.sh stop"
        stopped = produced[0]
        time.sleep(OUTAGE_SECONDS)
        during = produced[0] - stopped
        script("start")
        time.sleep(1.0)
    finally:
        done.set()
        producer.join(timeout=60)
    assert not errors, errors
    assert not producer.is_alive()
    assert during > 0 and peak[0] > 0, "no batch was produced while the server was down"
    backend.flush(timeout=60)
    n = produced[0] * rows_per_batch
    stats = backend.stats()
    assert stats["retries"] > 0 and stats["buffered_rows"] == 0 and stats["rejected_rows"] == 0
    assert stats["sent_rows"] >= n
    backend.insert(table, batch(0, rows_per_batch), INSERT_SETTINGS)  # a replay overwrites
    assert totals(backend, server.database) == (n, n * (n - 1) // 2)
    backend.execute(f"OPTIMIZE TABLE {table} FINAL")
    assert totals(backend, server.database, final=False) == (n, n * (n - 1) // 2)
    backend.close()


@pytest.mark.clickhouse_server
def test_full_buffer_blocks_then_raises(server, table):
    backend = ServerBackend(server, connect_timeout=2, retries=1, backoff=0.05, max_backoff=0.2, buffer_rows=1000, buffer_timeout=1.5)
    try:
        with _stopped(server):
            start = time.perf_counter()
            backend.insert(table, batch(0, 600), {})
            backend.insert(f"{server.database}.no_such_table", batch(0, 100), {})
            assert time.perf_counter() - start < 1.0
            assert backend.stats()["buffered_rows"] == 700
            start = time.perf_counter()
            with pytest.raises(StoreUnavailableError, match=r"buffer is full \(700 of buffer_rows=1000 rows\)"):
                backend.insert(table, batch(600, 600), {})
            assert 1.4 <= time.perf_counter() - start < 5
            with pytest.raises(StoreUnavailableError, match="exceeds buffer_rows=1000"):
                backend.insert(table, batch(600, 1001), {})
            with pytest.raises(StoreUnavailableError, match="700 rows in 2 batches are still buffered"):
                backend.flush(timeout=0.3)
            with pytest.raises(StoreUnavailableError, match="did not answer after 2 attempts"):
                backend.query("SELECT 1")
        with pytest.raises(StoreError, match="100 buffered rows into .*no_such_table was rejected"):
            backend.flush(timeout=30)
        stats = backend.stats()
        assert (stats["buffered_rows"], stats["rejected_rows"], stats["sent_rows"]) == (0, 100, 600)
        assert totals(backend, server.database) == (600, 600 * 599 // 2)
    finally:
        backend.close()


class _stopped:
    def __init__(self, server: ServerAddress) -> None:
        self.server = server

    def __enter__(self) -> None:
        script("stop")
        if answers():
            script("start")
            pytest.skip("the running clickhouse-server was not started by scripts/clickhouse-server.sh")

    def __exit__(self, *exc: object) -> None:
        script("start")
