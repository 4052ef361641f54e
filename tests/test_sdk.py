"""The producer SDK: validation, non-blocking logging, failure reporting, and the real broker."""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from types import MappingProxyType

import numpy as np
import orjson
import pytest
from kafka import KafkaProducer
from kafka.future import Future

from driftline.events import EventDecoder, InvalidEvent
from driftline.scorers.sdk import DriftlineProducer, new_event_id

UNREACHABLE = "127.0.0.1:1"
FEATURES = {"age": 41, "income": 52000.5, "region": "north", "has_mortgage": True, "missing": None}


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


class Errors:
    """Collects ``on_error`` calls from the background threads."""

    def __init__(self) -> None:
        self.calls: list[tuple[BaseException, str]] = []
        self.lock = threading.Lock()

    def __call__(self, error: BaseException, event_id: str) -> None:
        with self.lock:
            self.calls.append((error, event_id))

    def ids(self) -> list[str]:
        with self.lock:
            return [event_id for _, event_id in self.calls]


@pytest.fixture
def offline() -> Iterator[DriftlineProducer]:
    """A producer whose broker never answers; its connection attempts give up after 0.2 s."""
    producer = DriftlineProducer(UNREACHABLE, bootstrap_timeout_ms=200, max_block_ms=200)
    yield producer
    producer.close(timeout=0)


def prediction(**overrides: object) -> dict[str, object]:
    event: dict[str, object] = {"model": "credit", "version": "v3", "features": dict(FEATURES), "prediction": 1}
    event.update(overrides)
    return event


# --- constructor validation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bootstrap_servers": ""}, "bootstrap_servers must be"),
        ({"bootstrap_servers": []}, "bootstrap_servers must be"),
        ({"bootstrap_servers": 9092}, "bootstrap_servers must be"),
        ({"predictions_topic": "bad topic"}, "predictions_topic must be a Kafka topic name"),
        ({"ground_truth_topic": ""}, "ground_truth_topic must be a Kafka topic name"),
        ({"acks": "some"}, "acks must be one of 'all', -1, 0, 1, got 'some'"),
        ({"acks": True}, "acks must be one of"),
        ({"compression_type": "brotli"}, "compression_type must be one of"),
        ({"linger_ms": -1}, "linger_ms must be an int >= 0, got -1"),
        ({"batch_size": 0}, "batch_size must be an int >= 1, got 0"),
        ({"max_queue": 0}, "max_queue must be an int >= 1, got 0"),
        ({"max_queue": 1.5}, "max_queue must be an int >= 1, got 1.5"),
        ({"security_protocol": "TLS"}, "security_protocol must be one of"),
        ({"security_protocol": "SASL_SSL"}, "sasl_mechanism must be one of"),
        ({"sasl_mechanism": "PLAIN"}, "sasl_mechanism needs security_protocol"),
        (
            {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_plain_password": "pw"},
            "sasl_plain_username must be a non-empty str",
        ),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "app"},
            "sasl_plain_password must be a non-empty str with sasl_mechanism='SCRAM-SHA-512', got None",
        ),
        ({"ssl_cafile": "/nonexistent/ca.pem"}, "ssl_cafile must be the path of a readable file"),
        ({"block_on_full": 1}, "block_on_full must be a bool, got 1"),
        ({"on_error": "print"}, "on_error must be a callable or None"),
        ({"on_delivery": 3}, "on_delivery must be a callable or None"),
        ({"not_an_option": 1}, "kafka.KafkaProducer does not know: not_an_option"),
        ({"value_serializer": str.encode}, "kafka_config must not set value_serializer"),
        ({"max_block_ms": -5}, "max_block_ms must be an int >= 0, got -5"),
    ],
)
def test_constructor_names_the_bad_parameter(kwargs: dict[str, object], message: str) -> None:
    options = {"bootstrap_servers": UNREACHABLE, **kwargs}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        DriftlineProducer(**options)  # type: ignore[arg-type]


def test_mutual_tls_needs_both_files(tmp_path) -> None:
    cert = tmp_path / "client.pem"
    cert.write_text("x")
    with pytest.raises(ValueError, match="ssl_certfile and ssl_keyfile must be given together"):
        DriftlineProducer(UNREACHABLE, ssl_certfile=str(cert))


