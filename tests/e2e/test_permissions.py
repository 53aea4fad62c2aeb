"""`trailsetup permissions --for COMMAND`: the generated policy covers every call the command makes, and each of
its actions is needed.

Two private moto servers of this module's own (started here, stopped by PID):

1. init, status, destroy — at the action level, without moto's IAM enforcement. moto 5.2.5 started with
   INITIAL_NO_AUTH_ACTION_COUNT (its only switch for enforcing IAM) rejects every Lambda request as
   SignatureDoesNotMatch once it enforces, whether the Rust SDK signed the request or botocore re-signed it in a
   proxy; these three commands read the forwarder function, so none of them can run under that enforcement. So
   they run against a plain moto through a recording proxy (awsproxy.start_proxy); every recorded call is mapped
   to the IAM action it needs (iam_actions.actions_of_call: X-Amz-Target for JSON protocols, `Action=` for query
   protocols, method and path for S3, Lambda and OpenSearch Service, each mapping naming its page of the Service
   Authorization Reference), and for each command:
   - sufficient: every recorded action is in the generated policy;
   - necessary: every action of the generated policy is recorded, or listed in NOT_EXERCISED with the reason the
     run cannot take that path (an update of something that exists, a refusal fallback, another --with choice).

2. backfill, ingest — under moto's real enforcement (moto_iam_recorder.py, which also logs every check moto
   makes). The stack is made by `init` as the un-authenticated root before enforcement starts; five fixture log
   files are put in the stack's bucket; then every request is signed by an IAM user and checked against that
   user's policies. What moto checks: the action everywhere; the resource only for S3 (always), SQS and IAM (an
   existing resource), `*` otherwise, which a statement naming an ARN never matches; so users hold the policy with
   its S3 statements exact and `*` added to the others' resources (`moto_view`). Conditions of identity policies
   are not evaluated. Shown:
   (a) a user holding exactly `permissions --for backfill` (resp. `ingest`) runs `backfill` from the stack's
       bucket (resp. `ingest --drain`), and the documents are counted in OpenSearch;
   (b) a user holding only the ingest-worker policy `init` created (read back from moto) runs both;
   (c) for each action of those policies that moto checked in (a), a user holding the policy without it fails
       (rc != 0) with a message naming that action.

The stack's bucket policy denies every request that does not use TLS (aws:SecureTransport false); moto serves
plain HTTP and applies that statement, so for part 2 the bucket keeps its policy without that one statement (the
statement itself is checked by the policy-template tests, not here).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import boto3
import pytest
import requests

from awsproxy import start_proxy
from conftest import _os_delete_prefixed, free_port, run_cli_with
from iam_actions import BATCH, actions_of_call

ACCOUNT = "123456789012"
REGION = "us-east-1"
STACK = "trailsetup"
BUCKET = f"{STACK}-{ACCOUNT}-{REGION}"
PREFIX = "ts-permissions"
MOTO_SERVER = Path(os.environ.get("TS_MOTO_SERVER", "/work/main/.cache/venv/bin/moto_server"))
PYTHON = MOTO_SERVER.parent / "python"
REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO.parent / "shared" / "fixtures" / "cloudtrail"
if not FIXTURES.is_dir():
    FIXTURES = Path(os.environ.get("TS_FIXTURES", "/work/shared/fixtures/cloudtrail"))
# five small log files of one source, each put in the bucket under this account's key
LOG_FILES = sorted((FIXTURES / "cloud-custodian-cwe").rglob("*.json.gz"))[:5]

# Actions of a generated policy that the recorded run does not exercise, and why.
NOT_EXERCISED = {
    "init": {
        # a fresh stack: everything is created, nothing is updated
        "cloudtrail:UpdateTrail": "the trail is new: created, never updated",
        "iam:CreatePolicyVersion": "the policies are new (a changed policy gets a new version)",
        "iam:DeletePolicyVersion": "the policies are new (the oldest version goes when five exist)",
        "iam:ListPolicyVersions": "the policies are new",
        "iam:UntagPolicy": "the policies are new (a tag that changed)",
        "lambda:UpdateFunctionCode": "the function is new",
        "lambda:UpdateFunctionConfiguration": "the function is new",
        "lambda:RemovePermission": "the function is new: no stale permission to remove",
        "lambda:TagResource": "the function is created with its tags (a tag that changed)",
        "logs:TagResource": "the log group is created with its tags (a tag that changed)",
        "sns:TagResource": "the topic is created with its tags (a tag that changed)",
        "sqs:TagQueue": "the queues are created with their tags (a tag that changed)",
        # not an API call
        "iam:PassRole": "authorises CreateTrail/CreateFunction passing a role; no call of its own",
        # a fallback
        "sns:ListSubscriptions": "only when sns:ListSubscriptionsByTopic is refused (AuthorizationError)",
    },
    "status": {
        "sns:ListSubscriptions": "only when sns:ListSubscriptionsByTopic is refused (AuthorizationError)",
    },
    "destroy": {
        "sns:ListSubscriptions": "only when sns:ListSubscriptionsByTopic is refused (AuthorizationError)",
        # the bucket is deleted (--delete-bucket, which exercises emptying it) and its policy with it; a kept
        # bucket loses the stack's statements instead (PutBucketPolicy, or DeleteBucketPolicy when nothing remains)
        "ec2:DescribeRegions": "only with neither a state file nor the stack's record in the account (the "
                               "lost-state search in every enabled region); here the record is read",
        "s3:PutBucketPolicy": "the bucket is deleted with --delete-bucket, its policy with it",
        "s3:DeleteBucketPolicy": "the bucket is deleted with --delete-bucket, its policy with it",
    },
    # part 2: actions of the policy that moto did not check in the exact-policy run
    "backfill": {
        "sts:GetCallerIdentity": "moto allows it unchecked (ALWAYS_ALLOWED)",
    },
    "ingest": {
        "sts:GetCallerIdentity": "moto allows it unchecked (ALWAYS_ALLOWED)",
        "sqs:ChangeMessageVisibility": "extends a message's visibility after a third of its timeout with files still "
                                       "in flight, or returns a message that is no notification at once; five small "
                                       "files are done first, and every message here is a notification",
        "sqs:SendMessage": "moves a message naming a bucket the stack does not read to the dead-letter queue",
    },
}


def _start_moto(argv, env, log):
    port = free_port()
    proc = subprocess.Popen(argv + ["-H", "127.0.0.1", "-p", str(port)], env=env, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            requests.get(f"{url}/moto-api/", timeout=1)
            return proc, url
        except requests.RequestException:
            time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGTERM)
    raise RuntimeError(f"moto did not start: {Path(log).read_text()[-2000:]}")


def _stop(proc):
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def client(url, service, keys=("testing", "testing"), region=REGION):
    return boto3.client(service, endpoint_url=url, region_name=region, aws_access_key_id=keys[0], aws_secret_access_key=keys[1])


def env_for(url, keys, home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and not k.startswith("TRAILSETUP_")}
    home.mkdir(parents=True, exist_ok=True)
    env.update(AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID=keys[0], AWS_SECRET_ACCESS_KEY=keys[1], AWS_REGION=REGION,
               AWS_DEFAULT_REGION=REGION, AWS_CONFIG_FILE=str(home / "none"), AWS_SHARED_CREDENTIALS_FILE=str(home / "none"),
               AWS_EC2_METADATA_DISABLED="true", HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_STATE_HOME=str(home / ".local/state"), XDG_CACHE_HOME=str(home / ".cache"), NO_COLOR="1",
               TRAILSETUP_INDEX_GRANULARITY="day")
    return env


def run(trailsetup_bin, url, keys, home: Path, args, timeout=180):
    return run_cli_with(trailsetup_bin, args, env=env_for(url, keys, home), timeout=timeout, cwd=home)


def generated(trailsetup_bin, cmd: str) -> dict:
    rc, out, err = run_cli_with(trailsetup_bin, ["permissions", "--for", cmd, "--account", ACCOUNT, "--region", REGION],
                                env={"PATH": os.environ.get("PATH", ""), "HOME": "/nonexistent"})
    assert rc == 0, err
    return json.loads(out)


def actions_of(policy: dict) -> set[str]:
    out = set()
    for st in policy["Statement"]:
        a = st["Action"]
        out |= set([a] if isinstance(a, str) else a)
    return out


def init_args(opensearch_url, prefix):
    return ["init", "--yes", "--no-backfill", "--regions", REGION, "--opensearch-url", opensearch_url,
            "--opensearch-auth", "none", "--index-prefix", prefix]


def log_key(path: Path) -> str:
    """The fixture file's key, moved to this account: AWSLogs/<account>/CloudTrail/<region>/<y>/<m>/<d>/<file>."""
    parts = path.parts[path.parts.index("AWSLogs"):]
    src_account = parts[1]
    return "/".join(p.replace(src_account, ACCOUNT) for p in parts)


