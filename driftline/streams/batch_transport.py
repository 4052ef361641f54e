"""A Faust transport that hands each fetch of chosen topics to one handler, a batch at a time.

Faust delivers every message on its own: the fetch loop wraps each one in
``Service.wait_first`` (four tasks created and three cancelled per message), then the conductor,
a channel queue, the stream iterator and the agent. On the 2-core machine of
``docs/benchmarks.md`` that path costs about 300 µs of CPU per message, which caps a Faust agent
that does nothing at about 3,400 messages/s whatever the settings (fetch size, poll records,
buffer size, ``take`` or ``take_events``, acks; see faust-streaming/faust#229). driftline
processes events in columnar batches, so for its input topics this transport skips that path:
the consumer passes each fetched ``{TP: [ConsumerRecord, ...]}`` to the handler given to
:func:`route_batches`. Everything else stays Faust's: group membership and rebalances,
``seek_wait``, flow control during recovery, tables and their changelogs (whose topics still
take the per-message path), the producer.

It replaces Faust's private ``Consumer._drain_messages``, so ``pyproject.toml`` pins the
faust-streaming minor version it was written against.

The consumer also makes aiokafka build each fetched record as a :class:`FetchedRecord` (see
:func:`use_fetched_records`) and waits at most :data:`FETCH_MAX_WAIT_MS` in a fetch request,
both through aiokafka internals, which pins aiokafka's minor version as well.

Examples
--------
>>> import faust
>>> app = faust.App("example", broker="kafkabatch://127.0.0.1:9092")
>>> async def handle(records):
...     pass
>>> route_batches(app, ["predictions"], handle)
>>> type(app.transport).__name__
'BatchTransport'
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import msgspec
from aiokafka.consumer import fetcher as aiokafka_fetcher
from aiokafka.errors import IllegalStateError
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP, AppT

__all__ = [
    "BatchHandler", "route_batches", "BatchConsumer", "BatchConsumerThread", "BatchTransport", "FetchedRecord",
    "use_fetched_records",
    "FETCH_MAX_WAIT_MS", "SCHEME",
]

SCHEME = "kafkabatch"
# How long the broker may hold a fetch request that finds no new data. Faust sets 1,500 ms, and
# aiokafka sends one fetch request per broker at a time, including only the partitions without
# records waiting in its buffer: once every input partition has some, the request in flight
# holds only idle ones (changelogs, partials) and the broker keeps it the full wait. Records
# consumed meanwhile, or a seek, must wait for it before they are fetched again, which stalled
# a worker for up to 1.5 s at a time (seen after the seek of every start).
FETCH_MAX_WAIT_MS = 100
BatchHandler = Callable[[dict[TP, list[Any]]], Awaitable[None]]
_ROUTES: weakref.WeakKeyDictionary[AppT, tuple[frozenset[str], BatchHandler]] = weakref.WeakKeyDictionary()


def route_batches(app: AppT, topics: Iterable[str], handler: BatchHandler) -> None:
    """Deliver ``topics`` to ``handler`` one fetch at a time (the app's broker must use ``kafkabatch://``).

    ``handler`` receives the records of every partition of those topics in one fetch, each
    partition's in offset order, records before the consumer's read position left out. It runs
    in the fetch loop: until it returns nothing more is fetched, which is the back-pressure. The
    topics must be subscribed (``app.topics.add``); no agent is needed.
    """
    _ROUTES[app] = (frozenset(topics), handler)


class FetchedRecord(msgspec.Struct, gc=False):
    """One fetched Kafka record: the attributes of aiokafka's ``ConsumerRecord``, built in C.

    aiokafka builds a ``ConsumerRecord`` dataclass per record in Python on Faust's consumer
    thread, under the GIL: with the reads of the record's fields, about 4.5 µs per record here,
    a tenth of a worker's CPU per message. This struct holds the same fields (Faust's
    ``_to_message`` and the batch handler read them by name) and builds in about a tenth of the
    dataclass's time. ``gc=False``: nothing it holds can refer back to it (the key and value,
    raw bytes for Faust, exist before it), so it is never part of a reference cycle.
    """

    topic: str
    partition: int
    offset: int
    timestamp: int
    timestamp_type: int
    key: Any
    value: Any
    checksum: int | None
    serialized_key_size: int
    serialized_value_size: int
    headers: tuple[tuple[str, bytes], ...]


def _fetched_record(self: Any, tp: Any, record: Any) -> Any:
    # Each field read from aiokafka's compiled record costs about 0.3 µs: each is read once.
    raw_key, raw_value = record.key, record.value
    key = raw_key if self._key_deserializer is None else self._key_deserializer(raw_key)
    value = raw_value if self._value_deserializer is None else self._value_deserializer(raw_value)
    return FetchedRecord(
        tp.topic, tp.partition, record.offset, record.timestamp, record.timestamp_type, key, value,
        record.checksum, -1 if raw_key is None else len(raw_key),
        -1 if raw_value is None else len(raw_value), tuple(record.headers),
    )


def use_fetched_records() -> None:
    """Make every aiokafka consumer of this process yield :class:`FetchedRecord`.

    Process-wide (aiokafka's fetcher builds its records in ``PartitionRecords._consumer_record``,
    one class for all consumers), so it is called by :class:`BatchConsumer`, which only runs in
    a driftline worker. Idempotent.
    """
    aiokafka_fetcher.PartitionRecords._consumer_record = _fetched_record


class BatchConsumerThread(aiokafka_driver.AIOKafkaConsumerThread):
    """Faust's consumer thread, whose aiokafka consumer waits at most :data:`FETCH_MAX_WAIT_MS`."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read by the fetcher it creates on start
        return consumer


