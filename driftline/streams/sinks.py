"""Turn a pipeline :class:`Output` into columnar batches for the store's tables.

Both runtimes write through here, so the embedded and the Faust runtime store the same rows.
Every row carries its deterministic key; the store's ReplacingMergeTree tables make a replay
overwrite instead of double counting.

A sink may hold the raw tables' rows (predictions, ground truth, joined rows, dead letters) back
and write them in bigger blocks: every ``INSERT`` costs ClickHouse a new part per partition
(tens of milliseconds in chDB whatever its size), and a Faust worker's fetches are small. Those
rows are the same whenever they are written again, so their order and timing do not matter.
Window metrics, drift results and alerts are revisions of one key and are never held back.

A sink that holds rows back also writes off the caller's thread: one writer thread takes every
insert, window results included, in order, while the caller computes the next batches (chDB
releases the GIL while it inserts, so on two cores the inserts of a Faust worker overlap its
pipeline). A block of held rows is handed over once everything handed over before it is in the
store, so at most one block (and the window results since) is in flight besides the rows held.
:meth:`StoreSink.flush` returns once everything handed over is in the store (a worker flushes
before each checkpoint). A failed insert's error is raised once, by the first call after it
failed: :meth:`~StoreSink.write`, :meth:`~StoreSink.flush`, :meth:`~StoreSink.write_pending` or
:meth:`~StoreSink.wait_writes`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa

from driftline.events import SCHEMA_VERSION
from driftline.reference import ModelReference
from driftline.storage import Store, to_arrow_batch
from driftline.storage.schema import COLUMNS, TABLES
from driftline.streams.join import LabeledRow, segment_matrix
from driftline.streams.pipeline import Output
from driftline.streams.columns import PredictionColumns


ALERT_COLUMNS = COLUMNS["alerts"]


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _texts(values: Sequence[Any]) -> list[str]:
    """:func:`_text` of every value, converting each distinct value once (labels and classes
    repeat). ``True`` and ``1`` are equal as dict keys, so values of mixed types are told apart
    by their type too.

    >>> _texts([1, 0, 1]), _texts([True, 1, 1.0, "a"])
    (['1', '0', '1'], ['true', '1', '1.0', 'a'])
    """
    if len(set(map(type, values))) <= 1:
        memo = {value: _text(value) for value in set(values)}
        return list(map(memo.__getitem__, values))
    texts: dict[tuple[type, Any], str] = {}
    out = []
    for value in values:
        key = (type(value), value)
        text = texts.get(key)
        if text is None:
            text = texts[key] = _text(value)
        out.append(text)
    return out


_MAP_TYPE = TABLES["predictions"].by_name["probabilities"].arrow_type
_NO_ENTRIES = (pa.array([], _MAP_TYPE.key_type), pa.array([], _MAP_TYPE.item_type))


def _constant(text: str, n: int) -> pa.Array:
    """A column of ``n`` copies of ``text``, built without a loop (dictionary-encoded)."""
    return pa.DictionaryArray.from_arrays(np.zeros(n, dtype=np.int32), [text])


def _maps(values: list[dict[str, float] | None]) -> list[dict[str, float]] | pa.Array:
    """Map-column values: ``None`` stored as an empty map (a column of only those is built
    without a loop over the rows)."""
    if values.count(None) == len(values):
        return pa.MapArray.from_arrays(pa.array(np.zeros(len(values) + 1, dtype=np.int32)), *_NO_ENTRIES)
    return [value or {} for value in values]


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, str):
        return None
    return float(value)


def _columns(rows: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    if not rows:
        return {}
    return {name: [row[name] for row in rows] for name in rows[0]}


class StoreSink:
    """Write pipeline outputs to a :class:`~driftline.storage.Store`.

    Parameters
    ----------
    store
        Where the rows go.
    references
        Per model, its spec and reference.
    buffer_rows
        Hold raw rows back until this many are pending over the four raw tables (``0``: write
        every output at once). :meth:`write_pending` and :meth:`flush` write them;
        :attr:`pending_rows` and :attr:`pending_since` say how many wait and since when. With
        ``buffer_rows`` every insert goes through the sink's writer thread (see the module
        docstring); :meth:`wait_writes` waits for it. Safe to call from several threads.
    """

    def __init__(self, store: Store, references: dict[str, ModelReference], buffer_rows: int = 0):
        if isinstance(buffer_rows, bool) or not isinstance(buffer_rows, int) or buffer_rows < 0:
            raise ValueError(f"buffer_rows must be an int >= 0, got {buffer_rows!r}")
        self.store = store
        self.references = references
        self.buffer_rows = buffer_rows
        self._segments = {model: list(ref.spec.segments) for model, ref in references.items()}
        self._feature_names = {
            model: (ref.spec.numeric_features, ref.spec.categorical_features) for model, ref in references.items()
        }
        self._lock = threading.Lock()
        self._pending: dict[str, list[pa.Table]] = {}
        self.pending_rows = 0
        self.pending_since: float | None = None
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="driftline-sink") if buffer_rows else None
        self._in_flight: deque[Future] = deque()

    def write_pending(self) -> None:
        """Write the rows held back and wait for the writer thread (a buffering store may still
        hold them; see :meth:`flush`)."""
        with self._lock:
            self._write_all()
            self._settle(wait=True)

    def wait_writes(self) -> None:
        """Return once every insert handed to the writer thread is done; raises a failed one's error."""
        with self._lock:
            self._settle(wait=True)

    def flush(self) -> None:
        """Write the rows held back, then wait until the store has everything written so far."""
        self.write_pending()
        self.store.flush()

    def _insert(self, table: str, columns: Mapping[str, Any]) -> None:
        """Insert ``columns`` now, or, with a writer thread, after the inserts before it."""
        if self._writer is None:
            self.store.insert(table, columns)
            return
        batch = to_arrow_batch(table, columns)
        with self._lock:
            self._submit(table, batch)

    def _submit(self, table: str, batch: pa.Table) -> None:
        assert self._writer is not None
        self._in_flight.append(self._writer.submit(self.store.insert_arrow, table, batch))

    def _settle(self, wait: bool) -> None:
        """Collect finished inserts, raising a failed one's error; with ``wait``, every insert
        handed over first. Under the lock."""
        while self._in_flight and (wait or self._in_flight[0].done()):
            self._in_flight.popleft().result()

    def _raw(self, table: str, columns: Mapping[str, Any]) -> None:
        if not self.buffer_rows:
            self.store.insert(table, columns)
            return
        batch = to_arrow_batch(table, columns)
        with self._lock:
            held = self._pending.get(table)
            if held and held[0].schema != batch.schema:
                # Rows go in arrival order (a table without a version column keeps the last).
                self._settle(wait=True)
                self._write_table(table)
            self._pending.setdefault(table, []).append(batch)
            self.pending_rows += batch.num_rows
            if self.pending_since is None:
                self.pending_since = time.monotonic()
            if self.pending_rows >= self.buffer_rows:
                self._write_all()

    def _write_all(self) -> None:
        # Back-pressure: the block before must be in the store first (and an error it raises
        # leaves this block held, to be written by the next call). Waiting only for the rows beyond
        # a limit made a block wait for its own first table's insert.
        self._settle(wait=True)
        for table in list(self._pending):
            self._write_table(table)

    def _write_table(self, table: str) -> None:
        batches = self._pending.pop(table)
        self.pending_rows -= sum(batch.num_rows for batch in batches)
        if not self._pending:
            self.pending_since = None
        self._submit(table, pa.concat_tables(batches))

    def write(self, out: Output) -> None:
        """Store an output's rows (or hold the raw ones back); raises the error of an insert that
        failed since the last call."""
        if self._writer is not None:
            with self._lock:
                self._settle(wait=False)
        now = int(time.time() * 1000)
        for batch in out.predictions:
            self._raw("predictions", self._predictions(batch))
        if out.ground_truth:
            self._raw("ground_truth", {
                "event_id": [e.event_id for e in out.ground_truth],
                "model": [e.model for e in out.ground_truth],
                "ts": [e.ts for e in out.ground_truth],
                "label": _texts([e.label for e in out.ground_truth]),
                "label_value": [_number(e.label) for e in out.ground_truth],
                "source": [e.source for e in out.ground_truth],
                "schema_version": [e.schema_version for e in out.ground_truth],
            })
        if out.labeled:
            by_model: dict[str, list[LabeledRow]] = {}
            for row in out.labeled:
                by_model.setdefault(row.model, []).append(row)
            for model, rows in by_model.items():
                self._raw("labeled", self._labeled(model, rows))
        if out.window_metrics:
            self._insert("window_metrics", _columns([{**row, "updated_at": now} for row in out.window_metrics]))
        if out.drift_results:
            self._insert("drift_results", _columns([{**row, "updated_at": now} for row in out.drift_results]))
        if out.alerts:
            self._insert("alerts", _columns([
                {name: getattr(alert, name) for name in ALERT_COLUMNS} | {"retrain": int(alert.retrain)}
                for alert in out.alerts
            ]))
        if out.dead_letters:
            self._raw("dead_letters", _columns([
                {
                    "id": row["id"],
                    "source": row["source"],
                    "position": row["position"],
                    "received_at": now,
                    "reason": row["reason"],
                    "code": row["code"],
                    "field": row["field"],
                    "payload": row["payload"],
                }
                for row in out.dead_letters
            ]))

    def _labeled(self, model: str, rows: list[LabeledRow]) -> dict[str, Any]:
        """Columns of one model's joined rows; its segments as a dense map (the same Arrow type
        for every model, so that blocks of several models' rows concatenate)."""
        n = len(rows)
        prediction_ts = np.fromiter((r.prediction_ts for r in rows), dtype=np.int64, count=n)
        label_ts = np.fromiter((r.label_ts for r in rows), dtype=np.int64, count=n)
        names = self._segments[model]
        # Segment values are category texts already (None: missing, stored as an absent key).
        segments = segment_matrix(rows, len(names))
        return {
            "event_id": [r.event_id for r in rows],
            "model": _constant(model, n),
            "version": [r.version for r in rows],
            "role": [r.role for r in rows],
            "segment.keys": names,
            "segment.values": segments,
            "prediction_ts": prediction_ts,
            "label_ts": label_ts,
            "delay_ms": label_ts - prediction_ts,
            "prediction": _texts([r.prediction for r in rows]),
            "score": np.array([r.score for r in rows], dtype=np.float64),
            "label": _texts([r.label for r in rows]),
        }

    def _predictions(self, batch: PredictionColumns) -> dict[str, Any]:
        numeric, categorical = self._feature_names[batch.model]
        n = len(batch)
        return {
            "event_id": batch.event_id,
            "model": _constant(batch.model, n),
            "version": batch.version,
            "ts": batch.ts,
            "role": batch.role,
            "features.keys": numeric,
            "features.values": batch.numeric,
            "cat_features.keys": categorical,
            "cat_features.values": batch.categorical,
            "prediction": _texts(batch.prediction.tolist()),
            "score": batch.score,
            "probabilities": _maps(batch.probabilities),
            "action": batch.action,
            "explanation": _maps(batch.explanation),
            "host": batch.host,
            "latency_ms": batch.latency_ms,
            "entity_id": batch.entity_id,
            "schema_version": np.full(n, SCHEMA_VERSION, dtype=np.uint16),
        }
