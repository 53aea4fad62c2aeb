#!/usr/bin/env bash
# Growth benchmark: does a backfill stay flat in memory and small in checkpoint as the number of files grows 10x?
#
#   bench/growth.sh            (env BENCH_S3_KEYS=100000, BENCH_S3_BACKFILL=1: 0 skips the real S3 backfill)
#
# 1. Local trees of 50,000 and 500,000 small files (half with 1 record, half with 2; ~170 files per day folder:
#    50k = 1 account x 4 regions x 73 days, 500k = 2 accounts x 4 regions x 365 days), each backfilled with
#    --source-dir into the real OpenSearch node (prefix bench-growth, --restart, its own --checkpoint file).
#    Per size: files, seconds, peak RSS (/usr/bin/time -v), checkpoint_bytes (on disk at the end),
#    checkpoint_bytes_written (all bytes ever written to it), the peak size of the checkpoint file during the run
#    (stat every 0.2 s, journal + its compaction temp), documents counted; then the 500k/50k ratio of each.
# 2. S3 listing of BENCH_S3_KEYS objects (1-record CloudTrail files, 1 account x 4 regions x 70 days, ~357 per
#    day folder) in a private moto server: `backfill --dry-run --output json` (lists, reads 8 sample files, loads
#    nothing), then a real backfill of the bucket (listing_ms, list_requests, files/s, peak RSS, documents).
#    LIST calls are also counted in moto's request log (the dry run does not report them itself).
# Corpora: /work/shared/tools/ct_synth.py, cached in .cache/bench/growth-50000, growth-500000 and s3list-N
# (about 2.5 GB on disk together; rm -rf .cache/bench/growth-* .cache/bench/s3list-* to reclaim).
# Servers: OpenSearch from .cache/run/env (scripts/testenv.sh start when it does not answer); S3 is a moto server
# this script starts on a free loopback port (the shared one is reset by the e2e tests) and stops by PID.
# Prints the figures side by side; no assertion on times.
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
S3_KEYS="${BENCH_S3_KEYS:-100000}"
S3_BACKFILL="${BENCH_S3_BACKFILL:-1}"
PREFIX="bench-growth"
BUCKET="bench-growth-logs"
[[ -x /usr/bin/time ]] || die "/usr/bin/time is needed for peak RSS (apt-get install time)"

# --- servers -------------------------------------------------------------------------------------
ensure_servers

mkdir -p "$CACHE"
WORK="$(mktemp -d "$CACHE/growth-run.XXXXXX")"
RESULTS="$WORK/results.jsonl"
cleanup() {
  kill_pids
  curl -s -o /dev/null -XDELETE "$OS/$PREFIX-*?expand_wildcards=all&ignore_unavailable=true" || true
  curl -s -o /dev/null -XDELETE "$OS/_index_template/$PREFIX*" || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- corpora -------------------------------------------------------------------------------------
# build_tree DIR ACCOUNTS DAYS N: N files, N/2 with 1 record and N/2 with 2, 4 regions
build_tree() {
  local dir="$1" accounts="$2" days="$3" n="$4"
  [[ -f "$dir/.done" ]] && return 0
  log "building $dir ($n files)"
  rm -rf "$dir"
  python3 "$SYNTH" "$FIXTURES" "$dir" --records $((n / 2)) --per-file 1 --days "$days" --regions 4 --accounts "$accounts" --seed 1 >&2
  python3 "$SYNTH" "$FIXTURES" "$dir" --records "$n" --per-file 2 --days "$days" --regions 4 --accounts "$accounts" --seed 2 >&2
  touch "$dir/.done"
}
build_tree "$CACHE/growth-50000" 111122223333 73 50000
build_tree "$CACHE/growth-500000" 111122223333,444455556666 365 500000
S3_CORPUS="$CACHE/s3list-$S3_KEYS"
if [[ ! -f "$S3_CORPUS/.done" ]]; then
  log "building $S3_CORPUS ($S3_KEYS files)"
  rm -rf "$S3_CORPUS"
  python3 "$SYNTH" "$FIXTURES" "$S3_CORPUS" --records "$S3_KEYS" --per-file 1 --days 70 --regions 4 --seed 3 >&2
  touch "$S3_CORPUS/.done"
fi

# --- helpers -------------------------------------------------------------------------------------
delete_bench() {
  curl -s -o /dev/null -XDELETE "$OS/$PREFIX-*?expand_wildcards=all&ignore_unavailable=true" || true
  curl -s -o /dev/null -XDELETE "$OS/_index_template/$PREFIX*" || true
}
count_docs() {
  curl -s -o /dev/null -XPOST "$OS/$PREFIX-*/_refresh" || true
  curl -s "$OS/$PREFIX-*/_count" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("count", 0))'
}

