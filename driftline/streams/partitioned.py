"""What one partition number of a partitioned deployment runs, checkpointable as one unit.

Predictions and ground truth are co-partitioned by ``event_id``, and partial windows travel on
an internal topic with the same number of partitions (each model's partials to one of them).
The worker that owns partition ``p`` therefore owns three inputs: predictions ``p``, ground
truth ``p`` and partials ``p``. A :class:`PartitionRunner` holds everything they need: a
:class:`~driftline.streams.pipeline.Pipeline` (``finalize=False``) for the first two, a
:class:`~driftline.streams.merge.Merger` for the third, and the next offset of each input.

Its state is captured by :meth:`PartitionRunner.snapshot` as one blob *together with those
offsets*, so restoring it and skipping the messages before them gives exactly the state a
run without a crash would have. Sent partials and stored rows are idempotent, so the
messages replayed after the snapshot may repeat them harmlessly.

Examples
--------
>>> partition_for("credit", 4) in range(4)
True

"""

from __future__ import annotations

import hashlib
import pickle
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

import msgspec

from driftline.reference import STATE_PARTS, ModelReference
from driftline.streams.merge import Merger
from driftline.streams.pipeline import Message, MessageBatch, Output, Pipeline
from driftline.streams.processors import DriftWindow, PerformanceWindow

SNAPSHOT_VERSION = 3


def partition_for(model: str, partitions: int) -> int:
    """The partials partition of a model (stable across processes, unlike ``hash``)."""
    return zlib.crc32(model.encode()) % partitions


class StateMismatch(ValueError):
    """A checkpoint holds state built under other specs than the ones given to restore it."""


def check_signatures(partition: int, held: dict[str, dict[str, str]], references: dict[str, ModelReference]) -> None:
    """Raise :class:`StateMismatch` unless every model of a checkpoint is configured with the
    same :meth:`~driftline.reference.ModelReference.state_signature` (models added since are fine).
    """
    problems = []
    for model, parts in sorted(held.items()):
        ref = references.get(model)
        if ref is None:
            problems.append(f"model {model!r} is not among the specs given")
            continue
        now = ref.state_signature()
        changed = [fields for part, fields in STATE_PARTS.items() if parts.get(part) != now[part]]
        if changed:
            problems.append(f"model {model!r}: changed {'; '.join(changed)}")
    if problems:
        raise StateMismatch(
            f"the checkpoint of partition {partition} holds state built under other specs "
            f"({'; '.join(problems)}), which cannot be carried on. {_REMEDY}"
        )


_REMEDY = ("Restore the specs it was written with, or start the workers with a new --group, which processes the "
           "topics again from their start into fresh state (docs/config.md, 'Changing a spec')")


def signature_digest(signature: dict[str, str]) -> str:
    """A short digest of a model's :meth:`~driftline.reference.ModelReference.state_signature`,
    which every partial window of the model carries."""
    return hashlib.blake2b(msgspec.json.encode(signature), digest_size=16).hexdigest()


@dataclass
class Partials:
    """One partition's closed partial windows of one model, with its watermarks."""

    partition: int
    model: str
    watermarks: tuple[int, int]
    drift_windows: list[DriftWindow] = field(default_factory=list)
    perf_windows: list[PerformanceWindow] = field(default_factory=list)
    # signature_digest of the sender's spec; "" in partials sent before digests were kept.
    signature: str = ""

    # pickle, not a portable format: these travel only between driftline workers of one
    # deployment, on an internal topic, and pickle serialises the accumulators' numpy state
    # without a second hand-written codec.
    def to_bytes(self) -> bytes:
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def from_bytes(data: bytes) -> Partials:
        value = pickle.loads(data)
        if not isinstance(value, Partials):
            raise ValueError(f"not a Partials message: {type(value).__name__}")
        return value


