"""init → the state file → backfill/ingest defaults; `init --yes` runs the backfill and nests its summary."""

from __future__ import annotations

import json

from test_backfill import FIXTURES, fixture_vectors, os_count
from test_ingest import upload_tree


def test_backfill_takes_its_defaults_from_init(run_cli, moto_reset, boto, opensearch_url, os_clean):
    prefix = os_clean
    common = ["--yes", "--output", "json", "--regions", "us-east-1", "--opensearch-url", opensearch_url,
              "--opensearch-auth", "none", "--index-prefix", prefix]
    rc, out, err = run_cli(["init", *common, "--no-backfill"], timeout=300)
    assert rc == 0, err[-3000:]
    first = json.loads(out)
    assert first["applied"] is True and "backfill" not in first
    bucket = next(c["name"] for c in first["plan"]["changes"] if c["kind"] == "s3-bucket")

    s3 = boto("s3")
    # moto evaluates the bucket policy, and its TLS-only statement denies every request to this plain-HTTP
    # emulator (the policy itself is checked in test_init.py). Remove it for the data-plane part of this test.
    s3.delete_bucket_policy(Bucket=bucket)
    import test_ingest
    test_ingest.BUCKET = bucket
    upload_tree(s3, FIXTURES)

    # No --bucket, no --opensearch-url: both come from init's state file.
    rc, out, err = run_cli(["backfill", "--output", "json"], timeout=300)
    assert rc == 0, err[-3000:]
    s = json.loads(out)["backfill"]
    total, want = fixture_vectors(prefix)
    assert s["records"] == total and s["indexed"] == len(want)
    assert os_count(opensearch_url, f"{prefix}-*") == len(want)

    # A second init changes nothing but the bucket policy removed above and (with --yes) runs the backfill, whose summary sits in the same document.
    rc, out, err = run_cli(["init", *common], timeout=300)
    assert rc == 0, err[-3000:]
    second = json.loads(out)
    summary = second["plan"]["summary"]
    changed = [(c["kind"], c["action"]) for c in second["plan"]["changes"] if c["action"] != "no-op"]
    assert changed == [("s3-bucket-policy", "create")] or changed == [("s3-bucket-policy", "update")], changed
    assert summary["delete"] == 0
    # The first backfill left one marker for the whole prefix: nothing is listed again.
    assert second["backfill"]["records"] == 0 and second["backfill"]["already_done_dirs"] == 1, second["backfill"]
    assert second["backfill"]["files"] == 0 and second["backfill"]["already_done_files"] == 0
