"""A compiled scanner for the common shape of prediction events: a batch of messages to columns.

msgspec decodes and validates one prediction of 25 features in about 3–6 µs here, most of the
embedded pipeline's budget of 5 µs per event, and then every column has to be gathered back out
of the decoded objects. :func:`scan_predictions` reads a whole batch (the messages concatenated
in one ``uint8`` buffer) in one compiled pass and writes columns directly: numbers as float64,
strings as codes into a per-batch table of distinct strings, and a kind per value.

It is a fast path, not a second parser: it accepts only a strict subset of JSON, and every
message outside it is flagged for :class:`~driftline.events.EventDecoder` (msgspec), which then
accepts it or gives the precise rejection. A message is flagged when it holds

* a string with an escape, a control character or a non-ASCII byte;
* a number of more than 18 significant digits;
* a nested object or array anywhere but ``features`` (``probabilities``, ``explanation``
  other than ``null``), or in an unknown field;
* a repeated key, malformed JSON, or anything after the closing brace.

Numbers convert exactly. Within Clinger's fast path (a mantissa of at most 2**53 and a power
of ten up to 10**22, both exact in binary64) one IEEE multiplication or division is correctly
rounded. Beyond it (17 significant digits, as in the shortest repr of most doubles: what a
Python producer sends for any float it did not round) the scanner uses the Eisel-Lemire
algorithm (Lemire, "Number parsing at a gigabyte per second", 2021; Go's ``strconv`` and Rust's
``core`` parse floats with it): one 64 x 128-bit product with a truncated power of ten decides
the correctly rounded double, or says it cannot. Only then, and for subnormal or out-of-range
results, is the number *deferred*: its value is NaN and its position is listed, and the caller
converts its text with Python's correctly rounded ``float``. All give msgspec's value bit for
bit. (Deferring every 17-digit number made a prediction of 20 such features decode about four
times slower.)

Whether a value has the right *type* for its field is decided by the caller on the kinds this
scanner records, again sending every doubtful message to msgspec.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = [
    "TOP_FIELDS", "TEXT_FIELDS", "MISSING", "NULL", "TRUE", "FALSE", "INT", "FLOAT", "STRING",
    "gather", "key_table", "scan_predictions",
]

# Kinds of a scanned value.
MISSING, NULL, TRUE, FALSE, INT, FLOAT, STRING = 0, 1, 2, 3, 4, 5, 6

TOP_FIELDS = (
    "event_id", "model", "version", "ts", "features", "prediction", "score", "probabilities",
    "action", "explanation", "role", "host", "latency_ms", "entity_id", "schema_version",
)
# Top-level string fields interned into the batch's table of distinct strings, in the order of
# the ``texts`` output columns. ``entity_id``, about one new value per prediction, is returned as
# a span like ``event_id``: interned, it filled the table and took a cache miss per probe.
TEXT_FIELDS = ("model", "version", "role", "action", "host")
_F_EVENT_ID, _F_MODEL, _F_VERSION, _F_TS, _F_FEATURES, _F_PREDICTION, _F_SCORE, _F_PROBABILITIES = range(8)
_F_ACTION, _F_EXPLANATION, _F_ROLE, _F_HOST, _F_LATENCY, _F_ENTITY, _F_SCHEMA = range(8, 15)
_REQUIRED = (1 << _F_EVENT_ID) | (1 << _F_MODEL) | (1 << _F_VERSION) | (1 << _F_TS) | (1 << _F_FEATURES) | (1 << _F_PREDICTION)
_TEXT_COLUMN = np.array([-1, 0, 1, -1, -1, -1, -1, -1, 3, -1, 2, 4, -1, -1, -1], dtype=np.int64)

# The helpers the scanning loop calls per key, value or string take arrays but never allocate.
# Compiled without numba's reference counting (``_nrt``), a call to one no longer increfs and
# decrefs each array argument with an atomic instruction: those took about a third of the scan
# (``perf``: ``NRT_incref``/``NRT_decref``), now 4.2 -> 2.9 µs per 600-byte prediction, with
# the same compile time. Numba refuses to compile an allocation in such a function.
_leaf = numba.njit(cache=True, nogil=True, _nrt=False)

_POW10 = np.array([10.0 ** i for i in range(23)])
_MAX_EXACT = 2 ** 53

# Eisel-Lemire: 10**q for q in [_MIN_Q, _MAX_Q] as 128-bit mantissas, truncated (never rounded
# up) and normalised so that the top bit is set, split into high and low 64-bit words. Python's
# integers compute them exactly at import.
_MIN_Q, _MAX_Q = -348, 347


def _powers_of_ten() -> tuple[np.ndarray, np.ndarray]:
    mantissas = []
    for q in range(_MIN_Q, _MAX_Q + 1):
        if q >= 0:
            v = 10 ** q
            shift = 128 - v.bit_length()
            mantissas.append(v << shift if shift >= 0 else v >> -shift)
        else:
            d = 10 ** -q
            mantissas.append((1 << (127 + d.bit_length())) // d)
    mask = (1 << 64) - 1
    return (np.array([m >> 64 for m in mantissas], dtype=np.uint64),
            np.array([m & mask for m in mantissas], dtype=np.uint64))


_POW_HI, _POW_LO = _powers_of_ten()
# numba turns an operation between uint64 and a plain int literal into float64: every constant
# in the uint64 arithmetic below is a uint64.
_U0, _U1, _U3, _U9, _U32, _U53, _U63 = (np.uint64(v) for v in (0, 1, 3, 9, 32, 53, 63))
_LOW9 = np.uint64(0x1FF)
_LOW32 = np.uint64(0xFFFFFFFF)
_TOP = np.uint64(1 << 63)


def key_table(names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(name bytes, offsets, hash table)`` for :func:`_lookup` (open addressing, load <= 1/2)."""
    encoded = [n.encode() for n in names]
    blob = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy() if encoded else np.empty(0, np.uint8)
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(e) for e in encoded])
    size = 8
    while size < 2 * max(len(encoded), 1):
        size *= 2
    table = np.full(size, -1, dtype=np.int64)
    for index, e in enumerate(encoded):
        slot = _hash(np.frombuffer(e, dtype=np.uint8), 0, len(e)) & (size - 1)
        while table[slot] >= 0:
            slot = (slot + 1) & (size - 1)
        table[slot] = index
    return blob, offsets, table


