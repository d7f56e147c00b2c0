#!/bin/bash
# Leak scan: kdeals-sim and the whole daemon (`kdeals run` and its three workers) under
# valgrind memcheck for a bounded time with faults on, then a graceful stop, so every process
# exits through its normal path and memcheck sees its final heap.
#
# Usage: [LEAKSCAN_FAULTS=ITEMS] tools/leakscan.sh [SECONDS] [BUILD_DIR]  (defaults: 180, build)
#        LEAKSCAN_FAULTS adds kdeals-sim fault items (sim/README.md), e.g. the hostile bodies
#        LEAKSCAN_FAULTS=mistyped=0.02,deep=0.01,offers_mistyped=0.03
#        e.g. cmake -S . -B build-soak && cmake --build build-soak -j2 &&
#             tools/leakscan.sh 300 build-soak
#
# What it does: starts kdeals-sim (plenty of tokens, a 100 ms Keepa minute, 500s, resets,
# truncated and malformed bodies, offers_fail, and a 429 storm and a `kdeals reload` every
# 10 s) and `kdeals run`
# on a private folder, both under `valgrind --leak-check=full --trace-children=yes`, so the
# workers the supervisor re-executes (fork + exec of /proc/self/exe) are followed too; each
# process writes its own report (vg.PID.log). After SECONDS it sends SIGTERM to the
# supervisor, which stops the workers in order (a worker still running after
# [daemon] stop_timeout would be killed: the script reports that as a failure, since a killed
# process leaves no leak summary), then SIGTERM to the simulator.
#
# Output: one line per process: role, definitely / indirectly / possibly lost bytes, bytes
# still allocated at exit ("at-exit", leaks included), memcheck errors, and
# the report's path. Exit status 1 when any process has a definite or indirect
# leak, any memcheck error, or no summary (killed, crashed); 0 otherwise. Possibly-lost
# blocks are shown but do not fail the scan (an interior pointer is no proof of a leak).
# The folder with the logs is kept (its path is printed) so a finding can be read in full.
# Not part of `make test`: under valgrind the daemon is ~20-50x slower, and a scan takes
# minutes.
set -u
SECS=${1:-180}
BUILD=${2:-build}
SIM=$BUILD/kdeals-sim
KDEALS=$BUILD/kdeals
for b in "$SIM" "$KDEALS"; do
    [ -x "$b" ] || { echo "leakscan: $b not built" >&2; exit 2; }
done
command -v valgrind >/dev/null || { echo "leakscan: valgrind not installed" >&2; exit 2; }
SIM=$(realpath "$SIM")
KDEALS=$(realpath "$KDEALS")

DIR=$(mktemp -d /tmp/kdeals-leakscan.XXXXXX)
KEY=LeakScanKey0123456789abcdef
FAULTS="http500=0.03,reset=0.02,truncate=0.02,malformed=0.02,offers_fail=0.05${LEAKSCAN_FAULTS:+,$LEAKSCAN_FAULTS}"
VG=(valgrind --leak-check=full --trace-children=yes --num-callers=30 --error-limit=no
    "--log-file=$DIR/vg.%p.log")
echo "leakscan: ${SECS}s, logs in $DIR"

printf '%s\n' "$KEY" >"$DIR/key"
chmod 600 "$DIR/key"
mkdir -p "$DIR/run" "$DIR/store"

# The simulator, under valgrind too (its own allocations are scanned as well).
"${VG[@]}" "$SIM" --port-file "$DIR/sim.port" --quiet --keys "$KEY" --seed 7 --products 5000 \
    --volatility 30 --minute-ms 100 --refill-rate 20000 --economy rich --faults "$FAULTS" \
    >"$DIR/sim.out" 2>&1 &
SIM_PID=$!
for _ in $(seq 600); do
    [ -s "$DIR/sim.port" ] && break
    kill -0 "$SIM_PID" 2>/dev/null || break
    sleep 0.1
done
PORT=$(cat "$DIR/sim.port" 2>/dev/null)
[ -n "$PORT" ] || { echo "leakscan: kdeals-sim did not start (see $DIR/sim.out)" >&2; exit 2; }
BASE=http://127.0.0.1:$PORT

# Settings that make every worker busy: small batches, no dedup, re-checks due every Keepa
# minute, and a filter that lets most peeked products through to the committer.
cat >"$DIR/kdeals.conf" <<EOF
[keepa]
base_url = $BASE
key_file = $DIR/key
[daemon]
instance = leakscan$$
run_dir = $DIR/run
log_file = $DIR/kdeals.log
stop_timeout = 5m
[store]
path = $DIR/store
map_size_mb = 64
[tokens]
minute = 100ms
[scan]
peek_batch = 10
pass_pause = 0
dedup_window = 0
[commit]
batch = 1
linger_ms = 0
[update]
batch = 5
min_interval = 1m
max_interval = 1m
[filter]
min_rank_drops_365 = 0
min_sell = 0
[sell]
basis_new = avg90, avg365
basis_used = avg90, avg365
cap_at_buy_box = false
EOF

