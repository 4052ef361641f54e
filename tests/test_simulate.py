"""driftline simulate: pacing, topics, every event of a scenario exactly once, and the command."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from click.testing import CliRunner

from driftline.cli import main
from driftline.scorers.scenario import CreditScenario
from driftline.scorers.sdk import DriftlineProducer
from driftline.scorers.simulate import (
    FakeClock,
    KafkaSetupError,
    PublishSummary,
    TokenBucket,
    ensure_topics,
    publish_events,
    publish_scenario,
)

UNREACHABLE = "127.0.0.1:1"


@pytest.fixture(scope="module")
def scenario() -> CreditScenario:
    """2,000 predictions and 701 ground truths, spread so that many labels arrive in the stream."""
    return CreditScenario(n_reference=500, n_events=2_000, n_train=1_000, rate_per_s=0.002)


@pytest.fixture(scope="module")
def scenario_events(scenario: CreditScenario) -> list[tuple[int, str, dict[str, Any]]]:
    return list(scenario.events())


TopicPair = Callable[[], tuple[str, str]]


@pytest.fixture
def topic_pair(kafka_name: Callable[[str], str]) -> TopicPair:
    """Makes a new (predictions, ground truth) pair of topic names."""
    def make() -> tuple[str, str]:
        run = kafka_name("sim-test")
        return f"{run}.predictions", f"{run}.ground_truth"
    return make


def partition_counts(bootstrap: str, topics: list[str]) -> dict[str, int]:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        present = set(admin.list_topics())
        found = [t for t in topics if t in present]
        return {d["name"]: len(d["partitions"]) for d in admin.describe_topics(found)} if found else {}
    finally:
        admin.close()


def consume(bootstrap: str, topics: list[str], expected: int, timeout: float = 40.0) -> list:
    """Every record of ``topics``; keeps polling 1 s after ``expected`` arrived, to catch extras."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(*topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, group_id=None)
    records: list = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500, max_records=5000).values():
                records.extend(batch)
            if len(records) >= expected:
                deadline = min(deadline, time.monotonic() + 1.0)
    finally:
        consumer.close()
    return records


# --- pacing --------------------------------------------------------------------------------