def test_password_is_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    secret = "s3cret-Pa55word"
    caplog.set_level(logging.DEBUG)
    producer = DriftlineProducer(
        UNREACHABLE,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_plain_username="scorer",
        sasl_plain_password=secret,
        bootstrap_timeout_ms=200,
    )
    producer.log_prediction(**prediction())
    producer.close(timeout=5)
    assert producer.stats()["failed"] == 1
    assert secret not in repr(producer)
    assert secret not in caplog.text
    with pytest.raises(ValueError) as error:
        DriftlineProducer(UNREACHABLE, security_protocol="SASL_SSL", sasl_mechanism="PLAIN",
                          sasl_plain_username="", sasl_plain_password=secret)
    assert secret not in str(error.value)


# --- event validation on the caller's thread -------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"score": float("nan")}, "score must be a finite number or None, got nan"),
        ({"score": np.float32("inf")}, "score must be a finite number or None, got .*inf"),
        ({"latency_ms": float("nan")}, "latency_ms must be a finite number"),
        ({"latency_ms": -np.inf}, "latency_ms must be a finite number"),
        ({"prediction": float("nan")}, "prediction must be a finite number"),
    ],
)
def test_non_finite_numbers_are_refused(offline: DriftlineProducer, overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        offline.log_prediction(**prediction(**overrides))
    assert offline.stats()["queued"] == 0


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"model": None}, "model"),
        ({"model": ""}, "model"),
        ({"version": None}, "version"),
        ({"features": None}, "features"),
        ({"model": 7}, "model"),
        ({"version": 3}, "version"),
        ({"features": [1, 2]}, "features"),
        ({"prediction": None}, "prediction"),
        ({"prediction": [1]}, "prediction"),
        ({"score": "high"}, "score"),
        ({"score": True}, "score"),
        ({"probabilities": [0.2, 0.8]}, "probabilities"),
        ({"explanation": "age"}, "explanation"),
        ({"role": 1}, "role"),
        ({"action": None}, "action"),
        ({"host": b"scorer-1"}, "host"),
        ({"latency_ms": "3ms"}, "latency_ms"),
        ({"entity_id": 5}, "entity_id"),
        ({"event_id": 123}, "event_id"),
        ({"event_id": ""}, "event_id"),
        ({"event_id": "x" * 300}, "event_id"),
        ({"ts": "2026-01-05"}, "ts"),
        ({"ts": 1.5e12}, "ts"),
        ({"ts": True}, "ts"),
        ({"ts": 5}, "ts"),
        ({"ts": int(time.time() * 1000) + 3_600_000}, "ts"),
    ],
)
def test_wrong_or_missing_prediction_fields_name_the_field(
    offline: DriftlineProducer, overrides: dict, field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        offline.log_prediction(**prediction(**overrides))
    assert offline.stats()["queued"] == 0


@pytest.mark.parametrize(
    ("overrides", "rejection"),
    [
        ({"score": "high"}, ("wrong_type", "score", "float or null", "str")),
        ({"features": [1]}, ("wrong_type", "features", "object", "array")),
        ({"prediction": {"a": 1}}, ("wrong_type", "prediction", "bool | int | float | str", "object")),
        ({"ts": 1.5e12}, ("wrong_type", "ts", "int", "float")),
        ({"ts": 5}, ("implausible_timestamp", "ts", ">= 946684800000 (2000-01-01, ms)", "5")),
        ({"event_id": ""}, ("invalid_value", "event_id", "1 to 256 characters", "''")),
    ],
)
def test_caller_errors_carry_the_decoders_rejection(
    offline: DriftlineProducer, overrides: dict, rejection: tuple[str, str, str, str]
) -> None:
    """The caller's checks name the same code, field, expected and got as a worker's decoder."""
    event = prediction(**{"event_id": "e-1", "ts": 1767571200000, "score": 0.5, **overrides})
    with pytest.raises(InvalidEvent) as error:
        offline.log_prediction(**event)
    got = error.value.rejection
    assert (got.code, got.field, got.expected, got.got) == rejection
    decoder_view = {**event, "schema_version": 1, "host": "h"}
    with pytest.raises(InvalidEvent) as decoded:
        EventDecoder().decode_prediction(orjson.dumps(decoder_view))
    assert decoded.value.rejection == got


def test_an_omitted_required_argument_is_a_type_error(offline: DriftlineProducer) -> None:
    event = prediction()
    del event["model"]
    with pytest.raises(TypeError, match="model"):
        offline.log_prediction(**event)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"event_id": None}, "event_id"),
        ({"event_id": 7}, "event_id"),
        ({"event_id": "x" * 257}, "event_id"),
        ({"model": ""}, "model"),
        ({"model": None}, "model"),
        ({"label": float("nan")}, "label must be a finite number"),
        ({"label": None}, "label"),
        ({"label": {"a": 1}}, "label"),
        ({"source": 3}, "source"),
        ({"ts": "yesterday"}, "ts"),
        ({"ts": 5}, "ts"),
    ],
)
def test_wrong_or_missing_ground_truth_fields_name_the_field(
    offline: DriftlineProducer, overrides: dict, field: str
) -> None:
    event = {"event_id": "e-1", "model": "credit", "label": 1, **overrides}
    with pytest.raises(ValueError, match=field):
        offline.log_ground_truth(**event)
    assert offline.stats()["queued"] == 0


