"""The processing core both runtimes drive: decode, validate, join, window, test.

:class:`Pipeline` takes batches of raw messages (bytes, as they come off a Kafka topic or a JSON
Lines file), and returns an :class:`Output` holding the rows to store. All of its state lives in
the join tables and three mappings (drift, performance, alerts), which the embedded runtime keeps
in memory and the Faust runtime checkpoints with a partition's offsets; the same input gives the
same output.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import compress
from operator import attrgetter
from typing import Any, Callable, Iterable

import msgspec
import numpy as np

from driftline.config import ModelSpec
from driftline.events import Alert, EventDecoder, GroundTruth, Limits, Rejection, RetrainRequest, encode
from driftline.reference import ModelReference
from driftline.streams.alerts import AlertEngine
from driftline.streams.columns import PredictionColumns, PredictionDecoder
from driftline.streams.join import Joiner, LabeledRow, PendingLabel
from driftline.streams.join_table import JoinTable
from driftline.streams.processors import DriftProcessor, DriftWindow, PerformanceProcessor, PerformanceWindow
from driftline.streams.state import State

PREDICTION = "prediction"
GROUND_TRUTH = "ground_truth"
_kind = attrgetter("kind")
_data = attrgetter("data")


# A msgspec Struct rather than a dataclass: a label that waits for its prediction keeps its
# message (for the dead letter if it never joins), and ``gc=False`` keeps the many waiting ones
# out of the cyclic collector's walks (they hold only strings and bytes).
class Message(msgspec.Struct, gc=False):
    """One raw message: which stream it came from, its bytes, and where it came from."""

    kind: str
    data: bytes
    source: str
    position: str


class MessageBatch:
    """A batch of raw messages as runs of messages from one source each.

    What :meth:`Pipeline.process` reads: a Kafka fetch arrives as one run of records per topic
    partition, and building a :class:`Message` for each record (with its position as text) cost
    a worker about as much as decoding it. A :class:`Message` is built only for the few that
    need one (dead letters, labels waiting for their prediction).

    Examples
    --------
    >>> batch = MessageBatch()
    >>> batch.add_run(PREDICTION, "preds", [b"{}", b"[]"], "0:", [41, 42])
    >>> batch.add_run(GROUND_TRUTH, "truth", [b"{}"], "0:", [7])
    >>> len(batch), batch.is_prediction.tolist()
    (3, [True, True, False])
    >>> batch.message(1)
    Message(kind='prediction', data=b'[]', source='preds', position='0:42')
    """

    __slots__ = ("data", "_kinds", "_runs", "_starts", "_messages")

    def __init__(self) -> None:
        self.data: list[bytes] = []
        self._kinds: list[np.ndarray] = []
        self._runs: list[tuple[str, str, str, list[int]]] = []
        self._starts: list[int] = []
        self._messages: list[Message] | None = None

    @classmethod
    def of(cls, messages: Iterable[Message]) -> MessageBatch:
        """A batch of :class:`Message` objects (kept as they are)."""
        batch = cls()
        batch._messages = list(messages)
        batch.data = list(map(_data, batch._messages))
        batch._kinds = [np.array(list(map(_kind, batch._messages)), dtype=object) == PREDICTION]
        return batch

    def add_run(self, kind: str, source: str, data: list[bytes], prefix: str, offsets: list[int]) -> None:
        """Append messages of one ``kind`` from ``source``; message ``i`` is at position
        ``prefix`` + ``offsets[i]``."""
        if self._messages is not None:
            raise ValueError("a batch made of Message objects takes no runs")
        if len(data) != len(offsets):
            raise ValueError(f"data and offsets must have the same length, got {len(data)} and {len(offsets)}")
        self._starts.append(len(self.data))
        self._runs.append((kind, source, prefix, offsets))
        self._kinds.append(np.full(len(data), kind == PREDICTION))
        self.data.extend(data)

    def __len__(self) -> int:
        return len(self.data)

    @property
    def is_prediction(self) -> np.ndarray:
        """Per message, whether it is a prediction (else a ground truth)."""
        return np.concatenate(self._kinds) if self._kinds else np.zeros(0, dtype=bool)

    def message(self, i: int) -> Message:
        """Message ``i`` of the batch."""
        if self._messages is not None:
            return self._messages[i]
        run = bisect_right(self._starts, i) - 1
        kind, source, prefix, offsets = self._runs[run]
        return Message(kind, self.data[i], source, f"{prefix}{offsets[i - self._starts[run]]}")


class _Origins(Sequence[Message]):
    """The messages at ``at`` of a batch, built when asked for."""

    def __init__(self, batch: MessageBatch, at: list[int]):
        self.batch, self.at = batch, at

    def __len__(self) -> int:
        return len(self.at)

    def __getitem__(self, k: int) -> Message:  # type: ignore[override]
        return self.batch.message(self.at[k])


@dataclass
class Output:
    """What one batch produced, per destination table."""

    predictions: list[PredictionColumns] = field(default_factory=list)
    ground_truth: list[GroundTruth] = field(default_factory=list)
    labeled: list[LabeledRow] = field(default_factory=list)
    window_metrics: list[dict[str, Any]] = field(default_factory=list)
    drift_results: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    drift_windows: list[DriftWindow] = field(default_factory=list)
    perf_windows: list[PerformanceWindow] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    retrain_requests: list[RetrainRequest] = field(default_factory=list)

    def extend(self, other: Output) -> None:
        """Append everything another output holds to this one."""
        for name in self.__dataclass_fields__:
            getattr(self, name).extend(getattr(other, name))


def dead_letter(source: str, position: str, data: bytes, rejection: Rejection) -> dict[str, Any]:
    """A dead-letter row; its id is a hash of where the message came from and its bytes."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(source.encode())
    digest.update(b"\0")
    digest.update(position.encode())
    digest.update(b"\0")
    digest.update(data)
    return {
        "id": digest.hexdigest(),
        "source": source,
        "position": position,
        "reason": str(rejection),
        "code": rejection.code,
        "field": rejection.field,
        "payload": data,
    }


