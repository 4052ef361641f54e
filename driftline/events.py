"""The event contract: prediction, ground-truth and alert events.

Events travel as JSON objects, one per Kafka message or JSON Lines row. Producers encode with
:func:`encode` (orjson: fast, and it serialises numpy scalars that scoring code hands over).
Consumers decode with an :class:`EventDecoder`, which validates while it decodes and, for a
model it knows, checks the features, prediction and label against that model's spec.

Every rejection is a :class:`Rejection` that names the reason code, the field, what was expected
and what was received, so a dead-letter row tells an engineer exactly what to fix.

Examples
--------
>>> decoder = EventDecoder()
>>> event = decoder.decode_prediction(encode({
...     "event_id": "e-1", "model": "credit", "version": "v3", "ts": 1767571200000,
...     "features": {"age": 41, "region": "north"}, "prediction": 1, "score": 0.82}))
>>> event.event_id, event.model, event.score
('e-1', 'credit', 0.82)
>>> decoder.decode_prediction(b'{"event_id": 7}')
Traceback (most recent call last):
...
driftline.events.InvalidEvent: wrong_type at event_id: expected str, got int

"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

import msgspec
import orjson

if TYPE_CHECKING:
    from driftline.config import ModelSpec

SCHEMA_VERSION = 1
MIN_TS_MS = 946_684_800_000  # 2000-01-01T00:00:00Z: older event times are clock bugs, not data.

Scalar = Union[int, float, str, bool]
FeatureValue = Union[int, float, str, bool, None]

ROLES = ("champion", "challenger")
ALERT_STATUSES = ("open", "update", "resolved")


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an event was refused: a reason code, the field path, what was expected, what came."""

    code: str
    field: str = ""
    expected: str = ""
    got: str = ""

    def __str__(self) -> str:
        where = f" at {self.field}" if self.field else ""
        detail = ""
        if self.expected or self.got:
            detail = f": expected {self.expected or '?'}, got {self.got or '?'}"
        return f"{self.code}{where}{detail}"


class InvalidEvent(ValueError):
    """Raised when an event breaks the contract; ``.rejection`` holds the structured reason."""

    def __init__(self, rejection: Rejection):
        super().__init__(str(rejection))
        self.rejection = rejection


class _Event(msgspec.Struct, gc=False, kw_only=True):
    pass


class Prediction(_Event):
    """A prediction as any producer may send it (features untyped). Model-specific decoders
    derive a typed variant from the model spec, where ``model`` is the decoding tag."""

    model: str
    event_id: str
    version: str
    ts: int
    features: dict[str, FeatureValue]
    prediction: Scalar
    score: float | None = None
    probabilities: dict[str, float] | None = None
    action: str = ""
    explanation: dict[str, float] | None = None
    role: str = "champion"
    host: str = ""
    latency_ms: float | None = None
    entity_id: str = ""
    schema_version: Literal[1] = 1


class GroundTruth(_Event):
    """The truth for one prediction, matched on ``event_id``; ``ts`` is when it became known."""

    model: str
    event_id: str
    ts: int
    label: Scalar
    source: str = ""
    schema_version: Literal[1] = 1


class Alert(msgspec.Struct, kw_only=True):
    """One state of an alert, as published on the alerts topic and stored in the ``alerts`` table.

    ``alert_id`` is stable across the states of one alert (open, update, resolved); ``revision``
    counts them (0 for the open state) and ``fired_at`` increases with it, so storing a state
    twice overwrites it and the latest state wins. ``fired_at`` is event time: the end of the
    window whose result produced the state. For drift rules ``p_value`` is the raw p-value of
    the significance test behind the alert, ``p_adjusted`` its Benjamini–Hochberg adjustment over
    the window's family of ``family_size`` tests.
    """

    alert_id: str
    model: str
    version: str
    rule: str
    severity: Literal["info", "warning", "critical"]
    status: Literal["open", "update", "resolved"]
    window_start: int
    window_end: int
    metric: str
    value: float
    threshold: float | None
    p_value: float | None
    n: int
    message: str
    fired_at: int
    feature: str = ""
    segment: str = ""
    p_adjusted: float | None = None
    family_size: int | None = None
    revision: int = 0
    retrain: bool = False
    schema_version: Literal[1] = 1


class RetrainRequest(msgspec.Struct, kw_only=True):
    """A request to retrain a model, published on ``driftline.retrain`` when an alert of a rule
    marked ``retrain: true`` opens.

    ``windows`` are the ``[start, end]`` (ms) of the consecutive windows that opened the alert;
    ``data_from`` / ``data_to`` span them (prediction event time): the data that showed the
    change. ``request_id`` is derived from ``alert_id``, so a replay sends the same request.
    """

    request_id: str
    alert_id: str
    model: str
    version: str
    rule: str
    metric: str
    feature: str
    segment: str
    value: float
    threshold: float | None
    windows: list[list[int]]
    data_from: int
    data_to: int
    message: str
    requested_at: int
    schema_version: Literal[1] = 1


