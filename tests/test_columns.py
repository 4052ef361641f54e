"""The compiled prediction scanner against msgspec: same columns, same rejections, on any input."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from driftline.config import parse_spec
from driftline.events import EventDecoder, InvalidEvent, Limits
from driftline.streams import scan
from driftline.streams.columns import PredictionColumns, PredictionDecoder

NOW = 1_800_000_000_000
T0 = 1_767_571_200_000
SPECS = [
    parse_spec({
        "model": "m", "task": "binary", "reference": {"path": "unused.csv"},
        "features": [{"name": "x", "kind": "numeric"}, {"name": "y", "kind": "numeric"},
                     {"name": "color", "kind": "categorical"}, {"name": "code", "kind": "categorical"}],
        "segments": ["color"],
    }),
    parse_spec({
        "model": "s", "task": "multiclass", "classes": ["a", "b", "c"], "reference": {"path": "unused.csv"},
        "features": [{"name": "x", "kind": "categorical"}, {"name": "z", "kind": "numeric"}],
    }),
    parse_spec({
        "model": "r", "task": "regression", "reference": {"path": "unused.csv"},
        "features": [{"name": "z", "kind": "numeric"}],
    }),
]
BY_MODEL = {s.model: s for s in SPECS}


def decoders(max_bytes: int = 64 * 1024) -> tuple[PredictionDecoder, EventDecoder]:
    slow = EventDecoder(SPECS, Limits(max_event_bytes=max_bytes), now_ms=lambda: NOW)
    return PredictionDecoder(SPECS, slow), slow


def reference_decode(slow: EventDecoder, messages: list[bytes]) -> tuple[dict[str, PredictionColumns], list]:
    """msgspec alone, one message at a time: what the fast path must reproduce."""
    events: dict[str, tuple[list, list]] = {}
    rejected = []
    for i, data in enumerate(messages):
        try:
            event = slow.decode_prediction(data)
        except InvalidEvent as error:
            rejected.append((i, error.rejection))
            continue
        got, at = events.setdefault(event.model, ([], []))
        got.append(event)
        at.append(i)
    return {m: PredictionColumns.from_events(BY_MODEL[m], got, at) for m, (got, at) in events.items()}, rejected


def assert_same(fast: PredictionColumns, slow: PredictionColumns) -> None:
    for name in PredictionColumns.__slots__[1:]:
        a, b = getattr(fast, name), getattr(slow, name)
        if isinstance(a, np.ndarray) and a.dtype.kind == "f":
            assert a.dtype == b.dtype and a.shape == b.shape, name
            assert np.array_equal(a, b, equal_nan=True), name
            assert np.array_equal(np.signbit(a), np.signbit(b)), name  # -0.0 stays -0.0
        else:
            left, right = list(np.asarray(a, dtype=object).ravel()), list(np.asarray(b, dtype=object).ravel())
            assert [(type(v), v) for v in left] == [(type(v), v) for v in right], name


def check(messages: list[bytes], max_bytes: int = 64 * 1024) -> PredictionDecoder:
    fast_decoder, slow_decoder = decoders(max_bytes)
    fast, fast_rejected = fast_decoder.decode(messages)
    slow, slow_rejected = reference_decode(slow_decoder, messages)
    assert sorted(fast_rejected, key=lambda r: r[0]) == slow_rejected
    assert sorted(fast) == sorted(slow)
    for model in fast:
        assert_same(fast[model], slow[model])
    return fast_decoder


NUMBER_TEXT = st.from_regex(r"\A-?(0|[1-9][0-9]{0,21})(\.[0-9]{1,21})?([eE][+-]?[0-9]{1,3})?\Z")
TEXT = st.one_of(
    st.sampled_from(["red", "green", "north east", "", "a\"b", "caf\u00e9", "tab\there", "\\", "1", "true", "null"]),
    st.text(max_size=8),
)
SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False), TEXT,
)
VALUE = st.one_of(SCALAR, st.lists(SCALAR, max_size=2), st.dictionaries(TEXT, SCALAR, max_size=2))


@st.composite
def raw_number(draw) -> "Raw":
    return Raw(draw(NUMBER_TEXT))


class Raw(str):
    """A JSON number written exactly as this text."""


@st.composite
def event(draw) -> dict:
    model = draw(st.sampled_from(["m", "m", "m", "s", "r", "unknown"]))
    features: dict = {}
    for name in draw(st.lists(st.sampled_from(["x", "y", "z", "color", "code", "extra"]), unique=True, max_size=6)):
        features[name] = draw(st.one_of(SCALAR, raw_number(), VALUE))
    payload = {
        "event_id": draw(st.one_of(st.sampled_from(["e-1", "e-2", "x" * 257, ""]), TEXT, st.integers(0, 5))),
        "model": model,
        "version": draw(st.one_of(st.sampled_from(["v1", "v2"]), SCALAR)),
        "ts": draw(st.one_of(st.integers(T0, T0 + 10**6), st.sampled_from([0, NOW + 10**9, T0 + 0.5]), SCALAR)),
        "features": draw(st.one_of(st.just(features), st.just(features), VALUE)),
        "prediction": draw(st.one_of(st.sampled_from([0, 1, 2, "a", "b", "z", True, 0.5, -0]), raw_number(), SCALAR)),
    }
    optional = {
        "score": st.one_of(st.none(), st.floats(-0.5, 1.5), raw_number(), SCALAR),
        "probabilities": st.one_of(st.none(), st.dictionaries(st.sampled_from(["a", "b"]), st.floats(0, 1), max_size=2), VALUE),
        "action": st.one_of(TEXT, SCALAR),
        "explanation": st.one_of(st.none(), st.dictionaries(TEXT, st.floats(-1, 1), max_size=2), VALUE),
        "role": st.one_of(st.sampled_from(["champion", "challenger"]), SCALAR),
        "host": TEXT,
        "latency_ms": st.one_of(st.none(), st.floats(0, 100), raw_number(), SCALAR),
        "entity_id": st.one_of(TEXT, SCALAR),
        "schema_version": st.one_of(st.just(1), st.sampled_from([2, 1.0, "1"])),
        "unknown_field": VALUE,
    }
    for name in draw(st.lists(st.sampled_from(sorted(optional)), unique=True, max_size=len(optional))):
        payload[name] = draw(optional[name])
    for name in draw(st.lists(st.sampled_from(sorted(payload)), unique=True, max_size=1)):
        if draw(st.booleans()):
            del payload[name]
    return payload


def dump(value, rnd: random.Random) -> str:
    """JSON text of ``value`` with random whitespace, key order and escaping."""
    space = rnd.choice(["", "", " ", "\n ", "\t"])
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        items = list(value.items())
        if rnd.random() < 0.2:
            rnd.shuffle(items)
        body = ("," + space).join(f"{dump(k, rnd)}{space}:{space}{dump(v, rnd)}" for k, v in items)
        return "{" + space + body + space + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(v, rnd) for v in value) + "]"
    return json.dumps(value, ensure_ascii=rnd.random() < 0.5)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(event(), min_size=1, max_size=12), st.integers(0, 2**32))
def test_the_fast_path_decodes_any_input_as_msgspec_does(events, seed):
    rnd = random.Random(seed)
    messages = [dump(e, rnd).encode() for e in events]
    if rnd.random() < 0.1:
        messages.append(messages[0][:-1])
    if rnd.random() < 0.1:
        messages.append(messages[0] + b" x")
    if rnd.random() < 0.1:
        messages.append(messages[0][:-1] + b', "ts": 1}')
    check(messages, max_bytes=rnd.choice([64 * 1024, 200]))


def check_numbers(numbers: list[str]) -> None:
    check([
        b'{"event_id":"e","model":"r","version":"v","ts":%d,"features":{"z":%s},"prediction":%s}'
        % (T0, text.encode(), text.encode())
        for text in numbers
    ])


@settings(max_examples=200, deadline=None)
@given(st.lists(NUMBER_TEXT, min_size=1, max_size=20))
def test_numbers_convert_bit_for_bit_as_msgspec_converts_them(numbers):
    check_numbers(numbers)


def test_hard_numbers_convert_bit_for_bit():
    rng = np.random.default_rng(7)
    numbers = ["9007199254740993", "9007199254740992", "0.1", "1e22", "1e23", "4.35", "-0", "-0.0", "1E+2",
               "0.000000000000000000000001234", "123456789012345678e-30", "2.2250738585072014e-308", "5e-324",
               "1.7976931348623157e308", "00", "1.", ".5", "1e", "+1", "0.30000000000000004"]
    for _ in range(3_000):
        mantissa = str(int(rng.integers(0, 10 ** int(rng.integers(1, 19)))))
        point = int(rng.integers(0, len(mantissa) + 1))
        whole, fraction = mantissa[:point] or "0", mantissa[point:]
        numbers.append(whole + ("." + fraction if fraction else "") + f"e{int(rng.integers(-40, 40))}")
    check_numbers(numbers)


def test_long_mantissas_convert_bit_for_bit_across_the_exponent_range():
    # Beyond Clinger's fast path the scanner decides a number by Eisel-Lemire, or defers it.
    rng = np.random.default_rng(11)
    doubles = rng.standard_normal(1_000) * 10.0 ** rng.integers(-310, 308, 1_000)
    numbers = [repr(float(x)) for x in doubles if np.isfinite(x)]
    for _ in range(2_000):
        digits = int(rng.integers(16, 19))
        mantissa = str(int(rng.integers(10 ** (digits - 1), 10 ** digits)))
        numbers.append(f"{mantissa[0]}.{mantissa[1:]}e{int(rng.integers(-345, 310))}")
    # Exactly halfway between two doubles (ties to even), and integers beyond 2**53.
    halfway = [str(2 ** 54 + 4 * k + 2) for k in range(50)]
    numbers += halfway + [f"{h[0]}.{h[1:]}e16" for h in halfway] + ["-" + str(2 ** 60 + 3), "123456789012345678"]
    check_numbers(numbers)


def test_seventeen_digit_numbers_are_decided_in_the_scanner():
    # Eisel-Lemire decides (nearly) every normal double's shortest repr without Python's float().
    rng = np.random.default_rng(5)
    texts = [repr(float(x)) for x in rng.standard_normal(500) * 10.0 ** rng.integers(-300, 300, 500)]
    texts += ["0.16005290581697668", "1e-320", "1e400"]
    decided = []
    for text in texts:
        buf = np.frombuffer(text.encode(), dtype=np.uint8)
        value = scan._beyond_fast_path(buf, 0, buf.size)
        decided.append(value == value)
        if value == value:
            assert value == float(text) and math.copysign(1.0, value) == math.copysign(1.0, float(text)), text
    assert decided[-2:] == [False, False]  # subnormal, beyond float64: left to float()
    assert sum(decided[:-2]) >= 0.99 * (len(texts) - 2)


def valid(i: int, **features) -> dict:
    return {"event_id": f"e-{i}", "model": "m", "version": "v1", "ts": T0 + i,
            "features": {"x": 0.25 * i, "y": -3, "color": "red", "code": 7, **features},
            "prediction": i % 2, "score": 0.5}


def test_compact_events_take_the_fast_path_and_escapes_do_not():
    plain = [orjson.dumps(valid(i)) for i in range(50)]
    # Shortest reprs of doubles often need 17 digits: their text is converted by float().
    plain += [orjson.dumps({**valid(50 + i, x=i / 3, y=2.0 ** -i * 1e-30), "score": 1 / (i + 3)}) for i in range(50)]
    decoder = check(plain)
    assert decoder.fallbacks == 0
    escaped = [orjson.dumps(valid(i, color="caf\u00e9")) for i in range(5)] + [b'{"event_id":"e\\u0041"}']
    decoder = check(plain + escaped)
    assert decoder.fallbacks == 6


def test_fast_path_values_and_defaults():
    fast, _ = decoders()
    columns, rejected = fast.decode([
        orjson.dumps(valid(1, x=True, y=None, code=False)),
        orjson.dumps({**valid(2), "role": "challenger", "host": "h1", "latency_ms": 3, "score": None}),
    ])
    assert rejected == []
    batch = columns["m"]
    assert batch.numeric.tolist()[0][0] == 1.0 and np.isnan(batch.numeric[0, 1])
    assert batch.categorical.tolist() == [["red", "false"], ["red", "7"]]
    assert batch.role.tolist() == ["champion", "challenger"]
    assert batch.host.tolist() == ["", "h1"]
    assert PredictionColumns.optional(batch.score) == [0.5, None]
    assert PredictionColumns.optional(batch.latency_ms) == [None, 3.0]
    assert [type(p) for p in batch.prediction] == [int, int]


@pytest.mark.parametrize("n", [0, 1, 5_000])
def test_batches_of_any_size(n):
    check([orjson.dumps(valid(i, color=f"c{i % 700}")) for i in range(n)])


def test_empty_strings_are_kept_apart_from_missing_values():
    check([orjson.dumps(valid(1, color="")), orjson.dumps({**valid(2), "action": ""})])


def test_a_key_that_extends_or_cuts_the_expected_one_is_another_key():
    """The scanner first compares the key after the previous one in place: a key that only
    starts like it (``models`` where ``model`` comes next, ``yy`` for ``y``) or is cut short
    (``mode``, ``colo``) must still be read as the key it is, on the fast path."""
    base = b'{"event_id":"e","model":"m","version":"v","ts":%d,"features":{"x":1.5,"y":2,"color":"red","code":"a"},"prediction":1}' % T0
    variants = [
        base.replace(b'"model":"m"', b'"models":"zz","model":"m"'),
        base.replace(b'"model":"m"', b'"mode":"zz","model":"m"'),
        base.replace(b'"ts":', b'"version2":"v","ts":'),
        base.replace(b'"ts":%d' % T0, b'"tsx":1,"ts":%d' % T0),
        base.replace(b'"y":2', b'"yy":7,"y":2'),
        base.replace(b'"y":2', b'"":7,"y":2'),
        base.replace(b'"color":"red"', b'"colo":"blue","color":"red"'),
        base.replace(b'"color":"red"', b'"colorx":"blue","color":"red"'),
        base.replace(b'"color":"red","code":"a"', b'"color":"red","code":"a","codes":"b"'),
    ]
    assert all(v != base for v in variants)
    decoder = check([base, *variants])
    assert decoder.fallbacks == 0
