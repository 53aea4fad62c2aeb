"""`trailsetup init` against moto (AWS) and the loopback OpenSearch node.

Assertions use boto3 and plain HTTP — independent clients — never trailsetup's own read path.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from awsproxy import deny, start_proxy
from conftest import free_port

ACCOUNT = "123456789012"  # moto's default account for the test credentials
HOME = "us-east-1"
REGIONS = ["us-east-1", "us-west-2", "eu-west-1"]
ALL_KINDS = {
    "iam-role", "iam-policy", "s3-bucket", "s3-bucket-policy", "sqs-queue", "sqs-queue-policy",
    "logs-log-group", "sns-topic", "sns-topic-policy", "sns-subscription", "cloudtrail-trail",
    "opensearch-index-template", "opensearch-dashboards-objects", "lambda-function", "lambda-permission",
    "logs-subscription-filter",
}


def init_args(mode: str, prefix: str, os_url: str, *extra: str) -> list[str]:
    return ["init", "--yes", "--no-backfill", "--trail-mode", mode, "--regions", ",".join(REGIONS),
            "--opensearch-url", os_url, "--index-prefix", prefix, *extra]


def run_json(run_cli, args, env=None):
    rc, out, err = run_cli([*args, "--output", "json"], env=env)
    assert rc == 0, err
    return json.loads(out), err


def statements(policy) -> dict:
    if isinstance(policy, str):
        policy = json.loads(policy)
    return {s.get("Sid"): s for s in policy["Statement"]}


def as_list(v):
    return v if isinstance(v, list) else [v]


def moto_snapshot(boto) -> dict:
    """Everything init could touch, as seen by boto3."""
    snap = {
        "buckets": sorted(b["Name"] for b in boto("s3").list_buckets()["Buckets"]),
        "roles": sorted(r["RoleName"] for r in boto("iam").list_roles()["Roles"]),
        "policies": sorted(p["PolicyName"] for p in boto("iam").list_policies(Scope="Local")["Policies"]),
        "queues": sorted(boto("sqs").list_queues().get("QueueUrls", [])),
    }
    for r in REGIONS:
        snap[f"trails/{r}"] = sorted(t["TrailARN"] for t in boto("cloudtrail", r).describe_trails()["trailList"])
        snap[f"topics/{r}"] = sorted(t["TopicArn"] for t in boto("sns", r).list_topics()["Topics"])
        snap[f"logs/{r}"] = sorted(g["logGroupName"] for g in boto("logs", r).describe_log_groups()["logGroups"])
    return snap


def check_common(boto, mode: str, opensearch_url: str, prefix: str, aws_env) -> None:
    bucket = f"trailsetup-{ACCOUNT}-{HOME}"
    s3 = boto("s3")
    pab = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(pab[k] for k in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"))
    enc = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert enc["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    own = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"][0]
    assert own["ObjectOwnership"] == "BucketOwnerEnforced"
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    assert {"Key": "trailsetup:stack", "Value": "trailsetup"} in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]
    with pytest.raises(Exception):  # no lifecycle expiry
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)

    if mode == "multi-region":
        trails = {HOME: "trailsetup"}
    else:
        trails = {r: f"trailsetup-{r}" for r in REGIONS}
    trail_arns = sorted(f"arn:aws:cloudtrail:{r}:{ACCOUNT}:trail/{n}" for r, n in trails.items())

    st = statements(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    acl = st["TrailsetupCloudTrailAclCheckTrailsetup"]
    assert acl["Action"] == "s3:GetBucketAcl" and acl["Principal"] == {"Service": "cloudtrail.amazonaws.com"}
    assert sorted(as_list(acl["Condition"]["StringEquals"]["aws:SourceArn"])) == trail_arns
    wr = st["TrailsetupCloudTrailWriteTrailsetup"]
    assert wr["Resource"] == f"arn:aws:s3:::{bucket}/AWSLogs/{ACCOUNT}/*"
    assert wr["Condition"]["StringEquals"]["s3:x-amz-acl"] == "bucket-owner-full-control"
    assert sorted(as_list(wr["Condition"]["StringEquals"]["aws:SourceArn"])) == trail_arns
    deny = st["TrailsetupDenyInsecureTransportTrailsetup"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}

    queue_arn = f"arn:aws:sqs:{HOME}:{ACCOUNT}:trailsetup-notifications"
    dlq_arn = queue_arn + "-dlq"
    for region, name in trails.items():
        ct = boto("cloudtrail", region)
        t = ct.get_trail(Name=name)["Trail"]
        assert t["S3BucketName"] == bucket
        assert t["IsMultiRegionTrail"] == (mode == "multi-region")
        # global service events reach trails in us-east-1 only (CloudTrail concepts → global service events)
        assert t["IncludeGlobalServiceEvents"] == (mode == "multi-region" or region == "us-east-1")
        assert t["LogFileValidationEnabled"] is True
        assert t["CloudWatchLogsLogGroupArn"] == f"arn:aws:logs:{region}:{ACCOUNT}:log-group:/aws/cloudtrail/trailsetup:*"
        assert t["CloudWatchLogsRoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/trailsetup-cloudtrail-logs"
        assert t["SnsTopicARN"].endswith(":trailsetup-cloudtrail") and f":{region}:" in t["SnsTopicARN"]
        assert ct.get_trail_status(Name=t["TrailARN"])["IsLogging"] is True
        tags = ct.list_tags(ResourceIdList=[t["TrailARN"]])["ResourceTagList"][0]["TagsList"]
        assert {"Key": "trailsetup:stack", "Value": "trailsetup"} in tags

        sns = boto("sns", region)
        topic = f"arn:aws:sns:{region}:{ACCOUNT}:trailsetup-cloudtrail"
        tp = statements(sns.get_topic_attributes(TopicArn=topic)["Attributes"]["Policy"])["TrailsetupCloudTrailPublishTrailsetup"]
        assert tp["Principal"] == {"Service": "cloudtrail.amazonaws.com"}
        assert as_list(tp["Condition"]["StringEquals"]["aws:SourceArn"]) == [f"arn:aws:cloudtrail:{region}:{ACCOUNT}:trail/{name}"]
        subs = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
        assert [(s["Protocol"], s["Endpoint"]) for s in subs] == [("sqs", queue_arn)]
        assert {"Key": "trailsetup:stack", "Value": "trailsetup"} in sns.list_tags_for_resource(ResourceArn=topic)["Tags"]

        lg = [g for g in boto("logs", region).describe_log_groups(logGroupNamePrefix="/aws/cloudtrail/trailsetup")["logGroups"]]
        assert len(lg) == 1 and lg[0]["retentionInDays"] == 90

    sqs = boto("sqs")
    qurl = sqs.get_queue_url(QueueName="trailsetup-notifications")["QueueUrl"]
    a = sqs.get_queue_attributes(QueueUrl=qurl, AttributeNames=["All"])["Attributes"]
    assert json.loads(a["RedrivePolicy"]) in (
        {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5},
        {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"},
    )
    assert a["SqsManagedSseEnabled"] == "true"
    # one statement per topic (SNS developer guide, "Subscribing an Amazon SQS queue to an Amazon SNS topic")
    qsids = [sid for sid in statements(a["Policy"]) if sid.startswith("TrailsetupTopicsSend")]
    assert qsids and all(sid.endswith("Trailsetup") for sid in qsids), qsids  # the stack names its statements
    qps = [statements(a["Policy"])[sid] for sid in qsids]
    assert all(qp["Principal"] == {"Service": "sns.amazonaws.com"} and qp["Action"] == "sqs:SendMessage" for qp in qps)
    topic_arns = sorted(f"arn:aws:sns:{r}:{ACCOUNT}:trailsetup-cloudtrail" for r in trails)
    assert sorted(qp["Condition"]["ArnEquals"]["aws:SourceArn"] for qp in qps) == topic_arns
    durl = sqs.get_queue_url(QueueName="trailsetup-notifications-dlq")["QueueUrl"]
    assert sqs.get_queue_attributes(QueueUrl=durl, AttributeNames=["MessageRetentionPeriod"])["Attributes"]["MessageRetentionPeriod"] == "1209600"

    iam = boto("iam")
    role = iam.get_role(RoleName="trailsetup-cloudtrail-logs")["Role"]
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    # CloudTrail User Guide, "Role policy document for CloudTrail to use CloudWatch Logs for monitoring": no
    # confused-deputy condition on this role's trust (CloudTrail's delivery to CloudWatch Logs breaks with one)
    assert trust["Statement"][0]["Principal"] == {"Service": "cloudtrail.amazonaws.com"}
    assert "Condition" not in trust["Statement"][0]
    inline = iam.get_role_policy(RoleName="trailsetup-cloudtrail-logs", PolicyName="cloudtrail-logs")["PolicyDocument"]
    inline = json.loads(inline) if isinstance(inline, str) else inline
    assert sorted(inline["Statement"][0]["Action"]) == ["logs:CreateLogStream", "logs:PutLogEvents"]
    streams = sorted(as_list(inline["Statement"][0]["Resource"]))
    if mode == "multi-region":
        want = [f"arn:aws:logs:{HOME}:{ACCOUNT}:log-group:/aws/cloudtrail/trailsetup:log-stream:{ACCOUNT}_CloudTrail_*"]
    else:
        want = sorted(f"arn:aws:logs:{r}:{ACCOUNT}:log-group:/aws/cloudtrail/trailsetup:log-stream:{ACCOUNT}_CloudTrail_{r}*" for r in trails)
    assert streams == want
    parn = f"arn:aws:iam::{ACCOUNT}:policy/trailsetup-ingest-worker"
    ver = iam.get_policy(PolicyArn=parn)["Policy"]["DefaultVersionId"]
    doc = iam.get_policy_version(PolicyArn=parn, VersionId=ver)["PolicyVersion"]["Document"]
    doc = json.loads(doc) if isinstance(doc, str) else doc
    sids = statements(doc)
    assert sids["ReadLogFiles"]["Resource"] == f"arn:aws:s3:::{bucket}/AWSLogs/*"
    assert sids["ConsumeNotifications"]["Resource"] == queue_arn

    r = requests.get(f"{opensearch_url}/_index_template/{prefix}-trailsetup", timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["index_templates"][0]["index_template"]["index_patterns"] == [f"{prefix}-*"]

    state = json.loads((Path(aws_env["XDG_STATE_HOME"]) / "trailsetup" / "trailsetup.json").read_text())
    assert state["bucket"] == bucket and state["queue_url"] == qurl and state["dlq_url"] == durl
    assert state["opensearch_url"] == opensearch_url and state["index_prefix"] == prefix
    assert state["regions"] == REGIONS


@pytest.mark.parametrize("mode", ["multi-region", "per-region"])
def test_init_creates_everything_and_second_run_is_a_no_op(mode, moto_reset, run_cli, boto, opensearch_url, os_clean, aws_env):
    doc, err = run_json(run_cli, init_args(mode, os_clean, opensearch_url))
    assert doc["applied"] is True
    assert doc["plan"]["summary"]["update"] == 0 and doc["plan"]["summary"]["delete"] == 0
    kinds = {c["kind"] for c in doc["plan"]["changes"]}
    assert kinds == ALL_KINDS
    check_common(boto, mode, opensearch_url, os_clean, aws_env)

    again, _ = run_json(run_cli, init_args(mode, os_clean, opensearch_url))
    s = again["plan"]["summary"]
    assert (s["create"], s["update"], s["delete"]) == (0, 0, 0), json.dumps(
        [c for c in again["plan"]["changes"] if c["action"] != "no-op"], indent=1)
    assert again["applied"] is False


def test_dry_run_online_changes_nothing(moto_reset, run_cli, boto, opensearch_url, os_clean):
    before = moto_snapshot(boto)
    doc, _ = run_json(run_cli, [*init_args("per-region", os_clean, opensearch_url), "--dry-run"])
    assert moto_snapshot(boto) == before
    assert doc["applied"] is False
    assert {c["kind"] for c in doc["plan"]["changes"]} == ALL_KINDS
    # everything to create, but the Dashboards saved objects: the test node has no Dashboards (deferred, said)
    assert all(c["action"] == "create" for c in doc["plan"]["changes"] if c["kind"] != "opensearch-dashboards-objects")
    assert next(c for c in doc["plan"]["changes"] if c["kind"] == "opensearch-dashboards-objects")["details"]["deferred"] is True
    assert requests.get(f"{opensearch_url}/_index_template/{os_clean}-trailsetup", timeout=30).status_code == 404


def test_dry_run_after_apply_shows_update_as_diff(moto_reset, run_cli, boto, opensearch_url, os_clean):
    run_json(run_cli, init_args("multi-region", os_clean, opensearch_url))
    boto("logs").put_retention_policy(logGroupName="/aws/cloudtrail/trailsetup", retentionInDays=30)
    rc, out, err = run_cli([*init_args("multi-region", os_clean, opensearch_url), "--dry-run"])
    assert rc == 0, err
    assert "~ update" in out and "logs-log-group" in out
    assert '-   "retention_days": 30' in out and '+   "retention_days": 90' in out
    assert boto("logs").describe_log_groups()["logGroups"][0]["retentionInDays"] == 30


def test_offline_makes_no_call(moto_reset, run_cli, boto, aws_env):
    before = moto_snapshot(boto)
    env = dict(aws_env)
    # a closed port: any AWS call would fail
    port = free_port()
    env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{port}"
    rc, out, err = run_cli(["--dry-run", "--offline", "--yes", "--trail-mode", "per-region", "--regions", ",".join(REGIONS),
                            "--output", "json"], env=env)
    assert rc == 0, err
    doc = json.loads(out)
    kinds = {c["kind"] for c in doc["plan"]["changes"]}
    assert kinds == ALL_KINDS | {"opensearch-domain", "opensearch-role-mapping"}
    assert "account" in doc["placeholders"]
    assert moto_snapshot(boto) == before


def test_rendered_policies_pass_parliament(run_cli, aws_env):
    from parliament import analyze_policy_string

    # a multi-Region key: per-region resources each get the replica of their own region
    rc, out, err = run_cli(["--dry-run", "--offline", "--yes", "--account", ACCOUNT, "--trail-mode", "per-region",
                            "--regions", ",".join(REGIONS), "--kms-key", f"arn:aws:kms:us-east-1:{ACCOUNT}:key/mrk-1234abcd",
                            "--output", "json"])
    assert rc == 0, err
    found = []

    def walk(v, path):
        if isinstance(v, dict):
            if "Statement" in v:
                yield path, v
                return
            for k, x in v.items():
                yield from walk(x, f"{path}.{k}")

    n = 0
    for c in json.loads(out)["plan"]["changes"]:
        for path, pol in walk(c["details"], c["kind"]):
            n += 1
            text = json.dumps(pol).replace("<caller>", "admin")
            for f in analyze_policy_string(text, ignore_private_auditors=True).findings:
                # Accepted: parliament reads every document as an identity policy; a role's trust policy has no
                # Resource by design (IAM rejects one), so MALFORMED "neither Resource nor NotResource" is expected.
                if path == "iam-role.assume_role_policy" and f.issue == "MALFORMED":
                    continue
                # Accepted: a KMS key policy names the key as "*" (the key it is attached to: "Key policies in AWS
                # KMS"); parliament reads it as an identity policy granting kms: on every resource.
                if c["kind"] == "kms-key-policy" and f.issue == "RESOURCE_STAR":
                    continue
                # Accepted: the CloudWatch Logs statement is AWS's documented one, verbatim ("Encrypt log data in
                # CloudWatch Logs using AWS Key Management Service", step 2: kms:Describe* etc. with ArnEquals on
                # kms:EncryptionContext:aws:logs:arn); parliament expands kms:Describe* to account-level actions and
                # types the context key as a string.
                if c["kind"] == "kms-key-policy" and (
                        (f.issue == "UNKNOWN_CONDITION_FOR_ACTION" and "kms:EncryptionContext:aws:logs:arn" in str(f.detail))
                        or (f.issue == "MISMATCHED_TYPE" and "ArnEquals" in str(f.detail))):
                    continue
                found.append((path, f.issue, f.detail))
    assert n >= 10
    assert found == []


# --- clear errors ---


def test_bucket_taken_by_another_account(moto_reset, moto_url, run_cli, boto, opensearch_url, os_clean):
    import boto3

    creds = boto("sts").assume_role(RoleArn="arn:aws:iam::111111111111:role/other", RoleSessionName="other")["Credentials"]
    other = boto3.client("s3", region_name=HOME, endpoint_url=moto_url, aws_access_key_id=creds["AccessKeyId"],
                         aws_secret_access_key=creds["SecretAccessKey"], aws_session_token=creds["SessionToken"])
    other.create_bucket(Bucket="someone-elses-bucket")
    rc, out, err = run_cli(init_args("multi-region", os_clean, opensearch_url, "--bucket", "someone-elses-bucket"))
    assert rc == 2, err
    assert "someone-elses-bucket" in err and "taken by another account" in err and "--bucket" in err
    assert boto("cloudtrail").describe_trails()["trailList"] == []


def test_access_denied_names_permission(moto_reset, run_cli, aws_env, opensearch_url, os_clean):
    srv, url, _ = start_proxy(moto_reset, answer=deny("CreateTrail", "cloudtrail:CreateTrail"))
    try:
        env = dict(aws_env, AWS_ENDPOINT_URL=url)
        rc, out, err = run_cli(init_args("multi-region", os_clean, opensearch_url), env=env)
    finally:
        srv.shutdown()
    assert rc == 1, err
    assert "cloudtrail-trail trailsetup" in err
    assert "AccessDeniedException" in err and "cloudtrail:CreateTrail" in err


def test_unknown_region(moto_reset, run_cli, opensearch_url):
    rc, out, err = run_cli(["init", "--yes", "--regions", "us-east-1,mars-east-1", "--opensearch-url", opensearch_url])
    assert rc == 2
    assert "unknown region" in err and "mars-east-1" in err and "--regions" in err


def test_china_region_is_not_in_the_aws_partition(moto_reset, run_cli, opensearch_url):
    rc, out, err = run_cli(["init", "--yes", "--dry-run", "--regions", "cn-north-1", "--opensearch-url", opensearch_url])
    assert rc == 2 and "cn-north-1" in err


def test_no_tty_without_yes_exits_2(moto_reset, run_cli, boto):
    rc, out, err = run_cli(["init", "--regions", "us-east-1"])
    assert rc == 2
    assert "--yes" in err and "TRAILSETUP_NAME" in err and "config key name" in err
    assert out == ""
    assert boto("s3").list_buckets()["Buckets"] == []


def test_invalid_config_file_exits_2(run_cli, tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('name = "x"\nno_such_key = 1\n')
    rc, out, err = run_cli(["init", "--config", str(cfg), "--yes", "--dry-run", "--offline"])
    assert rc == 2
    assert "invalid config file" in err and "no_such_key" in err


def test_example_config_is_valid(run_cli):
    example = Path(__file__).resolve().parents[2] / "templates" / "trailsetup.example.toml"
    rc, out, err = run_cli(["init", "--config", str(example), "--yes", "--dry-run", "--offline"])
    assert rc == 0, err
    assert "Plan:" in out


# --- a new domain's size: type, count and the Availability Zones they spread over -------------------------------
# Amazon OpenSearch Service Developer Guide, "Configuring a multi-AZ domain in Amazon OpenSearch Service",
# https://docs.aws.amazon.com/opensearch-service/latest/developerguide/managedomains-multiaz.html (two or three zones;
# three with a multiple of three data nodes); the Amazon Elasticsearch Service guide's "Enabling zone awareness" and
# CreateDomain's ValidationException ("You must choose an even number of data nodes for a two Availability Zone
# deployment"); API Reference "ZoneAwarenessConfig",
# https://docs.aws.amazon.com/opensearch-service/latest/APIReference/API_ZoneAwarenessConfig.html (2 or 3).
# moto stores ClusterConfig as sent, so describe_domain shows what CreateDomain carried; it does not refuse an odd
# count over two zones the way AWS does: init refuses it itself (below), and src/rules.rs checks every plan.

DOMAIN_ARGS = ["init", "--yes", "--no-backfill", "--regions", HOME, "--opensearch-domain", "audit"]


@pytest.mark.parametrize("itype,count,zones", [("m6g.large.search", 2, 2), ("t3.medium.search", 3, 3), ("r6g.large.search", 6, 3)])
def test_new_domain_size_spreads_over_zones(itype, count, zones, moto_reset, run_cli, boto):
    args = [*DOMAIN_ARGS, "--domain-instance-type", itype, "--domain-instance-count", str(count)]
    doc, _ = run_json(run_cli, args)
    assert doc["applied"] is True
    cc = boto("opensearch").describe_domain(DomainName="audit")["DomainStatus"]["ClusterConfig"]
    assert (cc["InstanceType"], cc["InstanceCount"]) == (itype, count)
    assert cc["ZoneAwarenessEnabled"] is True
    assert cc["ZoneAwarenessConfig"] == {"AvailabilityZoneCount": zones}
    assert cc["MultiAZWithStandbyEnabled"] is False  # standby needs dedicated masters, and takes no T3
    ebs = boto("opensearch").describe_domain(DomainName="audit")["DomainStatus"]["EBSOptions"]
    assert (ebs["EBSEnabled"], ebs["VolumeType"], ebs["VolumeSize"]) == (True, "gp3", 10)
    # the plan carried the same, with the monthly estimate: nodes × hourly × 730 + nodes × 10 GiB × gp3
    dom = [c for c in doc["plan"]["changes"] if c["kind"] == "opensearch-domain"][0]["details"]
    assert (dom["zone_awareness_enabled"], dom["availability_zone_count"]) == (True, zones)
    hourly = {"m6g.large.search": 0.128, "t3.medium.search": 0.073, "r6g.large.search": 0.167}[itype]
    est = dom["monthly_estimate"]
    assert est["usd_per_month"] == round(count * hourly * 730 + count * 10 * 0.122, 2)
    assert (est["priced_region"], est["hours_per_month"], est["gp3_usd_per_gb_month"]) == ("us-east-1", 730, 0.122)
    # a second run adopts the domain as it is: nothing to change, no estimate
    again, _ = run_json(run_cli, args)
    s = again["plan"]["summary"]
    assert (s["create"], s["update"], s["delete"]) == (0, 0, 0), json.dumps(
        [c for c in again["plan"]["changes"] if c["action"] != "no-op"], indent=1)
    dom = [c for c in again["plan"]["changes"] if c["kind"] == "opensearch-domain"][0]["details"]
    assert "monthly_estimate" not in dom and dom["instance_count"] == count


def test_one_node_stays_in_one_zone(moto_reset, run_cli, boto):
    doc, _ = run_json(run_cli, DOMAIN_ARGS)
    cc = boto("opensearch").describe_domain(DomainName="audit")["DomainStatus"]["ClusterConfig"]
    assert (cc["InstanceType"], cc["InstanceCount"], cc["ZoneAwarenessEnabled"]) == ("t3.small.search", 1, False)
    assert "ZoneAwarenessConfig" not in cc
    dom = [c for c in doc["plan"]["changes"] if c["kind"] == "opensearch-domain"][0]["details"]
    assert dom["monthly_estimate"]["usd_per_month"] == 27.5  # 0.036 × 730 + 10 × 0.122


@pytest.mark.parametrize("extra,words", [
    (["--domain-instance-count", "5"], "cannot be spread evenly over Availability Zones"),
    (["--domain-instance-count", "12"], "at most 10 data nodes"),  # t3.small.search by default
    (["--domain-instance-type", "m4.large.search"], "t3.small.search, t3.medium.search, m6g.large.search"),
])
def test_a_size_aws_would_refuse_is_exit_2_and_changes_nothing(extra, words, moto_reset, run_cli, boto):
    rc, out, err = run_cli([*DOMAIN_ARGS, *extra])
    assert rc == 2, err
    assert words in err and "config key domain_instance_" in err, err
    assert boto("opensearch").list_domain_names()["DomainNames"] == []
    assert boto("s3").list_buckets()["Buckets"] == []


def test_domain_size_from_env_and_config(moto_reset, run_cli, aws_env, tmp_path):
    cfg = tmp_path / "size.toml"
    cfg.write_text('domain_instance_type = "r6g.xlarge.search"\ndomain_instance_count = 4\n')
    doc, _ = run_json(run_cli, [*DOMAIN_ARGS, "--dry-run", "--config", str(cfg)])
    dom = [c for c in doc["plan"]["changes"] if c["kind"] == "opensearch-domain"][0]["details"]
    assert (dom["instance_type"], dom["instance_count"], dom["availability_zone_count"]) == ("r6g.xlarge.search", 4, 2)
    # env over the file
    env = dict(aws_env, TRAILSETUP_DOMAIN_INSTANCE_COUNT="9")
    doc, _ = run_json(run_cli, [*DOMAIN_ARGS, "--dry-run", "--config", str(cfg)], env=env)
    dom = [c for c in doc["plan"]["changes"] if c["kind"] == "opensearch-domain"][0]["details"]
    assert (dom["instance_type"], dom["instance_count"], dom["availability_zone_count"]) == ("r6g.xlarge.search", 9, 3)
