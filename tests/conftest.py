"""Shared pytest fixtures for the real services the integration tests run against.

``kafka_bootstrap`` and ``clickhouse_server`` reuse a server that already answers on 127.0.0.1
(started by ``scripts/kafka.sh start`` and ``scripts/clickhouse-server.sh start``). When none
answers, the tests that need it are skipped with the command to run, or fail when
``DRIFTLINE_REQUIRE_SERVICES=1`` (for CI, so that a missing service cannot pass as a skip).
Addresses follow the scripts' variables: ``DRIFTLINE_KAFKA_HOST``/``DRIFTLINE_KAFKA_PORT`` and
``DRIFTLINE_CLICKHOUSE_HOST``/``DRIFTLINE_CLICKHOUSE_PORT``.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from typing import NamedTuple

import pytest


class ClickHouseServer(NamedTuple):
    """Where a clickhouse-server answers the native protocol.

    Examples
    --------
    >>> ClickHouseServer("127.0.0.1", 9000).url
    'clickhouse://127.0.0.1:9000/default'
    """

    host: str
    port: int

    @property
    def url(self) -> str:
        """The address as a URL for ``clickhouse_driver.Client.from_url``."""
        return f"clickhouse://{self.host}:{self.port}/default"


def _address(service: str, default_port: int) -> tuple[str, int]:
    host = os.environ.get(f"DRIFTLINE_{service}_HOST", "127.0.0.1")
    port = int(os.environ.get(f"DRIFTLINE_{service}_PORT", str(default_port)))
    return host, port


def _unavailable(message: str) -> None:
    if os.environ.get("DRIFTLINE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message} (DRIFTLINE_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(message)


def _tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _kafka_answers(host: str, port: int) -> str | None:
    if not _tcp_open(host, port):
        return "nothing listens there"
    from kafka import KafkaAdminClient

    options: dict[str, object] = {"bootstrap_servers": f"{host}:{port}", "request_timeout_ms": 5000}
    for name in ("bootstrap_timeout_ms", "api_version_auto_timeout_ms"):
        if name in KafkaAdminClient.DEFAULT_CONFIG:
            options[name] = 5000
    try:
        admin = KafkaAdminClient(**options)
        try:
            brokers = admin.describe_cluster().get("brokers") or []
        finally:
            admin.close()
    except Exception as exc:  # any failure to answer means "no usable broker"
        return f"{type(exc).__name__}: {exc}"
    return None if brokers else "no broker registered"


def _clickhouse_answers(host: str, port: int) -> str | None:
    if not _tcp_open(host, port):
        return "nothing listens there"
    from clickhouse_driver import Client

    client = Client(host, port=port, connect_timeout=3, send_receive_timeout=10)
    try:
        if client.execute("SELECT 1") != [(1,)]:
            return "SELECT 1 did not return 1"
    except Exception as exc:  # any failure to answer means "no usable server"
        return f"{type(exc).__name__}: {exc}"
    finally:
        client.disconnect()
    return None


# Every Kafka topic and consumer group a test session makes carries this token (through
# ``kafka_name``), so the session deletes its own topics at its end and nobody else's.
SESSION_TOKEN = f"pt{uuid.uuid4().hex[:6]}"


def _delete_session_topics(bootstrap: str) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=60_000)
    try:
        mine = [topic for topic in admin.list_topics() if SESSION_TOKEN in topic]
        if mine:
            admin.delete_topics(mine)
    finally:
        admin.close()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """The ``host:port`` of a Kafka broker that answers, for ``bootstrap_servers``.

    At the end of the session, the topics named with :func:`kafka_name` (the tests', and those
    Faust and the workers derive from such a group or prefix) are deleted: every run makes
    hundreds, and a broker that keeps them all takes minutes to start and grows by gigabytes a run.
    """
    host, port = _address("KAFKA", 9092)
    problem = _kafka_answers(host, port)
    if problem is not None:
        _unavailable(f"no Kafka broker answers at {host}:{port} ({problem}); run: bash scripts/kafka.sh start")
    bootstrap = f"{host}:{port}"
    yield bootstrap
    _delete_session_topics(bootstrap)


@pytest.fixture(scope="session")
def kafka_name() -> Callable[[str], str]:
    """A function making a new topic, prefix or group name from a stem, marked as this session's."""
    return lambda stem: f"{stem}-{SESSION_TOKEN}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def clickhouse_server() -> Iterator[ClickHouseServer]:
    """A clickhouse-server that answers ``SELECT 1`` over the native protocol."""
    host, port = _address("CLICKHOUSE", 9000)
    problem = _clickhouse_answers(host, port)
    if problem is not None:
        _unavailable(
            f"no clickhouse-server answers at {host}:{port} ({problem}); "
            "run: bash scripts/clickhouse-server.sh start"
        )
    yield ClickHouseServer(host, port)
