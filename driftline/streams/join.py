"""The prediction x ground-truth join.

Either side may arrive first. A prediction waits for its label, and a label for its
prediction, until its model's watermark is ``ttl_ms`` past its own timestamp. Once joined, the entry
shrinks to a marker (the prediction time) kept until the same TTL, so that a replayed
prediction or a second label for the same event is recognised as a duplicate instead of being
counted twice. Labels whose prediction never came are returned as orphans when they expire.

Examples
--------
>>> from driftline.config import parse_spec
>>> from driftline.events import Prediction, GroundTruth
>>> from driftline.streams.columns import PredictionColumns
>>> spec = parse_spec({"model": "m", "task": "binary", "reference": {"path": "ref.csv"},
...                    "features": [{"name": "x", "kind": "numeric"}]})
>>> joiner = Joiner({}, ttl_ms={"m": 1_000}, segment_columns={"m": ()})
>>> p = Prediction(model="m", event_id="a", version="v1", ts=1_000, features={}, prediction=1, score=0.9)
>>> joiner.add_predictions(PredictionColumns.from_events(spec, [p]))
([], [])
>>> rows, rejected = joiner.add_ground_truth([GroundTruth(model="m", event_id="a", ts=1_500, label=0)])
>>> rows[0].label, rows[0].delay_ms
(0, 500)
>>> joiner.add_ground_truth([GroundTruth(model="m", event_id="a", ts=1_600, label=1)])[1][0][1].code
'duplicate_label'

"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import repeat
from typing import Any

from driftline.events import GroundTruth, Rejection
from driftline.streams.columns import PredictionColumns
from driftline.streams.state import State

_PREDICTION = "P"
_LABEL = "L"
# State keys are "model<US>event_id" strings: a tuple key would cost another ~60 bytes per
# entry, and the join keeps one entry per event for the whole label TTL. Model names cannot
# hold the unit separator (the spec restricts them to [A-Za-z0-9_.-]).
_SEP = "\x1f"


def split_key(key: str) -> tuple[str, str]:
    """``(model, event_id)`` of a join state key."""
    model, _, event_id = key.partition(_SEP)
    return model, event_id


@dataclass(slots=True)
class LabeledRow:
    """A prediction joined with its ground truth.

    ``segment_values`` are the categories (:func:`~driftline.reference.category` text, ``None``
    when missing) of the model's segments and then of its protected attribute.
    """

    event_id: str
    model: str
    version: str
    role: str
    segment_values: tuple[Any, ...]
    prediction_ts: int
    label_ts: int
    prediction: Any
    score: float | None
    probabilities: dict[str, float] | None
    label: Any
    source: str

    @property
    def delay_ms(self) -> int:
        return self.label_ts - self.prediction_ts


class Joiner:
    """Join predictions and ground truth by model and ``event_id`` over a key-value state.

    Parameters
    ----------
    state
        Mapping that holds pending entries, joined markers and each model's watermark.
    ttl_ms
        Per model, how long (event time) either side waits for the other.
    segment_columns
        Per model, the categorical feature columns (indices into
        :attr:`PredictionColumns.categorical <driftline.streams.columns.PredictionColumns>`)
        whose values travel with the joined row: its segments and protected attribute.

    The TTL is checked when an event arrives, against the watermark in force at its place in
    the stream (the largest prediction time of its model before it), so whether two events join
    never depends on how the stream was batched or when the sweep in :meth:`expire` last ran.
    """

    def __init__(self, state: State, ttl_ms: dict[str, int], segment_columns: dict[str, tuple[int, ...]]):
        for model, ttl in ttl_ms.items():
            if ttl <= 0:
                raise ValueError(f"ttl_ms[{model!r}] must be > 0, got {ttl}")
        self.state = state
        self.ttl_ms = ttl_ms
        self.segment_columns = segment_columns
        self._orphans: list[tuple[str, tuple[Any, ...]]] = []
        self._swept_at: dict[str, int] = {}

    def watermark(self, model: str) -> int:
        """The largest prediction time seen for ``model``."""
        return self.state.get(_SEP + model, 0)

    def _take_expired(self, key: str, entry: Any) -> None:
        del self.state[key]
        if type(entry) is not int and entry[0] == _LABEL:
            self._orphans.append((key, entry))

    def add_predictions(self, batch: PredictionColumns) -> tuple[list[LabeledRow], list[tuple[int, Rejection]]]:
        """Join a batch of one model's predictions, in order.

        Returns the joined rows and ``(row, rejection)`` for every prediction whose
        ``event_id`` was already seen within the TTL (``row`` indexes ``batch``).
        """
        rows: list[LabeledRow] = []
        rejected: list[tuple[int, Rejection]] = []
        state = self.state
        model = batch.model
        prefix = model + _SEP
        ttl = self.ttl_ms[model]
        watermark = self.watermark(model)
        columns = self.segment_columns[model]
        values_of = zip(*(batch.categorical[:, j].tolist() for j in columns)) if columns else repeat(())
        scores = PredictionColumns.optional(batch.score)
        for i, (event_id, ts, version, role, prediction, score, probabilities, values) in enumerate(zip(
            batch.event_id, batch.ts.tolist(), batch.version.tolist(), batch.role.tolist(),
            batch.prediction.tolist(), scores, batch.probabilities, values_of,
        )):
            key = prefix + event_id
            entry = state.get(key)
            if entry is not None and (entry if type(entry) is int else entry[1]) < watermark - ttl:
                self._take_expired(key, entry)
                entry = None
            if ts > watermark:
                watermark = ts
            if entry is not None and (type(entry) is int or entry[0] == _PREDICTION):
                rejected.append((i, Rejection("duplicate_event_id", "event_id", "an event_id not seen within label_ttl", event_id)))
                continue
            if entry is None:
                state[key] = (_PREDICTION, ts, version, role, prediction, score, probabilities, values)
            else:
                _, label_ts, label, source, _ = entry
                state[key] = ts
                rows.append(
                    LabeledRow(event_id, model, version, role, values, ts, label_ts, prediction, score, probabilities, label, source)
                )
        if len(batch):
            state[_SEP + model] = watermark
        return rows, rejected

    def add_ground_truth(
        self,
        events: list[GroundTruth],
        origins: list[Any] | None = None,
        watermarks: list[int] | None = None,
    ) -> tuple[list[LabeledRow], list[tuple[Any, Rejection]]]:
        """Join labels.

        ``origins`` (one per event, e.g. the raw message) is kept with a label that waits and
        handed back if it expires as an orphan. ``watermarks`` gives, per label, the watermark
        of its model at the label's place in the stream (default: the current one).
        """
        rows: list[LabeledRow] = []
        rejected: list[tuple[Any, Rejection]] = []
        state = self.state
        ttl_ms = self.ttl_ms
        if watermarks is None:
            watermarks = [self.watermark(event.model) for event in events]
        for event, origin, watermark in zip(events, repeat(None) if origins is None else origins, watermarks):
            model = event.model
            key = model + _SEP + event.event_id
            entry = state.get(key)
            if entry is not None and (entry if type(entry) is int else entry[1]) < watermark - ttl_ms[model]:
                self._take_expired(key, entry)
                entry = None
            if entry is None:
                state[key] = (_LABEL, event.ts, event.label, event.source, origin)
            elif type(entry) is int or entry[0] == _LABEL:
                rejected.append((event, Rejection("duplicate_label", "event_id", "one label per event_id", event.event_id)))
            else:
                _, ts, version, role, prediction, score, probabilities, values = entry
                state[key] = ts
                rows.append(
                    LabeledRow(event.event_id, model, version, role, values, ts,
                               event.ts, prediction, score, probabilities, event.label, event.source)
                )
        return rows, rejected

    def expire(self, force: bool = False) -> list[tuple[str, tuple[Any, ...]]]:
        """Drop entries older than their model's TTL; returns orphan labels as ``(key, entry)``.

        The sweep only bounds memory (the TTL itself is checked on arrival); it scans at most
        every ``ttl / 16`` of a model's watermark progress (or when ``force``), so its amortised
        cost per event stays constant.
        """
        due = {}
        for model, ttl in self.ttl_ms.items():
            watermark = self.watermark(model)
            if force or watermark - self._swept_at.get(model, 0) >= ttl // 16:
                due[model] = watermark - ttl
                self._swept_at[model] = watermark
        if due:
            for key, entry in list(self.state.items()):
                model, _, event_id = key.partition(_SEP)
                if event_id and model in due and (entry if type(entry) is int else entry[1]) < due[model]:
                    self._take_expired(key, entry)
        orphans, self._orphans = self._orphans, []
        return orphans

    def pending_labels(self) -> list[tuple[str, tuple[Any, ...]]]:
        """Labels still waiting for their prediction (reported as orphans when a replay ends)."""
        return [
            (key, entry) for key, entry in self.state.items()
            if not key.startswith(_SEP) and type(entry) is not int and entry[0] == _LABEL
        ]
