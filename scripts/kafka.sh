#!/usr/bin/env bash
# Single-node Apache Kafka 4.x (KRaft, no ZooKeeper) for development and CI, on 127.0.0.1.
#
#   bash scripts/kafka.sh start    resolve Kafka from Maven Central (once), format the KRaft log
#                                  directory (once), start the broker, wait until it answers
#   bash scripts/kafka.sh stop     stop the broker this script started
#   bash scripts/kafka.sh status   exit 0 if a broker answers at the configured address
#
# Idempotent: `start` is a no-op when a broker already answers; `stop` when none runs.
# Needs Java 17+, Maven and python3. Readiness = an ApiVersions round trip over a raw socket,
# then, when kafka-python is importable, a DescribeCluster that lists a registered broker.
#
# Environment (all optional):
#   DRIFTLINE_CACHE                  cache root                   (~/.cache/driftline)
#   DRIFTLINE_KAFKA_DIR              jars, config, data, log, pid ($DRIFTLINE_CACHE/kafka)
#   DRIFTLINE_KAFKA_DATA             KRaft log directory          ($DRIFTLINE_KAFKA_DIR/data)
#   DRIFTLINE_KAFKA_VERSION          org.apache.kafka:kafka_2.13  (4.1.1)
#   DRIFTLINE_KAFKA_HOST             listener address             (127.0.0.1)
#   DRIFTLINE_KAFKA_PORT             broker port                  (9092)
#   DRIFTLINE_KAFKA_CONTROLLER_PORT  KRaft controller port        (9093)
#   DRIFTLINE_KAFKA_PARTITIONS       num.partitions default       (4)
#   DRIFTLINE_KAFKA_HEAP             JVM heap options             (-Xms256m -Xmx512m)
#   DRIFTLINE_KAFKA_TIMEOUT          seconds to wait for start    (120)
#   DRIFTLINE_MAVEN_ARGS             extra mvn arguments, e.g. -Dmaven.repo.local=/tmp/m2
#   PYTHON                           interpreter for the probe    (python3)
#   JAVA_HOME                        JDK to run                   (java on PATH)
set -euo pipefail

CACHE="${DRIFTLINE_CACHE:-${HOME:-/tmp}/.cache/driftline}"
KDIR="${DRIFTLINE_KAFKA_DIR:-$CACHE/kafka}"
DATA="${DRIFTLINE_KAFKA_DATA:-$KDIR/data}"
VERSION="${DRIFTLINE_KAFKA_VERSION:-4.1.1}"
LOG4J_VERSION="${DRIFTLINE_LOG4J_VERSION:-2.24.3}"
HOST="${DRIFTLINE_KAFKA_HOST:-127.0.0.1}"
PORT="${DRIFTLINE_KAFKA_PORT:-9092}"
CPORT="${DRIFTLINE_KAFKA_CONTROLLER_PORT:-9093}"
PARTITIONS="${DRIFTLINE_KAFKA_PARTITIONS:-4}"
HEAP="${DRIFTLINE_KAFKA_HEAP:--Xms256m -Xmx512m}"
TIMEOUT="${DRIFTLINE_KAFKA_TIMEOUT:-120}"
PY="${PYTHON:-python3}"
JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"

LIB="$KDIR/lib-$VERSION"
CONF="$KDIR/server.properties"
LOG4J_CONF="$KDIR/log4j2.properties"
PIDFILE="$KDIR/kafka.pid"
SERVICE="Kafka"
TAG="kafka"
STATE_DIR="$KDIR"
CMDLINE_MATCH="kafka.Kafka $CONF"
# shellcheck source=scripts/_service.sh
source "$(dirname "${BASH_SOURCE[0]}")/_service.sh"
LOGFILE="$KDIR/kafka.log"


show_log() {
    [[ -s "$1" ]] || return 0
    if grep -qE '\b(ERROR|FATAL)\b' "$1"; then
        log "first errors in $1:"
        grep -m 5 -A 2 -E '\b(ERROR|FATAL)\b' "$1" | cut -c1-400 >&2
    fi
    log "tail of $1:"
    tail -n 20 "$1" | cut -c1-400 >&2
}

probe() {
    local err=/dev/null
    [[ -d "$KDIR" ]] && err="$KDIR/probe.err"
    timeout 20 "$PY" - "$HOST" "$PORT" >/dev/null 2>"$err" <<'EOF'
import socket, struct, sys

host, port = sys.argv[1], int(sys.argv[2])
client_id = b"driftline-probe"
body = struct.pack(">hhih", 18, 0, 7, len(client_id)) + client_id
with socket.create_connection((host, port), timeout=5) as s:
    s.settimeout(5)
    s.sendall(struct.pack(">i", len(body)) + body)
    head = b""
    while len(head) < 10:
        chunk = s.recv(10 - len(head))
        if not chunk:
            sys.exit("connection closed before the ApiVersions response")
        head += chunk
_, correlation_id, error_code = struct.unpack(">iih", head)
if correlation_id != 7 or error_code != 0:
    sys.exit(f"ApiVersions answered correlation_id={correlation_id} error_code={error_code}")
try:
    from kafka import KafkaAdminClient
except ImportError:
    sys.exit(0)
options = {"bootstrap_servers": f"{host}:{port}", "client_id": "driftline-probe", "request_timeout_ms": 5000}
for name in ("bootstrap_timeout_ms", "api_version_auto_timeout_ms"):
    if name in KafkaAdminClient.DEFAULT_CONFIG:
        options[name] = 5000
admin = KafkaAdminClient(**options)
try:
    brokers = admin.describe_cluster().get("brokers") or []
finally:
    admin.close()
sys.exit(0 if brokers else "no broker registered yet")
EOF
}