class PartitionRunner:
    """The pipeline of source partition ``partition`` and the merger of partials partition
    ``partition``.

    Parameters
    ----------
    partition
        The partition number this runner owns.
    references
        Per model, its spec and reference.
    partitions
        How many partitions the source topics have.
    now_ms
        Wall clock for the future-timestamp check.
    """

    def __init__(
        self,
        partition: int,
        references: dict[str, ModelReference],
        partitions: int,
        now_ms: Callable[[], int] | None = None,
        _state: dict[str, Any] | None = None,
    ):
        if not isinstance(partition, int) or not 0 <= partition < partitions:
            raise ValueError(f"partition must be an int in [0, {partitions}), got {partition!r}")
        state = _state or {
            "join": {}, "drift": {}, "perf": {}, "merge": {}, "alerts": {}, "sent": {}, "offsets": {}, "counts": None,
        }
        state["signatures"] = {model: ref.state_signature() for model, ref in references.items()}
        self._digests = {model: signature_digest(signature) for model, signature in state["signatures"].items()}
        self.partition = partition
        self.partitions = partitions
        self.references = references
        self.pipeline = Pipeline(references, state["join"], state["drift"], state["perf"], now_ms=now_ms, finalize=False)
        if state["counts"] is not None:
            self.pipeline.counts = state["counts"]
        self.merger = Merger(state["merge"], references, partitions, state["alerts"])
        self.offsets: dict[str, int] = state["offsets"]
        self._sent: dict[str, tuple[int, int]] = state["sent"]
        self._expected: dict[str, int] = {}
        self._state = state

    def expect(self, topic: str, offset: int) -> None:
        """Accept nothing from ``topic`` before the message at ``offset`` (where the consumer was
        just positioned); messages still buffered from an older position are skipped."""
        self._expected[topic] = offset

    def seen(self, topic: str, offset: int) -> bool:
        """Whether to skip the message at ``offset`` of ``topic`` (this partition): it was
        consumed already, or it precedes the expected position. If not, it counts as consumed."""
        if offset < self.offsets.get(topic, 0):
            return True
        expected = self._expected.get(topic)
        if expected is not None:
            if offset != expected:
                return True
            del self._expected[topic]
        self.offsets[topic] = offset + 1
        return False

    def unseen(self, topic: str, offsets: list[int]) -> int:
        """Where the messages not to skip begin in a run of increasing ``offsets`` of ``topic``:
        :meth:`seen` up to the first of them, which with every later one counts as consumed."""
        for i, offset in enumerate(offsets):
            if not self.seen(topic, offset):
                self.offsets[topic] = offsets[-1] + 1
                return i
        return len(offsets)

    def process_sources(self, messages: MessageBatch | list[Message]) -> tuple[Output, list[Partials]]:
        """Run prediction and ground-truth messages; returns the rows to store and the partials
        to send (one per model whose watermark moved or whose windows closed)."""
        out = self.pipeline.process(messages)
        return out, self._partials(out)

    def process_partials(self, payloads: list[bytes]) -> Output:
        """Merge partials messages; returns the window metric and drift rows that became final and
        the alerts they raised."""
        models: dict[str, None] = {}
        for payload in payloads:
            partials = Partials.from_bytes(payload)
            self._check_partials(partials)
            self.merger.take(
                partials.partition, partials.model, partials.watermarks, partials.drift_windows, partials.perf_windows
            )
            models[partials.model] = None
        out = self.merger.settle(list(models))
        counts = self.pipeline.counts
        counts["metric_rows"] += len(out.window_metrics)
        counts["drift_rows"] += len(out.drift_results)
        counts["alerts"] += len(out.alerts)
        return out

    def _check_partials(self, partials: Partials) -> None:
        """:class:`StateMismatch` for partial windows built under other specs than this runner's:
        another worker of the group runs other specs, or the partials topic still holds partial
        windows from before a change (read again when a partition starts without a checkpoint)."""
        digest = self._digests.get(partials.model)
        if digest is None or (partials.signature and partials.signature != digest):
            why = "but the model is not among the specs given" if digest is None else "built under other specs"
            raise StateMismatch(
                f"partials partition {self.partition} holds partial windows of model {partials.model!r} from "
                f"partition {partials.partition} {why}: another worker of the group runs other specs, or the "
                f"partials were sent before the specs changed. {_REMEDY}"
            )

    def _partials(self, out: Output) -> list[Partials]:
        by_model: dict[str, Partials] = {}
        for model in self.references:
            marks = self.pipeline.watermarks(model)
            if marks != self._sent.get(model, (0, 0)):
                by_model[model] = Partials(self.partition, model, marks, signature=self._digests[model])
                self._sent[model] = marks

        def of(model: str) -> Partials:
            if model not in by_model:
                by_model[model] = Partials(self.partition, model, self.pipeline.watermarks(model),
                                           signature=self._digests[model])
            return by_model[model]

        for window in out.drift_windows:
            of(window.model).drift_windows.append(window)
        for window in out.perf_windows:
            of(window.model).perf_windows.append(window)
        return list(by_model.values())

    def snapshot(self) -> bytes:
        """All state and input offsets as one blob (see the note on pickle in :class:`Partials`)."""
        self._state["counts"] = self.pipeline.counts
        return pickle.dumps(
            {"version": SNAPSHOT_VERSION, "partition": self.partition, "partitions": self.partitions, **self._state},
            protocol=pickle.HIGHEST_PROTOCOL,
        )

    @classmethod
    def restore(
        cls,
        blob: bytes,
        references: dict[str, ModelReference],
        partitions: int,
        now_ms: Callable[[], int] | None = None,
    ) -> PartitionRunner:
        """A runner continuing from :meth:`snapshot`'s state; :class:`StateMismatch` if that state
        was built under other specs (see :func:`check_signatures`)."""
        state = pickle.loads(blob)
        if state.pop("version", None) != SNAPSHOT_VERSION:
            raise ValueError("checkpoint was written by an incompatible driftline version")
        if state.pop("partitions") != partitions:
            raise ValueError(f"checkpoint was written for a different partition count than {partitions}")
        # Checkpoints written before signatures were kept carry none and are taken as they are.
        held = state.pop("signatures", None)
        if held is not None:
            check_signatures(state["partition"], held, references)
        return cls(state.pop("partition"), references, partitions, now_ms=now_ms, _state=state)