def test_valid_events_are_accepted_with_defaults_and_numpy_scalars(offline: DriftlineProducer) -> None:
    event_id = offline.log_prediction(
        model="credit",
        version="v3",
        features={"age": np.int64(41), "income": np.float64(5.2e4), "ratio": np.float32(0.25), "gone": None},
        prediction=np.int64(1),
        score=np.float32(0.75),
        probabilities={"0": 0.25, "1": 0.75},
        explanation={"age": -0.1},
        latency_ms=2.5,
        action="approve",
        role="challenger",
        entity_id="cust-1",
        ts=np.int64(1767571200000),
    )
    assert uuid.UUID(event_id).version == 4
    assert offline.log_prediction(**prediction(event_id="app-7")) == "app-7"
    assert offline.log_ground_truth(event_id=event_id, model="credit", label=np.bool_(True), source="chargeback") == event_id
    assert offline.log_ground_truth(event_id=event_id, model="credit", label=np.float64(0.5)) == event_id
    assert offline.stats()["queued"] == 4
    assert len({new_event_id() for _ in range(1000)}) == 1000


class Captured:
    """Stands in for KafkaProducer: records what the sender thread hands over."""

    DEFAULT_CONFIG = KafkaProducer.DEFAULT_CONFIG
    sends: list[tuple[str, bytes, bytes]]

    def __init__(self, **config: object) -> None:
        self.sends = Captured.sends

    def send(self, topic: str, value: bytes, key: bytes) -> Future:
        self.sends.append((topic, key, value))
        return Future().success(None)

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        pass


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bytes, bytes]]:
    """Replace kafka-python's producer by :class:`Captured`; yields the list of sends."""
    from driftline.scorers import sdk

    Captured.sends = []
    monkeypatch.setattr(sdk, "KafkaProducer", Captured)
    return Captured.sends


def test_encoded_event_round_trips_the_contract(captured: list) -> None:
    with DriftlineProducer(UNREACHABLE) as producer:
        event_id = producer.log_prediction(**prediction(score=0.5, ts=1767571200000, host="scorer-2"))
        producer.log_ground_truth(event_id=event_id, model="credit", label=0, ts=1767571300000)
        producer.flush(timeout=10)
    (topic_p, id_p, data_p), (topic_g, id_g, data_g) = captured
    decoder = EventDecoder()
    pred = decoder.decode_prediction(data_p)
    truth = decoder.decode_ground_truth(data_g)
    assert (topic_p, topic_g) == ("driftline.predictions", "driftline.ground_truth")
    assert id_p == id_g == pred.event_id.encode() == truth.event_id.encode() == event_id.encode()
    assert (pred.model, pred.version, pred.ts, pred.score, pred.host) == ("credit", "v3", 1767571200000, 0.5, "scorer-2")
    assert pred.features == FEATURES
    assert (truth.label, truth.ts) == (0, 1767571300000)
    assert b"latency_ms" not in data_p and b"probabilities" not in data_p  # None is left out


