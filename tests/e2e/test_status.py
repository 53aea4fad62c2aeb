"""`trailsetup status` against moto and the loopback OpenSearch node: healthy after init and a backfill; then
three faults made out of band with boto3 (logging stopped, subscription deleted, a message in the dead-letter
queue) each named with its fix, exit 1; the forwarder's errors in CloudWatch (put with boto3) a warning."""

from __future__ import annotations

import gzip
import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests

ACCOUNT = "123456789012"
HOME = "us-east-1"
REGIONS = ["us-east-1", "us-west-2", "eu-west-1"]
FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "cloudtrail"


def status(run_cli):
    rc, out, err = run_cli(["status", "--output", "json"], timeout=300)
    assert rc in (0, 1), err
    doc = json.loads(out)
    return rc, doc["status"]


@pytest.mark.parametrize("mode", ["multi-region", "per-region"])
def test_status_healthy_then_names_each_fault(mode, moto_reset, run_cli, boto, opensearch_url, os_clean, tmp_path):
    rc, out, err = run_cli(["init", "--yes", "--no-backfill", "--trail-mode", mode, "--regions", ",".join(REGIONS),
                            "--opensearch-url", opensearch_url, "--index-prefix", os_clean, "--output", "json"])
    assert rc == 0, err
    # a loaded backfill of recent events, one per region (the shared fixtures are years old: stale by design)
    logs = tmp_path / "logs"
    logs.mkdir()
    now = datetime.now(timezone.utc)
    records = [{"eventVersion": "1.09", "eventID": str(uuid.uuid4()), "eventTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "eventSource": "s3.amazonaws.com", "eventName": "ListBuckets", "awsRegion": r, "readOnly": True,
                "eventType": "AwsApiCall", "recipientAccountId": ACCOUNT} for r in REGIONS]
    (logs / f"{ACCOUNT}_CloudTrail_{HOME}_{now:%Y%m%dT%H%MZ}_0123456789abcdef.json.gz").write_bytes(
        gzip.compress(json.dumps({"Records": records}).encode()))
    rc, out, err = run_cli(["backfill", "--source-dir", str(logs), "--output", "json"], timeout=300)
    assert rc == 0 and json.loads(out)["backfill"]["indexed"] == 3, err

    requests.post(f"{opensearch_url}/{os_clean}-*/_refresh", timeout=30)  # make the backfill searchable now

    rc, st = status(run_cli)
    assert rc == 0 and st["healthy"] is True
    # every check is ok, the two CloudWatch metric checks too (GetMetricData in the Query protocol, which moto
    # answers: a quiet hour has no errors and no old message)
    not_ok = [c for c in st["checks"] if c["level"] != "ok"]
    assert not_ok == [], not_ok
    assert [c["detail"] for c in st["checks"] if c["name"] == "queue oldest message"] == ["0 s"]
    names = {c["name"] for c in st["checks"]}
    assert {"trail logging", "trail last delivery", "subscription", "queue depth", "queue oldest message", "dead-letter queue",
            "forwarder", "forwarder errors", "opensearch health", "freshness", "events in the last hour"} <= names
    assert sorted(c["region"] for c in st["checks"] if c["name"] == "freshness") == sorted(REGIONS)
    assert [c["detail"] for c in st["checks"] if c["name"] == "events in the last hour"] == ["3"]
    # the human table says the same
    rc, out, _ = run_cli(["status"])
    assert rc == 0 and "checks:" in out and "0 warning(s), 0 failure(s)" in out

    # the forwarder's errors and throttles of the last hour, as CloudWatch has them (put here with boto3): a warning
    # naming the counts (the largest hourly sum), never a failure
    fwd = next(c for c in st["checks"] if c["name"] == "forwarder errors")
    now = datetime.now(timezone.utc) - timedelta(minutes=1)
    boto("cloudwatch", fwd["region"]).put_metric_data(Namespace="AWS/Lambda", MetricData=[
        {"MetricName": name, "Dimensions": [{"Name": "FunctionName", "Value": fwd["resource"]}], "Value": value, "Timestamp": now}
        for name, value in (("Errors", 4.0), ("Throttles", 1.0))])
    rc, st = status(run_cli)
    assert rc == 0 and st["healthy"] is True
    warned = [c for c in st["checks"] if c["level"] != "ok"]
    assert [(c["name"], c["region"], c["detail"]) for c in warned] == [("forwarder errors", fwd["region"], "4 error(s), 1 throttle(s) in the last hour")], warned
    assert f"/aws/lambda/{fwd['resource']}" in warned[0]["fix"]

    # out of band: stop logging, delete the subscription, leave a message in the dead-letter queue
    region, trail = (HOME, "trailsetup") if mode == "multi-region" else ("eu-west-1", "trailsetup-eu-west-1")
    boto("cloudtrail", region).stop_logging(Name=trail)
    sns = boto("sns", region)
    topic = f"arn:aws:sns:{region}:{ACCOUNT}:trailsetup-cloudtrail"
    for s in sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]:
        sns.unsubscribe(SubscriptionArn=s["SubscriptionArn"])
    sqs = boto("sqs")
    dlq = sqs.get_queue_url(QueueName="trailsetup-notifications-dlq")["QueueUrl"]
    sqs.send_message(QueueUrl=dlq, MessageBody="not a notification")

    rc, st = status(run_cli)
    assert rc == 1 and st["healthy"] is False
    fails = {(c["name"], c["region"]): c for c in st["checks"] if c["level"] == "fail"}
    assert set(fails) == {("trail logging", region), ("subscription", region), ("dead-letter queue", HOME)}, fails
    assert "start-logging" in fails[("trail logging", region)]["fix"]
    assert "trailsetup init" in fails[("subscription", region)]["fix"]
    assert "1 message" in fails[("dead-letter queue", HOME)]["detail"] and "receive-message" in fails[("dead-letter queue", HOME)]["fix"]
    warns = sum(1 for c in st["checks"] if c["level"] == "warn")
    assert ("forwarder errors", fwd["region"]) in {(c["name"], c["region"]) for c in st["checks"] if c["level"] == "warn"}
    rc, out, _ = run_cli(["status"])
    assert rc == 1 and "FAIL" in out and f"{warns} warning(s), 3 failure(s)" in out