def encode(event: dict[str, Any] | msgspec.Struct) -> bytes:
    """Encode an event as JSON bytes (orjson for dicts, so numpy scalars serialise)."""
    if isinstance(event, msgspec.Struct):
        return msgspec.json.encode(event)
    return orjson.dumps(event, option=orjson.OPT_SERIALIZE_NUMPY)


def _typed_class(base: type[_Event], spec: ModelSpec, fields: list[tuple[str, Any]]) -> type:
    inherited = [(f, base.__annotations__[f]) for f in base.__struct_fields__ if f != "model"]
    defaults = dict(zip(base.__struct_fields__[-len(base.__struct_defaults__):], base.__struct_defaults__))
    own = {name for name, *_ in fields}
    merged = fields + [
        (name, kind, defaults[name]) if name in defaults else (name, kind)
        for name, kind in inherited
        if name not in own
    ]
    return msgspec.defstruct(
        f"{spec.model}{base.__name__}",
        merged,
        kw_only=True,
        tag_field="model",
        tag=spec.model,
        namespace={"model": spec.model, "__doc__": base.__doc__},
        gc=False,
    )


def _typed_classes(spec: ModelSpec) -> tuple[type[Prediction], type[GroundTruth]]:
    numeric: Any = Union[float, bool, None]
    categorical: Any = Union[str, int, bool, None]
    features = msgspec.defstruct(
        f"{spec.model}Features",
        [(f.name, numeric if f.kind == "numeric" else categorical, None) for f in spec.features],
        gc=False,
    )
    if spec.task == "regression":
        target: Any = float
    else:
        target = Literal[tuple(spec.class_labels)]  # type: ignore[misc]
    probability: Any = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
    prediction = _typed_class(
        Prediction,
        spec,
        [
            ("features", features),
            ("prediction", target),
            ("score", Union[probability, None], None),
            ("probabilities", Union[dict[str, probability], None], None),
        ],
    )
    ground_truth = _typed_class(GroundTruth, spec, [("label", target)])
    return prediction, ground_truth


