"""The columnar join against a plain dict model of the join's rules, on random streams.

The model below is the rule book written the obvious way, one event at a time: an entry older
than the TTL (against the watermark where the event arrives) is expired first; a prediction
meeting a waiting label joins it, meeting a prediction or a joined marker it is a duplicate;
the same for labels the other way round. The :class:`Joiner` must agree on every joined row,
rejection, orphan and pending label, across batch cuts, pickling, growth, and compaction.
"""

from __future__ import annotations

import pickle
import random
from typing import Any

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

from driftline.config import parse_spec
from driftline.events import GroundTruth, Prediction
from driftline.streams.columns import PredictionColumns
from driftline.streams.join import Joiner
from driftline.streams.join_table import JoinTable

MODELS = ("m", "n", "r")
SPECS = {
    m: parse_spec({
        "model": m, "task": "regression" if m == "r" else "binary", "reference": {"path": "ref.csv"},
        "features": [{"name": "x", "kind": "numeric"}, {"name": "c", "kind": "categorical"}],
        "segments": ["c"],
    })
    for m in MODELS
}


class Model:
    """The join's rules, one event at a time, over a dict."""

    def __init__(self, ttl: int):
        self.ttl = ttl
        self.entries: dict[tuple[str, str], tuple[Any, ...]] = {}
        self.watermark = dict.fromkeys(MODELS, 0)
        self.swept_at = dict.fromkeys(MODELS, 0)
        self.orphans: list[tuple[Any, ...]] = []

    def _lookup(self, model: str, event_id: str, watermark: int) -> tuple[Any, ...] | None:
        entry = self.entries.get((model, event_id))
        if entry is not None and entry[1] < watermark - self.ttl:
            del self.entries[(model, event_id)]
            if entry[0] == "L":
                self.orphans.append((model, event_id, entry[1], entry[2]))
            return None
        return entry

    def prediction(self, model: str, event_id: str, ts: int, payload: tuple[Any, ...]) -> tuple[Any, ...]:
        entry = self._lookup(model, event_id, self.watermark[model])
        self.watermark[model] = max(self.watermark[model], ts)
        if entry is None:
            self.entries[(model, event_id)] = ("P", ts, payload)
            return ("inserted",)
        if entry[0] == "L":
            self.entries[(model, event_id)] = ("J", ts)
            return ("joined", (event_id, model, ts, entry[1], entry[2], *payload))
        return ("duplicate", "duplicate_event_id")

    def label(self, model: str, event_id: str, ts: int, label: int, watermark: int) -> tuple[Any, ...]:
        entry = self._lookup(model, event_id, watermark)
        if entry is None:
            self.entries[(model, event_id)] = ("L", ts, label)
            return ("inserted",)
        if entry[0] == "P":
            self.entries[(model, event_id)] = ("J", entry[1])
            return ("joined", (event_id, model, entry[1], ts, label, *entry[2]))
        return ("duplicate", "duplicate_label")

    def sweep(self, force: bool) -> list[tuple[Any, ...]]:
        """The orphans so far, after dropping what is past the TTL in each model due a sweep."""
        due = [m for m in MODELS if force or self.watermark[m] - self.swept_at[m] >= self.ttl // 16]
        for m in due:
            self.swept_at[m] = self.watermark[m]
        for (model, event_id), entry in list(self.entries.items()):
            if model in due and entry[1] < self.watermark[model] - self.ttl:
                del self.entries[(model, event_id)]
                if entry[0] == "L":
                    self.orphans.append((model, event_id, entry[1], entry[2]))
        orphans, self.orphans = self.orphans, []
        return orphans

    def pending(self) -> list[tuple[Any, ...]]:
        return sorted((m, e, v[1], v[2]) for (m, e), v in self.entries.items() if v[0] == "L")


def _row(row: Any) -> tuple[Any, ...]:
    return (row.event_id, row.model, row.prediction_ts, row.label_ts, row.label,
            row.segment_values, row.version, row.prediction, row.score, row.probabilities)


def _orphan(label: Any) -> tuple[Any, ...]:
    return (label.model, label.event_id, label.ts, label.label)


def run(steps: list[tuple[str, list[tuple[Any, ...]]]], ttl: int, pickle_every: int = 0) -> None:
    """Feed the same steps to a :class:`Joiner` and to :class:`Model`; they must agree."""
    tables: dict[str, JoinTable] = {}
    joiner = Joiner(tables, dict.fromkeys(MODELS, ttl), dict.fromkeys(MODELS, (0,)))
    model = Model(ttl)
    for step, (kind, events) in enumerate(steps):
        if pickle_every and step % pickle_every == 0:
            joiner = Joiner(pickle.loads(pickle.dumps(joiner.tables)), joiner.ttl_ms, joiner.segment_columns)
        if kind == "expire":
            # A forced sweep, as at the end of a replay: both sides drop everything past the TTL.
            assert sorted(map(_orphan, joiner.expire(force=True))) == sorted(model.sweep(force=True))
            continue
        if kind == "predictions":
            by_model: dict[str, list[tuple[Any, ...]]] = {}
            for event in events:
                by_model.setdefault(event[0], []).append(event)
            for name, chosen in by_model.items():
                expected = [model.prediction(name, e, ts, ((seg,), version, prediction, score, probabilities))
                            for _, e, ts, seg, version, prediction, score, probabilities in chosen]
                batch = PredictionColumns.from_events(SPECS[name], [
                    Prediction(model=name, event_id=e, version=version, ts=ts, features={"x": 1.0, "c": seg},
                               prediction=prediction, score=score, probabilities=probabilities)
                    for _, e, ts, seg, version, prediction, score, probabilities in chosen
                ])
                rows, rejected = joiner.add_predictions(batch)
                assert [_row(r) for r in rows] == [x[1] for x in expected if x[0] == "joined"]
                assert [(i, r.code) for i, r in rejected] == [(i, x[1]) for i, x in enumerate(expected) if x[0] == "duplicate"]
        else:
            # Each label meets the watermark where it arrived in the stream: the current one, or
            # higher where predictions (of another batch) came between the labels.
            watermarks = []
            for name, _, _, _, ahead in events:
                watermarks.append(max([model.watermark[name] + ahead] + [w for (m, *_), w in zip(events, watermarks) if m == name]))
            expected = [model.label(name, e, ts, y, w) for (name, e, ts, y, _), w in zip(events, watermarks)]
            truths = [GroundTruth(model=name, event_id=e, ts=ts, label=y) for name, e, ts, y, _ in events]
            rows, rejected = joiner.add_ground_truth(truths, None, watermarks)
            assert [_row(r) for r in rows] == [x[1] for x in expected if x[0] == "joined"]
            position = {id(t): i for i, t in enumerate(truths)}
            assert [(position[id(t)], r.code) for t, r in rejected] == [
                (i, x[1]) for i, x in enumerate(expected) if x[0] == "duplicate"
            ]
        assert sorted(map(_orphan, joiner.expire())) == sorted(model.sweep(force=False))
    assert sorted(map(_orphan, joiner.pending_labels())) == model.pending()
    for name in MODELS:
        assert joiner.watermark(name) == model.watermark[name]


def _id(number: int) -> str:
    """Ids of the shapes the table stores differently: canonical UUIDs (packed to 16 bytes),
    uppercase and malformed UUIDs, 16-character ids equal to some UUID's packed bytes, and others."""
    text = f"{number:032x}"
    uuid = f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
    form = number % 5
    if form == 0:
        return uuid
    if form == 1:
        return uuid.upper()
    if form == 2:
        return uuid[:-1] + "g"
    if form == 3:
        return bytes.fromhex(f"{number // 5:032x}").decode("latin-1")
    return f"id-{number}"


def _event(kind: str, draw_id: int, ts: int, model: str, value: int) -> tuple[Any, ...]:
    event_id = _id(draw_id)
    if kind == "labels":
        return (model, event_id, ts, value / 4 if model == "r" else value % 2, (value * 7) % 50)
    prediction = value / 3 if model == "r" else value % 2
    score = None if model == "r" or value % 7 == 0 else (value % 7) / 7
    probabilities = None if score is None or value % 3 == 0 else {"0": 1 - score, "1": score}
    return (model, event_id, ts, None if value == 5 else f"s{value}", f"v{value % 3}", prediction, score, probabilities)


@st.composite
def streams(draw: Any) -> list[tuple[str, list[tuple[Any, ...]]]]:
    steps = []
    clock = 0
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["predictions", "labels", "expire"]))
        events = []
        for _ in range(draw(st.integers(0, 8))):
            clock += draw(st.integers(0, 40))
            events.append(_event(kind, draw(st.integers(0, 9)), clock - draw(st.integers(0, 60)),
                                 draw(st.sampled_from(MODELS)), draw(st.integers(0, 5))))
        steps.append((kind, events))
    return steps


