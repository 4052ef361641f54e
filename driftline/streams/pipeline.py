"""The processing core both runtimes drive: decode, validate, join, window, test.

:class:`Pipeline` takes batches of raw messages (bytes, as they come off a Kafka topic or a JSON
Lines file), and returns an :class:`Output` holding the rows to store. All of its state lives in three mappings (join, drift, performance), so the embedded
runtime passes dicts and the Faust runtime passes Tables; the same input gives the same output.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from driftline.config import ModelSpec
from driftline.events import Alert, EventDecoder, GroundTruth, InvalidEvent, Limits, Prediction, Rejection, RetrainRequest, encode
from driftline.reference import ModelReference
from driftline.streams.alerts import AlertEngine
from driftline.streams.join import Joiner, LabeledRow, split_key
from driftline.streams.processors import DriftProcessor, DriftWindow, PerformanceProcessor, PerformanceWindow
from driftline.streams.state import State

PREDICTION = "prediction"
GROUND_TRUTH = "ground_truth"


@dataclass(slots=True)
class Message:
    """One raw message: which stream it came from, its bytes, and where it came from."""

    kind: str
    data: bytes
    source: str
    position: str


@dataclass
class Output:
    """What one batch produced, per destination table."""

    predictions: list[Prediction] = field(default_factory=list)
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
    join_state, drift_state, perf_state, alert_state
        The mappings holding all state (``dict`` in the embedded runtime).
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
        join_state: State | None = None,
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
        carried = {
            s.model: tuple(s.segments) + ((s.protected_attribute,) if s.protected_attribute else ())
            for s in specs
        }
        self.joiner = Joiner({} if join_state is None else join_state, {s.model: s.label_ttl_ms for s in specs}, carried)
        self.drift = DriftProcessor({} if drift_state is None else drift_state, references)
        self.performance = PerformanceProcessor({} if perf_state is None else perf_state, references)
        # Alerts are decided where windows become final: here, or in the Merger of a partitioned stream.
        self.alerts = AlertEngine({} if alert_state is None else alert_state, {s.model: s for s in specs}) if finalize else None
        self.counts = dict.fromkeys(
            ("messages", "predictions", "ground_truth", "labeled", "dead_letters", "metric_rows", "drift_rows", "alerts"), 0
        )

    def process(self, messages: Iterable[Message]) -> Output:
        """Run one batch through the pipeline and return what it produced."""
        out = Output()
        predictions: dict[str, list[Prediction]] = {}
        origins: dict[int, Message] = {}
        truths: list[GroundTruth] = []
        # Each label is joined against the watermark at its own place in the stream, so that
        # the outcome does not depend on where the batches were cut.
        running: dict[str, int] = {}
        label_watermarks: list[int] = []
        decode_prediction = self.decoder.decode_prediction
        decode_truth = self.decoder.decode_ground_truth
        for message in messages:
            self.counts["messages"] += 1
            try:
                if message.kind == PREDICTION:
                    event = decode_prediction(message.data)
                    predictions.setdefault(event.model, []).append(event)
                    if event.ts > running.get(event.model, -1):
                        running[event.model] = max(event.ts, self.joiner.watermark(event.model))
                else:
                    event = decode_truth(message.data)
                    truths.append(event)
                    label_watermarks.append(running.get(event.model) or self.joiner.watermark(event.model))
            except InvalidEvent as error:
                out.dead_letters.append(dead_letter(message.source, message.position, message.data, error.rejection))
                continue
            origins[id(event)] = message
        for model, events in predictions.items():
            accepted, late = self.drift.split_late(model, events)
            spec = self.references[model].spec
            for event in late:
                self._reject(out, origins, event, Rejection(
                    "late_event", "ts", f"an event time within allowed_lateness ({spec.allowed_lateness}) of its window end",
                    str(event.ts)))
            joined, duplicates = self.joiner.add_predictions(accepted)
            for event, rejection in duplicates:
                self._reject(out, origins, event, rejection)
            duplicate_ids = {id(event) for event, _ in duplicates}
            accepted = [e for e in accepted if id(e) not in duplicate_ids] if duplicates else accepted
            self.drift.add(model, accepted)
            self.performance.add_predictions(model, accepted)
            out.predictions.extend(accepted)
            out.labeled.extend(joined)
        joined, duplicates = self.joiner.add_ground_truth(truths, [origins[id(e)] for e in truths], label_watermarks)
        for event, rejection in duplicates:
            self._reject(out, origins, event, rejection)
        duplicate_ids = {id(event) for event, _ in duplicates}
        out.ground_truth.extend(e for e in truths if id(e) not in duplicate_ids)
        out.labeled.extend(joined)
        self.performance.add_labeled(out.labeled)
        self._windows(out, force=False)
        for key, entry in self.joiner.expire():
            out.dead_letters.append(self._orphan(key, entry))
        self._count(out)
        return out

    def finish(self) -> Output:
        """Close every window (end of a finite stream) and report labels that never matched."""
        out = Output()
        self._windows(out, force=True)
        for key, entry in self.joiner.pending_labels():
            out.dead_letters.append(self._orphan(key, entry))
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

    def _reject(self, out: Output, origins: dict[int, Message], event: Any, rejection: Rejection) -> None:
        message = origins[id(event)]
        out.dead_letters.append(dead_letter(message.source, message.position, message.data, rejection))

    def _orphan(self, key: str, entry: tuple[Any, ...]) -> dict[str, Any]:
        model, event_id = split_key(key)
        _, ts, label, source, origin = entry
        rejection = Rejection("orphan_label", "event_id", "a prediction with this event_id within label_ttl", event_id)
        if origin is not None:
            return dead_letter(origin.source, origin.position, origin.data, rejection)
        data = encode({"schema_version": 1, "event_id": event_id, "model": model, "ts": ts, "label": label, "source": source})
        return dead_letter(GROUND_TRUTH, f"{model}/{event_id}", data, rejection)

    def _count(self, out: Output) -> None:
        self.counts["predictions"] += len(out.predictions)
        self.counts["ground_truth"] += len(out.ground_truth)
        self.counts["labeled"] += len(out.labeled)
        self.counts["dead_letters"] += len(out.dead_letters)
        self.counts["metric_rows"] += len(out.window_metrics)
        self.counts["drift_rows"] += len(out.drift_results)
        self.counts["alerts"] += len(out.alerts)
