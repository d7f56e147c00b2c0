#!/bin/sh
# `make demo`: kdeals against the simulator, end to end, in about a minute.
#
# Starts kdeals-sim with accelerated time (a Keepa minute of 200 ms, 5 tokens a minute: the
# cheapest plan, 300 times faster), writes a config pointing kdeals at it, starts the daemon
# with its web dashboard on loopback, prints the dashboard's address (open it in a browser
# while the demo runs: DEMO_SECONDS makes the run longer, DEMO_WEB_PORT picks the port), shows
# it working (status, live counters, deals appearing), then shows the deals, the top one
# explained field by field, the simulator's ledger of what was spent, and stops everything.
# Nothing is left behind.
set -eu
BUILD=${1:-build}
SECONDS_TO_RUN=${DEMO_SECONDS:-60}
KD="$BUILD/kdeals"
SIM="$BUILD/kdeals-sim"
DIR=$(mktemp -d /tmp/kdeals-demo.XXXXXX)
SIM_PID=
cleanup() {
    "$KD" stop -c "$DIR/kdeals.conf" >/dev/null 2>&1 || true
    [ -n "$SIM_PID" ] && kill "$SIM_PID" 2>/dev/null && wait "$SIM_PID" 2>/dev/null
    rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

echo "== kdeals-sim: a Keepa-compatible API on loopback (minute = 200 ms, 5 tokens/min)"
"$SIM" --port 0 --port-file "$DIR/sim.port" --minute-ms 200 --refill-rate 5 --products 20000 \
    --seed 7 --quiet 2>"$DIR/sim.log" &
SIM_PID=$!
i=0
until [ -s "$DIR/sim.port" ]; do
    i=$((i + 1)); [ $i -gt 100 ] && { echo "demo: the simulator did not start"; cat "$DIR/sim.log"; exit 1; }
    sleep 0.1
done
PORT=$(cat "$DIR/sim.port")
echo "   listening on http://127.0.0.1:$PORT"

printf 'demo-key-%s\n' "$$" >"$DIR/key"
chmod 600 "$DIR/key"
cat >"$DIR/kdeals.conf" <<CONF
[keepa]
base_url = http://127.0.0.1:$PORT
key_file = key
[daemon]
instance = demo$$
run_dir = run
log_file = run/kdeals.log
[store]
path = store
map_size_mb = 64
[tokens]
minute = 200ms
[scan]
pass_pause = 2s
[web]
listen = 127.0.0.1:${DEMO_WEB_PORT:-0}
CONF
mkdir -p "$DIR/run"
echo "== config ($DIR/kdeals.conf)"
sed 's/^/   /' "$DIR/kdeals.conf"

echo "== kdeals start --wait"
"$KD" start -c "$DIR/kdeals.conf" --wait
"$KD" status -c "$DIR/kdeals.conf" | sed 's/^/   /'
URL=$("$KD" status -c "$DIR/kdeals.conf" | awk '/^web:/ { print $2 }')
echo "== the dashboard: $URL (up for the ${SECONDS_TO_RUN}s of this run; the JSON API is under ${URL}api/v1)"

echo "== running for ${SECONDS_TO_RUN}s (one line every 10 s: deals stored, tokens, requests)"
t=0
while [ $t -lt "$SECONDS_TO_RUN" ]; do
    sleep 10
    t=$((t + 10))
    "$KD" stat -c "$DIR/kdeals.conf" --json | python3 -c '
import json, sys
s = json.load(sys.stdin)
c = {k: v["total"] for k, v in s["counters"].items()}
print("   t=%3ss  peeked %5d  survivors %4d  committed %4d  refreshed %4d  tokens spent %5d  http %4d  429s %d" % (
    sys.argv[1], c["asins_peeked"], c["survivors"], c["deals_committed"], c["deals_refreshed"],
    c["tokens_spent"], c["http_requests"], c["http_429"]))' "$t"
done

echo "== kdeals deals --limit 10 (sorted by ROI)"
"$KD" deals -c "$DIR/kdeals.conf" --limit 10 | sed 's/^/   /'
TOP=$("$KD" deals -c "$DIR/kdeals.conf" --limit 1 --format json |
    python3 -c 'import json, sys; d = json.load(sys.stdin); print(d[0]["asin"] if d else "")')
if [ -n "$TOP" ]; then
    echo "== kdeals show $TOP (the top deal: every number with the Keepa field it came from)"
    "$KD" show -c "$DIR/kdeals.conf" "$TOP" | sed 's/^/   /'
fi
echo "== the simulator's ledger: what Keepa would have billed"
curl -s "http://127.0.0.1:$PORT/_sim/stats" | python3 -c '
import json, sys
s = json.load(sys.stdin)
print("   tokens earned %d, consumed %d, expired in a full bucket %d, 429 answers %d" % (
    s["tokens_earned"], s["tokens_consumed"], s["tokens_expired"], s["http_429"]))
print("   /product ASINs requested %d (distinct %d)" % (s["asins_requested"], s["asins_distinct"]))'
echo "== kdeals stop"
"$KD" stop -c "$DIR/kdeals.conf"
echo "== the last lines of the log"
tail -n 8 "$DIR/run/kdeals.log" | sed 's/^/   /'
