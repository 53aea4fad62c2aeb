#!/usr/bin/env bash
# Search benchmark: `search --resource` (indexed investigation fields) against a plain `search --event`, on one
# index set of N documents, in one run; and what the investigation fields cost at load time.
#
#   bench/search.sh [N_RECORDS]        (default 1000000; env BENCH_RECORDS works too; BENCH_RUNS=7)
#
# 1. corpus: ct_synth.py (cached in .cache/bench/corpus-N)
# 2. load A: trailsetup backfill into bench-srch (the shipped template: @trailsetup indexed, excluded from
#    _source): wall seconds, store size
# 3. load B: the same into bench-base, its template with @trailsetup not indexed (enabled: false, kept out of
#    _source): the mapping's cost = A vs B (the document builder's extraction runs in both)
# 4. searches on A, each BENCH_RUNS times, median wall time of the whole command:
#    --event <a common event> vs --resource <an instance id the corpus names>, both --since all --limit 50
# Prints one table; nothing is asserted.
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
N="${1:-${BENCH_RECORDS:-1000000}}"
RUNS="${BENCH_RUNS:-7}"
CORPUS="$CACHE/corpus-$N"
ensure_servers

if [[ ! -f "$CORPUS/.done" ]]; then
  log "building a corpus of $N records in $CORPUS"
  rm -rf "$CORPUS"
  python3 "$SYNTH" "$FIXTURES" "$CORPUS" --records "$N"
  touch "$CORPUS/.done"
fi
STATE="$(mktemp -d)"
trap 'rm -rf "$STATE"' EXIT
export TRAILSETUP_STATE_DIR="$STATE"

drop() { curl -s -XDELETE "$OS/_index_template/$1-trailsetup" >/dev/null; curl -s -XDELETE "$OS/$1-*" >/dev/null; }
size_of() { curl -s -XPOST "$OS/$1-*/_forcemerge?max_num_segments=1" >/dev/null
            curl -s "$OS/$1-*/_stats/store" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["_all"]["primaries"]["store"]["size_in_bytes"])'; }
load() { # PREFIX -> seconds
  local t0 t1
  t0=$(date +%s.%N)
  "$BIN" backfill --source-dir "$CORPUS" --opensearch-url "$OS" --index-prefix "$1" --index-granularity month --restart -q >/dev/null
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc
}

drop bench-srch; drop bench-base
log "load A (investigation fields indexed)"
A_SEC=$(load bench-srch)
log "load B (investigation fields not indexed)"
# the shipped template with @trailsetup not indexed, at a higher priority than the one backfill installs
"$PY" - "$ROOT/templates/index-template.json" "$OS" <<'PY'
import json, sys, urllib.request
t = json.load(open(sys.argv[1]))
t["index_patterns"] = ["bench-base-*"]; t["priority"] = 900
t["template"]["aliases"] = {"bench-base": {}}
t["template"]["mappings"]["properties"]["@trailsetup"] = {"type": "object", "enabled": False}
req = urllib.request.Request(sys.argv[2] + "/_index_template/bench-base-override", data=json.dumps(t).encode(),
                             method="PUT", headers={"content-type": "application/json"})
print(urllib.request.urlopen(req).read().decode(), file=sys.stderr)
PY
B_SEC=$(load bench-base)
curl -s -XDELETE "$OS/_index_template/bench-base-override" >/dev/null
A_SIZE=$(size_of bench-srch); B_SIZE=$(size_of bench-base)
A_DOCS=$(curl -s "$OS/bench-srch/_count" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["count"])')

# a resource the corpus names: the first instance id of a TerminateInstances/RunInstances request
RID=$(curl -s "$OS/bench-srch/_search" -H 'content-type: application/json' \
  -d '{"size":1,"query":{"prefix":{"@trailsetup.resources":"i-"}}}' | "$PY" -c '
import json,re,sys
h=json.load(sys.stdin)["hits"]["hits"][0]["_source"]
print(re.search(r"\"(i-[0-9a-f]{8,17})\"", json.dumps(h)).group(1))')
EVENT=TerminateInstances
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
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
printf '\n%-52s %12s %14s\n' "load of $N records" "seconds" "store bytes"
printf '%-52s %12s %14s\n' "A: investigation fields indexed" "$A_SEC" "$A_SIZE" "B: investigation fields not indexed" "$B_SEC" "$B_SIZE"
printf '%-52s %12s %14s\n' "ratio A / B" "$(echo "scale=3; $A_SEC / $B_SEC" | bc)" "$(echo "scale=3; $A_SIZE / $B_SIZE" | bc)"
drop bench-srch; drop bench-base
