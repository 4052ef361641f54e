"""One model's join state, column by column: pending predictions, pending labels, joined markers.

The join keeps an entry per event for the whole label TTL (30 days by default), so with a
million events in flight a ``dict`` of ``str`` keys and tuples (about 290 bytes an entry, and
one dependent memory load per field on every lookup) took most of the memory budget and of the
join's time. This table keeps its entries as rows of numpy columns, appended in arrival order,
and finds them through an open-addressing index of 64-bit hashes (seeded per table) of the
event_id's UTF-8 bytes.
A hash match is confirmed against the stored id, so two events never join by collision. An id
that is a canonical lowercase UUID is stored as its 16 bytes, any other id as its UTF-8 bytes.

One compiled pass per batch looks each event up, applies the TTL, and inserts or joins in
stream order; the caller then fills the payload columns of the inserted rows with numpy. Rows
that expire are dropped (and the index rebuilt) by :meth:`JoinTable.expire`.

Hand-written rather than taken from a library: numba's typed ``Dict`` needs numba strings (a
conversion per key from Python) and boxes every entry, and pandas' hash tables are not mutable
from compiled code.

Examples
--------
>>> import numpy as np
>>> table = JoinTable("m", n_segments=0)
>>> action, row, expired = table.match(PREDICTION, ["a", "b", "a"], np.array([10, 20, 30]), np.zeros(3, dtype=np.int64))
>>> action.tolist(), row.tolist(), len(table)
([0, 0, 2], [0, 1, 0], 2)
>>> action, row, expired = table.match(LABEL, ["b", "c"], np.array([25, 26]), np.zeros(2, dtype=np.int64))
>>> action.tolist()
[1, 0]
>>> table.put_label(int(row[1]), ("c", 26, 0, "", None))
>>> table.counts()
{'pending_predictions': 1, 'pending_labels': 1, 'joined': 1}

"""

from __future__ import annotations

import secrets
from typing import Any, NamedTuple

import numba
import numpy as np
import pandas as pd

__all__ = ["JoinTable", "PendingLabel", "PREDICTION", "LABEL", "INSERTED", "JOINED", "DUPLICATE"]

# Row kinds. A joined row keeps only the prediction time, so that a replayed prediction or a
# second label within the TTL is recognised as a duplicate.
_DEAD, PREDICTION, LABEL, _JOINED = 0, 1, 2, 3
# What happened to each event of a batch.
INSERTED, JOINED, DUPLICATE = 0, 1, 2

_FNV_OFFSET = np.uint64(14695981039346656037)
_FNV_PRIME = np.uint64(1099511628211)


class PendingLabel(NamedTuple):
    """A label still waiting for its prediction."""

    model: str
    event_id: str
    ts: int
    label: Any
    source: str
    origin: Any


@numba.njit(cache=True, nogil=True, inline="always")
def _hash(data, start, end, seed):
    # FNV-1a from a per-table random seed (ids crafted to share slots cannot be computed ahead),
    # then splitmix64's finalizer so the low bits that pick a slot mix every byte.
    h = _FNV_OFFSET ^ seed
    for p in range(start, end):
        h = (h ^ np.uint64(data[p])) * _FNV_PRIME
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


@numba.njit(cache=True, nogil=True, inline="always")
def _stored(data, start, size, key):
    """Write the stored form of the id ``data[start:start + size]`` to ``key``; returns its length
    code: -16 for a canonical lowercase UUID packed into 16 bytes (the common event_id, kept in
    less than half its 36 bytes of text), else ``size`` for the bytes as they are."""
    if size == 36 and data[start + 8] == 45 and data[start + 13] == 45 and data[start + 18] == 45 and data[start + 23] == 45:
        j = 0
        high = -1
        for k in range(36):
            if k == 8 or k == 13 or k == 18 or k == 23:
                continue
            c = data[start + k]
            if 48 <= c <= 57:
                v = c - 48
            elif 97 <= c <= 102:
                v = c - 87
            else:
                j = -1
                break
            if high < 0:
                high = v
            else:
                key[j] = high * 16 + v
                j += 1
                high = -1
        if j == 16:
            return -16
    for k in range(size):
        key[k] = data[start + k]
    return size


