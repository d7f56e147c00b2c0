#!/usr/bin/env python3
"""What became of each top-tenth true deal of a day benchmark.

See bench/README.md, "Top deals and the delta page".

Usage: tools/missed-top.py KEPT_DIR [--all]

KEPT_DIR is the folder a day benchmark leaves with BENCH_PIPELINE_KEEP=1, run with the daemon
at `[daemon] log_level = debug` (BENCH_PIPELINE_CONF): the scanner then logs every feed entry
it read (`feed ASIN: moment M, pre-score P`), which pass each page belonged to and every
peek's verdict, and the benchmark writes `day/truth.tsv` (the listed true deals, highest peak
profit first: ASIN, peak profit, fetch tokens, listed_at and the Keepa minute kdeals first
showed it after that, -1 never). Each top-tenth deal is classified from its listed_at on:

  stored      shown; how long after listed_at, and the path: first read, peek, commit (the
              summary's last lines give the medians of each step and of the first read by
              the kind of page that read it)
  never read  no page the scanner read after listed_at held it
  not peeked  read, but the pre-score said no (pre-filtered or a sure fail), its stored full
              read fails it at the feed's listings ("known to fail"), the seller marked it,
              or it was never peeked (dedup, or the pass moved on)
  peek failed peeked, the peek's verdict not a survivor (why)
  commit failed  a survivor whose full fetch did not find a deal (the verdict)
  backlog     a survivor never committed (still waiting when the day ended)

Minutes are Keepa minutes of the simulator's catalog clock.
"""
import datetime
import math
import os
import re
import sys

KEEPA_EPOCH_MIN = 21564000
TS = re.compile(r"^(\S+Z) \S+\s+(\w+)\[\d+\]: (.*)$")


def median(xs):
    xs = sorted(xs)
    k = len(xs)
    return (xs[k // 2] if k % 2 else (xs[k // 2 - 1] + xs[k // 2]) / 2) if k else math.nan


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if not args:
        sys.exit(__doc__)
    day = os.path.join(args[0], "day")
    deals = []
    with open(os.path.join(day, "truth.tsv")) as f:
        for line in f:
            if line.startswith("# clock"):
                start_wall, cat_start, minute_ms = (int(x) for x in line.split()[2:5])
                continue
            asin, peak, tok, listed, first = line.split("\t")
            deals.append((asin, int(peak), int(tok), int(listed), int(first)))

    def kmin(iso):
        t = datetime.datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=datetime.timezone.utc)
        wall = int(t.timestamp() * 1000)
        cat = cat_start + (wall - start_wall) * 60000 / minute_ms
        return min(cat, wall) / 60000 - KEEPA_EPOCH_MIN

    top_n = (len(deals) + 9) // 10
    top = deals if "--all" in sys.argv else deals[:top_n]
    want = {d[0] for d in top}
    ev = {a: [] for a in want}  # (minute, kind, detail)
    pending = []  # feed entries of the page being read
    with open(os.path.join(day, "kdeals.log")) as f:
        for line in f:
            m = TS.match(line.rstrip("\n"))
            if not m:
                continue
            iso, role, msg = m.groups()
            if role == "scanner":
                if msg.startswith("feed "):
                    a = msg[5:15]
                    if a in want:
                        pending.append((a, msg[17:]))
                elif msg[10:] in (" fails at the feed's listings on its stored full read: "
                                  "not peeked",) or msg[10:].startswith(" is marked "):
                    # dropped before its peek (scanner_known_fail, scanner_mark_skip)
                    why = "known to fail" if "stored full read" in msg else "marked"
                    pending = [(a, w + ", " + why if a == msg[:10] else w) for a, w in pending]
                elif " is of a " in msg:
                    page = msg[: msg.index(" is of a ")]
                    kind = msg[msg.index(" is of a ") + 9:]
                    t = kmin(iso)
                    for a, what in pending:
                        ev[a].append((t, "read", "%s (%s): %s" % (page, kind, what)))
                    pending = []
                elif msg.startswith("peeked "):
                    a = msg[7:17]
                    if a in want:
                        ev[a].append((kmin(iso), "peek", msg[19:]))
            elif role == "committer" and "commit batch of" in msg:
                t = kmin(iso)
                items = msg[msg.rfind("[") + 1: msg.rfind("]")].split(", ")
                for it in items:
                    a, verdict = it.split(" ", 1)
                    if a in want:
                        ev[a].append((t, "commit", verdict))
    rows = []
    counts = {}
    phases = []  # stored deals: (page kind of the first read, to read, to peek, to commit)
    for rank, (a, peak, tok, listed, first) in enumerate(top, 1):
        after = [e for e in ev[a] if e[0] >= listed - 0.5]
        reads = [e for e in after if e[1] == "read"]
        peeks = [e for e in after if e[1] == "peek"]
        commits = [e for e in after if e[1] == "commit"]
        if first >= 0:
            cls = "stored"
        elif not reads:
            cls = "never read"
        elif not peeks:
            cls = "not peeked"
        elif not any(p[2].startswith("survivor") for p in peeks):
            cls = "peek failed"
        elif commits:
            cls = "commit failed"
        else:
            cls = "backlog"
        counts[cls] = counts.get(cls, 0) + 1
        path = []
        if reads:
            r = reads[0]
            path.append("read +%.0f %s" % (r[0] - listed, r[2]))
        if peeks:
            p = peeks[0]
            path.append("peek +%.0f %s" % (p[0] - listed, p[2]))
        if commits:
            c = commits[0]
            path.append("commit +%.0f %s" % (c[0] - listed, c[2]))
        if cls == "stored" and reads and peeks and commits:
            kind = reads[0][2][reads[0][2].index("(") + 1: reads[0][2].index(")")]
            phases.append((kind, reads[0][0] - listed, peeks[0][0] - reads[0][0],
                           commits[0][0] - peeks[0][0]))
        before = [e for e in ev[a] if e[0] < listed - 0.5 and e[1] == "read"]
        if before and not reads:
            path.append("last read before: %.0f min before, %s" %
                        (listed - before[-1][0], before[-1][2]))
        wait = "%d" % max(0, first - listed) if first >= 0 else "never"
        rows.append((rank, a, peak / 100.0, listed, wait, cls, len(reads), "; ".join(path)))
    print("| # | ASIN | peak $ | listed_at | minutes to shown | class | reads | path |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| %d | %s | %.2f | %d | %s | %s | %d | %s |" % r)
    waits = sorted(float(r[4]) if r[4] != "never" else math.inf for r in rows)
    k = len(waits)
    med = (waits[k // 2] if k % 2 else (waits[k // 2 - 1] + waits[k // 2]) / 2) if k else math.nan
    print("\n%d of %d listed true deals; %s; median minutes to shown %s" %
          (len(top), len(deals), ", ".join("%s %d" % kv for kv in sorted(counts.items())), med))
    if phases:
        # Where a stored deal's minutes went: to its first read (the pace of the passes and the
        # delta pages), from there to its peek, from its peek to its full fetch (the backlog).
        print("stored, median minutes: listed to first read %.0f, read to peek %.0f, peek to "
              "commit %.0f (%d deals)" % (median([p[1] for p in phases]),
                                          median([p[2] for p in phases]),
                                          median([p[3] for p in phases]), len(phases)))
        kinds = sorted({p[0] for p in phases})
        print("first read by page kind: " + "; ".join(
            "%s %d, median %.0f to it" % (k, sum(1 for p in phases if p[0] == k),
                                          median([p[1] for p in phases if p[0] == k]))
            for k in kinds))


if __name__ == "__main__":
    main()
