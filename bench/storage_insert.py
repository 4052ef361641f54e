"""Insert throughput of the embedded chDB store on predictions-like rows.

Builds ``--rows`` prediction rows (10 numeric features, 3 categorical, score, probabilities,
host, latency, entity id), then times ``Store.insert`` (Python columns -> Arrow batch -> chDB)
``--repeats`` times with fresh event ids, and reports the median rows/s for the whole call and
for the engine part alone (``Store.insert_arrow`` of the ready batch).

With ``--server URL`` the same run also inserts into a ClickHouse server through
:class:`~driftline.storage.ServerBackend` (clickhouse-driver, native protocol), in a fresh
database that is dropped afterwards (the URL's database is not touched). On ClickHouse 24.x or
later the server gets driftline's schema and both the full and the narrow rows; an older server
(Debian's 18.16 has no DateTime64 or Map) gets a ``predictions`` table of the same columns without
the three map columns (``DateTime`` for ``DateTime64``, ``String`` for ``LowCardinality``) and the
narrow rows only, which chDB also inserts in the same run.

    python bench/storage_insert.py                    # 1M rows, 3 runs, prints a markdown section
    python bench/storage_insert.py --server clickhouse://default:@127.0.0.1:9000/default
    python bench/storage_insert.py --update-docs      # also writes it into docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

from driftline.storage import PREDICTIONS, TABLES, ServerBackend, Store, open_store, to_arrow_batch
from driftline.storage.server import ServerAddress

from _docs import update_section

SECTION = "## Storage — chDB insert throughput"


def make_columns(n: int, run: int, rng: np.random.Generator, prefix: str = "run") -> dict:
    numeric = [f"num_{i}" for i in range(10)]
    categorical = [f"cat_{i}" for i in range(3)]
    levels = np.array([f"level_{i}" for i in range(10)], dtype=object)
    values = rng.normal(size=(n, len(numeric)))
    values[rng.random(values.shape) < 0.02] = np.nan  # 2 % missing features -> absent keys
    score = rng.random(n)
    ids = np.char.add(f"{prefix}{run}-", np.arange(n).astype(str)).astype(object)
    start = int(time.time() * 1000) - 3_600_000
    return {
        "event_id": ids,
        "model": ["credit"] * n,
        "version": ["v1"] * n,
        "ts": start + np.arange(n, dtype=np.int64) * 3,
        "role": ["champion"] * n,
        "features.keys": numeric,
        "features.values": values,
        "cat_features.keys": categorical,
        "cat_features.values": levels[rng.integers(0, len(levels), size=(n, len(categorical)))],
        "prediction": np.where(score > 0.5, "1", "0").astype(object),
        "score": score,
        "probabilities.keys": ["0", "1"],
        "probabilities.values": np.column_stack([1 - score, score]),
        "action": np.where(score > 0.5, "decline", "approve").astype(object),
        "host": ["scorer-1"] * n,
        "latency_ms": rng.gamma(2.0, 3.0, n),
        "entity_id": ids,
        "schema_version": np.ones(n, dtype=np.uint16),
    }


def run(rows: int, repeats: int) -> dict:
    rng = np.random.default_rng(7)
    total, engine, convert, narrow = [], [], [], []
    maps = ("features", "cat_features", "probabilities")
    with tempfile.TemporaryDirectory() as d, open_store(d) as store:
        for r in range(repeats):
            columns = make_columns(rows, 2 * r, rng)
            t0 = time.perf_counter()
            store.insert(PREDICTIONS, columns)
            total.append(time.perf_counter() - t0)
            columns = make_columns(rows, 2 * r + 1, rng)
            t0 = time.perf_counter()
            batch = to_arrow_batch(PREDICTIONS, columns)
            t1 = time.perf_counter()
            store.insert_arrow(PREDICTIONS, batch)
            engine.append(time.perf_counter() - t1)
            convert.append(t1 - t0)
            batch = to_arrow_batch(PREDICTIONS, make_columns(rows, 2 * r + 1, rng, prefix="narrow")).drop_columns(list(maps))
            t0 = time.perf_counter()
            store.insert_arrow(PREDICTIONS, batch)
            narrow.append(time.perf_counter() - t0)
        stored = store.query("SELECT count() AS n FROM driftline.predictions FINAL").column("n")[0].as_py()
    assert stored == 3 * rows * repeats, stored
    return {
        "rows": rows,
        "repeats": repeats,
        "batch_mb": batch.nbytes / 1e6,
        "total_s": statistics.median(total),
        "engine_s": statistics.median(engine),
        "convert_s": statistics.median(convert),
        "narrow_s": statistics.median(narrow),
    }


MAPS = ("features", "cat_features", "probabilities")


def legacy_predictions_sql(database: str) -> str:
    """``predictions`` for servers older than 24.x: same columns and key, no maps."""
    spec = TABLES[PREDICTIONS]
    columns = [
        f"    {c.name} {c.type.replace('DateTime64(3, ' + chr(39) + 'UTC' + chr(39) + ')', 'DateTime').replace('LowCardinality(String)', 'String')}"
        for c in spec.columns
        if not c.is_map
    ]
    body = ",\n".join(columns)
    return (f"CREATE TABLE {database}.{PREDICTIONS}\n(\n{body}\n)\nENGINE = {spec.engine}\n"
            f"PARTITION BY {spec.partition_by}\nORDER BY ({', '.join(spec.order_by)})")


def run_server(url: str, rows: int, repeats: int) -> dict:
    """Median insert times into a ClickHouse server through ``ServerBackend`` (fresh database)."""
    address = dataclasses.replace(ServerAddress.from_url(url), database=f"driftline_bench_{os.getpid()}")
    rng = np.random.default_rng(8)
    backend = ServerBackend(address)
    full = backend.server_version >= (24,)
    store = Store(backend, address.database, None)
    wide, narrow = [], []
    try:
        if full:
            store.create_schema()
        else:
            backend.execute(f"CREATE DATABASE {address.database}")
            backend.execute(legacy_predictions_sql(address.database))
        for r in range(repeats):
            if full:
                batch = to_arrow_batch(PREDICTIONS, make_columns(rows, 2 * r, rng, prefix="server"))
                t0 = time.perf_counter()
                store.insert_arrow(PREDICTIONS, batch)
                wide.append(time.perf_counter() - t0)
            batch = to_arrow_batch(PREDICTIONS, make_columns(rows, 2 * r + 1, rng, prefix="server")).drop_columns(list(MAPS))
            t0 = time.perf_counter()
            store.insert_arrow(PREDICTIONS, batch)
            narrow.append(time.perf_counter() - t0)
        stored = store.query(f"SELECT count() AS n FROM {address.database}.{PREDICTIONS} FINAL").column("n")[0].as_py()
        assert stored == rows * repeats * (2 if full else 1), stored
        assert backend.stats()["buffered_rows"] == 0 and backend.stats()["retries"] == 0, backend.stats()
    finally:
        try:
            backend.execute(f"DROP DATABASE IF EXISTS {address.database}")
        finally:
            store.close()
    return {
        "version": ".".join(map(str, backend.server_version)),
        "address": f"{address.host}:{address.port}",
        "wide_s": statistics.median(wide) if wide else None,
        "narrow_s": statistics.median(narrow),
    }


def server_markdown(res: dict, server: dict) -> str:
    import clickhouse_driver

    rows = res["rows"]
    lines = [
        "### Into a ClickHouse server (`--server`)",
        "",
        f"The same run inserts into clickhouse-server {server['version']} at {server['address']} (loopback; when",
        "that is this machine, the server shares its cores with the benchmark) through `ServerBackend`",
        f"(clickhouse-driver {clickhouse_driver.__version__}, native protocol,",
        "columnar `INSERT ... VALUES` with the rows as data), one `Store.insert_arrow` of the ready",
        f"batch per run, median of {res['repeats']} runs with fresh event ids.",
    ]
    if server["wide_s"] is None:
        lines += [
            f"ClickHouse {server['version']} has no `Map` or `DateTime64`, so only the rows without the 3 map",
            "columns are inserted, into a `predictions` table of the same key with `DateTime`",
            "and `String` in their place; chDB's row is the same rows into driftline's schema.",
        ]
    lines += ["", "| rows | chDB rows/s | server rows/s | chDB / server |", "| --- | ---: | ---: | ---: |"]
    pairs = [("without the 3 map columns", res["narrow_s"], server["narrow_s"])]
    if server["wide_s"] is not None:
        pairs.insert(0, ("full predictions rows", res["engine_s"], server["wide_s"]))
    for label, chdb_s, server_s in pairs:
        lines.append(f"| {label} | {rows / chdb_s:,.0f} | {rows / server_s:,.0f} | {server_s / chdb_s:.1f}x |")
    lines += [
        "",
        "The server path converts each Arrow column to Python values for clickhouse-driver, which",
        "serialises them into native blocks in Python; chDB reads the Arrow buffers in process.",
    ]
    return "\n".join(lines) + "\n"


def markdown(res: dict, argv: list[str]) -> str:
    import chdb

    rows = res["rows"]
    cmd = " ".join(["python bench/storage_insert.py", *(a for a in argv if a != "--update-docs")])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"""{SECTION}

