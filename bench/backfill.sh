#!/usr/bin/env bash
# Backfill benchmark: trailsetup vs the sink's ceiling vs a plain Python loader, on one node, in one run.
#
#   bench/backfill.sh [N_RECORDS]        (default 200000; env BENCH_RECORDS works too)
#
# 1. trailsetup backfill --source-dir CORPUS into bench-ts-*          (end to end)
# 2. ceiling: trailsetup's exact _bulk bodies (--dump-bulk, prefix bench-ceil) posted by curl,
#    xargs -P 4 (trailsetup's default bulk concurrency)               (the sink alone)
# 3. bench/py_loader.py (opensearch-py parallel_bulk, 4 threads) into bench-py-*
# 4. transform only: trailsetup backfill --dump-bulk into /dev/shm      (no sink)
# Each phase: wall seconds, client CPU (user+sys of all child processes), peak RSS of the largest
# child; bench-* indices are deleted between phases and the documents counted after each one.
# Corpus: python3 /work/shared/tools/ct_synth.py, cached in .cache/bench/corpus-N.
# Servers: scripts/testenv.sh start when .cache/run/env does not answer.
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
N="${1:-${BENCH_RECORDS:-200000}}"
CONC="${BENCH_BULK_CONCURRENCY:-4}"
WORK="$(mktemp -d "$CACHE/run.XXXXXX" 2>/dev/null || { mkdir -p "$CACHE"; mktemp -d "$CACHE/run.XXXXXX"; })"
SHM_DUMP="/dev/shm/trailsetup-bench-$$"
RESULTS="$WORK/results.jsonl"

cleanup() { rm -rf "$SHM_DUMP" "$WORK/dump-ceil"; }
trap cleanup EXIT

# --- servers -------------------------------------------------------------------------------------
ensure_servers

# --- corpus --------------------------------------------------------------------------------------
ensure_corpus "$N"
FILES="$(find "$CORPUS" -type f \( -name '*.json.gz' -o -name '*.json' \) | wc -l)"
BYTES="$(du -sb "$CORPUS" | cut -f1)"
log "corpus: $FILES files, $BYTES bytes"

# --- helpers -------------------------------------------------------------------------------------
# measure NAME OUTFILE -- CMD...: run CMD (stdout to OUTFILE), append a JSON line to $RESULTS
measure() {
  local name="$1" out="$2"
  shift 3
  python3 - "$name" "$out" "$RESULTS" "$@" <<'PY'
import json, resource, subprocess, sys, time
name, out, results, cmd = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
t0 = time.monotonic()
with open(out, "wb") as f:
    rc = subprocess.call(cmd, stdout=f)
secs = time.monotonic() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
rec = {"phase": name, "rc": rc, "seconds": secs, "cpu": ru.ru_utime + ru.ru_stime, "rss_mb": ru.ru_maxrss / 1024}
with open(results, "a") as f:
    f.write(json.dumps(rec) + "\n")
print(f"bench: {name}: rc={rc} {secs:.2f}s cpu={rec['cpu']:.2f}s rss={rec['rss_mb']:.0f}MB", file=sys.stderr)
PY
}

delete_bench() {
  curl -s -o /dev/null -XDELETE "$OS/bench-*?expand_wildcards=all&ignore_unavailable=true" || true
  curl -s -o /dev/null -XDELETE "$OS/_index_template/bench-*" || true
}

count_docs() {  # count_docs PREFIX -> number of documents in PREFIX-*
  curl -s -o /dev/null -XPOST "$OS/$1-*/_refresh" || true
  curl -s "$OS/$1-*/_count" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("count", 0))'
}

install_template() {  # the template trailsetup uses, for another prefix (ceiling and python phases)
  python3 - "$ROOT/templates/index-template.json" "$1" <<'PY' |
import json, sys
t = json.load(open(sys.argv[1])); t["index_patterns"] = [sys.argv[2] + "-*"]; print(json.dumps(t))
PY
    curl -s -o /dev/null -XPUT "$OS/_index_template/$1" -H 'content-type: application/json' --data-binary @-
}

record_count() {  # PHASE COUNT -> append the count to the phase's line
  python3 - "$RESULTS" "$1" "$2" <<'PY'
import json, sys
path, phase, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
lines = [json.loads(x) for x in open(path)]
for x in lines:
    if x["phase"] == phase:
        x["docs"] = n
open(path, "w").write("".join(json.dumps(x) + "\n" for x in lines))
PY
}