# run_backfill NAME CHECKPOINT ENV... -- ARGS...: one backfill under /usr/bin/time -v with the checkpoint sampled
# every 0.2 s; appends {"name", "rc", "wall", "rss_kb", "cp_peak", "docs", "report"} to $RESULTS
run_backfill() {
  local name="$1" cp="$2"
  shift 2
  local envs=()
  while [[ "$1" != "--" ]]; do envs+=("$1"); shift; done
  shift
  delete_bench
  rm -f "$cp" "$cp.tmp" "$cp.lock"
  local t0 t1 pid rc=0
  t0=$(date +%s.%N)
  env "${envs[@]}" /usr/bin/time -v -o "$WORK/$name.time" "$BIN" backfill "$@" --opensearch-url "$OS" \
    --index-prefix "$PREFIX" --checkpoint "$cp" --restart --output json >"$WORK/$name.json" 2>"$WORK/$name.err" &
  pid=$!
  local peak=0 s
  while kill -0 "$pid" 2>/dev/null; do
    s=$(( $(stat -c %s "$cp" 2>/dev/null || echo 0) + $(stat -c %s "$cp.tmp" 2>/dev/null || echo 0) ))
    (( s > peak )) && peak=$s
    sleep 0.2
  done
  wait "$pid" || rc=$?
  t1=$(date +%s.%N)
  local rss docs
  rss=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$WORK/$name.time")
  docs=0
  [[ "$*" == *--dry-run* ]] || docs=$(count_docs)
  if (( rc != 0 )); then tail -20 "$WORK/$name.err" >&2; die "$name: backfill failed (rc=$rc)"; fi
  python3 - "$RESULTS" "$name" "$rc" "$t0" "$t1" "${rss:-0}" "$peak" "$docs" "$WORK/$name.json" <<'PY'
import json, sys
res, name, rc, t0, t1, rss, peak, docs, out = sys.argv[1:]
rep = json.load(open(out))["backfill"]
rec = {"name": name, "rc": int(rc), "wall": float(t1) - float(t0), "rss_kb": int(rss), "cp_peak": int(peak),
       "docs": int(docs), "report": rep}
open(res, "a").write(json.dumps(rec) + "\n")
print("bench: %s: %s" % (name, json.dumps({k: rep.get(k) for k in ("files", "records", "indexed", "duplicates", "seconds",
      "checkpoint_bytes", "checkpoint_bytes_written", "listing_ms", "list_requests")} | {"rss_mb": int(rss) // 1024,
      "cp_peak": int(peak), "docs": int(docs)})), file=sys.stderr)
PY
}

# --- 1. local trees ------------------------------------------------------------------------------
delete_bench
for n in 50000 500000; do
  log "local tree of $n files"
  run_backfill "dir-$n" "$WORK/cp-dir-$n" XDG_STATE_HOME="$WORK/state" -- --source-dir "$CACHE/growth-$n"
done

# --- 2. S3 listing in a private moto -------------------------------------------------------------
start_moto "$WORK"
log "uploading $S3_KEYS objects to $MOTO_URL (32 threads)"
"$PY" - "$MOTO_URL" "$BUCKET" "$S3_CORPUS" <<'PY'
import sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import boto3
from botocore.config import Config
url, bucket, root = sys.argv[1], sys.argv[2], Path(sys.argv[3])
s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=url, aws_access_key_id="testing",
                  aws_secret_access_key="testing", config=Config(max_pool_connections=32))
s3.create_bucket(Bucket=bucket)
files = sorted(root.rglob("*.json.gz"))
t0 = time.monotonic()
with ThreadPoolExecutor(32) as ex:
    list(ex.map(lambda p: s3.put_object(Bucket=bucket, Key=str(p.relative_to(root)), Body=p.read_bytes()), files))
