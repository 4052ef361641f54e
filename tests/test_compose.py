"""docker-compose.yml: validated by Debian's docker-compose 1.29 and checked against the CLI.

No Docker engine runs on the test machines, so the stack is not started here: the file is
validated with ``docker-compose config -q`` (installed by ``scripts/test.sh``), and its services,
health checks, volumes and every ``driftline`` command line are checked against the click CLI, so
that a renamed option breaks this test instead of the stack.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from driftline.cli import main
from driftline.storage.server import ServerAddress

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DRIFTLINE_SERVICES = ("simulator", "worker")
_DEFAULTED = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*):-([^}]*)\}")


def required() -> bool:
    return os.environ.get("DRIFTLINE_REQUIRE_SERVICES") == "1"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def interpolate(text: str) -> str:
    """Compose's ``${VAR:-default}`` with the defaults (the environment of the test is not the stack's)."""
    return _DEFAULTED.sub(lambda m: m.group(2), text)


def command(service: dict) -> list[str]:
    cmd = service["command"]
    return [interpolate(str(a)) for a in (cmd if isinstance(cmd, list) else cmd.split())]


def test_docker_compose_config_validates():
    binary = shutil.which("docker-compose")
    if binary is None:
        message = "docker-compose is not installed; as root: apt-get install -y docker-compose (scripts/test.sh does)"
        if required():
            pytest.fail(f"{message} (DRIFTLINE_REQUIRE_SERVICES=1)", pytrace=False)
        pytest.skip(message)
    result = subprocess.run([binary, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    resolved = subprocess.run([binary, "-f", str(COMPOSE), "config"], capture_output=True, text=True, timeout=60, cwd=ROOT,
                              env={**os.environ, "DRIFTLINE_CLICKHOUSE_PASSWORD": "s3cret"})
    assert resolved.returncode == 0, resolved.stderr
    services = yaml.safe_load(resolved.stdout)["services"]
    assert "clickhouse://driftline:s3cret@clickhouse:9000/driftline" in services["worker"]["command"]
    assert services["clickhouse"]["environment"]["CLICKHOUSE_PASSWORD"] == "s3cret"
    assert services["worker"]["deploy"]["replicas"] == 2


def test_services_images_and_health_checks(compose):
    services = compose["services"]
    assert set(services) == {"kafka", "clickhouse", "simulator", "worker"}

    kafka = services["kafka"]
    assert re.fullmatch(r"apache/kafka:4\.\d+(\.\d+)?", kafka["image"])
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert len(env["CLUSTER_ID"]) == 22, "kafka-storage format takes a base64url-encoded 16-byte id"
    assert re.search(r"/opt/kafka/bin/kafka-(broker-api-versions|topics)\.sh --bootstrap-server kafka:9092", " ".join(kafka["healthcheck"]["test"]))

    clickhouse = services["clickhouse"]
    image, tag = clickhouse["image"].split(":")
    assert image == "clickhouse/clickhouse-server"
    assert int(tag.split(".")[0]) >= 24, "driftline's schema needs ClickHouse 24.x or later"
    assert {"CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD", "CLICKHOUSE_DB"} <= set(clickhouse["environment"])
    check = " ".join(clickhouse["healthcheck"]["test"])
    assert "SELECT 1" in check or "/ping" in check

    for name in DRIFTLINE_SERVICES:
        assert services[name]["build"] == "."
        assert services[name]["image"] == "driftline:latest"
    assert services["simulator"]["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    assert services["worker"]["depends_on"] == {
        name: {"condition": "service_healthy"} for name in ("kafka", "clickhouse", "simulator")
    }
    assert services["worker"]["deploy"]["replicas"] == 2
    for name, service in services.items():
        if name != "worker":
            assert {"test", "interval", "retries"} <= set(service["healthcheck"]), name


def test_named_volumes_are_declared_and_mounted(compose):
    declared = set(compose["volumes"])
    mounts = {name: dict(v.split(":")[:2] for v in s.get("volumes", [])) for name, s in compose["services"].items()}
    assert mounts["kafka"] == {"kafka-data": compose["services"]["kafka"]["environment"]["KAFKA_LOG_DIRS"]}
    assert mounts["clickhouse"] == {"clickhouse-data": "/var/lib/clickhouse"}
    assert mounts["simulator"] == mounts["worker"] == {"driftline-data": "/data"}
    assert declared == {v for m in mounts.values() for v in m}


def test_simulator_writes_the_spec_the_worker_reads(compose):
    services = compose["services"]
    sim, worker = command(services["simulator"]), command(services["worker"])
    out = sim[sim.index("--out") + 1]
    spec = worker[worker.index("--spec") + 1]
    assert spec == f"{out}/spec.yaml"
    assert services["simulator"]["healthcheck"]["test"] == ["CMD", "test", "-f", spec]
    assert sim[sim.index("--broker") + 1] == worker[worker.index("--broker") + 1] == "kafka:9092"


def test_worker_store_url_matches_the_clickhouse_service(compose):
    services = compose["services"]
    worker = command(services["worker"])
    address = ServerAddress.from_url(worker[worker.index("--store") + 1])
    env = {k: interpolate(str(v)) for k, v in services["clickhouse"]["environment"].items()}
    assert (address.host, address.port) == ("clickhouse", 9000)
    assert (address.user, address.password, address.database) == (env["CLICKHOUSE_USER"], env["CLICKHOUSE_PASSWORD"], env["CLICKHOUSE_DB"])


def test_dockerfile_installs_driftline_on_python_311_slim():
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    assert re.search(r"pip install \.", text)
    assert 'ENTRYPOINT ["driftline"]' in text


@pytest.mark.parametrize("service", DRIFTLINE_SERVICES)
def test_command_lines_use_options_the_cli_has(compose, service):
    args = command(compose["services"][service])
    name = args[0]
    result = CliRunner().invoke(main, [name, "--help"])
    if name not in main.commands:
        message = f"`driftline {name}` does not exist yet (docker-compose.yml's {service} runs it)"
        if required():
            pytest.fail(f"{message} (DRIFTLINE_REQUIRE_SERVICES=1)", pytrace=False)
        pytest.skip(message)
    assert result.exit_code == 0, result.output
    options = {opt: p for p in main.commands[name].params if isinstance(p, click.Option) for opt in p.opts}
    i = 1
    while i < len(args):
        token = args[i]
        assert token.startswith("--"), f"{service}: unexpected argument {token!r} in {args}"
        assert token in options, f"{service}: `driftline {name}` has no option {token}; it has {sorted(options)}"
        assert token in result.output
        if options[token].is_flag:
            i += 1
            continue
        assert i + 1 < len(args) and not args[i + 1].startswith("--"), f"{service}: {token} needs a value"
        if not isinstance(options[token].type, click.Path):  # paths name files inside the container
            options[token].type.convert(args[i + 1], None, None)
        i += 2
