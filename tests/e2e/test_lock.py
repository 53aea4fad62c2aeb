"""The stack's lock in the account (src/lock.rs): the SSM parameter `/trailsetup/<stack>/lock`, created with
PutParameter Overwrite=false (Systems Manager API Reference, "PutParameter": ParameterAlreadyExists when it exists),
taken by `init` (apply) and `destroy` before they observe the account, released on every way out.

Checked with boto3 against moto (and the calls a recording proxy saw), never with trailsetup's own read path.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from datetime import datetime, timedelta, timezone

import pytest
from awsproxy import delay, deny
from test_init import ACCOUNT, HOME, init_args, statements

LOCK = "/trailsetup/trailsetup/lock"
FN = "trailsetup-forwarder"
OTHER = "arn:aws:iam::123456789012:role/ci-other-runner"


def lock_value(boto):
    """The lock parameter's value as JSON, or None when there is none."""
    try:
        return json.loads(boto("ssm").get_parameter(Name=LOCK)["Parameter"]["Value"])
    except boto("ssm").exceptions.ParameterNotFound:
        return None


def put_lock(boto, since: str, holder: str = OTHER) -> dict:
    v = {"holder": holder, "host": "runner-9", "pid": 777, "since": since, "command": "trailsetup init"}
    boto("ssm").put_parameter(Name=LOCK, Value=json.dumps(v), Type="String", Overwrite=False)
    return v


def ssm_calls(calls, op: str) -> list:
    return [c for c in calls if c["target"] == f"AmazonSSM.{op}"]


def test_two_concurrent_inits_create_everything_exactly_once(proxy, boto, aws_env, trailsetup_bin, opensearch_url, os_clean, tmp_path):
    # every CreateTrail waits 4 s in the proxy: whichever run holds the lock is still applying when the other asks
    url, calls = proxy(answer=delay("CreateTrail", 4))
    procs = []
    try:
        for runner in ("a", "b"):
            # two CI runners: their own state directories, one account
            env = dict(aws_env, AWS_ENDPOINT_URL=url, TRAILSETUP_STATE_DIR=str(tmp_path / f"runner-{runner}"))
            args = [str(trailsetup_bin), *init_args("multi-region", os_clean, opensearch_url), "--output", "json"]
            # output to files: a full pipe must not stall a run that holds the lock
            out, err = open(tmp_path / f"{runner}.out", "wb"), open(tmp_path / f"{runner}.err", "wb")
            procs.append(subprocess.Popen(args, env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=out, stderr=err))
            out.close()
            err.close()
        codes = [p.wait(timeout=300) for p in procs]
        results = [(rc, (tmp_path / f"{r}.out").read_text(), (tmp_path / f"{r}.err").read_text()) for rc, r in zip(codes, "ab")]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for rc, out, err in results:
        assert rc == 0, err
    docs = [json.loads(out) for _, out, _ in results]
    # one run made the stack; the other waited for it, then found nothing to do
    creates = sorted(d["plan"]["summary"]["create"] for d in docs)
    assert creates[0] == 0 and creates[1] > 10, creates
    assert sorted(d["applied"] for d in docs) == [False, True]
    waited = [err for _, _, err in results if "waiting for the lock on stack trailsetup held by arn:aws:" in err]
    assert len(waited) == 1, [err for _, _, err in results]
    assert "since 20" in waited[0] and "pid " in waited[0]
    late = docs[[d["applied"] for d in docs].index(False)]["plan"]["summary"]
    assert (late["create"], late["update"], late["delete"]) == (0, 0, 0)

    # exactly one of each, read with boto3
    assert [t["Name"] for t in boto("cloudtrail").describe_trails()["trailList"]] == ["trailsetup"]
    queues = boto("sqs").list_queues().get("QueueUrls", [])
    assert sorted(q.rsplit("/", 1)[1] for q in queues) == sorted(
        ["trailsetup-notifications", "trailsetup-notifications-dlq", "trailsetup-forwarder-dlq"])
    topic = f"arn:aws:sns:{HOME}:{ACCOUNT}:trailsetup-cloudtrail"
    subs = boto("sns").list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in subs] == [("sqs", f"arn:aws:sqs:{HOME}:{ACCOUNT}:trailsetup-notifications")]
    pol = json.loads(boto("lambda").get_policy(FunctionName=FN)["Policy"])
    sids = [s.get("Sid") for s in pol["Statement"]]
    assert len(sids) == len(set(sids)) == 1, sids
    assert "trailsetup-cloudwatch-logs" in statements(pol)
    iam = boto("iam")
    for name in (FN, "trailsetup-ingest-worker"):
        versions = iam.list_policy_versions(PolicyArn=f"arn:aws:iam::{ACCOUNT}:policy/{name}")["Versions"]
        assert len(versions) == 1, (name, versions)
    # what was sent: one CreateTrail, one AddPermission, no second policy version; two locks taken, two released
    assert len([c for c in calls if c["target"].endswith("CreateTrail")]) == 1
    assert len([c for c in calls if c["method"] == "POST" and c["path"].endswith(f"/functions/{FN}/policy")]) == 1
    assert not [c for c in calls if b"Action=CreatePolicyVersion" in c["body"]]
    assert len([c for c in ssm_calls(calls, "PutParameter") if c.get("status") == 200]) == 2
    assert len([c for c in ssm_calls(calls, "DeleteParameter") if c.get("status") == 200]) == 2
    assert lock_value(boto) is None


