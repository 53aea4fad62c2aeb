#!/usr/bin/env bash
# Search benchmark: `search --resource` (indexed investigation fields) against a plain `search --event`, on one
# index set of N documents, in one run; and what the investigation fields cost at load time.
#
#   bench/search.sh [N_RECORDS]        (default 1000000; env BENCH_RECORDS works too)
#   env: BENCH_RUNS=7 (searches per query), BENCH_LOADS=1 (loads per variant, alternated; the median is shown),
#        BENCH_BEFORE_BIN=PATH (a trailsetup built before the investigation fields, e.g. from commit ac4b16d:
#        `git worktree add /tmp/before ac4b16d && (cd /tmp/before && cargo build --release)`)
#
# 1. corpus: ct_synth.py (cached in .cache/bench/corpus-N)
# 2. load A: trailsetup backfill into bench-srch (the shipped template: @trailsetup indexed, excluded from
#    _source): wall seconds, store size after a force-merge
# 3. load B: the same into bench-base, its template with @trailsetup not indexed (enabled: false, kept out of
#    _source): the mapping's cost = A vs B (the document builder's extraction runs in both)
# 4. load D: the same into bench-stored, its template without `_source.excludes` (@trailsetup indexed AND stored):
#    what keeping `_source` as delivered costs = A vs D
# 5. load C (with BENCH_BEFORE_BIN): that binary's backfill with its own template into bench-before: the whole
#    change's cost = A vs C
# 6. searches on A, each BENCH_RUNS times, median wall time of the whole command:
#    --event <a common event> vs --resource <an instance id the corpus names>, both --since all --limit 50
# Prints one table; nothing is asserted.
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
N="${1:-${BENCH_RECORDS:-1000000}}"
RUNS="${BENCH_RUNS:-7}"
LOADS="${BENCH_LOADS:-1}"
BEFORE="${BENCH_BEFORE_BIN:-}"
[[ -z "$BEFORE" || -x "$BEFORE" ]] || die "BENCH_BEFORE_BIN=$BEFORE is not an executable"
ensure_servers
ensure_corpus "$N"
STATE="$(mktemp -d)"
trap 'rm -rf "$STATE"' EXIT
export TRAILSETUP_STATE_DIR="$STATE"

drop() { curl -s -XDELETE "$OS/_index_template/$1-trailsetup" >/dev/null; curl -s -XDELETE "$OS/$1-*" >/dev/null; }
size_of() { curl -s -XPOST "$OS/$1-*/_forcemerge?max_num_segments=1&wait_for_completion=true" >/dev/null
            curl -s "$OS/$1-*/_stats/store" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["_all"]["primaries"]["store"]["size_in_bytes"])'; }