@_leaf
def _hash(buf: np.ndarray, start: int, end: int) -> int:
    h = np.uint64(14695981039346656037)
    for p in range(start, end):
        h = (h ^ np.uint64(buf[p])) * np.uint64(1099511628211)
    return int(h >> np.uint64(1))


@_leaf
def _same(buf: np.ndarray, start: int, end: int, other: np.ndarray, ostart: int, oend: int) -> bool:
    if end - start != oend - ostart:
        return False
    for k in range(end - start):
        if buf[start + k] != other[ostart + k]:
            return False
    return True


@_leaf
def _lookup(buf, start, end, names, offsets, table) -> int:
    mask = table.size - 1
    slot = _hash(buf, start, end) & mask
    while True:
        index = table[slot]
        if index < 0:
            return -1
        if _same(buf, start, end, names, offsets[index], offsets[index + 1]):
            return index
        slot = (slot + 1) & mask


# Only the smallest helpers are inlined in numba's IR (``inline="always"``): inlining the number
# and scalar readers as well decodes about 15 % faster but triples the first compilation (about
# 35 s here instead of 15 s), which a fresh install pays in its first ``driftline demo``.
@numba.njit(cache=True, nogil=True, inline="always")
def _skip_ws(buf, p, end) -> int:
    # Written as one loop condition: the form with a temporary and a chain of ``and`` compiled
    # to code about five times slower here.
    while p < end and buf[p] <= 32 and (buf[p] == 32 or buf[p] == 10 or buf[p] == 13 or buf[p] == 9):
        p += 1
    return p


@numba.njit(cache=True, nogil=True, inline="always")
def _string_end(buf, p, end) -> int:
    """Index of the closing quote of the string whose content starts at ``p``; -1 off the fast path."""
    while p < end:
        c = buf[p]
        if c == 34:
            return p
        if c == 92 or c < 32 or c >= 128:
            return -1
        p += 1
    return -1


@_leaf
def _key(buf, p, end, names, offsets, table):
    """``(slot or -1, closing quote or -1)`` of the key whose content starts at ``p``."""
    close = _string_end(buf, p, end)
    if close < 0:
        return -1, -1
    return _lookup(buf, p, close, names, offsets, table), close