def test_a_held_lock_makes_init_wait_then_fail_naming_it(moto_reset, run_cli, boto, aws_env, opensearch_url, os_clean):
    held = put_lock(boto, "2026-12-01T08:00:00Z")
    t0 = time.monotonic()
    rc, out, err = run_cli(init_args("multi-region", os_clean, opensearch_url, "--lock-timeout", "2"))
    took = time.monotonic() - t0
    assert rc == 1, err
    assert f"waiting for the lock on stack trailsetup held by {OTHER} (host runner-9, pid 777, `trailsetup init`) since 2026-12-01T08:00:00Z" in err, err
    assert f"stack trailsetup is locked by {OTHER}" in err and "since 2026-12-01T08:00:00Z" in err, err
    assert "gave up after 2 s" in err and "`trailsetup init --force-unlock`" in err, err
    assert took < 60
    # nothing was changed; the lock is the other run's still
    assert boto("cloudtrail").describe_trails()["trailList"] == []
    assert boto("s3").list_buckets()["Buckets"] == []
    assert lock_value(boto) == held

    # 0: at once, without waiting; also from the environment and the config file
    rc, _, err = run_cli(init_args("multi-region", os_clean, opensearch_url, "--lock-timeout", "0"))
    assert rc == 1 and "waiting for the lock" not in err and "gave up after 0 s" in err, err
    rc, _, err = run_cli(init_args("multi-region", os_clean, opensearch_url), env=dict(aws_env, TRAILSETUP_LOCK_TIMEOUT="0"))
    assert rc == 1 and "gave up after 0 s" in err, err
    assert lock_value(boto) == held


