#!/usr/bin/env python3
"""Where a day benchmark's tokens went, by purpose (bench/README.md, "Tokens by purpose").

Usage: tools/token-breakdown.py KEPT_DIR [BUILD_DIR]

KEPT_DIR is the folder a day benchmark leaves with BENCH_PIPELINE_KEEP=1 (its `day` folder
holds the daemon's log, config and store). The daemon's log says what each peek batch found,
what each commit batch cost and found (ASIN by ASIN), and what each update batch cost; the
store's change log (`kdeals deals --follow`) says what every re-check found. A full fetch of
an ASIN that was committed before is counted as a recommit: mostly the updater asking for fresh
offers, but also a product whose deal ended and came back on the feed (the info log does not
tell the two apart). Tokens of a commit batch are shared evenly by its ASINs.
"""
import collections
import json
import os
import re
import subprocess
import sys


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    day = os.path.join(sys.argv[1], "day")
    build = sys.argv[2] if len(sys.argv) > 2 else "build"
    tokens = collections.Counter()
    count = collections.Counter()
    committed = set()
    with open(os.path.join(day, "kdeals.log")) as f:
        for line in f:
            if "scanner" in line and re.search(r"(deal|delta) page \d+ \(pass \d+\): ", line):
                count["/deal pages"] += 1  # the page's INFO line (the debug log says more)
            elif "scanner" in line and " peek: " in line:
                survivors = int(re.search(r"(\d+) survivors", line).group(1))
                refresh = int(re.search(r"(\d+) stored deals to refresh", line).group(1))
                n = int(re.search(r"peek: (\d+) asins", line).group(1))
                tokens["peek"] += float(re.search(r"([\d.]+) tokens", line).group(1))
                known = re.search(r"(\d+) survivors failed by their stored full read", line)
                known = int(known.group(1)) if known else 0
                count["peek -> survivor"] += survivors
                count["peek -> stored deal (free refresh)"] += refresh
                count["peek -> survivor its stored full read fails"] += known
                count["peek -> rejected"] += n - survivors - refresh - known
            elif re.search(r"commit batch of \d+: \d+ tokens", line):
                cost = int(re.search(r"(\d+) tokens", line).group(1))
                items = line[line.rfind("[") + 1 : line.rfind("]")].split(", ")
                for item in items:
                    asin, verdict = item.split(" ", 1)
                    kind = "recommit" if asin in committed else "survivor"
                    what = "deal" if verdict == "deal" else verdict
                    key = "full fetch of a %s -> %s" % (kind, what)
                    tokens[key] += cost / len(items)
                    count[key] += 1
                    if verdict not in ("retry", "given-up"):
                        committed.add(asin)
            elif "update batch:" in line:
                tokens["light re-checks"] += float(re.search(r"([\d.]+) tokens", line).group(1))
    # --follow never ends: what it printed within a few seconds is the whole (stopped) log.
    try:
        follow = subprocess.run(
            [os.path.join(build, "kdeals"), "deals", "-c", os.path.join(day, "kdeals.conf"),
             "--follow", "--from", "0"],
            capture_output=True, timeout=5, check=False).stdout
    except subprocess.TimeoutExpired as e:
        follow = e.stdout or b""
    follow = follow.decode()
    checks = collections.Counter()
    names = {("deal", "deal"): "re-check of a shown deal: still a deal",
             ("deal", "failing"): "re-check of a shown deal: gone (leaves the view)",
             ("deal", "rejected"): "re-check of a shown deal: gone for good (expired at once)",
             ("failing", "failing"): "re-check of a hidden record: still failing",
             ("failing", "rejected"): "re-check of a hidden record: expired",
             ("failing", "deal"): "re-check of a hidden record: a deal again"}
    for line in follow.splitlines():
        e = json.loads(line)
        if e["event"] in ("recheck", "expire"):
            checks[names.get((e["prev_state"], e["state"]), e["event"])] += 1
    pages = count["/deal pages"]
    peeks = count["peek -> survivor"] + count["peek -> stored deal (free refresh)"] + \
        count["peek -> rejected"] + count["peek -> survivor its stored full read fails"]
    per_peek = tokens["peek"] / peeks if peeks else 1
    rows = [("/deal pages", pages, 5.0 * pages)]
    for k in ("peek -> survivor", "peek -> rejected", "peek -> stored deal (free refresh)",
              "peek -> survivor its stored full read fails"):
        if count[k] or not k.endswith("fails"):
            rows.append((k, count[k], count[k] * per_peek))
    for k in sorted(k for k in count if k.startswith("full fetch")):
        rows.append((k, count[k], tokens[k]))
    n_checks = sum(checks.values())
    per_check = tokens["light re-checks"] / n_checks if n_checks else 1
    for k in names.values():
        if checks[k]:
            rows.append((k, checks[k], checks[k] * per_check))
    total = sum(r[2] for r in rows)
    print("| purpose | ASINs / pages | tokens | % |")
    print("|---|---|---|---|")
    for what, n, t in rows:
        print("| %s | %d | %.0f | %.1f |" % (what, n, t, 100 * t / total if total else 0))
    print("| total | | %.0f | 100 |" % total)


if __name__ == "__main__":
    main()
