"""AWS's timing, played in front of moto: the "not yet" answers a real account gives right after a change (a role,
a policy, a key policy, a queue name deleted a moment ago), a domain being deleted, two stacks on one key and one
domain, and what `status` must not be fooled by. moto answers everything at once and checks no policy, so the
proxy of `awsproxy.py` answers the chosen calls itself, in the wire format of each service (JSON 1.1 for CloudTrail
and CloudWatch Logs, JSON 1.0 with `x-amzn-query-error` for SQS, REST-JSON with `x-amzn-ErrorType` for OpenSearch
Service and Lambda, REST-XML for S3), or rewrites moto's answer. Every outcome is read back with boto3 from moto
and from the proxy's record of the calls, never with trailsetup's own read path. The binary runs with
TRAILSETUP_RETRY_SCALE=0.02 (every wait of src/aws/eventual.rs is 50 times shorter); no assertion is about time.

Run (the suite runs every file against the moto of `.cache/run/env`; each test resets it, so this file passes
there too):

    cd /work/main && source .cache/run/env && .cache/venv/bin/python -m pytest -q tests/e2e/test_aws_timing.py

To keep other sessions' resets away (they share that moto), start a moto of your own and point TS_MOTO_URL at it:

    .cache/venv/bin/moto_server -H 127.0.0.1 -p 37639 &        # stop it by its PID afterwards
    TS_MOTO_URL=http://127.0.0.1:37639 .cache/venv/bin/python -m pytest -q tests/e2e/test_aws_timing.py

or set TS_OWN_MOTO=1: this module then starts its own moto_server on a free port and stops it (by PID) at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
from awsproxy import json_error, rest_json_error, s3_error
from conftest import free_port

ACCOUNT = "123456789012"
HOME = "us-east-1"
REPO_ROOT = Path(__file__).resolve().parents[2]
CT = "CloudTrail_20131101."  # X-Amz-Target prefix (the SDKs send it without the com.amazonaws.cloudtrail.v20131101. namespace)
SCALE = "0.02"


# --- an optional private moto (TS_OWN_MOTO=1) ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_url():
    """conftest's TS_MOTO_URL, or with TS_OWN_MOTO=1 a moto_server of this module's own, stopped by its PID."""
    if os.environ.get("TS_OWN_MOTO") != "1":
        url = os.environ.get("TS_MOTO_URL", "").strip().rstrip("/")
        if not url:
            pytest.fail("TS_MOTO_URL is not set: `source .cache/run/env` (or set TS_OWN_MOTO=1)", pytrace=False)
        yield url
        return
    port = free_port()
    log = open(os.environ.get("TMPDIR", "/tmp") + f"/moto-timing-{port}.log", "wb")
    proc = subprocess.Popen([str(REPO_ROOT / ".cache" / "venv" / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if requests.get(f"{url}/moto-api/", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        else:
            pytest.fail(f"moto_server on port {port} did not start", pytrace=False)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


# --- helpers --------------------------------------------------------------------------------------------------------


@pytest.fixture
def env(aws_env):
    """The binary's environment: moto (or the proxy, per call) and short propagation waits."""
    return dict(aws_env, TRAILSETUP_RETRY_SCALE=SCALE)


def run_json(run_cli, args, env, rc_ok=(0,)):
    rc, out, err = run_cli([*args, "--output", "json"], env=env, timeout=600)
    assert rc in rc_ok, f"rc={rc}\n{out[-3000:]}\n{err[-5000:]}"
    return json.loads(out), err


def changed(doc):
    return [(c["kind"], c["name"], c["region"], c["action"]) for c in doc["plan"]["changes"] if c["action"] != "no-op"]


def assert_no_changes(doc):
    s = doc["plan"]["summary"]
    assert (s["create"], s["update"], s["delete"]) == (0, 0, 0), changed(doc)


def sts_of(policy) -> dict:
    policy = json.loads(policy) if isinstance(policy, str) else policy
    st = policy["Statement"]
    return {s.get("Sid"): s for s in (st if isinstance(st, list) else [st])}


def os_args(opensearch_url, prefix):
    return ["--opensearch-url", opensearch_url, "--index-prefix", prefix]


