r"""Predictions as columns: what the pipeline's processors and sinks work on.

A batch of one model's accepted predictions is a :class:`PredictionColumns`: numeric features
as one float matrix, categorical features as category strings (:func:`~driftline.reference.category`
of the value, ``None`` when missing), and one array per event field, each row keeping the
position of its message in the batch. :class:`PredictionDecoder` builds them straight from the
raw messages with the compiled scanner of :mod:`driftline.streams.scan`, and hands every message
the scanner does not take to msgspec (:class:`~driftline.events.EventDecoder`), which accepts it
(its event joins the columns) or rejects it with the precise reason.

Examples
--------
>>> from driftline.config import parse_spec
>>> from driftline.events import EventDecoder, encode
>>> spec = parse_spec({"model": "m", "task": "binary", "reference": {"path": "ref.csv"},
...     "features": [{"name": "x", "kind": "numeric"}, {"name": "c", "kind": "categorical"}]})
>>> decoder = PredictionDecoder([spec], EventDecoder([spec], now_ms=lambda: 2_000_000_000_000))
>>> messages = [
...     encode({"event_id": "a", "model": "m", "version": "v1", "ts": 1767225600000,
...             "features": {"x": 0.5, "c": 3}, "prediction": 1, "score": 0.7}),
...     b'{"event_id": "b", "model": "m", "version": "v1", "ts": 1767225600001, '
...     b'"features": {"x": null, "c": "caf\\u00e9"}, "prediction": 0}',
...     b'{"event_id": 7}',
... ]
>>> batches, rejected = decoder.decode(messages)
>>> columns = batches["m"]
>>> columns.event_id, columns.numeric.tolist(), columns.categorical.tolist(), columns.positions.tolist()
(['a', 'b'], [[0.5], [nan]], [['3'], ['café']], [0, 1])
>>> [(i, str(r)) for i, r in rejected]
[(2, 'wrong_type at event_id: expected str, got int')]
"""

from __future__ import annotations

from collections.abc import Sequence
from sys import intern
from typing import TYPE_CHECKING, Any

import numpy as np

from driftline.events import MIN_TS_MS, EventDecoder, InvalidEvent, Prediction, Rejection
from driftline.reference import categorical_values
from driftline.streams import scan

if TYPE_CHECKING:
    from driftline.config import ModelSpec

__all__ = ["PredictionColumns", "PredictionDecoder"]

_OBJECT_FIELDS = ("version", "role", "prediction", "action", "host", "entity_id")
_LIST_FIELDS = ("event_id", "probabilities", "explanation")
_FLOAT_FIELDS = ("score", "latency_ms")