"${VG[@]}" "$KDEALS" run -c "$DIR/kdeals.conf" 2>>"$DIR/kdeals.log" &
RUN_PID=$!
for _ in $(seq 1200); do
    grep -q "all workers ready" "$DIR/kdeals.log" 2>/dev/null && break
    kill -0 "$RUN_PID" 2>/dev/null || break
    sleep 0.1
done
grep -q "all workers ready" "$DIR/kdeals.log" ||
    echo "leakscan: the daemon did not report ready (see $DIR/kdeals.log)" >&2

END=$((SECONDS + SECS))
storms=0 reloads=0
while [ $SECONDS -lt $END ] && kill -0 "$RUN_PID" 2>/dev/null; do
    sleep 10
    curl -s -X POST "$BASE/_sim/faults?spec=$FAULTS,storm429=20" >/dev/null && storms=$((storms + 1))
    # A reload (unchanged config) walks the supervisor's and the workers' reload paths.
    "$KDEALS" reload -c "$DIR/kdeals.conf" >/dev/null 2>&1 && reloads=$((reloads + 1))
done

curl -s "$BASE/_sim/stats" >"$DIR/sim-stats.json"
"$KDEALS" stat -c "$DIR/kdeals.conf" --json >"$DIR/stat.json" 2>/dev/null
echo "leakscan: stopping (429 storms: $storms, reloads: $reloads); daemon counters in $DIR/stat.json"
kill -TERM "$RUN_PID" 2>/dev/null
wait "$RUN_PID"
echo "leakscan: kdeals run exited $?"
kill -TERM "$SIM_PID" 2>/dev/null
wait "$SIM_PID"
echo "leakscan: kdeals-sim exited $?"
if command -v python3 >/dev/null; then
    python3 - "$DIR/stat.json" <<'EOF' || true
import json, sys
try:
    d = json.load(open(sys.argv[1]))
    c = d["counters"]
    print("leakscan: http_requests", c["http_requests"]["by_role"], "http_errors",
          c["http_errors"]["total"], "deals_committed", c["deals_committed"]["total"])
except Exception as e:
    print("leakscan: no counters:", e)
EOF
fi

# One line per process report.
status=0
num() { # the byte count of one LEAK SUMMARY line, 0 when absent
    local v
    v=$(grep -m1 "$1" "$2" | sed -E 's/.*: *([0-9,]+) bytes.*/\1/' | tr -d ,)
    echo "${v:-0}"
}
printf '%-12s %8s %12s %12s %12s %12s %8s  %s\n' process pid definitely indirectly possibly \
    at-exit errors report
for log in "$DIR"/vg.*.log; do
    pid=$(basename "$log" | sed -E 's/vg\.([0-9]+)\.log/\1/')
    cmd=$(grep -m1 "Command:" "$log" | sed 's/.*Command: //')
    case "$cmd" in
    *kdeals-sim*) role=sim ;;
    *" worker scanner"*) role=scanner ;;
    *" worker committer"*) role=committer ;;
    *" worker updater"*) role=updater ;;
    *" run -c"*) role=supervisor ;;
    *) role=other ;;
    esac
    if ! grep -q "ERROR SUMMARY" "$log"; then
        printf '%-12s %8s %12s %12s %12s %12s %8s  %s\n' "$role" "$pid" - - - - - \
            "$log (no summary: killed or crashed)"
        status=1
        continue
    fi
    def=$(num "definitely lost:" "$log")
    ind=$(num "indirectly lost:" "$log")
    pos=$(num "possibly lost:" "$log")
    rea=$(num "in use at exit:" "$log")
    err=$(grep "ERROR SUMMARY" "$log" | tail -1 | sed -E 's/.*ERROR SUMMARY: ([0-9,]+) errors.*/\1/' | tr -d ,)
    printf '%-12s %8s %12s %12s %12s %12s %8s  %s\n' "$role" "$pid" "$def" "$ind" "$pos" "$rea" \
        "${err:-?}" "$log"
    if [ "$def" != 0 ] || [ "$ind" != 0 ] || [ "${err:-1}" != 0 ]; then
        status=1
    fi
done
# Every process must have left a report (a worker never started would otherwise pass).
for pat in kdeals-sim " run -c" " worker scanner" " worker committer" " worker updater"; do
    grep -q -- "Command:.*$pat" "$DIR"/vg.*.log || { echo "leakscan: no report for$pat" >&2; status=1; }
done
echo "leakscan: $([ $status = 0 ] && echo clean || echo FINDINGS) (exit $status)"
exit $status
