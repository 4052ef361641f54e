"""The Faust runtime: the processing core on Kafka, partitioned across workers.

Topology (all input topics have the same partition count ``N``, so Faust's assignor gives
partition ``p`` of every one of them to the same worker):

* ``predictions`` and ``ground_truth`` (keyed by ``event_id``) feed, per partition, the same
  :class:`~driftline.streams.pipeline.Pipeline` the embedded runtime runs: decode, validate,
  join, accumulate windows. Raw events, joined rows and dead letters are stored; joined rows
  also go to ``labeled`` (key: model) for online learners, dead letters to ``deadletter`` with
  the reason in the headers and the original bytes as the value.
* When a partition's watermark closes a window, its partial window goes to the internal
  ``partials`` topic, to the partition that owns the model. There a
  :class:`~driftline.streams.merge.Merger` combines the partials of all ``N`` partitions and
  stores the window's drift and metric rows once every partition has passed the window. Its
  alert engine turns those rows into alert states, stored and published on ``alerts``
  (compacted, key: alert id), and retrain requests, published on ``retrain``.

Delivery. Input records reach the worker a fetch at a time through
:mod:`~driftline.streams.batch_transport` rather than one message at a time through an agent:
Faust's per-message path alone caps a worker at a few thousand messages per second.

State. Each partition's state (join, windows, merger) and the next offset of each of its three
inputs are checkpointed together, as one unit, into a changelog-backed Faust Table every
``checkpoint_interval`` seconds. A worker that takes a partition over (after a crash, ``kill -9``
included, or a rebalance) restores the unit and skips what it already holds, so the state is
exactly what an uninterrupted run would have; the messages after the checkpoint are processed
again, and everything they emit is idempotent (stored rows have deterministic keys, partials
and watermarks are replace-or-ignore). Before a checkpoint is written, everything its state
says was emitted is acknowledged by the broker and in the store, including the raw rows the
sink holds back to write in blocks (``store_batch_rows``); rows still held back at a crash
belong to messages after the checkpoint.

Why not per-key Table writes with Faust's ``exactly_once``: per-key changelog records are not
atomic with the input offsets, and Faust's transactional mode is known to lose or repeat
updates on ``kill -9`` (robinhood/faust#340, faust-streaming/faust#517). Offsets are therefore
never committed by Faust for the input topics (``acks=False``); the checkpoint is the commit.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import faust
import msgspec
import orjson
from aiokafka.errors import IllegalStateError
from faust.types import TP

from driftline.events import encode
from driftline.reference import ModelReference
from driftline.storage import Store
from driftline.streams.batch_producer import BatchProducer
from driftline.streams.batch_transport import SCHEME, route_batches
from driftline.streams.gc_policy import settle_heap
from driftline.streams.join import LabeledRow
from driftline.streams.partitioned import PartitionRunner, StateMismatch, partition_for
from driftline.streams.pipeline import GROUND_TRUTH, PREDICTION, MessageBatch, Output
from driftline.streams.sinks import StoreSink

logger = logging.getLogger(__name__)

CHUNK_BYTES = 512 * 1024
# Per partition and fetch: about 6,000 events of 600 bytes, a batch worth the per-batch costs.
FETCH_BYTES = 4 * 1024 * 1024
# A partial carries the closed windows of a model with their reservoirs (10,000 float64 values
# per numeric feature each), well above Kafka's default 1 MB message limit; the partials topic is
# created with this limit and the producer allows it.
PARTIALS_MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Topics:
    """Kafka topic names (DESIGN.md)."""

    predictions: str = "driftline.predictions"
    ground_truth: str = "driftline.ground_truth"
    labeled: str = "driftline.labeled"
    deadletter: str = "driftline.deadletter"
    alerts: str = "driftline.alerts"
    retrain: str = "driftline.retrain"

    @classmethod
    def with_prefix(cls, prefix: str) -> Topics:
        """All names under ``prefix`` (default ``driftline.``)."""
        return cls(*(prefix + f.name for f in fields(cls)))


def partials_topic(group: str) -> str:
    """The internal topic of a worker group's partial windows (like Faust's changelog names)."""
    return f"{group}-partials"


@dataclass(frozen=True)
class WorkerSettings:
    """How a worker connects and how often it checkpoints.

    Parameters
    ----------
    brokers
        Bootstrap servers, ``host:port``.
    group
        Consumer group and Faust app id: workers with the same group share the partitions.
    partitions
        Partition count of every topic (read from the existing predictions topic).
    batch_size
        A batch is one fetch from the broker, at most ``batch_size`` messages
        (``broker_max_poll_records``).
    checkpoint_interval
        Seconds between checkpoints of a partition (bounds the work replayed after a crash).
    session_timeout
        Seconds without heartbeats after which the group gives a worker's partitions away.
    status_file
        Where to keep a JSON status (next offset per input partition, counters, time), rewritten
        after every batch: for health checks and for knowing when a backlog is drained.
    store_batch_rows
        Raw rows (predictions, ground truth, joined rows, dead letters) are written to the store
        once this many are pending, at a checkpoint, at stop, or when the oldest has waited
        ``store_flush_interval`` seconds (``0``: written after every batch).
    store_flush_interval
        Longest time, in seconds, a raw row waits for the store while the stream is idle.
    """

    brokers: tuple[str, ...]
    group: str
    partitions: int
    topics: Topics = Topics()
    batch_size: int = 25_000
    checkpoint_interval: float = 10.0
    session_timeout: float = 10.0
    status_file: str | None = None
    store_batch_rows: int = 50_000
    store_flush_interval: float = 1.0

    def __post_init__(self) -> None:
        if not self.brokers:
            raise ValueError("brokers must name at least one host:port")
        if self.partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {self.partitions}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.checkpoint_interval <= 0:
            raise ValueError(f"checkpoint_interval must be > 0, got {self.checkpoint_interval}")
        if self.store_batch_rows < 0:
            raise ValueError(f"store_batch_rows must be >= 0, got {self.store_batch_rows}")
        if self.store_flush_interval <= 0:
            raise ValueError(f"store_flush_interval must be > 0, got {self.store_flush_interval}")


def _digest(blob: bytes) -> str:
    return hashlib.blake2b(blob, digest_size=16).hexdigest()


def _delivered(delivery: Any) -> bool:
    """Whether a send has completed; a failed one raises (the worker then stops, crash-only, and
    resumes from the checkpoint before it, so the message is produced again)."""
    if not delivery.done():
        return False
    delivery.result()
    return True


_LABELED_ENCODER = msgspec.json.Encoder()


def labeled_values(rows: list[LabeledRow]) -> list[bytes]:
    """Per joined row, its JSON on the labeled topic (its fields, in order).

    Encoded as JSON Lines in one call and split at the newlines (JSON escapes a newline inside a
    string): an ``encode`` per row cost twice as much, most of it the call.

    >>> labeled_values([LabeledRow("e1", "m", "v1", "champion", ("north",), 1, 2, 1, 0.9, None, 1, "s")])
    [b'{"event_id":"e1","model":"m","version":"v1","role":"champion","segment_values":["north"],"prediction_ts":1,"label_ts":2,"prediction":1,"score":0.9,"probabilities":null,"label":1,"source":"s"}']
    """
    return _LABELED_ENCODER.encode_lines(rows).split(b"\n")[:-1]


def _crash() -> None:
    """Crash-only: half-applied batches are what checkpoints are for. Exiting lets the supervisor
    restart the worker, which resumes from the last checkpoint exactly as after kill -9; staying
    up with a broken fetch loop would silently stop processing."""
    logger.critical("driftline worker stops on an unexpected error", exc_info=True)
    logging.shutdown()
    os._exit(70)


def _refuse(error: StateMismatch) -> None:
    """Stop on a checkpoint the worker's specs cannot carry on: a configuration error (exit code
    78, EX_CONFIG), which restarting cannot cure, reported without a traceback."""
    logger.critical("driftline worker cannot start: %s", error)
    logging.shutdown()
    os._exit(78)


def _crash_on_failure(task: asyncio.Future) -> None:
    """Crash if a task failed that nothing else may wait for (the last batch's publishing)."""
    if task.cancelled() or task.exception() is None:
        return
    try:
        raise task.exception()  # type: ignore[misc]
    except Exception:
        _crash()


class _ServiceWorker(faust.Worker):
    """``faust.Worker`` without its start-up spinner.

    To spin the spinner on every log record, Faust lowers the root logger to ``DEBUG`` and leaves
    it there after start-up, so every ``log.debug`` of aiokafka and Faust (one per produced
    message, several per fetch) builds and dispatches a record that no handler prints.
    """

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        self.spinner = None


class Worker:
    """A Faust app running the driftline topology; :meth:`run` blocks until stopped."""

    def __init__(self, references: dict[str, ModelReference], store: Store, settings: WorkerSettings):
        self.references = references
        self.settings = settings
        self.sink = StoreSink(store, references, settings.store_batch_rows)
        self._computing: asyncio.Future | None = None
        # The previous batch's outputs on their way to the broker, while this batch computes.
        self._publishing: asyncio.Future | None = None
        # One fetch or one flush of the sink at a time.
        self._busy = asyncio.Lock()
        self.runners: dict[int, PartitionRunner] = {}
        self._slots: dict[int, int] = {}
        self._checkpointed: dict[int, float] = {}
        self._deliveries: list[Any] = []
        self._batches = BatchProducer(settings.brokers)
        topics = settings.topics
        # Faust wants a data directory even with the in-memory table store; state lives in the
        # checkpoint topic, so a scratch directory that goes away with the process is enough.
        self._scratch = tempfile.TemporaryDirectory(prefix="driftline-worker-")
        self.app = faust.App(
            settings.group,
            datadir=self._scratch.name,
            broker=[f"{SCHEME}://{b}" for b in settings.brokers],
            store="memory://",
            web_enabled=False,
            topic_partitions=settings.partitions,
            topic_replication_factor=1,
            table_standby_replicas=0,
            broker_session_timeout=settings.session_timeout,
            broker_heartbeat_interval=1.0,
            consumer_auto_offset_reset="earliest",
            producer_max_request_size=PARTIALS_MAX_BYTES,
            stream_wait_empty=False,
            broker_max_poll_records=settings.batch_size,
            consumer_max_fetch_size=FETCH_BYTES,
        )
        self.checkpoints = self.app.Table(
            "checkpoints", partitions=settings.partitions, key_type=bytes, value_type=bytes
        )
        self.partials_name = partials_topic(settings.group)
        self.input_topics = (topics.predictions, topics.ground_truth, self.partials_name)
        self.kinds = {topics.predictions: PREDICTION, topics.ground_truth: GROUND_TRUTH}
        self.app.topics.add(self.app.topic(*self.input_topics, acks=False, key_serializer="raw", value_serializer="raw"))
        route_batches(self.app, self.input_topics, self._on_fetch)
        self.app.on_partitions_revoked.connect(self._on_revoked)
        self.app.timer(settings.store_flush_interval / 2)(self._flush_idle)
        self.app.on_before_shutdown.connect(self._on_shutdown)

    def run(self) -> None:
        """Start the worker (Faust handles signals; SIGTERM stops it). Settles the process's
        heap first (:func:`~driftline.streams.gc_policy.settle_heap`): the worker owns it."""
        settle_heap()
        _ServiceWorker(self.app, loglevel="WARNING", quiet=True).execute_from_commandline()

    def _on_revoked(self, sender: Any, revoked: set[TP], **_: Any) -> None:
        for tp in revoked:
            if tp.topic in self.input_topics:
                self.runners.pop(tp.partition, None)

    async def _on_fetch(self, records: dict[TP, list[Any]]) -> None:
        generation = self.app.consumer_generation_id
        try:
            async with self._busy:
                if generation != self.app.consumer_generation_id or not self.app.consumer.flow_active:
                    # A rebalance began while the idle flush held the lock. These partitions are
                    # reopened from their checkpoints (once those are recovered) and sought, so
                    # their records are fetched again rather than skipped.
                    for tp in records:
                        self.runners.pop(tp.partition, None)
                    return
                await self._batch(records)
        except StateMismatch as error:
            _refuse(error)
        except Exception:
            _crash()

    async def _flush_idle(self) -> None:
        since = self.sink.pending_since
        if since is None or time.monotonic() - since < self.settings.store_flush_interval or self._busy.locked():
            # Not idle: a busy stream's rows go at the threshold or the next checkpoint (waiting
            # for the lock would only make Faust warn that the timer overran).
            return
        try:
            async with self._busy:
                await asyncio.to_thread(self.sink.write_pending)
        except Exception:
            _crash()

    async def _on_shutdown(self, sender: Any, **_: Any) -> None:
        # What is still held back is after the last checkpoint, so the partition's next owner
        # would write it again; writing it now keeps this store complete after a clean stop.
        # Faust has cancelled the fetch loop; a batch may still be computing on its thread.
        try:
            if self._computing is not None:
                await asyncio.wait([self._computing])
            if self._publishing is not None:
                await asyncio.wait([self._publishing])
            await asyncio.to_thread(self.sink.write_pending)
        finally:
            await self._batches.stop()

    async def _batch(self, records: dict[TP, list[Any]]) -> None:
        """Process, store, publish and maybe checkpoint one fetch of input records."""
        by_partition: dict[int, list[tuple[str, list[Any]]]] = defaultdict(list)
        for tp, fetched in records.items():
            by_partition[tp.partition].append((tp.topic, fetched))
        work = []
        topic = self.settings.topics.predictions
        assigned = {tp.partition for tp in self.app.consumer.assignment() if tp.topic == topic}
        if any(p in assigned and p not in self.runners for p in by_partition):
            # Every assigned partition without a runner, not only those in this fetch.
            await self._open(sorted(assigned - set(self.runners)))
        for partition, fetched in sorted(by_partition.items()):
            if partition not in assigned:
                # Revoked while the batch was buffered: the partition's new owner reads these again.
                self.runners.pop(partition, None)
                continue
            runner = self.runners.get(partition)
            if runner is not None:
                work.append((runner, *self._split(partition, runner, fetched)))
        if not work:
            return
        # Shielded: a cancelled fetch loop (stop, rebalance) leaves the thread running, and the
        # shutdown handler waits for it before writing what the sink holds.
        self._computing = asyncio.ensure_future(asyncio.to_thread(self._compute, work))
        out, sent = await asyncio.shield(self._computing)
        # Publishing waits on the broker more than it computes: it goes on while the next fetch
        # computes, one batch at a time (so outputs keep their order), and a failure surfaces
        # here with the next batch. A checkpoint waits for it.
        await self._published()
        status = self._status() if self.settings.status_file else None
        self._publishing = asyncio.ensure_future(self._publish(out, sent, status))
        self._publishing.add_done_callback(_crash_on_failure)
        now = time.monotonic()
        for partition in sorted(by_partition):
            runner = self.runners.get(partition)
            if runner is not None and now - self._checkpointed.get(partition, 0.0) >= self.settings.checkpoint_interval:
                await self._checkpoint(partition, runner)

    async def _published(self) -> None:
        """Wait until the outputs of every computed batch are handed to the producers.

        Shielded: when Faust cancels the fetch loop (stop, rebalance) during the wait, the
        publishing goes on, and the shutdown handler still finds it and waits for it.
        """
        publishing = self._publishing
        if publishing is not None:
            await asyncio.shield(publishing)
            if self._publishing is publishing:
                self._publishing = None

    def _split(
        self, partition: int, runner: PartitionRunner, fetched: list[tuple[str, list[Any]]]
    ) -> tuple[MessageBatch, list[bytes]]:
        """The messages not consumed yet, as a pipeline batch and partials payloads."""
        sources = MessageBatch()
        partials: list[bytes] = []
        prefix = f"{partition}:"
        for topic, records in fetched:
            offsets = [record.offset for record in records]
            skip = runner.unseen(topic, offsets)
            values = [record.value or b"" for record in records[skip:]]
            kind = self.kinds.get(topic)
            if kind is None:
                partials.extend(values)
            else:
                sources.add_run(kind, topic, values, prefix, offsets[skip:])
        return sources, partials

    def _compute(
        self, work: list[tuple[PartitionRunner, MessageBatch, list[bytes]]]
    ) -> tuple[Output, list[tuple[int, bytes, bytes]]]:
        """Run every partition's share of a batch and store the rows in one write per table.

        Partials come back serialised, as ``(partition, key, value)``: pickled here, on the
        compute thread, rather than while sending.
        """
        out = Output()
        sent: list[tuple[int, bytes, bytes]] = []
        for runner, sources, partials in work:
            if sources:
                part, partial = runner.process_sources(sources)
                sent.extend(
                    (partition_for(p.model, self.settings.partitions), p.model.encode(), p.to_bytes()) for p in partial
                )
                out.extend(part)
            out.extend(runner.process_partials(partials))
        self.sink.write(out)
        return out, sent

    async def _publish(self, out: Output, sent: list[tuple[int, bytes, bytes]], status: dict[str, Any] | None) -> None:
        # Joined rows, one message each, go as record batches. The rest straight to the producer:
        # a Faust Topic.send adds a channel, a FutureMessage and callbacks per message, about
        # 100 µs each here.
        send, topics, deliveries = self.app.producer.send, self.settings.topics, self._deliveries
        for partition, key, value in sent:
            deliveries.append(await send(self.partials_name, key, value, partition, None, None))
        if out.labeled:
            keys = {model: model.encode() for model in {row.model for row in out.labeled}}
            deliveries.extend(await self._batches.send(
                topics.labeled, [(keys[row.model], value, []) for row, value in zip(out.labeled, labeled_values(out.labeled))]
            ))
        for alert in out.alerts:
            deliveries.append(await send(topics.alerts, alert.alert_id.encode(), encode(alert), None, None, None))
        for request in out.retrain_requests:
            deliveries.append(await send(topics.retrain, request.request_id.encode(), encode(request), None, None, None))
        for letter in out.dead_letters:
            headers = [(name, str(letter[name] or "").encode()) for name in ("reason", "code", "field", "source", "position")]
            deliveries.append(await send(topics.deadletter, letter["id"].encode(), letter["payload"], None, None, headers))
        self._deliveries = [delivery for delivery in deliveries if not _delivered(delivery)]
        if status is not None:
            self._write_status(status)

    def _status(self) -> dict[str, Any]:
        """What the status file says after the batch just computed: consumed offsets and counts."""
        counts: dict[str, int] = defaultdict(int)
        for runner in self.runners.values():
            for name, value in runner.pipeline.counts.items():
                counts[name] += value
        return {"offsets": {str(p): dict(runner.offsets) for p, runner in sorted(self.runners.items())}, "counts": counts}

    def _write_status(self, status: dict[str, Any]) -> None:
        assert self.settings.status_file is not None
        status = {"updated": time.time(), **status}
        path = Path(self.settings.status_file)
        staging = path.with_name(path.name + ".tmp")
        staging.write_bytes(orjson.dumps(status))
        staging.replace(path)

    async def _open(self, partitions: list[int]) -> None:
        """Create the partitions' runners, restored from their checkpoints when there are some.

        All in one go: the earliest offsets and the seek are one round trip through the consumer
        for every partition (each takes about half a second here), and the fetches after the
        seek are positioned for all of them. Nothing is opened when one of them was revoked
        meanwhile; the others open with the next fetch that carries their records.
        """
        runners = {}
        for partition in partitions:
            manifest = self.checkpoints.data.get(str(partition).encode())
            if manifest is None:
                runners[partition] = PartitionRunner(partition, self.references, self.settings.partitions)
                continue
            meta = orjson.loads(manifest)
            blob = b"".join(
                self.checkpoints.data[f"{partition}/{meta['slot']}/{i}".encode()] for i in range(meta["chunks"])
            )
            if _digest(blob) != meta["digest"]:
                raise RuntimeError(f"checkpoint of partition {partition} is incomplete or corrupt")
            runners[partition] = await asyncio.to_thread(
                PartitionRunner.restore, blob, self.references, self.settings.partitions
            )
            self._slots[partition] = meta["slot"]
        # Position every input at the checkpoint (or the start of the log) and accept nothing
        # else first, so that no message between the checkpoint and a stale position is lost.
        inputs = [TP(topic, partition) for partition in partitions for topic in self.input_topics]
        earliest = await self.app.consumer.earliest_offsets(*inputs)
        starts: dict[TP, int] = {}
        for tp in inputs:
            runner = runners[tp.partition]
            start = runner.offsets.get(tp.topic, 0)
            first = earliest.get(tp) or 0
            if start < first:
                logger.warning("%s[%d]: offsets %d..%d were deleted before they were processed", tp.topic, tp.partition,
                               start, first - 1)
                start = first
            runner.expect(tp.topic, start)
            starts[tp] = start
        try:
            # seek_wait runs on the consumer's own thread: Consumer.seek would change the fetcher's
            # state from this thread while it hands out records (a KeyError in aiokafka's fetcher).
            await self.app.consumer.seek_wait(starts)
        except IllegalStateError:
            return
        now = time.monotonic()
        for partition, runner in runners.items():
            logger.info("partition %d starts at %s", partition, runner.offsets)
            self.runners[partition] = runner
            self._checkpointed[partition] = now

    async def _checkpoint(self, partition: int, runner: PartitionRunner) -> None:
        """Write the runner's state as chunks into the slot not in use, then the manifest.

        Everything the state says was emitted must be delivered first: the partials, joined
        rows and dead letters sent so far, and the rows handed to the store.
        """
        await self._published()
        await self.app.producer.flush()
        await self._batches.flush()
        for delivery in self._deliveries:
            await delivery
        self._deliveries = []
        await asyncio.to_thread(self.sink.flush)
        blob = await asyncio.to_thread(runner.snapshot)
        if self.runners.get(partition) is not runner:
            return
        slot = 1 - self._slots.get(partition, 1)
        chunks = [blob[i:i + CHUNK_BYTES] for i in range(0, len(blob), CHUNK_BYTES)]
        for i, chunk in enumerate(chunks):
            self._put(partition, f"{partition}/{slot}/{i}".encode(), chunk)
        meta = {"slot": slot, "chunks": len(chunks), "digest": _digest(blob)}
        self._put(partition, str(partition).encode(), orjson.dumps(meta))
        self._slots[partition] = slot
        self._checkpointed[partition] = time.monotonic()

    def _put(self, partition: int, key: bytes, value: bytes) -> None:
        self.checkpoints.data[key] = value
        self.checkpoints.send_changelog(partition, key, value)