def test_mappings_are_copied_at_the_call(captured: list) -> None:
    """The sender encodes later: changing the caller's dict afterwards must not change the event."""
    features = dict(FEATURES)
    probabilities = {"0": 0.4, "1": 0.6}
    with DriftlineProducer(UNREACHABLE) as producer:
        producer.log_prediction(**prediction(features=features, probabilities=probabilities))
        producer.log_prediction(**prediction(features=MappingProxyType({"age": 3})))
        features["age"] = "changed"
        probabilities["1"] = 0.0
        producer.flush(timeout=10)
    first, second = (EventDecoder().decode_prediction(value) for _, _, value in captured)
    assert first.features == FEATURES
    assert first.probabilities == {"0": 0.4, "1": 0.6}
    assert second.features == {"age": 3}


# --- event validation on the sender thread -------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"features": {"age": float("nan")}}, r"features\['age'\] must be a finite number or None, got nan"),
        ({"features": {"x": np.float32("inf")}}, r"features\['x'\] must be a finite number"),
        ({"features": {"x": -np.inf}}, r"features\['x'\] must be a finite number"),
        ({"probabilities": {"0": 0.5, "1": float("nan")}}, r"probabilities\['1'\] must be a finite number"),
        ({"explanation": {"age": float("inf")}}, r"explanation\['age'\] must be a finite number"),
        ({"features": {1: 2.0}}, "features keys must be str, got 1"),
        ({"features": {"age": object()}}, r"features\['age'\] cannot be encoded as JSON"),
        ({"features": {"age": [41]}}, "wrong_type at features.age: expected bool | int | float | str or null, got array"),
        ({"features": {"age": {"nested": 1}}}, "wrong_type at features.age"),
        ({"explanation": {"age": "big"}}, "wrong_type at explanation.age: expected float, got str"),
        ({"probabilities": {"1": None}}, "wrong_type at probabilities.1: expected float, got null"),
        ({"features": {"text": "x" * 70_000}}, "oversize: expected <= 65536 bytes"),
        ({"score": 2**70}, "score cannot be encoded as JSON"),
    ],
)
def test_nested_contract_violations_fail_on_the_sender_thread(
    captured: list, overrides: dict, message: str
) -> None:
    """Accepted at the call, refused before sending: reported to on_error, counted as failed,
    never handed to Kafka; the events around it are sent."""
    errors = Errors()
    with DriftlineProducer(UNREACHABLE, on_error=errors) as producer:
        before = producer.log_prediction(**prediction())
        bad = producer.log_prediction(**prediction(**overrides))
        after = producer.log_prediction(**prediction())
        producer.flush(timeout=10)
        stats = producer.stats()
    assert errors.ids() == [bad]
    error = errors.calls[0][0]
    assert isinstance(error, ValueError)
    assert re.search(message.replace("|", r"\|"), str(error)), str(error)
    assert [key.decode() for _, key, _ in captured] == [before, after]
    assert stats == {"sent": 2, "delivered": 2, "failed": 1, "dropped": 0, "queued": 0}


def test_sender_errors_carry_the_structured_rejection(captured: list) -> None:
    errors = Errors()
    with DriftlineProducer(UNREACHABLE, on_error=errors) as producer:
        producer.log_prediction(**prediction(features={"age": {"nested": 1}}))
    (error, _), = errors.calls
    assert isinstance(error, InvalidEvent)
    assert (error.rejection.code, error.rejection.field) == ("wrong_type", "features.age")


def test_without_a_broker_an_invalid_event_reports_its_own_reason() -> None:
    """When the connection fails, a queued event that also breaks the contract is reported with
    the contract's reason (the one to fix), the others with the connection's."""
    errors = Errors()
    with DriftlineProducer(UNREACHABLE, bootstrap_timeout_ms=200, on_error=errors) as producer:
        good = producer.log_prediction(**prediction())
        bad = producer.log_prediction(**prediction(features={"age": float("nan")}))
        assert wait_until(lambda: producer.stats()["failed"] == 2)
    reasons = {event_id: str(error) for error, event_id in errors.calls}
    assert "finite" in reasons[bad]
    assert "bootstrap" in reasons[good].lower()


# --- never blocking, failures surfaced -----------------------------------------------------


