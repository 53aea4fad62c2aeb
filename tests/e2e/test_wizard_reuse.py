"""The wizard in a real pseudo-terminal (pexpect): with a trail already recording the account, the first question
after the stack name is whether to reuse it, and its default reuses it."""

from __future__ import annotations

import json

import pexpect


def plan_doc(out: str) -> dict:
    """The JSON document in the terminal's output (stdout and stderr share the pseudo-terminal)."""
    start = out.index('{"plan"') if '{"plan"' in out else out.index("{\r\n")
    return json.JSONDecoder().raw_decode(out[start:].replace("\r\n", "\n"))[0]


def spawn(trailsetup_bin, args, env, cwd):
    env = dict(env, TERM="xterm", COLUMNS="200", LINES="50")
    return pexpect.spawn(str(trailsetup_bin), args, env=env, cwd=str(cwd), encoding="utf-8", timeout=120, dimensions=(50, 200))


def test_wizard_asks_to_reuse_right_after_the_name_and_defaults_to_it(trailsetup_bin, moto_reset, boto, aws_env, tmp_path, opensearch_url):
    s3, sns, ct = boto("s3"), boto("sns"), boto("cloudtrail")
    s3.create_bucket(Bucket="corp-trail-logs")
    sns.create_topic(Name="corp-trail-topic")
    ct.create_trail(Name="corp", S3BucketName="corp-trail-logs", SnsTopicName="corp-trail-topic", IsMultiRegionTrail=True)

    child = spawn(trailsetup_bin, ["init", "--dry-run", "--output", "json", "--opensearch-url", opensearch_url, "--opensearch-auth", "none"],
                  aws_env, tmp_path)
    child.expect("Stack name")
    child.sendline("")
    # the very next question: reuse, with the existing trail described and preselected
    i = child.expect(["already has trails", "Regions to record", pexpect.EOF])
    assert i == 0, f"expected the reuse question right after the name, got: {child.before[-2000:]}"
    child.expect("reuse multi-region trail corp")
    child.expect("create a new trail and bucket")
    child.send("\r")  # Enter takes the default
    child.expect(pexpect.EOF)
    child.close()
    out = child.before
    assert child.exitstatus == 0, out[-3000:]
    doc = plan_doc(out)
    assert doc["reused_trail"].startswith("corp (")
    assert not [c for c in doc["plan"]["changes"] if c["kind"] == "cloudtrail-trail" and c["action"] != "no-op"]
    # none of the own-trail questions was asked
    assert "Trail mode" not in out and "S3 bucket for the logs" not in out and "Regions to record" not in out


def test_wizard_can_decline_reuse(trailsetup_bin, moto_reset, boto, aws_env, tmp_path, opensearch_url):
    s3, ct = boto("s3"), boto("cloudtrail")
    s3.create_bucket(Bucket="corp-trail-logs")
    ct.create_trail(Name="corp", S3BucketName="corp-trail-logs", IsMultiRegionTrail=True)
    child = spawn(trailsetup_bin, ["init", "--dry-run", "--output", "json", "--opensearch-url", opensearch_url, "--opensearch-auth", "none",
                                   "--regions", "us-east-1", "--trail-mode", "multi-region", "--bucket", "mine-123", "--kms-key", "",
                                   "--log-retention-days", "90"], aws_env, tmp_path)
    child.expect("Stack name")
    child.sendline("")
    child.expect("already has trails")
    child.send("\x1b[B")  # arrow down: "create a new trail and bucket"
    child.send("\r")
    child.expect(pexpect.EOF)
    child.close()
    out = child.before
    assert child.exitstatus == 0, out[-3000:]
    doc = plan_doc(out)
    assert "reused_trail" not in doc
    assert [c["action"] for c in doc["plan"]["changes"] if c["kind"] == "cloudtrail-trail"] == ["create"]
