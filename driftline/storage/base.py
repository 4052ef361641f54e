"""The store: schema creation, columnar inserts, parameterised queries — over any backend.

A :class:`Backend` moves SQL and Arrow tables to one ClickHouse engine (embedded chDB in
:mod:`driftline.storage.embedded`; a server later). Everything else — the DDL, turning Python
columns into an Arrow batch of the table's types, binding query parameters, formatting results —
is here and shared, so every backend runs the same SQL on the same schema.

Examples
--------
>>> quote_literal("it's")
"'it\\\\'s'"
>>> quote_identifier("we`ird")
'`we\\\\`ird`'
>>> param_text("a\\tb")
'a\\\\tb'
>>> param_text(["x", "y'"])
"['x','y\\\\'']"

"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import re
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from driftline.storage.schema import (
    DATABASE,
    DEFAULT_RETENTION_DAYS,
    TABLES,
    TableSpec,
    create_database_sql,
    create_table_sql,
    create_view_sql,
    check_retention,
    modify_ttl_sql,
)

__all__ = [
    "Backend",
    "Store",
    "StoreError",
    "StoreLockedError",
    "format_result",
    "param_text",
    "quote_identifier",
    "quote_literal",
    "to_arrow_batch",
]

FORMATS = ("table", "csv", "json")

# ReplacingMergeTree would otherwise deduplicate each inserted block while writing it (about 2x
# the insert cost); duplicates are removed by background merges and by FINAL/argMax on read.
INSERT_SETTINGS: dict[str, int | str] = {"optimize_on_insert": 0}
_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class StoreError(RuntimeError):
    """The store could not be opened or a statement failed."""


class StoreLockedError(StoreError):
    """Another process holds the embedded store's data directory."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"another driftline process is using {path}; stop it or use --data-dir")


@runtime_checkable
class Backend(Protocol):
    """Transport to one ClickHouse engine. Backends hold no schema knowledge."""

    def execute(self, sql: str) -> None:
        """Run a statement that returns no rows (DDL, ``OPTIMIZE``, ``ALTER``)."""

    def insert(self, table: str, data: pa.Table, settings: Mapping[str, int | str]) -> None:
        """Insert an Arrow table whose columns match ``table`` (``db.name``), with query ``settings``."""

    def query(self, sql: str, params: Mapping[str, str] | None = None) -> pa.Table:
        """Run a ``SELECT``; ``params`` are ``{name:Type}`` values already in ClickHouse text form."""

    def close(self) -> None:
        """Release the engine; idempotent."""


def quote_literal(value: str) -> str:
    """ClickHouse string literal for ``value``: backslash, quote and NUL escaped.

    Examples
    --------
    >>> print(quote_literal("a\\\\b'c"))
    'a\\\\b\\'c'

    """
    if not isinstance(value, str):
        raise TypeError(f"value must be a str, got {type(value).__name__}")
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'").replace("\0", "\\0") + "'"


