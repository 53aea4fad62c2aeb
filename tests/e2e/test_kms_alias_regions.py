"""A bare KMS alias with resources in several regions.

"Aliases in AWS KMS" (AWS KMS Developer Guide): an alias is a regional name — `alias/cloudtrail` in us-east-1 and
`alias/cloudtrail` in eu-west-1 are two names for two keys — and users create the same alias in each region.
So `--kms-key alias/NAME` is resolved in every region of the plan (kms:DescribeKey there), and refused (exit 2)
naming exactly the regions where the alias does not exist.
"""

from __future__ import annotations

import json

ACCOUNT = "123456789012"


def test_bare_alias_is_resolved_in_each_region(moto_reset, run_cli, boto, opensearch_url, os_clean):
    keys = {}
    for region in ("us-east-1", "eu-west-1"):
        kms = boto("kms", region=region)
        k = kms.create_key(Description=f"trail logs {region}")["KeyMetadata"]
        kms.create_alias(AliasName="alias/cloudtrail", TargetKeyId=k["KeyId"])
        keys[region] = k["Arn"]
    args = ["init", "--yes", "--no-backfill", "--regions", "us-east-1,eu-west-1", "--trail-mode", "per-region",
            "--kms-key", "alias/cloudtrail", "--opensearch-url", opensearch_url, "--index-prefix", os_clean, "--output", "json"]
    rc, out, err = run_cli(args, timeout=300)
    assert rc == 0, err
    # each region's log group is encrypted with that region's key, by its key ARN (CreateLogGroup takes an ARN)
    for region, arn in keys.items():
        lg = boto("logs", region=region).describe_log_groups(logGroupNamePrefix="/aws/cloudtrail/trailsetup")["logGroups"][0]
        assert lg["kmsKeyId"] == arn, (region, lg)
        topic = f"arn:aws:sns:{region}:{ACCOUNT}:trailsetup-cloudtrail"
        assert boto("sns", region=region).get_topic_attributes(TopicArn=topic)["Attributes"]["KmsMasterKeyId"] == arn
        # and that key's policy holds our statements for that region's log group
        policy = json.loads(boto("kms", region=region).get_key_policy(KeyId=arn, PolicyName="default")["Policy"])
        sids = {s.get("Sid") for s in policy["Statement"]}
        assert "TrailsetupCloudWatchLogsTrailsetup" in sids, (region, sids)
    again = json.loads(run_cli(args, timeout=300)[1])
    s = again["plan"]["summary"]
    assert (s["create"], s["update"], s["delete"]) == (0, 0, 0), [c for c in again["plan"]["changes"] if c["action"] != "no-op"]


def test_bare_alias_missing_in_a_region_is_refused_naming_it(moto_reset, run_cli, boto):
    kms = boto("kms", region="us-east-1")
    k = kms.create_key(Description="only here")["KeyMetadata"]
    kms.create_alias(AliasName="alias/cloudtrail", TargetKeyId=k["KeyId"])
    rc, out, err = run_cli(["init", "--yes", "--no-backfill", "--regions", "us-east-1,eu-west-1,ap-southeast-2", "--trail-mode",
                            "per-region", "--kms-key", "alias/cloudtrail", "--opensearch-url", "http://127.0.0.1:9"], timeout=300)
    assert rc == 2, err
    assert "alias does not exist in ap-southeast-2, eu-west-1" in err, err
    # nothing was created
    assert boto("s3").list_buckets()["Buckets"] == []
    assert boto("cloudtrail").describe_trails()["trailList"] == []