def test_logging_never_waits_for_the_network_and_failures_surface_later() -> None:
    errors = Errors()
    # A listener that completes TCP handshakes in its backlog and never answers: the sender's
    # bootstrap is provably in progress until ``bootstrap_timeout_ms`` runs out.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        producer = DriftlineProducer(address, bootstrap_timeout_ms=3_000, max_block_ms=300, on_error=errors)
        try:
            ids = [producer.log_prediction(**prediction()) for _ in range(200)]
            # Every call returned while the sender was still waiting on the broker: none of them
            # waited for the connection attempt, whose outcome is not known yet.
            assert producer.stats()["failed"] == 0
            assert errors.calls == []
            silent.settimeout(10)
            silent.accept()[0].close()
            assert wait_until(lambda: producer.stats()["failed"] == 200)
            assert sorted(errors.ids()) == sorted(ids)
            assert all("bootstrap" in str(error).lower() for error, _ in errors.calls)
            assert producer.stats() == {"sent": 0, "delivered": 0, "failed": 200, "dropped": 0, "queued": 0}
        finally:
            producer.close(timeout=5)


def test_full_queue_drops_and_counts() -> None:
    errors = Errors()
    producer = DriftlineProducer(UNREACHABLE, bootstrap_timeout_ms=3_000, max_queue=5, on_error=errors)
    ids = [producer.log_prediction(**prediction()) for _ in range(8)]
    assert producer.stats()["dropped"] == 3
    assert errors.ids() == ids[5:]
    assert all(isinstance(error, BufferError) for error, _ in errors.calls)
    start = time.monotonic()
    producer.close(timeout=0.2)
    assert time.monotonic() - start < 2
    stats = producer.stats()
    assert (stats["failed"], stats["dropped"], stats["queued"], stats["delivered"]) == (5, 3, 0, 0)
    assert sorted(errors.ids()) == sorted(ids)


def test_full_queue_blocks_then_raises_when_asked() -> None:
    producer = DriftlineProducer(
        UNREACHABLE, bootstrap_timeout_ms=3_000, max_block_ms=100, max_queue=2, block_on_full=True
    )
    try:
        producer.log_prediction(**prediction())
        producer.log_prediction(**prediction())
        start = time.monotonic()
        with pytest.raises(BufferError, match="queue full"):
            producer.log_prediction(**prediction())
        assert 0.09 <= time.monotonic() - start < 2
        assert producer.stats()["dropped"] == 1
    finally:
        producer.close(timeout=0)


def test_flush_times_out_and_close_fails_what_is_left() -> None:
    errors = Errors()
    producer = DriftlineProducer(UNREACHABLE, bootstrap_timeout_ms=3_000, on_error=errors)
    event_id = producer.log_prediction(**prediction())
    with pytest.raises(TimeoutError, match="1 events still queued"):
        producer.flush(timeout=0.1)
    with pytest.raises(ValueError, match="timeout must be a number >= 0"):
        producer.flush(timeout=-1)
    producer.close(timeout=0)
    assert errors.ids() == [event_id]
    assert "closed" in str(errors.calls[0][0])
    with pytest.raises(RuntimeError, match="closed"):
        producer.log_prediction(**prediction())
    producer.close()


def test_a_raising_callback_does_not_stop_the_producer() -> None:
    calls = []

    def on_error(error: BaseException, event_id: str) -> None:
        calls.append(event_id)
        raise RuntimeError("callback bug")

    with DriftlineProducer(UNREACHABLE, bootstrap_timeout_ms=200, on_error=on_error) as producer:
        producer.log_prediction(**prediction())
        assert wait_until(lambda: len(calls) == 1)
        producer.log_prediction(**prediction())
        assert wait_until(lambda: len(calls) == 2)
    assert producer.stats()["failed"] == 2


def test_a_metadata_timeout_fails_the_rest_of_the_batch_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from kafka.errors import KafkaTimeoutError

    from driftline.scorers import sdk

    release, sends = threading.Event(), []

    class MetadataNeverArrives:
        """Stands in for KafkaProducer whose send() gives up waiting for a topic's metadata."""

        DEFAULT_CONFIG = sdk.KafkaProducer.DEFAULT_CONFIG

        def __init__(self, **config: object) -> None:
            release.wait(10)

        def send(self, topic: str, value: bytes, key: bytes) -> None:
            sends.append(key)
            time.sleep(0.05)
            raise KafkaTimeoutError(f"Failed to update metadata after 0.05 secs for {topic}")

        def flush(self, timeout: float | None = None) -> None:
            pass

        def close(self, timeout: float | None = None) -> None:
            pass

    monkeypatch.setattr(sdk, "KafkaProducer", MetadataNeverArrives)
    errors = Errors()
    with DriftlineProducer(UNREACHABLE, on_error=errors) as producer:
        ids = [producer.log_prediction(**prediction()) for _ in range(50)]
        ids.append(producer.log_ground_truth(event_id=ids[0], model="credit", label=1))
        release.set()
        producer.flush(timeout=10)
    assert len(sends) == 2  # one wait per topic in the batch, not one per event
    assert sorted(errors.ids()) == sorted(ids)
    assert all(isinstance(error, KafkaTimeoutError) for error, _ in errors.calls)
    assert producer.stats() == {"sent": 0, "delivered": 0, "failed": 51, "dropped": 0, "queued": 0}