def put_log_files(url, keep_tls_deny: bool):
    """The fixture files into the stack's bucket as the root, past the bucket policy (moto refuses a plain-HTTP
    PutObject under its TLS-only statement): the policy is lifted, the files put, the policy put back (without
    the TLS-only statement unless `keep_tls_deny`)."""
    s3 = client(url, "s3")
    policy = json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"])
    s3.delete_bucket_policy(Bucket=BUCKET)
    for f in LOG_FILES:
        s3.put_object(Bucket=BUCKET, Key=log_key(f), Body=f.read_bytes())
    if not keep_tls_deny:
        policy["Statement"] = [s for s in policy["Statement"] if "aws:SecureTransport" not in json.dumps(s.get("Condition", {}))]
    s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(policy))


# --- 1. init, status, destroy: recorded calls against the generated policies ---------------------------------


@pytest.fixture(scope="module")
def plain_moto(tmp_path_factory):
    d = tmp_path_factory.mktemp("plain-moto")
    proc, url = _start_moto([str(MOTO_SERVER)], dict(os.environ), d / "moto.log")
    yield url
    _stop(proc)


def _recorded(calls) -> set[str]:
    return set().union(*(actions_of_call(c) for c in calls))


def _check(trailsetup_bin, cmd, calls):
    used = _recorded(calls)
    policy = actions_of(generated(trailsetup_bin, cmd))
    assert used <= policy, f"{cmd} called actions its policy lacks: {sorted(used - policy)}"
    unexercised = policy - used
    allowed = set(NOT_EXERCISED.get(cmd, {}))
    assert unexercised <= allowed, f"{cmd}: policy actions neither called nor excused: {sorted(unexercised - allowed)}"
    # the allow-list holds no stale entry: each is in the policy and was really not called
    assert allowed <= policy, sorted(allowed - policy)
    return used