class BatchConsumer(aiokafka_driver.Consumer):
    """The aiokafka consumer of Faust with a fetch loop that delivers routed topics in batches."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sought: dict[TP, int] = {}
        use_fetched_records()

    def _new_consumer_thread(self) -> BatchConsumerThread:
        return BatchConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def seek(self, partition: TP, offset: int) -> None:
        self._sought[partition] = offset
        await super().seek(partition, offset)

    async def seek_wait(self, partitions: Mapping[TP, int]) -> None:
        self._sought.update(partitions)
        await super().seek_wait(partitions)

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - runs in a worker process
        topics, handler = _ROUTES.get(self.app, (frozenset(), None))
        read_offset = self._read_offset
        stopped, fetcher_stopped = self._stopped.is_set, fetcher._stopped.is_set
        # The next fetch is asked for before the handler runs, so that the consumer thread builds
        # its records while the handler computes instead of after it (about 50 ms per fetch of
        # 10,000 records here, with the main loop waiting).
        prefetched: asyncio.Future | None = None
        try:
            while not (stopped() or fetcher_stopped()):
                fetch = prefetched if prefetched is not None else self._stamped_records()
                prefetched = None
                records, active, fetched_in = await fetch
                if fetched_in != self.app.consumer_generation_id:
                    # A prefetch returned before a rebalance that began while the handler ran:
                    # the rebalance revoked every partition, and the new assignment's positions
                    # do not follow from these records (as Faust drops such messages).
                    continue
                if self.should_stop:
                    continue
                if not self.flow_active:
                    # As Faust's getmany: a fetch made while the flow is suspended is dropped and
                    # the partitions go back to their committed positions.
                    try:
                        await self.perform_seek()
                    except Exception as error:
                        self.log.warning("seek after a fetch while the flow was suspended failed: %r", error)
                    continue
                if not records:
                    await asyncio.sleep(0)
                    continue
                generation = self.app.consumer_generation_id
                batch: dict[TP, list[Any]] = {}
                for tp, fetched in records.items():
                    if not fetched or not (active is None or tp in active or tp in self._buffered_partitions):
                        continue
                    position = read_offset.get(tp)
                    if position is not None and fetched[0].offset < position:
                        fetched = [record for record in fetched if record.offset >= position]
                    if not fetched:
                        continue
                    if tp.topic in topics and handler is not None:
                        batch[tp] = fetched
                        continue
                    # Faust's own per-message delivery (table changelogs), as in its fetch loop.
                    for record in fetched:
                        if not self.flow_active or generation != self.app.consumer_generation_id:
                            break
                        await self.wait_first(self.callback(self._to_message(tp, record)), self.suspend_flow.wait())
                        read_offset[tp] = record.offset
                if batch and generation == self.app.consumer_generation_id and self.flow_active:
                    assert handler is not None
                    self._sought.clear()
                    prefetched = asyncio.ensure_future(self._stamped_records())
                    await handler(batch)
                    for tp, fetched in batch.items():
                        # A seek made by the handler (a partition restored from its checkpoint)
                        # sets the position; it must not be overwritten with this fetch's end.
                        if tp not in self._sought:
                            read_offset[tp] = fetched[-1].offset
                    if self._sought:
                        prefetched = asyncio.ensure_future(self._after_seek(prefetched, dict(self._sought)))
                await asyncio.sleep(0)
        except (asyncio.CancelledError, *self.consumer_stopped_errors):
            # As Faust's loop: quiet when the app is stopping, otherwise Faust's fetcher service
            # handles the cancellation. A handler cut short is harmless: the worker drops revoked
            # partitions and restores them from their checkpoints.
            if self.transport.app.should_stop:
                return
            raise
        finally:
            if prefetched is not None and not prefetched.done():
                prefetched.cancel()

    async def _stamped_records(self) -> tuple[Any, Any, int]:
        """The next fetch with the consumer generation it was returned in."""
        records, active = await self._wait_next_records(1.0)
        return records, active, self.app.consumer_generation_id

    async def _after_seek(self, prefetched: asyncio.Future, sought: dict[TP, int]) -> tuple[Any, Any, int]:
        """The prefetch without the partitions the handler sought, which are sought again.

        The prefetch ran alongside the handler, so its records of a sought partition may come
        from before the seek or after it: they are dropped, and the seek is made again so that
        the consumer fetches them from where the handler asked either way.
        """
        records, active, fetched_in = await prefetched
        kept = {tp: fetched for tp, fetched in (records or {}).items() if tp not in sought}
        for tp, offset in sought.items():
            try:
                await super().seek_wait({tp: offset})
            except IllegalStateError:
                # Revoked meanwhile: the seek no longer applies, as any seek of a revoked
                # partition (a worker reopens and positions what it is assigned next).
                continue
        return kept, active, fetched_in


class BatchTransport(aiokafka_driver.Transport):
    """Faust's aiokafka transport with :class:`BatchConsumer`."""

    Consumer = BatchConsumer


TRANSPORTS[SCHEME] = f"{__name__}:BatchTransport"
