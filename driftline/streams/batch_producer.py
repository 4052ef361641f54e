"""Produce many Kafka records at once, one record batch per partition.

aiokafka's ``send`` costs about 50 µs of Python per message (metadata check, partitioner,
accumulator, one future each); a worker produces one labeled message per joined row, tens of
thousands per second. Appending to a record batch (aiokafka's public ``create_batch`` and
``send_batch``, with its C record builder) costs under 1 µs per message, and the batch is
delivered as one unit with one future.

Keys are placed as Kafka's default partitioner places them (murmur2 of the key, as the Java client
and kafka-python do), so consumers see the same key-to-partition mapping as from any producer.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

__all__ = ["BatchProducer"]

Record = tuple[bytes, bytes, list[tuple[str, bytes]]]


class BatchProducer:
    """An aiokafka producer that sends lists of keyed records as record batches.

    Parameters
    ----------
    brokers
        Bootstrap servers, ``host:port``.
    batch_bytes
        Largest record batch (a record bigger than this goes alone in its own batch, up to the
        broker's and the producer's 1 MiB request limit).
    """

    def __init__(self, brokers: Sequence[str], batch_bytes: int = 512 * 1024):
        if batch_bytes < 1:
            raise ValueError(f"batch_bytes must be >= 1, got {batch_bytes}")
        self.brokers = list(brokers)
        self.batch_bytes = batch_bytes
        self._producer: AIOKafkaProducer | None = None
        self._partitioner = DefaultPartitioner()

    async def send(self, topic: str, records: Iterable[Record]) -> list[asyncio.Future]:
        """Queue ``(key, value, headers)`` records for ``topic``; one future per record batch.

        Records of one key keep their order. Each future resolves when its batch is acknowledged
        by all in-sync replicas, or raises the delivery error.
        """
        producer = await self._started()
        partitions = sorted(await producer.partitions_for(topic))
        by_partition: dict[int, list[Record]] = defaultdict(list)
        placed_keys: dict[bytes, int] = {}
        for record in records:
            key = record[0]
            partition = placed_keys.get(key)
            if partition is None:
                partition = placed_keys[key] = self._partitioner(key, partitions, partitions)
            by_partition[partition].append(record)
        deliveries = []
        for partition, placed in by_partition.items():
            batch = producer.create_batch()
            for key, value, headers in placed:
                if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                    deliveries.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None, headers=headers)
            deliveries.append(await producer.send_batch(batch, topic, partition=partition))
        return deliveries

    async def flush(self) -> None:
        """Send what is queued now (delivery is confirmed by the futures :meth:`send` returned)."""
        if self._producer is not None:
            await self._producer.flush()

    async def stop(self) -> None:
        """Deliver what is queued and close the connections."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def _started(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.brokers, acks="all", max_batch_size=self.batch_bytes,
            )
            await producer.start()
            self._producer = producer
        return self._producer
