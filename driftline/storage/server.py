"""ClickHouse server backend: clickhouse-driver's native protocol, with writes that lose nothing.

ClickHouse server
-----------------
A store URL ``clickhouse://user:password@host:9000/db`` names a server reached over the native
TCP protocol (port 9000); ``db`` is the database driftline's tables live in (default
``driftline``). User and password may be left out of the URL and given in the environment as
``DRIFTLINE_CLICKHOUSE_USER`` / ``DRIFTLINE_CLICKHOUSE_PASSWORD`` (the URL wins when it has them).
The password is kept out of ``repr``, log records and error messages.

Statements and queries are retried on network and server-unavailable errors (connection refused
or reset, timeouts, too many parts or queries) with exponential backoff and full jitter: attempt
``k`` sleeps a uniform random time in ``[0, min(max_backoff, backoff * 2**k)]``. SQL errors are not
retried: they raise :class:`~driftline.storage.base.StoreError` at once with the server's message.

Inserts send an Arrow table as columnar data. When the server is unreachable, ``insert`` puts the
batch in a local in-memory buffer, bounded by ``buffer_rows``, and returns; a background thread
sends the backlog, in order, as soon as the server answers again (retrying with the same backoff,
without limit, until each batch is acknowledged). While a backlog exists, new batches queue behind
it. When the buffer is full, ``insert`` blocks (back-pressure) for up to ``buffer_timeout`` seconds
and then raises ``StoreError``; memory never grows past ``buffer_rows``. A batch the server rejects
with an SQL error after it was buffered is dropped, counted in ``failures``, and reported by the
next ``insert``, ``flush`` or ``close``. ``flush(timeout)`` waits for the backlog to drain, and
``close()`` flushes first. A batch whose acknowledgement was lost may be sent twice; driftline's
tables are ``ReplacingMergeTree`` keyed by each row's identity, so the replay overwrites.
Buffered rows are not yet visible to queries: ``flush()`` before reading your own writes.

ClickHouse 18.16 and older servers have no server-side query parameters, so ``{name:Type}``
placeholders are bound on the client instead (:func:`inline_params`): every value becomes a
quoted string literal (cast to its type), never raw SQL text.

Examples
--------
>>> address = ServerAddress.from_url("clickhouse://ana:s3cret@db.example:9000/metrics")
>>> address
ServerAddress(host='db.example', port=9000, database='metrics', user='ana')
>>> print(address.url)
clickhouse://ana@db.example:9000/metrics
>>> print(inline_params("SELECT {m:String} AS m, {n:UInt8} AS n", {"m": "it's; --", "n": "3"}))
SELECT 'it\\'s; --' AS m, CAST('3' AS UInt8) AS n

"""

from __future__ import annotations

import logging
import math
import os
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from driftline.storage.base import StoreError, quote_identifier, quote_literal
from driftline.storage.schema import DATABASE

