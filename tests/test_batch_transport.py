"""The batch transport on the real broker: every record once, in order, and a handler's seek wins;
and the records it makes aiokafka build."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from aiokafka.consumer import fetcher as aiokafka_fetcher
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import ConsumerRecord, TopicPartition
from kafka import KafkaProducer

from driftline.streams import batch_transport
from driftline.streams.topics import ensure_topics

PARTITIONS, PER_PARTITION, SEEK_FROM, SEEK_TO = 3, 400, 150, 60

# A Faust app on kafkabatch:// whose handler records (partition, offset) of every record it gets.
# The first time partition 0 reaches SEEK_FROM it seeks that partition back to SEEK_TO (as the
# worker does when it restores a checkpoint) and asks for fetches of at most 50 records, so the
# seek lands mid-stream. The app writes what it saw and exits once every partition is drained.
APP = textwrap.dedent("""
    import json, os, sys
    import faust
    from faust.types import TP
    from driftline.streams.batch_transport import route_batches

    bootstrap, topic, group, out, partitions, per_partition, seek_from, seek_to = sys.argv[1:]
    partitions, per_partition, seek_from, seek_to = map(int, (partitions, per_partition, seek_from, seek_to))
    app = faust.App(group, broker=f"kafkabatch://{bootstrap}", store="memory://", web_enabled=False,
                    consumer_auto_offset_reset="earliest", broker_max_poll_records=50,
                    topic_partitions=partitions, datadir=os.path.dirname(out))
    seen = {p: [] for p in range(partitions)}
    sought = []

    async def handle(records):
        for tp, fetched in records.items():
            assert tp.topic == topic
            seen[tp.partition].extend(r.offset for r in fetched)
            if tp.partition == 0 and not sought and fetched[-1].offset >= seek_from:
                sought.append(fetched[-1].offset)
                await app.consumer.seek_wait({TP(topic, 0): seek_to})
        if all(offsets and offsets[-1] == per_partition - 1 for offsets in seen.values()) and sought:
            with open(out, "w") as f:
                json.dump({"seen": seen, "sought_after": sought[0]}, f)
            os._exit(0)

    app.topics.add(app.topic(topic, acks=False, key_serializer="raw", value_serializer="raw"))
    route_batches(app, [topic], handle)
    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()
""")


@pytest.mark.kafka
def test_every_record_once_in_order_and_a_handlers_seek_is_kept(kafka_bootstrap: str, tmp_path: Path, kafka_name) -> None:
    topic = kafka_name("batch-transport")
    ensure_topics(kafka_bootstrap, [topic], PARTITIONS)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=20)
    for partition in range(PARTITIONS):
        for i in range(PER_PARTITION):
            producer.send(topic, value=f"{partition}:{i}".encode(), partition=partition)
    producer.flush()
    producer.close()
    out = tmp_path / "seen.json"
    (tmp_path / "app.py").write_text(APP)
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "app.py"), kafka_bootstrap, topic, f"{topic}-group", str(out),
         str(PARTITIONS), str(PER_PARTITION), str(SEEK_FROM), str(SEEK_TO)],
        capture_output=True, text=True, timeout=180, cwd=tmp_path,
    )
    assert proc.returncode == 0 and out.exists(), proc.stderr[-3000:]
    result = json.loads(out.read_text())
    seen = {int(p): offsets for p, offsets in result["seen"].items()}
    for partition in range(1, PARTITIONS):
        assert seen[partition] == list(range(PER_PARTITION))
    # Partition 0: everything up to the fetch that triggered the seek, then from the seek target
    # on, each once: the fetch loop must not move the position past the handler's seek.
    last = result["sought_after"]
    assert SEEK_FROM <= last < PER_PARTITION
    assert seen[0] == list(range(last + 1)) + list(range(SEEK_TO, PER_PARTITION))


def _records(consumer_record: Any, key_deserializer: Any = None, value_deserializer: Any = None) -> list[Any]:
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0, producer_id=-1,
                                        producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
    builder.append(0, timestamp=1_700_000_000_000, key=b"id-0", value=b'{"a": 1}', headers=[])
    builder.append(1, timestamp=1_700_000_000_001, key=None, value=b"x" * 600, headers=[("h", b"v"), ("g", b"")])
    builder.append(2, timestamp=1_700_000_000_002, key=b"", value=None, headers=[])
    records = MemoryRecords(bytes(builder.build()))
    original = aiokafka_fetcher.PartitionRecords._consumer_record
    aiokafka_fetcher.PartitionRecords._consumer_record = consumer_record
    try:
        return list(aiokafka_fetcher.PartitionRecords(
            TopicPartition("t", 3), records, [], 0, key_deserializer, value_deserializer, True, 0,
        ))
    finally:
        aiokafka_fetcher.PartitionRecords._consumer_record = original


def _upper(key: bytes | None) -> bytes | None:
    return None if key is None else key.upper()


def _size(value: bytes | None) -> int:
    return -1 if value is None else len(value)


@pytest.mark.parametrize("key_deserializer, value_deserializer", [(None, None), (_upper, _size)], ids=["raw", "deserialized"])
def test_fetched_records_carry_what_consumer_records_carry(key_deserializer: Any, value_deserializer: Any) -> None:
    aiokafkas = aiokafka_fetcher.PartitionRecords._consumer_record
    assert aiokafkas.__module__ == aiokafka_fetcher.__name__, "a BatchConsumer in this process replaced it"
    expected = _records(aiokafkas, key_deserializer, value_deserializer)
    got = _records(batch_transport._fetched_record, key_deserializer, value_deserializer)
    assert [type(r) for r in got] == [batch_transport.FetchedRecord] * 3
    fields = [f.name for f in dataclasses.fields(ConsumerRecord)]
    assert list(batch_transport.FetchedRecord.__struct_fields__) == fields
    assert [[getattr(r, f) for f in fields] for r in got] == [[getattr(r, f) for f in fields] for r in expected]
    assert got[1].headers == (("h", b"v"), ("g", b""))
