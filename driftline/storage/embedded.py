"""Embedded ClickHouse backend: chDB, in process, on one data directory.

chDB runs one ClickHouse engine per process, bound to one data directory. A second process
opening the same directory fails; ClickHouse writes the reason ("Cannot lock file .../status")
only to the process's stderr, so the connect step captures file descriptor 2 and turns that case
into :class:`~driftline.storage.base.StoreLockedError`.

Batches reach the engine as Arrow tables through chDB's ``Python()`` table function
(``INSERT INTO t SELECT ... FROM Python(batch)``), which reads the Arrow buffers without
serialising them.

Examples
--------
>>> import tempfile
>>> with tempfile.TemporaryDirectory() as d:
...     backend = ChdbBackend(d)
...     backend.query("SELECT {x:String} AS x", {"x": "it's"}).to_pylist()
...     backend.close()
[{'x': "it's"}]

"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import pyarrow as pa

from driftline.storage.base import StoreError, StoreLockedError, quote_identifier, quote_literal

__all__ = ["ChdbBackend"]

_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def _captured_stderr() -> Iterator[list[str]]:
    """Capture what native code writes to file descriptor 2 inside the block."""
    out: list[str] = []
    with _STDERR_LOCK, tempfile.TemporaryFile() as tmp:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.append(tmp.read().decode("utf-8", errors="replace"))


def _status_locked(path: Path) -> bool:
    """Whether another process holds ClickHouse's ``status`` file lock in ``path``."""
    status = path / "status"
    if not status.exists():
        return False
    fd = os.open(status, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


class ChdbBackend:
    """:class:`~driftline.storage.base.Backend` on an embedded chDB engine.

    Parameters
    ----------
    path
        Data directory; created if missing. One directory per process: a process that already
        has a store open on another directory must close it first.

    Raises
    ------
    StoreLockedError
        Another process uses ``path``.
    StoreError
        chDB could not start on ``path`` for another reason (the message says which).

    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import chdb

        self.path = Path(path).expanduser().resolve()
        if "?" in str(self.path):
            raise ValueError(f"path must not contain '?', got {str(self.path)!r}")
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"path must be a directory, got the file {str(self.path)!r}")
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        error: Exception | None = None
        with _captured_stderr() as captured:
            try:
                self._conn = chdb.connect(str(self.path))
            except Exception as exc:  # chDB raises RuntimeError subclasses with engine text
                error = exc
        text = captured[0] if captured else ""
        if error is None:
            if text:
                sys.stderr.write(text)
            return
        self._conn = None
        if "Cannot lock file" in text or _status_locked(self.path):
            raise StoreLockedError(str(self.path)) from None
        message = str(error)
        if "already initialized with path" in message:
            raise StoreError(
                f"this process already has an embedded store open on another directory; close it "
                f"before opening {self.path} (chDB runs one data directory per process): {message}"
            ) from None
        raise StoreError(f"cannot open the embedded store at {self.path}: {message} {text.strip()}".strip()) from None

    def execute(self, sql: str) -> None:
        self._run(sql, "CSV", None)

    def insert(self, table: str, data: pa.Table, settings: Mapping[str, int | str]) -> None:
        columns = ", ".join(quote_identifier(c) for c in data.column_names)
        options = ", ".join(f"{k} = {quote_literal(v) if isinstance(v, str) else int(v)}" for k, v in settings.items())
        _driftline_batch = data  # noqa: F841 - chDB's Python() resolves this name from the calling frame
        self._run(
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM Python(_driftline_batch)"
            + (f" SETTINGS {options}" if options else ""),
            "CSV",
            None,
        )

    def query(self, sql: str, params: Mapping[str, str] | None = None) -> pa.Table:
        return self._run(sql, "ArrowTable", params)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _run(self, sql: str, fmt: str, params: Mapping[str, str] | None):
        if self._conn is None:
            raise StoreError("the store is closed")
        try:
            # One statement at a time: with two threads inserting at once, Python() can read the
            # other thread's batch ("Unknown expression identifier", or the wrong rows when the
            # columns match; chDB 4.4).
            with self._lock:
                return self._conn.query(sql, fmt, params=dict(params or {}))
        except Exception as exc:  # chdb.ChdbError carries the engine's message
            raise StoreError(f"{exc}\nquery: {sql}") from None

    def __repr__(self) -> str:
        return f"ChdbBackend({str(self.path)!r})"
