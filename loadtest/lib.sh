# Shared by loadtest/run.sh and loadtest/run-cluster.sh (sourced). Expects: $bin, $results,
# $stamp, $DURATION, $WARMUP, $CONNECTIONS; fills $pids with background processes to stop.

pids=()
cleanup_hooks=()

cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    for hook in "${cleanup_hooks[@]}"; do
        "$hook" || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT

# Waits (at most 15 s) until something listens on 127.0.0.1:$1.
wait_port() {
    for _ in $(seq 150); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "nothing listens on 127.0.0.1:$1" >&2
    return 1
}

load() { # label port [extra loadgen args]
    local label="$1" port="$2"
    shift 2
    timeout $((DURATION + WARMUP + 120)) "$bin/loadgen" \
        --target "127.0.0.1:$port" --connections "$CONNECTIONS" \
        --duration "$DURATION" --warmup "$WARMUP" --label "$label" \
        --json-out "$results/$stamp-$label.json" "$@"
}
