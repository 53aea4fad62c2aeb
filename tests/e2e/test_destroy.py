"""`trailsetup destroy` against moto and the loopback OpenSearch node: exactly what the stack made goes, data is
kept unless asked, adopted resources lose only our additions, an interrupted destroy finishes on the next run.
Checked with boto3, never with trailsetup's own read path."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
from awsproxy import start_proxy

ACCOUNT = "123456789012"
HOME = "us-east-1"
REGIONS = ["us-east-1", "us-west-2", "eu-west-1"]
BUCKET = f"trailsetup-{ACCOUNT}-{HOME}"


def run_json(run_cli, args, env=None):
    rc, out, err = run_cli([*args, "--output", "json"], env=env, timeout=300)
    assert rc == 0, err
    return json.loads(out)


def init(run_cli, mode, opensearch_url, prefix, *extra, env=None):
    return run_json(run_cli, ["init", "--yes", "--no-backfill", "--trail-mode", mode, "--regions", ",".join(REGIONS),
                              "--opensearch-url", opensearch_url, "--index-prefix", prefix, *extra], env=env)


def leftovers(boto) -> dict:
    """Everything of the stack an independent client still sees (the bucket apart)."""
    left = {
        "roles": [r["RoleName"] for r in boto("iam").list_roles()["Roles"] if r["RoleName"].startswith("trailsetup-")],
        "policies": [p["PolicyName"] for p in boto("iam").list_policies(Scope="Local")["Policies"] if p["PolicyName"].startswith("trailsetup-")],
    }
    for r in REGIONS:
        left[f"trails/{r}"] = [t["Name"] for t in boto("cloudtrail", r).describe_trails(includeShadowTrails=False)["trailList"]]
        left[f"topics/{r}"] = [t["TopicArn"] for t in boto("sns", r).list_topics()["Topics"]]
        left[f"logs/{r}"] = [g["logGroupName"] for g in boto("logs", r).describe_log_groups(logGroupNamePrefix="/aws/cloudtrail/")["logGroups"]]
        left[f"queues/{r}"] = boto("sqs", r).list_queues().get("QueueUrls", [])
        left[f"functions/{r}"] = [f["FunctionName"] for f in boto("lambda", r).list_functions()["Functions"]]
        left[f"subscriptions/{r}"] = [s["SubscriptionArn"] for s in boto("sns", r).list_subscriptions()["Subscriptions"]]
    return {k: v for k, v in left.items() if v}


def bucket_sids(boto) -> set:
    return {s.get("Sid") for s in json.loads(boto("s3").get_bucket_policy(Bucket=BUCKET)["Policy"])["Statement"]}


@pytest.mark.parametrize("mode", ["multi-region", "per-region"])
def test_destroy_removes_what_init_made_and_keeps_the_bucket(mode, moto_reset, run_cli, boto, opensearch_url, os_clean):
    init(run_cli, mode, opensearch_url, os_clean)
    assert leftovers(boto)  # something to remove
    doc = run_json(run_cli, ["destroy", "--yes"])
    assert doc["applied"] is True and doc["plan"]["summary"]["delete"] > 10
    assert leftovers(boto) == {}
    # the bucket and its logs are kept, and listed as retained; it keeps its TLS-only deny, not CloudTrail's grants
    assert BUCKET in [b["Name"] for b in boto("s3").list_buckets()["Buckets"]]
    retained = [c for c in doc["plan"]["changes"] if c["details"].get("retained")]
    # (the index template stays with the indices it shapes: the endpoint is not ours)
    assert sorted((c["kind"], c["action"]) for c in retained) == [("opensearch-index-template", "no-op"), ("s3-bucket", "no-op")]
    # the endpoint is plain OpenSearch: no Dashboards, so no saved objects were deleted, and the plan says why
    dash = [c for c in doc["plan"]["changes"] if c["kind"] == "opensearch-dashboards-objects"]
    assert [c["action"] for c in dash] == ["no-op"] and "result" not in dash[0]["details"], dash
    assert dash[0]["details"]["reason"].startswith(f"OpenSearch Dashboards was not found at {opensearch_url}/_dashboards: there are no saved objects to delete"), dash
    assert any(w.startswith("Dashboards saved objects: OpenSearch Dashboards was not found") for w in doc["warnings"]), doc["warnings"]
    assert bucket_sids(boto) == {"TrailsetupDenyInsecureTransportTrailsetup"}
    # idempotent
    again = run_json(run_cli, ["destroy", "--yes"])
    s = again["plan"]["summary"]
    assert (s["create"], s["update"], s["delete"]) == (0, 0, 0), again
    # then the bucket too, every version (moto applies the TLS-only deny to its plain-HTTP object calls: the test
    # lifts it to write objects the way CloudTrail would over TLS)
    boto("s3").delete_bucket_policy(Bucket=BUCKET)
    boto("s3").put_object(Bucket=BUCKET, Key="AWSLogs/x.json.gz", Body=b"1")
    boto("s3").put_object(Bucket=BUCKET, Key="AWSLogs/x.json.gz", Body=b"2")
    boto("s3").delete_object(Bucket=BUCKET, Key="AWSLogs/x.json.gz")
    run_json(run_cli, ["destroy", "--yes", "--delete-bucket"])
    assert BUCKET not in [b["Name"] for b in boto("s3").list_buckets()["Buckets"]]
    # and init builds it all again
    init(run_cli, mode, opensearch_url, os_clean)
    assert boto("cloudtrail").describe_trails()["trailList"]


def test_destroy_never_deletes_an_adopted_bucket(moto_reset, run_cli, boto, opensearch_url, os_clean):
    s3 = boto("s3")
    s3.create_bucket(Bucket=BUCKET)
    theirs = {"Sid": "Auditors", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::999999999999:root"},
              "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{BUCKET}/*"}
    s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps({"Version": "2012-10-17", "Statement": [theirs]}))
    init(run_cli, "multi-region", opensearch_url, os_clean)
    assert "TrailsetupCloudTrailWriteTrailsetup" in bucket_sids(boto)
    doc = run_json(run_cli, ["destroy", "--yes", "--delete-bucket"])
    assert BUCKET in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"])["Statement"] == [theirs]
    b = [c for c in doc["plan"]["changes"] if c["kind"] == "s3-bucket"][0]
    assert b["action"] == "no-op" and "adopted" in b["details"]["reason"]


def test_destroy_retains_the_domain_unless_asked(moto_reset, run_cli, boto):
    run_json(run_cli, ["init", "--yes", "--no-backfill", "--regions", HOME, "--opensearch-domain", "audit"])
    run_json(run_cli, ["destroy", "--yes"])
    assert [d["DomainName"] for d in boto("opensearch").list_domain_names()["DomainNames"]] == ["audit"]
    run_json(run_cli, ["destroy", "--yes", "--delete-domain", "--delete-bucket"])
    assert boto("opensearch").list_domain_names()["DomainNames"] == []
    assert BUCKET not in [b["Name"] for b in boto("s3").list_buckets()["Buckets"]]


def test_destroy_without_state_file_finds_the_stack_by_name_and_tags(moto_reset, run_cli, boto, opensearch_url, os_clean, aws_env, tmp_path):
    init(run_cli, "per-region", opensearch_url, os_clean)
    other_state = dict(aws_env, XDG_STATE_HOME=str(tmp_path / "elsewhere"))
    run_json(run_cli, ["destroy", "--yes", "--name", "trailsetup"], env=other_state)
    assert leftovers(boto) == {}


def test_destroy_interrupted_by_kill_finishes_on_the_next_run(moto_reset, run_cli, boto, opensearch_url, os_clean, aws_env, trailsetup_bin, tmp_path):
    init(run_cli, "per-region", opensearch_url, os_clean)

    def slow(method, path, headers, body):
        time.sleep(0.15)  # every call takes a moment, so the kill lands half way
        return None

    srv, url, calls = start_proxy(moto_reset, answer=slow)
    try:
        env = dict(aws_env, AWS_ENDPOINT_URL=url)
        p = subprocess.Popen([str(trailsetup_bin), "destroy", "--yes"], env=env, cwd=tmp_path,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        while time.time() < deadline and len(boto("iam").list_roles()["Roles"]) and sum(
                1 for r in REGIONS for _ in boto("cloudtrail", r).describe_trails()["trailList"]) == len(REGIONS):
            time.sleep(0.05)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    finally:
        srv.shutdown()
    assert leftovers(boto) != {}, "the kill came too late to interrupt anything"
    # the killed run could not release the stack's lock: the next run says whose it is and stops, until
    # --force-unlock removes it
    held = json.loads(boto("ssm").get_parameter(Name="/trailsetup/trailsetup/lock")["Parameter"]["Value"])
    assert held["command"] == "trailsetup destroy" and held["pid"] == p.pid, held
    rc, _, err = run_cli(["destroy", "--yes", "--lock-timeout", "0"])
    assert rc == 1 and f"pid {p.pid}, `trailsetup destroy`" in err and "--force-unlock" in err, err
    run_json(run_cli, ["destroy", "--yes", "--force-unlock"])
    assert leftovers(boto) == {}
    assert boto("ssm").describe_parameters()["Parameters"] == []
