#!/usr/bin/env bash
# init latency benchmark: `trailsetup init` against moto behind a proxy that adds 150 ms to every request,
# for 1 region and for 17 regions (per-region trail mode, so every region is real work), moto reset between
# runs. Prints both wall times and the ratio; goal: 17 regions <= 2x one region.
#
#   bench/init_latency.sh            (env BENCH_DELAY=0.15 seconds per request, BENCH_RUNS=2 per case, best kept: the first pays moto's first-use costs)
#
# Starts its own moto server and proxy on free loopback ports (never touches the shared moto) and stops them
# by PID at the end. OpenSearch: $TS_OPENSEARCH_URL from .cache/run/env (the index template is installed under
# the prefix bench-init and deleted afterwards).
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DELAY="${BENCH_DELAY:-0.15}"
RUNS="${BENCH_RUNS:-2}"
PREFIX="bench-init"
# 17 regions DescribeRegions (moto and AWS) lists as opt-in-not-required, all in the aws partition
REGIONS17="us-east-1,us-east-2,us-west-1,us-west-2,ca-central-1,sa-east-1,eu-central-1,eu-north-1,eu-west-1,eu-west-2,eu-west-3,ap-northeast-1,ap-northeast-2,ap-northeast-3,ap-south-1,ap-southeast-1,ap-southeast-2"

ensure_servers

WORK="$(mktemp -d)"
cleanup() {
  kill_pids
  curl -s -o /dev/null -X DELETE "$TS_OPENSEARCH_URL/_index_template/$PREFIX-trailsetup" || true
  rm -rf "$WORK"
}
trap cleanup EXIT

start_moto "$WORK"

"$PY" "$ROOT/bench/latency_proxy.py" "$MOTO_URL" --delay "$DELAY" >"$WORK/proxy.out" 2>"$WORK/proxy.err" &
PIDS+=($!)
for _ in $(seq 100); do grep -q '^PORT ' "$WORK/proxy.out" 2>/dev/null && break; sleep 0.1; done
PROXY_URL="http://127.0.0.1:$(awk '/^PORT /{print $2}' "$WORK/proxy.out")"
log "moto $MOTO_URL behind proxy $PROXY_URL (+${DELAY}s per request)"

run_case() { # regions -> prints wall seconds of the best of RUNS
  local regions="$1" best="" t
  for _ in $(seq "$RUNS"); do
    curl -sf -o /dev/null -X POST "$MOTO_URL/moto-api/reset" || die "moto reset failed"
    curl -s -o /dev/null -X DELETE "$TS_OPENSEARCH_URL/_index_template/$PREFIX-trailsetup" || true
    local start end
    start=$(date +%s.%N)
    env -i PATH="$PATH" HOME="$WORK/home" XDG_STATE_HOME="$WORK/state" \
      AWS_ENDPOINT_URL="$PROXY_URL" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 \
      AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true \
      "$BIN" init --yes --no-backfill --trail-mode per-region --regions "$regions" \
        --opensearch-url "$TS_OPENSEARCH_URL" --index-prefix "$PREFIX" --output json >"$WORK/out.json" 2>"$WORK/err.txt" \
      || { tail -20 "$WORK/err.txt" >&2; die "init failed for regions $regions"; }
    end=$(date +%s.%N)
    t=$(echo "$end - $start" | bc)
    local n
    n=$("$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["plan"]["summary"]["create"])' "$WORK/out.json")
    log "  $(echo "$regions" | tr ',' '\n' | wc -l) region(s): ${t}s, $n resources created"
    if [[ -z "$best" ]] || (( $(echo "$t < $best" | bc) )); then best="$t"; fi
  done
  echo "$best"
}

T1=$(run_case "us-east-1")
T17=$(run_case "$REGIONS17")
RATIO=$(echo "scale=2; $T17 / $T1" | bc)
printf 'init, per-region trails, +%sms per AWS request\n' "$(echo "$DELAY * 1000 / 1" | bc)"
printf '  1 region:   %6.2f s\n' "$T1"
printf '  17 regions: %6.2f s\n' "$T17"
printf '  ratio:      %6.2f   (goal <= 2.00: %s)\n' "$RATIO" "$( (( $(echo "$RATIO <= 2" | bc) )) && echo met || echo NOT met)"
