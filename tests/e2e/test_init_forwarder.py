"""`trailsetup init` provisions the CloudWatch Logs -> OpenSearch forwarder (issue 4, section 1) against moto.

In every region whose trail writes to CloudWatch Logs (multi-region: the home region; per-region: each trail region):
the function (python3.12, forwarder.handler, environment), its async on-failure destination (the region's
`<name>-forwarder-dlq` queue), the invoke permission for logs.amazonaws.com limited by SourceArn, and the log
group's subscription filter; globally the function's role and managed policy. Checked with boto3, not trailsetup.
"""

from __future__ import annotations

import json

import pytest

from test_init import ACCOUNT, HOME, REGIONS, as_list, init_args, run_json, statements

FN = "trailsetup-forwarder"
LOG_GROUP = "/aws/cloudtrail/trailsetup"
FORWARDER_KINDS = {"iam-role", "iam-policy", "sqs-queue", "lambda-function", "lambda-permission", "logs-subscription-filter"}


def cwl_regions(mode: str) -> list[str]:
    return [HOME] if mode == "multi-region" else REGIONS


def check_forwarder(boto, mode: str, opensearch_url: str, prefix: str, plan: dict) -> None:
    regions = cwl_regions(mode)
    planned_sha = {c["region"]: c["details"]["code_sha256"] for c in plan["plan"]["changes"] if c["kind"] == "lambda-function"}
    assert sorted(planned_sha) == sorted(regions)

    for region in REGIONS:
        lam = boto("lambda", region)
        if region not in regions:
            assert FN not in [f["FunctionName"] for f in lam.list_functions()["Functions"]]
            continue
        fn_arn = f"arn:aws:lambda:{region}:{ACCOUNT}:function:{FN}"
        dlq_arn = f"arn:aws:sqs:{region}:{ACCOUNT}:trailsetup-forwarder-dlq"
        dlq_url = boto("sqs", region).get_queue_url(QueueName="trailsetup-forwarder-dlq")["QueueUrl"]

        cfg = lam.get_function_configuration(FunctionName=FN)
        assert cfg["Runtime"] == "python3.12"
        assert cfg["Handler"] == "forwarder.handler"
        assert cfg["Role"] == f"arn:aws:iam::{ACCOUNT}:role/{FN}"
        assert cfg["CodeSha256"] == planned_sha[region]
        assert cfg["Environment"]["Variables"] == {
            "OPENSEARCH_URL": opensearch_url,
            "OPENSEARCH_AUTH": "none",  # a non-AWS endpoint
            "INDEX_PREFIX": prefix,
            # the stack's layout (aws_env pins daily indices; init's own choice is tested in test_layout.py)
            "INDEX_GRANULARITY": "day",
            "DLQ_URL": dlq_url,
        }
        assert lam.list_tags(Resource=fn_arn)["Tags"].get("trailsetup:stack") == "trailsetup"

        inv = lam.get_function_event_invoke_config(FunctionName=FN)
        assert inv["DestinationConfig"]["OnFailure"]["Destination"] == dlq_arn

        pol = json.loads(lam.get_policy(FunctionName=FN)["Policy"])
        st = statements(pol)["trailsetup-cloudwatch-logs"]
        assert st["Principal"] == {"Service": "logs.amazonaws.com"}
        assert st["Action"] == "lambda:InvokeFunction"
        cond = {k.lower(): v for op in st["Condition"].values() for k, v in op.items()}
        assert cond["aws:sourcearn"] == f"arn:aws:logs:{region}:{ACCOUNT}:log-group:{LOG_GROUP}:*"
        assert cond["aws:sourceaccount"] == ACCOUNT

        subs = boto("logs", region).describe_subscription_filters(logGroupName=LOG_GROUP)["subscriptionFilters"]
        assert [(s["filterName"], s["filterPattern"], s["destinationArn"]) for s in subs] == [(FN, "", fn_arn)]

    iam = boto("iam")
    role = iam.get_role(RoleName=FN)["Role"]
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    (t,) = trust["Statement"]
    assert t["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert t["Condition"]["StringEquals"]["aws:SourceAccount"] == ACCOUNT
    parn = f"arn:aws:iam::{ACCOUNT}:policy/{FN}"
    assert [p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=FN)["AttachedPolicies"]] == [parn]
    ver = iam.get_policy(PolicyArn=parn)["Policy"]["DefaultVersionId"]
    doc = iam.get_policy_version(PolicyArn=parn, VersionId=ver)["PolicyVersion"]["Document"]
    doc = json.loads(doc) if isinstance(doc, str) else doc
    sids = statements(doc)
    assert set(sids) == {"OwnLogGroup", "DeadLetters"}  # no es: statement for a non-AWS endpoint
    assert sorted(as_list(sids["OwnLogGroup"]["Resource"])) == sorted(
        f"arn:aws:logs:{r}:{ACCOUNT}:log-group:/aws/lambda/{FN}:*" for r in regions)
    assert sorted(as_list(sids["DeadLetters"]["Resource"])) == sorted(
        f"arn:aws:sqs:{r}:{ACCOUNT}:trailsetup-forwarder-dlq" for r in regions)


