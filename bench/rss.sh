#!/usr/bin/env bash
# Peak RSS of a full backfill (real sink) at 50,000 and 1,000,000 events: memory must stay flat.
#   bench/rss.sh            (needs scripts/testenv.sh start; corpora cached in .cache/bench/corpus-N)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$ROOT/.cache/run/env"
BIN="${TS_TRAILSETUP_BIN:-$ROOT/target/release/trailsetup}"
SYNTH="${CT_SYNTH:-/work/shared/tools/ct_synth.py}"
FIXTURES="${CT_FIXTURES:-/work/shared/fixtures/cloudtrail}"
printf '%-10s %10s %10s %12s %12s\n' events seconds events/s "peak RSS MB" documents
for n in 50000 1000000; do
  corpus="$ROOT/.cache/bench/corpus-$n"
  if [[ ! -f "$corpus/.done" ]]; then
    python3 "$SYNTH" "$FIXTURES" "$corpus" --records "$n" >&2
    touch "$corpus/.done"
  fi
  curl -s -XDELETE "$TS_OPENSEARCH_URL/bench-rss-*" >/dev/null
  out="$(mktemp)"
  /usr/bin/time -f '%M' -o "$out.rss" "$BIN" backfill --source-dir "$corpus" --opensearch-url "$TS_OPENSEARCH_URL" \
    --index-prefix bench-rss --restart --output json --state-dir "$ROOT/.cache/bench/state" >"$out"
  secs="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["backfill"]["seconds"])' "$out")"
  curl -s -XPOST "$TS_OPENSEARCH_URL/bench-rss-*/_refresh" >/dev/null
  docs="$(curl -s "$TS_OPENSEARCH_URL/bench-rss-*/_count" | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])')"
  printf '%-10s %10.1f %10.0f %12.1f %12s\n' "$n" "$secs" "$(echo "$n / $secs" | bc -l)" "$(echo "$(cat "$out.rss") / 1024" | bc -l)" "$docs"
  rm -f "$out" "$out.rss"
done
curl -s -XDELETE "$TS_OPENSEARCH_URL/bench-rss-*" >/dev/null
