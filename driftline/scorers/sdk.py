"""Producer SDK: publish prediction and ground-truth events to Kafka from a scoring app.

:class:`DriftlineProducer` checks each event's structure on the caller's thread (required
fields, the type of every top-level field, finite numbers, ``event_id`` length, ``ts`` range)
and raises at once when it is wrong. It then puts the event's fields on a bounded in-process
queue and returns. A background thread builds the JSON with orjson, decodes it with the full
contract of :mod:`driftline.events` (feature names and values, probabilities, explanation,
size) and hands the bytes to kafka-python's ``KafkaProducer`` (keyed by ``event_id``), so the
caller's thread never waits on the network nor pays for encoding: the broker may be slow, down
or unreachable and ``log_prediction`` still returns in microseconds. Nothing reaches Kafka
without passing the contract. Delivery outcomes come back through the ``on_delivery`` /
``on_error`` callbacks and the :meth:`DriftlineProducer.stats` counters.

Every event ends in exactly one of three states: ``delivered`` (acknowledged by the broker per
``acks``), ``failed`` (``on_error`` was called with the reason: a contract violation found on
the sender thread, or a delivery failure) or ``dropped`` (refused at once because the queue was
full; ``on_error`` gets a ``BufferError``).

Examples
--------
Nothing listens on port 1, so the event below is accepted at once and fails later, in the
background, when the client gives up connecting:

>>> errors = []
>>> producer = DriftlineProducer(
...     "127.0.0.1:1", bootstrap_timeout_ms=200,
...     on_error=lambda exc, event_id: errors.append(event_id))
>>> event_id = producer.log_prediction(
...     model="credit", version="v3", features={"age": 41, "region": "north"},
...     prediction=1, score=0.82)
>>> len(event_id)
32
>>> producer.log_prediction(
...     model="credit", version="v3", features={"age": 41}, prediction=1, score=float("nan"))
Traceback (most recent call last):
...
ValueError: score must be a finite number or None, got nan
>>> producer.close(timeout=5)
>>> errors == [event_id]
True
>>> producer.stats()
{'sent': 0, 'delivered': 0, 'failed': 1, 'dropped': 0, 'queued': 0}

A broken feature value is found on the sender thread, before anything is sent, and reported
like a delivery failure, naming the field:

>>> reasons = []
>>> with DriftlineProducer("127.0.0.1:1", bootstrap_timeout_ms=200,
...                        on_error=lambda exc, event_id: reasons.append(str(exc))) as producer:
...     _ = producer.log_prediction(
...         model="credit", version="v3", features={"age": float("nan")}, prediction=1)
>>> reasons
["features['age'] must be a finite number or None, got nan"]

"""

from __future__ import annotations

import logging
import math
import numbers
import os
import random
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
import orjson
from kafka import KafkaProducer
from kafka import codec as kafka_codec
from kafka.errors import KafkaTimeoutError

from driftline.events import (
    MIN_TS_MS,
    SCHEMA_VERSION,
    EventDecoder,
    FeatureValue,
    InvalidEvent,
    Rejection,
    check_event_id,
    check_ts,
)

__all__ = ["DriftlineProducer", "new_event_id"]

logger = logging.getLogger(__name__)

ACKS = ("all", -1, 0, 1)
COMPRESSION_TYPES = (None, "gzip", "snappy", "lz4", "zstd")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI")
# Options the SDK sets itself: it always sends bytes keyed by event_id.
_OWNED_OPTIONS = frozenset({"key_serializer", "value_serializer"})
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_BATCH_EVENTS = 2048
_RECONNECT_BACKOFF_S = 1.0
_LOG_EVERY_S = 10.0
_NUMPY_OPTION = orjson.OPT_SERIALIZE_NUMPY
_UUID4_MASK = 0xFFFFFFFF_FFFF_0FFF_3FFF_FFFFFFFFFFFF
_UUID4_BITS = 0x00000000_0000_4000_8000_000000000000
_PREDICTION_MAPPINGS = ("features", "probabilities", "explanation")
_PREDICTION, _GROUND_TRUTH = 0, 1

ErrorCallback = Callable[[BaseException, str], Any]
DeliveryCallback = Callable[[Any, str], Any]


