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