@pytest.mark.parametrize("mode", ["multi-region", "per-region"])
def test_init_provisions_forwarder_in_each_cloudwatch_logs_region(mode, moto_reset, run_cli, boto, opensearch_url, os_clean):
    doc, _ = run_json(run_cli, init_args(mode, os_clean, opensearch_url))
    assert doc["applied"] is True
    fw = [c for c in doc["plan"]["changes"] if c["kind"] in ("lambda-function", "lambda-permission", "logs-subscription-filter")]
    assert sorted((c["kind"], c["region"]) for c in fw) == sorted(
        (k, r) for r in cwl_regions(mode) for k in ("lambda-function", "lambda-permission", "logs-subscription-filter"))
    assert all(c["action"] == "create" for c in fw)
    check_forwarder(boto, mode, opensearch_url, os_clean, doc)

    again, _ = run_json(run_cli, init_args(mode, os_clean, opensearch_url))
    s = again["plan"]["summary"]
    assert (s["create"], s["update"], s["delete"]) == (0, 0, 0), json.dumps(
        [c for c in again["plan"]["changes"] if c["action"] != "no-op"], indent=1)


def test_dry_run_shows_forwarder_and_creates_nothing(moto_reset, run_cli, boto, opensearch_url, os_clean):
    doc, _ = run_json(run_cli, [*init_args("per-region", os_clean, opensearch_url), "--dry-run"])
    kinds = {c["kind"] for c in doc["plan"]["changes"]}
    assert FORWARDER_KINDS <= kinds
    names = {(c["kind"], c["name"], c["region"]) for c in doc["plan"]["changes"]}
    for r in REGIONS:
        assert ("lambda-function", FN, r) in names and ("lambda-permission", FN, r) in names
        assert ("logs-subscription-filter", FN, r) in names and ("sqs-queue", "trailsetup-forwarder-dlq", r) in names
        assert boto("lambda", r).list_functions()["Functions"] == []
    assert ("iam-role", FN, "global") in names and ("iam-policy", FN, "global") in names

    rc, out, err = run_cli([*init_args("per-region", os_clean, opensearch_url), "--dry-run"])
    assert rc == 0, err
    assert "lambda-function" in out and "logs-subscription-filter" in out and "lambda-permission" in out


def test_forwarder_drift_is_planned_and_repaired(moto_reset, run_cli, boto, opensearch_url, os_clean):
    run_json(run_cli, init_args("multi-region", os_clean, opensearch_url))
    lam = boto("lambda")
    env = lam.get_function_configuration(FunctionName=FN)["Environment"]["Variables"]
    lam.update_function_configuration(FunctionName=FN, Environment={"Variables": {**env, "INDEX_PREFIX": "other"}})
    lam.remove_permission(FunctionName=FN, StatementId="trailsetup-cloudwatch-logs")

    plan, _ = run_json(run_cli, [*init_args("multi-region", os_clean, opensearch_url), "--dry-run"])
    changed = {(c["action"], c["kind"]) for c in plan["plan"]["changes"] if c["action"] != "no-op"}
    assert changed == {("update", "lambda-function"), ("create", "lambda-permission")}

    run_json(run_cli, init_args("multi-region", os_clean, opensearch_url))
    assert lam.get_function_configuration(FunctionName=FN)["Environment"]["Variables"]["INDEX_PREFIX"] == os_clean
    assert "trailsetup-cloudwatch-logs" in lam.get_policy(FunctionName=FN)["Policy"]
    again, _ = run_json(run_cli, init_args("multi-region", os_clean, opensearch_url))
    assert again["plan"]["summary"]["create"] + again["plan"]["summary"]["update"] == 0