class RefuseFirst:
    """An `answer` hook: the first `times` calls for which `match(method, path, target, body)` holds get AWS's error
    `error(body)`; every later one goes to moto."""

    def __init__(self, match, error, times):
        self.match, self.error, self.times = match, error, times
        self.refused = 0
        self.lock = threading.Lock()

    def __call__(self, method, path, headers, body):
        if not self.match(method, path, headers.get("X-Amz-Target") or "", body):
            return None
        with self.lock:
            if self.refused >= self.times:
                return None
            self.refused += 1
        return self.error(body)

    def seen(self, calls):
        """(status, answered by the proxy) of every matching call, in order."""
        return [(c.get("status"), c.get("answered", False)) for c in calls if self.match(c["method"], c["path"], c["target"], c["body"])]


def refused_then_ok(n, refused_status=400):
    return [(refused_status, True)] * n + [(200, False)]


# --- 1. propagation: AWS's documented "not yet" answers are waited out -------------------------------------------


def is_create_trail(method, path, target, body):
    return target.endswith(CT + "CreateTrail")


def test_create_trail_waits_for_the_logs_role_to_propagate(proxy, run_cli, boto, env, opensearch_url, os_clean):
    # CloudTrail "CreateTrail" → InvalidCloudWatchLogsLogGroupArnException; while the role's policy propagates it
    # reads "Access denied. Verify in IAM that the role has adequate permissions." (IAM eventual consistency)
    hook = RefuseFirst(is_create_trail, lambda body: json_error(
        "InvalidCloudWatchLogsLogGroupArnException", "Access denied. Verify in IAM that the role has adequate permissions.",
        message_key="Message"), times=2)
    url, calls = proxy(answer=hook)
    e = dict(env, AWS_ENDPOINT_URL=url)
    args = ["init", "--yes", "--no-backfill", "--regions", HOME, *os_args(opensearch_url, os_clean)]
    doc, err = run_json(run_cli, args, e)
    assert doc["applied"] is True
    assert hook.seen(calls) == refused_then_ok(2), hook.seen(calls)
    t = boto("cloudtrail").get_trail(Name="trailsetup")["Trail"]
    assert t["CloudWatchLogsLogGroupArn"] == f"arn:aws:logs:{HOME}:{ACCOUNT}:log-group:/aws/cloudtrail/trailsetup:*"
    assert boto("cloudtrail").get_trail_status(Name="trailsetup")["IsLogging"] is True
    again, _ = run_json(run_cli, args, e)
    assert_no_changes(again)
    assert hook.seen(calls) == refused_then_ok(2), "the second run creates no trail"


def is_create_domain(method, path, target, body):
    return method == "POST" and path.split("?")[0] == "/2021-01-01/opensearch/domain"


def test_create_domain_waits_for_new_principals(proxy, run_cli, boto, env):
    # OpenSearch Service validates the principals of the access policy: a role made seconds ago is refused with
    # InvalidTypeException "Error setting policy: [...]" (HTTP 409, API reference "CreateDomain" → Errors)
    def refuse(body):
        policy = json.loads(body)["AccessPolicies"]
        return rest_json_error(409, "InvalidTypeException", f"Error setting policy: [{policy}]")

    hook = RefuseFirst(is_create_domain, refuse, times=2)
    url, calls = proxy(answer=hook)
    e = dict(env, AWS_ENDPOINT_URL=url)
    args = ["init", "--yes", "--no-backfill", "--regions", HOME, "--opensearch-domain", "audit"]
    doc, err = run_json(run_cli, args, e)
    assert doc["applied"] is True
    assert hook.seen(calls) == refused_then_ok(2, 409), hook.seen(calls)
    d = boto("opensearch").describe_domain(DomainName="audit")["DomainStatus"]
    assert "TrailsetupAccessTrailsetup" in sts_of(d["AccessPolicies"])
    again, _ = run_json(run_cli, args, e)
    assert_no_changes(again)
    assert len(hook.seen(calls)) == 3, "the second run creates no domain"


