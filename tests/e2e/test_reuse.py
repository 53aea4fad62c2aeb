"""Brownfield `init --use-trail` against moto and the real OpenSearch node: the three cases of issue 8.

(a) an own multi-region trail with a bucket, an SNS topic and a CloudWatch Logs group: `init --yes` reuses it by
    default, subscribes our queue to its topic and the forwarder to its log group;
(b) a trail with no topic whose bucket is this account's: an S3 event notification, merged beside the bucket's
    other consumer;
(c) an organization-layout bucket in another account with no trail visible: nothing planned there, the bucket
    owner's statements printed, `backfill --source-role` reads through the assumed role.

Everything is checked with boto3, never with trailsetup's own read path. moto delivers S3 event notifications and
SNS → SQS messages, but never CloudTrail's own files or notifications: the tests put the files and publish what
CloudTrail would.
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3

from awsproxy import start_proxy
from conftest import TEST_ACCESS_KEY
from test_backfill import FIXTURES, backfill, fixture_vectors, os_count

ACCOUNT = "123456789012"


def log_files(root: Path = FIXTURES):
    """(relative key below the account folder, bytes) of every fixture log file (digests left out)."""
    out = []
    for p in sorted(root.rglob("*.json.gz")):
        parts = p.parts[p.parts.index("AWSLogs") + 2:]
        if parts and parts[0] == "CloudTrail":
            out.append(("/".join(parts), p.read_bytes()))
    return out


def put_logs(s3, bucket: str, account_root: str) -> list[str]:
    """Put the fixture files where a trail of this account writes: `<account_root>CloudTrail/...`."""
    keys = []
    for rel, body in log_files():
        key = f"{account_root}{rel}"
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        keys.append(key)
    return keys


def ingest(run_cli, args, env=None):
    """`ingest --drain` with no --bucket: the reused trail's bucket comes from init's state (test_ingest's helper
    names its own bucket, whose files are the only ones it then loads)."""
    rc, out, err = run_cli(["ingest", "--output", "json", "--drain", *args], env=env, timeout=600)
    assert rc == 0, f"rc={rc}\n{out[-2000:]}\n{err[-3000:]}"
    s = json.loads(out)["ingest"]
    assert s["records"] == s["indexed"] + s["duplicates"] + s["quarantined"]
    return s


def init(run_cli, args, opensearch_url, prefix, expect_rc=0):
    rc, out, err = run_cli(["init", "--yes", "--output", "json", "--opensearch-url", opensearch_url, "--opensearch-auth", "none",
                            "--index-prefix", prefix, "--no-backfill", *args], timeout=600)
    assert rc == expect_rc, f"rc={rc}\n{out[-3000:]}\n{err[-4000:]}"
    return (json.loads(out) if out.strip() else None), err


def by_kind(doc, kind):
    return [c for c in doc["plan"]["changes"] if c["kind"] == kind]


def assert_reused_only(doc):
    """No trail, bucket, topic or log group is created or changed: they are listed as reused."""
    for c in doc["plan"]["changes"]:
        if c["kind"] == "logs-log-group" and c["name"].startswith("/aws/lambda/"):
            continue  # the forwarder's own log group is ours (created with the stack's retention and tag)
        if c["kind"] in ("cloudtrail-trail", "s3-bucket", "s3-bucket-policy", "sns-topic", "sns-topic-policy", "logs-log-group"):
            assert c["action"] == "no-op" and c["details"].get("reused") is True, c
    assert by_kind(doc, "cloudtrail-trail"), "the reused trail is listed"


def trail_facts(ct, name):
    t = ct.get_trail(Name=name)["Trail"]
    return {k: v for k, v in t.items() if k != "ResponseMetadata"}, ct.list_tags(ResourceIdList=[t["TrailARN"]])["ResourceTagList"]


def second_run_is_noop(run_cli, args, opensearch_url, prefix):
    doc, _ = init(run_cli, args, opensearch_url, prefix)
    s = doc["plan"]["summary"]
    changed = [(c["kind"], c["name"], c["action"]) for c in doc["plan"]["changes"] if c["action"] != "no-op"]
    assert s["create"] == s["update"] == s["delete"] == 0, changed
    return doc


def test_a_own_trail_with_topic_and_log_group_is_reused_by_default(run_cli, moto_reset, boto, opensearch_url, os_clean):
    prefix = os_clean
    s3, sns, sqs, ct, logs = boto("s3"), boto("sns"), boto("sqs"), boto("cloudtrail"), boto("logs")
    s3.create_bucket(Bucket="corp-trail-logs")
    topic = sns.create_topic(Name="corp-trail-topic")["TopicArn"]
    other_q = sqs.create_queue(QueueName="siem-feed")["QueueUrl"]
    other_arn = sqs.get_queue_attributes(QueueUrl=other_q, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=other_arn)
    logs.create_log_group(logGroupName="/corp/cloudtrail")
    group_arn = f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/corp/cloudtrail:*"
    ct.create_trail(Name="corp", S3BucketName="corp-trail-logs", SnsTopicName="corp-trail-topic", IsMultiRegionTrail=True,
                    CloudWatchLogsLogGroupArn=group_arn, CloudWatchLogsRoleArn=f"arn:aws:iam::{ACCOUNT}:role/corp-ct-logs")
    ct.start_logging(Name="corp")
    before = trail_facts(ct, "corp")

    # no --use-trail: --yes takes the default, which reuses the best multi-region trail
    doc, err = init(run_cli, ["--regions", "us-east-1"], opensearch_url, prefix)
    assert doc["applied"] is True
    assert doc["reused_trail"].startswith("corp (arn:aws:cloudtrail:us-east-1:")
    assert any("corp" in t and "topic corp-trail-topic" in t for t in doc["existing_trails"]), doc["existing_trails"]
    assert_reused_only(doc)
    assert not [c for c in doc["plan"]["changes"] if c["kind"] == "iam-role" and c["name"].endswith("cloudtrail-logs")]
    sub = by_kind(doc, "sns-subscription")
    assert [(c["action"], c["details"]["topic_arn"]) for c in sub] == [("create", topic)]
    assert "Reusing trail corp" in err or doc["reused_trail"]

    # what got made, seen by boto3: our queue subscribed beside the other consumer; its policy admits the topic
    assert trail_facts(ct, "corp") == before, "the reused trail is untouched"
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["corp-trail-logs"], "no bucket created"
    assert [t["Name"] for t in ct.describe_trails()["trailList"]] == ["corp"], "no trail created"
    ours = sqs.get_queue_url(QueueName="trailsetup-notifications")["QueueUrl"]
    our_arn = sqs.get_queue_attributes(QueueUrl=ours, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    endpoints = sorted(s["Endpoint"] for s in sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"])
    assert endpoints == sorted([other_arn, our_arn])
    policy = json.loads(sqs.get_queue_attributes(QueueUrl=ours, AttributeNames=["Policy"])["Attributes"]["Policy"])
    assert [s["Condition"]["ArnEquals"]["aws:SourceArn"] for s in policy["Statement"]] == [topic]
    assert sns.get_topic_attributes(TopicArn=topic)["Attributes"].get("Policy") is not None
    # the forwarder subscribes to the trail's log group
    filters = logs.describe_subscription_filters(logGroupName="/corp/cloudtrail")["subscriptionFilters"]
    assert [(f["filterName"], f["destinationArn"].rsplit(":", 1)[1]) for f in filters] == [("trailsetup-forwarder", "trailsetup-forwarder")]

    second_run_is_noop(run_cli, ["--regions", "us-east-1"], opensearch_url, prefix)

    # CloudTrail delivers: the files land in the bucket and a notification goes to the topic (the test plays
    # CloudTrail; moto delivers SNS → SQS)
    keys = put_logs(s3, "corp-trail-logs", f"AWSLogs/{ACCOUNT}/")
    for i in range(0, len(keys), 7):
        sns.publish(TopicArn=topic, Message=json.dumps({"s3Bucket": "corp-trail-logs", "s3ObjectKey": keys[i:i + 7]}))
    total, want = fixture_vectors(prefix)
    s = ingest(run_cli, [])
    assert (s["records"], s["indexed"], s["quarantined"]) == (total, len(want), 0), s
    assert os_count(opensearch_url, f"{prefix}-*") == len(want)
    # the other consumer got every notification too
    got = 0
    while True:
        m = sqs.receive_message(QueueUrl=other_q, MaxNumberOfMessages=10).get("Messages", [])
        if not m:
            break
        got += len(m)
        sqs.delete_message_batch(QueueUrl=other_q, Entries=[{"Id": str(i), "ReceiptHandle": x["ReceiptHandle"]} for i, x in enumerate(m)])
    assert got == (len(keys) + 6) // 7

    # backfill takes the bucket and this account's prefix from the state: the same history, exactly
    s, _ = backfill(run_cli, ["--index-prefix", f"{prefix}b"])
    total, want_b = fixture_vectors(f"{prefix}b")
    assert (s["files"], s["records"], s["indexed"]) == (len(keys), total, len(want_b)), s
    assert os_count(opensearch_url, f"{prefix}b-*") == len(want_b)

    # status reads the reused trail (never changes it): logging, then stopped by its owner
    def reused_check():
        rc, out, err = run_cli(["status", "--output", "json"], timeout=300)
        checks = json.loads(out)["status"]["checks"]
        return rc, next(c for c in checks if c["name"] == "reused trail logging")
    rc, c = reused_check()
    assert c["level"] == "ok", c
    ct.stop_logging(Name="corp")
    rc, c = reused_check()
    assert rc == 1 and c["level"] == "fail" and "owner" in c["fix"], c
    ct.start_logging(Name="corp")
    before = trail_facts(ct, "corp")

    # destroy removes exactly our subscription and filter; the trail, its topic, log group and the other consumer stay
    rc, out, err = run_cli(["destroy", "--yes", "--output", "json"], timeout=300)
    assert rc == 0, err[-3000:]
    assert trail_facts(ct, "corp") == before
    assert [s["Endpoint"] for s in sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]] == [other_arn]
    assert logs.describe_subscription_filters(logGroupName="/corp/cloudtrail")["subscriptionFilters"] == []
    assert logs.describe_log_groups(logGroupNamePrefix="/corp/cloudtrail")["logGroups"]


def test_b_trail_without_topic_gets_a_merged_bucket_notification(run_cli, moto_reset, boto, opensearch_url, os_clean):
    prefix = os_clean
    s3, sqs, ct = boto("s3"), boto("sqs"), boto("cloudtrail")
    s3.create_bucket(Bucket="legacy-logs")
    thumbs = sqs.create_queue(QueueName="thumbnails")["QueueUrl"]
    thumbs_arn = sqs.get_queue_attributes(QueueUrl=thumbs, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    theirs = {"Id": "thumbnails", "QueueArn": thumbs_arn, "Events": ["s3:ObjectCreated:*"],
              "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "images/"}]}}}
    s3.put_bucket_notification_configuration(Bucket="legacy-logs", NotificationConfiguration={"QueueConfigurations": [theirs]})
    ct.create_trail(Name="legacy", S3BucketName="legacy-logs", S3KeyPrefix="audit", IsMultiRegionTrail=False)
    before = trail_facts(ct, "legacy")

    args = ["--use-trail", "legacy", "--regions", "us-east-1"]
    rc, out, err = run_cli(["init", "--dry-run", "--yes", "--output", "json", *args, "--opensearch-url", opensearch_url], timeout=300)
    assert rc == 0, err[-3000:]
    dry = json.loads(out)
    assert any("live loading goes through the queue only" in w for w in dry["warnings"]), dry["warnings"]

    doc, _ = init(run_cli, args, opensearch_url, prefix)
    assert_reused_only(doc)
    n = by_kind(doc, "s3-bucket-notification")
    assert len(n) == 1 and n[0]["action"] == "create"
    assert (n[0]["details"]["prefix"], n[0]["details"]["suffix"]) == (f"audit/AWSLogs/{ACCOUNT}/", ".json.gz")
    assert not by_kind(doc, "lambda-function"), "no log group: no forwarder"

    cfg = s3.get_bucket_notification_configuration(Bucket="legacy-logs")
    ids = sorted(q["Id"] for q in cfg["QueueConfigurations"])
    assert ids == ["thumbnails", "trailsetup-trailsetup"], "the other consumer's configuration is kept"
    assert next(q for q in cfg["QueueConfigurations"] if q["Id"] == "thumbnails") == theirs
    ours = sqs.get_queue_url(QueueName="trailsetup-notifications")["QueueUrl"]
    policy = json.loads(sqs.get_queue_attributes(QueueUrl=ours, AttributeNames=["Policy"])["Attributes"]["Policy"])
    st = policy["Statement"]
    assert [(s["Principal"]["Service"], s["Condition"]["ArnLike"]["aws:SourceArn"], s["Condition"]["StringEquals"]["aws:SourceAccount"]) for s in st] \
        == [("s3.amazonaws.com", "arn:aws:s3:::legacy-logs", ACCOUNT)]
    assert trail_facts(ct, "legacy") == before

    second_run_is_noop(run_cli, args, opensearch_url, prefix)

    # the trail writes: S3 itself notifies our queue (moto delivers S3 event notifications)
    keys = put_logs(s3, "legacy-logs", f"audit/AWSLogs/{ACCOUNT}/")
    s3.put_object(Bucket="legacy-logs", Key="images/cat.png", Body=b"x")
    # CloudTrail's digest files share the prefix and suffix: notified too, never loaded
    digest = next(FIXTURES.rglob("*CloudTrail-Digest*.json.gz"))
    s3.put_object(Bucket="legacy-logs", Key=f"audit/AWSLogs/{ACCOUNT}/CloudTrail-Digest/us-east-1/2024/01/01/{digest.name}", Body=digest.read_bytes())
    total, want = fixture_vectors(prefix)
    s = ingest(run_cli, [])
    assert (s["records"], s["indexed"], s["quarantined"]) == (total, len(want), 0), s
    assert os_count(opensearch_url, f"{prefix}-*") == len(want)
    assert int(sqs.get_queue_attributes(QueueUrl=thumbs, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"]) >= 1

    s, _ = backfill(run_cli, ["--index-prefix", f"{prefix}b"])
    total, want_b = fixture_vectors(f"{prefix}b")
    assert (s["files"], s["records"], s["indexed"]) == (len(keys), total, len(want_b)), s

    rc, out, err = run_cli(["destroy", "--yes", "--output", "json"], timeout=300)
    assert rc == 0, err[-3000:]
    cfg = s3.get_bucket_notification_configuration(Bucket="legacy-logs")
    assert cfg["QueueConfigurations"] == [theirs], "destroy removes our entry only"
    assert trail_facts(ct, "legacy") == before
    assert s3.list_objects_v2(Bucket="legacy-logs", Prefix="audit/")["KeyCount"] > 0


def test_b_overlapping_consumer_is_refused_and_nothing_changes(run_cli, moto_reset, boto, opensearch_url, os_clean):
    s3, sqs, ct = boto("s3"), boto("sqs"), boto("cloudtrail")
    s3.create_bucket(Bucket="legacy-logs")
    q = sqs.create_queue(QueueName="everything")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    theirs = {"Id": "all-objects", "QueueArn": arn, "Events": ["s3:ObjectCreated:Put"]}
    s3.put_bucket_notification_configuration(Bucket="legacy-logs", NotificationConfiguration={"QueueConfigurations": [theirs]})
    ct.create_trail(Name="legacy", S3BucketName="legacy-logs")
    doc, err = init(run_cli, ["--use-trail", "legacy"], opensearch_url, os_clean, expect_rc=2)
    assert "all-objects" in err and "overlap" in err, err[-2000:]
    assert sqs.list_queues(QueueNamePrefix="trailsetup").get("QueueUrls") is None, "nothing was created"
    assert s3.get_bucket_notification_configuration(Bucket="legacy-logs")["QueueConfigurations"] == [theirs]


def test_c_log_archive_bucket_in_another_account(run_cli, moto_reset, boto, moto_url, opensearch_url, os_clean, aws_env):
    prefix = os_clean
    org = boto("organizations").create_organization(FeatureSet="ALL")["Organization"]["Id"]
    # the log archive account (moto: an assumed role's credentials act in the role's account)
    creds = boto("sts").assume_role(RoleArn="arn:aws:iam::111111111111:role/log-reader", RoleSessionName="setup")["Credentials"]
    archive = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1", aws_access_key_id=creds["AccessKeyId"],
                           aws_secret_access_key=creds["SecretAccessKey"], aws_session_token=creds["SessionToken"])
    archive.create_bucket(Bucket="org-log-archive")
    trail = "arn:aws:cloudtrail:us-east-1:222222222222:trail/org-trail"
    args = ["--use-trail", trail, "--bucket", "org-log-archive", "--source-role", "arn:aws:iam::111111111111:role/log-reader"]

    doc, err = init(run_cli, args, opensearch_url, prefix)
    assert_reused_only(doc)
    assert not by_kind(doc, "s3-bucket-notification") and not by_kind(doc, "sns-subscription"), "nothing planned in the other account"
    acts = doc["owner_actions"]
    read = acts[0]["statements"][0]
    assert read["Resource"] == f"arn:aws:s3:::org-log-archive/AWSLogs/{org}/{ACCOUNT}/*"
    assert read["Principal"]["AWS"] == "arn:aws:iam::111111111111:role/log-reader"
    note = next(a for a in acts if "notification" in a)
    assert note["notification"]["QueueConfigurations"][0]["Filter"]["Key"]["FilterRules"][0]["Value"] == f"AWSLogs/{org}/{ACCOUNT}/"
    ingest_policy = next(c for c in doc["plan"]["changes"] if c["name"] == "trailsetup-ingest-worker")["details"]["policy"]
    assert {"Sid": "AssumeSourceRole", "Effect": "Allow", "Action": "sts:AssumeRole",
            "Resource": "arn:aws:iam::111111111111:role/log-reader"} in ingest_policy["Statement"]
    # human output prints the statements too
    rc, out, err = run_cli(["init", "--dry-run", "--yes", *args, "--opensearch-url", opensearch_url, "--opensearch-auth", "none", "--index-prefix", prefix])
    assert rc == 0 and "To be done by the owners of resources in other accounts" in out and "TrailsetupRead123456789012Trailsetup" in out, out[-3000:]
    assert boto("s3").list_buckets()["Buckets"] == [], "no bucket created in this account"
    assert boto("cloudtrail").describe_trails()["trailList"] == []

    second_run_is_noop(run_cli, args, opensearch_url, prefix)

    # the archive holds the organization layout; backfill reads this account's part through the role
    for rel, body in log_files():
        archive.put_object(Bucket="org-log-archive", Key=f"AWSLogs/{org}/{ACCOUNT}/{rel}", Body=body)
    archive.put_object(Bucket="org-log-archive", Key=f"AWSLogs/{org}/999999999999/{log_files()[0][0]}", Body=log_files()[0][1])
    srv, url, calls = start_proxy(moto_url)
    try:
        env = dict(aws_env, AWS_ENDPOINT_URL=url)
        s, _ = backfill(run_cli, [], env=env)
    finally:
        srv.shutdown()
    total, want = fixture_vectors(prefix)
    assert (s["files"], s["records"], s["indexed"]) == (len(log_files()), total, len(want)), s
    assert any(b"Action=AssumeRole" in c["body"] and b"log-reader" in c["body"] for c in calls), "the role was assumed"
    reads = [c for c in calls if c["method"] == "GET" and "/org-log-archive/" in c["path"]]
    assert reads and all(TEST_ACCESS_KEY not in c["auth"] for c in reads), "S3 was read with the role's credentials"


def test_full_log_group_is_reported_never_replaced(run_cli, moto_reset, boto, opensearch_url, os_clean):
    s3, sns, ct, logs, kinesis = boto("s3"), boto("sns"), boto("cloudtrail"), boto("logs"), boto("kinesis")
    s3.create_bucket(Bucket="corp-trail-logs")
    sns.create_topic(Name="corp-trail-topic")
    logs.create_log_group(logGroupName="/corp/cloudtrail")
    kinesis.create_stream(StreamName="siem", ShardCount=1)
    stream = kinesis.describe_stream(StreamName="siem")["StreamDescription"]["StreamARN"]
    role = f"arn:aws:iam::{ACCOUNT}:role/cwl-to-kinesis"
    for name in ("siem-a", "siem-b"):
        logs.put_subscription_filter(logGroupName="/corp/cloudtrail", filterName=name, filterPattern="", destinationArn=stream, roleArn=role)
    ct.create_trail(Name="corp", S3BucketName="corp-trail-logs", SnsTopicName="corp-trail-topic", IsMultiRegionTrail=True,
                    CloudWatchLogsLogGroupArn=f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/corp/cloudtrail:*",
                    CloudWatchLogsRoleArn=f"arn:aws:iam::{ACCOUNT}:role/corp-ct-logs")
    doc, _ = init(run_cli, ["--use-trail", "corp"], opensearch_url, os_clean)
    assert any("already has two subscription filters (siem-a, siem-b)" in w for w in doc["warnings"]), doc["warnings"]
    assert not by_kind(doc, "logs-subscription-filter") and not by_kind(doc, "lambda-function")
    names = sorted(f["filterName"] for f in logs.describe_subscription_filters(logGroupName="/corp/cloudtrail")["subscriptionFilters"])
    assert names == ["siem-a", "siem-b"]
    assert [c["action"] for c in by_kind(doc, "sns-subscription")] == ["create"], "live loading goes through the queue"
