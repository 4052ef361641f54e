"""Smoke tests of the real services the integration tests use (scripts/kafka.sh, scripts/clickhouse-server.sh).

They prove the development and CI infrastructure works end to end: a keyed round trip through a
4-partition Kafka topic (by assignment and through a consumer group that commits), and a batch
insert into a ClickHouse MergeTree table that survives a server restart with the same client
reconnecting. Every loop is bounded in count and in time; only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

N_MESSAGES = 1_000
N_PARTITIONS = 4
N_ROWS = 10_000
DEADLINE_S = 30.0
CLICKHOUSE_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "clickhouse-server.sh"


def _consume(consumer, n_expected: int) -> list[tuple[str, str, int]]:
    received: list[tuple[str, str, int]] = []
    deadline = time.monotonic() + DEADLINE_S
    for _ in range(200):
        if len(received) >= n_expected or time.monotonic() > deadline:
            break
        for tp, records in consumer.poll(timeout_ms=250).items():
            received.extend((r.key.decode(), r.value.decode(), tp.partition) for r in records)
    return received


@pytest.mark.kafka
def test_kafka_keyed_round_trip_through_four_partitions(kafka_bootstrap, kafka_name):
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import NewTopic

    topic = kafka_name("driftline.smoke")
    expected = {(f"event-{i}", f"payload-{i}") for i in range(N_MESSAGES)}
    partitions = [TopicPartition(topic, p) for p in range(N_PARTITIONS)]
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="driftline-smoke", request_timeout_ms=10_000)
    producer = consumer = group_consumer = None
    try:
        admin.create_topics([NewTopic(topic, num_partitions=N_PARTITIONS, replication_factor=1)])
        producer = KafkaProducer(
            bootstrap_servers=kafka_bootstrap,
            acks="all",
            linger_ms=5,
        )
        futures = [producer.send(topic, key=k.encode(), value=v.encode()) for k, v in sorted(expected)]
        producer.flush(timeout=DEADLINE_S)
        partition_of = {k: f.get(timeout=DEADLINE_S).partition for (k, _), f in zip(sorted(expected), futures)}
        assert set(partition_of.values()) == set(range(N_PARTITIONS))

        consumer = KafkaConsumer(
            bootstrap_servers=kafka_bootstrap,
            group_id=None,
            enable_auto_commit=False,
        )
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        assert sum(consumer.end_offsets(partitions).values()) == N_MESSAGES
        received = _consume(consumer, N_MESSAGES)
        assert len(received) == N_MESSAGES
        assert {(k, v) for k, v, _ in received} == expected
        assert all(partition_of[k] == p for k, _, p in received)

        group_consumer = KafkaConsumer(
            topic,
            bootstrap_servers=kafka_bootstrap,
            group_id=f"{topic}.group",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        in_group = _consume(group_consumer, N_MESSAGES)
        assert {(k, v) for k, v, _ in in_group} == expected
        group_consumer.commit()
        committed = {tp.partition: group_consumer.committed(tp) for tp in partitions}
        ends = {tp.partition: offset for tp, offset in group_consumer.end_offsets(partitions).items()}
        assert committed == ends
    finally:
        for client in (group_consumer, consumer, producer):
            if client is not None:
                client.close()
        try:
            admin.delete_topics([topic])
        finally:
            admin.close()


def _clickhouse_script(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(CLICKHOUSE_SCRIPT), command],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
    )


@pytest.mark.clickhouse_server
def test_clickhouse_batch_insert_survives_restart(clickhouse_server):
    from clickhouse_driver import Client

    table = f"driftline_smoke_{uuid.uuid4().hex[:12]}"
    client = Client(clickhouse_server.host, port=clickhouse_server.port, connect_timeout=5, send_receive_timeout=30)
    client.execute(
        f"CREATE TABLE {table} (id UInt64, ts DateTime, model LowCardinality(String), value Float64) "
        "ENGINE = MergeTree() PARTITION BY toYYYYMMDD(ts) ORDER BY id"
    )
    try:
        start = 1_700_000_000
        rows = [(i, start + i * 60, f"model-{i % 3}", i * 0.5) for i in range(N_ROWS)]
        # Rows go as data in one native block; `INSERT ... VALUES (literals)` as text hangs on 18.16.
        inserted = client.execute(f"INSERT INTO {table} (id, ts, model, value) VALUES", rows)
        assert inserted == N_ROWS
        query = f"SELECT count(), sum(id), sum(value), uniqExact(model) FROM {table}"
        expected = [(N_ROWS, N_ROWS * (N_ROWS - 1) // 2, N_ROWS * (N_ROWS - 1) / 4, 3)]
        assert client.execute(query) == expected

        stopped = _clickhouse_script("stop")
        assert stopped.returncode == 0, stopped.stderr
        if "left alone" in stopped.stderr:
            pytest.skip("this clickhouse-server was not started by scripts/clickhouse-server.sh; restart not tested")
        started = _clickhouse_script("start")
        assert started.returncode == 0, started.stderr

        assert client.execute(query) == expected
        per_model = client.execute(f"SELECT model, count() FROM {table} GROUP BY model ORDER BY model")
        assert per_model == [("model-0", 3334), ("model-1", 3333), ("model-2", 3333)]
    finally:
        client.execute(f"DROP TABLE IF EXISTS {table}")
        client.disconnect()