class PredictionColumns:
    """One model's predictions of a batch, column by column.

    ``score`` and ``latency_ms`` are float arrays where NaN stands for an absent value (neither
    can be NaN in an accepted event); :meth:`optional` turns them back into ``None``.
    """

    __slots__ = ("model", "positions", "event_id", "version", "role", "ts", "numeric", "categorical",
                 "prediction", "score", "probabilities", "action", "explanation", "host", "latency_ms", "entity_id")

    def __init__(self, model: str, **columns: Any):
        self.model = model
        for name in self.__slots__[1:]:
            setattr(self, name, columns[name])

    def __len__(self) -> int:
        return len(self.ts)

    def __repr__(self) -> str:
        return f"PredictionColumns(model={self.model!r}, n={len(self)})"

    def take(self, rows: np.ndarray) -> PredictionColumns:
        """The rows at ``rows`` (indices or a boolean mask), in that order."""
        rows = np.flatnonzero(rows) if rows.dtype == bool else rows
        columns: dict[str, Any] = {}
        for name in self.__slots__[1:]:
            value = getattr(self, name)
            columns[name] = [value[i] for i in rows.tolist()] if type(value) is list else value[rows]
        return PredictionColumns(self.model, **columns)

    @staticmethod
    def optional(values: np.ndarray) -> list[float | None]:
        """A float column as a list, with ``None`` where the value is absent (NaN)."""
        return [None if v != v else v for v in values.tolist()]

    @classmethod
    def from_events(cls, spec: ModelSpec, events: Sequence[Prediction], positions: Sequence[int] | None = None) -> PredictionColumns:
        """Columns of decoded events (the msgspec path)."""
        n = len(events)
        features = [e.features for e in events]

        def values(name: str) -> list[Any]:
            if features and type(features[0]) is dict:
                return [f.get(name) for f in features]
            return [getattr(f, name) for f in features]

        numeric = np.empty((n, len(spec.numeric_features)))
        for j, name in enumerate(spec.numeric_features):
            numeric[:, j] = np.array(values(name), dtype=float)
        categorical = np.empty((n, len(spec.categorical_features)), dtype=object)
        for j, name in enumerate(spec.categorical_features):
            categorical[:, j] = [v if v is None else intern(v) for v in categorical_values(values(name))]
        columns: dict[str, Any] = {
            "positions": np.arange(n, dtype=np.int64) if positions is None else np.asarray(positions, dtype=np.int64),
            "ts": np.fromiter((e.ts for e in events), dtype=np.int64, count=n),
            "numeric": numeric,
            "categorical": categorical,
        }
        for name in _OBJECT_FIELDS:
            column = np.empty(n, dtype=object)
            column[:] = [getattr(e, name) for e in events]
            if name in ("version", "role"):
                column[:] = [intern(v) for v in column]
            columns[name] = column
        for name in _LIST_FIELDS:
            columns[name] = [getattr(e, name) for e in events]
        for name in _FLOAT_FIELDS:
            columns[name] = np.array([getattr(e, name) for e in events], dtype=float).reshape(n)
        return cls(spec.model, **columns)

    @classmethod
    def concat(cls, parts: list[PredictionColumns]) -> PredictionColumns:
        """One batch of the parts' rows (one model), in the order of their positions."""
        if len(parts) == 1:
            return parts[0]
        columns: dict[str, Any] = {}
        for name in cls.__slots__[1:]:
            values = [getattr(p, name) for p in parts]
            columns[name] = [v for part in values for v in part] if type(values[0]) is list else np.concatenate(values)
        joined = cls(parts[0].model, **columns)
        order = np.argsort(joined.positions, kind="stable")
        return joined.take(order)