resolve() {
    [[ -f "$LIB/.complete" ]] && return 0
    command -v mvn >/dev/null || die "mvn not found: install Maven (apt-get install -y maven)"
    log "resolving org.apache.kafka:kafka_2.13:$VERSION with Maven into $LIB"
    local build="$KDIR/resolve-$VERSION" t0=$SECONDS
    rm -rf "$build" "$LIB"
    mkdir -p "$build"
    cat >"$build/pom.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>driftline.dev</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>$VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>$LOG4J_VERSION</version>
    </dependency>
  </dependencies>
</project>
EOF
    # shellcheck disable=SC2086
    if ! (cd "$build" && mvn -B -q -Dstyle.color=never ${DRIFTLINE_MAVEN_ARGS:-} dependency:copy-dependencies \
            -DincludeScope=runtime -DoutputDirectory="$LIB.tmp" >"$build/mvn.log" 2>&1); then
        show_log "$build/mvn.log"
        die "Maven could not resolve kafka_2.13:$VERSION (log: $build/mvn.log)"
    fi
    [[ -f "$LIB.tmp/kafka_2.13-$VERSION.jar" ]] || die "kafka_2.13-$VERSION.jar missing after resolution"
    mv "$LIB.tmp" "$LIB"
    touch "$LIB/.complete"
    local jars=("$LIB"/*.jar)
    log "resolved ${#jars[@]} jars in $((SECONDS - t0)) s"
}

write_config() {
    mkdir -p "$DATA"
    cat >"$CONF" <<EOF
# Written by scripts/kafka.sh on every start; edit the script, not this file.
node.id=1
process.roles=broker,controller
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CPORT
advertised.listeners=PLAINTEXT://$HOST:$PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
controller.quorum.voters=1@$HOST:$CPORT
log.dirs=$DATA
num.partitions=$PARTITIONS
auto.create.topics.enable=true
delete.topic.enable=true
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
log.retention.hours=72
EOF
    cat >"$LOG4J_CONF" <<'EOF'
status = warn
name = driftline-kafka
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.kafka_request.name = kafka.request.logger
logger.kafka_request.level = WARN
logger.state_change.name = state.change.logger
logger.state_change.level = WARN
logger.log_cleaner.name = kafka.log.LogCleaner
logger.log_cleaner.level = WARN
EOF
}

format_storage() {
    [[ -f "$DATA/meta.properties" ]] && return 0
    local cluster_id t0=$SECONDS
    cluster_id="$("$PY" -c 'import base64, uuid; print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))')"
    log "formatting KRaft log directory $DATA (cluster id $cluster_id)"
    # shellcheck disable=SC2086
    "$JAVA" $HEAP -Dlog4j2.configurationFile="$LOG4J_CONF" -cp "$LIB/*" kafka.tools.StorageTool \
        format --config "$CONF" --cluster-id "$cluster_id" --ignore-formatted >>"$LOGFILE" 2>&1 \
        || { show_log "$LOGFILE"; die "formatting $DATA failed"; }
    log "formatted in $((SECONDS - t0)) s"
}

start() {
    if probe; then
        log "a broker already answers at $HOST:$PORT"
        return 0
    fi
    command -v "$JAVA" >/dev/null || die "java not found: install a JDK 17+ (apt-get install -y openjdk-17-jre-headless)"
    mkdir -p "$KDIR"
    local pid
    if pid="$(our_pid)"; then
        log "pid $pid runs but does not answer yet; waiting for it"
    else
        resolve
        write_config
        [[ -f "$LOGFILE" ]] && mv -f "$LOGFILE" "$LOGFILE.1"
        format_storage
        log "starting Kafka $VERSION on $HOST:$PORT (log: $LOGFILE)"
        # shellcheck disable=SC2086
        setsid nohup "$JAVA" $HEAP -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
            -Dlog4j2.configurationFile="$LOG4J_CONF" -Dkafka.logs.dir="$KDIR" \
            -cp "$LIB/*" kafka.Kafka "$CONF" >>"$LOGFILE" 2>&1 </dev/null 9>&- &
        pid=$!
        echo "$pid" >"$PIDFILE"
    fi
    local t0=$SECONDS deadline=$((SECONDS + TIMEOUT))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            show_log "$LOGFILE"
            rm -f "$PIDFILE"
            die "Kafka exited during start-up (log: $LOGFILE)"
        fi
        if probe; then
            log "Kafka answers at $HOST:$PORT (pid $pid) after $((SECONDS - t0)) s"
            return 0
        fi
        sleep 1
    done
    show_log "$LOGFILE"
    [[ -s "$KDIR/probe.err" ]] && { log "last probe error:"; tail -n 5 "$KDIR/probe.err" >&2; }
    die "Kafka did not answer at $HOST:$PORT within ${TIMEOUT}s (pid $pid still runs; log: $LOGFILE)"
}




service_main "$@"