def test_bucket_notification_waits_for_the_queue_policy(proxy, run_cli, boto, env, opensearch_url, os_clean):
    # a reused trail without a topic: S3 notifies our queue. S3 tests the destination and refuses with
    # InvalidArgument "Unable to validate the following destination configurations" until the queue policy we
    # just set has propagated
    s3, ct, sqs = boto("s3"), boto("cloudtrail"), boto("sqs")
    s3.create_bucket(Bucket="legacy-logs")
    # another consumer of the bucket's events (moto answers an empty configuration with a root element the SDK
    # rejects, GetBucketNotificationResponse; S3 itself answers <NotificationConfiguration/>)
    thumbs = sqs.get_queue_attributes(QueueUrl=sqs.create_queue(QueueName="thumbnails")["QueueUrl"], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    theirs = {"Id": "thumbnails", "QueueArn": thumbs, "Events": ["s3:ObjectCreated:*"],
              "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "images/"}]}}}
    s3.put_bucket_notification_configuration(Bucket="legacy-logs", NotificationConfiguration={"QueueConfigurations": [theirs]})
    ct.create_trail(Name="legacy", S3BucketName="legacy-logs", S3KeyPrefix="audit", IsMultiRegionTrail=False)
    queue_arn = f"arn:aws:sqs:{HOME}:{ACCOUNT}:trailsetup-notifications"

    def is_put_notification(method, path, target, body):
        p, _, q = path.partition("?")
        return method == "PUT" and p.rstrip("/") == "/legacy-logs" and "notification" in q.split("&")

    hook = RefuseFirst(is_put_notification, lambda body: s3_error(
        400, "InvalidArgument", "Unable to validate the following destination configurations",
        f"<ArgumentName1>{queue_arn}, null</ArgumentName1><ArgumentValue1>Permissions on the destination queue do not "
        "allow S3 to publish notifications from this bucket</ArgumentValue1>"), times=2)
    url, calls = proxy(answer=hook)
    e = dict(env, AWS_ENDPOINT_URL=url)
    args = ["init", "--yes", "--no-backfill", "--use-trail", "legacy", "--regions", HOME, "--opensearch-auth", "none",
            *os_args(opensearch_url, os_clean)]
    doc, err = run_json(run_cli, args, e)
    assert doc["applied"] is True
    assert hook.seen(calls) == refused_then_ok(2), hook.seen(calls)
    cfg = s3.get_bucket_notification_configuration(Bucket="legacy-logs")
    assert sorted((q["Id"], q["QueueArn"]) for q in cfg["QueueConfigurations"]) == [("thumbnails", thumbs), ("trailsetup-trailsetup", queue_arn)]
    again, _ = run_json(run_cli, args, e)
    assert_no_changes(again)
    assert len(hook.seen(calls)) == 3


def is_put_invoke_config(method, path, target, body):
    return method == "PUT" and path.split("?")[0] == "/2019-09-25/functions/trailsetup-forwarder/event-invoke-config"


def test_on_failure_destination_waits_for_the_role_policy(proxy, run_cli, boto, env, opensearch_url, os_clean):
    # Lambda checks that the execution role may send to the on-failure destination: InvalidParameterValueException
    # "The function's execution role does not have permissions to call SendMessage on <queue>" while the policy
    # attached moments ago propagates
    dlq = f"arn:aws:sqs:{HOME}:{ACCOUNT}:trailsetup-forwarder-dlq"
    hook = RefuseFirst(is_put_invoke_config, lambda body: rest_json_error(
        400, "InvalidParameterValueException",
        f"The function's execution role does not have permissions to call SendMessage on {dlq}", Type="User"), times=2)
    url, calls = proxy(answer=hook)
    e = dict(env, AWS_ENDPOINT_URL=url)
    args = ["init", "--yes", "--no-backfill", "--regions", HOME, *os_args(opensearch_url, os_clean)]
    doc, err = run_json(run_cli, args, e)
    assert doc["applied"] is True
    assert hook.seen(calls) == refused_then_ok(2), hook.seen(calls)
    inv = boto("lambda").get_function_event_invoke_config(FunctionName="trailsetup-forwarder")
    assert inv["DestinationConfig"]["OnFailure"]["Destination"] == dlq
    again, _ = run_json(run_cli, args, e)
    assert_no_changes(again)
    assert len(hook.seen(calls)) == 3


def test_log_group_waits_for_the_key_policy(proxy, run_cli, boto, env, opensearch_url, os_clean):
    # CloudWatch Logs checks the key policy trailsetup changed just before (KMS is eventually consistent):
    # AccessDeniedException "The specified KMS key does not exist or is not allowed to be used with Arn '...'"
    key = boto("kms").create_key(Description="trail logs")["KeyMetadata"]
    group = "/aws/cloudtrail/trailsetup"

    def is_create_encrypted_group(method, path, target, body):
        return target == "Logs_20140328.CreateLogGroup" and json.loads(body).get("kmsKeyId") is not None

    hook = RefuseFirst(is_create_encrypted_group, lambda body: json_error(
        "AccessDeniedException",
        f"The specified KMS key does not exist or is not allowed to be used with Arn 'arn:aws:logs:{HOME}:{ACCOUNT}:log-group:{group}'"),
        times=2)
    url, calls = proxy(answer=hook)
    e = dict(env, AWS_ENDPOINT_URL=url)
    args = ["init", "--yes", "--no-backfill", "--regions", HOME, "--kms-key", key["Arn"], *os_args(opensearch_url, os_clean)]
    doc, err = run_json(run_cli, args, e)
    assert doc["applied"] is True
    assert hook.seen(calls) == refused_then_ok(2), hook.seen(calls)
    assert [json.loads(c["body"])["logGroupName"] for c in calls if hook.match(c["method"], c["path"], c["target"], c["body"])] == [group] * 3
    (lg,) = boto("logs").describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    assert lg["kmsKeyId"] == key["Arn"] and lg["retentionInDays"] == 90
    again, _ = run_json(run_cli, args, e)
    assert_no_changes(again)
    assert len(hook.seen(calls)) == 3


def test_a_real_error_is_not_retried(proxy, run_cli, boto, env, opensearch_url, os_clean):
    # the same code with another message is not a "not yet": a log group that does not exist stays so
    hook = RefuseFirst(is_create_trail, lambda body: json_error(
        "InvalidCloudWatchLogsLogGroupArnException", "Log group does not exist", message_key="Message"), times=1000)
    url, calls = proxy(answer=hook)
    e = dict(env, AWS_ENDPOINT_URL=url)
    rc, out, err = run_cli(["init", "--yes", "--no-backfill", "--regions", HOME, *os_args(opensearch_url, os_clean)], env=e, timeout=600)
    assert rc == 1, f"rc={rc}\n{err[-3000:]}"
    assert hook.seen(calls) == [(400, True)], "refused once, never retried"
    assert "trail trailsetup" in err and "InvalidCloudWatchLogsLogGroupArnException" in err and "Log group does not exist" in err, err[-3000:]
    assert boto("cloudtrail").describe_trails()["trailList"] == []


# --- 2. init right after destroy: SQS's 60 seconds, and a queue URL that outlives its queue ------------------------


def queues_of(doc):
    return sorted(c["name"] for c in doc["plan"]["changes"] if c["kind"] == "sqs-queue")


def test_init_right_after_destroy_waits_for_deleted_queue_names(proxy, run_cli, boto, env, opensearch_url, os_clean):
    # SQS API reference, "CreateQueue": "After you delete a queue, you must wait at least 60 seconds before creating
    # a queue with the same name" — refused with QueueDeletedRecently (JSON protocol: x-amzn-query-error
    # AWS.SimpleQueueService.QueueDeletedRecently;Sender). Played: the first 2 CreateQueue of each deleted name.
    refusals: dict[str, int] = {}
    lock = threading.Lock()

    def answer(method, path, headers, body):
        t = headers.get("X-Amz-Target") or ""
        if t == "AmazonSQS.DeleteQueue":
            with lock:
                refusals[json.loads(body)["QueueUrl"].rstrip("/").rsplit("/", 1)[1]] = 2
        elif t == "AmazonSQS.CreateQueue":
            name = json.loads(body)["QueueName"]
            with lock:
                if refusals.get(name, 0) > 0:
                    refusals[name] -= 1
                    return json_error("com.amazonaws.sqs#QueueDeletedRecently",
                                      "You must wait 60 seconds after deleting a queue before you can create another queue with the same name.",
                                      version="1.0", query_error="AWS.SimpleQueueService.QueueDeletedRecently")
        return None

    url, calls = proxy(answer=answer)
    e = dict(env, AWS_ENDPOINT_URL=url)
    args = ["init", "--yes", "--no-backfill", "--regions", HOME, *os_args(opensearch_url, os_clean)]
    first, _ = run_json(run_cli, args, e)
    names = queues_of(first)
    assert names == ["trailsetup-forwarder-dlq", "trailsetup-notifications", "trailsetup-notifications-dlq"]
    run_json(run_cli, ["destroy", "--yes"], e)
    assert boto("sqs").list_queues().get("QueueUrls") is None, "destroy deleted the queues"
    mark = len(calls)
    doc, err = run_json(run_cli, args, e)
    assert doc["applied"] is True
    for name in names:
        seen = [(c.get("status"), c.get("answered", False)) for c in calls[mark:]
                if c["target"] == "AmazonSQS.CreateQueue" and json.loads(c["body"])["QueueName"] == name]
        assert seen == refused_then_ok(2), (name, seen)
    sqs = boto("sqs")
    for name in names:
        sqs.get_queue_url(QueueName=name)  # exists
    q = sqs.get_queue_url(QueueName="trailsetup-notifications")["QueueUrl"]
    redrive = json.loads(sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["RedrivePolicy"])["Attributes"]["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == f"arn:aws:sqs:{HOME}:{ACCOUNT}:trailsetup-notifications-dlq"
    again, _ = run_json(run_cli, args, e)
    assert_no_changes(again)


def test_a_queue_url_that_outlives_its_queue_is_absent(proxy, run_cli, boto, env, opensearch_url, os_clean):
    # right after DeleteQueue, GetQueueUrl can still answer with the URL while GetQueueAttributes on it says
    # AWS.SimpleQueueService.NonExistentQueue (moto's own answer for a queue it no longer has)
    args = ["init", "--yes", "--no-backfill", "--regions", HOME, *os_args(opensearch_url, os_clean)]
    run_json(run_cli, args, env)
    sqs = boto("sqs")
    names = ["trailsetup-forwarder-dlq", "trailsetup-notifications", "trailsetup-notifications-dlq"]
    urls = {n: sqs.get_queue_url(QueueName=n)["QueueUrl"] for n in names}
    run_json(run_cli, ["destroy", "--yes"], env)
    assert sqs.list_queues().get("QueueUrls") is None
    lying = set(names)
    lock = threading.Lock()

    def answer(method, path, headers, body):
        t = headers.get("X-Amz-Target") or ""
        if t == "AmazonSQS.CreateQueue":
            with lock:
                lying.discard(json.loads(body)["QueueName"])  # from now on the name is a live queue again
        elif t == "AmazonSQS.GetQueueUrl":
            name = json.loads(body)["QueueName"]
            with lock:
                if name in lying:
                    return 200, "application/x-amz-json-1.0", json.dumps({"QueueUrl": urls[name]}).encode()
        return None

    url, calls = proxy(answer=answer)
    e = dict(env, AWS_ENDPOINT_URL=url)
    dry, err = run_json(run_cli, ["init", "--yes", "--dry-run", "--regions", HOME, *os_args(opensearch_url, os_clean)], e)
    plan = {c["name"]: c["action"] for c in dry["plan"]["changes"] if c["kind"] == "sqs-queue"}
    assert plan == {n: "create" for n in names}, plan
    # the plan really read the stale URLs, and SQS (moto) said the queues do not exist
    attrs = [c for c in calls if c["target"] == "AmazonSQS.GetQueueAttributes"]
    assert {json.loads(c["body"])["QueueUrl"] for c in attrs} >= set(urls.values())
    assert all(c["status"] == 400 for c in attrs)
    doc, err = run_json(run_cli, args, e)
    assert doc["applied"] is True
    for n in names:
        assert sqs.get_queue_url(QueueName=n)["QueueUrl"]
    again, _ = run_json(run_cli, args, e)
    assert_no_changes(again)


# --- 3. a domain being deleted is absent -------------------------------------------------------------------------


def test_a_domain_being_deleted_is_planned_as_create(proxy, run_cli, boto, env):
    args = ["init", "--yes", "--no-backfill", "--regions", HOME, "--opensearch-domain", "audit"]
    run_json(run_cli, args, env)
    dry = ["init", "--yes", "--dry-run", "--regions", HOME, "--opensearch-domain", "audit"]
    before, _ = run_json(run_cli, dry, env)
    assert [c["action"] for c in before["plan"]["changes"] if c["kind"] == "opensearch-domain"] == ["no-op"]

    # OpenSearch Service API reference, "DomainStatus": Deleted is true while the domain is being deleted (it is
    # still described, endpoint and all, for the minutes DeleteDomain takes)
    def deleting(headers, body, content):
        try:
            doc = json.loads(content)
        except ValueError:
            return content
        st = doc.get("DomainStatus") if isinstance(doc, dict) else None
        if not (isinstance(st, dict) and st.get("DomainName") == "audit"):
            return content
        st["Deleted"], st["Processing"] = True, True
        return json.dumps(doc).encode()

    url, calls = proxy(rewrite=deleting)
    doc, err = run_json(run_cli, dry, dict(env, AWS_ENDPOINT_URL=url))
    assert [c for c in calls if c["method"] == "GET" and c["path"].split("?")[0] == "/2021-01-01/opensearch/domain/audit"]
    assert [c["action"] for c in doc["plan"]["changes"] if c["kind"] == "opensearch-domain"] == ["create"], changed(doc)


# --- 4. two stacks on one key and one domain -----------------------------------------------------------------------


def stack_args(name, key_arn):
    # two stacks of their own (`--use-trail none`: stack b would otherwise reuse stack a's multi-region trail, the
    # documented default for an account that already logs)
    return ["init", "--yes", "--no-backfill", "--regions", HOME, "--name", name, "--use-trail", "none", "--kms-key", key_arn,
            "--opensearch-domain", "shared"]


def ours(policy, suffix):
    return {sid: s for sid, s in sts_of(policy).items() if sid and sid.startswith("Trailsetup") and sid.endswith(suffix)}


def key_policy(boto, key_id):
    return boto("kms").get_key_policy(KeyId=key_id, PolicyName="default")["Policy"]


def domain_policy(boto):
    return boto("opensearch").describe_domain(DomainName="shared")["DomainStatus"]["AccessPolicies"]


def test_two_stacks_share_a_key_and_a_domain_and_destroy_takes_only_its_own(moto_reset, run_cli, boto, env):
    key = boto("kms").create_key(Description="shared audit key")["KeyMetadata"]
    theirs = {sid: s for sid, s in sts_of(key_policy(boto, key["KeyId"])).items()}
    assert theirs and not any((sid or "").startswith("Trailsetup") for sid in theirs)
    run_json(run_cli, stack_args("a-stack", key["Arn"]), env)
    run_json(run_cli, stack_args("b-stack", key["Arn"]), env)

    kp = key_policy(boto, key["KeyId"])
    a, b = ours(kp, "AStack"), ours(kp, "BStack")
    assert a and b
    assert {sid[: -len("AStack")] for sid in a} == {sid[: -len("BStack")] for sid in b}, (sorted(a), sorted(b))
    assert set(sts_of(kp)) == set(theirs) | set(a) | set(b), sorted(sts_of(kp))
    assert all(sts_of(kp)[sid] == s for sid, s in theirs.items()), "the key's own statements are kept"
    dp = domain_policy(boto)
    assert {"TrailsetupAccessAStack", "TrailsetupAccessBStack"} <= set(sts_of(dp)), sorted(sts_of(dp))
    b_domain = sts_of(dp)["TrailsetupAccessBStack"]
    assert f"arn:aws:iam::{ACCOUNT}:role/b-stack-forwarder" in json.dumps(b_domain["Principal"])

    doc, err = run_json(run_cli, ["destroy", "--yes", "--name", "a-stack"], env)
    kp2 = key_policy(boto, key["KeyId"])
    assert ours(kp2, "AStack") == {}, sorted(ours(kp2, "AStack"))
    assert ours(kp2, "BStack") == b, "every statement of stack b stays as it was"
    assert {sid: s for sid, s in sts_of(kp2).items() if sid in theirs} == theirs
    assert set(sts_of(kp2)) == set(theirs) | set(b)
    dp2 = sts_of(domain_policy(boto))
    assert "TrailsetupAccessAStack" not in dp2, f"stack a's statement is left in the shared domain: {sorted(dp2)}"
    assert dp2["TrailsetupAccessBStack"] == b_domain
    # stack b still works: its trail logs
    assert boto("cloudtrail").get_trail_status(Name="b-stack")["IsLogging"] is True


def test_two_stacks_on_one_key_and_domain_do_not_undo_each_other(moto_reset, run_cli, boto, env):
    key = boto("kms").create_key(Description="shared audit key")["KeyMetadata"]
    run_json(run_cli, stack_args("a-stack", key["Arn"]), env)
    run_json(run_cli, stack_args("b-stack", key["Arn"]), env)
    kp, dp = key_policy(boto, key["KeyId"]), domain_policy(boto)
    # each stack's second run changes nothing: neither takes the other's statements (or the domain) back
    for name in ("a-stack", "b-stack"):
        again, _ = run_json(run_cli, stack_args(name, key["Arn"]), env)
        assert_no_changes(again)
    assert sts_of(key_policy(boto, key["KeyId"])) == sts_of(kp)
    assert sts_of(domain_policy(boto)) == sts_of(dp)


# --- 5. status cannot be fooled ------------------------------------------------------------------------------------


def test_status_sees_the_reused_topic_lose_our_subscription(moto_reset, run_cli, boto, env, opensearch_url, os_clean):
    s3, sns, ct, logs, sqs = boto("s3"), boto("sns"), boto("cloudtrail"), boto("logs"), boto("sqs")
    s3.create_bucket(Bucket="corp-trail-logs")
    topic = sns.create_topic(Name="corp-trail-topic")["TopicArn"]
    logs.create_log_group(logGroupName="/corp/cloudtrail")
    ct.create_trail(Name="corp", S3BucketName="corp-trail-logs", SnsTopicName="corp-trail-topic", IsMultiRegionTrail=True,
                    CloudWatchLogsLogGroupArn=f"arn:aws:logs:{HOME}:{ACCOUNT}:log-group:/corp/cloudtrail:*",
                    CloudWatchLogsRoleArn=f"arn:aws:iam::{ACCOUNT}:role/corp-ct-logs")
    ct.start_logging(Name="corp")
    run_json(run_cli, ["init", "--yes", "--no-backfill", "--use-trail", "corp", "--regions", HOME, "--opensearch-auth", "none",
                       *os_args(opensearch_url, os_clean)], env)

    def status():
        rc, out, err = run_cli(["status", "--output", "json"], env=env, timeout=300)
        assert rc in (0, 1), err[-3000:]
        return rc, json.loads(out)["status"]["checks"]

    rc, checks = status()
    sub = [c for c in checks if c["name"] == "subscription"]
    assert [(c["resource"], c["level"]) for c in sub] == [(topic, "ok")], sub
    failing_before = {(c["name"], c["resource"]) for c in checks if c["level"] == "fail"}

    queue_arn = sqs.get_queue_attributes(QueueUrl=sqs.get_queue_url(QueueName="trailsetup-notifications")["QueueUrl"],
                                         AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    (mine,) = [s for s in sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"] if s["Endpoint"] == queue_arn]
    sns.unsubscribe(SubscriptionArn=mine["SubscriptionArn"])

    rc, checks = status()
    assert rc == 1
    sub = [c for c in checks if c["name"] == "subscription"]
    assert [(c["resource"], c["level"]) for c in sub] == [(topic, "fail")], sub
    assert topic in sub[0]["detail"] and "trailsetup init" in sub[0]["fix"]
    assert {(c["name"], c["resource"]) for c in checks if c["level"] == "fail"} == failing_before | {("subscription", topic)}
    rc, out, err = run_cli(["status"], env=env, timeout=300)
    assert rc == 1
    assert any(line.startswith("FAIL") and "subscription" in line and topic in line for line in out.splitlines()), out


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("attempt_fields", ["filled", "empty"])
def test_status_tells_an_old_delivery_error_from_a_current_one(attempt_fields, proxy, run_cli, env, opensearch_url, os_clean):
    """GetTrailStatus keeps LatestDeliveryError until the next error, after later deliveries succeeded. `filled`: the
    attempt fields as CloudTrail fills them (the latest attempt and the latest successful one); `empty`: as the API
    reference documents them ("no longer in use")."""
    run_json(run_cli, ["init", "--yes", "--no-backfill", "--regions", HOME, *os_args(opensearch_url, os_clean)], env)
    error = "AccessDenied"
    now = datetime.now(timezone.utc)
    situation = {}

    def trail_status(headers, body, content):
        if not (headers.get("X-Amz-Target") or "").endswith(CT + "GetTrailStatus"):
            return content
        doc = json.loads(content)
        last_ok, last_attempt = situation["last_ok"], situation["last_attempt"]
        doc["LatestDeliveryError"] = error
        doc["LatestDeliveryTime"] = last_ok.timestamp()
        if attempt_fields == "filled":
            doc["LatestDeliveryAttemptTime"], doc["LatestDeliveryAttemptSucceeded"] = iso(last_attempt), iso(last_ok)
        else:
            doc["LatestDeliveryAttemptTime"], doc["LatestDeliveryAttemptSucceeded"] = "", ""
        return json.dumps(doc).encode()

    url, calls = proxy(rewrite=trail_status)
    e = dict(env, AWS_ENDPOINT_URL=url)

    def delivery_checks():
        rc, out, err = run_cli(["status", "--output", "json"], env=e, timeout=300)
        assert rc in (0, 1), err[-3000:]
        assert any(c["target"].endswith(CT + "GetTrailStatus") for c in calls)
        return [c for c in json.loads(out)["status"]["checks"] if c["name"] == "trail log file delivery"], json.loads(out)["status"]["checks"]

    # an error, then a successful delivery a minute ago (the latest attempt is that success): recovered
    situation.update(last_ok=now - timedelta(minutes=1), last_attempt=now - timedelta(minutes=1))
    checks, all_checks = delivery_checks()
    assert all(c["level"] != "fail" for c in checks), checks
    assert not [c for c in all_checks if c["level"] == "fail" and error in c["detail"]], all_checks

    # the last success 3 hours ago, failed attempts since: a current error, named
    situation.update(last_ok=now - timedelta(hours=3), last_attempt=now - timedelta(minutes=4))
    checks, _ = delivery_checks()
    assert [c["level"] for c in checks] == ["fail"], checks
    assert error in checks[0]["detail"] and checks[0]["resource"] == "trailsetup"


# --- 6. the forwarder's own log group ------------------------------------------------------------------------------


def test_forwarder_log_group_has_the_stacks_retention_and_tag(proxy, run_cli, boto, env, opensearch_url, os_clean):
    url, calls = proxy()
    e = dict(env, AWS_ENDPOINT_URL=url)
    args = ["init", "--yes", "--no-backfill", "--regions", HOME, "--log-retention-days", "30", *os_args(opensearch_url, os_clean)]
    run_json(run_cli, args, e)
    logs = boto("logs")
    group = "/aws/lambda/trailsetup-forwarder"
    assert boto("lambda").get_function_configuration(FunctionName="trailsetup-forwarder")["FunctionName"] == "trailsetup-forwarder"
    (lg,) = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    assert lg["logGroupName"] == group and lg["retentionInDays"] == 30
    assert logs.list_tags_for_resource(resourceArn=f"arn:aws:logs:{HOME}:{ACCOUNT}:log-group:{group}")["tags"] == {"trailsetup:stack": "trailsetup"}
    # made before the function (Lambda would otherwise make it at the first invocation: untagged, never expiring)
    order = [i for i, c in enumerate(calls) if c["target"] == "Logs_20140328.CreateLogGroup" and json.loads(c["body"])["logGroupName"] == group]
    create_fn = [i for i, c in enumerate(calls) if c["method"] == "POST" and c["path"].split("?")[0] == "/2015-03-31/functions"]
    assert len(order) == 1 and len(create_fn) == 1 and order[0] < create_fn[0], (order, create_fn)
    again, _ = run_json(run_cli, args, e)
    assert_no_changes(again)
    doc, _ = run_json(run_cli, ["destroy", "--yes"], e)
    assert ("logs-log-group", group, "delete") in {(c["kind"], c["name"], c["action"]) for c in doc["plan"]["changes"]}
    assert logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"] == []


# --- 7. every statement trailsetup writes into a shared policy names the stack ------------------------------------


def sids_in(v):
    if isinstance(v, dict):
        for k, x in v.items():
            if k == "Sid" and isinstance(x, str):
                yield x
            else:
                yield from sids_in(x)
    elif isinstance(v, list):
        for x in v:
            yield from sids_in(x)


@pytest.mark.parametrize("stack,suffix", [("trailsetup", "Trailsetup"), ("prod-audit", "ProdAudit")])
def test_statement_ids_name_the_stack(stack, suffix, moto_reset, run_cli, boto, env, opensearch_url, os_clean):
    key = boto("kms").create_key()["KeyMetadata"]
    doc, _ = run_json(run_cli, ["init", "--yes", "--no-backfill", "--regions", HOME, "--name", stack, "--kms-key", key["Arn"],
                                *os_args(opensearch_url, os_clean)], env)
    bucket = f"{stack}-{ACCOUNT}-{HOME}"
    assert set(sts_of(boto("s3").get_bucket_policy(Bucket=bucket)["Policy"])) == {
        f"TrailsetupCloudTrailAclCheck{suffix}", f"TrailsetupCloudTrailWrite{suffix}", f"TrailsetupDenyInsecureTransport{suffix}"}
    topic = f"arn:aws:sns:{HOME}:{ACCOUNT}:{stack}-cloudtrail"
    assert set(sts_of(boto("sns").get_topic_attributes(TopicArn=topic)["Attributes"]["Policy"])) == {f"TrailsetupCloudTrailPublish{suffix}"}
    sqs = boto("sqs")
    q = sqs.get_queue_url(QueueName=f"{stack}-notifications")["QueueUrl"]
    assert set(sts_of(sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["Policy"])["Attributes"]["Policy"])) == {f"TrailsetupTopicsSendUsEast1{suffix}"}
    kp = sts_of(key_policy(boto, key["KeyId"]))
    mine = [sid for sid in kp if sid and sid.startswith("Trailsetup")]
    assert mine and all(sid.endswith(suffix) for sid in mine), mine
    # and everywhere in the plan
    planned = [sid for sid in sids_in(doc["plan"]) if sid.startswith("Trailsetup")]
    assert planned and all(sid.endswith(suffix) for sid in planned), sorted(set(planned))
