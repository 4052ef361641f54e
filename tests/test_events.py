"""The event contract: every rejection names its reason, field, expectation and value."""

from __future__ import annotations

import math

import orjson
import pytest

from driftline.config import parse_spec
from driftline.events import Alert, EventDecoder, InvalidEvent, Limits, encode

SPEC = parse_spec({
    "model": "credit",
    "task": "binary",
    "features": [{"name": "income", "kind": "numeric"}, {"name": "region", "kind": "categorical"}],
    "reference": {"path": "ref.parquet"},
})
NOW = 1_767_571_200_000


def prediction(**overrides):
    event = {
        "schema_version": 1, "event_id": "e-1", "model": "credit", "version": "v1", "ts": NOW - 1000,
        "features": {"income": 52_000.5, "region": "north"}, "prediction": 1, "score": 0.8,
    }
    event.update(overrides)
    return encode(event)


@pytest.fixture
def decoder():
    return EventDecoder([SPEC], Limits(max_event_bytes=2048), now_ms=lambda: NOW)


def rejection(decoder, data, kind="prediction"):
    decode = decoder.decode_prediction if kind == "prediction" else decoder.decode_ground_truth
    with pytest.raises(InvalidEvent) as info:
        decode(data)
    return info.value.rejection


def test_valid_prediction_round_trips(decoder):
    event = decoder.decode_prediction(prediction())
    assert (event.model, event.event_id, event.features.income, event.features.region) == ("credit", "e-1", 52_000.5, "north")
    assert orjson.loads(encode(event))["features"] == {"income": 52_000.5, "region": "north"}


def test_missing_feature_is_null_and_unknown_feature_ignored(decoder):
    event = decoder.decode_prediction(prediction(features={"zip": "x"}))
    assert event.features.income is None and event.features.region is None


@pytest.mark.parametrize(
    ("data", "code", "field", "expected", "got"),
    [
        (b"{not json", "invalid_json", "", "a JSON object", None),
        (b"[1, 2]", "wrong_type", "", "object", "array"),
        (prediction(event_id=None), "wrong_type", "event_id", "str", "null"),
        (prediction(ts="yesterday"), "wrong_type", "ts", "int", "str"),
        (prediction(features={"income": "a lot"}), "wrong_type", "features.income", "bool | float or null", "str"),
        (prediction(prediction=2), "invalid_value", "prediction", "a declared class label", "2"),
        (prediction(score=1.5), "out_of_range", "score", "float <= 1.0", None),
        (prediction(model="fraud"), "unknown_model", "model", "a model with a loaded spec", "'fraud'"),
        (prediction(ts=NOW + 3_600_000), "future_timestamp", "ts", None, str(NOW + 3_600_000)),
        (prediction(ts=5), "implausible_timestamp", "ts", None, "5"),
        (prediction(schema_version=2), "unsupported_schema_version", "schema_version", "1", None),
        (prediction(event_id=""), "invalid_value", "event_id", "1 to 256 characters", None),
        (prediction(features={"income": "x" * 3000}), "oversize", "", "<= 2048 bytes", None),
    ],
)
def test_rejections_name_reason_field_expected_and_got(decoder, data, code, field, expected, got):
    r = rejection(decoder, data)
    assert (r.code, r.field) == (code, field)
    if expected is not None:
        assert r.expected == expected
    if got is not None:
        assert r.got == got
    assert code in str(r)


def test_missing_field(decoder):
    event = orjson.loads(prediction())
    del event["version"]
    r = rejection(decoder, orjson.dumps(event))
    assert (r.code, r.field) == ("missing_field", "version")


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_non_finite_numbers(decoder, literal):
    data = prediction().replace(b"52000.5", literal)
    assert rejection(decoder, data).code == "non_finite"


def test_ground_truth_label_must_be_a_class(decoder):
    good = encode({"event_id": "e-1", "model": "credit", "ts": NOW, "label": 0, "source": "chargeback"})
    assert decoder.decode_ground_truth(good).label == 0
    bad = encode({"event_id": "e-1", "model": "credit", "ts": NOW, "label": "yes"})
    r = rejection(decoder, bad, "ground_truth")
    assert (r.code, r.field) == ("wrong_type", "label")


def test_generic_decoder_accepts_any_model():
    event = EventDecoder(now_ms=lambda: NOW).decode_prediction(prediction(model="anything"))
    assert event.model == "anything" and event.features == {"income": 52_000.5, "region": "north"}


def test_encode_serialises_numpy_scalars():
    import numpy as np

    data = encode({"score": np.float32(0.25), "n": np.int64(3)})
    assert orjson.loads(data) == {"score": 0.25, "n": 3}


def test_alert_event_encodes():
    alert = Alert(alert_id="a", model="m", version="v", rule="r", severity="warning", status="open",
                  window_start=0, window_end=1, metric="psi", value=0.3, threshold=0.2, p_value=None,
                  n=10, message="x", fired_at=2)
    assert orjson.loads(encode(alert))["status"] == "open"


@pytest.mark.parametrize(("kwargs", "name"), [({"max_event_bytes": 1}, "max_event_bytes"), ({"max_future_ms": -1}, "max_future_ms")])
def test_limits_validate(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Limits(**kwargs)


def test_nan_is_never_accepted_as_a_number(decoder):
    assert not any(math.isnan(v) for v in [decoder.decode_prediction(prediction()).features.income])
