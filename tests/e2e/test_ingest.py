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

from awsproxy import json_error
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


def test_deletes_go_ten_to_a_request_and_a_refused_delete_loses_nothing(proxy, run_cli, boto, aws_env, opensearch_url, os_clean):
    # SQS Developer Guide, "Amazon SQS batch actions": up to ten messages per call (SQS bills per request), and
    # "setting permissions for DeleteMessage ... sets permissions for the corresponding batch versions".
    # API Reference, DeleteMessageBatch: each entry succeeds or fails on its own inside a 200 answer.
    prefix = os_clean
    s3, sqs = boto("s3"), boto("sqs")
    s3.create_bucket(Bucket=BUCKET)
    keys = [k for k in upload_tree(s3, FIXTURES) if "Digest" not in k]
    q, _ = make_queues(sqs, max_receive=10)

    def send_all():
        for i in range(0, len(keys), 4):
            sqs.send_message(QueueUrl=q, MessageBody=json.dumps({"s3Bucket": BUCKET, "s3ObjectKey": keys[i:i + 4]}))
        return (len(keys) + 3) // 4

    is_batch = lambda h: (h.get("X-Amz-Target") or "") == "AmazonSQS.DeleteMessageBatch"
    first = {"left": 1}

    def fail_first_batch(method, path, headers, body):
        # the first batch: every entry refused inside a 200 (as SQS does for a receipt handle gone stale)
        if is_batch(headers) and first["left"]:
            first["left"] -= 1
            entries = json.loads(body)["Entries"]
            failed = [{"Id": e["Id"], "SenderFault": True, "Code": "ReceiptHandleIsInvalid",
                       "Message": "The input receipt handle is invalid."} for e in entries]
            return 200, "application/x-amz-json-1.0", json.dumps({"Successful": [], "Failed": failed}).encode()
        return None

    messages = send_all()
    url, calls = proxy(answer=fail_first_batch)
    args = ["--queue-url", q, "--opensearch-url", opensearch_url, "--index-prefix", prefix, "--visibility-timeout", "4"]
    rc, out, err = run_cli(["ingest", "--output", "json", "--drain", "--bucket", BUCKET, *args], env=dict(aws_env, AWS_ENDPOINT_URL=url), timeout=600)
    assert rc == 0, err[-3000:]
    s = json.loads(out)["ingest"]
    total, want = fixture_vectors(prefix)
    batches = [json.loads(c["body"])["Entries"] for c in calls if c["target"] == "AmazonSQS.DeleteMessageBatch"]
    assert not [c for c in calls if c["target"] == "AmazonSQS.DeleteMessage"], "no single deletes"
    assert all(1 <= len(b) <= 10 for b in batches) and len(batches) < messages, [len(b) for b in batches]
    refused = len(batches[0])
    # the refused messages came back after their visibility timeout and were loaded again: duplicates, nothing
    # lost (with a visibility this short, a message may also come back before its delete is sent)
    assert sum(len(b) for b in batches) >= messages + refused
    assert "not deleted" in err and "ReceiptHandleIsInvalid" in err, err[-3000:]
    assert (s["indexed"], s["quarantined"]) == (len(want), 0) and s["records"] > total, s
    assert os_count(opensearch_url, f"{prefix}-*") == len(want)
    assert queue_counts(sqs, q) == (0, 0)

    # a refused call (no sqs:DeleteMessage) ends the run and names the permission; the messages stay on the queue
    send_all()
    url, calls = proxy(answer=lambda m, p, h, b: json_error(
        "com.amazonaws.sqs#AccessDenied", "User is not authorized to perform: sqs:deletemessage", version="1.0",
        status=403, query_error="AccessDenied") if is_batch(h) else None)
    rc, out, err = run_cli(["ingest", "--output", "json", "--drain", "--bucket", BUCKET, *args], env=dict(aws_env, AWS_ENDPOINT_URL=url), timeout=600)
    assert rc == 1, f"rc={rc}\n{err[-3000:]}"
    assert "sqs:DeleteMessage" in err and "come back" in err, err[-3000:]
    assert sum(queue_counts(sqs, q)) == messages, "no message was deleted"
    again = ingest(run_cli, args)
    assert (again["indexed"], again["quarantined"]) == (0, 0) and again["duplicates"] == again["records"] >= total
    assert os_count(opensearch_url, f"{prefix}-*") == len(want)
    assert queue_counts(sqs, q) == (0, 0)


def test_ingest_without_queue_is_a_usage_error(run_cli, opensearch_url):
    rc, out, err = run_cli(["ingest", "--drain", "--opensearch-url", opensearch_url])
    assert rc == 2 and "--queue-url" in err and "TRAILSETUP_QUEUE_URL" in err
