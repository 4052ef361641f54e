"""The prediction x ground-truth join.

Either side may arrive first. A prediction waits for its label, and a label for its
prediction, until its model's watermark is ``ttl_ms`` past its own timestamp. Once joined, the entry
shrinks to a marker (the prediction time) kept until the same TTL, so that a replayed
prediction or a second label for the same event is recognised as a duplicate instead of being
counted twice. Labels whose prediction never came are returned as orphans when they expire.
Each model's entries live in a :class:`~driftline.streams.join_table.JoinTable`.

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

from collections.abc import Sequence
from itertools import compress, repeat
from typing import Any

import msgspec
import numpy as np

from driftline.events import GroundTruth, Rejection
from driftline.streams.columns import PredictionColumns
from driftline.streams.join_table import DUPLICATE, INSERTED, JOINED, LABEL, PREDICTION, JoinTable, PendingLabel

__all__ = ["Joiner", "LabeledRow", "PendingLabel", "segment_matrix"]


# A msgspec Struct rather than a dataclass: created once per joined event, it builds in C and,
# with ``gc=False`` (it never takes part in a reference cycle), adds nothing to the cyclic
# collector's work, which had cost as much as the join itself.
class LabeledRow(msgspec.Struct, gc=False):
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


def segment_matrix(rows: Sequence[LabeledRow], width: int) -> np.ndarray:
    """The rows' first ``width`` segment values as an ``(n, width)`` object array.

    A row restored from a checkpoint of a spec with fewer segments has fewer values; the missing
    ones are ``None`` (missing).

    >>> row = LabeledRow("e", "m", "v1", "champion", ("north",), 1, 2, 1, 0.9, None, 1, "s")
    >>> segment_matrix([row], 2).tolist()
    [['north', None]]
    """
    out = np.empty((len(rows), width), dtype=object)
    values = [r.segment_values for r in rows]
    for j in range(width):
        out[:, j] = [v[j] if len(v) > j else None for v in values]
    return out


class Joiner:
    """Join predictions and ground truth by model and ``event_id``.

    Parameters
    ----------
    tables
        Per model, its :class:`~driftline.streams.join_table.JoinTable` (created on first use):
        the whole join state, pickled with a partition's checkpoint.
    ttl_ms
        Per model, how long (event time) either side waits for the other.
    segment_columns
        Per model, the categorical feature columns (indices into
        :attr:`PredictionColumns.categorical <driftline.streams.columns.PredictionColumns>`)
        whose values travel with the joined row: its segments and protected attribute.
    regression
        The models whose predictions are numbers.

    The TTL is checked when an event arrives, against the watermark in force at its place in
    the stream (the largest prediction time of its model before it), so whether two events join
    never depends on how the stream was batched or when the sweep in :meth:`expire` last ran.
    """

    def __init__(
        self,
        tables: dict[str, JoinTable],
        ttl_ms: dict[str, int],
        segment_columns: dict[str, tuple[int, ...]],
        regression: frozenset[str] = frozenset(),
    ):
        for model, ttl in ttl_ms.items():
            if ttl <= 0:
                raise ValueError(f"ttl_ms[{model!r}] must be > 0, got {ttl}")
        self.tables = tables
        self.ttl_ms = ttl_ms
        self.segment_columns = segment_columns
        self.regression = regression
        self._orphans: list[PendingLabel] = []

    def table(self, model: str) -> JoinTable:
        table = self.tables.get(model)
        if table is None:
            table = self.tables[model] = JoinTable(model, len(self.segment_columns[model]), model in self.regression)
        return table

    def watermark(self, model: str) -> int:
        """The largest prediction time seen for ``model``."""
        table = self.tables.get(model)
        return 0 if table is None else table.watermark

    def add_predictions(self, batch: PredictionColumns) -> tuple[list[LabeledRow], list[tuple[int, Rejection]]]:
        """Join a batch of one model's predictions, in order.

        Returns the joined rows and ``(row, rejection)`` for every prediction whose
        ``event_id`` was already seen within the TTL (``row`` indexes ``batch``).
        """
        if not len(batch):
            return [], []
        model = batch.model
        table = self.table(model)
        columns = list(self.segment_columns[model])
        before = np.maximum.accumulate(np.concatenate(([table.watermark], batch.ts)))
        action, row, expired = table.match(PREDICTION, batch.event_id, batch.ts, before[:-1] - self.ttl_ms[model])
        table.watermark = int(before[-1])
        inserted = action == INSERTED
        if inserted.any():
            table.put_predictions(
                row[inserted], batch.version[inserted], batch.role[inserted], batch.prediction[inserted],
                batch.score[inserted], list(compress(batch.probabilities, inserted.tolist())),
                batch.categorical[inserted][:, columns],
            )
        self._orphans.extend(table.drop(expired))
        joined = np.flatnonzero(action == JOINED)
        out: list[LabeledRow] = []
        if joined.size:
            event_id, label_ts, label, source, _ = zip(*map(table.take_label, row[joined].tolist()))
            out = list(map(
                LabeledRow, event_id, repeat(model), batch.version[joined].tolist(), batch.role[joined].tolist(),
                map(tuple, batch.categorical[joined][:, columns].tolist()), batch.ts[joined].tolist(), label_ts,
                batch.prediction[joined].tolist(), PredictionColumns.optional(batch.score[joined]),
                [batch.probabilities[i] for i in joined.tolist()], label, source,
            ))
        rejected = [
            (i, Rejection("duplicate_event_id", "event_id", "an event_id not seen within label_ttl", batch.event_id[i]))
            for i in np.flatnonzero(action == DUPLICATE).tolist()
        ]
        return out, rejected

    def add_ground_truth(
        self,
        events: list[GroundTruth],
        origins: Sequence[Any] | None = None,
        watermarks: list[int] | None = None,
    ) -> tuple[list[LabeledRow], list[tuple[Any, Rejection]]]:
        """Join labels.

        ``origins`` (one per event, e.g. the raw message) is kept with a label that waits and
        handed back if it expires as an orphan. ``watermarks`` gives, per label, the watermark
        of its model at the label's place in the stream (default: the current one).
        """
        if watermarks is None:
            watermarks = [self.watermark(event.model) for event in events]
        models = [event.model for event in events]
        groups = {models[0]: range(len(events))} if len(set(models)) == 1 else {}
        if not groups:
            for i, model in enumerate(models):
                groups.setdefault(model, []).append(i)  # type: ignore[union-attr]
        joined: list[LabeledRow] = []
        joined_at: list[int] = []
        rejected: list[tuple[Any, Rejection]] = []
        rejected_at: list[int] = []
        for model, at in groups.items():
            table = self.table(model)
            chosen = [events[i] for i in at] if type(at) is list else events
            cutoffs = np.array([watermarks[i] for i in at], dtype=np.int64) - self.ttl_ms[model]
            ts = np.array([e.ts for e in chosen], dtype=np.int64)
            action, row, expired = table.match(LABEL, [e.event_id for e in chosen], ts, cutoffs)
            for k in np.flatnonzero(action == INSERTED).tolist():
                event = chosen[k]
                table.put_label(int(row[k]), (event.event_id, event.ts, event.label, event.source, None if origins is None else origins[at[k]]))
            self._orphans.extend(table.drop(expired))
            hits = np.flatnonzero(action == JOINED).tolist()
            if hits:
                version, role, values, prediction_ts, prediction, score, probabilities = table.take_predictions(row[hits])
                met = [chosen[k] for k in hits]
                joined.extend(map(
                    LabeledRow, [e.event_id for e in met], repeat(model), version, role, values, prediction_ts,
                    [e.ts for e in met], prediction, score, probabilities, [e.label for e in met], [e.source for e in met],
                ))
                joined_at.extend(at[k] for k in hits)
            for k in np.flatnonzero(action == DUPLICATE).tolist():
                rejected.append((chosen[k], Rejection("duplicate_label", "event_id", "one label per event_id", chosen[k].event_id)))
                rejected_at.append(at[k])
        if len(groups) > 1:
            joined = [joined[i] for i in np.argsort(joined_at, kind="stable").tolist()]
            rejected = [rejected[i] for i in np.argsort(rejected_at, kind="stable").tolist()]
        return joined, rejected

    def expire(self, force: bool = False) -> list[PendingLabel]:
        """Drop entries older than their model's TTL; returns the labels among them (orphans).

        The sweep only bounds memory (the TTL itself is checked on arrival); it runs at most
        every ``ttl / 16`` of a model's watermark progress (or when ``force``), so its amortised
        cost per event stays constant.
        """
        orphans, self._orphans = self._orphans, []
        for model, ttl in self.ttl_ms.items():
            table = self.tables.get(model)
            if table is not None and (force or table.watermark - table.swept_at >= ttl // 16):
                orphans.extend(table.expire(table.watermark - ttl))
                table.swept_at = table.watermark
        return orphans

    def pending_labels(self) -> list[PendingLabel]:
        """Labels still waiting for their prediction (reported as orphans when a replay ends)."""
        return [label for table in self.tables.values() for label in table.pending_labels()]
