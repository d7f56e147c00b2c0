#!/bin/sh
# Runs every libFuzzer target for SECONDS each (default 60) over its seed corpus, JOBS targets
# at once (FUZZ_JOBS, default the number of cores: each target is one process on one core).
# Usage: tools/fuzz.sh [SECONDS] [BUILD_DIR]   (`make fuzz` builds build-fuzz with clang first)
# A crash leaves crash-* files in the current folder; turn each into a regression test by
# adding it to the target's corpus folder (tests/fuzz/corpus/<name>/), which every `make test`
# replays.
set -u
SECONDS_EACH=${1:-60}
BUILD=${2:-build-fuzz}
JOBS=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# One target: its report in $out/NAME.txt, and $out/NAME.failed when it found something.
run_one() {
    bin=$1
    name=$(basename "$bin" | sed 's/^fuzz_//')
    corpus=tests/fuzz/corpus/$name
    [ -d "$corpus" ] || corpus=
    work=$(mktemp -d)
    report=$out/$name.txt
    echo "== $bin for ${SECONDS_EACH}s (corpus ${corpus:-none})" >"$report"
    # New inputs go to a scratch folder so the committed corpus only changes on purpose.
    if ! "$bin" -max_total_time="$SECONDS_EACH" -print_final_stats=1 "$work" $corpus 2>"$work.log"; then
        touch "$out/$name.failed"
        tail -40 "$work.log" >>"$report"
    fi
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$work.log" | sed "s/^/  /" >>"$report"
    rm -rf "$work" "$work.log"
}

running=0
names=
for bin in "$BUILD"/fuzz_*; do
    case "$bin" in *_corpus) continue ;; esac
    [ -x "$bin" ] || continue
    names="$names $(basename "$bin" | sed 's/^fuzz_//')"
    run_one "$bin" &
    running=$((running + 1))
    if [ "$running" -ge "$JOBS" ]; then
        wait
        running=0
    fi
done
wait

status=0
for name in $names; do
    cat "$out/$name.txt"
    [ -e "$out/$name.failed" ] && status=1
done
exit $status
