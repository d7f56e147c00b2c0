#!/bin/sh
# Runs every benchmark against the build in $1 (default: build). Each prints its figures as
# `BENCH <name> <value> <unit>` lines; bench/README.md says what each one measures.
set -u
BUILD=${1:-build}
status=0
run() {
    name=$1
    shift
    if [ -x "$BUILD/$name" ]; then
        echo "== $name"
        "$BUILD/$name" "$@" || status=1
    else
        echo "== $name: not built, skipped"
    fi
}
run bench_ring
run bench_decode
run bench_sim "$BUILD/kdeals-sim"
run bench_pipeline "$BUILD"
run bench_shared_key "$BUILD"
exit $status
