#!/usr/bin/env bash
# Install driftline with its test dependencies, start the services the tests need, run the suite.
# This is the README's test command and what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -e ".[test]"
# Real services for the integration tests: a KRaft Kafka broker and a ClickHouse server.
bash scripts/kafka.sh start &
kafka=$!
bash scripts/clickhouse-server.sh start
# Debian's docker-compose (1.29) validates docker-compose.yml in tests/test_compose.py; it needs no
# Docker engine. Installed after the ClickHouse script, which may hold the apt/dpkg lock before.
if ! command -v docker-compose >/dev/null && [ "$(id -u)" = 0 ]; then
    apt_log="${TMPDIR:-/tmp}/driftline-docker-compose-apt.log"
    apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker-compose; }
    if ! apt_install >"$apt_log" 2>&1; then
        { DEBIAN_FRONTEND=noninteractive apt-get update -q && apt_install; } >>"$apt_log" 2>&1 ||
            { tail -n 20 "$apt_log" >&2; echo "apt-get install docker-compose failed (log: $apt_log)" >&2; }
    fi
fi
wait "$kafka"
export DRIFTLINE_REQUIRE_SERVICES=1
set +e
python3 -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests"
    exit 1
fi
exit "$status"
