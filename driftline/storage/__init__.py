"""storage: driftline's ClickHouse tables, embedded (chDB) or on a ClickHouse server.

Examples
--------
>>> import tempfile
>>> from driftline.storage import open_store, PREDICTIONS
>>> with tempfile.TemporaryDirectory() as d, open_store(d, retention_days=None) as store:
...     _ = store.insert(PREDICTIONS, {"event_id": ["e1"], "model": ["credit"], "version": ["v1"],
...                                    "ts": [1_700_000_000_000],
...                                    "features": [{"age": 41.0, "income": None}]})
...     store.query("SELECT features['age'] AS age, mapContains(features, 'income') AS has_income "
...                 "FROM driftline.predictions FINAL").to_pylist()
[{'age': 41.0, 'has_income': 0}]

"""

from __future__ import annotations

import os
from pathlib import Path

from driftline.storage.base import (
    Backend,
    Store,
    StoreError,
    StoreLockedError,
    format_result,
    param_text,
    quote_identifier,
    quote_literal,
    to_arrow_batch,
)
from driftline.storage.server import ServerBackend, StoreUnavailableError, masked_url
from driftline.storage.schema import (
    ALERTS,
    COLUMNS,
    DATABASE,
    DEAD_LETTERS,
    DEFAULT_RETENTION_DAYS,
    DRIFT_RESULTS,
    GROUND_TRUTH,
    LABELED,
    MODEL_VERSIONS,
    PREDICTIONS,
    TABLES,
    WINDOW_METRICS,
    check_retention,
)

__all__ = [
    "ALERTS",
    "Backend",
    "COLUMNS",
    "DATABASE",
    "DEAD_LETTERS",
    "DEFAULT_DATA_DIR",
    "DEFAULT_RETENTION_DAYS",
    "DRIFT_RESULTS",
    "GROUND_TRUTH",
    "LABELED",
    "MODEL_VERSIONS",
    "PREDICTIONS",
    "ServerBackend",
    "Store",
    "StoreError",
    "StoreLockedError",
    "StoreUnavailableError",
    "TABLES",
    "WINDOW_METRICS",
    "format_result",
    "masked_url",
    "open_store",
    "param_text",
    "quote_identifier",
    "quote_literal",
    "to_arrow_batch",
]

DEFAULT_DATA_DIR = "./driftline-data"


KEEP = "keep"


def open_store(
    target: str | os.PathLike[str] | None = None, *, retention_days: int | None | str = KEEP
) -> Store:
    """Open driftline's store and create its schema if needed.

    Parameters
    ----------
    target
        A directory for the embedded chDB engine (default ``./driftline-data``), or a
        ``clickhouse://user:password@host:9000/db`` URL of a ClickHouse server (24.x or later for
        driftline's schema), whose path names the database (default ``driftline``); user and
        password may come from ``DRIFTLINE_CLICKHOUSE_USER``/``DRIFTLINE_CLICKHOUSE_PASSWORD``.
        See :mod:`driftline.storage.server` for retries and the local buffer.
    retention_days
        Days raw events (predictions, ground truth, labeled rows, dead letters) are kept after
        their event time, in [1, 10000]; ``None`` keeps them forever. Events already older than
        that are dropped soon after insert, so backfills of old history need ``None`` or a longer
        retention. Reopening with another value changes the retention of the existing tables.
        The default, ``KEEP``, leaves existing tables as they are and creates new ones without a
        retention limit: opening a store to read it never drops data.

    Raises
    ------
    StoreLockedError
        Another process has the directory open.
    StoreUnavailableError
        The ClickHouse server did not answer.

    """
    apply_retention = retention_days != KEEP
    if not apply_retention:
        retention_days = None
    check_retention(retention_days)
    if target is None:
        target = DEFAULT_DATA_DIR
    if not isinstance(target, (str, os.PathLike)):
        raise TypeError(f"target must be a path, a clickhouse:// URL or None, got {type(target).__name__}")
    text = os.fspath(target)
    if text.startswith("clickhouse://"):
        return _open_server_store(text, retention_days, apply_retention)
    if "://" in text:
        raise ValueError(
            f"unsupported store URL {masked_url(text)!r}: pass a directory path for the "
            "embedded chDB store or a clickhouse://user:password@host:9000/db URL"
        )
    from driftline.storage.embedded import ChdbBackend

    backend = ChdbBackend(Path(text))
    store = Store(backend, DATABASE, retention_days)
    try:
        store.create_schema(apply_retention)
    except BaseException:
        store.close()
        raise
    return store


def _open_server_store(url: str, retention_days: int | None, apply_retention: bool) -> Store:
    backend = ServerBackend(url)
    store = Store(backend, backend.database, retention_days)
    try:
        store.create_schema(apply_retention)
    except StoreError as exc:
        store.close()
        if backend.server_version >= (24,):
            raise
        version = ".".join(map(str, backend.server_version))
        raise StoreError(
            f"cannot create driftline's schema on ClickHouse {version} at {backend.address.host}:"
            f"{backend.address.port}: it needs ClickHouse 24.x or later (DateTime64, Map, TTL); {exc}"
        ) from None
    except BaseException:
        store.close()
        raise
    return store