print(f"bench: uploaded {len(files)} objects in {time.monotonic() - t0:.1f}s", file=sys.stderr)
PY
S3ENV=(AWS_ENDPOINT_URL="$MOTO_URL" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
  AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true XDG_STATE_HOME="$WORK/state")
# LIST calls in moto's request log since line $1 (ListObjectsV2: GET /bucket/?list-type=2...)
lists_since() { tail -n +"$(( $1 + 1 ))" "$WORK/moto.log" | grep -cF "GET /$BUCKET/?list-type=2" || true; }

mark=$(wc -l <"$WORK/moto.log")
run_backfill "s3-dry-run" "$WORK/cp-s3-dry" "${S3ENV[@]}" -- --bucket "$BUCKET" --dry-run
echo "$(lists_since "$mark")" >"$WORK/lists-dry"
if [[ "$S3_BACKFILL" == 1 ]]; then
  mark=$(wc -l <"$WORK/moto.log")
  run_backfill "s3-backfill" "$WORK/cp-s3" "${S3ENV[@]}" -- --bucket "$BUCKET"
  echo "$(lists_since "$mark")" >"$WORK/lists-real"
fi

# --- table ---------------------------------------------------------------------------------------
python3 - "$RESULTS" "$WORK" <<'PY'
import json, os, sys
rows = {x["name"]: x for x in map(json.loads, open(sys.argv[1]))}
work = sys.argv[2]
def lists(f):
    p = os.path.join(work, f)
    return open(p).read().strip() if os.path.exists(p) else "-"
mb = lambda b: b / 1048576
print("\nlocal trees (--source-dir), real OpenSearch sink")
hdr = (f"{'files':>8} {'records':>8} {'seconds':>8} {'files/s':>8} {'peak RSS MB':>11} {'cp end KB':>10} "
       f"{'cp written MB':>13} {'cp peak KB':>10} {'documents':>10}")
print(hdr); print("-" * len(hdr))
for n in (50000, 500000):
    r = rows.get(f"dir-{n}")
    if not r:
        continue
    b = r["report"]
    print(f"{b['files']:>8} {b['records']:>8} {b['seconds']:>8.1f} {b['files'] / b['seconds']:>8.0f} {r['rss_kb'] / 1024:>11.1f} "
          f"{b['checkpoint_bytes'] / 1024:>10.1f} {mb(b['checkpoint_bytes_written']):>13.2f} {r['cp_peak'] / 1024:>10.1f} {r['docs']:>10}")
    if r["docs"] != b["records"]:
        print(f"  !! {r['docs']} documents counted, {b['records']} records read")
a, z = rows.get("dir-50000"), rows.get("dir-500000")
if a and z:
    ra, rz = a["report"], z["report"]
    q = lambda x, y: f"{x / y:.2f}x" if y else "n/a"
    print(f"{'500k/50k':>8} {q(rz['records'], ra['records']):>8} {q(rz['seconds'], ra['seconds']):>8} {'':>8} "
          f"{q(z['rss_kb'], a['rss_kb']):>11} {q(rz['checkpoint_bytes'], ra['checkpoint_bytes']):>10} "
          f"{q(rz['checkpoint_bytes_written'], ra['checkpoint_bytes_written']):>13} {q(z['cp_peak'], a['cp_peak']):>10}")
print("\nS3 listing (private moto, no added latency)")
hdr = (f"{'run':<12} {'files':>8} {'seconds':>8} {'listing s':>9} {'LIST reqs':>9} {'LIST (moto log)':>15} "
       f"{'files/s':>8} {'peak RSS MB':>11} {'documents':>10}")
print(hdr); print("-" * len(hdr))
for name, lf in (("s3-dry-run", "lists-dry"), ("s3-backfill", "lists-real")):
    r = rows.get(name)
    if not r:
        continue
    b = r["report"]
    lst = f"{b['listing_ms'] / 1000:.2f}" if "listing_ms" in b else "-"
    print(f"{name:<12} {b['files']:>8} {b['seconds']:>8.2f} {lst:>9} {b.get('list_requests', '-')!s:>9} {lists(lf):>15} "
          f"{b['files'] / b['seconds']:>8.0f} {r['rss_kb'] / 1024:>11.1f} {r['docs'] if name != 's3-dry-run' else '-'!s:>10}")
    if name == "s3-backfill" and r["docs"] != b["records"]:
        print(f"  !! {r['docs']} documents counted, {b['records']} records read")
PY
