#!/bin/sh
# Runs every libFuzzer target for SECONDS each (default 60) over its seed corpus.
# Usage: tools/fuzz.sh [SECONDS] [BUILD_DIR]   (`make fuzz` builds build-fuzz with clang first)
# A crash leaves crash-* files in the current folder; turn each into a regression test by
# adding it to the target's corpus folder (tests/fuzz/corpus/<name>/), which every `make test`
# replays.
set -u
SECONDS_EACH=${1:-60}
BUILD=${2:-build-fuzz}
status=0
for bin in "$BUILD"/fuzz_*; do
    case "$bin" in *_corpus) continue ;; esac
    [ -x "$bin" ] || continue
    name=$(basename "$bin" | sed 's/^fuzz_//')
    corpus=tests/fuzz/corpus/$name
    [ -d "$corpus" ] || corpus=
    work=$(mktemp -d)
    echo "== $bin for ${SECONDS_EACH}s (corpus ${corpus:-none})"
    # New inputs go to a scratch folder so the committed corpus only changes on purpose.
    if ! "$bin" -max_total_time="$SECONDS_EACH" -print_final_stats=1 "$work" $corpus 2>"$work.log"; then
        status=1
        tail -40 "$work.log"
    fi
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$work.log" | sed "s/^/  /"
    rm -rf "$work" "$work.log"
done
exit $status
