# Shared by scripts/kafka.sh and scripts/clickhouse-server.sh: pid tracking, stop, status, the
# start/stop lock and the command dispatch. The sourcing script sets SERVICE (shown in messages),
# TAG (message prefix), STATE_DIR, PIDFILE, HOST, PORT and CMDLINE_MATCH (a fixed string the
# service's command line contains), and defines probe() and start().

log() { printf '%s.sh: %s\n' "$TAG" "$*" >&2; }
die() { log "$*"; exit 1; }

our_pid() {
    local pid
    [[ -f "$PIDFILE" ]] || return 1
    pid="$(cat "$PIDFILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    tr "\\0" " " 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "$CMDLINE_MATCH" || return 1
    echo "$pid"
}

stop() {
    local pid
    if ! pid="$(our_pid)"; then
        rm -f "$PIDFILE"
        if probe; then
            log "$SERVICE answers at $HOST:$PORT but was not started by this script ($PIDFILE); left alone"
        else
            log "not running"
        fi
        return 0
    fi
    log "stopping $SERVICE (pid $pid)"
    kill -TERM "$pid"
    local i
    for ((i = 0; i < 60; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid still runs after 30 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
    log "stopped"
}

status() {
    local pid
    if probe; then
        pid="$(our_pid || echo 'not ours')"
        echo "$TAG: running at $HOST:$PORT (pid $pid)"
        return 0
    fi
    if pid="$(our_pid)"; then
        echo "$TAG: pid $pid runs but does not answer at $HOST:$PORT"
    else
        echo "$TAG: not running"
    fi
    return 1
}

lock() {
    mkdir -p "$STATE_DIR"
    exec 9>"$STATE_DIR/.lock"
    flock -w 300 9 || die "another $TAG.sh start/stop holds $STATE_DIR/.lock"
}

service_main() {
    case "${1:-}" in
        start) lock; start ;;
        stop) lock; stop ;;
        status) status ;;
        *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
    esac
}
