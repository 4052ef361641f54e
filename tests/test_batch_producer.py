"""BatchProducer on the real broker: every record once, in key order, where Kafka's partitioner puts it."""

from __future__ import annotations

import asyncio

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.partitioner import murmur2

from driftline.streams.batch_producer import BatchProducer
from driftline.streams.topics import ensure_topics

PARTITIONS = 3


def test_batch_bytes_is_validated() -> None:
    with pytest.raises(ValueError, match="batch_bytes must be >= 1, got 0"):
        BatchProducer(["127.0.0.1:9092"], batch_bytes=0)


@pytest.mark.kafka
def test_records_arrive_once_in_order_on_the_default_partition(kafka_bootstrap: str, kafka_name) -> None:
    topic = kafka_name("batch-producer")
    ensure_topics(kafka_bootstrap, [topic], PARTITIONS)
    keys = [f"model-{i}".encode() for i in range(7)]
    # Small batches, and records bigger than a batch, so that records of one key span many batches.
    records = [
        (keys[i % len(keys)], f"{i}:".encode() + b"x" * (5_000 if i % 97 == 0 else 40), [("n", str(i).encode())])
        for i in range(3_000)
    ]

    async def produce() -> int:
        producer = BatchProducer([kafka_bootstrap], batch_bytes=2_048)
        try:
            deliveries = await producer.send(topic, records[:1_500])
            deliveries += await producer.send(topic, records[1_500:])
            await asyncio.gather(*deliveries)
            return len(deliveries)
        finally:
            await producer.stop()

    batches = asyncio.run(produce())
    assert batches > 2 * len(keys)

    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    ends = consumer.end_offsets(tps)
    got = []
    try:
        while sum(consumer.position(tp) for tp in tps) < sum(ends.values()):
            for tp, messages in consumer.poll(timeout_ms=1_000).items():
                got.extend((tp.partition, m.key, m.value, m.headers) for m in messages)
    finally:
        consumer.close()

    assert len(got) == len(records)
    for key in keys:
        sent = [(value, headers) for k, value, headers in records if k == key]
        received = [(value, list(headers)) for partition, k, value, headers in got if k == key]
        assert received == sent
        partitions = {partition for partition, k, _, _ in got if k == key}
        # kafka-python's (and the Java client's) placement of a keyed record.
        assert partitions == {(murmur2(key) & 0x7FFFFFFF) % PARTITIONS}