def new_event_id() -> str:
    """A random UUID (version 4) as 32 hex digits.

    Drawn from :mod:`random` rather than ``os.urandom`` (``uuid.uuid4``): an event id must be
    unique, not secret, and this is several times cheaper on the caller's thread. The module's
    generator is reseeded in forked children, so pre-forking servers do not repeat ids.

    Examples
    --------
    >>> import uuid
    >>> uuid.UUID(new_event_id()).version
    4
    """
    return "%032x" % (random.getrandbits(128) & _UUID4_MASK | _UUID4_BITS)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _is_non_finite(value: Any) -> bool:
    return isinstance(value, numbers.Real) and type(value) is not int and not math.isfinite(value)


def _check_finite(name: str, value: Any) -> None:
    if _is_non_finite(value):
        raise ValueError(f"{name} must be a finite number or None, got {value!r}")


def _check_mapping(name: str, value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                raise ValueError(f"{name} keys must be str, got {key!r}")
        return dict(value)
    raise ValueError(f"{name} must be a dict of name -> value, got {type(value).__name__}")


def _json_type(value: Any) -> str:
    """The JSON type that ``value`` is sent as (what a consumer's decoder sees), or its Python
    type name when orjson cannot encode it.

    Examples
    --------
    >>> import numpy as np
    >>> [_json_type(v) for v in (True, np.int64(3), np.float32(0.5), "a", None, [1], {}, {1})]
    ['bool', 'int', 'float', 'str', 'null', 'array', 'object', 'set']
    """
    try:
        data = orjson.dumps(value, option=_NUMPY_OPTION)
    except orjson.JSONEncodeError:
        return type(value).__name__
    first = data[:1]
    if first == b'"':
        return "str"
    if first == b"[":
        return "array"
    if first == b"{":
        return "object"
    if data in (b"true", b"false"):
        return "bool"
    if data == b"null":
        return "null"
    return "float" if any(c in data for c in b".eE") else "int"


def _wrong_type(name: str, expected: str, value: Any) -> InvalidEvent:
    return InvalidEvent(Rejection("wrong_type", name, expected, _json_type(value)))


def _check_event_id(value: Any) -> str:
    if value is None:
        raise ValueError("event_id is required, got None")
    if not isinstance(value, str):
        raise _wrong_type("event_id", "str", value)
    check_event_id(value)
    return value


def _check_ts(value: Any, max_future_ms: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise _wrong_type("ts", "int", value)
    ts = int(value)
    check_ts(ts, _now_ms(), max_future_ms)
    return ts


def _check_str(name: str, value: Any, required: bool = False) -> str:
    if required and (value is None or (isinstance(value, str) and not value)):
        raise ValueError(f"{name} is required, got {value!r}")
    if not isinstance(value, str):
        raise _wrong_type(name, "str", value)
    return value


def _check_scalar(name: str, value: Any) -> Any:
    _check_finite(name, value)
    if _json_type(value) not in ("bool", "int", "float", "str"):
        raise _wrong_type(name, "bool | int | float | str", value)
    return value


def _check_number(name: str, value: Any) -> Any:
    if value is None:
        return None
    _check_finite(name, value)
    if _json_type(value) not in ("int", "float"):
        raise _wrong_type(name, "float or null", value)
    return value


def _check_object(name: str, value: Any, required: bool) -> dict[str, Any] | None:
    if value is None and not required:
        return None
    if value is None:
        raise ValueError(f"{name} is required, got None")
    if not isinstance(value, Mapping):
        raise _wrong_type(name, "object" if required else "object or null", value)
    return dict(value)


def _prediction_fields(
    event_id: str, model: Any, version: Any, ts: int, features: Any, prediction: Any, score: Any,
    probabilities: Any, action: Any, explanation: Any, role: Any, host: Any, latency_ms: Any, entity_id: Any,
) -> tuple[Any, ...]:
    """The slow path of the caller's check: find the top-level field that is wrong and raise,
    or accept what the fast path does not know (numpy scalars, subclasses, other mappings)."""
    return (
        event_id,
        _check_str("model", model, required=True),
        _check_str("version", version, required=True),
        ts,
        _check_object("features", features, required=True),
        _check_scalar("prediction", prediction),
        _check_number("score", score),
        _check_object("probabilities", probabilities, required=False),
        _check_str("action", action),
        _check_object("explanation", explanation, required=False),
        _check_str("role", role),
        _check_str("host", host),
        _check_number("latency_ms", latency_ms),
        _check_str("entity_id", entity_id),
    )


def _prediction_event(fields: tuple[Any, ...]) -> dict[str, Any]:
    (event_id, model, version, ts, features, prediction, score, probabilities, action, explanation, role, host,
     latency_ms, entity_id) = fields
    event: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "event_id": event_id,
        "model": model,
        "version": version,
        "ts": ts,
        "features": features,
        "prediction": prediction,
        "action": action,
        "role": role,
        "host": host,
        "entity_id": entity_id,
    }
    if score is not None:
        event["score"] = score
    if probabilities is not None:
        event["probabilities"] = probabilities
    if explanation is not None:
        event["explanation"] = explanation
    if latency_ms is not None:
        event["latency_ms"] = latency_ms
    return event


def _ground_truth_event(fields: tuple[Any, ...]) -> dict[str, Any]:
    event_id, model, ts, label, source = fields
    return {
        "schema_version": SCHEMA_VERSION,
        "event_id": event_id,
        "model": model,
        "ts": ts,
        "label": label,
        "source": source,
    }


def _diagnose(event: dict[str, Any], mappings: tuple[str, ...]) -> None:
    """Name the field that makes ``event`` unencodable or non-finite (the slow path); turn
    mappings that are not dicts into dicts in place."""
    for name, value in event.items():
        if name in mappings and value is not None:
            event[name] = _check_mapping(name, value)
            for key, item in event[name].items():
                _check_finite(f"{name}[{key!r}]", item)
                _check_encodable(f"{name}[{key!r}]", item)
        else:
            _check_finite(name, value)
            _check_encodable(name, value)


def _check_encodable(name: str, value: Any) -> None:
    try:
        orjson.dumps(value, option=_NUMPY_OPTION)
    except orjson.JSONEncodeError as error:
        raise ValueError(f"{name} cannot be encoded as JSON: {error}") from None


def _encode(event: dict[str, Any], mappings: tuple[str, ...]) -> bytes:
    try:
        data = orjson.dumps(event, option=_NUMPY_OPTION)
    except orjson.JSONEncodeError:
        _diagnose(event, mappings)
        raise
    # orjson writes NaN and infinities as null: without a null there is nothing to check.
    if b"null" in data:
        _diagnose(event, mappings)
    return data


_VALUE_TYPES: dict[str, Any] = {"features": FeatureValue, "probabilities": float, "explanation": float}


def _pinpoint(error: InvalidEvent, event: dict[str, Any]) -> InvalidEvent:
    """Name the key of a mapping entry that the decoder reports only as ``name[...]``."""
    rejection = error.rejection
    name, _, rest = rejection.field.partition("[...]")
    mapping = event.get(name)
    if not rest and name in _VALUE_TYPES and isinstance(mapping, dict):
        for key, value in mapping.items():
            try:
                msgspec.json.decode(orjson.dumps(value, option=_NUMPY_OPTION), type=_VALUE_TYPES[name])
            except (msgspec.ValidationError, orjson.JSONEncodeError):
                return InvalidEvent(Rejection(rejection.code, f"{name}.{key}", rejection.expected, rejection.got))
    return error


def _validate_callback(name: str, value: Any) -> None:
    if value is not None and not callable(value):
        raise ValueError(f"{name} must be a callable or None, got {value!r}")


def _validate_file(name: str, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, (str, os.PathLike)) or not os.path.isfile(value):
        raise ValueError(f"{name} must be the path of a readable file or None, got {value!r}")


def _validate_int(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _compression_available(codec: str | None) -> bool:
    checks = {
        None: lambda: True,
        "gzip": kafka_codec.has_gzip,
        "snappy": kafka_codec.has_snappy,
        "lz4": kafka_codec.has_lz4,
        "zstd": kafka_codec.has_zstd,
    }
    return bool(checks[codec]())


class DriftlineProducer:
    """Log predictions and ground truth to Kafka without blocking the caller.

    Parameters
    ----------
    bootstrap_servers
        ``"host:port"`` or a list of them.
    predictions_topic, ground_truth_topic
        Where the two event kinds go (DESIGN.md's default names).
    acks
        Broker acknowledgements before an event counts as delivered: ``"all"`` (or ``-1``),
        ``1`` (leader only) or ``0`` (none; every send then counts as delivered).
    compression_type
        ``None``, ``"gzip"``, ``"snappy"``, ``"lz4"`` or ``"zstd"`` (the codec's Python package
        must be installed; gzip always is).
    linger_ms, batch_size
        kafka-python batching: how long a batch waits to fill, and its size in bytes.
    security_protocol
        ``"PLAINTEXT"``, ``"SSL"``, ``"SASL_PLAINTEXT"`` or ``"SASL_SSL"``.
    sasl_mechanism, sasl_plain_username, sasl_plain_password
        SASL settings; the mechanism is required with a ``SASL_*`` protocol, and PLAIN and
        SCRAM need the username and password. The password is never logged or shown.
    ssl_cafile, ssl_certfile, ssl_keyfile
        PEM files for TLS: the CA that signed the brokers' certificates, and the client
        certificate and key for mutual TLS.
    max_queue
        Events held in memory while the background thread hands them to kafka-python.
    block_on_full
        What ``log_*`` does when the queue holds ``max_queue`` events. ``False`` (default): drop
        the event, count it in ``dropped`` and call ``on_error`` with a ``BufferError`` — the
        scoring request is never slowed down by monitoring. ``True``: wait for room for up to
        ``max_block_ms`` (kafka-python's option, 60 s unless given), then raise ``BufferError``.
    on_error
        ``on_error(exception, event_id)`` for every event that will not be delivered, including
        an event the sender thread refuses for breaking the contract (a ``ValueError``, often an
        :class:`~driftline.events.InvalidEvent`, naming the field). It runs on a background
        thread (on the caller's thread for a drop); it must not block and must not call
        :meth:`flush` or :meth:`close`.
    on_delivery
        ``on_delivery(record_metadata, event_id)`` for every acknowledged event (background
        thread; same rules).
    **kafka_config
        Any other ``kafka.KafkaProducer`` option, e.g. ``client_id``, ``max_block_ms``,
        ``bootstrap_timeout_ms``, ``delivery_timeout_ms``, ``ssl_password``.

    Notes
    -----
    The ``KafkaProducer`` is created on the background thread, because its constructor waits for
    a broker (up to ``bootstrap_timeout_ms``). Events logged meanwhile wait in the queue; when a
    connection attempt fails, every event queued at that moment fails with the attempt's error
    (or with its own contract violation, if it has one), and the thread tries again, at most once a second, when new events arrive. Once connected,
    ``send()`` may wait up to ``max_block_ms`` for a topic's metadata (broker gone, topic
    missing): when it gives up, the rest of that batch (up to 2,048 events) for the same topic
    fails at once with the same error instead of waiting again per event. Delivery errors after
    a send follow kafka-python's retries, up to ``delivery_timeout_ms`` (2 minutes by default).

    The caller's thread checks what is cheap to check (each top-level field: presence, type,
    finiteness, ``event_id`` length, ``ts`` range) and copies the ``features``,
    ``probabilities`` and ``explanation`` dicts; the sender thread encodes the event and decodes
    it with :class:`~driftline.events.EventDecoder` (the check a stream worker makes) before
    sending, which covers the mappings' contents and the 64 KiB size limit. This split keeps
    ``log_prediction`` at a few microseconds (docs/benchmarks.md); the encode and decode cost
    the same as before, on the sender thread.

    Concurrent callers may overshoot ``max_queue`` by at most one event each; the check is
    lock-free to keep the caller's cost low.

    Examples
    --------
    >>> DriftlineProducer("127.0.0.1:9092", acks=2)
    Traceback (most recent call last):
    ...
    ValueError: acks must be one of 'all', -1, 0, 1, got 2
    >>> DriftlineProducer("127.0.0.1:9092", security_protocol="SASL_SSL")
    Traceback (most recent call last):
    ...
    ValueError: sasl_mechanism must be one of 'PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512', 'OAUTHBEARER', 'GSSAPI' with security_protocol='SASL_SSL', got None
    """

    def __init__(
        self,
        bootstrap_servers: str | list[str],
        *,
        predictions_topic: str = "driftline.predictions",
        ground_truth_topic: str = "driftline.ground_truth",
        acks: str | int = "all",
        compression_type: str | None = None,
        linger_ms: int = 5,
        batch_size: int = 64 * 1024,
        security_protocol: str = "PLAINTEXT",
        sasl_mechanism: str | None = None,
        sasl_plain_username: str | None = None,
        sasl_plain_password: str | None = None,
        ssl_cafile: str | None = None,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
        max_queue: int = 100_000,
        block_on_full: bool = False,
        on_error: ErrorCallback | None = None,
        on_delivery: DeliveryCallback | None = None,
        **kafka_config: Any,
    ):
        servers = [bootstrap_servers] if isinstance(bootstrap_servers, str) else bootstrap_servers
        if (
            not isinstance(servers, (list, tuple))
            or not servers
            or not all(isinstance(s, str) and s.strip() for s in servers)
        ):
            raise ValueError(
                f"bootstrap_servers must be a 'host:port' str or a non-empty list of them, got {bootstrap_servers!r}"
            )
        for name, topic in (("predictions_topic", predictions_topic), ("ground_truth_topic", ground_truth_topic)):
            if not isinstance(topic, str) or not _TOPIC.match(topic) or topic in (".", ".."):
                raise ValueError(f"{name} must be a Kafka topic name (1-249 of [A-Za-z0-9._-]), got {topic!r}")
        if isinstance(acks, bool) or acks not in ACKS:
            raise ValueError(f"acks must be one of 'all', -1, 0, 1, got {acks!r}")
        if compression_type not in COMPRESSION_TYPES:
            raise ValueError(
                f"compression_type must be one of None, 'gzip', 'snappy', 'lz4', 'zstd', got {compression_type!r}"
            )
        if not _compression_available(compression_type):
            raise ValueError(
                f"compression_type={compression_type!r} needs its codec package "
                f"(pip install {'python-snappy' if compression_type == 'snappy' else compression_type})"
            )
        _validate_int("linger_ms", linger_ms, 0)
        _validate_int("batch_size", batch_size, 1)
        _validate_int("max_queue", max_queue, 1)
        if security_protocol not in SECURITY_PROTOCOLS:
            raise ValueError(
                f"security_protocol must be one of {', '.join(map(repr, SECURITY_PROTOCOLS))}, got {security_protocol!r}"
            )
        uses_sasl = security_protocol.startswith("SASL_")
        if uses_sasl and sasl_mechanism not in SASL_MECHANISMS:
            raise ValueError(
                f"sasl_mechanism must be one of {', '.join(map(repr, SASL_MECHANISMS))} "
                f"with security_protocol={security_protocol!r}, got {sasl_mechanism!r}"
            )
        if not uses_sasl and sasl_mechanism is not None:
            raise ValueError(
                f"sasl_mechanism needs security_protocol 'SASL_PLAINTEXT' or 'SASL_SSL', got {security_protocol!r}"
            )
        if uses_sasl and sasl_mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
            if not isinstance(sasl_plain_username, str) or not sasl_plain_username:
                raise ValueError(
                    f"sasl_plain_username must be a non-empty str with sasl_mechanism={sasl_mechanism!r}, "
                    f"got {sasl_plain_username!r}"
                )
            if not isinstance(sasl_plain_password, str) or not sasl_plain_password:
                shown = "None" if sasl_plain_password is None else "an empty or non-str value"
                raise ValueError(
                    f"sasl_plain_password must be a non-empty str with sasl_mechanism={sasl_mechanism!r}, got {shown}"
                )
        for name, path in (("ssl_cafile", ssl_cafile), ("ssl_certfile", ssl_certfile), ("ssl_keyfile", ssl_keyfile)):
            _validate_file(name, path)
        if (ssl_certfile is None) != (ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile must be given together (mutual TLS), got only one")
        if not isinstance(block_on_full, bool):
            raise ValueError(f"block_on_full must be a bool, got {block_on_full!r}")
        _validate_callback("on_error", on_error)
        _validate_callback("on_delivery", on_delivery)
        unknown = sorted(set(kafka_config) - set(KafkaProducer.DEFAULT_CONFIG))
        if unknown:
            raise ValueError(f"kafka_config has options kafka.KafkaProducer does not know: {', '.join(unknown)}")
        owned = sorted(set(kafka_config) & _OWNED_OPTIONS)
        if owned:
            raise ValueError(f"kafka_config must not set {', '.join(owned)}: the SDK sends bytes keyed by event_id")
        max_block_ms = kafka_config.get("max_block_ms", KafkaProducer.DEFAULT_CONFIG["max_block_ms"])
        _validate_int("max_block_ms", max_block_ms, 0)

        self.bootstrap_servers = list(servers)
        self.predictions_topic = predictions_topic
        self.ground_truth_topic = ground_truth_topic
        self.max_queue = max_queue
        self.block_on_full = block_on_full
        self.on_error = on_error
        self.on_delivery = on_delivery
        self._config: dict[str, Any] = {
            **kafka_config,
            "bootstrap_servers": self.bootstrap_servers,
            "acks": acks,
            "compression_type": compression_type,
            "linger_ms": linger_ms,
            "batch_size": batch_size,
            "security_protocol": security_protocol,
            "sasl_mechanism": sasl_mechanism,
            "sasl_plain_username": sasl_plain_username,
            "sasl_plain_password": sasl_plain_password,
            "ssl_cafile": None if ssl_cafile is None else os.fspath(ssl_cafile),
            "ssl_certfile": None if ssl_certfile is None else os.fspath(ssl_certfile),
            "ssl_keyfile": None if ssl_keyfile is None else os.fspath(ssl_keyfile),
        }
        self._max_block_s = max_block_ms / 1000
        self._host = socket.gethostname()
        self._decoder = EventDecoder()
        self._max_future_ms = self._decoder.limits.max_future_ms
        self._topics = (predictions_topic, ground_truth_topic)
        self._queue: deque[tuple[int, str, tuple[Any, ...]]] = deque()
        self._client: Any = None
        self._connect_error: BaseException | None = None
        self._in_hand = 0
        self._sent = 0
        self._delivered = 0
        self._failed = 0
        self._dropped = 0
        self._counts = threading.Lock()
        self._progress = threading.Condition()
        self._wake = threading.Event()
        self._idle = False
        self._closing = False
        self._stop = threading.Event()
        self._closed = False
        self._last_log = -math.inf
        self._unlogged = 0
        self._thread = threading.Thread(target=self._run, name="driftline-producer", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return (
            f"DriftlineProducer(bootstrap_servers={self.bootstrap_servers!r}, "
            f"predictions_topic={self.predictions_topic!r}, ground_truth_topic={self.ground_truth_topic!r}, "
            f"security_protocol={self._config['security_protocol']!r})"
        )

    def __enter__(self) -> DriftlineProducer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def log_prediction(
        self,
        *,
        event_id: str | None = None,
        model: str,
        version: str,
        features: dict[str, Any],
        prediction: Any,
        score: float | None = None,
        probabilities: dict[str, float] | None = None,
        action: str = "",
        explanation: dict[str, float] | None = None,
        role: str = "champion",
        host: str | None = None,
        latency_ms: float | None = None,
        entity_id: str = "",
        ts: int | None = None,
    ) -> str:
        """Check and queue one prediction event; return its ``event_id``.

        ``event_id`` defaults to a new random UUID4 hex, ``host`` to this machine's hostname and
        ``ts`` to now (ms since the epoch, UTC). Numpy scalars are accepted. Raises
        ``ValueError`` naming the field when a required field is missing, a top-level field has
        the wrong type, a number is NaN or infinite (JSON cannot carry them), ``event_id`` is
        empty or longer than 256 characters, or ``ts`` is before 2000 or in the future;
        :class:`driftline.events.InvalidEvent` is a ``ValueError`` whose ``.rejection`` holds
        the structured reason. The contents of ``features``, ``probabilities`` and
        ``explanation`` (names, value types, finiteness) and the encoded size are checked on the
        sender thread before sending; an event that fails there is never sent, counts as
        ``failed`` and is reported to ``on_error`` with the same kind of error. The mappings are
        copied, so the caller may reuse them after the call.
        """
        if event_id is None:
            event_id = new_event_id()
        elif event_id.__class__ is not str or not 0 < len(event_id) <= 256:
            _check_event_id(event_id)
        if ts is None:
            ts = _now_ms()
        elif ts.__class__ is not int or not MIN_TS_MS <= ts <= _now_ms() + self._max_future_ms:
            ts = _check_ts(ts, self._max_future_ms)
        if host is None:
            host = self._host
        # Exact-type checks (cheapest in CPython); anything else takes the slow path.
        kind = prediction.__class__
        if (
            model.__class__ is str
            and model
            and version.__class__ is str
            and version
            and features.__class__ is dict
            and (kind is int or kind is str or kind is bool or (kind is float and prediction - prediction == 0.0))
            and (score is None or (score.__class__ is float and score - score == 0.0))
            and (latency_ms is None or (latency_ms.__class__ is float and latency_ms - latency_ms == 0.0))
            and probabilities is None
            and explanation is None
            and action.__class__ is str
            and role.__class__ is str
            and host.__class__ is str
            and entity_id.__class__ is str
        ):
            fields: tuple[Any, ...] = (
                event_id, model, version, ts, features.copy(), prediction, score, None, action, None, role, host,
                latency_ms, entity_id,
            )
        else:
            fields = _prediction_fields(
                event_id, model, version, ts, features, prediction, score, probabilities, action, explanation, role,
                host, latency_ms, entity_id,
            )
        if self._closing:
            raise RuntimeError("DriftlineProducer is closed")
        queue = self._queue
        if len(queue) >= self.max_queue and not self._wait_for_room(event_id):
            return event_id
        queue.append((_PREDICTION, event_id, fields))
        if self._idle:
            self._wake.set()
        return event_id

    def log_ground_truth(
        self,
        *,
        event_id: str,
        model: str,
        label: Any,
        source: str = "",
        ts: int | None = None,
    ) -> str:
        """Check and queue the truth for the prediction ``event_id``; return ``event_id``.

        ``ts`` is when the truth became known (default: now, ms). Raises ``ValueError`` naming
        the field, like :meth:`log_prediction`; every field of a ground truth is checked on the
        caller's thread.
        """
        if event_id.__class__ is not str or not 0 < len(event_id) <= 256:
            _check_event_id(event_id)
        if ts is None:
            ts = _now_ms()
        elif ts.__class__ is not int or not MIN_TS_MS <= ts <= _now_ms() + self._max_future_ms:
            ts = _check_ts(ts, self._max_future_ms)
        kind = label.__class__
        if not (
            model.__class__ is str
            and model
            and (kind is int or kind is str or kind is bool or (kind is float and label - label == 0.0))
            and source.__class__ is str
        ):
            model = _check_str("model", model, required=True)
            label = _check_scalar("label", label)
            source = _check_str("source", source)
        self._enqueue(_GROUND_TRUTH, event_id, (event_id, model, ts, label, source))
        return event_id

    def stats(self) -> dict[str, int]:
        """Counters since creation.

        ``sent``: events handed to kafka-python; ``delivered``: acknowledged by the broker;
        ``failed``: will not be delivered (``on_error`` was called); ``dropped``: refused because
        the queue was full; ``queued``: waiting in this SDK's queue for the background thread.
        """
        return {
            "sent": self._sent,
            "delivered": self._delivered,
            "failed": self._failed,
            "dropped": self._dropped,
            "queued": len(self._queue) + self._in_hand,
        }

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued event is handed to kafka-python and kafka-python has flushed.

        Afterwards each event logged before the call is delivered or failed. Raises
        ``TimeoutError`` if that takes longer than ``timeout`` seconds (``None``: no limit).
        Must not be called from ``on_error`` or ``on_delivery``.
        """
        if timeout is not None and (isinstance(timeout, bool) or not timeout >= 0):
            raise ValueError(f"timeout must be a number >= 0 or None, got {timeout!r}")
        if self._closed:
            return
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        self._wake.set()
        with self._progress:
            while self._queue or self._in_hand:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"flush did not finish within {timeout} s: "
                        f"{len(self._queue) + self._in_hand} events still queued"
                    )
                self._wake.set()
                self._progress.wait(min(remaining, 0.05))
        client = self._client
        if client is not None:
            remaining = None if timeout is None else max(0.0, deadline - time.monotonic())
            try:
                client.flush(timeout=remaining)
            except KafkaTimeoutError:
                raise TimeoutError(f"flush did not finish within {timeout} s: kafka-python still sending") from None

    def close(self, timeout: float = 30.0) -> None:
        """Flush for up to ``timeout`` seconds, then stop the thread and close the client.

        Events that could not be delivered in time fail (``on_error``). Later ``log_*`` calls
        raise ``RuntimeError``. Closing twice is a no-op.
        """
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0:
            raise ValueError(f"timeout must be a number >= 0, got {timeout!r}")
        if self._closed:
            return
        self._closing = True
        deadline = time.monotonic() + timeout
        try:
            self.flush(timeout)
        except TimeoutError as error:
            logger.warning("driftline producer: %s; closing anyway", error)
        self._stop.set()
        self._wake.set()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        self._fail_queued(RuntimeError("DriftlineProducer closed before the event was sent"))
        client = self._client
        if client is not None:
            client.close(timeout=max(0.0, deadline - time.monotonic()))
        self._closed = True

    def _enqueue(self, kind: int, event_id: str, fields: tuple[Any, ...]) -> None:
        if self._closing:
            raise RuntimeError("DriftlineProducer is closed")
        queue = self._queue
        if len(queue) >= self.max_queue and not self._wait_for_room(event_id):
            return
        queue.append((kind, event_id, fields))
        if self._idle:
            self._wake.set()

    def _serialize(self, kind: int, fields: tuple[Any, ...]) -> bytes:
        """Encode and decode one queued event with the full contract (sender thread)."""
        if kind == _PREDICTION:
            event = _prediction_event(fields)
            data = _encode(event, _PREDICTION_MAPPINGS)
            try:
                self._decoder.decode_prediction(data)
            except InvalidEvent as error:
                raise _pinpoint(error, event) from None
            return data
        data = _encode(_ground_truth_event(fields), ())
        self._decoder.decode_ground_truth(data)
        return data

    def _wait_for_room(self, event_id: str) -> bool:
        if self.block_on_full:
            deadline = time.monotonic() + self._max_block_s
            with self._progress:
                while len(self._queue) >= self.max_queue:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        with self._counts:
                            self._dropped += 1
                        raise BufferError(
                            f"driftline queue full ({self.max_queue} events) for max_block_ms="
                            f"{self._max_block_s * 1000:.0f}: event {event_id} not logged"
                        )
                    self._progress.wait(min(remaining, 0.05))
            return True
        with self._counts:
            self._dropped += 1
        self._report_error(BufferError(f"driftline queue full ({self.max_queue} events): event dropped"), event_id)
        return False

    def _run(self) -> None:
        queue, stop = self._queue, self._stop
        while True:
            try:
                if self._client is None and not stop.is_set():
                    if not self._connect():
                        self._fail_queued(self._connect_error, check=True)
                        stop.wait(_RECONNECT_BACKOFF_S)
                        self._wait_for_work()
                        continue
                if not queue:
                    if stop.is_set():
                        break
                    self._wait_for_work()
                    continue
                if self._client is None:
                    break
                self._send_batch()
            except Exception:
                logger.exception("driftline producer: unexpected error in the sender thread")
                stop.wait(_RECONNECT_BACKOFF_S)

    def _wait_for_work(self) -> None:
        self._idle = True
        while not self._queue and not self._stop.is_set():
            self._wake.wait(0.1)
            self._wake.clear()
        self._idle = False

    def _connect(self) -> bool:
        try:
            self._client = KafkaProducer(**self._config)
        except Exception as error:
            self._connect_error = error
            self._log_failure("cannot create the Kafka client for %s: %r", self.bootstrap_servers, error)
            return False
        return True

    def _send_batch(self) -> None:
        queue, topics = self._queue, self._topics
        send, serialize = self._client.send, self._serialize
        unavailable: dict[str, BaseException] = {}
        self._in_hand = n = min(len(queue), _BATCH_EVENTS)
        try:
            for _ in range(n):
                kind, event_id, fields = queue.popleft()
                topic = topics[kind]
                try:
                    data = serialize(kind, fields)
                except Exception as error:
                    self._fail(error, event_id)
                    self._in_hand -= 1
                    continue
                if topic in unavailable:
                    self._fail(unavailable[topic], event_id)
                    self._in_hand -= 1
                    continue
                try:
                    future = send(topic, value=data, key=event_id.encode())
                except KafkaTimeoutError as error:
                    # send() waits max_block_ms per event for metadata: one wait per batch and topic.
                    unavailable[topic] = error
                    self._fail(error, event_id)
                except Exception as error:
                    self._fail(error, event_id)
                else:
                    self._sent += 1
                    future.add_callback(self._delivered_cb, event_id)
                    future.add_errback(self._failed_cb, event_id)
                self._in_hand -= 1
        finally:
            self._in_hand = 0
            with self._progress:
                self._progress.notify_all()

    def _fail_queued(self, error: BaseException | None, check: bool = False) -> None:
        """Fail every queued event with ``error``; with ``check``, an event that breaks the
        contract fails with that reason instead, which is the one to fix."""
        error = error or RuntimeError("no Kafka client")
        while True:
            try:
                kind, event_id, fields = self._queue.popleft()
            except IndexError:
                break
            reason = error
            if check:
                try:
                    self._serialize(kind, fields)
                except Exception as invalid:
                    reason = invalid
            self._fail(reason, event_id)
        with self._progress:
            self._progress.notify_all()

    def _delivered_cb(self, event_id: str, metadata: Any) -> None:
        # Usually kafka-python's I/O thread, but the sender thread when the future was already done.
        with self._counts:
            self._delivered += 1
        if self.on_delivery is not None:
            try:
                self.on_delivery(metadata, event_id)
            except Exception:
                logger.exception("driftline producer: on_delivery raised for event %s", event_id)

    def _failed_cb(self, event_id: str, error: BaseException) -> None:
        self._fail(error, event_id)

    def _fail(self, error: BaseException, event_id: str) -> None:
        with self._counts:
            self._failed += 1
        self._report_error(error, event_id)

    def _report_error(self, error: BaseException, event_id: str) -> None:
        if self.on_error is None:
            self._log_failure("event %s not delivered: %r", event_id, error)
            return
        try:
            self.on_error(error, event_id)
        except Exception:
            logger.exception("driftline producer: on_error raised for event %s", event_id)

    def _log_failure(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last_log < _LOG_EVERY_S:
            self._unlogged += 1
            return
        suffix = f" ({self._unlogged} similar messages suppressed)" if self._unlogged else ""
        self._last_log, self._unlogged = now, 0
        logger.warning("driftline producer: " + message + suffix, *args)