Command: `{cmd}`

One `Store.insert` of {rows:,} predictions rows (10 numeric features with 2 % missing, 3
categorical, score, two class probabilities, action, host, latency, entity id; Arrow batch
{res['batch_mb']:.0f} MB) into the `predictions` table (`ReplacingMergeTree`, partitioned by day,
sorted by `(model, version, event_id)`), median of {res['repeats']} runs with fresh event ids.
Map columns are passed in the dense form (`features.keys` + a 2-D `features.values` array);
string columns as Python lists or object arrays. Inserts run with `optimize_on_insert = 0`
(deduplication is left to merges and to `FINAL` on read).

| step | median time | rows/s |
| --- | ---: | ---: |
| `Store.insert` (columns -> Arrow -> chDB) | {res['total_s']:.2f} s | {rows / res['total_s']:,.0f} |
| columns -> Arrow batch (`to_arrow_batch`) | {res['convert_s']:.2f} s | {rows / res['convert_s']:,.0f} |
| engine only (`Store.insert_arrow`: `INSERT ... SELECT ... FROM Python(batch)`) | {res['engine_s']:.2f} s | {rows / res['engine_s']:,.0f} |
| engine only, same rows without the 3 map columns | {res['narrow_s']:.2f} s | {rows / res['narrow_s']:,.0f} |

chDB {chdb.__version__} (ClickHouse {chdb.engine_version}), Python {platform.python_version()},
{os.cpu_count()} cores (1-minute load average {load:.1f} at the end of the
run). Rows carry 15 map entries each; ClickHouse's cost is dominated by sorting the block by the
key and writing the map columns, so narrower rows insert faster.
""" + ("\n" + server_markdown(res, res["server"]) if res.get("server") else "")



def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--server", metavar="URL", help="also insert into this ClickHouse server, e.g. "
                        "clickhouse://default:@127.0.0.1:9000/default (a fresh database is created and dropped)")
    parser.add_argument("--update-docs", action="store_true", help="write the section into docs/benchmarks.md")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.repeats < 1:
        parser.error(f"--rows and --repeats must be >= 1, got {args.rows} and {args.repeats}")
    res = run(args.rows, args.repeats)
    if args.server:
        res["server"] = run_server(args.server, args.rows, args.repeats)
    section = markdown(res, argv)
    print(section)
    if args.update_docs:
        print(f"wrote {update_section(SECTION, section)}")


if __name__ == "__main__":
    main()