def test_init_status_destroy_call_only_and_all_of_their_policies(trailsetup_bin, plain_moto, tmp_path, opensearch_url):
    srv, purl, calls = start_proxy(plain_moto)
    prefix = f"{PREFIX}-rec"
    try:
        rc, out, err = run(trailsetup_bin, purl, ("testing", "testing"), tmp_path / "a", init_args(opensearch_url, prefix))
        assert rc == 0, err[-3000:]
        _check(trailsetup_bin, "init", calls)
        # what destroy must clean up beyond what init made: log files in the bucket (--delete-bucket empties it),
        # the ingest-worker policy attached to a user and a group, an older version of it
        put_log_files(plain_moto, keep_tls_deny=False)  # moto would refuse destroy emptying the bucket over HTTP
        iam = client(plain_moto, "iam")
        arn = f"arn:aws:iam::{ACCOUNT}:policy/{STACK}-ingest-worker"
        iam.create_user(UserName="worker")
        iam.attach_user_policy(UserName="worker", PolicyArn=arn)
        iam.create_group(GroupName="workers")
        iam.attach_group_policy(GroupName="workers", PolicyArn=arn)
        doc = iam.get_policy_version(PolicyArn=arn, VersionId=iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"])["PolicyVersion"]["Document"]
        iam.create_policy_version(PolicyArn=arn, PolicyDocument=doc if isinstance(doc, str) else json.dumps(doc), SetAsDefault=False)
        # status and destroy each from a home of its own (a CI runner): the stack is read from the account
        n = len(calls)
        rc, out, err = run(trailsetup_bin, purl, ("testing", "testing"), tmp_path / "b", ["status"])
        assert rc in (0, 1), err[-3000:]  # 1: a check fails (no event delivered in moto), never a refusal
        _check(trailsetup_bin, "status", calls[n:])
        n = len(calls)
        rc, out, err = run(trailsetup_bin, purl, ("testing", "testing"), tmp_path / "c", ["destroy", "--yes", "--delete-bucket"])
        assert rc == 0, err[-3000:]
        _check(trailsetup_bin, "destroy", calls[n:])
        assert BUCKET not in [b["Name"] for b in client(plain_moto, "s3").list_buckets()["Buckets"]]
        assert not client(plain_moto, "cloudtrail").describe_trails()["trailList"]
    finally:
        srv.shutdown()
        _os_delete_prefixed(opensearch_url, prefix)


# --- 2. backfill, ingest under moto's IAM enforcement --------------------------------------------------------


@pytest.fixture(scope="module")
def iam_moto(tmp_path_factory, trailsetup_bin, opensearch_url):
    """(url, checks log, admin keys): a private moto enforcing IAM, holding the stack and five log files."""
    d = tmp_path_factory.mktemp("iam-moto")
    log = d / "checks.jsonl"
    log.touch()
    env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="1000000000", TS_MOTO_ACTIONS_LOG=str(log))
    proc, url = _start_moto([str(PYTHON), str(Path(__file__).with_name("moto_iam_recorder.py"))], env, d / "moto.log")
    try:
        rc, out, err = run(trailsetup_bin, url, ("testing", "testing"), d / "root", init_args(opensearch_url, f"{PREFIX}-root"))
        assert rc == 0, err[-3000:]
        put_log_files(url, keep_tls_deny=False)
        iam = client(url, "iam")
        iam.create_user(UserName="admin")
        iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        k = iam.create_access_key(UserName="admin")["AccessKey"]
        requests.post(f"{url}/moto-api/reset-auth", data=b"0", timeout=10).raise_for_status()
        yield url, log, (k["AccessKeyId"], k["SecretAccessKey"])
    finally:
        _stop(proc)
        _os_delete_prefixed(opensearch_url, PREFIX)


