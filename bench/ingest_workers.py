#!/usr/bin/env python3
"""Distributed backfill benchmark: `backfill --enqueue` + 1 and 3 `ingest --drain` workers, same corpus, same node.

    .cache/venv/bin/python bench/ingest_workers.py [--records 50000]

Needs the test servers (scripts/testenv.sh start; source .cache/run/env). Resets moto between runs. Prints, per
worker count: wall seconds from the first worker's start to the last one's end, events/s, and the exact document
count found in OpenSearch afterwards; then the 3-worker / 1-worker throughput ratio.
"""
import argparse, json, os, subprocess, sys, time
from pathlib import Path

import boto3, requests

ROOT = Path(__file__).resolve().parents[1]
BIN = os.environ.get("TS_TRAILSETUP_BIN", str(ROOT / "target/release/trailsetup"))
FIXTURES = os.environ.get("CT_FIXTURES", "/work/shared/fixtures/cloudtrail")
SYNTH = os.environ.get("CT_SYNTH", "/work/shared/tools/ct_synth.py")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=50_000)
    a = ap.parse_args()
    moto, osurl = os.environ["TS_MOTO_URL"], os.environ["TS_OPENSEARCH_URL"]
    corpus = ROOT / f".cache/bench/corpus-{a.records}"
    if not (corpus / ".done").exists():
        subprocess.run([sys.executable, SYNTH, FIXTURES, str(corpus), "--records", str(a.records)], check=True)
        (corpus / ".done").touch()
    files = sorted(p for p in corpus.rglob("*.json.gz"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TRAILSETUP_"))}
    env.update(AWS_ENDPOINT_URL=moto, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_REGION="us-east-1",
               XDG_STATE_HOME=str(ROOT / ".cache/bench/state"))
    kw = dict(region_name="us-east-1", endpoint_url=moto, aws_access_key_id="testing", aws_secret_access_key="testing")
    rows = []
    for workers in (1, 3):
        requests.post(f"{moto}/moto-api/reset", timeout=30)
        requests.delete(f"{osurl}/bench-ingest-*", timeout=60)
        s3, sqs = boto3.client("s3", **kw), boto3.client("sqs", **kw)
        s3.create_bucket(Bucket="bench-logs")
        for p in files:
            s3.put_object(Bucket="bench-logs", Key=str(p.relative_to(corpus)), Body=p.read_bytes())
        q = sqs.create_queue(QueueName="bench")["QueueUrl"]
        # --restart: the enqueue journal of the previous round says every key is in a queue moto no longer has
        subprocess.run([BIN, "backfill", "--bucket", "bench-logs", "--enqueue", q, "--restart", "-q"], env=env, check=True)
        argv = [BIN, "ingest", "--drain", "--output", "json", "--bucket", "bench-logs", "--queue-url", q, "--opensearch-url", osurl,
                "--index-prefix", "bench-ingest"]
        t0 = time.monotonic()
        procs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) for _ in range(workers)]
        outs = [json.loads(p.communicate()[0])["ingest"] for p in procs]
        secs = time.monotonic() - t0
        requests.post(f"{osurl}/bench-ingest-*/_refresh", timeout=60)
        count = requests.get(f"{osurl}/bench-ingest-*/_count", timeout=60).json()["count"]
        rows.append((workers, secs, count, sum(o["indexed"] for o in outs)))
        print(f"workers={workers}: {secs:.2f}s  {a.records / secs:,.0f} events/s  documents={count} (expected {a.records})")
    requests.delete(f"{osurl}/bench-ingest-*", timeout=60)
    if any(count != a.records for _, _, count, _ in rows):
        sys.exit("bench: a run did not load every record; its time says nothing")
    (w1, s1, *_), (w3, s3_, *_) = rows
    print(f"3 workers / 1 worker throughput: {s1 / s3_:.2f}x (one 2-core machine, one OpenSearch node: the sink is shared)")


if __name__ == "__main__":
    main()