def test_force_unlock_removes_a_stale_lock_then_status_and_destroy_see_it(moto_reset, run_cli, boto, aws_env, opensearch_url, os_clean, tmp_path):
    put_lock(boto, "2026-12-01T08:00:00Z")
    rc, out, err = run_cli([*init_args("multi-region", os_clean, opensearch_url, "--force-unlock", "--lock-timeout", "0"), "--output", "json"])
    assert rc == 0, err
    assert f"--force-unlock: removed the lock of stack trailsetup held by {OTHER} (host runner-9, pid 777, `trailsetup init`) since 2026-12-01T08:00:00Z" in err, err
    assert json.loads(out)["applied"] is True
    assert [t["Name"] for t in boto("cloudtrail").describe_trails()["trailList"]] == ["trailsetup"]
    assert lock_value(boto) is None  # ours, released

    # status: a lock held for two hours is a warning with its fix; one taken a minute ago is fine
    put_lock(boto, (datetime.now(timezone.utc) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    rc, out, err = run_cli(["status", "--output", "json"])
    (check,) = [c for c in json.loads(out)["status"]["checks"] if c["name"] == "lock"]
    assert check["level"] == "warn" and OTHER in check["detail"] and "--force-unlock" in check["fix"], check
    assert check["resource"] == LOCK and check["region"] == HOME
    boto("ssm").delete_parameter(Name=LOCK)
    put_lock(boto, (datetime.now(timezone.utc) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    rc, out, err = run_cli(["status", "--output", "json"])
    (check,) = [c for c in json.loads(out)["status"]["checks"] if c["name"] == "lock"]
    assert check["level"] == "ok", check

    # destroy: a held lock stops it (nothing deleted); --force-unlock removes it, and destroy leaves no lock behind
    rc, _, err = run_cli(["destroy", "--yes", "--lock-timeout", "0"])
    assert rc == 1 and f"stack trailsetup is locked by {OTHER}" in err and "`trailsetup destroy --force-unlock`" in err, err
    assert [t["Name"] for t in boto("cloudtrail").describe_trails()["trailList"]] == ["trailsetup"]
    rc, _, err = run_cli(["destroy", "--yes", "--force-unlock"])
    assert rc == 0, err
    assert "--force-unlock: removed the lock of stack trailsetup" in err
    assert boto("cloudtrail").describe_trails()["trailList"] == []
    assert lock_value(boto) is None


def test_a_failed_apply_releases_the_lock(proxy, run_cli, boto, aws_env, opensearch_url, os_clean):
    url, calls = proxy(answer=deny("CreateTrail", "cloudtrail:CreateTrail"))
    rc, out, err = run_cli(init_args("multi-region", os_clean, opensearch_url), env=dict(aws_env, AWS_ENDPOINT_URL=url))
    assert rc == 1 and "AccessDeniedException" in err and "cloudtrail:CreateTrail" in err, err
    # the lock was taken before the plan, and released after the failure
    put = ssm_calls(calls, "PutParameter")
    assert len(put) == 1 and put[0]["status"] == 200
    assert json.loads(json.loads(put[0]["body"])["Value"])["command"] == "trailsetup init"
    assert json.loads(put[0]["body"])["Overwrite"] is False
    first_put = calls.index(put[0])
    assert not [c for c in calls[:first_put] if c["target"].startswith("CloudTrail_") and c["target"].endswith(("CreateTrail", "StartLogging"))]
    assert [c["status"] for c in ssm_calls(calls, "DeleteParameter")] == [200]
    assert lock_value(boto) is None
    # and the next run is not held up
    rc, _, err = run_cli(init_args("multi-region", os_clean, opensearch_url, "--lock-timeout", "0"))
    assert rc == 0, err


def test_sigterm_during_apply_releases_the_lock(proxy, boto, aws_env, trailsetup_bin, opensearch_url, os_clean, tmp_path):
    url, calls = proxy(answer=delay("CreateTrail", 20))
    try:
        env = dict(aws_env, AWS_ENDPOINT_URL=url)
        p = subprocess.Popen([str(trailsetup_bin), *init_args("multi-region", os_clean, opensearch_url)], env=env, cwd=tmp_path,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        while time.time() < deadline and not [c for c in calls if c["target"].endswith("CreateTrail")]:
            time.sleep(0.05)
        assert lock_value(boto) is not None, "the lock is held while applying"
        p.send_signal(signal.SIGTERM)
        rc = p.wait(timeout=30)
        err = p.stderr.read().decode()
    finally:
        if p.poll() is None:
            p.kill()
    assert rc == 143, err
    assert "interrupted while applying: run `trailsetup init` again" in err and "released the lock of stack trailsetup" in err, err
    assert lock_value(boto) is None


def test_dry_runs_take_no_lock(proxy, run_cli, boto, aws_env, opensearch_url, os_clean):
    url, calls = proxy()
    env = dict(aws_env, AWS_ENDPOINT_URL=url)
    rc, _, err = run_cli(["--dry-run", *init_args("multi-region", os_clean, opensearch_url)], env=env)
    assert rc == 0, err
    rc, _, err = run_cli(["init", "--dry-run", "--offline", "--yes", "--account", ACCOUNT, "--regions", HOME], env=env)
    assert rc == 0, err
    # a dry run with --force-unlock is a usage error, before any call
    n = len(calls)
    rc, _, err = run_cli(["--dry-run", *init_args("multi-region", os_clean, opensearch_url, "--force-unlock")], env=env)
    assert rc == 2 and "a dry run takes no lock" in err, err
    assert len(calls) == n
    rc, _, err = run_cli(["destroy", "--dry-run", "--force-unlock"], env=env)
    assert rc == 2 and "a dry run takes no lock" in err, err
    assert not [c for c in calls if c["target"].startswith("AmazonSSM.")]
    assert lock_value(boto) is None