def quote_identifier(name: str) -> str:
    """ClickHouse back-quoted identifier for ``name``.

    Examples
    --------
    >>> print(quote_identifier("my col"))
    `my col`

    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty str, got {name!r}")
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`").replace("\0", "\\0") + "`"


def _escape_text(value: str) -> str:
    # Query-parameter values are read in ClickHouse's TSV "escaped" text format.
    return (
        value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r").replace("\0", "\\0")
    )


def _datetime_text(value: dt.datetime | dt.date) -> str:
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value.isoformat(sep=" ", timespec="milliseconds")
    return value.isoformat()


def _element_literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return quote_literal(value)
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value)) if math.isfinite(value) else ("nan" if math.isnan(value) else ("inf" if value > 0 else "-inf"))
    if isinstance(value, (dt.datetime, dt.date)):
        return quote_literal(_datetime_text(value))
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_element_literal(v) for v in value) + "]"
    raise TypeError(f"query parameter values must be str, int, float, bool, None, datetime or a list of them, got {type(value).__name__}")


def param_text(value: Any) -> str:
    """Text form of a query-parameter value, as ClickHouse parses ``{name:Type}``.

    Strings are passed whole (never spliced into SQL): only the escaping of ClickHouse's text
    format is applied, so quotes, backslashes, semicolons and any Unicode round-trip unchanged.
    ``None`` is ``NULL`` (for ``Nullable`` types); datetimes are rendered in UTC; lists become
    array literals.

    Examples
    --------
    >>> param_text(None)
    '\\\\N'
    >>> param_text(dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc))
    '2024-01-02 03:04:05.000'
    >>> param_text(True), param_text(3), param_text(0.5)
    ('1', '3', '0.5')

    """
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return _escape_text(value)
    if isinstance(value, (list, tuple)):
        # Array values are read as one quoted literal, without the outer text-format escaping.
        return _element_literal(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return _datetime_text(value)
    return _element_literal(value)


def bind_params(params: Mapping[str, Any] | None) -> dict[str, str]:
    """Validate parameter names and render values with :func:`param_text`."""
    if not params:
        return {}
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping of name -> value, got {type(params).__name__}")
    out = {}
    for name, value in params.items():
        if not isinstance(name, str) or not _PARAM_NAME.match(name):
            raise ValueError(f"query parameter names must match [A-Za-z_][A-Za-z0-9_]*, got {name!r}")
        out[name] = param_text(value)
    return out


def _accepted_type(actual: pa.DataType, target: pa.DataType) -> pa.DataType:
    """``actual`` when it is ``target`` dictionary-encoded (also as map keys or values), else ``target``."""
    if pa.types.is_dictionary(actual) and actual.value_type == target:
        return actual
    if (
        pa.types.is_map(actual)
        and pa.types.is_map(target)
        and _decoded_type(actual.key_type) == target.key_type
        and _decoded_type(actual.item_type) == target.item_type
    ):
        return actual
    return target


def _decoded_type(t: pa.DataType) -> pa.DataType:
    return t.value_type if pa.types.is_dictionary(t) else t


def _column_array(spec: TableSpec, name: str, values: Any) -> pa.Array:
    column = spec.by_name[name]
    atype = column.arrow_type
    try:
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if isinstance(values, pa.Array):
            arr = values
        elif pa.types.is_timestamp(atype):
            arr = _timestamps(values, atype)
        elif column.binary:
            arr = pa.array([v.encode("utf-8") if isinstance(v, str) else v for v in values], pa.binary())
        elif isinstance(values, np.ndarray):
            arr = pa.array(values, from_pandas=column.nullable)
        else:
            arr = pa.array(values, atype, from_pandas=column.nullable)
        if arr.type != _accepted_type(arr.type, atype):
            arr = arr.cast(atype)
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"column {spec.name}.{name} ({column.type}): cannot convert values: {exc}") from None
    if column.is_map:
        arr = _drop_null_entries(arr)
    elif arr.null_count and not column.nullable:
        raise ValueError(f"column {spec.name}.{name} ({column.type}) is not Nullable but has {arr.null_count} null values")
    return arr


def _timestamps(values: Any, atype: pa.DataType) -> pa.Array:
    if isinstance(values, np.ndarray) and np.issubdtype(values.dtype, np.datetime64):
        return pa.array(values.astype("datetime64[ms]").astype(np.int64), pa.int64()).cast(atype)
    if isinstance(values, np.ndarray) and np.issubdtype(values.dtype, np.integer):
        return pa.array(values.astype(np.int64), pa.int64()).cast(atype)
    if hasattr(values, "dtype") and hasattr(values, "to_numpy"):  # pandas Series / Index
        return pa.array(values).cast(atype)
    values = list(values)
    if values and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        return pa.array(values, pa.int64()).cast(atype)
    return pa.array(values, atype)


def _drop_null_entries(arr: pa.Array) -> pa.Array:
    """Map array without null (or NaN) values and with null rows as empty maps."""
    offsets = np.asarray(arr.offsets, dtype=np.int64)
    start, stop = int(offsets[0]), int(offsets[-1])
    keys, items = arr.keys.slice(start, stop - start), arr.items.slice(start, stop - start)
    offsets = offsets - start
    keep = np.asarray(items.is_valid().to_numpy(zero_copy_only=False))
    if pa.types.is_floating(items.type):
        keep &= ~np.isnan(np.asarray(items.fill_null(0.0).to_numpy(zero_copy_only=False)))
    if arr.null_count == 0 and keep.all() and start == 0:
        return arr
    counts = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])
    mask = pa.array(keep)
    return pa.MapArray.from_arrays(pa.array(counts[offsets].astype(np.int32)), keys.filter(mask), items.filter(mask))


def _dense_map(spec: TableSpec, name: str, keys: list, values: np.ndarray) -> pa.Array:
    """Map array from ``k`` key names and an ``(n, k)`` value matrix; NaN/None cells are absent keys."""
    atype = spec.by_name[name].arrow_type
    n, k = values.shape
    if len(keys) != k:
        raise ValueError(
            f"column {spec.name}.{name}: '{name}.values' is 2-D with {k} columns, so '{name}.keys' "
            f"must list {k} names, got {len(keys)}"
        )
    flat = values.reshape(-1)
    try:
        if flat.dtype.kind == "f":
            keep = ~np.isnan(flat)
            items = pa.array(flat[keep] if not keep.all() else flat, atype.item_type)
        elif flat.dtype.kind == "O" and pa.types.is_string(atype.item_type):
            # Categories repeat: dictionary-encoded, each distinct text is converted once (a
            # conversion per cell was most of a prediction batch's conversion time).
            codes, uniques = pd.factorize(flat, use_na_sentinel=True)
            keep = codes >= 0
            items = pa.DictionaryArray.from_arrays(
                pa.array(codes[keep] if not keep.all() else codes, pa.int32()), pa.array(uniques, atype.item_type)
            )
        else:
            items = pa.array(flat, atype.item_type, from_pandas=True)
            keep = np.asarray(items.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
            if not keep.all():
                items = items.filter(pa.array(keep))
        names = pa.array(keys, atype.key_type)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise ValueError(f"column {spec.name}.{name}: cannot convert '{name}.keys'/'{name}.values': {exc}") from None
    key_index = np.tile(np.arange(k, dtype=np.int32), n)
    if not keep.all():
        key_index = key_index[keep]
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(keep.reshape(n, k).sum(axis=1), out=offsets[1:])
    # Dictionary-encoded keys: the k names are stored once, not n times; chDB reads them natively.
    key_arr = pa.DictionaryArray.from_arrays(pa.array(key_index), names)
    return pa.MapArray.from_arrays(pa.array(offsets), key_arr, items)


def _map_from_parts(spec: TableSpec, name: str, keys: Any, values: Any) -> pa.Array:
    column = spec.by_name[name]
    atype = column.arrow_type
    if isinstance(values, np.ndarray) and values.ndim == 2:
        return _dense_map(spec, name, list(keys), values)
    try:
        ka = pa.array(keys, pa.list_(atype.key_type))
        va = pa.array(values, pa.list_(atype.item_type), from_pandas=True)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise ValueError(f"column {spec.name}.{name}: cannot convert '{name}.keys'/'{name}.values': {exc}") from None
    if len(ka) != len(va) or not pc.all(pc.equal(pc.list_value_length(ka).fill_null(0), pc.list_value_length(va).fill_null(0))).as_py():
        raise ValueError(f"column {spec.name}.{name}: '{name}.keys' and '{name}.values' must have the same length in every row")
    offsets = pa.array(np.concatenate([[0], np.cumsum(pc.list_value_length(ka).fill_null(0).to_numpy())]).astype(np.int32))
    return _drop_null_entries(pa.MapArray.from_arrays(offsets, ka.flatten(), va.flatten()))


def to_arrow_batch(table: str, columns: Mapping[str, Any]) -> pa.Table:
    """Arrow table of ``table``'s types from a mapping of column name -> values.

    Scalar columns are lists, numpy arrays or Arrow arrays. Timestamps are ``datetime64``
    arrays, ints (ms since the epoch, UTC) or ``datetime`` objects (naive = UTC). A ``Map``
    column is given either as

    - one column of dicts (``None`` values and ``None`` rows are dropped: a null feature is an
      absent key), or
    - two columns ``<name>.keys`` and ``<name>.values``: per-row lists of keys and of values;
      or, the fast form, a list of ``k`` key names and a 2-D ``(n, k)`` numpy array of values,
      where ``NaN``/``None`` marks an absent key. The 2-D form is converted without a Python
      loop (about 10x faster than dicts) and is the one to use for big batches.

    Columns left out get the type's default ('', 0, empty map, NULL); the ``ORDER BY`` key,
    the version column and the retention time column are required.

    Examples
    --------
    >>> import numpy as np
    >>> batch = to_arrow_batch("predictions", {
    ...     "event_id": ["a", "b"], "model": ["m", "m"], "version": ["v1", "v1"], "ts": np.array([0, 1000]),
    ...     "features.keys": ["x", "y"], "features.values": np.array([[1.0, np.nan], [2.0, 3.0]]),
    ... })
    >>> batch.column("features").to_pylist()
    [[('x', 1.0)], [('x', 2.0), ('y', 3.0)]]

    """
    if table not in TABLES:
        raise ValueError(f"table must be one of {sorted(TABLES)}, got {table!r}")
    if not isinstance(columns, Mapping):
        raise TypeError(f"columns must be a mapping of column name -> values, got {type(columns).__name__}")
    spec = TABLES[table]
    arrays: dict[str, pa.Array] = {}
    parts: dict[str, dict[str, Any]] = {}
    for key, values in columns.items():
        base, _, part = key.rpartition(".") if key.endswith((".keys", ".values")) else (key, "", "")
        if base not in spec.by_name:
            raise ValueError(f"{table} has no column {base!r}; columns are {list(spec.column_names)}")
        if part:
            if not spec.by_name[base].is_map:
                raise ValueError(f"column {table}.{base} is not a Map, so {key!r} is not allowed")
            parts.setdefault(base, {})[part] = values
        elif base in arrays:
            raise ValueError(f"column {table}.{base} given twice")
        else:
            arrays[base] = _column_array(spec, base, values)
    for base, kv in parts.items():
        if base in arrays or len(kv) != 2:
            raise ValueError(f"map column {table}.{base} needs exactly one of {base!r} or both '{base}.keys' and '{base}.values'")
        arrays[base] = _map_from_parts(spec, base, kv["keys"], kv["values"])
    required = list(dict.fromkeys(k for k in (*spec.order_by, spec.version, spec.ttl_column) if k))
    missing = [k for k in required if k not in arrays]
    if missing:
        raise ValueError(f"insert into {table} needs its key and time columns {required}; missing {missing}")
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"columns of one batch must have equal lengths, got {lengths}")
    ordered = [c for c in spec.column_names if c in arrays]
    return pa.table({c: arrays[c] for c in ordered})


class Store:
    """driftline's tables in one ClickHouse engine.

    Parameters
    ----------
    backend
        The transport (see :class:`Backend`).
    database
        Database name.
    retention_days
        Rows of the raw tables (predictions, ground truth, labeled, dead letters) expire this many
        days after their event time; ``None`` keeps them forever. Rows already older than that
        when inserted are dropped at insert or at the next merge (a backfill of old history needs a longer retention
        or ``None``).

    Use :func:`driftline.storage.open_store` rather than this constructor: it also creates the
    schema.

    Examples
    --------
    >>> import tempfile
    >>> from driftline.storage import open_store
    >>> with tempfile.TemporaryDirectory() as d, open_store(d, retention_days=None) as store:
    ...     _ = store.insert("ground_truth", {"event_id": ["e1"], "model": ["credit"], "ts": [0], "label": ["1"]})
    ...     store.query("SELECT event_id, label FROM driftline.ground_truth FINAL WHERE model = {m:String}",
    ...                 {"m": "credit"}).to_pylist()
    [{'event_id': 'e1', 'label': '1'}]

    """

    def __init__(
        self, backend: Backend, database: str = DATABASE, retention_days: int | None = DEFAULT_RETENTION_DAYS
    ) -> None:
        if not isinstance(backend, Backend):
            raise TypeError(f"backend must implement execute/insert/query/close, got {type(backend).__name__}")
        if not isinstance(database, str) or not _PARAM_NAME.match(database):
            raise ValueError(f"database must be a plain identifier, got {database!r}")
        check_retention(retention_days)
        self.backend = backend
        self.database = database
        self.retention_days = retention_days
        self._closed = False

    def create_schema(self, apply_retention: bool = True) -> None:
        """Create the database, every table and the ``model_versions`` view, idempotently.

        With ``apply_retention`` the retention of an existing table is brought to
        ``retention_days`` (without rewriting existing parts); without it, it is left as it is.
        The database becomes the session's default, so queries may name tables unqualified.
        """
        self.backend.execute(create_database_sql(self.database))
        for spec in TABLES.values():
            self.backend.execute(create_table_sql(spec, self.database, self.retention_days))
        self.backend.execute(create_view_sql(self.database))
        current = self.query(
            "SELECT name, engine_full FROM system.tables WHERE database = {db:String}", {"db": self.database}
        ).to_pylist()
        self.backend.execute(f"USE {self.database}")
        for row in current if apply_retention else []:
            spec = TABLES.get(row["name"])
            if spec is None or spec.ttl_column is None:
                continue
            has_ttl = " TTL " in row["engine_full"]
            wanted = self.retention_days is not None
            if has_ttl != wanted or (wanted and f"toIntervalDay({self.retention_days})" not in row["engine_full"]):
                self.backend.execute(modify_ttl_sql(spec, self.database, self.retention_days))

    def table(self, name: str) -> str:
        """Qualified name ``database.name`` of a driftline table."""
        if name not in TABLES:
            raise ValueError(f"table must be one of {sorted(TABLES)}, got {name!r}")
        return f"{self.database}.{name}"

    def insert(self, table: str, columns: Mapping[str, Any]) -> int:
        """Insert one columnar batch; returns the number of rows.

        ``columns`` maps column names to equal-length lists or arrays; see
        :func:`to_arrow_batch` for the accepted forms (map columns as dicts or, faster, as
        ``<name>.keys`` + a 2-D ``<name>.values`` array).
        """
        batch = to_arrow_batch(table, columns)
        return self.insert_arrow(table, batch)

    def insert_arrow(self, table: str, data: pa.Table) -> int:
        """Insert an Arrow table (columns named as the table's; cast to its types).

        Dictionary-encoded string columns and map keys are passed through as they are (the
        engine decodes them), which saves building one string per row.
        """
        self._check_open()
        qualified = self.table(table)
        if not isinstance(data, pa.Table):
            raise TypeError(f"data must be a pyarrow.Table, got {type(data).__name__}")
        if data.num_rows == 0:
            return 0
        spec = TABLES[table]
        unknown = [c for c in data.column_names if c not in spec.by_name]
        if unknown:
            raise ValueError(f"{table} has no columns {unknown}; columns are {list(spec.column_names)}")
        target = pa.schema([pa.field(c, _accepted_type(data.schema.field(c).type, spec.by_name[c].arrow_type)) for c in data.column_names])
        if data.schema != target:
            data = data.cast(target)
        self.backend.insert(qualified, data, INSERT_SETTINGS)
        return data.num_rows

    def execute(self, sql: str) -> None:
        """Run a statement that returns no rows."""
        self._check_open()
        self.backend.execute(sql)

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        """Run a query and return an Arrow table.

        String columns come back as Arrow ``string``, or as ``binary`` when they hold bytes that
        are not valid UTF-8 (raw dead-letter payloads). ``params`` bind ``{name:Type}`` placeholders server-side: values are never spliced into
        the SQL text, so model and feature names may contain anything.
        """
        self._check_open()
        if not isinstance(sql, str) or not sql.strip():
            raise ValueError(f"sql must be a non-empty str, got {sql!r}")
        return _binary_where_not_utf8(self.backend.query(sql, bind_params(params)))

    def query_df(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Like :meth:`query`, as a pandas DataFrame (map columns as lists of (key, value))."""
        return self.query(sql, params).to_pandas()

    def optimize(self, table: str) -> None:
        """Merge a table's parts now (``OPTIMIZE ... FINAL``): deduplicates without ``FINAL`` reads."""
        self.execute(f"OPTIMIZE TABLE {self.table(table)} FINAL")

    def flush(self) -> None:
        """Return once every row inserted so far is in the database (a buffering backend waits
        for its backlog; the embedded one writes synchronously)."""
        self._check_open()
        flush = getattr(self.backend, "flush", None)
        if flush is not None:
            flush()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.backend.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the store is closed")

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _binary_where_not_utf8(table: pa.Table) -> pa.Table:
    """Retype ``string`` columns holding invalid UTF-8 (e.g. raw payloads) as ``binary``.

    ClickHouse ``String`` is a byte string, but chDB labels every one as Arrow ``string``;
    such a column would fail later in ``to_pylist``/``to_pandas``.
    """
    for i, field in enumerate(table.schema):
        if not (pa.types.is_string(field.type) or pa.types.is_large_string(field.type)):
            continue
        column = table.column(i)
        try:
            for chunk in column.chunks:
                chunk.validate(full=True)
        except pa.ArrowInvalid:
            binary = pa.large_binary() if pa.types.is_large_string(field.type) else pa.binary()
            fixed = pa.chunked_array([c.view(binary) for c in column.chunks], binary)
            table = table.set_column(i, pa.field(field.name, binary, field.nullable), fixed)
    return table


def _plain(value: Any) -> Any:
    if isinstance(value, list) and value and all(isinstance(v, tuple) and len(v) == 2 for v in value):
        return {str(k): _plain(v) for k, v in value}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _cell_text(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ", timespec="milliseconds").replace("+00:00", "")
    if isinstance(value, (dict, list)):
        return orjson.dumps(value, default=str).decode()
    return str(value)


def _map_columns_to_plain(table: pa.Table) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in row.items()} for row in table.to_pylist()]