__all__ = ["ServerAddress", "ServerBackend", "StoreUnavailableError", "inline_params"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_PORT = 9000
USER_ENV = "DRIFTLINE_CLICKHOUSE_USER"
PASSWORD_ENV = "DRIFTLINE_CLICKHOUSE_PASSWORD"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Skips string literals, quoted identifiers and comments, so placeholders inside them stay text.
_TOKENS = re.compile(
    r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|`(?:[^`\\]|\\.)*`|--[^\n]*|/\*.*?\*/"""
    r"""|\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*:\s*([A-Za-z0-9_(), ']+?)\s*\}""",
    re.S,
)
_TEXT_ESCAPES = {"b": "\b", "f": "\f", "r": "\r", "n": "\n", "t": "\t", "0": "\0", "a": "\a", "v": "\v"}
_STACK_TRACE = re.compile(r"[.,]?\s*Stack trace:.*", re.S)
# Server error codes that mean "try again later", not "this statement is wrong".
_RETRYABLE_CODES = frozenset({202, 203, 209, 210, 236, 242, 252, 279, 319})


class StoreUnavailableError(StoreError):
    """The ClickHouse server did not answer within the retries (or the flush timeout)."""


@dataclass(frozen=True)
class ServerAddress:
    """Where a ClickHouse server is and who connects; the password never appears in ``repr``.

    Parameters
    ----------
    host
        Server host name or address.
    port
        Native protocol port.
    database
        The database of driftline's tables.
    user
        User name; ``None`` takes ``DRIFTLINE_CLICKHOUSE_USER`` or else ``default``.
    password
        Password; ``None`` takes ``DRIFTLINE_CLICKHOUSE_PASSWORD`` or else none.

    Examples
    --------
    >>> ServerAddress("127.0.0.1", 9000, "driftline", "default", "pw")
    ServerAddress(host='127.0.0.1', port=9000, database='driftline', user='default')

    """

    host: str
    port: int = DEFAULT_PORT
    database: str = DATABASE
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host or any(c in self.host for c in "/@?# "):
            raise ValueError(f"host must be a host name or address, got {self.host!r}")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            raise ValueError(f"port must be an int in [1, 65535], got {self.port!r}")
        if not isinstance(self.database, str) or not _IDENTIFIER.match(self.database):
            raise ValueError(f"database must be a plain identifier, got {self.database!r}")
        user = (os.environ.get(USER_ENV) or "default") if self.user is None else self.user
        password = os.environ.get(PASSWORD_ENV, "") if self.password is None else self.password
        if not isinstance(user, str) or not user:
            raise ValueError(f"user must be a non-empty str, got {user!r}")
        if not isinstance(password, str):
            raise TypeError(f"password must be a str, got {type(password).__name__}")
        object.__setattr__(self, "user", user)
        object.__setattr__(self, "password", password)

    @classmethod
    def from_url(cls, url: str) -> ServerAddress:
        """Parse ``clickhouse://[user[:password]@]host[:port][/database]``."""
        if not isinstance(url, str):
            raise TypeError(f"url must be a str, got {type(url).__name__}")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise ValueError(f"url must look like clickhouse://user:password@host:9000/db, got {masked_url(url)!r}") from None
        if parts.scheme != "clickhouse" or not parts.hostname:
            raise ValueError(f"url must look like clickhouse://user:password@host:9000/db, got {masked_url(url)!r}")
        if parts.query or parts.fragment:
            raise ValueError(f"url must not have a query string or fragment, got {masked_url(url)!r}")
        database = parts.path.strip("/") or DATABASE
        return cls(
            host=parts.hostname,
            port=port or DEFAULT_PORT,
            database=unquote(database),
            user=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
        )

    @property
    def url(self) -> str:
        """The URL without the password."""
        return f"clickhouse://{self.user}@{self.host}:{self.port}/{self.database}"

    def __str__(self) -> str:
        return self.url


def masked_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and logs).

    >>> masked_url("clickhouse://user:secret@host:9000/db")
    'clickhouse://user:***@host:9000/db'
    """
    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", url)


def _unescape_text(text: str) -> str:
    """Inverse of ClickHouse's escaped text format for strings (``\\t``, ``\\\\``, ...)."""
    return re.sub(r"\\(.)", lambda m: _TEXT_ESCAPES.get(m.group(1), m.group(1)), text, flags=re.S)


def _base_type(type_name: str) -> str:
    base = type_name.strip()
    while True:
        m = re.fullmatch(r"(?:Nullable|LowCardinality)\((.*)\)", base)
        if m is None:
            return base
        base = m.group(1).strip()


def _bound_value(name: str, type_name: str, text: str) -> str:
    base = _base_type(type_name)
    if base == "Identifier":
        return quote_identifier(_unescape_text(text))
    if text == "\\N":
        return f"CAST(NULL AS {type_name})"
    stringlike = base == "String" or base.startswith(("FixedString(", "Enum8(", "Enum16(")) or base in ("UUID", "IPv4", "IPv6")
    # Arrays, maps, tuples and numbers arrive as the literal text CAST parses (see param_text).
    literal = quote_literal(_unescape_text(text) if stringlike else text)
    return literal if type_name == "String" else f"CAST({literal} AS {type_name})"


def inline_params(sql: str, params: Mapping[str, str] | None) -> str:
    """Bind ``{name:Type}`` placeholders as quoted literals, for servers without query parameters.

    ``params`` hold values in ClickHouse's text form (as
    :func:`~driftline.storage.base.param_text` renders them; ``\\N`` is NULL). Each value
    becomes a quoted literal, cast to ``Type`` unless it is ``String``; ``Identifier`` values
    become back-quoted identifiers. Placeholders inside string literals, quoted identifiers and
    comments are left alone, and bound text is never scanned again.

    Examples
    --------
    >>> print(inline_params("SELECT {x:Nullable(String)}, '{x:String}'", {"x": "\\\\N"}))
    SELECT CAST(NULL AS Nullable(String)), '{x:String}'
    >>> print(inline_params("SELECT {ids:Array(UInt64)}", {"ids": "[1,2]"}))
    SELECT CAST('[1,2]' AS Array(UInt64))
    >>> inline_params("SELECT {y:String}", {})
    Traceback (most recent call last):
    ...
    ValueError: query parameter 'y' is used in the SQL but not given; given: []

    """
    if not isinstance(sql, str):
        raise TypeError(f"sql must be a str, got {type(sql).__name__}")
    params = dict(params or {})
    for key, value in params.items():
        if not isinstance(value, str):
            raise TypeError(f"query parameter {key!r} must be in text form (a str), got {type(value).__name__}")

    def bind(match: re.Match[str]) -> str:
        name, type_name = match.group(1), match.group(2)
        if name is None:
            return match.group(0)
        if name not in params:
            raise ValueError(f"query parameter {name!r} is used in the SQL but not given; given: {sorted(params)}")
        return _bound_value(name, type_name, params[name])

    return _TOKENS.sub(bind, sql)


def _retryable(exc: BaseException) -> bool:
    from clickhouse_driver import errors

    if isinstance(exc, (errors.NetworkError, errors.SocketTimeoutError, errors.UnexpectedPacketFromServerError, EOFError, OSError)):
        return True
    return isinstance(exc, errors.Error) and getattr(exc, "code", None) in _RETRYABLE_CODES


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    text = _STACK_TRACE.sub("", str(text)).strip()
    code = getattr(exc, "code", None)
    return f"Code {code}: {text}" if code is not None and not text.startswith("Code") else text


def _python_values(arr: pa.Array, ch_type: str) -> list[Any]:
    """One Arrow column as the Python values clickhouse-driver writes into ``ch_type``."""
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    base = _base_type(ch_type)
    if pa.types.is_timestamp(arr.type) and base.startswith("DateTime"):
        # Integer epochs skip clickhouse-driver's per-row datetime/timezone conversion.
        per_second = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[arr.type.unit]
        m = re.fullmatch(r"DateTime64\(\s*(\d+).*\)", base)
        target = 10 ** int(m.group(1)) if m else 1
        raw = np.asarray(arr.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64)
        scaled = raw * (target // per_second) if target >= per_second else np.floor_divide(raw, per_second // target)
        return _with_nulls(scaled.tolist(), arr)
    if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
        if arr.null_count == 0:
            return arr.to_numpy(zero_copy_only=False).tolist()
        return arr.to_pylist()
    if pa.types.is_map(arr.type):
        return [{} if row is None else dict(row) for row in arr.to_pylist()]
    return arr.to_pylist()


def _with_nulls(values: list[Any], arr: pa.Array) -> list[Any]:
    if arr.null_count:
        for i in np.flatnonzero(np.asarray(arr.is_null().to_numpy(zero_copy_only=False))):
            values[int(i)] = None
    return values


def _strings_type(t: pa.DataType) -> pa.DataType:
    if pa.types.is_binary(t):
        return pa.string()
    if pa.types.is_large_binary(t):
        return pa.large_string()
    if pa.types.is_list(t):
        return pa.list_(_strings_type(t.value_type))
    if pa.types.is_large_list(t):
        return pa.large_list(_strings_type(t.value_type))
    if pa.types.is_map(t):
        return pa.map_(_strings_type(t.key_type), _strings_type(t.item_type))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _strings_type(f.type), f.nullable) for f in t])
    return t


def _result_table(table: pa.Table, timezone: str | None) -> pa.Table:
    """Strings as Arrow ``string`` (read as bytes, so invalid UTF-8 survives); naive times localised."""
    for i, f in enumerate(table.schema):
        column = table.column(i)
        if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type):
            target = _strings_type(f.type)
            # Not validated here: Store retypes columns holding invalid UTF-8 back to binary.
            column = pa.chunked_array([c.view(target) for c in column.chunks], target)
        elif _strings_type(f.type) != f.type:
            try:
                column = column.cast(_strings_type(f.type))
            except pa.ArrowInvalid:
                continue
        elif pa.types.is_timestamp(f.type) and f.type.tz is None and timezone:
            column = pc.assume_timezone(column, timezone) if timezone != "UTC" else column.cast(pa.timestamp(f.type.unit, "UTC"))
        else:
            continue
        table = table.set_column(i, pa.field(f.name, column.type, f.nullable), column)
    return table


@dataclass
class _Batch:
    table: str
    data: pa.Table
    settings: dict[str, int | str]

    @property
    def rows(self) -> int:
        return self.data.num_rows


class ServerBackend:
    """:class:`~driftline.storage.base.Backend` on a ClickHouse server (native protocol).

    Parameters
    ----------
    url_or_params
        A ``clickhouse://user:password@host:9000/db`` URL, a :class:`ServerAddress`, or a mapping
        of its fields (``host``, ``port``, ``database``, ``user``, ``password``).
    connect_timeout
        Seconds to wait for a TCP connection.
    send_receive_timeout
        Seconds to wait on a socket read or write once connected.
    retries
        Retries of a statement or query after a network or server-unavailable error, before
        :class:`StoreUnavailableError`. Buffered inserts are retried without limit.
    backoff
        Base of the exponential backoff, in seconds.
    max_backoff
        Longest sleep between two attempts, in seconds.
    buffer_rows
        Most rows held in the local buffer while the server is unreachable.
    buffer_timeout
        Seconds ``insert`` blocks on a full buffer before raising :class:`StoreUnavailableError`.
    close_timeout
        Seconds ``close`` waits for the backlog to drain.

    Raises
    ------
    StoreUnavailableError
        The server did not answer within ``retries``.
    StoreError
        The server refused the connection (e.g. a wrong password).

    """

    def __init__(
        self,
        url_or_params: str | ServerAddress | Mapping[str, Any],
        *,
        connect_timeout: float = 10.0,
        send_receive_timeout: float = 300.0,
        retries: int = 5,
        backoff: float = 0.2,
        max_backoff: float = 10.0,
        buffer_rows: int = 1_000_000,
        buffer_timeout: float = 60.0,
        close_timeout: float = 60.0,
    ) -> None:
        from clickhouse_driver import Client

        if isinstance(url_or_params, ServerAddress):
            address = url_or_params
        elif isinstance(url_or_params, str):
            address = ServerAddress.from_url(url_or_params)
        elif isinstance(url_or_params, Mapping):
            address = ServerAddress(**url_or_params)
        else:
            raise TypeError(f"url_or_params must be a clickhouse:// URL, a ServerAddress or a mapping, got {type(url_or_params).__name__}")
        for name, value in (("connect_timeout", connect_timeout), ("send_receive_timeout", send_receive_timeout),
                            ("backoff", backoff), ("buffer_timeout", buffer_timeout), ("close_timeout", close_timeout)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a number > 0, got {value!r}")
        if isinstance(max_backoff, bool) or not isinstance(max_backoff, (int, float)) or not backoff <= max_backoff < math.inf:
            raise ValueError(f"max_backoff must be a number >= backoff ({backoff}), got {max_backoff!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an int >= 0, got {retries!r}")
        if isinstance(buffer_rows, bool) or not isinstance(buffer_rows, int) or buffer_rows < 1:
            raise ValueError(f"buffer_rows must be an int >= 1, got {buffer_rows!r}")
        self.address = address
        self.database = address.database
        self.retries = retries
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.buffer_rows = buffer_rows
        self.buffer_timeout = float(buffer_timeout)
        self.close_timeout = float(close_timeout)
        self._client = Client(
            address.host, port=address.port, user=address.user, password=address.password, database="default",
            connect_timeout=connect_timeout, send_receive_timeout=send_receive_timeout, client_name="driftline",
        )
        self._io = threading.Lock()
        self._cond = threading.Condition()
        self._queue: deque[_Batch] = deque()
        self._buffered_rows = 0
        self._drainer: threading.Thread | None = None
        self._kick = False
        self._stop = False
        self._closed = False
        self._random = random.Random()
        self._rejected: list[str] = []
        self._last_error = ""
        self._counts = {"sent_rows": 0, "retries": 0, "failures": 0, "rejected_rows": 0}
        self._types: dict[str, dict[str, str]] = {}
        try:
            version, self.timezone = self._call(lambda c: c.execute("SELECT version(), timezone()")[0], "connect")
            names = self._call(lambda c: c.execute("SELECT name FROM system.settings"), "connect")
        except BaseException:
            self._client.disconnect()
            raise
        self.server_version = tuple(int(p) for p in re.findall(r"\d+", version)[:3])
        self._known_settings = frozenset(n for (n,) in names)
        logger.info("connected to ClickHouse %s at %s:%s", version, address.host, address.port)

    # -- Backend protocol ------------------------------------------------------------------

    def execute(self, sql: str) -> None:
        """Run a statement; retried on network errors, so it should be idempotent."""
        self._check_open()
        self._call(lambda c: c.execute(sql), sql)

    def query(self, sql: str, params: Mapping[str, str] | None = None) -> pa.Table:
        """Run a query with ``{name:Type}`` placeholders bound by :func:`inline_params`."""
        self._check_open()
        text = inline_params(sql, params)
        table = self._call(
            lambda c: c.query_arrow(text, settings={"strings_as_bytes": True}, field_metadata=False), text
        )
        return _result_table(table, self.timezone)

    def insert(self, table: str, data: pa.Table, settings: Mapping[str, int | str]) -> None:
        """Send ``data`` now, or buffer it while the server is unreachable.

        Raises
        ------
        StoreError
            The server rejected the batch (an SQL error), or rejected an earlier buffered batch.
        StoreUnavailableError
            The buffer stayed full for ``buffer_timeout`` seconds; ``data`` was not stored.

        """
        self._check_open()
        if not isinstance(data, pa.Table):
            raise TypeError(f"data must be a pyarrow.Table, got {type(data).__name__}")
        self._raise_rejected("; this batch was not sent")
        if data.num_rows == 0:
            return
        batch = _Batch(table, data, {k: v for k, v in settings.items() if k in self._known_settings})
        with self._cond:
            direct = not self._queue
        if direct:
            try:
                self._send(batch)
                return
            except Exception as exc:
                if not _retryable(exc):
                    self._count("failures")
                    raise StoreError(f"insert into {table} failed: {_reason(exc)}") from None
                self._last_error = _reason(exc)
                logger.warning(
                    "ClickHouse at %s:%s is unreachable (%s); buffering inserts", self.address.host, self.address.port, self._last_error
                )
        self._enqueue(batch)

    def close(self) -> None:
        """Flush the backlog (up to ``close_timeout``), stop the sender and disconnect; idempotent.

        Raises
        ------
        StoreUnavailableError
            Rows were still buffered after ``close_timeout`` seconds; they are lost.

        """
        if self._closed:
            return
        error: StoreError | None = None
        try:
            self.flush(self.close_timeout)
        except StoreError as exc:
            error = exc
        with self._cond:
            self._closed = True
            self._stop = True
            lost = self._buffered_rows
            self._queue.clear()
            self._buffered_rows = 0
            self._cond.notify_all()
            drainer = self._drainer
        if drainer is not None:
            drainer.join(timeout=self.max_backoff + 5)
        with self._io:
            self._client.disconnect()
        if error is not None:
            if lost:
                raise StoreUnavailableError(f"closed with {lost} rows not delivered to {self.address.url}: {error}") from None
            raise error

    # -- buffer ------------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every buffered batch reached the server (at most ``timeout`` seconds).

        Raises
        ------
        StoreUnavailableError
            Rows are still buffered when ``timeout`` elapses (they stay buffered).
        StoreError
            The server rejected a buffered batch since the last call.

        """
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0):
            raise ValueError(f"timeout must be a number >= 0 or None, got {timeout!r}")
        with self._cond:
            self._kick = True
            self._cond.notify_all()
            drained = self._cond.wait_for(lambda: not self._queue, timeout)
            rows, batches = self._buffered_rows, len(self._queue)
        if not drained:
            raise StoreUnavailableError(
                f"{rows} rows in {batches} batches are still buffered after {timeout} s: ClickHouse at "
                f"{self.address.host}:{self.address.port} is unreachable ({self._last_error})"
            )
        self._raise_rejected()

    def stats(self) -> dict[str, int]:
        """Counters: ``sent_rows``, ``buffered_rows``, ``buffered_batches``, ``retries``, ``failures``, ``rejected_rows``.

        ``retries`` counts attempts repeated after a network or server-unavailable error;
        ``failures`` counts operations that raised or buffered batches the server rejected.
        """
        with self._cond:
            return {**self._counts, "buffered_rows": self._buffered_rows, "buffered_batches": len(self._queue)}

    def _enqueue(self, batch: _Batch) -> None:
        with self._cond:
            if batch.rows > self.buffer_rows:
                self._counts["failures"] += 1
                raise StoreUnavailableError(
                    f"ClickHouse at {self.address.host}:{self.address.port} is unreachable ({self._last_error}) and a "
                    f"batch of {batch.rows} rows exceeds buffer_rows={self.buffer_rows}; the batch was not stored"
                )
            fits = self._cond.wait_for(
                lambda: self._stop or self._buffered_rows + batch.rows <= self.buffer_rows, self.buffer_timeout
            )
            if self._stop:
                raise StoreError("the store is closed")
            if not fits:
                self._counts["failures"] += 1
                raise StoreUnavailableError(
                    f"the local buffer is full ({self._buffered_rows} of buffer_rows={self.buffer_rows} rows) and "
                    f"ClickHouse at {self.address.host}:{self.address.port} stayed unreachable for "
                    f"{self.buffer_timeout} s ({self._last_error}); the batch of {batch.rows} rows was not stored"
                )
            self._queue.append(batch)
            self._buffered_rows += batch.rows
            if self._drainer is None:
                self._drainer = threading.Thread(target=self._drain, name="driftline-clickhouse-drain", daemon=True)
                self._drainer.start()

    def _drain(self) -> None:
        attempt = 0
        while True:
            with self._cond:
                if self._stop or not self._queue:
                    self._drainer = None
                    self._cond.notify_all()
                    return
                batch = self._queue[0]
            try:
                self._send(batch)
            except Exception as exc:
                if _retryable(exc):
                    self._last_error = _reason(exc)
                    delay = self._delay(attempt)
                    attempt += 1
                    with self._cond:
                        self._counts["retries"] += 1
                        self._cond.wait_for(lambda: self._stop or self._kick, delay)
                        self._kick = False
                    continue
                message = f"insert of {batch.rows} buffered rows into {batch.table} was rejected: {_reason(exc)}"
                logger.error("%s", message)
                with self._cond:
                    self._queue.popleft()
                    self._buffered_rows -= batch.rows
                    self._counts["failures"] += 1
                    self._counts["rejected_rows"] += batch.rows
                    self._rejected.append(message)
                    self._cond.notify_all()
                continue
            if attempt:
                logger.info("ClickHouse at %s:%s answers again; sending the backlog", self.address.host, self.address.port)
            attempt = 0
            with self._cond:
                self._queue.popleft()
                self._buffered_rows -= batch.rows
                self._cond.notify_all()

    def _raise_rejected(self, suffix: str = "") -> None:
        with self._cond:
            rejected, self._rejected = self._rejected, []
        if rejected:
            raise StoreError("; ".join(rejected) + suffix)

    # -- transport ---------------------------------------------------------------------------

    def _send(self, batch: _Batch) -> None:
        """One attempt to insert ``batch``; raises the driver's exception on failure."""
        with self._io:
            names = batch.data.column_names
            types = self._types.get(batch.table)
            if types is None or any(n not in types for n in names):
                types = {row[0]: row[1] for row in self._client.execute(f"DESCRIBE TABLE {batch.table}")}
                self._types[batch.table] = types
            missing = [n for n in names if n not in types]
            if missing:
                raise _SqlError(f"{batch.table} has no columns {missing}; columns are {list(types)}")
            try:
                columns = [_python_values(batch.data.column(n).combine_chunks(), types[n]) for n in names]
            except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
                raise _SqlError(f"cannot convert the batch for {batch.table}: {exc}") from None
            sql = f"INSERT INTO {batch.table} ({', '.join(quote_identifier(n) for n in names)}) VALUES"
            try:
                self._client.execute(sql, columns, columnar=True, settings=batch.settings or None)
            except Exception as exc:
                if not _retryable(exc):
                    self._types.pop(batch.table, None)
                raise
        with self._cond:
            self._counts["sent_rows"] += batch.rows

    def _call(self, fn: Callable[[Any], T], what: str) -> T:
        for attempt in range(self.retries + 1):
            try:
                with self._io:
                    return fn(self._client)
            except Exception as exc:
                reason = _reason(exc)
                if not _retryable(exc):
                    self._count("failures")
                    raise StoreError(f"{reason}\nquery: {what}") from None
                self._last_error = reason
                if attempt == self.retries:
                    self._count("failures")
                    raise StoreUnavailableError(
                        f"ClickHouse at {self.address.host}:{self.address.port} did not answer after "
                        f"{self.retries + 1} attempts: {reason}"
                    ) from None
                self._count("retries")
                time.sleep(self._delay(attempt))
        raise AssertionError("unreachable")

    def _delay(self, attempt: int) -> float:
        """Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter", 2015)."""
        return self._random.uniform(0.0, min(self.max_backoff, self.backoff * 2.0 ** min(attempt, 62)))

    def _count(self, name: str) -> None:
        with self._cond:
            self._counts[name] += 1

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the store is closed")

    def __enter__(self) -> ServerBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ServerBackend({self.address.url!r})"


class _SqlError(Exception):
    """A batch that no retry can fix (unknown column, unconvertible values)."""