@numba.njit(cache=True, nogil=True)
def _match(data, ends, ts, cutoffs, side, slots, row_hash, id_start, id_len, row_ts, kind, arena,
           n_rows, arena_used, used, action, matched, killed, key, seed):
    """Look up, expire, then insert or join each event in order; see :meth:`JoinTable.match`."""
    mask = np.uint64(slots.size - 1)
    n_killed = 0
    start = 0
    for i in range(ends.size):
        end = ends[i]
        h = _hash(data, start, end, seed)
        code = _stored(data, start, end - start, key)
        size = 16 if code < 0 else code
        slot = np.int64(h & mask)
        free = -1
        row = -1
        while True:
            r = slots[slot]
            if r < 0:
                break
            if kind[r] == _DEAD:
                if free < 0:
                    free = slot
            elif row_hash[r] == h and id_len[r] == code:
                a = id_start[r]
                k = 0
                while k < size and arena[a + k] == key[k]:
                    k += 1
                if k == size:
                    row = r
                    break
            slot = (slot + 1) & np.int64(mask)
        if row >= 0 and row_ts[row] < cutoffs[i]:
            killed[n_killed, 0] = row
            killed[n_killed, 1] = kind[row]
            n_killed += 1
            kind[row] = _DEAD
            if free < 0:
                free = slot
            row = -1
        if row >= 0:
            matched[i] = row
            if kind[row] == side or kind[row] == _JOINED:
                action[i] = DUPLICATE
            else:
                action[i] = JOINED
                kind[row] = _JOINED
                if side == PREDICTION:
                    row_ts[row] = ts[i]
        else:
            if free < 0:
                free = slot
                used += 1
            slots[free] = n_rows
            row_hash[n_rows] = h
            id_start[n_rows] = arena_used
            id_len[n_rows] = code
            for k in range(size):
                arena[arena_used + k] = key[k]
            arena_used += size
            row_ts[n_rows] = ts[i]
            kind[n_rows] = side
            action[i] = INSERTED
            matched[i] = n_rows
            n_rows += 1
        start = end
    return n_rows, arena_used, used, n_killed


@numba.njit(cache=True, nogil=True)
def _index(row_hash, kind, n_rows, size):
    """An index of ``size`` slots over the first ``n_rows`` rows that are not dead."""
    slots = np.full(size, -1, dtype=np.int32)
    mask = np.uint64(size - 1)
    for r in range(n_rows):
        if kind[r] != _DEAD:
            slot = np.int64(row_hash[r] & mask)
            while slots[slot] >= 0:
                slot = (slot + 1) & np.int64(mask)
            slots[slot] = r
    return slots


@numba.njit(cache=True, nogil=True)
def _pack(arena, id_start, id_len, rows):
    """The stored ids of ``rows`` copied into a new arena, with their new starts."""
    size = 0
    for j in range(rows.size):
        size += 16 if id_len[rows[j]] < 0 else id_len[rows[j]]
    out = np.empty(size, dtype=np.uint8)
    starts = np.empty(rows.size, dtype=np.int64)
    p = 0
    for j in range(rows.size):
        a = id_start[rows[j]]
        starts[j] = p
        for k in range(16 if id_len[rows[j]] < 0 else id_len[rows[j]]):
            out[p] = arena[a + k]
            p += 1
    return out, starts