@_leaf
def _number(buf, p, end):
    """Scan a JSON number at ``p``: ``(next index or -1, kind, float value, int value)``."""
    negative = False
    if p < end and buf[p] == 45:
        negative = True
        p += 1
    if p >= end:
        return -1, 0, 0.0, 0
    mantissa = 0
    digits = 0
    c = buf[p]
    if c == 48:
        p += 1
        if p < end and 48 <= buf[p] <= 57:
            return -1, 0, 0.0, 0
    elif 49 <= c <= 57:
        while p < end and 48 <= buf[p] <= 57:
            mantissa = mantissa * 10 + (buf[p] - 48)
            digits += 1
            p += 1
            if digits > 18:
                return -1, 0, 0.0, 0
    else:
        return -1, 0, 0.0, 0
    exponent = 0
    is_float = False
    if p < end and buf[p] == 46:
        is_float = True
        p += 1
        start = p
        while p < end and 48 <= buf[p] <= 57:
            if mantissa == 0 and buf[p] == 48:
                exponent -= 1
            else:
                mantissa = mantissa * 10 + (buf[p] - 48)
                digits += 1
                exponent -= 1
                if digits > 18:
                    return -1, 0, 0.0, 0
            p += 1
        if p == start:
            return -1, 0, 0.0, 0
    if p < end and (buf[p] == 101 or buf[p] == 69):
        is_float = True
        p += 1
        sign = 1
        if p < end and (buf[p] == 43 or buf[p] == 45):
            sign = -1 if buf[p] == 45 else 1
            p += 1
        start = p
        e = 0
        while p < end and 48 <= buf[p] <= 57:
            e = e * 10 + (buf[p] - 48)
            if e > 1000:
                return -1, 0, 0.0, 0
            p += 1
        if p == start:
            return -1, 0, 0.0, 0
        exponent += sign * e
    if not is_float:
        if negative and mantissa == 0:
            return -1, 0, 0.0, 0  # "-0": an int 0 to msgspec, but not the text of that int.
        value = -mantissa if negative else mantissa
        return p, INT, float(value) if mantissa <= _MAX_EXACT else np.nan, value
    if mantissa == 0:
        return p, FLOAT, -0.0 if negative else 0.0, 0
    if mantissa > _MAX_EXACT or exponent < -22 or exponent > 22:
        return p, FLOAT, np.nan, 0
    x = float(mantissa)
    if exponent >= 0:
        x = x * _POW10[exponent]
    else:
        x = x / _POW10[-exponent]
    return p, FLOAT, -x if negative else x, 0


@_leaf
def _mul64(a, b):
    """The 128-bit product of two uint64, as ``(high, low)`` words (numba has no 128-bit integer)."""
    a_lo, a_hi = a & _LOW32, a >> _U32
    b_lo, b_hi = b & _LOW32, b >> _U32
    p0, p1, p2 = a_lo * b_lo, a_lo * b_hi, a_hi * b_lo
    mid = (p0 >> _U32) + (p1 & _LOW32) + (p2 & _LOW32)
    return a_hi * b_hi + (p1 >> _U32) + (p2 >> _U32) + (mid >> _U32), (mid << _U32) | (p0 & _LOW32)


@_leaf
def _eisel_lemire(mantissa, exponent):
    """``(mantissa * 10**exponent correctly rounded, True)`` for ``0 < mantissa < 2**63``, or
    ``(0.0, False)`` when the product cannot decide it or the result is subnormal or infinite."""
    if mantissa <= 0 or exponent < _MIN_Q or exponent > _MAX_Q:
        return 0.0, False
    man = np.uint64(mantissa)
    zeros = 0
    while man & _TOP == _U0:
        man = man << _U1
        zeros += 1
    exp2 = ((217706 * exponent) >> 16) + 64 + 1023 - zeros
    row = exponent - _MIN_Q
    x_hi, x_lo = _mul64(man, _POW_HI[row])
    if x_hi & _LOW9 == _LOW9 and x_lo + man < man:
        # The truncated power may have cost a carry: add the product with its low word.
        y_hi, y_lo = _mul64(man, _POW_LO[row])
        merged_hi, merged_lo = x_hi, x_lo + y_hi
        if merged_lo < x_lo:
            merged_hi += _U1
        if merged_hi & _LOW9 == _LOW9 and merged_lo + _U1 == _U0 and y_lo + man < man:
            return 0.0, False
        x_hi, x_lo = merged_hi, merged_lo
    msb = x_hi >> _U63
    bits = x_hi >> (msb + _U9)
    exp2 -= 1 - int(msb)
    if x_lo == _U0 and x_hi & _LOW9 == _U0 and bits & _U3 == _U1:
        return 0.0, False  # exactly halfway between two doubles
    bits = (bits + (bits & _U1)) >> _U1
    if bits >> _U53 > _U0:
        bits = bits >> _U1
        exp2 += 1
    if exp2 <= 0 or exp2 >= 0x7FF:
        return 0.0, False
    return math.ldexp(float(bits), exp2 - 1075), True