class Pipeline:
    """Decode, validate, join and window events for a set of models.

    Parameters
    ----------
    references
        Per model, its spec and reference.
    join_state
        Per model, its :class:`~driftline.streams.join_table.JoinTable`.
    drift_state, perf_state, alert_state
        The mappings holding the other state (``dict`` in the embedded runtime).
    now_ms
        Wall clock for the future-timestamp check (injected for replays of history).
    finalize
        Test closed windows and return result rows (one partition is the whole stream). When
        ``False``, closed windows are returned as partial windows in ``Output.drift_windows`` and
        ``Output.perf_windows`` instead, for a :class:`~driftline.streams.merge.Merger` to
        combine with the other partitions' before testing.
    """

    def __init__(
        self,
        references: dict[str, ModelReference],
        join_state: dict[str, JoinTable] | None = None,
        drift_state: State | None = None,
        perf_state: State | None = None,
        alert_state: State | None = None,
        now_ms: Callable[[], int] | None = None,
        finalize: bool = True,
    ):
        if not references:
            raise ValueError("references must hold at least one model")
        self.references = references
        self.finalize = finalize
        specs: list[ModelSpec] = [r.spec for r in references.values()]
        limits = Limits(
            max_event_bytes=max(s.limits.max_event_bytes for s in specs),
            max_future_ms=max(s.max_future_ms for s in specs),
        )
        self.decoder = EventDecoder(specs, limits, now_ms=now_ms)
        self.predictions = PredictionDecoder(specs, self.decoder)
        carried = {
            s.model: tuple(
                s.categorical_features.index(name)
                for name in (*s.segments, *((s.protected_attribute,) if s.protected_attribute else ()))
            )
            for s in specs
        }
        self.joiner = Joiner(
            {} if join_state is None else join_state, {s.model: s.label_ttl_ms for s in specs}, carried,
            frozenset(s.model for s in specs if s.task == "regression"),
        )
        self.drift = DriftProcessor({} if drift_state is None else drift_state, references)
        self.performance = PerformanceProcessor({} if perf_state is None else perf_state, references)
        # Alerts are decided where windows become final: here, or in the Merger of a partitioned stream.
        self.alerts = AlertEngine({} if alert_state is None else alert_state, {s.model: s for s in specs}) if finalize else None
        self.counts = dict.fromkeys(
            ("messages", "predictions", "ground_truth", "labeled", "dead_letters", "metric_rows", "drift_rows", "alerts"), 0
        )

    def process(self, messages: MessageBatch | Iterable[Message]) -> Output:
        """Run one batch through the pipeline and return what it produced."""
        out = Output()
        batch_in = messages if isinstance(messages, MessageBatch) else MessageBatch.of(messages)
        self.counts["messages"] += len(batch_in)
        is_prediction = batch_in.is_prediction
        prediction_at, truth_at = np.flatnonzero(is_prediction), np.flatnonzero(~is_prediction).tolist()
        data = batch_in.data
        batches, rejected = self.predictions.decode(list(compress(data, is_prediction.tolist())))
        failures = [(int(prediction_at[row]), rejection) for row, rejection in rejected]
        truths, decoded, rejected = self.decoder.decode_ground_truths(list(compress(data, (~is_prediction).tolist())))
        failures.extend((truth_at[row], rejection) for row, rejection in rejected)
        truth_at = [truth_at[row] for row in decoded]
        failures.sort(key=lambda failure: failure[0])
        for i, rejection in failures:
            self._reject(out, batch_in.message(i), rejection)
        label_watermarks = self._label_watermarks(batches, prediction_at, truths, truth_at)
        for batch in sorted(batches.values(), key=lambda b: b.positions[0]):
            origin = prediction_at[batch.positions]
            late = self.drift.late(batch.model, batch.ts)
            if late.any():
                spec = self.references[batch.model].spec
                for row in np.flatnonzero(late).tolist():
                    self._reject(out, batch_in.message(origin[row]), Rejection(
                        "late_event", "ts", f"an event time within allowed_lateness ({spec.allowed_lateness}) of its window end",
                        str(batch.ts[row])))
                batch, origin = batch.take(~late), origin[~late]
            joined, duplicates = self.joiner.add_predictions(batch)
            if duplicates:
                keep = np.ones(len(batch), dtype=bool)
                for row, rejection in duplicates:
                    self._reject(out, batch_in.message(origin[row]), rejection)
                    keep[row] = False
                batch = batch.take(keep)
            self.drift.add(batch)
            self.performance.add_predictions(batch)
            if len(batch):
                out.predictions.append(batch)
            out.labeled.extend(joined)
        joined, duplicates = self.joiner.add_ground_truth(truths, _Origins(batch_in, truth_at), label_watermarks)
        if duplicates:
            truth_at_of = {id(event): at for event, at in zip(truths, truth_at)}
            for event, rejection in duplicates:
                self._reject(out, batch_in.message(truth_at_of[id(event)]), rejection)
        duplicate_ids = {id(event) for event, _ in duplicates}
        out.ground_truth.extend(e for e in truths if id(e) not in duplicate_ids)
        out.labeled.extend(joined)
        self.performance.add_labeled(out.labeled)
        self._windows(out, force=False)
        for label in self.joiner.expire():
            out.dead_letters.append(self._orphan(label))
        self._count(out)
        return out

    def _label_watermarks(
        self, batches: dict[str, PredictionColumns], prediction_at: np.ndarray, truths: list[GroundTruth], truth_at: list[int]
    ) -> list[int]:
        """Per label, its model's watermark at the label's place in the stream.

        Each label is joined against the watermark in force where it arrived (every decoded
        prediction before it counts), so that the outcome does not depend on where the
        batches were cut.
        """
        watermarks = np.empty(len(truths), dtype=np.int64)
        models = np.array([event.model for event in truths], dtype=object)
        at = np.array(truth_at, dtype=np.int64)
        for model in set(models.tolist()):
            rows = models == model
            watermark = self.joiner.watermark(model)
            batch = batches.get(model)
            if batch is None:
                watermarks[rows] = watermark
                continue
            highest = np.maximum(np.maximum.accumulate(batch.ts), watermark)
            before = np.searchsorted(prediction_at[batch.positions], at[rows])
            watermarks[rows] = np.where(before > 0, highest[np.maximum(before - 1, 0)], watermark)
        return watermarks.tolist()

    def finish(self) -> Output:
        """Close every window (end of a finite stream) and report labels that never matched."""
        out = Output()
        self._windows(out, force=True)
        for label in self.joiner.pending_labels():
            out.dead_letters.append(self._orphan(label))
        self._count(out)
        return out

    def watermarks(self, model: str) -> tuple[int, int]:
        """The drift and performance watermarks of a model (what closes their windows)."""
        return self.drift.watermark(model), self.performance.watermark(model)

    def _windows(self, out: Output, force: bool) -> None:
        if not self.finalize:
            out.drift_windows.extend(self.drift.close_windows(force))
            out.perf_windows.extend(self.performance.emit_windows(force))
            return
        drift = self.drift.close(force)
        metrics, target_drift = self.performance.emit(force)
        drift.extend(target_drift)
        out.drift_results.extend(drift)
        out.window_metrics.extend(metrics)
        assert self.alerts is not None
        alerts, retrain = self.alerts.evaluate(drift, metrics)
        out.alerts.extend(alerts)
        out.retrain_requests.extend(retrain)

    def _reject(self, out: Output, message: Message, rejection: Rejection) -> None:
        out.dead_letters.append(dead_letter(message.source, message.position, message.data, rejection))

    def _orphan(self, pending: PendingLabel) -> dict[str, Any]:
        model, event_id, ts, label, source, origin = pending
        rejection = Rejection("orphan_label", "event_id", "a prediction with this event_id within label_ttl", event_id)
        if origin is not None:
            return dead_letter(origin.source, origin.position, origin.data, rejection)
        data = encode({"schema_version": 1, "event_id": event_id, "model": model, "ts": ts, "label": label, "source": source})
        return dead_letter(GROUND_TRUTH, f"{model}/{event_id}", data, rejection)

    def _count(self, out: Output) -> None:
        self.counts["predictions"] += sum(map(len, out.predictions))
        self.counts["ground_truth"] += len(out.ground_truth)
        self.counts["labeled"] += len(out.labeled)
        self.counts["dead_letters"] += len(out.dead_letters)
        self.counts["metric_rows"] += len(out.window_metrics)
        self.counts["drift_rows"] += len(out.drift_results)
        self.counts["alerts"] += len(out.alerts)