class PredictionDecoder:
    """Decode a batch of raw prediction messages into per-model :class:`PredictionColumns`.

    Parameters
    ----------
    specs
        The models whose predictions are accepted.
    fallback
        The msgspec decoder (same specs, limits and clock) that decides every message off the
        compiled fast path.

    Attributes
    ----------
    fallbacks : int
        Messages so far that were off the fast path (decided by ``fallback``).
    """

    def __init__(self, specs: list[ModelSpec], fallback: EventDecoder):
        self.specs = {s.model: s for s in specs}
        self.fallback = fallback
        self.limits = fallback.limits
        names: list[str] = []
        for spec in specs:
            names.extend(f.name for f in spec.features if f.name not in names)
        slot = {name: i for i, name in enumerate(names)}
        self._n_features = len(names)
        self._top = scan.key_table(list(scan.TOP_FIELDS))
        self._features = scan.key_table(names)
        self._categorical_slot = np.zeros(len(names), dtype=np.uint8)
        for spec in specs:
            self._categorical_slot[[slot[n] for n in spec.categorical_features]] = 1
        self._slots = {
            s.model: (np.array([slot[n] for n in s.numeric_features], dtype=np.int64),
                      np.array([slot[n] for n in s.categorical_features], dtype=np.int64))
            for s in specs
        }
        self._models = list(self.specs)
        self._model_index = {m: i for i, m in enumerate(self._models)}
        self.fallbacks = 0

    def decode(self, messages: Sequence[bytes]) -> tuple[dict[str, PredictionColumns], list[tuple[int, Rejection]]]:
        """``(columns per model, [(position, rejection)])`` of the batch's messages."""
        n = len(messages)
        if n == 0:
            return {}, []
        lengths = np.fromiter(map(len, messages), dtype=np.int64, count=n)
        ends = np.cumsum(lengths)
        starts = ends - lengths
        data = b"".join(messages)
        buf = np.frombuffer(data, dtype=np.uint8)
        n_text = len(scan.TEXT_FIELDS)
        f = self._n_features
        ok = np.empty(n, dtype=np.uint8)
        event_ids = np.empty((n, 2), dtype=np.int64)
        entity_ids = np.empty((n, 2), dtype=np.int64)
        ts = np.empty(n, dtype=np.int64)
        texts = np.empty((n, n_text), dtype=np.int64)
        prediction_kind = np.empty(n, dtype=np.int8)
        prediction_float = np.empty(n)
        prediction_int = np.empty(n, dtype=np.int64)
        prediction_text = np.empty(n, dtype=np.int64)
        score_kind, score = np.empty(n, dtype=np.int8), np.empty(n)
        latency_kind, latency = np.empty(n, dtype=np.int8), np.empty(n)
        schema_kind, schema = np.empty(n, dtype=np.int8), np.empty(n, dtype=np.int64)
        feature_kind = np.empty((n, f), dtype=np.int8)
        feature_float = np.empty((n, f))
        feature_text = np.empty((n, f), dtype=np.int64)
        spans = np.empty((n * (n_text + f + 1), 2), dtype=np.int64)
        deferred = np.empty((n * (f + 3), 4), dtype=np.int64)
        count, n_deferred = scan.scan_predictions(
            buf, starts, ends, *self._top, *self._features, self._categorical_slot,
            ok, event_ids, entity_ids, ts, texts, prediction_kind, prediction_float, prediction_int, prediction_text,
            score_kind, score, latency_kind, latency, schema_kind, schema,
            feature_kind, feature_float, feature_text, spans, deferred,
        )
        if n_deferred:
            deferred = deferred[:n_deferred]
            values = np.array(list(map(float, scan.gather(buf, np.ascontiguousarray(deferred[:, 2:]), n_deferred).tobytes().split(b"\x00")[:-1])))
            rows, columns_ = deferred[:, 0], deferred[:, 1]
            ok[rows[~np.isfinite(values)]] = 0  # beyond float64: msgspec refuses it by name
            feature = columns_ < f
            feature_float[rows[feature], columns_[feature]] = values[feature]
            for column, target in ((f, score), (f + 1, latency), (f + 2, prediction_float)):
                chosen = columns_ == column
                target[rows[chosen]] = values[chosen]
        strings = np.empty(count + 1, dtype=object)
        strings[:count] = scan.gather(buf, spans, count).tobytes().decode("ascii").split("\x00")[:count]
        strings[count] = None
        # Interned: the few distinct versions, roles, categories and class labels of a batch are
        # held by every prediction that waits in the join for its label. Entity ids and hosts,
        # about one new string per prediction, are not: interning them cost more than it saved.
        held = np.zeros(count + 1, dtype=bool)
        held[texts[:, 1:3]] = True
        held[feature_text[feature_kind == scan.STRING]] = True
        held[prediction_text[prediction_kind == scan.STRING]] = True
        for code in np.flatnonzero(held[:count]).tolist():
            strings[code] = intern(strings[code])
        good = ok.view(bool)
        good &= lengths <= self.limits.max_event_bytes
        id_length = event_ids[:, 1] - event_ids[:, 0]
        good &= (id_length >= 1) & (id_length <= 256)
        good &= (ts >= MIN_TS_MS) & (ts <= self.fallback.now_ms() + self.limits.max_future_ms)
        good &= (schema_kind == scan.MISSING) | ((schema_kind == scan.INT) & (schema == 1))
        numeric_score = (score_kind == scan.INT) | (score_kind == scan.FLOAT)
        good &= (score_kind <= scan.NULL) | (numeric_score & (score >= 0.0) & (score <= 1.0))
        good &= (latency_kind <= scan.NULL) | (latency_kind == scan.INT) | (latency_kind == scan.FLOAT)
        named, model_codes = np.unique(texts[:, 0], return_inverse=True)
        model_of_name = np.array([self._model_index.get(s, -1) for s in strings[named].tolist()], dtype=np.int64)
        model = np.where(good, model_of_name[model_codes], -1)
        out: dict[str, PredictionColumns] = {}
        taken = np.zeros(n, dtype=bool)
        for index, name in enumerate(self._models):
            rows = np.flatnonzero(model == index)
            if rows.size == 0:
                continue
            spec = self.specs[name]
            numeric_slots, categorical_slots = self._slots[name]
            kinds = feature_kind[rows]
            numeric_kinds = kinds[:, numeric_slots]
            valid = (numeric_kinds != scan.STRING).all(axis=1)
            valid &= (kinds[:, categorical_slots] != scan.FLOAT).all(axis=1)
            prediction, fits = self._predictions(spec, rows, prediction_kind, prediction_float, prediction_int,
                                                 prediction_text, strings)
            valid &= fits
            rows, prediction = rows[valid], prediction[valid]
            if rows.size == 0:
                continue
            taken[rows] = True
            numeric = feature_float[np.ix_(rows, numeric_slots)]
            numeric_kinds = numeric_kinds[valid]
            numeric[numeric_kinds == scan.TRUE] = 1.0
            numeric[numeric_kinds == scan.FALSE] = 0.0
            numeric[numeric_kinds <= scan.NULL] = np.nan
            row_texts = texts[rows]
            role = strings[row_texts[:, 2]]
            role[row_texts[:, 2] < 0] = "champion"
            columns: dict[str, Any] = {
                "positions": rows,
                "event_id": scan.gather(buf, event_ids[rows], rows.size).tobytes().decode("ascii").split("\x00")[:-1],
                "version": strings[row_texts[:, 1]],
                "role": role,
                "ts": ts[rows],
                "numeric": numeric,
                "categorical": strings[feature_text[np.ix_(rows, categorical_slots)]],
                "prediction": prediction,
                "score": np.where(score_kind[rows] <= scan.NULL, np.nan, score[rows]),
                "probabilities": [None] * rows.size,
                "explanation": [None] * rows.size,
                "latency_ms": np.where(latency_kind[rows] <= scan.NULL, np.nan, latency[rows]),
            }
            for column, field in ((3, "action"), (4, "host")):
                values = strings[row_texts[:, column]]
                values[row_texts[:, column] < 0] = ""
                columns[field] = values
            entity = np.empty(rows.size, dtype=object)
            entity[:] = scan.gather(buf, entity_ids[rows], rows.size).tobytes().decode("ascii").split("\x00")[:-1]
            columns["entity_id"] = entity
            out[name] = PredictionColumns(name, **columns)
        rejected: list[tuple[int, Rejection]] = []
        slow: dict[str, tuple[list[Prediction], list[int]]] = {}
        slow_positions = np.flatnonzero(~taken).tolist()
        self.fallbacks += len(slow_positions)
        for position in slow_positions:
            try:
                event = self.fallback.decode_prediction(messages[position])
            except InvalidEvent as error:
                rejected.append((position, error.rejection))
                continue
            events, positions = slow.setdefault(event.model, ([], []))
            events.append(event)
            positions.append(position)
        for name, (events, positions) in slow.items():
            columns_ = PredictionColumns.from_events(self.specs[name], events, positions)
            out[name] = PredictionColumns.concat([out[name], columns_]) if name in out else columns_
        return out, rejected

    @staticmethod
    def _predictions(spec: ModelSpec, rows: np.ndarray, kind: np.ndarray, as_float: np.ndarray,
                     as_int: np.ndarray, as_text: np.ndarray, strings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The prediction values of ``rows`` and whether each fits the model's target type."""
        kind = kind[rows]
        if spec.task == "regression":
            fits = (kind == scan.INT) | (kind == scan.FLOAT)
            return as_float[rows].astype(object), fits
        values = np.empty(rows.size, dtype=object)
        fits = np.zeros(rows.size, dtype=bool)
        labels = spec.class_labels
        integers = [label for label in labels if type(label) is int]
        texts = [label for label in labels if type(label) is str]
        if integers:
            is_int = kind == scan.INT
            ints = as_int[rows]
            member = is_int & np.isin(ints, integers)
            values[member] = ints[member].astype(object)
            fits |= member
        if texts:
            is_text = kind == scan.STRING
            text = strings[np.where(is_text, as_text[rows], -1)]
            allowed = set(texts)
            member = is_text & np.fromiter((t in allowed for t in text.tolist()), dtype=bool, count=rows.size)
            values[member] = text[member]
            fits |= member
        return values, fits
