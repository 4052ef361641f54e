"""Event files as message streams: JSON Lines and Parquet, merged in event-time order.

A replay reads a predictions file and a ground-truth file and interleaves them by their ``ts``
(a label is processed when it became known), which is how the events would have reached Kafka.
Lines that cannot be read keep their place in their file and reach the pipeline as they are,
so they land in the dead letters with the reason instead of being dropped here.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import msgspec
import orjson

from driftline.streams.pipeline import GROUND_TRUTH, PREDICTION, Message


class _Timestamp(msgspec.Struct):
    ts: int


_peek = msgspec.json.Decoder(_Timestamp).decode


def _jsonl(path: Path, kind: str) -> Iterator[tuple[int, Message]]:
    source = path.name
    last = 0
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            try:
                last = _peek(line).ts
            except (msgspec.DecodeError, msgspec.ValidationError):
                pass
            yield last, Message(kind, line, source, f"line {number}")


def _plain(value: Any) -> Any:
    if isinstance(value, list) and value and all(isinstance(v, tuple) and len(v) == 2 for v in value):
        return {k: _plain(v) for k, v in value}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return int(value.timestamp() * 1000)
    return value


def _parquet(path: Path, kind: str) -> Iterator[tuple[int, Message]]:
    import pyarrow.parquet as pq

    source = path.name
    row = 0
    last = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=10_000):
        for record in batch.to_pylist():
            row += 1
            event = {k: _plain(v) for k, v in record.items() if v is not None}
            if type(event.get("ts")) is int:
                last = event["ts"]
            yield last, Message(kind, orjson.dumps(event, option=orjson.OPT_SERIALIZE_NUMPY), source, f"row {row}")


def read_events(path: str | Path, kind: str) -> Iterator[tuple[int, Message]]:
    """``(ts, message)`` pairs from a ``.jsonl``/``.json``/``.ndjson`` or ``.parquet`` file."""
    if kind not in (PREDICTION, GROUND_TRUTH):
        raise ValueError(f"kind must be {PREDICTION!r} or {GROUND_TRUTH!r}, got {kind!r}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such event file: {path}")
    if path.suffix.lower() in (".parquet", ".pq"):
        return _parquet(path, kind)
    return _jsonl(path, kind)


def merged(predictions: str | Path, ground_truth: str | Path | None) -> Iterator[Message]:
    """Both files interleaved by event time (each file is expected in its own time order)."""
    streams = [read_events(predictions, PREDICTION)]
    if ground_truth is not None:
        streams.append(read_events(ground_truth, GROUND_TRUTH))
    for _, message in heapq.merge(*streams, key=lambda pair: pair[0]):
        yield message