# --- phases --------------------------------------------------------------------------------------
delete_bench

log "phase 1: trailsetup backfill (end to end)"
measure trailsetup "$WORK/ts.json" -- "$BIN" backfill --source-dir "$CORPUS" --opensearch-url "$OS" \
  --opensearch-auth none --index-prefix bench-ts --restart --output json
cat "$WORK/ts.json" >&2
record_count trailsetup "$(count_docs bench-ts)"
delete_bench

log "phase 2: sink ceiling (dump the exact _bulk bodies, post them with curl -P $CONC)"
rm -rf "$WORK/dump-ceil"
"$BIN" backfill --source-dir "$CORPUS" --dump-bulk "$WORK/dump-ceil" --opensearch-url "$OS" --index-prefix bench-ceil --restart \
  --output json >"$WORK/dump.json"
install_template bench-ceil
BODIES="$(find "$WORK/dump-ceil" -type f | wc -l)"
log "$BODIES bulk bodies"
# shellcheck disable=SC2016  # $1.. expand in the inner sh
measure ceiling "$WORK/ceil.out" -- sh -c 'find "$1" -type f -print0 | xargs -0 -P "$2" -I{} curl -s -o /dev/null --data-binary @{} -H "content-type: application/x-ndjson" "$3/_bulk"' \
  sh "$WORK/dump-ceil" "$CONC" "$OS"
record_count ceiling "$(count_docs bench-ceil)"
rm -rf "$WORK/dump-ceil"
delete_bench

log "phase 3: python loader (opensearch-py parallel_bulk, $CONC threads)"
install_template bench-py
measure python "$WORK/py.json" -- "$PY" "$ROOT/bench/py_loader.py" --source-dir "$CORPUS" \
  --opensearch-url "$OS" --index-prefix bench-py --threads "$CONC"
cat "$WORK/py.json" >&2
record_count python "$(count_docs bench-py)"
delete_bench

log "phase 4: transform only (trailsetup --dump-bulk to /dev/shm)"
measure transform "$WORK/tr.json" -- "$BIN" backfill --source-dir "$CORPUS" --dump-bulk "$SHM_DUMP" --opensearch-url "$OS" \
  --restart --output json
rm -rf "$SHM_DUMP"

# --- table ---------------------------------------------------------------------------------------
python3 - "$RESULTS" "$WORK/ts.json" <<'PY'
import json, sys
rows = {x["phase"]: x for x in map(json.loads, open(sys.argv[1]))}
try:
    ts = json.load(open(sys.argv[2]))["backfill"]
    events = ts["records"]
except Exception:
    ts, events = None, None
if not events:
    events = max((r.get("docs", 0) for r in rows.values()), default=0)
print(f"\nevents: {events}" + (f" (trailsetup: indexed {ts['indexed']}, duplicates {ts['duplicates']}, quarantined {ts['quarantined']})" if ts else ""))
hdr = f"{'phase':<11} {'rc':>3} {'seconds':>9} {'events/s':>10} {'CPU s':>8} {'CPU us/ev':>10} {'peak MB':>8} {'docs':>9}"
print(hdr); print("-" * len(hdr))
for name in ("trailsetup", "ceiling", "python", "transform"):
    r = rows.get(name)
    if not r:
        continue
    eps = events / r["seconds"] if r["seconds"] else 0
    us = r["cpu"] / events * 1e6 if events else 0
    docs = r.get("docs", "-")
    print(f"{name:<11} {r['rc']:>3} {r['seconds']:>9.2f} {eps:>10.0f} {r['cpu']:>8.2f} {us:>10.1f} {r['rss_mb']:>8.0f} {docs!s:>9}")
    if "docs" in r and r["docs"] != events:
        print(f"  !! {name}: {r['docs']} documents counted, {events} expected")
def ratio(a, b):
    return f"{a / b:.2f}" if b else "n/a"
t, c, p = rows.get("trailsetup"), rows.get("ceiling"), rows.get("python")
if t and c:
    print(f"\ntrailsetup vs ceiling (time):            {ratio(t['seconds'], c['seconds'])}x  (1.00 = at the sink's limit)")
if t and p:
    print(f"trailsetup vs python end-to-end (speed):  {ratio(p['seconds'], t['seconds'])}x faster")
    print(f"python CPU/event / trailsetup CPU/event:  {ratio(p['cpu'], t['cpu'])}x")
PY
log "raw results: $RESULTS"
