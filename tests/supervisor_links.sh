#!/bin/sh
# tests/supervisor_links.sh LIBRARY: the supervisor never opens the store. Fails when the
# supervisor's library (libkd_supervisor.a) references an LMDB (mdb_*) or kd_store (st_*)
# symbol, so the build itself shows it: the supervisor does not link LMDB.
set -eu
lib=$1
[ -f "$lib" ] || { echo "FAIL: $lib does not exist"; exit 1; }
found=$(nm -u "$lib" | awk '$1 == "U" && ($2 ~ /^mdb_/ || $2 ~ /^st_/) { print "  " $2 }')
if [ -n "$found" ]; then
    echo "FAIL: the supervisor references the store:"
    echo "$found"
    exit 1
fi
echo "ok: $(basename "$lib") references no mdb_* or st_* symbol ($(nm -u "$lib" | grep -c ' U ') undefined symbols read)"