def _utf8(ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The ids' UTF-8 bytes back to back and the end of each."""
    text = "".join(ids)
    data = text.encode("utf-8", "surrogatepass")
    if len(data) == len(text):
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    else:
        lengths = np.fromiter((len(i.encode("utf-8", "surrogatepass")) for i in ids), dtype=np.int64, count=len(ids))
    return np.frombuffer(data, dtype=np.uint8), np.cumsum(lengths)


# Per-row columns. The payload of a pending prediction is held as codes into the table's list
# of distinct values (versions, roles, classes and segment categories repeat; an object pointer
# per row would cost twice the bytes, and pages a numpy object column must touch up front).
_COLUMNS = (
    ("hash", np.uint64), ("id_start", np.int64), ("id_len", np.int32), ("ts", np.int64), ("kind", np.int8),
    ("version", np.int32), ("role", np.int32), ("prediction", np.int32), ("score", np.float64),
)


class JoinTable:
    """Pending predictions, pending labels and joined markers of one model.

    Parameters
    ----------
    model
        The model whose events the table joins.
    n_segments
        How many segment values (category text) travel with each prediction.
    numeric_prediction
        Whether predictions are numbers (regression), kept as float64 rather than as codes.

    Attributes
    ----------
    watermark : int
        The largest prediction time seen.
    swept_at : int
        The watermark at the last :meth:`expire`.
    """

    def __init__(self, model: str, n_segments: int, numeric_prediction: bool = False):
        self.model = model
        self.n_segments = n_segments
        self.numeric_prediction = numeric_prediction
        self.watermark = 0
        self.swept_at = 0
        self._seed = np.uint64(secrets.randbits(64))
        self._n = 0
        self._used = 0
        self._labels: dict[int, tuple[str, int, Any, str, Any]] = {}
        self._values: list[Any] = []
        self._value_array: np.ndarray | None = None
        self._codes: dict[tuple[type, Any], int] = {}
        self._probabilities: dict[int, Any] = {}
        self._columns: dict[str, np.ndarray] = {}
        self._allocate(1024)
        self._hold_ids(np.empty(0, dtype=np.uint8), 0)
        self.slots = np.full(2048, -1, dtype=np.int32)

    def _allocate(self, capacity: int) -> None:
        n = self._n
        columns = _COLUMNS + (("segments", np.int32),)
        for name, dtype in columns:
            if name == "prediction" and self.numeric_prediction:
                dtype = np.float64
            shape = (capacity, self.n_segments) if name == "segments" else (capacity,)
            # Zeros, not np.empty: as cheap (untouched pages stay unmapped), and a checkpoint
            # of the same state is the same bytes.
            column = np.zeros(shape, dtype=dtype)
            if name in self._columns:
                column[:n] = self._columns[name][:n]
            self._columns[name] = column
            setattr(self, name, column)

    def __len__(self) -> int:
        return self._n - int((self.kind[: self._n] == _DEAD).sum())

    def counts(self) -> dict[str, int]:
        """How many rows of each kind the table holds."""
        kinds = np.bincount(self.kind[: self._n], minlength=4)
        return {"pending_predictions": int(kinds[PREDICTION]), "pending_labels": int(kinds[LABEL]), "joined": int(kinds[_JOINED])}

    def nbytes(self) -> int:
        """Bytes of the columns, index and id bytes (not the payload objects they point to)."""
        return sum(c.nbytes for c in self._columns.values()) + self.arena.nbytes + self.slots.nbytes

    def _reserve(self, rows: int, id_bytes: int) -> None:
        if self._n + rows > self.hash.size:
            self._allocate(max(self.hash.size * 3 // 2, self._n + rows))
        if self._arena_used + id_bytes > self.arena.size:
            self._hold_ids(self.arena[: self._arena_used], max(self.arena.size * 3 // 2, self._arena_used + id_bytes))
        if 2 * (self._used + rows) > self.slots.size:
            self._reindex(rows)

    def _hold_ids(self, ids: np.ndarray, capacity: int) -> None:
        """Make ``ids`` the stored id bytes, in an arena of at least ``capacity`` (and 64 KiB)."""
        arena = np.empty(max(1 << 16, capacity), dtype=np.uint8)
        arena[: ids.size] = ids
        self.arena, self._arena_used = arena, ids.size

    def _reindex(self, headroom: int = 0) -> None:
        live = len(self)
        size = 2048
        while size < 2 * (live + headroom):
            size *= 2
        self.slots = _index(self.hash, self.kind, self._n, size)
        self._used = live

    def _encode(self, values: np.ndarray) -> np.ndarray:
        """Codes of an object column's values in the table's list of distinct values.

        pandas' hash table treats equal numbers of different types (1, 1.0, True) as one value:
        only strings, ``None`` and class labels (all ints or all strings, as the spec requires)
        come here; numeric predictions are stored as floats instead.
        """
        codes, uniques = pd.factorize(values)
        known = self._codes
        table = np.empty(uniques.size + 1, dtype=np.int32)
        for j, value in enumerate([*uniques.tolist(), None]):
            key = (type(value), value)
            code = known.get(key)
            if code is None:
                code = known[key] = len(self._values)
                self._values.append(value)
            table[j] = code
        return table[codes]

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        # The list only grows between rebuilds (which reset the array), so its length says
        # whether the cached array is current.
        if self._value_array is None or len(self._value_array) != len(self._values):
            self._value_array = np.empty(len(self._values), dtype=object)
            self._value_array[:] = self._values
        return self._value_array[codes]

    def match(self, side: int, event_ids: list[str], ts: np.ndarray, cutoffs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Join one side's events, in order, against the table.

        ``side`` is :data:`PREDICTION` or :data:`LABEL`; an entry older than ``cutoffs[i]`` is
        expired before event ``i`` looks it up. Returns, per event, the action
        (:data:`INSERTED`, :data:`JOINED` or :data:`DUPLICATE`) and the row it inserted or met,
        and the rows that expired on the way, to be handed to :meth:`drop` once the caller
        has stored the payload of the rows it inserted (:meth:`put_label`, or the prediction
        columns).
        """
        data, ends = _utf8(event_ids)
        n = ends.size
        self._reserve(n, data.size)
        action = np.empty(n, dtype=np.int8)
        matched = np.empty(n, dtype=np.int64)
        killed = np.empty((n, 2), dtype=np.int64)
        key = np.empty(max(16, int(np.diff(ends, prepend=0).max(initial=0))), dtype=np.uint8)
        self._n, self._arena_used, self._used, n_killed = _match(
            data, ends, np.ascontiguousarray(ts, dtype=np.int64), np.ascontiguousarray(cutoffs, dtype=np.int64), side,
            self.slots, self.hash, self.id_start, self.id_len, self.ts, self.kind, self.arena,
            self._n, self._arena_used, self._used, action, matched, killed, key, self._seed,
        )
        return action, matched, killed[:n_killed]

    def put_predictions(
        self, rows: np.ndarray, version: np.ndarray, role: np.ndarray, prediction: np.ndarray, score: np.ndarray,
        probabilities: list[Any], segments: np.ndarray,
    ) -> None:
        """Keep the payload of the predictions :meth:`match` inserted at ``rows``."""
        self.version[rows] = self._encode(version)
        self.role[rows] = self._encode(role)
        self.prediction[rows] = prediction.astype(np.float64) if self.numeric_prediction else self._encode(prediction)
        self.score[rows] = score
        for j in range(self.n_segments):
            self.segments[rows, j] = self._encode(segments[:, j])
        for row, value in zip(rows.tolist(), probabilities):
            if value is not None:
                self._probabilities[row] = value

    def drop(self, killed: np.ndarray) -> list[PendingLabel]:
        """Release the payload of rows :meth:`match` expired; returns the labels among them."""
        orphans = []
        for row, kind in killed.tolist():
            if kind == LABEL:
                orphans.append(PendingLabel(self.model, *self._labels.pop(row)))
            elif kind == PREDICTION:
                self._probabilities.pop(row, None)
        return orphans

    def put_label(self, row: int, label: tuple[str, int, Any, str, Any]) -> None:
        """Keep ``(event_id, ts, label, source, origin)`` of the label waiting in ``row``."""
        self._labels[row] = label

    def take_label(self, row: int) -> tuple[str, int, Any, str, Any]:
        """``(event_id, ts, label, source, origin)`` of the label that waited in ``row``."""
        return self._labels.pop(row)

    def take_predictions(self, rows: np.ndarray) -> tuple[list[Any], ...]:
        """Columns ``(version, role, segment values, ts, prediction, score, probabilities)`` of
        the predictions that waited in ``rows``, whose payload is then released."""
        score = self.score[rows]
        prediction = self.prediction[rows]
        probabilities = self._probabilities
        return (
            self._decode(self.version[rows]).tolist(), self._decode(self.role[rows]).tolist(),
            list(map(tuple, self._decode(self.segments[rows]).tolist())), self.ts[rows].tolist(),
            prediction.tolist() if self.numeric_prediction else self._decode(prediction).tolist(),
            [None if s != s else s for s in score.tolist()],
            [probabilities.pop(row, None) for row in rows.tolist()] if probabilities else [None] * rows.size,
        )

    def expire(self, cutoff: int) -> list[PendingLabel]:
        """Drop every row older than ``cutoff`` and compact; returns the labels among them."""
        n = self._n
        kind, ts = self.kind[:n], self.ts[:n]
        old = (kind != _DEAD) & (ts < cutoff)
        orphans = [PendingLabel(self.model, *self._labels.pop(row)) for row in np.flatnonzero(old & (kind == LABEL)).tolist()]
        keep = np.flatnonzero((kind != _DEAD) & ~old)
        if keep.size == n:
            return orphans
        renumber = np.full(n, -1, dtype=np.int64)
        renumber[keep] = np.arange(keep.size)
        self._labels = {int(renumber[row]): value for row, value in self._labels.items()}
        self._probabilities = {int(renumber[row]): value for row, value in self._probabilities.items() if renumber[row] >= 0}
        arena, starts = _pack(self.arena, self.id_start, self.id_len, keep)
        for column in self._columns.values():
            column[: keep.size] = column[keep]
        self.id_start[: keep.size] = starts
        self._n = keep.size
        self._hold_ids(arena, arena.size * 3 // 2)
        if self.hash.size > 4 * max(keep.size, 1024):
            self._allocate(max(1024, 2 * keep.size))
        if len(self._values) > 1024:
            self._forget_values()
        self._reindex()
        return orphans

    def _forget_values(self) -> None:
        """Keep only the distinct values pending predictions still use (high-cardinality
        segments would otherwise grow the list for ever)."""
        n = self._n
        coded = [self.version[:n], self.role[:n], *(self.segments[:n, j] for j in range(self.n_segments))]
        if not self.numeric_prediction:
            coded.append(self.prediction[:n])
        pending = self.kind[:n] == PREDICTION
        used = np.unique(np.concatenate([c[pending] for c in coded]))
        renumber = np.full(len(self._values), -1, dtype=np.int32)
        renumber[used] = np.arange(used.size, dtype=np.int32)
        for column in coded:
            column[pending] = renumber[column[pending]]
        self._values = [self._values[code] for code in used.tolist()]
        self._value_array = None
        self._codes = {(type(value), value): code for code, value in enumerate(self._values)}

    def pending_labels(self) -> list[PendingLabel]:
        """Every label still waiting, in arrival order."""
        return [PendingLabel(self.model, *self._labels[row]) for row in sorted(self._labels)]

    def __getstate__(self) -> dict[str, Any]:
        n = self._n
        return {
            "model": self.model, "n_segments": self.n_segments, "numeric_prediction": self.numeric_prediction,
            "seed": int(self._seed),
            "watermark": self.watermark, "swept_at": self.swept_at, "labels": self._labels,
            "values": self._values, "probabilities": self._probabilities, "arena": self.arena[: self._arena_used].copy(),
            "columns": {name: column[:n].copy() for name, column in self._columns.items()},
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        columns = state["columns"]
        self.model = state["model"]
        self._seed = np.uint64(state["seed"])
        self.n_segments = state["n_segments"]
        self.numeric_prediction = state["numeric_prediction"]
        self.watermark = state["watermark"]
        self.swept_at = state["swept_at"]
        self._labels = state["labels"]
        self._values = state["values"]
        self._value_array = None
        self._codes = {(type(value), value): code for code, value in enumerate(self._values)}
        self._probabilities = state["probabilities"]
        self._n = len(columns["hash"])
        self._columns = columns
        self._allocate(max(1024, self._n))
        self._hold_ids(state["arena"], state["arena"].size)
        self._reindex()