def format_result(table: pa.Table, fmt: str = "table") -> str:
    """Render a query result for the terminal: ``table`` (rich), ``csv`` or ``json``.

    ``json`` is a JSON array of objects (maps as objects, timestamps ISO 8601, bytes as UTF-8
    with replacement); ``csv`` has a header row and maps as JSON text.

    Examples
    --------
    >>> t = pa.table({"model": ["credit"], "n": [3], "features": pa.array([[("age", 1.5)]], pa.map_(pa.string(), pa.float64()))})
    >>> print(format_result(t, "csv"), end="")
    model,n,features
    credit,3,"{""age"":1.5}"
    >>> print(format_result(t, "json"))
    [{"model":"credit","n":3,"features":{"age":1.5}}]

    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {list(FORMATS)}, got {fmt!r}")
    if not isinstance(table, pa.Table):
        raise TypeError(f"table must be a pyarrow.Table, got {type(table).__name__}")
    rows = _map_columns_to_plain(table)
    if fmt == "json":
        return orjson.dumps(rows, option=orjson.OPT_NAIVE_UTC | orjson.OPT_SERIALIZE_NUMPY, default=str).decode()
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(table.column_names)
        for row in rows:
            writer.writerow(["" if v is None else (_cell_text(v) if isinstance(v, (dict, list, dt.datetime)) else v) for v in row.values()])
        return buf.getvalue()
    from rich.console import Console
    from rich.table import Table

    out = Table(show_header=True, header_style="bold")
    for name in table.column_names:
        numeric = pa.types.is_integer(table.schema.field(name).type) or pa.types.is_floating(table.schema.field(name).type)
        out.add_column(name, justify="right" if numeric else "left")
    for row in rows:
        out.add_row(*(_cell_text(v) for v in row.values()))
    console = Console(file=io.StringIO(), width=200, color_system=None, force_terminal=False)
    console.print(out)
    console.print(f"{table.num_rows} row{'s' if table.num_rows != 1 else ''}")
    return console.file.getvalue()