@_leaf
def _beyond_fast_path(buf, start, end) -> float:
    """The value of the number ``buf[start:end]`` that :func:`_number` left undecided (NaN), by
    Eisel-Lemire; NaN again when that cannot decide it either.

    A separate pass over the digits, not a branch of :func:`_number`: there it made the scan of
    ordinary numbers about 8 % slower.
    """
    p = start
    negative = buf[p] == 45
    if negative:
        p += 1
    mantissa = 0
    exponent = 0
    fraction = False
    while p < end and buf[p] != 101 and buf[p] != 69:
        c = buf[p]
        if c == 46:
            fraction = True
        else:
            mantissa = mantissa * 10 + (c - 48)
            if fraction:
                exponent -= 1
        p += 1
    if p < end:
        p += 1
        sign = 1
        if buf[p] == 43 or buf[p] == 45:
            sign = -1 if buf[p] == 45 else 1
            p += 1
        e = 0
        while p < end:
            e = e * 10 + (buf[p] - 48)
            p += 1
        exponent += sign * e
    x, decided = _eisel_lemire(mantissa, exponent)
    if not decided:
        return np.nan
    return -x if negative else x


@_leaf
def _literal(buf, p, end):
    """``(next index or -1, kind)`` of ``true``, ``false`` or ``null`` at ``p``."""
    if p + 4 <= end and buf[p] == 116 and buf[p + 1] == 114 and buf[p + 2] == 117 and buf[p + 3] == 101:
        return p + 4, TRUE
    if p + 5 <= end and buf[p] == 102 and buf[p + 1] == 97 and buf[p + 2] == 108 and buf[p + 3] == 115 and buf[p + 4] == 101:
        return p + 5, FALSE
    if p + 4 <= end and buf[p] == 110 and buf[p + 1] == 117 and buf[p + 2] == 108 and buf[p + 3] == 108:
        return p + 4, NULL
    return -1, 0


@_leaf
def _scalar(buf, p, end):
    """Any scalar at ``p``: ``(next, kind, float value, int value, string start, string end)``."""
    c = buf[p]
    if c == 34:
        close = _string_end(buf, p + 1, end)
        if close < 0:
            return -1, 0, 0.0, 0, 0, 0
        return close + 1, STRING, 0.0, 0, p + 1, close
    if c == 45 or 48 <= c <= 57:
        q, kind, x, i = _number(buf, p, end)
        return q, kind, x, i, p, q
    q, kind = _literal(buf, p, end)
    return q, kind, 0.0, 0, p, q


@_leaf
def _intern(buf, start, end, table, spans, count):
    """Code of the string ``buf[start:end]`` in the batch's table of distinct strings."""
    mask = table.size - 1
    slot = _hash(buf, start, end) & mask
    while True:
        code = table[slot]
        if code < 0:
            table[slot] = count
            spans[count, 0] = start
            spans[count, 1] = end
            return count, count + 1
        if _same(buf, start, end, buf, spans[code, 0], spans[code, 1]):
            return code, count
        slot = (slot + 1) & mask


@numba.njit(cache=True, nogil=True)
def _rehash(buf, spans, count, size):
    """A table of distinct strings of ``size`` slots holding the first ``count`` spans."""
    table = np.full(size, -1, dtype=np.int64)
    mask = size - 1
    for code in range(count):
        slot = _hash(buf, spans[code, 0], spans[code, 1]) & mask
        while table[slot] >= 0:
            slot = (slot + 1) & mask
        table[slot] = code
    return table


@numba.njit(cache=True, nogil=True, inline="always")
def _defer(deferred, n, row, column, start, end):
    deferred[n, 0] = row
    deferred[n, 1] = column
    deferred[n, 2] = start
    deferred[n, 3] = end
    return n + 1


@_leaf
def _undecided(buf, s, e, deferred, n_deferred, row, column):
    """``(value, deferred count)`` of a number :func:`_number` left undecided: its value by
    Eisel-Lemire, or NaN with the number listed in ``deferred``. Called only for those numbers:
    the same steps inlined at every number slowed the scan by about a fifth."""
    x = _beyond_fast_path(buf, s, e)
    if x != x:
        n_deferred = _defer(deferred, n_deferred, row, column, s, e)
    return x, n_deferred


