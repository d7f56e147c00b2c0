#!/bin/sh
# `make demo`: starts kdeals against the simulator, shows it working, stops it.
# At the foundation stage this starts the supervisor with its three workers, shows the shared
# memory segment through `kdeals stat`, kills a worker to show the restart, and stops.
set -eu
BUILD=${1:-build}
KD="$BUILD/kdeals"
RUN=$(mktemp -d /tmp/kdeals-demo.XXXXXX)
INSTANCE=demo$$
cleanup() {
    [ -n "${SUP:-}" ] && kill "$SUP" 2>/dev/null && wait "$SUP" 2>/dev/null
    rm -rf "$RUN"
}
trap cleanup EXIT INT TERM

echo "== starting: $KD run --instance $INSTANCE --run-dir $RUN"
"$KD" run --instance "$INSTANCE" --run-dir "$RUN" --log-file "$RUN/kdeals.log" &
SUP=$!
# Wait for the status file to say every worker is ready (bounded).
i=0
until grep -q '^state=running' "$RUN/$INSTANCE.status" 2>/dev/null; do
    i=$((i + 1))
    [ $i -gt 100 ] && { echo "demo: kdeals did not become ready"; cat "$RUN/kdeals.log"; exit 1; }
    sleep 0.1
done
echo "== status file $RUN/$INSTANCE.status"
cat "$RUN/$INSTANCE.status"
echo "== processes"
ps -o pid,ppid,args --ppid "$SUP" --pid "$SUP"
echo "== kdeals stat -1 (read-only view of /dev/shm/kdeals-$INSTANCE)"
"$KD" stat --instance "$INSTANCE" -1
echo "== kill -9 the committer; the supervisor restarts it"
pkill -KILL -f "kdeals: committer worker committer --instance $INSTANCE$" || true
sleep 0.5
"$KD" stat --instance "$INSTANCE" -1 | sed -n '3,7p'
echo "== graceful stop (SIGTERM)"
kill -TERM "$SUP"
wait "$SUP" || true
SUP=
echo "== log"
cat "$RUN/kdeals.log"
