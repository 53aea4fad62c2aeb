"""The account is the record: every command works from a machine without the state file (a fresh CI runner, a
colleague's laptop). `init` writes the stack's state as the tags `trailsetup:record:NN` of its ingest-worker policy
(IAM, global: found from the stack name and the credentials alone); `status`, `backfill`, `ingest`, `destroy` and
`init --dry-run` read it when there is no state file, and give the same results as on the machine `init` ran on.
Two state directories stand for two runners.
"""

from __future__ import annotations

import json
from pathlib import Path

from test_backfill import FIXTURES, fixture_vectors, os_count

ACCOUNT = "123456789012"
HOME = "us-east-1"


def test_a_fresh_runner_finds_the_stack_in_the_account(moto_reset, run_cli, boto, aws_env, opensearch_url, os_clean, tmp_path):
    prefix = os_clean
    runner_a = {**aws_env, "TRAILSETUP_STATE_DIR": str(tmp_path / "a")}
    fresh = lambda name: {**aws_env, "TRAILSETUP_STATE_DIR": str(tmp_path / name)}  # noqa: E731
    common = ["--yes", "--regions", HOME, "--opensearch-url", opensearch_url, "--opensearch-auth", "none", "--index-prefix", prefix]
    rc, out, err = run_cli(["init", *common, "--no-backfill", "--output", "json"], env=runner_a, timeout=300)
    assert rc == 0, err[-3000:]
    bucket = next(c["name"] for c in json.loads(out)["plan"]["changes"] if c["kind"] == "s3-bucket")

    # the record is on the stack's ingest-worker policy, and decodes to the state file init wrote
    arn = f"arn:aws:iam::{ACCOUNT}:policy/trailsetup-ingest-worker"
    tags = {t["Key"]: t["Value"] for t in boto("iam").list_policy_tags(PolicyArn=arn)["Tags"]}
    assert "trailsetup:record:00" in tags and tags["trailsetup:stack"] == "trailsetup"
    import base64
    import gzip
    record = json.loads(gzip.decompress(base64.b64decode("".join(tags[k] for k in sorted(tags) if k.startswith("trailsetup:record:")))))
    state_a = json.loads(Path(tmp_path / "a" / "trailsetup.json").read_text())
    assert record == state_a

    # status: the same checks from a runner without state file
    rc_a, out_a, _ = run_cli(["status", "--output", "json"], env=runner_a, timeout=300)
    rc_b, out_b, err_b = run_cli(["status", "--output", "json"], env=fresh("b"), timeout=300)
    checks = lambda out: sorted((c["name"], c["resource"], c["region"], c["level"]) for c in json.loads(out)["status"]["checks"])  # noqa: E731
    assert (rc_b, checks(out_b)) == (rc_a, checks(out_a)), err_b[-2000:]
    # ... which then keeps it as its cache
    assert json.loads(Path(tmp_path / "b" / "trailsetup.json").read_text()) == state_a

    # init --dry-run from a fresh runner (same settings, as a CI job has them): nothing to change
    rc, out, err = run_cli(["init", "--dry-run", *common, "--output", "json"], env=fresh("c"), timeout=300)
    assert rc == 0, err[-3000:]
    s = json.loads(out)["plan"]["summary"]
    assert (s["create"], s["update"], s["delete"]) == (0, 0, 0), [c for c in json.loads(out)["plan"]["changes"] if c["action"] != "no-op"]

    # backfill with no flag at all: bucket, prefix, endpoint and index prefix come from the account's record
    s3 = boto("s3")
    s3.delete_bucket_policy(Bucket=bucket)  # moto applies the TLS-only deny to its plain-HTTP calls (see test_init.py)
    for p in sorted(FIXTURES.rglob("*")):
        if p.is_file() and "AWSLogs" in p.parts:
            s3.put_object(Bucket=bucket, Key="/".join(p.parts[p.parts.index("AWSLogs"):]), Body=p.read_bytes())
    rc, out, err = run_cli(["backfill", "--output", "json"], env=fresh("d"), timeout=300)
    assert rc == 0, err[-3000:]
    total, want = fixture_vectors(prefix)
    got = json.loads(out)["backfill"]
    assert got["records"] == total and got["indexed"] == len(want), got
    assert os_count(opensearch_url, f"{prefix}-*") == len(want)

    # ingest with no flag: the queue, the accepted bucket and the sink from the record
    sqs = boto("sqs")
    q = sqs.get_queue_url(QueueName="trailsetup-notifications")["QueueUrl"]
    key = next(k["Key"] for k in s3.list_objects_v2(Bucket=bucket, Prefix="AWSLogs/")["Contents"] if k["Key"].endswith(".json.gz"))
    sqs.send_message(QueueUrl=q, MessageBody=json.dumps({"s3Bucket": bucket, "s3ObjectKey": [key]}))
    rc, out, err = run_cli(["ingest", "--drain", "--output", "json"], env=fresh("e"), timeout=300)
    assert rc == 0, err[-3000:]
    ing = json.loads(out)["ingest"]
    assert ing["records"] >= 1 and ing["records"] == ing["indexed"] + ing["duplicates"] + ing["quarantined"], ing
    assert ing["dead_letter_messages"] == 0

    # destroy from yet another runner: what init made (its record says what it created) goes
    rc, out, err = run_cli(["destroy", "--yes", "--output", "json"], env=fresh("f"), timeout=300)
    assert rc == 0, err[-3000:]
    assert boto("cloudtrail").describe_trails()["trailList"] == []
    assert [x for x in sqs.list_queues().get("QueueUrls", []) if "trailsetup" in x] == []
    assert [p["PolicyName"] for p in boto("iam").list_policies(Scope="Local")["Policies"] if p["PolicyName"].startswith("trailsetup")] == []


def test_no_state_and_no_record_names_what_to_do(moto_reset, run_cli, aws_env, tmp_path):
    env = {**aws_env, "TRAILSETUP_STATE_DIR": str(tmp_path / "empty")}
    rc, _, err = run_cli(["status"], env=env, timeout=120)
    assert rc == 2 and "stack trailsetup not found" in err and "trailsetup-ingest-worker" in err and "trailsetup init" in err, err