def test_token_bucket_holds_the_rate_and_caps_bursts() -> None:
    clock = FakeClock()
    bucket = TokenBucket(500, burst=5, clock=clock.now, sleep=clock.sleep)
    slept = sum(bucket.take() for _ in range(1005))
    assert math.isclose(clock.t, 2.0) and math.isclose(slept, 2.0)
    clock.sleep(10.0)  # a stall: only a burst goes through without waiting afterwards
    assert [bucket.take() for _ in range(5)] == [0.0] * 5
    assert math.isclose(bucket.take(), 1 / 500)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 0}, "rate must be a finite number > 0, got 0"),
        ({"rate": -5}, "rate must be a finite number >= 0, got -5"),
        ({"rate": float("inf")}, "rate must be a finite number >= 0, got inf"),
        ({"rate": True}, "rate must be a finite number >= 0, got True"),
        ({"rate": 10, "burst": 0.5}, "burst must be a finite number >= 1, got 0.5"),
    ],
)
def test_token_bucket_validates(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TokenBucket(**kwargs)


class Recorder:
    """Stands in for DriftlineProducer in the unit tests of the publishing loop."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.flushed = False

    def log_prediction(self, **fields: Any) -> str:
        self.calls.append(("prediction", fields))
        return fields["event_id"]

    def log_ground_truth(self, **fields: Any) -> str:
        self.calls.append(("ground_truth", fields))
        return fields["event_id"]

    def flush(self, timeout: float | None = None) -> None:
        self.flushed = True

    def stats(self) -> dict[str, int]:
        n = len(self.calls) if self.flushed else 0
        return {"sent": n, "delivered": n, "failed": 0, "dropped": 0, "queued": 0}


def test_publish_events_logs_in_order_at_the_rate(scenario_events: list) -> None:
    clock, recorder, seen = FakeClock(), Recorder(), []
    events = scenario_events[:1_501]
    summary = publish_events(events, recorder, 500, seen.append, clock=clock.now, sleep=clock.sleep)  # type: ignore[arg-type]
    assert [(kind, fields["event_id"]) for kind, fields in recorder.calls] == [(k, e["event_id"]) for _, k, e in events]
    assert all("schema_version" not in fields for _, fields in recorder.calls)
    assert recorder.calls[0][1] == {k: v for k, v in events[0][2].items() if k != "schema_version"}
    assert math.isclose(clock.t, (1_501 - 5) / 500)  # the default burst is 10 ms of events
    n_pred = sum(kind == "prediction" for _, kind, _ in events)
    assert summary == PublishSummary(n_pred, 1_501 - n_pred, 1_501, 0, 0, clock.t)
    assert seen == [1000, 1_501]


def test_publish_events_refuses_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="event kind must be 'prediction' or 'ground_truth', got 'alert'"):
        publish_events([(0, "alert", {"event_id": "a"})], Recorder(), 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rate must be a finite number >= 0, got -1"):
        publish_events([], Recorder(), -1)  # type: ignore[arg-type]


# --- topics --------------------------------------------------------------------------------


def test_an_unreachable_broker_is_one_clear_error() -> None:
    start = time.monotonic()
    with pytest.raises(KafkaSetupError, match="no Kafka broker answers at 127.0.0.1:1 within 0.5 s"):
        ensure_topics(UNREACHABLE, ["a", "b"], 4, timeout=0.5)
    assert time.monotonic() - start < 10


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"partitions": 0}, "partitions must be an int >= 1, got 0"),
        ({"replication": 1.0}, "replication must be an int >= 1, got 1.0"),
        ({"topics": []}, "topics must be a non-empty list"),
        ({"timeout": 0}, "timeout must be a number > 0, got 0"),
    ],
)
def test_ensure_topics_validates(kwargs: dict, message: str) -> None:
    options = {"bootstrap": UNREACHABLE, "topics": ["a"], "partitions": 1, **kwargs}
    with pytest.raises(ValueError, match=message):
        ensure_topics(**options)


@pytest.mark.kafka
def test_topics_are_created_with_the_partition_count(kafka_bootstrap: str, topic_pair: TopicPair) -> None:
    topics = list(topic_pair())
    assert ensure_topics(kafka_bootstrap, topics, 3) == {topics[0]: True, topics[1]: True}
    assert partition_counts(kafka_bootstrap, topics) == {topics[0]: 3, topics[1]: 3}
    assert ensure_topics(kafka_bootstrap, topics, 3) == {topics[0]: False, topics[1]: False}


def topic_configs(bootstrap: str, topics: list[str]) -> dict[str, dict[str, str]]:
    """The configs set on each topic (kafka-python 3 returns only those by default)."""
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t) for t in topics])
    finally:
        admin.close()
    return {name: {key: entry["value"] for key, entry in configs.items()} for name, configs in described["topic"].items()}


@pytest.mark.kafka
def test_topics_are_created_with_their_configs(kafka_bootstrap: str, topic_pair: TopicPair) -> None:
    compacted, large = topic_pair()
    ensure_topics(kafka_bootstrap, [compacted, large], 2, compacted=[compacted],
                  configs={large: {"max.message.bytes": str(64 * 1024 * 1024)}})
    assert topic_configs(kafka_bootstrap, [compacted, large]) == {
        compacted: {"cleanup.policy": "compact"}, large: {"max.message.bytes": str(64 * 1024 * 1024)},
    }


@pytest.mark.kafka
def test_existing_topics_get_the_configs_asked_for(kafka_bootstrap: str, topic_pair: TopicPair) -> None:
    old, _ = topic_pair()
    ensure_topics(kafka_bootstrap, [old], 2)
    assert ensure_topics(kafka_bootstrap, [old], 2, configs={old: {"max.message.bytes": "5000000"}}) == {old: False}
    assert topic_configs(kafka_bootstrap, [old])[old]["max.message.bytes"] == "5000000"


@pytest.mark.kafka
def test_a_topic_with_another_partition_count_is_an_error_naming_it(kafka_bootstrap: str, topic_pair: TopicPair) -> None:
    predictions, ground_truth = topic_pair()
    ensure_topics(kafka_bootstrap, [ground_truth], 2)
    with pytest.raises(KafkaSetupError, match=rf"topic '{ground_truth}' has 2 partitions, expected 4: .*co-partitioned"):
        ensure_topics(kafka_bootstrap, [predictions, ground_truth], 4)
    assert partition_counts(kafka_bootstrap, [predictions, ground_truth]) == {ground_truth: 2}


# --- publishing on the real broker ---------------------------------------------------------


@pytest.mark.kafka
def test_every_event_arrives_exactly_once_and_co_partitioned(
    kafka_bootstrap: str, scenario: CreditScenario, scenario_events: list, topic_pair: TopicPair
) -> None:
    predictions, ground_truth = topic_pair()
    ensure_topics(kafka_bootstrap, [predictions, ground_truth], 4)
    with DriftlineProducer(kafka_bootstrap, predictions_topic=predictions, ground_truth_topic=ground_truth,
                           block_on_full=True) as producer:
        summary = publish_scenario(scenario, producer, 0)
    n_pred = sum(kind == "prediction" for _, kind, _ in scenario_events)
    assert (summary.predictions, summary.ground_truth) == (n_pred, len(scenario_events) - n_pred)
    assert summary.ok and summary.delivered == len(scenario_events)

    records = consume(kafka_bootstrap, [predictions, ground_truth], len(scenario_events))
    assert len(records) == len(scenario_events)
    expected = {
        (predictions if kind == "prediction" else ground_truth, event["event_id"]): event
        for _, kind, event in scenario_events
    }
    got = {(r.topic, r.key.decode()): orjson.loads(r.value) for r in records}
    assert len(got) == len(records)  # no event twice
    assert got == expected  # every event, with exactly the scenario's content
    partition = {(r.topic, r.key.decode()): r.partition for r in records}
    assert {partition[ground_truth, event_id] == partition[predictions, event_id]
            for topic, event_id in got if topic == ground_truth} == {True}
    # Within a partition, events keep the scenario's arrival order.
    order = {(predictions if k == "prediction" else ground_truth, e["event_id"]): i
             for i, (_, k, e) in enumerate(scenario_events)}
    by_partition: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
    for r in records:
        by_partition[r.topic, r.partition].append((r.offset, order[r.topic, r.key.decode()]))
    for offsets in by_partition.values():
        ranks = [rank for _, rank in sorted(offsets)]
        assert ranks == sorted(ranks)


@pytest.mark.kafka
def test_publishing_honours_the_rate(kafka_bootstrap: str, scenario: CreditScenario, topic_pair: TopicPair) -> None:
    predictions, ground_truth = topic_pair()
    ensure_topics(kafka_bootstrap, [predictions, ground_truth], 1)
    with DriftlineProducer(kafka_bootstrap, predictions_topic=predictions, ground_truth_topic=ground_truth,
                           block_on_full=True) as producer:
        summary = publish_scenario(scenario, producer, 1_000, limit=600)
    assert summary.events == 600 and summary.ok
    # 600 events at 1,000/s with a 10-event burst take at least 0.59 s; only a loose lower bound.
    assert summary.seconds >= 0.5, summary.seconds


# --- the command ---------------------------------------------------------------------------


def test_cli_reports_an_unreachable_broker_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["simulate", "--broker", UNREACHABLE, "--rate", "100", "--timeout", "0.5", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().startswith("error: no Kafka broker answers at 127.0.0.1:1")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_cli_validates_its_options() -> None:
    result = CliRunner().invoke(main, ["simulate", "--broker", "x:1", "--rate", "-1"])
    assert result.exit_code == 2 and "--rate" in result.output
    result = CliRunner().invoke(main, ["simulate", "--broker", "x:1", "--rate", "1", "--predictions-topic", "t",
                                       "--ground-truth-topic", "t"])
    assert result.exit_code == 2 and "must differ" in result.output


@pytest.mark.kafka
def test_cli_refuses_topics_that_are_not_co_partitioned(kafka_bootstrap: str, tmp_path: Path, topic_pair: TopicPair) -> None:
    predictions, ground_truth = topic_pair()
    ensure_topics(kafka_bootstrap, [predictions], 3)
    result = CliRunner().invoke(main, [
        "simulate", "--broker", kafka_bootstrap, "--rate", "0", "--partitions", "2", "--out", str(tmp_path / "o"),
        "--predictions-topic", predictions, "--ground-truth-topic", ground_truth,
    ])
    assert result.exit_code == 2, result.output
    assert f"topic '{predictions}' has 3 partitions, expected 2" in result.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.kafka
def test_cli_writes_the_spec_and_publishes_the_scenario(kafka_bootstrap: str, tmp_path: Path, topic_pair: TopicPair) -> None:
    predictions, ground_truth = topic_pair()
    out = tmp_path / "sim"
    result = CliRunner().invoke(main, [
        "simulate", "--broker", kafka_bootstrap, "--rate", "0", "--events", "400", "--seed", "3",
        "--partitions", "2", "--out", str(out), "--predictions-topic", predictions, "--ground-truth-topic", ground_truth,
    ])
    assert result.exit_code == 0, result.output
    assert partition_counts(kafka_bootstrap, [predictions, ground_truth]) == {predictions: 2, ground_truth: 2}
    spec = yaml.safe_load((out / "spec.yaml").read_text())
    reference = Path(spec["reference"]["path"])
    assert reference.is_absolute() and reference == (out / "reference.parquet").resolve() and reference.exists()
    n_truths = len((out / "ground_truth.jsonl").read_bytes().splitlines())
    total = 400 + n_truths
    assert f"({total:,} events)" in result.output
    assert f"delivered {total:,}, failed 0, dropped 0" in result.output
    records = consume(kafka_bootstrap, [predictions, ground_truth], total)
    assert len(records) == total
    assert sorted(r.key.decode() for r in records if r.topic == predictions) == sorted(
        orjson.loads(line)["event_id"] for line in (out / "predictions.jsonl").read_bytes().splitlines()
    )


@pytest.mark.kafka
def test_cli_exits_non_zero_when_deliveries_fail(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
, topic_pair: TopicPair) -> None:
    """Every record is larger than the client allows: kafka-python refuses each send."""
    from driftline.scorers import sdk

    class TinyRequests(sdk.DriftlineProducer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, max_request_size=64, **kwargs)

    monkeypatch.setattr(sdk, "DriftlineProducer", TinyRequests)
    predictions, ground_truth = topic_pair()
    result = CliRunner().invoke(main, [
        "simulate", "--broker", kafka_bootstrap, "--rate", "0", "--events", "50", "--out", str(tmp_path / "o"),
        "--predictions-topic", predictions, "--ground-truth-topic", ground_truth,
    ])
    assert result.exit_code == 1, result.output
    assert "delivered 0, failed 50, dropped 0" in result.output
    assert "MessageSizeTooLarge" in result.stderr
    assert "error: 50 events were not delivered" in result.stderr