# A binary from before the investigation fields knows only daily indices: with BENCH_BEFORE_BIN every load is daily
GRAN="${BENCH_GRANULARITY:-$([[ -n "$BEFORE" ]] && echo day || echo month)}"
load() { # BIN PREFIX [ARGS..] -> seconds (the index set dropped first, so every load starts empty)
  local t0 t1 bin="$1" prefix="$2"
  shift 2
  curl -s -XDELETE "$OS/$prefix-*" >/dev/null
  t0=$(date +%s.%N)
  "$bin" backfill --source-dir "$CORPUS" --opensearch-url "$OS" --index-prefix "$prefix" --restart -q "$@" >/dev/null
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

drop bench-srch; drop bench-base; drop bench-stored; drop bench-before
# B's and D's templates: the shipped one with @trailsetup not indexed, at a higher priority than the one backfill installs
"$PY" - "$ROOT/templates/index-template.json" "$OS" <<'PY'
import json, sys, urllib.request
t = json.load(open(sys.argv[1]))
t["index_patterns"] = ["bench-base-*"]; t["priority"] = 900
t["template"]["aliases"] = {"bench-base": {}}
t["template"]["mappings"]["properties"]["@trailsetup"] = {"type": "object", "enabled": False}
req = urllib.request.Request(sys.argv[2] + "/_index_template/bench-base-override", data=json.dumps(t).encode(),
                             method="PUT", headers={"content-type": "application/json"})
print(urllib.request.urlopen(req).read().decode(), file=sys.stderr)
d = json.load(open(sys.argv[1]))
d["index_patterns"] = ["bench-stored-*"]; d["priority"] = 900
d["template"]["aliases"] = {"bench-stored": {}}
del d["template"]["mappings"]["_source"]
req = urllib.request.Request(sys.argv[2] + "/_index_template/bench-stored-override", data=json.dumps(d).encode(),
                             method="PUT", headers={"content-type": "application/json"})
print(urllib.request.urlopen(req).read().decode(), file=sys.stderr)
PY
A_T=(); B_T=(); C_T=(); D_T=()
for i in $(seq "$LOADS"); do
  log "load $i/$LOADS A (investigation fields indexed)"; A_T+=("$(load "$BIN" bench-srch --index-granularity "$GRAN")")
  log "load $i/$LOADS B (investigation fields not indexed)"; B_T+=("$(load "$BIN" bench-base --index-granularity "$GRAN")")
  log "load $i/$LOADS D (investigation fields indexed and stored)"; D_T+=("$(load "$BIN" bench-stored --index-granularity "$GRAN")")
  if [[ -n "$BEFORE" ]]; then log "load $i/$LOADS C ($BEFORE)"; C_T+=("$(load "$BEFORE" bench-before)"); fi
done
curl -s -XDELETE "$OS/_index_template/bench-base-override" >/dev/null
curl -s -XDELETE "$OS/_index_template/bench-stored-override" >/dev/null
D_SEC=$(printf '%s\n' "${D_T[@]}" | median); D_SIZE=$(size_of bench-stored)
A_SEC=$(printf '%s\n' "${A_T[@]}" | median); B_SEC=$(printf '%s\n' "${B_T[@]}" | median)
A_SIZE=$(size_of bench-srch); B_SIZE=$(size_of bench-base)
if [[ -n "$BEFORE" ]]; then C_SEC=$(printf '%s\n' "${C_T[@]}" | median); C_SIZE=$(size_of bench-before); fi
A_DOCS=$(curl -s "$OS/bench-srch/_count" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["count"])')

# a resource the corpus names: the first instance id of a TerminateInstances/RunInstances request
RID=$(curl -s "$OS/bench-srch/_search" -H 'content-type: application/json' \
  -d '{"size":1,"query":{"prefix":{"@trailsetup.resources":"i-"}}}' | "$PY" -c '
import json,re,sys
h=json.load(sys.stdin)["hits"]["hits"][0]["_source"]
print(re.search(r"\"(i-[0-9a-f]{8,17})\"", json.dumps(h)).group(1))')
EVENT=TerminateInstances
timeit() { for _ in $(seq "$RUNS"); do
  local t0 t1; t0=$(date +%s.%N); "$BIN" search --output json --opensearch-url "$OS" --index-prefix bench-srch --since all --limit 50 "$@" >/dev/null; t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc; done | median; }
log "searching ($RUNS runs each)"
E_SEC=$(timeit --event "$EVENT"); R_SEC=$(timeit --resource "$RID")
E_HITS=$("$BIN" search --output json --opensearch-url "$OS" --index-prefix bench-srch --since all --limit 1 --event "$EVENT" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["search"]["total"])')
R_HITS=$("$BIN" search --output json --opensearch-url "$OS" --index-prefix bench-srch --since all --limit 1 --resource "$RID" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["search"]["total"])')

printf '\n%-52s %12s %12s\n' "search over $A_DOCS documents (median of $RUNS)" "seconds" "hits"
printf '%-52s %12s %12s\n' "search --event $EVENT" "$E_SEC" "$E_HITS" "search --resource $RID" "$R_SEC" "$R_HITS"
printf '%-52s %12s\n' "ratio resource / event" "$(echo "scale=2; $R_SEC / $E_SEC" | bc)"
printf '\n%-52s %12s %14s\n' "load of $N records, $GRAN indices (median of $LOADS)" "seconds" "store bytes"
printf '%-52s %12s %14s\n' "A: investigation fields indexed" "$A_SEC" "$A_SIZE" "B: investigation fields not indexed" "$B_SEC" "$B_SIZE"
printf '%-52s %12s %14s\n' "D: indexed and stored (no _source.excludes)" "$D_SEC" "$D_SIZE"
[[ -n "$BEFORE" ]] && printf '%-52s %12s %14s\n' "C: BENCH_BEFORE_BIN (no investigation fields)" "$C_SEC" "$C_SIZE"
printf '%-52s %12s %14s\n' "ratio A / B" "$(echo "scale=3; $A_SEC / $B_SEC" | bc)" "$(echo "scale=3; $A_SIZE / $B_SIZE" | bc)"
[[ -n "$BEFORE" ]] && printf '%-52s %12s %14s\n' "ratio A / C" "$(echo "scale=3; $A_SEC / $C_SEC" | bc)" "$(echo "scale=3; $A_SIZE / $C_SIZE" | bc)"
[[ -n "$BEFORE" ]] && printf '%-52s %12s %14s\n' "ratio D / C" "$(echo "scale=3; $D_SEC / $C_SEC" | bc)" "$(echo "scale=3; $D_SIZE / $C_SIZE" | bc)"
printf 'loads, seconds: A %s; B %s; D %s%s\n' "${A_T[*]}" "${B_T[*]}" "${D_T[*]}" "${C_T:+; C ${C_T[*]}}"
drop bench-srch; drop bench-base; drop bench-stored; drop bench-before
