#!/bin/sh
# tools/include-graph.sh: the include graph between the project's folders.
#
# Reads every `#include "folder/file.h"` of the C sources (tests/ and bench/ are consumers, not
# layers, and are left out), prints each arrow "from -> to (N includes)", then the folders floor
# by floor (a folder stands above everything it includes; floor 1 includes no other folder).
# Exits 1 when the arrows make a circle, or when base/ includes any other folder: base/ is the
# floor every program stands on. ctest runs it as test_layout.
#
# Usage: tools/include-graph.sh [SOURCE_DIR]   (default: the checkout this script is in)
set -eu
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root"

edges=$(mktemp)
trap 'rm -f "$edges"' EXIT

# One line per include that crosses folders: "from to".
find . -path ./tests -prune -o -path ./bench -prune -o -path './build*' -prune -o \
    -path ./.git -prune -o -type f \( -name '*.c' -o -name '*.h' \) -print |
    sed 's|^\./||' | sort |
    while read -r file; do
        from=${file%%/*}
        if [ "$from" = "$file" ]; then
            continue # a file at the top level
        fi
        sed -n 's|^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"/]*\)/[^"]*".*|\1|p' "$file" |
            while read -r to; do
                if [ "$to" != "$from" ]; then
                    echo "$from $to"
                fi
            done
    done | sort | uniq -c | awk '{ print $2, $3, $1 }' >"$edges"

if [ ! -s "$edges" ]; then
    echo "FAIL: no include between folders found under $root (is it a kdeals checkout?)"
    exit 1
fi
status=0
echo "arrows (from -> to, includes):"
awk '{ printf "  %-11s -> %-11s %3d\n", $1, $2, $3 }' "$edges"

upward=$(awk '$1 == "base" { print "  base -> " $2 }' "$edges")
if [ -n "$upward" ]; then
    echo "FAIL: base/ includes other folders (base/ must stand on nothing):"
    echo "$upward"
    status=1
fi

# Floors: dependencies first (tsort fails on a circle and names it on stderr).
order=$(awk '{ print $2, $1 }' "$edges" | tsort 2>/tmp/include-graph.$$ ) || {
    echo "FAIL: the folders include each other in a circle:"
    sed 's/^/  /' /tmp/include-graph.$$
    rm -f /tmp/include-graph.$$
    exit 1
}
rm -f /tmp/include-graph.$$
echo "floors (each folder stands above everything it includes):"
echo "$order" | awk -v edges="$edges" '
    BEGIN { while ((getline line < edges) > 0) { split(line, e, " "); deps[e[1]] = deps[e[1]] " " e[2] } }
    {
        f = 1
        n = split(deps[$1], d, " ")
        for (i = 1; i <= n; i++) if (floor[d[i]] + 1 > f) f = floor[d[i]] + 1
        floor[$1] = f
        names[f] = names[f] " " $1 "/"
        if (f > top) top = f
    }
    END { for (f = top; f >= 1; f--) printf "  floor %d:%s\n", f, names[f] }'
if [ "$status" -eq 0 ]; then
    echo "ok: no circle, and base/ includes nothing above it"
fi
exit $status