def test_status_without_state_is_a_usage_error(moto_reset, run_cli):
    rc, out, err = run_cli(["status"])
    assert rc == 2 and "trailsetup init" in err


def test_canary_end_to_end_with_the_test_playing_cloudtrail(moto_reset, run_cli, boto, opensearch_url, os_clean, aws_env, trailsetup_bin, tmp_path):
    """status --canary makes one recorded call; this test plays CloudTrail (moto delivers no logs): when it sees the
    call go by, it writes the log file holding that call's record and publishes CloudTrail's notification; a real
    `trailsetup ingest` loads it; the canary reports the delay."""
    import gzip
    import re
    import signal
    import subprocess
    import threading
    import time
    import uuid
    from datetime import datetime, timezone

    from awsproxy import start_proxy

    rc, out, err = run_cli(["init", "--yes", "--no-backfill", "--regions", HOME, "--opensearch-url", opensearch_url,
                            "--index-prefix", os_clean, "--output", "json"])
    assert rc == 0, err
    bucket = f"trailsetup-{ACCOUNT}-{HOME}"
    # CloudTrail writes over TLS; moto applies the TLS-only deny to this test's plain-HTTP puts: lift it for the test
    boto("s3").delete_bucket_policy(Bucket=bucket)
    seen = []

    def deliver(ua: str):
        now = datetime.now(timezone.utc)
        rec = {"eventVersion": "1.09", "eventID": str(uuid.uuid4()), "eventTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
               "eventSource": "cloudtrail.amazonaws.com", "eventName": "GetTrail", "awsRegion": HOME,
               "sourceIPAddress": "127.0.0.1", "userAgent": ua, "readOnly": True, "eventType": "AwsApiCall",
               "managementEvent": True, "recipientAccountId": ACCOUNT, "eventCategory": "Management",
               "userIdentity": {"type": "IAMUser", "accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/test"},
               "requestParameters": {"name": "trailsetup"}, "responseElements": None}
        key = (f"AWSLogs/{ACCOUNT}/CloudTrail/{HOME}/{now:%Y/%m/%d}/"
               f"{ACCOUNT}_CloudTrail_{HOME}_{now:%Y%m%dT%H%MZ}_{uuid.uuid4().hex[:16]}.json.gz")
        boto("s3").put_object(Bucket=bucket, Key=key, Body=gzip.compress(json.dumps({"Records": [rec]}).encode()))
        boto("sns").publish(TopicArn=f"arn:aws:sns:{HOME}:{ACCOUNT}:trailsetup-cloudtrail",
                            Message=json.dumps({"s3Bucket": bucket, "s3ObjectKey": [key]}))

    def watch(method, path, headers, body):
        ua = headers.get("User-Agent", "") + " " + headers.get("X-Amz-User-Agent", "")
        if (headers.get("X-Amz-Target") or "").endswith("GetTrail") and re.search(r"trailsetup-canary-[0-9a-f]{8}", ua):
            seen.append(ua)
            threading.Timer(1.0, deliver, args=(headers.get("User-Agent", ua),)).start()
        return None

    ingest = subprocess.Popen([str(trailsetup_bin), "ingest", "--bucket", bucket], env=aws_env, cwd=tmp_path,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    srv, url, _ = start_proxy(moto_reset, answer=watch)
    try:
        env = dict(aws_env, AWS_ENDPOINT_URL=url)
        rc, out, err = run_cli(["status", "--canary", "--canary-timeout", "120", "--output", "json"], env=env, timeout=300)
    finally:
        srv.shutdown()
        ingest.send_signal(signal.SIGTERM)
        ingest.wait(timeout=60)
    assert len(seen) == 1, seen
    st = json.loads(out)["status"]
    canary = [c for c in st["checks"] if c["name"] == "canary"]
    assert len(canary) == 1 and canary[0]["level"] == "ok", (canary, err)
    assert re.fullmatch(r"event in OpenSearch \d+\.\d s after the call", canary[0]["detail"])
    assert "cloudtrail:GetTrail" in err and "read-only" in err  # said, on stderr
    assert rc == 0, err


def test_watch_repeats(moto_reset, run_cli, aws_env, opensearch_url, os_clean, trailsetup_bin, tmp_path):
    import signal
    import subprocess
    import time

    rc, out, err = run_cli(["init", "--yes", "--no-backfill", "--regions", HOME, "--opensearch-url", opensearch_url,
                            "--index-prefix", os_clean, "--output", "json"])
    assert rc == 0, err
    p = subprocess.Popen([str(trailsetup_bin), "status", "--watch", "1", "--output", "json"], env=aws_env, cwd=tmp_path,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(6)
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=30)
    docs, text, dec = [], out.decode(), json.JSONDecoder()
    i = 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        d, i = dec.raw_decode(text, i)
        docs.append(d)
    assert len(docs) >= 2 and all("healthy" in d["status"] for d in docs), len(docs)
