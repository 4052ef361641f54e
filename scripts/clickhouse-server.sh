#!/usr/bin/env bash
# A local clickhouse-server (Debian's package, 18.16) for the clickhouse-driver network path.
#
#   bash scripts/clickhouse-server.sh start    install the package if missing (apt-get, as root),
#                                              write a private config, start the server without
#                                              systemd, wait until `SELECT 1` answers
#   bash scripts/clickhouse-server.sh stop     stop the server this script started
#   bash scripts/clickhouse-server.sh status   exit 0 if a server answers at the configured port
#
# Idempotent: `start` is a no-op when a server already answers; `stop` when none runs.
# 18.16 is a 2018 server: it lacks DateTime64, Map, TTL, codecs, window functions and
# toStartOfInterval, and `INSERT ... VALUES (literals)` sent as query text hangs; send rows as
# data (clickhouse-driver `execute("INSERT INTO t VALUES", rows)`).
#
# Environment (all optional):
#   DRIFTLINE_CACHE                   cache root                       (~/.cache/driftline)
#   DRIFTLINE_CLICKHOUSE_DIR          config, data, logs, pid          ($DRIFTLINE_CACHE/clickhouse)
#   DRIFTLINE_CLICKHOUSE_HOST         listen address                   (127.0.0.1)
#   DRIFTLINE_CLICKHOUSE_PORT         native TCP port                  (9000)
#   DRIFTLINE_CLICKHOUSE_HTTP_PORT    HTTP port                        (8123)
#   DRIFTLINE_CLICKHOUSE_TIMEOUT      seconds to wait for start        (60)
set -euo pipefail

CACHE="${DRIFTLINE_CACHE:-${HOME:-/tmp}/.cache/driftline}"
CHDIR="${DRIFTLINE_CLICKHOUSE_DIR:-$CACHE/clickhouse}"
HOST="${DRIFTLINE_CLICKHOUSE_HOST:-127.0.0.1}"
PORT="${DRIFTLINE_CLICKHOUSE_PORT:-9000}"
HTTP_PORT="${DRIFTLINE_CLICKHOUSE_HTTP_PORT:-8123}"
TIMEOUT="${DRIFTLINE_CLICKHOUSE_TIMEOUT:-60}"

DATA="$CHDIR/data"
LOGDIR="$CHDIR/log"
CONF="$CHDIR/config.xml"
USERS="$CHDIR/users.xml"
PIDFILE="$CHDIR/clickhouse-server.pid"
SERVICE="clickhouse-server"
TAG="clickhouse-server"
STATE_DIR="$CHDIR"
CMDLINE_MATCH="$CONF"
# shellcheck source=scripts/_service.sh
source "$(dirname "${BASH_SOURCE[0]}")/_service.sh"
CONSOLE="$LOGDIR/console.log"


server_bin() {
    command -v clickhouse-server 2>/dev/null || { [[ -x /usr/sbin/clickhouse-server ]] && echo /usr/sbin/clickhouse-server; }
}

probe() {
    if command -v clickhouse-client >/dev/null; then
        timeout 10 clickhouse-client --host "$HOST" --port "$PORT" --connect_timeout 2 -q 'SELECT 1' 2>/dev/null | grep -qx 1
    else
        timeout 10 "${PYTHON:-python3}" -c 'import sys; from clickhouse_driver import Client
sys.exit(0 if Client(sys.argv[1], port=int(sys.argv[2]), connect_timeout=2).execute("SELECT 1") == [(1,)] else 1)' \
            "$HOST" "$PORT" >/dev/null 2>&1
    fi
}


install_package() {
    [[ -n "$(server_bin)" ]] && command -v clickhouse-client >/dev/null && return 0
    [[ "$(id -u)" == 0 ]] || die "clickhouse-server is not installed; as root: apt-get install -y clickhouse-server clickhouse-client"
    log "installing Debian's clickhouse-server and clickhouse-client"
    local guard=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        # Keeps the package's postinst from starting a second server with /etc's config on our port.
        guard=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' >"$guard"
        chmod +x "$guard"
    fi
    local rc=0
    {
        DEBIAN_FRONTEND=noninteractive apt-get update -q &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
                clickhouse-server clickhouse-client
    } >"${TMPDIR:-/tmp}/driftline-clickhouse-apt.log" 2>&1 || rc=$?
    [[ -n "$guard" ]] && rm -f "$guard"
    if ((rc != 0)); then
        tail -n 30 "${TMPDIR:-/tmp}/driftline-clickhouse-apt.log" >&2
        die "apt-get install clickhouse-server clickhouse-client failed (exit $rc)"
    fi
}

write_config() {
    mkdir -p "$DATA/tmp" "$DATA/user_files" "$LOGDIR"
    cat >"$CONF" <<EOF
<?xml version="1.0"?>
<!-- Written by scripts/clickhouse-server.sh on every start; edit the script, not this file. -->
<yandex>
    <logger>
        <level>information</level>
        <log>$LOGDIR/clickhouse-server.log</log>
        <errorlog>$LOGDIR/clickhouse-server.err.log</errorlog>
        <size>100M</size>
        <count>3</count>
    </logger>
    <listen_host>$HOST</listen_host>
    <tcp_port>$PORT</tcp_port>
    <http_port>$HTTP_PORT</http_port>
    <path>$DATA/</path>
    <tmp_path>$DATA/tmp/</tmp_path>
    <user_files_path>$DATA/user_files/</user_files_path>
    <users_config>$USERS</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <max_connections>256</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>50</max_concurrent_queries>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mark_cache_size>268435456</mark_cache_size>
    <mlock_executable>false</mlock_executable>
    <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
    <max_session_timeout>3600</max_session_timeout>
    <default_session_timeout>60</default_session_timeout>
</yandex>
EOF
    cat >"$USERS" <<'EOF'
<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <use_uncompressed_cache>0</use_uncompressed_cache>
            <load_balancing>random</load_balancing>
            <allow_experimental_low_cardinality_type>1</allow_experimental_low_cardinality_type>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>::1</ip>
                <ip>127.0.0.1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
EOF
}

show_logs() {
    local f
    for f in "$CONSOLE" "$LOGDIR/clickhouse-server.err.log"; do
        [[ -s "$f" ]] && { log "tail of $f:"; tail -n 20 "$f" >&2; }
    done
    return 0
}

start() {
    if probe; then
        log "a server already answers at $HOST:$PORT"
        return 0
    fi
    local pid
    if pid="$(our_pid)"; then
        log "pid $pid runs but does not answer yet; waiting for it"
    else
        install_package
        write_config
        [[ -f "$CONSOLE" ]] && mv -f "$CONSOLE" "$CONSOLE.1"
        log "starting clickhouse-server on $HOST:$PORT (logs: $LOGDIR)"
        (
            cd "$CHDIR"
            setsid nohup "$(server_bin)" --config-file="$CONF" >>"$CONSOLE" 2>&1 </dev/null 9>&- &
            echo $! >"$PIDFILE"
        )
        pid="$(cat "$PIDFILE")"
    fi
    local deadline=$((SECONDS + TIMEOUT))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            show_logs
            rm -f "$PIDFILE"
            die "clickhouse-server exited during start-up"
        fi
        if probe; then
            log "clickhouse-server answers at $HOST:$PORT (pid $pid)"
            return 0
        fi
        sleep 0.5
    done
    show_logs
    die "clickhouse-server did not answer at $HOST:$PORT within ${TIMEOUT}s (pid $pid still runs)"
}




service_main "$@"