@settings(max_examples=300, deadline=None)
@given(streams(), st.integers(1, 100), st.integers(0, 3))
def test_joiner_follows_the_rules(steps: list[tuple[str, list[tuple[Any, ...]]]], ttl: int, pickle_every: int) -> None:
    run(steps, ttl, pickle_every)


@pytest.mark.parametrize("seed", [1, 2])
def test_joiner_follows_the_rules_through_growth_and_compaction(seed: int) -> None:
    """Tens of thousands of events over a pool of ids: the table grows, reindexes, compacts and
    forgets segment categories no pending prediction holds any more."""
    rng = random.Random(seed)
    steps = []
    clock = 0
    for step in range(120):
        kind = "expire" if step % 17 == 16 else rng.choice(["predictions", "labels"])
        events = []
        for _ in range(rng.randint(50, 400)):
            clock += rng.randint(0, 3)
            # Segment categories from a large range: the table's list of distinct values is pruned.
            events.append(_event(kind, rng.randint(0, 6_000), clock - rng.randint(0, 200), rng.choice(MODELS), rng.randint(0, 3_000)))
        steps.append((kind, events))
    run(steps, ttl=2_000, pickle_every=25)


def test_ids_beyond_ascii_and_hash_neighbours_stay_apart() -> None:
    table = JoinTable("m", n_segments=0)
    ids = ["é", "e", "\u00e9\u0301", "😀", "a" * 256, "a" * 255, "\ud800", "61616161-6161-6161-6161-616161616161",
           "a" * 16, "61616161-6161-6161-6161-61616161616A", "61616161-6161-6161-6161-61616161616", ""]
    action, rows, _ = table.match(1, ids, np.arange(len(ids)), np.zeros(len(ids), dtype=np.int64))
    assert action.tolist() == [0] * len(ids)
    action, again, _ = table.match(1, ids, np.arange(len(ids)), np.zeros(len(ids), dtype=np.int64))
    assert action.tolist() == [2] * len(ids) and again.tolist() == rows.tolist()


def test_a_label_that_expires_the_marker_of_another_in_its_batch_keeps_its_probabilities() -> None:
    """Within one label batch, label 1 joins prediction ``a``; label 2 for ``a`` then meets a
    higher watermark, past the TTL, and expires the marker: label 1's row keeps its payload."""
    spec = SPECS["m"]
    joiner = Joiner({}, {"m": 1_000}, {"m": (0,)})
    probabilities = {"0": 0.3, "1": 0.7}
    joiner.add_predictions(PredictionColumns.from_events(spec, [
        Prediction(model="m", event_id="a", version="v1", ts=1_000, features={"c": "s"}, prediction=1, score=0.7,
                   probabilities=probabilities),
        Prediction(model="m", event_id="b", version="v1", ts=5_000, features={"c": "s"}, prediction=0, score=0.2),
    ]))
    rows, rejected = joiner.add_ground_truth(
        [GroundTruth(model="m", event_id="a", ts=1_100, label=1), GroundTruth(model="m", event_id="a", ts=5_100, label=0)],
        None, [1_000, 5_000],
    )
    assert [(r.event_id, r.label, r.probabilities) for r in rows] == [("a", 1, probabilities)]
    assert rejected == [] and [label.label for label in joiner.pending_labels()] == [0]
