"""Saved plans and drift, as a CI pipeline uses them (Terraform's saved plans and `-detailed-exitcode`):
`--dry-run --plan-out FILE` in review, `init --yes --plan FILE` on merge — applied only when the account still gives
exactly that plan, else refused with nothing changed — and `--detailed-exitcode` for a scheduled drift check.
Two state directories stand for two runners.
"""

from __future__ import annotations

import json
import os
import stat

ACCOUNT = "123456789012"
HOME = "us-east-1"


def test_saved_plan_applied_then_refused_after_the_account_moved(moto_reset, run_cli, boto, aws_env, opensearch_url, os_clean, tmp_path):
    common = ["--regions", HOME, "--no-backfill", "--opensearch-url", opensearch_url, "--index-prefix", os_clean]
    review_env = {**aws_env, "TRAILSETUP_STATE_DIR": str(tmp_path / "runner-review")}
    apply_env = {**aws_env, "TRAILSETUP_STATE_DIR": str(tmp_path / "runner-apply")}
    plan1 = tmp_path / "plan1.json"

    # review: a plan with changes is saved, exit 4 says "changes pending"
    rc, out, err = run_cli(["init", "--dry-run", "--yes", "--plan-out", str(plan1), "--detailed-exitcode", *common], env=review_env)
    assert rc == 4, err
    saved = json.loads(plan1.read_text())
    assert saved["format"] == "trailsetup-saved-plan/1" and saved["account"] == ACCOUNT and saved["stack"] == "trailsetup"
    assert saved["plan"]["summary"]["create"] > 10
    assert stat.S_IMODE(os.stat(plan1).st_mode) == 0o600
    # the dry run changed nothing
    assert boto("cloudtrail").describe_trails()["trailList"] == []

    # the account moves before the merge: someone creates the queue with other settings
    sqs = boto("sqs")
    sqs.create_queue(QueueName="trailsetup-notifications", Attributes={"VisibilityTimeout": "30"})
    rc, out, err = run_cli(["init", "--yes", "--plan", str(plan1), *common], env=apply_env)
    assert rc == 1, err
    assert "no longer give the plan saved in" in err and "nothing was changed" in err, err
    assert "sqs-queue trailsetup-notifications [us-east-1]: saved as create, now update" in err, err
    # nothing was changed: no trail, no bucket, no topic; the queue is as it was made
    assert boto("cloudtrail").describe_trails()["trailList"] == []
    assert boto("s3").list_buckets()["Buckets"] == []
    assert boto("sns").list_topics()["Topics"] == []
    q = sqs.get_queue_url(QueueName="trailsetup-notifications")["QueueUrl"]
    assert sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["VisibilityTimeout"])["Attributes"]["VisibilityTimeout"] == "30"
    assert not (tmp_path / "runner-apply" / "trailsetup.json").exists()

    # a new plan, reviewed, then applied exactly
    plan2 = tmp_path / "plan2.json"
    rc, _, err = run_cli(["init", "--dry-run", "--yes", "--plan-out", str(plan2), *common], env=review_env)
    assert rc == 0, err
    rc, out, err = run_cli(["init", "--yes", "--plan", str(plan2), "--output", "json", *common], env=apply_env)
    assert rc == 0, err
    assert json.loads(out)["applied"] is True
    assert "equals the one saved" in err
    assert [t["Name"] for t in boto("cloudtrail").describe_trails()["trailList"]] == ["trailsetup"]
    assert sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["VisibilityTimeout"])["Attributes"]["VisibilityTimeout"] == "300"

    # the scheduled drift check: nothing pending is exit 0; a change made by hand is exit 4
    rc, _, err = run_cli(["init", "--dry-run", "--yes", "--detailed-exitcode", *common], env=apply_env)
    assert rc == 0, err
    boto("logs").put_retention_policy(logGroupName="/aws/cloudtrail/trailsetup", retentionInDays=7)
    rc, _, err = run_cli(["init", "--dry-run", "--yes", "--detailed-exitcode", *common], env=apply_env)
    assert rc == 4, err


def test_saved_plan_flags_are_checked(moto_reset, run_cli, aws_env, tmp_path):
    rc, _, err = run_cli(["init", "--yes", "--plan-out", str(tmp_path / "p.json"), "--regions", HOME], env=aws_env)
    assert rc == 2 and "--plan-out saves the plan of a dry run" in err, err
    rc, _, err = run_cli(["init", "--yes", "--detailed-exitcode", "--regions", HOME], env=aws_env)
    assert rc == 2 and "--detailed-exitcode goes with --dry-run" in err, err
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    rc, _, err = run_cli(["init", "--yes", "--plan", str(bad), "--regions", HOME], env=aws_env)
    assert rc == 2 and "not a plan saved by" in err, err
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": "trailsetup-saved-plan/1", "stack": "trailsetup", "account": "999999999999", "plan": {"changes": []}}))
    rc, _, err = run_cli(["init", "--yes", "--plan", str(other), "--regions", HOME, "--opensearch-url", "http://127.0.0.1:9"], env=aws_env)
    assert rc == 2 and "of account 999999999999" in err and "nothing was changed" in err, err
