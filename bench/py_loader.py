#!/usr/bin/env python3
"""A plain Python CloudTrail loader: the baseline trailsetup is compared with in bench/backfill.sh.

Reads CloudTrail log files (a local tree of .json.gz/.json via os.walk, or an S3 bucket with
--bucket), parses each file, and bulk-loads every record with opensearch-py's
helpers.parallel_bulk (N threads) into <prefix>-YYYY.MM.DD, _id = eventID (no document when it
has none: OpenSearch assigns one). Blobs (requestParameters, responseElements, additionalEventData,
serviceEventDetails, resources) are stored as JSON strings. Prints one JSON line with the numbers.

    py_loader.py --source-dir DIR --opensearch-url URL [--index-prefix bench-py] [--threads 4]
    py_loader.py --bucket B [--prefix AWSLogs/] --opensearch-url URL
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time

BLOBS = ("requestParameters", "responseElements", "additionalEventData", "serviceEventDetails", "resources")


def local_files(root):
    for dirpath, _dirs, files in os.walk(root):
        for fn in files:
            if (fn.endswith(".json.gz") or fn.endswith(".json")) and "CloudTrail-Digest" not in fn:
                path = os.path.join(dirpath, fn)
                with open(path, "rb") as f:
                    yield f.read()


def s3_files(bucket, prefix):
    import boto3

    s3 = boto3.client("s3")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            k = o["Key"]
            if (k.endswith(".json.gz") or k.endswith(".json")) and "CloudTrail-Digest" not in k:
                yield s3.get_object(Bucket=bucket, Key=k)["Body"].read()


def actions(blobs, prefix, stats):
    for raw in blobs:
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        stats["files"] += 1
        for rec in json.loads(raw).get("Records", []):
            stats["records"] += 1
            t = rec.get("eventTime")
            if isinstance(t, str) and len(t) >= 10:
                index = f"{prefix}-{t[0:4]}.{t[5:7]}.{t[8:10]}"
            else:
                index = f"{prefix}-undated"
            for b in BLOBS:
                v = rec.get(b)
                if v is not None and not isinstance(v, str):
                    rec[b] = json.dumps(v)
            a = {"_op_type": "create", "_index": index, "_source": rec}
            eid = rec.get("eventID")
            if isinstance(eid, str) and eid:
                a["_id"] = eid
            yield a


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--source-dir")
    src.add_argument("--bucket")
    ap.add_argument("--prefix", default="AWSLogs/", help="S3 key prefix")
    ap.add_argument("--opensearch-url", default=os.environ.get("TS_OPENSEARCH_URL", "http://127.0.0.1:9200"))
    ap.add_argument("--index-prefix", default="bench-py")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--chunk-size", type=int, default=1000)
    ap.add_argument("--max-chunk-bytes", type=int, default=5 * 1024 * 1024)
    a = ap.parse_args()

    from opensearchpy import OpenSearch, helpers

    client = OpenSearch(a.opensearch_url, timeout=120, http_compress=False)
    stats = {"files": 0, "records": 0}
    ok = dup = failed = 0
    blobs = local_files(a.source_dir) if a.source_dir else s3_files(a.bucket, a.prefix)
    t0 = time.monotonic()
    for success, item in helpers.parallel_bulk(
        client, actions(blobs, a.index_prefix, stats), thread_count=a.threads, chunk_size=a.chunk_size,
        max_chunk_bytes=a.max_chunk_bytes, raise_on_error=False, raise_on_exception=False,
    ):
        if success:
            ok += 1
        elif next(iter(item.values())).get("status") == 409:
            dup += 1
        else:
            failed += 1
    secs = time.monotonic() - t0
    out = {"files": stats["files"], "records": stats["records"], "indexed": ok, "duplicates": dup,
           "failed": failed, "seconds": round(secs, 3),
           "records_per_s": round(stats["records"] / secs, 1) if secs else None}
    print(json.dumps(out))
    print(f"py_loader: {stats['records']} records in {secs:.2f}s = {out['records_per_s']} records/s", file=sys.stderr)
    return 0 if failed == 0 else 3


if __name__ == "__main__":
    sys.exit(main())
