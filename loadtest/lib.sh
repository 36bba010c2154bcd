# Shared by loadtest/run.sh and loadtest/run-cluster.sh (sourced). Expects: $bin, $results,
# $stamp, $tmp, $DURATION, $WARMUP, $CONNECTIONS; fills $pids with background processes to
# stop. PERF=<process name> records `perf record -g` of that process during the measured
# window of load_with_cpu (PERF_CALLGRAPH=dwarf for builds without frame pointers).

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

# Waits (at most $2 seconds, default 15) until something listens on 127.0.0.1:$1.
wait_port() {
    for _ in $(seq $((${2:-15} * 10))); do
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

# The pid of the process named $2 below process $1.
descendant() {
    local child
    for child in $(ps -o pid= --ppid "$1"); do
        if [[ "$(cat "/proc/$child/comm" 2>/dev/null)" == "$2" ]]; then
            echo "$child"
            return 0
        fi
        descendant "$child" "$2" && return 0
    done
    return 1
}

# CPU time (ticks) of each named process; "name=pid" arguments.
cpu_snapshot() {
    local arg
    for arg in "$@"; do
        local name="${arg%%=*}" pid="${arg#*=}"
        local stat
        stat="$(cat "/proc/$pid/stat" 2>/dev/null || echo '')"
        stat="${stat##*) }"
        # After "pid (comm) ": field 3 is state; utime and stime are fields 14 and 15.
        echo "$name $(echo "$stat" | awk '{print $12 + $13}')"
    done
}

# Runs `load` (same arguments) while recording the CPU of the given processes over the
# measured window; prints "CPU us/request" per process after loadgen's report. If the
# caller defines a function `window_snapshot` it is called as `window_snapshot LABEL before`
# and `window_snapshot LABEL after` at the window's ends (beside the CPU snapshots), and the
# number of requests in the window is written to $tmp/LABEL-window-requests.txt.
load_with_cpu() { # label port procs-array-name [extra loadgen args]
    local label="$1" port="$2" procs_name="$3[@]"
    local procs=("${!procs_name}")
    shift 3
    load "$label" "$port" "$@" >"$tmp/$label.txt" &
    local loader=$!
    sleep "$WARMUP"
    local loadgen t0 t1
    loadgen="$(descendant "$loader" loadgen)"
    t0="$(date +%s.%N)"
    cpu_snapshot "${procs[@]}" "loadgen=$loadgen" >"$tmp/$label-cpu-before.txt"
    if declare -F window_snapshot >/dev/null; then window_snapshot "$label" before; fi
    local perf_pid="" arg
    for arg in "${procs[@]}"; do
        if [[ -n "${PERF:-}" && "${arg%%=*}" == "$PERF" ]]; then
            perf record ${PERF_CALLGRAPH:+--call-graph "$PERF_CALLGRAPH"} -g -o "$results/$stamp-$PERF.perf.data" -p "${arg#*=}" -- sleep "$(awk -v d="$DURATION" 'BEGIN { print d - 1 }')" >/dev/null 2>&1 &
            perf_pid=$!
        fi
    done
    # Stop a little before loadgen does (it must still be running to be measured).
    sleep "$(awk -v d="$DURATION" 'BEGIN { print d - 0.5 }')"
    t1="$(date +%s.%N)"
    cpu_snapshot "${procs[@]}" "loadgen=$loadgen" >"$tmp/$label-cpu-after.txt"
    if declare -F window_snapshot >/dev/null; then window_snapshot "$label" after; fi
    [[ -n "$perf_pid" ]] && wait "$perf_pid"
    wait "$loader"
    cat "$tmp/$label.txt"
    local rate tck
    rate="$(awk '/throughput/ { for (i = 1; i < NF; i++) if ($i == "throughput") { print $(i + 1); exit } }' "$tmp/$label.txt")"
    tck="$(getconf CLK_TCK)"
    awk -v r="$rate" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f\n", r * (b - a) }' >"$tmp/$label-window-requests.txt"
    # us per request = CPU seconds / (req/s * window seconds) * 1e6
    paste "$tmp/$label-cpu-before.txt" "$tmp/$label-cpu-after.txt" | awk -v r="$rate" -v w="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" -v tck="$tck" '
        { us = ($4 - $2) / tck / (r * w) * 1e6; total += us; line = line sprintf("%s %.1f  ", $1, us) }
        END { printf "  CPU us/request: %stotal %.1f\n", line, total }'
}

# Serves the DNS zone of the CheckHelo + CheckSPF scenario on 127.0.0.1:$1 with dnsmasq
# (Debian's dnsmasq-base): `mail.client.example` (loadgen's HELO name) and the SPF records of
# loadgen's 40 sender domains. Authoritative for example. (no upstream), as a domain's own
# servers are: every answer, NXDOMAIN and NODATA too (mail.client.example has no AAAA and no
# MX), carries a TTL of an hour (negative ones through the zone's SOA, RFC 2308). Without the
# SOA (dnsmasq's `--local`, as helo-spf.sh had until 2026-12-06) no resolver caches the
# NODATA answers, and every request asked dnsmasq for the AAAA and the MX again. Its pid
# joins $pids.
start_spf_zone() { # port
    command -v dnsmasq >/dev/null || { echo "needs dnsmasq (apt-get install dnsmasq-base)" >&2; exit 2; }
    local records=(--host-record=mail.client.example,192.0.2.10) n
    for n in $(seq 0 39); do
        records+=("--txt-record=domain$n.example,v=spf1 ip4:10.0.0.0/14 -all")
    done
    dnsmasq --keep-in-foreground --no-resolv --no-hosts \
        --listen-address=127.0.0.1 --bind-interfaces --port="$1" \
        --auth-zone=example --auth-server=ns.example,127.0.0.1 --auth-ttl=3600 \
        --auth-soa=1,hostmaster.example,1200,120,604800 --local-ttl=3600 --neg-ttl=3600 \
        "${records[@]}" --pid-file= --user=root 2>/dev/null &
    pids+=($!)
}