_users = iter(range(1000))


def user_with(iam_moto, policy: dict):
    url, _, admin = iam_moto
    iam = client(url, "iam", admin)
    name = f"u{next(_users)}"
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
    k = iam.create_access_key(UserName=name)["AccessKey"]
    return k["AccessKeyId"], k["SecretAccessKey"]


def moto_view(policy: dict) -> dict:
    """The policy as moto can evaluate it: S3 statements exact, `*` added to the others' resources (moto checks
    those requests against `*`; see the module docstring), and moto's name for each SQS batch operation beside the
    single-message action AWS authorises it with (iam_actions.BATCH)."""
    alias = {single: batch for batch, single in BATCH.items()}
    sts = []
    for st in policy["Statement"]:
        res = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        if not all(r.startswith("arn:aws:s3:::") for r in res) and "*" not in res:
            res = res + ["*"]
        acts = [st["Action"]] if isinstance(st["Action"], str) else list(st["Action"])
        acts += [alias[a] for a in acts if a in alias]
        sts.append(dict(st, Action=acts, Resource=res))
    return dict(policy, Statement=sts)


def without(policy: dict, action: str) -> dict:
    sts = []
    for st in policy["Statement"]:
        acts = [st["Action"]] if isinstance(st["Action"], str) else st["Action"]
        acts = [a for a in acts if a != action]
        if acts:
            sts.append(dict(st, Action=acts))
    return dict(policy, Statement=sts)


def checks(log: Path, keys) -> list[dict]:
    return [r for r in map(json.loads, log.read_text().splitlines()) if r["key"] == keys[0]]


def count(opensearch_url, prefix) -> int:
    requests.post(f"{opensearch_url}/{prefix}*/_refresh", timeout=60)
    r = requests.get(f"{opensearch_url}/{prefix}*/_count", timeout=60)
    return r.json().get("count", 0) if r.status_code == 200 else 0