@numba.njit(cache=True, nogil=True)
def scan_predictions(
    buf, starts, ends, top_names, top_offsets, top_table, names, offsets, table, categorical_slot,
    ok, event_ids, entity_ids, ts, texts, prediction_kind, prediction_float, prediction_int, prediction_text,
    score_kind, score, latency_kind, latency, schema_kind, schema,
    feature_kind, feature_float, feature_text, strings, deferred,
):
    """Scan every message ``buf[starts[i]:ends[i]]`` into row ``i`` of the output columns.

    ``ok[i]`` is set to 0 where the message is off the fast path (the row is then garbage).
    ``event_ids`` and ``entity_ids`` get the ``(start, end)`` span of each event id and entity
    id (an empty span when there is none); ``texts``, ``prediction_text`` and ``feature_text``
    get codes into ``strings``, the ``(start, end)`` spans of the batch's distinct strings (-1
    where the value is no string). A feature's integer or boolean value gets a code only in a
    slot where ``categorical_slot`` is set: a numeric feature needs none. ``deferred`` gets
    ``(row, column, start, end)`` of every number whose value is left to the caller, where
    column is a feature slot, or ``n_features`` for the score, ``+ 1`` for ``latency_ms`` and
    ``+ 2`` for the prediction. Returns ``(distinct strings, deferred numbers)``.
    """
    n_deferred = 0
    n_features = offsets.size - 1
    intern_table = np.full(1024, -1, dtype=np.int64)
    count = 0
    for i in range(starts.size):
        # At most 7 + n_features new strings per message: keep the table's load under 1/2.
        if 2 * (count + 7 + n_features) > intern_table.size:
            intern_table = _rehash(buf, strings, count, 4 * intern_table.size)
        end = ends[i]
        p = _skip_ws(buf, starts[i], end)
        good = p < end and buf[p] == 123
        seen = 0
        ts[i] = 0
        event_ids[i, 0] = -1
        entity_ids[i, 0] = 0
        entity_ids[i, 1] = 0
        prediction_kind[i] = MISSING
        score_kind[i] = MISSING
        latency_kind[i] = MISSING
        schema_kind[i] = MISSING
        for t in range(texts.shape[1]):
            texts[i, t] = -1
        for f in range(n_features):
            feature_kind[i, f] = MISSING
            feature_text[i, f] = -1
        p += 1
        field = -1
        first = True
        # The top-level object and ``features`` read their members with the same steps, written
        # out twice: shared helpers returning a status (inlined or not) made decoding about 30 %
        # slower under numba.
        while good:
            p = _skip_ws(buf, p, end)
            if first and p < end and buf[p] == 125:
                p += 1
                break
            first = False
            if p >= end or buf[p] != 34:
                good = False
                break
            # The key after the previous one is compared here (producers send fields in the same
            # order every time); only a miss calls ``_key``, which scans and hashes it. Written in
            # the loop, not in a helper: under numba the call cost more than the comparison, and
            # this made the whole scan about 1.5x faster at no extra compile time.
            guess = field + 1
            close = -1
            if guess < top_offsets.size - 1:
                start, stop = top_offsets[guess], top_offsets[guess + 1]
                close = p + 1 + stop - start
                k = 0
                while k < stop - start and close < end and buf[p + 1 + k] == top_names[start + k]:
                    k += 1
                if k == stop - start and close < end and buf[close] == 34:
                    field = guess
                else:
                    close = -1
            if close < 0:
                field, close = _key(buf, p + 1, end, top_names, top_offsets, top_table)
            if close < 0:
                good = False
                break
            p = _skip_ws(buf, close + 1, end)
            if p >= end or buf[p] != 58:
                good = False
                break
            p = _skip_ws(buf, p + 1, end)
            if p >= end:
                good = False
                break
            if field >= 0:
                bit = 1 << field
                if seen & bit:
                    good = False
                    break
                seen |= bit
            if field == _F_FEATURES:
                if buf[p] != 123:
                    good = False
                    break
                p += 1
                slot = -1
                inner_first = True
                while True:
                    p = _skip_ws(buf, p, end)
                    if inner_first and p < end and buf[p] == 125:
                        p += 1
                        break
                    inner_first = False
                    if p >= end or buf[p] != 34:
                        good = False
                        break
                    guess = slot + 1
                    close = -1
                    if guess < offsets.size - 1:
                        start, stop = offsets[guess], offsets[guess + 1]
                        close = p + 1 + stop - start
                        k = 0
                        while k < stop - start and close < end and buf[p + 1 + k] == names[start + k]:
                            k += 1
                        if k == stop - start and close < end and buf[close] == 34:
                            slot = guess
                        else:
                            close = -1
                    if close < 0:
                        slot, close = _key(buf, p + 1, end, names, offsets, table)
                    if close < 0:
                        good = False
                        break
                    p = _skip_ws(buf, close + 1, end)
                    if p >= end or buf[p] != 58:
                        good = False
                        break
                    p = _skip_ws(buf, p + 1, end)
                    if p >= end:
                        good = False
                        break
                    q, kind, x, _, s, e = _scalar(buf, p, end)
                    if q < 0:
                        good = False
                        break
                    if slot >= 0:
                        if feature_kind[i, slot] != MISSING:
                            good = False
                            break
                        feature_kind[i, slot] = kind
                        if x != x:
                            x, n_deferred = _undecided(buf, s, e, deferred, n_deferred, i, slot)
                        feature_float[i, slot] = x
                        if kind == STRING or (categorical_slot[slot] and (kind == INT or kind == TRUE or kind == FALSE)):
                            feature_text[i, slot], count = _intern(buf, s, e, intern_table, strings, count)
                    p = _skip_ws(buf, q, end)
                    if p < end and buf[p] == 44:
                        p += 1
                        continue
                    if p < end and buf[p] == 125:
                        p += 1
                        break
                    good = False
                    break
                if not good:
                    break
            else:
                q, kind, x, integer, s, e = _scalar(buf, p, end)
                if q < 0:
                    good = False
                    break
                column = _TEXT_COLUMN[field] if field >= 0 else -1
                if field == _F_EVENT_ID:
                    if kind != STRING:
                        good = False
                        break
                    event_ids[i, 0] = s
                    event_ids[i, 1] = e
                elif field == _F_ENTITY:
                    if kind != STRING:
                        good = False
                        break
                    entity_ids[i, 0] = s
                    entity_ids[i, 1] = e
                elif column >= 0:
                    if kind != STRING:
                        good = False
                        break
                    texts[i, column], count = _intern(buf, s, e, intern_table, strings, count)
                elif field == _F_TS:
                    if kind != INT:
                        good = False
                        break
                    ts[i] = integer
                elif field == _F_PREDICTION:
                    prediction_kind[i] = kind
                    if x != x:
                        x, n_deferred = _undecided(buf, s, e, deferred, n_deferred, i, n_features + 2)
                    prediction_float[i] = x
                    prediction_int[i] = integer
                    prediction_text[i] = -1
                    if kind == STRING:
                        prediction_text[i], count = _intern(buf, s, e, intern_table, strings, count)
                elif field == _F_SCORE:
                    score_kind[i] = kind
                    if x != x:
                        x, n_deferred = _undecided(buf, s, e, deferred, n_deferred, i, n_features)
                    score[i] = x
                elif field == _F_LATENCY:
                    latency_kind[i] = kind
                    if x != x:
                        x, n_deferred = _undecided(buf, s, e, deferred, n_deferred, i, n_features + 1)
                    latency[i] = x
                elif field == _F_SCHEMA:
                    schema_kind[i] = kind
                    schema[i] = integer
                elif field == _F_PROBABILITIES or field == _F_EXPLANATION:
                    if kind != NULL:
                        good = False
                        break
                p = _skip_ws(buf, q, end)
            if p < end and buf[p] == 44:
                p += 1
                continue
            if p < end and buf[p] == 125:
                p += 1
                break
            good = False
        if good and _skip_ws(buf, p, end) != end:
            good = False
        if (seen & _REQUIRED) != _REQUIRED:
            good = False
        ok[i] = 1 if good else 0
    return count, n_deferred


@numba.njit(cache=True, nogil=True)
def gather(buf, spans, n):
    """The first ``n`` spans of ``buf``, each followed by a NUL byte (fast-path strings hold none)."""
    size = 0
    for k in range(n):
        size += spans[k, 1] - spans[k, 0] + 1
    out = np.empty(size, dtype=np.uint8)
    p = 0
    for k in range(n):
        for q in range(spans[k, 0], spans[k, 1]):
            out[p] = buf[q]
            p += 1
        out[p] = 0
        p += 1
    return out
