#!/usr/bin/env python3
"""S3 latency benchmark: backfill of many small files from a bucket 50 ms away, against plain parallel GETs.

    .cache/venv/bin/python bench/s3_latency.py [--delay 0.05] [--threads 64] [--goal 0.8]

Corpus: 20,000 small CloudTrail files, 5,000 each of 1, 5, 10 and 20 records (180,000 records; 30 days, 4 regions,
1 account), built by /work/shared/tools/ct_synth.py and cached in .cache/bench/s3lat-20000.
Starts its own moto server on a free loopback port (the shared one from .cache/run/env is reset by the e2e tests,
which would wipe the bucket mid-run), uploads the files to it directly (boto3, 32 threads), then starts
bench/latency_proxy.py in front of it (+DELAY per request). Through that same proxy, in one run:
  (a) ceiling: boto3 GET of every object, --threads threads (one client, a pool of that many connections) -> files/s
  (b) trailsetup backfill --bucket B --index-prefix bench-lat (default files in flight) -> files/s = files / seconds
      from its JSON report, listing_ms and its share of the run, list_requests, documents counted in OpenSearch
  (c) only when (b)/(a) is below --goal: the same backfill with --concurrency 128
  (d) the listing alone: `backfill --bucket B --dry-run` (lists every key, reads 8 sample files, loads nothing);
      a real run's listing_ms is the time until the last key was listed, and the lister waits on a bounded queue
      (4,096 keys) to the loaders, so on a large bucket it ends near the end of the run, overlapped with loading
Also printed: moto's own rate for the direct upload (32 boto3 threads, no proxy). moto is one Python process; on
a 2-core machine it serves a few hundred requests/s, so when DELAY is small the ceiling and the backfill are both
bound by moto rather than by latency: THREADS / DELAY (printed) must be well below moto's rate for the run to
measure latency hiding (e.g. --delay 0.5).
OpenSearch: $TS_OPENSEARCH_URL from .cache/run/env (scripts/testenv.sh start when it does not answer); bench-lat-*
indices and their template are deleted before each backfill and at the end. moto and the proxy are stopped by PID.
Prints the figures side by side; no assertion on times.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import requests
from botocore.config import Config

from benchlib import BIN, FIXTURES, ROOT, SYNTH, delete_bench, log, preflight, start_moto, stop_all, trailsetup_env

CORPUS = ROOT / ".cache/bench/s3lat-20000"
PER_FILE = (1, 5, 10, 20)  # 5,000 files each
BUCKET = "bench-lat-logs"
PREFIX = "bench-lat"






def build_corpus() -> None:
    if (CORPUS / ".done").exists():
        return
    log(f"building the corpus in {CORPUS}")
    shutil.rmtree(CORPUS, ignore_errors=True)
    for k in PER_FILE:
        subprocess.run([sys.executable, SYNTH, FIXTURES, str(CORPUS), "--records", str(5000 * k), "--per-file", str(k),
                        "--days", "30", "--regions", "4", "--seed", str(100 + k)], check=True, stdout=sys.stderr)
    (CORPUS / ".done").touch()




def s3_client(url: str, pool: int):
    return boto3.client("s3", region_name="us-east-1", endpoint_url=url, aws_access_key_id="testing",
                        aws_secret_access_key="testing",
                        config=Config(max_pool_connections=pool, retries={"mode": "standard", "max_attempts": 5}))




def count_docs(osurl: str) -> int:
    requests.post(f"{osurl}/{PREFIX}-*/_refresh", timeout=120)
    return requests.get(f"{osurl}/{PREFIX}-*/_count", timeout=60).json().get("count", 0)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--delay", type=float, default=0.05, help="seconds the proxy adds to every request")
    ap.add_argument("--threads", type=int, default=64, help="threads of the boto3 GET ceiling")
    ap.add_argument("--goal", type=float, default=0.8, help="backfill / ceiling ratio below which --concurrency 128 runs too")
    a = ap.parse_args()
    osurl = preflight()
    build_corpus()
    files = sorted(p for p in CORPUS.rglob("*.json.gz"))
    keys = [str(p.relative_to(CORPUS)) for p in files]
    records_expected = sum(5000 * k for k in PER_FILE)
    log(f"corpus: {len(files)} files, {sum(p.stat().st_size for p in files)} bytes, {records_expected} records")

    work = Path(tempfile.mkdtemp(prefix="bench-s3lat-"))
    procs: list[subprocess.Popen] = []
    try:
        # --- private moto + proxy ---------------------------------------------------------------------------
        moto = start_moto(work, procs)

        direct = s3_client(moto, 32)
        direct.create_bucket(Bucket=BUCKET)
        t0 = time.monotonic()
        with ThreadPoolExecutor(32) as ex:
            list(ex.map(lambda pk: direct.put_object(Bucket=BUCKET, Key=pk[1], Body=pk[0].read_bytes()), zip(files, keys)))
        up_secs = time.monotonic() - t0
        log(f"uploaded {len(keys)} objects to {moto} in {up_secs:.1f}s")

        proxy = subprocess.Popen([sys.executable, str(ROOT / "bench/latency_proxy.py"), moto, "--delay", str(a.delay)],
                                 stdout=subprocess.PIPE, stderr=open(work / "proxy.err", "wb"), text=True)
        procs.append(proxy)
        line = proxy.stdout.readline()
        if not line.startswith("PORT "):
            sys.exit(f"bench: the proxy did not start (see {work}/proxy.err)")
        purl = f"http://127.0.0.1:{int(line.split()[1])}"
        log(f"moto {moto} behind proxy {purl} (+{a.delay * 1000:.0f} ms per request)")

        # --- (a) ceiling: plain parallel GETs through the proxy --------------------------------------------------
        via = s3_client(purl, a.threads)
        got = [0]
        lock = threading.Lock()

        def get(k: str) -> None:
            n = len(via.get_object(Bucket=BUCKET, Key=k)["Body"].read())
            with lock:
                got[0] += n

        t0 = time.monotonic()
        with ThreadPoolExecutor(a.threads) as ex:
            list(ex.map(get, keys))
        ceil_secs = time.monotonic() - t0
        ceil_fps = len(keys) / ceil_secs
        log(f"ceiling: {len(keys)} GETs, {got[0]} bytes in {ceil_secs:.2f}s = {ceil_fps:.0f} files/s")

        # --- (b)/(c) trailsetup backfill through the proxy ---------------------------------------------------------
        env = trailsetup_env(purl, work)

        def backfill(extra: list[str]) -> dict:
            delete_bench(osurl, PREFIX)
            argv = [BIN, "backfill", "--bucket", BUCKET, "--opensearch-url", osurl, "--index-prefix", PREFIX,
                    "--restart", "--output", "json", *extra]
            t0 = time.monotonic()
            p = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=open(work / "backfill.err", "ab"))
            wall = time.monotonic() - t0
            if p.returncode != 0:
                sys.exit(f"bench: backfill {extra} failed rc={p.returncode} (see {work}/backfill.err)")
            b = json.loads(p.stdout)["backfill"]
            b["wall"] = wall
            b["docs"] = count_docs(osurl)
            log(f"backfill {' '.join(extra) or '(default)'}: " + json.dumps({k: b.get(k) for k in (
                "files", "records", "indexed", "duplicates", "seconds", "listing_ms", "list_requests", "files_in_flight")}))
            return b

        runs = [("backfill (default)", backfill([]))]
        if runs[0][1]["files"] / runs[0][1]["seconds"] / ceil_fps < a.goal:
            runs.append(("backfill --concurrency 128", backfill(["--concurrency", "128"])))
        delete_bench(osurl, PREFIX)

        p = subprocess.run([BIN, "backfill", "--bucket", BUCKET, "--dry-run", "--output", "json"], env=env,
                           stdout=subprocess.PIPE, stderr=open(work / "dry-run.err", "ab"))
        if p.returncode != 0:
            sys.exit(f"bench: backfill --dry-run failed rc={p.returncode} (see {work}/dry-run.err)")
        dry = json.loads(p.stdout)["backfill"]
        log(f"dry run: {dry['files']} files listed in {dry['seconds']:.2f}s")
    finally:
        stop_all(procs)
        shutil.rmtree(work, ignore_errors=True)

    # --- table -------------------------------------------------------------------------------------------------
    print(f"\nS3 via a proxy adding {a.delay * 1000:.0f} ms per request; {len(keys)} files (1/5/10/20 records), "
          f"{records_expected} records")
    hdr = (f"{'run':<27} {'in flight':>9} {'seconds':>8} {'files/s':>8} {'vs ceiling':>10} {'listing s':>9} "
           f"{'listing %':>9} {'LIST reqs':>9} {'documents':>10}")
    print(hdr)
    print("-" * len(hdr))
    print(f"{'ceiling: boto3 GETs':<27} {a.threads:>9} {ceil_secs:>8.2f} {ceil_fps:>8.0f} {1.0:>10.2f} {'-':>9} {'-':>9} "
          f"{'-':>9} {'-':>10}")
    for name, b in runs:
        fps = b["files"] / b["seconds"]
        lst = b.get("listing_ms", 0) / 1000
        print(f"{name:<27} {b['files_in_flight']:>9} {b['seconds']:>8.2f} {fps:>8.0f} {fps / ceil_fps:>10.2f} {lst:>9.2f} "
              f"{100 * lst / b['seconds']:>8.0f}% {b.get('list_requests', '-'):>9} {b['docs']:>10}")
        if b["files"] != len(keys) or b["docs"] != records_expected:
            print(f"  !! {name}: files {b['files']} (expected {len(keys)}), documents {b['docs']} (expected {records_expected})")
    print(f"{'listing alone (--dry-run)':<27} {'-':>9} {dry['seconds']:>8.2f} {'-':>8} {'-':>10} {dry['seconds']:>9.2f} "
          f"{'-':>9} {'-':>9} {'-':>10}   ({dry['files']} keys; includes 8 sample GETs)")
    print(f"\nlatency bound of {a.threads} requests in flight: {a.threads / a.delay:.0f} requests/s; moto's direct upload "
          f"rate (32 threads, no proxy): {len(keys) / up_secs:.0f} requests/s; goal: backfill >= {a.goal:.1f}x the ceiling")
    print("listing s of a backfill = until the last key was listed (the lister waits on a 4,096-key queue to the loaders)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