# --- the real broker -----------------------------------------------------------------------


def consume(bootstrap: str, topics: list[str], expected: int, timeout: float = 40.0) -> list:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        check_crcs=False,
    )
    records = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500, max_records=5000).values():
                records.extend(batch)
    finally:
        consumer.close()
    return records


@pytest.mark.kafka
def test_ten_thousand_events_reach_the_broker_exactly_once(kafka_bootstrap: str, kafka_name) -> None:
    run = kafka_name("sdk-test")
    topics = (f"{run}.predictions", f"{run}.ground_truth")
    errors, delivered = Errors(), []
    producer = DriftlineProducer(
        kafka_bootstrap,
        predictions_topic=topics[0],
        ground_truth_topic=topics[1],
        on_error=errors,
        on_delivery=lambda metadata, event_id: delivered.append((metadata.topic, event_id)),
    )
    with producer:
        ids = [
            producer.log_prediction(
                model="credit",
                version="v3",
                features={f"f{i}": float(n + i) for i in range(20)},
                prediction=n % 2,
                score=(n % 100) / 100,
            )
            for n in range(10_000)
        ]
        for n, event_id in enumerate(ids):
            producer.log_ground_truth(event_id=event_id, model="credit", label=(n // 2) % 2, source="audit")
        producer.flush(timeout=120)
        stats = producer.stats()
    assert errors.calls == []
    assert stats == {"sent": 20_000, "delivered": 20_000, "failed": 0, "dropped": 0, "queued": 0}
    assert len(delivered) == 20_000

    records = consume(kafka_bootstrap, list(topics), 20_000)
    assert len(records) == 20_000
    decoder = EventDecoder()
    by_topic: dict[str, list[str]] = {topics[0]: [], topics[1]: []}
    for record in records:
        decode = decoder.decode_prediction if record.topic == topics[0] else decoder.decode_ground_truth
        event = decode(record.value)
        assert record.key == event.event_id.encode()
        by_topic[record.topic].append(event.event_id)
    assert sorted(by_topic[topics[0]]) == sorted(ids)
    assert sorted(by_topic[topics[1]]) == sorted(ids)


@pytest.mark.kafka
def test_compressed_events_arrive(kafka_bootstrap: str, kafka_name) -> None:
    topic = f"{kafka_name('sdk-test')}.gzip"
    with DriftlineProducer(kafka_bootstrap, predictions_topic=topic, compression_type="gzip", acks=1) as producer:
        ids = [producer.log_prediction(**prediction()) for _ in range(200)]
        producer.flush(timeout=60)
        assert producer.stats()["delivered"] == 200
    records = consume(kafka_bootstrap, [topic], 200)
    assert sorted(r.key.decode() for r in records) == sorted(ids)



@pytest.mark.kafka
def test_events_refused_by_the_sender_never_reach_the_broker(kafka_bootstrap: str, kafka_name) -> None:
    topic = f"{kafka_name('sdk-test')}.invalid"
    errors = Errors()
    with DriftlineProducer(kafka_bootstrap, predictions_topic=topic, on_error=errors) as producer:
        valid, invalid = [], []
        for n in range(550):
            if n % 11 == 10:
                invalid.append(producer.log_prediction(**prediction(features={"age": float("nan"), "n": n})))
            else:
                valid.append(producer.log_prediction(**prediction(features={"age": 41, "n": n})))
        producer.flush(timeout=60)
        stats = producer.stats()
    assert stats == {"sent": 500, "delivered": 500, "failed": 50, "dropped": 0, "queued": 0}
    assert sorted(errors.ids()) == sorted(invalid)
    records = consume(kafka_bootstrap, [topic], 500)
    assert sorted(r.key.decode() for r in records) == sorted(valid)
