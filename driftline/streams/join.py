"""The prediction x ground-truth join.

Either side may arrive first. A prediction waits for its label, and a label for its
prediction, until its model's watermark is ``ttl_ms`` past its own timestamp. Once joined, the entry
shrinks to a marker (the prediction time) kept until the same TTL, so that a replayed
prediction or a second label for the same event is recognised as a duplicate instead of being
counted twice. Labels whose prediction never came are returned as orphans when they expire.

Examples
--------
>>> from driftline.events import Prediction, GroundTruth
>>> joiner = Joiner({}, ttl_ms={"m": 1_000}, segment_fields={"m": ()})
>>> p = Prediction(model="m", event_id="a", version="v1", ts=1_000, features={}, prediction=1, score=0.9)
>>> joiner.add_predictions([p])
([], [])
>>> rows, rejected = joiner.add_ground_truth([GroundTruth(model="m", event_id="a", ts=1_500, label=0)])
>>> rows[0].label, rows[0].delay_ms
(0, 500)
>>> joiner.add_ground_truth([GroundTruth(model="m", event_id="a", ts=1_600, label=1)])[1][0][1].code
'duplicate_label'

"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter
from sys import intern
from typing import Any

from driftline.events import GroundTruth, Prediction, Rejection
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


def _values_getter(names: tuple[str, ...]) -> Any:
    """The named features of a typed features struct, or of a plain mapping, as a tuple."""
    if not names:
        return lambda features: ()
    attributes = attrgetter(*names)
    single = len(names) == 1

    def get(features: Any) -> tuple[Any, ...]:
        if type(features) is dict:
            return tuple(features.get(name) for name in names)
        return (attributes(features),) if single else attributes(features)

    return get


@dataclass(slots=True)
class LabeledRow:
    """A prediction joined with its ground truth."""

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
    segment_fields
        Per model, the feature names whose values travel with the joined row (segments and
        the protected attribute).

    The TTL is checked when an event arrives, against the watermark in force at its place in
    the stream (the largest prediction time of its model before it), so whether two events join
    never depends on how the stream was batched or when the sweep in :meth:`expire` last ran.
    """

    def __init__(self, state: State, ttl_ms: dict[str, int], segment_fields: dict[str, tuple[str, ...]]):
        for model, ttl in ttl_ms.items():
            if ttl <= 0:
                raise ValueError(f"ttl_ms[{model!r}] must be > 0, got {ttl}")
        self.state = state
        self.ttl_ms = ttl_ms
        self.segment_fields = segment_fields
        self._getters = {model: _values_getter(names) for model, names in segment_fields.items()}
        self._orphans: list[tuple[str, tuple[Any, ...]]] = []
        self._swept_at: dict[str, int] = {}

    def watermark(self, model: str) -> int:
        """The largest prediction time seen for ``model``."""
        return self.state.get(_SEP + model, 0)

    def _expired(self, entry: Any, model: str, watermark: int) -> bool:
        return (entry if type(entry) is int else entry[1]) < watermark - self.ttl_ms[model]

    def _take_expired(self, key: str, entry: Any) -> None:
        del self.state[key]
        if type(entry) is not int and entry[0] == _LABEL:
            self._orphans.append((key, entry))

    def add_predictions(self, events: list[Prediction]) -> tuple[list[LabeledRow], list[tuple[Any, Rejection]]]:
        rows: list[LabeledRow] = []
        rejected: list[tuple[Any, Rejection]] = []
        state = self.state
        getters = self._getters
        watermarks: dict[str, int] = {}
        for event in events:
            model = event.model
            watermark = watermarks.get(model)
            if watermark is None:
                watermark = self.watermark(model)
            key = model + _SEP + event.event_id
            entry = state.get(key)
            if entry is not None and self._expired(entry, model, watermark):
                self._take_expired(key, entry)
                entry = None
            if event.ts > watermark:
                watermarks[model] = event.ts
            elif model not in watermarks:
                watermarks[model] = watermark
            if entry is not None and (type(entry) is int or entry[0] == _PREDICTION):
                rejected.append((event, Rejection("duplicate_event_id", "event_id", "an event_id not seen within label_ttl", event.event_id)))
                continue
            values = getters[model](event.features)
            if entry is None:
                # Interned: every decoded event carries its own copies of these few distinct
                # strings, and a waiting prediction holds them for up to the label TTL.
                values = tuple(intern(v) if type(v) is str else v for v in values)
                state[key] = (_PREDICTION, event.ts, intern(event.version), intern(event.role), event.prediction,
                              event.score, event.probabilities, values)
            else:
                _, label_ts, label, source, _ = entry
                state[key] = event.ts
                rows.append(
                    LabeledRow(event.event_id, model, event.version, event.role, values, event.ts,
                               label_ts, event.prediction, event.score, event.probabilities, label, source)
                )
        for model, watermark in watermarks.items():
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
        for i, event in enumerate(events):
            model = event.model
            key = model + _SEP + event.event_id
            entry = state.get(key)
            watermark = self.watermark(model) if watermarks is None else watermarks[i]
            if entry is not None and self._expired(entry, model, watermark):
                self._take_expired(key, entry)
                entry = None
            if entry is None:
                state[key] = (_LABEL, event.ts, event.label, event.source, None if origins is None else origins[i])
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