def notify(iam_moto):
    """One notification per log file on the stack's queue, as its topic delivers them."""
    url, _, admin = iam_moto
    sqs = client(url, "sqs", admin)
    q = sqs.get_queue_url(QueueName=f"{STACK}-notifications")["QueueUrl"]
    # what an earlier run left (PurgeQueue is allowed once a minute)
    while True:
        got = sqs.receive_message(QueueUrl=q, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not got:
            break
        sqs.delete_message_batch(QueueUrl=q, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])
    for f in LOG_FILES:
        event = {"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                              "s3": {"bucket": {"name": BUCKET}, "object": {"key": log_key(f), "size": f.stat().st_size}}}]}
        sqs.send_message(QueueUrl=q, MessageBody=json.dumps(
            {"Type": "Notification", "MessageId": f.name, "TopicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:{STACK}-cloudtrail",
             "Message": json.dumps(event), "Timestamp": "2024-01-01T00:00:00.000Z"}))


def backfill(trailsetup_bin, iam_moto, keys, home, opensearch_url, prefix):
    return run(trailsetup_bin, iam_moto[0], keys, home,
               ["backfill", "--output", "json", "--opensearch-url", opensearch_url, "--index-prefix", prefix])


def ingest(trailsetup_bin, iam_moto, keys, home, opensearch_url, prefix):
    notify(iam_moto)
    return run(trailsetup_bin, iam_moto[0], keys, home,
               ["ingest", "--drain", "--output", "json", "--opensearch-url", opensearch_url, "--index-prefix", prefix])


COMMANDS = {"backfill": backfill, "ingest": ingest}
# checked by moto but allowed whatever the policy says, as on AWS: "No permissions are required to perform this
# operation" (STS API reference, GetCallerIdentity, https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html)
ALWAYS_ALLOWED = {"sts:GetCallerIdentity"}
# the actions moto checked in each exact-policy run, for (c)
ENFORCED: dict[str, set[str]] = {}


@pytest.mark.parametrize("cmd", ["backfill", "ingest"])
def test_a_exactly_the_generated_policy_is_enough(trailsetup_bin, iam_moto, tmp_path, opensearch_url, cmd):
    policy = generated(trailsetup_bin, cmd)
    keys = user_with(iam_moto, moto_view(policy))
    prefix = f"{PREFIX}-{cmd}"
    rc, out, err = COMMANDS[cmd](trailsetup_bin, iam_moto, keys, tmp_path, opensearch_url, prefix)
    assert rc == 0, f"{out[-2000:]}\n{err[-3000:]}"
    assert count(opensearch_url, prefix) > 0, out
    seen = checks(iam_moto[1], keys)
    assert seen and all(r["allowed"] for r in seen), seen
    ENFORCED[cmd] = {BATCH.get(r["action"], r["action"]) for r in seen}
    assert ENFORCED[cmd] <= actions_of(policy), sorted(ENFORCED[cmd] - actions_of(policy))


def test_b_the_ingest_worker_policy_runs_backfill_and_ingest(trailsetup_bin, iam_moto, tmp_path, opensearch_url):
    url, log, admin = iam_moto
    arn = f"arn:aws:iam::{ACCOUNT}:policy/{STACK}-ingest-worker"
    iam = client(url, "iam", admin)
    doc = iam.get_policy_version(PolicyArn=arn, VersionId=iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"])["PolicyVersion"]["Document"]
    doc = json.loads(doc) if isinstance(doc, str) else doc
    keys = user_with(iam_moto, moto_view(doc))
    for cmd in ("backfill", "ingest"):
        prefix = f"{PREFIX}-worker-{cmd}"
        rc, out, err = COMMANDS[cmd](trailsetup_bin, iam_moto, keys, tmp_path / cmd, opensearch_url, prefix)
        assert rc == 0, f"{cmd}:\n{out[-2000:]}\n{err[-3000:]}"
        assert count(opensearch_url, prefix) > 0, out
    assert all(r["allowed"] for r in checks(log, keys))


@pytest.mark.parametrize("cmd", ["backfill", "ingest"])
def test_c_each_enforced_action_is_needed(trailsetup_bin, iam_moto, tmp_path, opensearch_url, cmd):
    if cmd not in ENFORCED:
        pytest.fail(f"test_a_exactly_the_generated_policy_is_enough[{cmd}] did not run first")
    policy = generated(trailsetup_bin, cmd)
    assert ENFORCED[cmd] - ALWAYS_ALLOWED, "moto checked nothing"
    print(cmd, "each needed:", sorted(ENFORCED[cmd] - ALWAYS_ALLOWED))
    unchecked = actions_of(policy) - ENFORCED[cmd]
    assert unchecked <= set(NOT_EXERCISED[cmd]), f"{cmd}: not checked and not excused: {sorted(unchecked - set(NOT_EXERCISED[cmd]))}"
    failures = []
    for i, action in enumerate(sorted(ENFORCED[cmd] - ALWAYS_ALLOWED)):
        keys = user_with(iam_moto, moto_view(without(policy, action)))
        rc, out, err = COMMANDS[cmd](trailsetup_bin, iam_moto, keys, tmp_path / str(i), opensearch_url, f"{PREFIX}-minus")
        if rc == 0 or action not in err:
            failures.append(f"{action} removed: rc={rc}\n{err[-1500:]}")
    assert not failures, "\n\n".join(failures)