_AT = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_EXPECTED = re.compile(r"^Expected `(?P<expected>[^`]+)`(?P<bound>[^,]*)(?:, got `(?P<got>[^`]+)`)?")
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`")
_INVALID = re.compile(r"^Invalid (?:enum )?value (?P<got>.+)$")


def _describe(error: msgspec.ValidationError, root: str) -> Rejection:
    text = str(error)
    path = ""
    if (at := _AT.search(text)) is not None:
        path = at.group("path")
        text = text[: at.start()]
    if (m := _MISSING.match(text)) is not None:
        return Rejection("missing_field", ".".join(p for p in (path, m.group("field")) if p), "a value", "nothing")
    if path == "model" and (m := _INVALID.match(text)) is not None:
        return Rejection("unknown_model", "model", "a model with a loaded spec", m.group("got"))
    if path == "schema_version":
        return Rejection("unsupported_schema_version", path, str(SCHEMA_VERSION), text)
    if (m := _EXPECTED.match(text)) is not None:
        expected = (m.group("expected") + m.group("bound")).replace(" | null", " or null")
        if m.group("got") is None:
            return Rejection("out_of_range", path, expected, "a value outside it")
        return Rejection("wrong_type", path, expected, m.group("got"))
    if (m := _INVALID.match(text)) is not None:
        return Rejection("invalid_value", path, "a declared class label", m.group("got"))
    if text.startswith("Number out of range"):
        return Rejection("non_finite", path, "a finite number", "a number beyond float64")
    return Rejection("invalid", path or root, "", text)


_NON_FINITE = re.compile(rb"-?(NaN|Infinity|inf|nan)\b")


def _describe_malformed(error: msgspec.DecodeError, data: bytes) -> Rejection:
    if _NON_FINITE.search(data) is not None:
        return Rejection("non_finite", "", "a finite JSON number", "NaN or Infinity")
    return Rejection("invalid_json", "", "a JSON object", str(error).removeprefix("JSON is malformed: "))


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds an event must respect beyond its types.

    Parameters
    ----------
    max_event_bytes
        Larger payloads are refused before decoding.
    max_future_ms
        How far an event's ``ts`` may be ahead of the wall clock (clock skew allowance).
    """

    max_event_bytes: int = 64 * 1024
    max_future_ms: int = 5 * 60 * 1000

    def __post_init__(self) -> None:
        if not isinstance(self.max_event_bytes, int) or self.max_event_bytes < 64:
            raise ValueError(f"max_event_bytes must be an int >= 64, got {self.max_event_bytes!r}")
        if not isinstance(self.max_future_ms, int) or self.max_future_ms < 0:
            raise ValueError(f"max_future_ms must be an int >= 0, got {self.max_future_ms!r}")


def check_event_id(event_id: str) -> None:
    """Raise :class:`InvalidEvent` unless ``event_id`` has 1 to 256 characters.

    >>> check_event_id("a1")
    >>> check_event_id("")
    Traceback (most recent call last):
    ...
    driftline.events.InvalidEvent: invalid_value at event_id: expected 1 to 256 characters, got ''
    """
    if not 0 < len(event_id) <= 256:
        raise InvalidEvent(Rejection("invalid_value", "event_id", "1 to 256 characters", repr(event_id[:40])))


def check_ts(ts: int, now_ms: int, max_future_ms: int) -> None:
    """Raise :class:`InvalidEvent` for an event time before 2000 or beyond ``now_ms + max_future_ms``."""
    if ts < MIN_TS_MS:
        raise InvalidEvent(Rejection("implausible_timestamp", "ts", f">= {MIN_TS_MS} (2000-01-01, ms)", str(ts)))
    horizon = now_ms + max_future_ms
    if ts > horizon:
        raise InvalidEvent(Rejection("future_timestamp", "ts", f"<= {horizon} (now + {max_future_ms} ms)", str(ts)))


class EventDecoder:
    """Decode and validate events.

    Without specs it checks the generic contract (any model). With specs, events of other models
    are refused as ``unknown_model`` and each model's features, prediction and label are checked
    against its spec: numeric features take numbers, booleans or null; categorical features take
    strings, integers (codes), booleans or null; classification predictions and labels must be one of
    the spec's classes, and a score must lie in [0, 1].

    Parameters
    ----------
    specs
        Model specs; ``None`` accepts every model with the generic contract.
    limits
        Size and clock bounds.
    now_ms
        Wall clock in ms; injected in tests and replays of old data (``None`` = ``time.time``).
    """

    def __init__(
        self,
        specs: list[ModelSpec] | None = None,
        limits: Limits | None = None,
        now_ms: Any = None,
    ):
        self.limits = limits or Limits()
        self._now_ms = now_ms or (lambda: int(time.time() * 1000))
        if specs:
            typed = [_typed_classes(s) for s in specs]
            predictions: Any = Union[tuple(p for p, _ in typed)]
            truths: Any = Union[tuple(g for _, g in typed)]
        else:
            predictions, truths = Prediction, GroundTruth
        self._predictions = msgspec.json.Decoder(predictions)
        self._truths = msgspec.json.Decoder(truths)

    def now_ms(self) -> int:
        """The decoder's wall clock, in ms."""
        return self._now_ms()

    def decode_prediction(self, data: bytes) -> Prediction:
        """Decode one prediction event, raising :class:`InvalidEvent` with the reason."""
        return self._decode(self._predictions, data, "prediction")  # type: ignore[return-value]

    def decode_ground_truth(self, data: bytes) -> GroundTruth:
        """Decode one ground-truth event, raising :class:`InvalidEvent` with the reason."""
        return self._decode(self._truths, data, "ground_truth")  # type: ignore[return-value]

    def decode_ground_truths(self, messages: list[bytes]) -> tuple[list[GroundTruth], list[int], list[tuple[int, Rejection]]]:
        """Decode a batch: ``(events, their positions, [(position, rejection)])``.

        The same outcome as :meth:`decode_ground_truth` on each message: valid events are
        checked against one reading of the clock, and every other message is decided by
        :meth:`decode_ground_truth` itself, which gives the reason.
        """
        events: list[GroundTruth] = []
        positions: list[int] = []
        rejected: list[tuple[int, Rejection]] = []
        decode = self._truths.decode
        limit = self.limits.max_event_bytes
        horizon = self._now_ms() + self.limits.max_future_ms
        for i, data in enumerate(messages):
            try:
                event = decode(data) if len(data) <= limit else None
            except msgspec.DecodeError:  # ValidationError included
                event = None
            if event is None or not (0 < len(event.event_id) <= 256 and MIN_TS_MS <= event.ts <= horizon):
                try:
                    event = self.decode_ground_truth(data)
                except InvalidEvent as error:
                    rejected.append((i, error.rejection))
                    continue
            events.append(event)
            positions.append(i)
        return events, positions, rejected

    def _decode(self, decoder: msgspec.json.Decoder, data: bytes, root: str) -> msgspec.Struct:
        if len(data) > self.limits.max_event_bytes:
            raise InvalidEvent(
                Rejection("oversize", "", f"<= {self.limits.max_event_bytes} bytes", f"{len(data)} bytes")
            )
        try:
            event = decoder.decode(data)
        except msgspec.ValidationError as error:
            raise InvalidEvent(_describe(error, root)) from None
        except msgspec.DecodeError as error:
            raise InvalidEvent(_describe_malformed(error, data)) from None
        self._check(event)
        return event

    def _check(self, event: Any) -> None:
        check_event_id(event.event_id)
        check_ts(event.ts, self._now_ms(), self.limits.max_future_ms)
