"""`ingest` follows the SQS queue (moto) and loads each notified file into a real OpenSearch node; `backfill
--enqueue` shares a backfill between workers. Counts are checked with plain HTTP, queues with boto3."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import requests

from test_backfill import FIXTURES, backfill, fixture_vectors, os_count, synth, wait_until_count

BUCKET = "trail-logs"


def upload_tree(s3, root: Path) -> list[str]:
    keys = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and "AWSLogs" in p.parts:
            key = "/".join(p.parts[p.parts.index("AWSLogs"):])
            s3.put_object(Bucket=BUCKET, Key=key, Body=p.read_bytes())
            keys.append(key)
    return keys


def make_queues(sqs, name="notifications", max_receive=2):
    dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    q = sqs.create_queue(QueueName=name, Attributes={
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive)})})["QueueUrl"]
    return q, dlq


def queue_counts(sqs, url):
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"])


def sns(message: str) -> str:
    return json.dumps({"Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:us-east-1:123456789012:t",
                       "Message": message, "Timestamp": "2024-01-01T00:00:00.000Z"})


def s3_event(keys):
    return json.dumps({"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                                    "s3": {"bucket": {"name": BUCKET}, "object": {"key": k.replace(" ", "+"), "size": 1}}}
                                   for k in keys]})


def ingest(run_cli, args, env=None, expect_rc=0, timeout=600):
    # ingest loads only the files of the buckets it is told about (--bucket, or init's state file)
    rc, out, err = run_cli(["ingest", "--output", "json", "--drain", "--bucket", BUCKET, *args], env=env, timeout=timeout)
    assert rc == expect_rc, f"rc={rc}\n{out[-2000:]}\n{err[-3000:]}"
    s = json.loads(out)["ingest"]
    assert s["records"] == s["indexed"] + s["duplicates"] + s["quarantined"]
    return s


def test_drain_every_notification_format(run_cli, moto_reset, boto, opensearch_url, os_clean):
    prefix = os_clean
    s3, sqs = boto("s3"), boto("sqs")
    s3.create_bucket(Bucket=BUCKET)
    keys = [k for k in upload_tree(s3, FIXTURES) if "Digest" not in k]
    q, dlq = make_queues(sqs)
    # Spread the 188 files over the four notification shapes.
    formats = [
        lambda ks: json.dumps({"s3Bucket": BUCKET, "s3ObjectKey": ks}),          # CloudTrail, raw
        lambda ks: sns(json.dumps({"s3Bucket": BUCKET, "s3ObjectKey": ks})),     # CloudTrail via SNS
        lambda ks: s3_event(ks),                                                  # S3 event, raw
        lambda ks: sns(s3_event(ks)),                                             # S3 event via SNS
    ]
    for i in range(0, len(keys), 5):
        sqs.send_message(QueueUrl=q, MessageBody=formats[(i // 5) % 4](keys[i:i + 5]))
    sqs.send_message(QueueUrl=q, MessageBody="CloudTrail validation message.")
    sqs.send_message(QueueUrl=q, MessageBody=sns("CloudTrail validation message."))
    sqs.send_message(QueueUrl=q, MessageBody=json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": BUCKET}))
    garbage = "this is not a notification {"
    sqs.send_message(QueueUrl=q, MessageBody=garbage)

    s = ingest(run_cli, ["--queue-url", q, "--opensearch-url", opensearch_url, "--index-prefix", prefix])
    total, want = fixture_vectors(prefix)
    assert s["records"] == total and s["quarantined"] == 0
    assert s["ignored_messages"] == 3 and s["dead_letter_messages"] >= 1
    assert os_count(opensearch_url, f"{prefix}-*") == len(want)
    assert queue_counts(sqs, q) == (0, 0)
    dead = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    assert [m["Body"] for m in dead] == [garbage]

    # The same logs through backfill afterwards add nothing: every path builds the same documents.
    b, _ = backfill(run_cli, ["--bucket", BUCKET, "--opensearch-url", opensearch_url, "--index-prefix", prefix])
    assert b["indexed"] == 0 and b["duplicates"] == total


def test_enqueue_then_three_workers_exact(run_cli, moto_reset, boto, opensearch_url, os_clean, tmp_path, trailsetup_bin, aws_env):
    prefix = os_clean
    s3, sqs = boto("s3"), boto("sqs")
    s3.create_bucket(Bucket=BUCKET)
    corpus = synth(tmp_path, 50_000, "corpus", per_file=250)
    keys = upload_tree(s3, corpus)
    q, _ = make_queues(sqs)
    rc, out, err = run_cli(["backfill", "--bucket", BUCKET, "--enqueue", q, "--output", "json"])
    assert rc == 0, err
    assert json.loads(out)["enqueue"]["files"] == len(keys) == 200
    assert queue_counts(sqs, q)[0] == len(keys)
    argv = [str(trailsetup_bin), "ingest", "--drain", "--output", "json", "--bucket", BUCKET, "--queue-url", q, "--opensearch-url",
            opensearch_url, "--index-prefix", prefix, "--visibility-timeout", "30"]
    procs = [subprocess.Popen(argv, env=aws_env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()[-2000:]
        results.append(json.loads(out)["ingest"])
    assert sum(r["records"] for r in results) >= 50_000
    assert sum(r["indexed"] for r in results) == 50_000
    assert all(r["quarantined"] == 0 for r in results)
    assert os_count(opensearch_url, f"{prefix}-*") == 50_000
    assert queue_counts(sqs, q) == (0, 0)


def test_kill_9_worker_then_restart_exact(run_cli, moto_reset, boto, opensearch_url, os_clean, tmp_path, trailsetup_bin, aws_env):
    prefix = os_clean
    s3, sqs = boto("s3"), boto("sqs")
    s3.create_bucket(Bucket=BUCKET)
    corpus = synth(tmp_path, 30_000, "corpus", per_file=100)
    upload_tree(s3, corpus)
    q, _ = make_queues(sqs, max_receive=5)
    rc, out, err = run_cli(["backfill", "--bucket", BUCKET, "--enqueue", q])
    assert rc == 0, err
    argv = [str(trailsetup_bin), "ingest", "--drain", "--output", "json", "--bucket", BUCKET, "--queue-url", q, "--opensearch-url",
            opensearch_url, "--index-prefix", prefix, "--visibility-timeout", "3", "--bulk-mib", "0.1",
            "--bulk-concurrency", "1"]
    p = subprocess.Popen(argv, env=aws_env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_until_count(opensearch_url, f"{prefix}-*", 8_000, p)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert os_count(opensearch_url, f"{prefix}-*") < 30_000
    # Messages of files in flight were not deleted: they come back after the visibility timeout.
    s = ingest(run_cli, ["--queue-url", q, "--opensearch-url", opensearch_url, "--index-prefix", prefix,
                         "--visibility-timeout", "3"])
    assert os_count(opensearch_url, f"{prefix}-*") == 30_000
    assert s["quarantined"] == 0
    assert queue_counts(sqs, q) == (0, 0)


def test_sigterm_finishes_in_flight_without_loss(run_cli, moto_reset, boto, opensearch_url, os_clean, tmp_path, trailsetup_bin, aws_env):
    prefix = os_clean
    s3, sqs = boto("s3"), boto("sqs")
    s3.create_bucket(Bucket=BUCKET)
    upload_tree(s3, synth(tmp_path, 20_000, "corpus", per_file=100))
    q, _ = make_queues(sqs)
    assert run_cli(["backfill", "--bucket", BUCKET, "--enqueue", q])[0] == 0
    argv = [str(trailsetup_bin), "ingest", "--output", "json", "--bucket", BUCKET, "--queue-url", q, "--opensearch-url", opensearch_url,
            "--index-prefix", prefix, "--visibility-timeout", "3", "--bulk-mib", "0.1", "--bulk-concurrency", "1"]
    p = subprocess.Popen(argv, env=aws_env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_until_count(opensearch_url, f"{prefix}-*", 3_000, p)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=300)
    assert p.returncode in (0, 3), err.decode()[-2000:]
    first = json.loads(out)["ingest"]
    # Everything the stopped worker counted was settled.
    assert first["records"] == first["indexed"] + first["duplicates"]
    s = ingest(run_cli, ["--queue-url", q, "--opensearch-url", opensearch_url, "--index-prefix", prefix,
                         "--visibility-timeout", "3"])
    assert os_count(opensearch_url, f"{prefix}-*") == 20_000
    assert queue_counts(sqs, q) == (0, 0)


def test_ingest_without_queue_is_a_usage_error(run_cli, opensearch_url):
    rc, out, err = run_cli(["ingest", "--drain", "--opensearch-url", opensearch_url])
    assert rc == 2 and "--queue-url" in err and "TRAILSETUP_QUEUE_URL" in err
