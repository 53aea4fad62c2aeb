"""`trailsetup permissions --for COMMAND`: the generated policy covers every call the command makes, and each of
its actions is needed.

Every command runs under moto's real IAM enforcement, on private moto servers of this module's own (started here,
stopped by PID): moto_iam_recorder.py, i.e. moto_server 5.2.5 started with INITIAL_NO_AUTH_ACTION_COUNT (its only
switch for enforcing IAM), which also logs every check moto makes and every signed request it receives, and
corrects moto's signature check: moto rebuilt the signed payload from what it had parsed instead of the bytes
received, so it answered every bodiless REST request (every Lambda read) and every form the Rust SDK encodes
otherwise than botocore (a space as %20) with SignatureDoesNotMatch. The correction hashes the body as received and
changes nothing else the signature covers (see that file); test_0 shows the check still refuses a request that
differs from what was signed (secret, path, query, body, the form's spelling).

What moto checks: the action everywhere, under the API operation's name, which for SQS's batch operations and S3's
HeadBucket is not the IAM action AWS authorises it with (MOTO_NAMES); the resource only for S3 (always; a
DeleteObjects once, on the bucket), SQS and IAM (an existing resource), `*` otherwise, which a statement naming an
ARN never matches. So users hold the policy as `moto_view` fits it to moto: S3 statements exact, `*` added to the
others' resources, moto's operation names beside the IAM actions, the bucket beside its objects for
s3:DeleteObject. Conditions of identity policies are not evaluated; sts:GetCallerIdentity is allowed whatever the
policy, as on AWS (ALWAYS_ALLOWED).

1. init, status, destroy. An account is made fresh with /moto-api/reset; the root (moto checking nothing, through
   /moto-api/reset-auth) makes the users, and the stack where a run needs one.
   (1a) In one account, a user holding exactly `permissions --for init` runs `init`; one holding exactly the status
        policy runs `status` (exit 0); after the root has put five log files in the bucket, attached the
        ingest-worker policy to a user and a group and given it an older version, one holding exactly the destroy
        policy runs `destroy --yes --delete-bucket`, and the bucket and the trail are gone. Every check moto made
        for them was allowed, on an action of the policy. Every call each run made (moto's request log) is mapped
        to the IAM action it needs (iam_actions.actions_of_call: X-Amz-Target for JSON protocols, `Action=` for
        query protocols, method and path for S3, Lambda and OpenSearch Service, each mapping naming its page of the
        Service Authorization Reference), and: every recorded action is in the policy; every action of the policy
        is recorded, or listed in NOT_EXERCISED with the reason the run cannot take that path; every action moto
        checked is recorded; the recorded actions moto did not check under their own name are exactly
        NOT_CHECKED_BY_MOTO (S3 sub-resources moto checks as the bucket's default action, DeleteObjectVersion in
        a DeleteObjects).
   (1b) For each action moto checked in (1a): a user holding the policy without it runs the command from a fresh
        account (init), or from the stack (status), or from the stack and what destroy cleans up (destroy), and
        fails (rc != 0) with a message naming the action; or, for the runs NOT_NAMED lists, does exactly what it
        says (succeeds with a warning naming the action: what it could not do, or that the stack's lock stays
        held, which it then is).
   So an action is shown needed by a refused run (1b) when moto checks it; by the recorded call and its mapping
   when moto does not (NOT_CHECKED_BY_MOTO); and its path not taken here is explained in NOT_EXERCISED. One action
   differs from AWS: a run without sns:ListSubscriptionsByTopic fails here, because moto refuses it with
   AccessDenied where SNS answers AuthorizationError, on which trailsetup falls back to sns:ListSubscriptions.
   Runtime: the ~140 runs of (1b) are shared among WORKERS motos (two to four by the CPU count;
   TS_PERMISSIONS_WORKERS overrides), one run at a time each; a status or destroy run starts from the stack the
   previous run on its moto left when that run was refused before changing anything (a read refused: the plan
   fails), else the stack is made again.

2. backfill, ingest — one moto: the stack is made by `init` as the un-authenticated root before enforcement starts;
   five fixture log files are put in the stack's bucket; then every request is signed by an IAM user and checked
   against that user's policies. Shown:
   (a) a user holding exactly `permissions --for backfill` (resp. `ingest`) runs `backfill` from the stack's
       bucket (resp. `ingest --drain`), and the documents are counted in OpenSearch;
   (b) a user holding only the ingest-worker policy `init` created (read back from moto) runs both;
   (c) for each action of those policies that moto checked in (a), a user holding the policy without it fails
       (rc != 0) with a message naming that action.

3. the forwarder's policy — same moto as 2: the test plays Lambda, as a user holding exactly the forwarder policy
   `init` created (read back from moto): the function's log calls Lambda makes with its role, then the handler
   (templates/forwarder/forwarder.py) in-process on a record it must dead-letter; all allowed, the message arrives,
   and without each action moto checked, that call is refused naming it.

The stack's bucket policy denies every request that does not use TLS (aws:SecureTransport false); moto serves
plain HTTP and applies that statement, so before files are put in the bucket (for destroy in part 1, for part 2) the
bucket's policy loses that one statement (the statement itself is checked by the policy-template tests, not here).
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import boto3
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

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


def _spawn_moto(argv, env, log):
    port = free_port()
    proc = subprocess.Popen(argv + ["-H", "127.0.0.1", "-p", str(port)], env=env, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    return proc, f"http://127.0.0.1:{port}"


def _wait_moto(proc, url, log):
    for _ in range(300):
        try:
            requests.get(f"{url}/moto-api/", timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGTERM)
    raise RuntimeError(f"moto did not start: {Path(log).read_text()[-2000:]}")


def _start_moto(argv, env, log):
    proc, url = _spawn_moto(argv, env, log)
    _wait_moto(proc, url, log)
    return proc, url


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


# moto checks an operation under its own name, which for these is not the IAM action AWS authorises it with:
# - SQS's batch operations, each authorised as its single-message action (iam_actions.BATCH);
# - S3's HeadBucket: "you must have permissions to perform the s3:ListBucket action" (Amazon S3 API reference,
#   HeadBucket, https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadBucket.html); moto checks `s3:HeadBucket`
#   (moto/s3/responses.py, ACTION_MAP["BUCKET"]["HEAD"]).
# moto names a CloudWatch action by the signing name (`monitoring`), IAM by the service prefix (`cloudwatch`:
# Service Authorization Reference, "Actions, resources, and condition keys for Amazon CloudWatch")
MOTO_NAMES = {**BATCH, "s3:HeadBucket": "s3:ListBucket", "monitoring:GetMetricData": "cloudwatch:GetMetricData"}
# checked by moto but allowed whatever the policy says, as on AWS: "No permissions are required to perform this
# operation" (STS API reference, GetCallerIdentity, https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html)
ALWAYS_ALLOWED = {"sts:GetCallerIdentity"}
# 1a: the actions of each exact-policy run's calls that moto does not check under their own name, and why; their
# need rests on the recorded call alone (each call's action per iam_actions, cited there).
_S3_SUB_UNMAPPED = ("moto's ACTION_MAP (moto/s3/responses.py) has no entry for this sub-resource: it checks the "
                    "bucket's default action instead (GET: s3:ListBucket, PUT: s3:CreateBucket)")
NOT_CHECKED_BY_MOTO = {
    "init": {
        "s3:GetBucketOwnershipControls": _S3_SUB_UNMAPPED,
        "s3:GetBucketPublicAccessBlock": _S3_SUB_UNMAPPED,
        "s3:GetEncryptionConfiguration": _S3_SUB_UNMAPPED,
        "s3:PutBucketOwnershipControls": _S3_SUB_UNMAPPED,
        "s3:PutBucketPublicAccessBlock": _S3_SUB_UNMAPPED,
        "s3:PutEncryptionConfiguration": _S3_SUB_UNMAPPED,
    },
    "status": {
        "s3:GetBucketOwnershipControls": _S3_SUB_UNMAPPED,
        "s3:GetBucketPublicAccessBlock": _S3_SUB_UNMAPPED,
        "s3:GetEncryptionConfiguration": _S3_SUB_UNMAPPED,
    },
    "destroy": {
        "s3:GetBucketOwnershipControls": _S3_SUB_UNMAPPED,
        "s3:GetBucketPublicAccessBlock": _S3_SUB_UNMAPPED,
        "s3:GetEncryptionConfiguration": _S3_SUB_UNMAPPED,
        "s3:DeleteObjectVersion": "moto checks a DeleteObjects once, as s3:DeleteObject, whatever versions it names",
    },
}
# 1b: runs without one action that do not fail naming it, and what each does instead (asserted exactly, so an entry
# goes stale when trailsetup changes):
# - warns: the command succeeds (rc 0) without what the action is for, with a warning naming it;
# - lock: the command succeeds and warns, naming the action, that the stack's lock was not released; the lock is
#   still held after it (the next run finds it taken and says how to --force-unlock). moto answers SSM's (JSON
#   protocol) refusal with an XML body the SDK cannot parse; trailsetup reads the code from it and knows the
#   refusal by its 403.
LOCK = f"/trailsetup/{STACK}/lock"
LOCK_NOT_RELEASED = f"the lock of stack {STACK} was not released"
NOT_NAMED = {
    ("init", "iam:TagPolicy"): ("warns", "the stack's record (tags on the ingest-worker policy) is not written; a "
                                         "machine without the state file cannot find the stack"),
    ("init", "ssm:GetParameter"): ("lock", "releasing the lock reads it first"),
    ("init", "ssm:DeleteParameter"): ("lock", "releasing the lock deletes it"),
    ("status", "ssm:GetParameter"): ("warns", "status reads the lock to report a run in progress"),
    ("status", "cloudwatch:GetMetricData"): ("warns", "the two metric checks (forwarder errors, queue oldest message) "
                                                      "warn naming it; the other checks stand"),
    ("destroy", "ssm:GetParameter"): ("lock", "releasing the lock reads it first"),
    ("destroy", "ssm:DeleteParameter"): ("lock", "releasing the lock deletes it"),
}
# the actions moto checked in each exact-policy run (its names mapped by MOTO_NAMES), for the runs without each
ENFORCED: dict[str, set[str]] = {}
_users = itertools.count()


# --- 1. init, status, destroy under moto's IAM enforcement -----------------------------------------------------


class Moto:
    """A private moto_iam_recorder.py server enforcing IAM: its URL and its two logs (moto's checks, every call).
    Started by `Moto(dir)`, ready after `.wait()`."""

    def __init__(self, d: Path):
        self.checks, self.calls, self.log = d / "checks.jsonl", d / "calls.jsonl", d / "moto.log"
        self.checks.touch()
        self.calls.touch()
        env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="1000000000", TS_MOTO_ACTIONS_LOG=str(self.checks),
                   TS_MOTO_CALLS_LOG=str(self.calls))
        self.proc, self.url = _spawn_moto([str(PYTHON), str(Path(__file__).with_name("moto_iam_recorder.py"))], env,
                                          self.log)

    def wait(self):
        _wait_moto(self.proc, self.url, self.log)
        return self


# one moto per worker for the runs without one action each (1b); at least two, at most four
WORKERS = int(os.environ.get("TS_PERMISSIONS_WORKERS", "0")) or max(2, min(4, os.cpu_count() or 2))


@pytest.fixture(scope="module")
def acct_motos(tmp_path_factory, opensearch_url):
    motos = []
    try:
        for i in range(WORKERS):
            motos.append(Moto(tmp_path_factory.mktemp(f"acct-moto{i}")))
        yield [m.wait() for m in motos]
    finally:
        for m in motos:
            _stop(m.proc)
        _os_delete_prefixed(opensearch_url, f"{PREFIX}-1")


@contextmanager
def as_root(url):
    """Inside, moto checks nothing (INITIAL_NO_AUTH_ACTION_COUNT, set through /moto-api/reset-auth): the root's
    requests, signed with the `testing` key. After, every request is checked again."""
    requests.post(f"{url}/moto-api/reset-auth", data=b"1000000000", timeout=10).raise_for_status()
    try:
        yield
    finally:
        requests.post(f"{url}/moto-api/reset-auth", data=b"0", timeout=10).raise_for_status()


def fresh_account(url):
    """An empty account: every backend of moto reset (users and keys too)."""
    requests.post(f"{url}/moto-api/reset", timeout=30).raise_for_status()


def holder_of(url, policy: dict):
    """The keys of a new IAM user whose only policy is `policy` (made by the root)."""
    name = f"u{next(_users)}"
    with as_root(url):
        iam = client(url, "iam")
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
        k = iam.create_access_key(UserName=name)["AccessKey"]
    return k["AccessKeyId"], k["SecretAccessKey"]


def make_stack(trailsetup_bin, url, home: Path, opensearch_url):
    """The stack, made by `init` as the root."""
    with as_root(url):
        rc, out, err = run(trailsetup_bin, url, ("testing", "testing"), home, part1_args("init", opensearch_url))
    assert rc == 0, err[-3000:]


def for_destroy(url):
    """What destroy must clean up beyond what init made (as the root): log files in the bucket (--delete-bucket
    empties it), the ingest-worker policy attached to a user and a group, an older version of it."""
    with as_root(url):
        put_log_files(url, keep_tls_deny=False)  # moto would refuse destroy emptying the bucket over HTTP
        iam = client(url, "iam")
        arn = f"arn:aws:iam::{ACCOUNT}:policy/{STACK}-ingest-worker"
        iam.create_user(UserName="worker")
        iam.attach_user_policy(UserName="worker", PolicyArn=arn)
        iam.create_group(GroupName="workers")
        iam.attach_group_policy(GroupName="workers", PolicyArn=arn)
        doc = iam.get_policy_version(PolicyArn=arn, VersionId=iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"])["PolicyVersion"]["Document"]
        iam.create_policy_version(PolicyArn=arn, PolicyDocument=doc if isinstance(doc, str) else json.dumps(doc), SetAsDefault=False)


def lock_held(url) -> bool:
    with as_root(url):
        ssm = client(url, "ssm")
        try:
            ssm.get_parameter(Name=LOCK)
            return True
        except ssm.exceptions.ParameterNotFound:
            return False


def part1_args(cmd, opensearch_url):
    return {"init": init_args(opensearch_url, f"{PREFIX}-1"), "status": ["status"],
            "destroy": ["destroy", "--yes", "--delete-bucket"]}[cmd]


def calls_of(log: Path, keys) -> list[dict]:
    return [r for r in map(json.loads, log.read_text().splitlines()) if r["key"] == keys[0]]


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


def test_0_moto_checks_the_signature_over_what_arrived(acct_motos):
    """moto_iam_recorder.py's correction of the signed payload: a request signed as sent passes (a bodiless Lambda
    GET, with and without a query; a form with a %20; a JSON body), and one that differs from what was signed in
    its secret, path, query, body or the body's spelling is refused as SignatureDoesNotMatch."""
    url = acct_motos[0].url
    fresh_account(url)
    keys = holder_of(url, {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
    form = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    logs = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "Logs_20140328.DescribeLogGroups"}

    def send(service, method, path, body=b"", headers=None, signed_path=None, signed_body=None, secret=None):
        req = AWSRequest(method=method, url=url + (signed_path or path), data=body if signed_body is None else signed_body,
                         headers=dict(headers or {}))
        SigV4Auth(Credentials(keys[0], secret or keys[1]), service, REGION).add_auth(req)
        r = requests.request(method, url + path, headers=dict(req.headers), data=body, timeout=30)
        return "SignatureDoesNotMatch" if "SignatureDoesNotMatch" in r.text else r.status_code

    assert send("lambda", "GET", "/2015-03-31/functions") == 200
    assert send("lambda", "GET", "/2015-03-31/functions?MaxItems=1") == 200
    assert send("iam", "POST", "/", b"Action=ListUsers&Version=2010-05-08&PathPrefix=%2Fa%20b%2F", form) == 200
    assert send("logs", "POST", "/", b'{"limit":5}', logs) == 200
    refused = {
        "another secret": send("lambda", "GET", "/2015-03-31/functions", secret="x" * 40),
        "another path": send("lambda", "GET", "/2015-03-31/functions/b", signed_path="/2015-03-31/functions/a"),
        "another query": send("lambda", "GET", "/2015-03-31/functions?MaxItems=2", signed_path="/2015-03-31/functions?MaxItems=1"),
        "a body signed, none sent": send("lambda", "GET", "/2015-03-31/functions", signed_body=b"x"),
        "another form": send("iam", "POST", "/", b"Action=ListRoles&Version=2010-05-08", form,
                             signed_body=b"Action=ListUsers&Version=2010-05-08"),
        "the form spelt otherwise": send("iam", "POST", "/", b"Action=ListUsers&Version=2010-05-08&PathPrefix=%2Fa+b%2F",
                                         form, signed_body=b"Action=ListUsers&Version=2010-05-08&PathPrefix=%2Fa%20b%2F"),
        "another JSON body": send("logs", "POST", "/", b'{"limit":6}', logs, signed_body=b'{"limit":5}'),
    }
    assert all(v == "SignatureDoesNotMatch" for v in refused.values()), refused


PART1 = ("init", "status", "destroy")


def test_1a_init_status_destroy_run_with_exactly_their_policies(trailsetup_bin, acct_motos, tmp_path, opensearch_url):
    """In one account: init, then status, then destroy --delete-bucket, each by a user holding exactly its policy."""
    m = acct_motos[0]
    fresh_account(m.url)
    for cmd in PART1:
        if cmd == "destroy":
            for_destroy(m.url)
        policy = generated(trailsetup_bin, cmd)
        keys = holder_of(m.url, moto_view(policy))
        rc, out, err = run(trailsetup_bin, m.url, keys, tmp_path / cmd, part1_args(cmd, opensearch_url))
        assert rc == 0, f"{cmd}: rc={rc}\n{out[-3000:]}\n{err[-3000:]}"
        seen = checks(m.checks, keys)
        assert seen and all(r["allowed"] for r in seen), (cmd, [r for r in seen if not r["allowed"]])
        ENFORCED[cmd] = {MOTO_NAMES.get(r["action"], r["action"]) for r in seen}
        assert ENFORCED[cmd] <= actions_of(policy), (cmd, sorted(ENFORCED[cmd] - actions_of(policy)))
        # every call the run made, checked or not, maps to an action of the policy; every action of the policy is
        # called or excused (NOT_EXERCISED)
        recorded = _check(trailsetup_bin, cmd, calls_of(m.calls, keys))
        # iam_actions names each call as moto names what it checks: nothing moto checked is missing from the calls
        assert ENFORCED[cmd] <= recorded, (cmd, sorted(ENFORCED[cmd] - recorded))
        # the calls whose action moto does not check (or checks under another): exactly those listed
        assert recorded - ENFORCED[cmd] == set(NOT_CHECKED_BY_MOTO[cmd]), (cmd, sorted(recorded - ENFORCED[cmd]))
    with as_root(m.url):
        assert BUCKET not in [b["Name"] for b in client(m.url, "s3").list_buckets()["Buckets"]]
        assert not client(m.url, "cloudtrail").describe_trails()["trailList"]


def _changes(action: str) -> bool:
    """Whether an action may change the account (anything but a read; the lock is judged by `lock_held`)."""
    return not action.split(":")[1].startswith(("Get", "List", "Describe", "Head")) and \
        action not in ("ssm:PutParameter", "ssm:DeleteParameter")


def _run_without(trailsetup_bin, m, cmd, policy, action, home: Path, opensearch_url, ready: set):
    """One run of `cmd` by a user holding `policy` without `action`, on moto `m`: (rc, stdout + stderr, whether
    the stack's lock is still held after it). init starts from a fresh account; status and destroy from a fresh
    account with the stack (and what destroy cleans up), unless the last run on this moto left that unchanged
    (`ready`: it was refused before any change, e.g. reading the stack, and released the lock)."""
    if cmd == "init" or m.url not in ready:
        fresh_account(m.url)
        if cmd != "init":
            make_stack(trailsetup_bin, m.url, home.with_name(home.name + "-stack"), opensearch_url)
        if cmd == "destroy":
            for_destroy(m.url)
    ready.discard(m.url)
    keys = holder_of(m.url, moto_view(without(policy, action)))
    rc, out, err = run(trailsetup_bin, m.url, keys, home, part1_args(cmd, opensearch_url))
    held = lock_held(m.url)
    # every call that may change the account is checked by moto (only reads go unchecked: NOT_CHECKED_BY_MOTO)
    if cmd != "init" and not held and not any(r["allowed"] and _changes(r["action"]) for r in checks(m.checks, keys)):
        ready.add(m.url)
    return rc, out + err, held


def _verdict(cmd, action, rc, text, held) -> str | None:
    """None when the run without `action` did what 1b expects of it, else what it did."""
    kind, _ = NOT_NAMED.get((cmd, action), ("fails", ""))
    named = action in text
    if kind == "fails" and rc != 0 and named:
        return None
    if kind == "warns" and rc == 0 and named:
        return None
    if kind == "lock" and rc == 0 and LOCK_NOT_RELEASED in text and named and held:
        return None
    return f"{action} removed (expected: {kind}): rc={rc}, named={named}, lock held={held}\n{text[-2500:]}"


@pytest.mark.parametrize("cmd", PART1)
def test_1b_each_enforced_action_is_needed(trailsetup_bin, acct_motos, tmp_path, opensearch_url, cmd):
    """For each action moto checked in 1a: a user holding the policy without it fails, naming it (or does what
    NOT_NAMED says). The runs are shared out among the motos (one run at a time each; see _run_without)."""
    if cmd not in ENFORCED:
        pytest.fail("test_1a_init_status_destroy_run_with_exactly_their_policies did not run first")
    policy = generated(trailsetup_bin, cmd)
    needed = sorted(ENFORCED[cmd] - ALWAYS_ALLOWED)
    assert needed, "moto checked nothing"
    print(cmd, "each needed:", needed)
    stale = {a for (c, a) in NOT_NAMED if c == cmd} - set(needed)
    assert not stale, f"NOT_NAMED entries for actions moto did not check: {sorted(stale)}"
    free: queue.Queue = queue.Queue()
    for m in acct_motos:
        free.put(m)
    ready: set = set()

    def one(i, action):
        m = free.get()
        try:
            rc, text, held = _run_without(trailsetup_bin, m, cmd, policy, action, tmp_path / str(i), opensearch_url,
                                          ready)
        finally:
            free.put(m)
        return _verdict(cmd, action, rc, text, held)

    with ThreadPoolExecutor(max_workers=len(acct_motos)) as pool:
        failures = [f for f in pool.map(lambda ia: one(*ia), enumerate(needed)) if f]
    assert not failures, "\n\n".join(failures)


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
    those requests against `*`; see the module docstring), beside each action moto's name for the operations AWS
    authorises with it (MOTO_NAMES), and the bucket beside its objects where s3:DeleteObject is granted: AWS checks
    DeleteObjects (POST ?delete) as s3:DeleteObject on each object it deletes, moto checks it once, as
    s3:DeleteObject on the bucket (moto/s3/responses.py, S3Response._bucket_response_post)."""
    alias: dict[str, list[str]] = {}
    for moto_name, action in MOTO_NAMES.items():
        alias.setdefault(action, []).append(moto_name)
    sts = []
    for st in policy["Statement"]:
        res = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        acts = [st["Action"]] if isinstance(st["Action"], str) else list(st["Action"])
        if not all(r.startswith("arn:aws:s3:::") for r in res) and "*" not in res:
            res = res + ["*"]
        if "s3:DeleteObject" in acts:
            res = res + [r[:-2] for r in res if r.startswith("arn:aws:s3:::") and r.endswith("/*")]
        acts += [m for a in acts for m in alias.get(a, [])]
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
    ENFORCED[cmd] = {MOTO_NAMES.get(r["action"], r["action"]) for r in seen}
    assert ENFORCED[cmd] <= actions_of(policy), sorted(ENFORCED[cmd] - actions_of(policy))


def test_b_the_ingest_worker_policy_runs_backfill_and_ingest(trailsetup_bin, iam_moto, tmp_path, opensearch_url):
    url, log, admin = iam_moto
    arn = f"arn:aws:iam::{ACCOUNT}:policy/{STACK}-ingest-worker"
    iam = client(url, "iam", admin)
    doc = iam.get_policy_version(PolicyArn=arn, VersionId=iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"])["PolicyVersion"]["Document"]
    doc = json.loads(doc) if isinstance(doc, str) else doc
    # nothing beyond what backfill and ingest need: its actions are those of their generated policies (reading the
    # stack's record, iam:ListPolicyTags, included), but those that need no permission (ALWAYS_ALLOWED)
    needed = (actions_of(generated(trailsetup_bin, "backfill")) | actions_of(generated(trailsetup_bin, "ingest"))) - ALWAYS_ALLOWED
    assert actions_of(doc) == needed, sorted(actions_of(doc) ^ needed)
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


# --- the forwarder's policy ----------------------------------------------------------------------------------------
# The forwarder runs in Lambda, which moto does not run. The test plays Lambda: with the credentials of a user
# holding exactly the forwarder policy `init` created (read back from moto), it makes the calls Lambda makes with the
# function's execution role for the function's own logs (logs:CreateLogGroup, logs:CreateLogStream,
# logs:PutLogEvents on /aws/lambda/<function>: Lambda Developer Guide, "Defining Lambda function permissions with an
# execution role", the AWSLambdaBasicExecutionRole permissions), and runs the function's handler in-process
# (templates/forwarder/forwarder.py) on a record OpenSearch cannot take, which the handler sends to its dead-letter
# queue (sqs:SendMessage). Under moto's enforcement: all allowed, the message arrives; then, for each action moto
# checked, a user without it is refused that call.

FORWARDER_LOG_GROUP = f"/aws/lambda/{STACK}-forwarder"


def _play_forwarder(url, keys, opensearch_url, prefix, monkeypatch):
    """The function's calls as `keys`: its logs (as Lambda writes them), then one invocation whose only record is
    not a JSON object (straight to the dead-letter queue DLQ_URL names, OpenSearch never asked). Raises on a
    refusal."""
    import base64
    import gzip
    import sys
    import uuid
    from datetime import datetime, timezone

    from botocore.exceptions import ClientError

    logs = client(url, "logs", keys)
    try:
        logs.create_log_group(logGroupName=FORWARDER_LOG_GROUP)
    except ClientError as e:
        if e.response["Error"]["Code"] != "ResourceAlreadyExistsException":
            raise
    stream = f"{datetime.now(timezone.utc):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
    logs.create_log_stream(logGroupName=FORWARDER_LOG_GROUP, logStreamName=stream)
    logs.put_log_events(logGroupName=FORWARDER_LOG_GROUP, logStreamName=stream,
                        logEvents=[{"timestamp": int(datetime.now(timezone.utc).timestamp() * 1000), "message": "START"}])
    sys.path.insert(0, str(REPO / "templates" / "forwarder"))
    import forwarder

    for k, v in {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": keys[0], "AWS_SECRET_ACCESS_KEY": keys[1],
                 "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION, "OPENSEARCH_URL": opensearch_url,
                 "OPENSEARCH_AUTH": "none", "INDEX_PREFIX": prefix}.items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "OPENSEARCH_SECRET_ARN"):
        monkeypatch.delenv(k, raising=False)
    import boto3

    # the handler's boto3.client() resolves these credentials afresh (a container each); restored after the test
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    payload = {"messageType": "DATA_MESSAGE", "owner": ACCOUNT, "logGroup": f"aws-cloudtrail-logs-{STACK}",
               "logStream": f"{ACCOUNT}_CloudTrail_{REGION}", "subscriptionFilters": [f"{STACK}-forwarder"],
               "logEvents": [{"id": "1", "timestamp": 0, "message": '["not", "an", "object"]'}]}
    event = {"awslogs": {"data": base64.b64encode(gzip.compress(json.dumps(payload).encode())).decode()}}
    return forwarder.handler(event, None)


def test_d_the_forwarder_policy_covers_what_its_function_does(iam_moto, opensearch_url, monkeypatch):
    from botocore.exceptions import ClientError

    url, log, admin = iam_moto
    arn = f"arn:aws:iam::{ACCOUNT}:policy/{STACK}-forwarder"
    iam = client(url, "iam", admin)
    doc = iam.get_policy_version(PolicyArn=arn, VersionId=iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"])["PolicyVersion"]["Document"]
    doc = json.loads(doc) if isinstance(doc, str) else doc
    prefix = f"{PREFIX}-forwarder"
    keys = user_with(iam_moto, moto_view(doc))
    with as_root(url):
        dlq = client(url, "sqs").get_queue_url(QueueName=f"{STACK}-forwarder-dlq")["QueueUrl"]
    monkeypatch.setenv("DLQ_URL", dlq)
    summary = _play_forwarder(url, keys, opensearch_url, prefix, monkeypatch)
    assert summary["rejected"] == 1, summary
    seen = checks(log, keys)
    assert seen and all(r["allowed"] for r in seen), [r for r in seen if not r["allowed"]]
    enforced = {MOTO_NAMES.get(r["action"], r["action"]) for r in seen}
    assert enforced == {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "sqs:SendMessage"}, enforced
    assert enforced <= actions_of(doc)
    with as_root(url):
        msgs = client(url, "sqs").receive_message(QueueUrl=dlq, MaxNumberOfMessages=10).get("Messages", [])
    assert [json.loads(m["Body"])["document"] for m in msgs] == ['["not", "an", "object"]']
    # each action moto checked is needed: without it, that call is refused
    for action in sorted(enforced):
        keys = user_with(iam_moto, moto_view(without(doc, action)))
        with pytest.raises(ClientError) as refused:
            _play_forwarder(url, keys, opensearch_url, prefix, monkeypatch)
        # moto answers a JSON-protocol refusal in XML, which botocore reads as the bare status ("403")
        assert refused.value.response["Error"]["Code"] in ("AccessDenied", "AccessDeniedException", "403"), (action, refused.value)
        assert f"not authorized to perform: {action}" in str(refused.value), (action, str(refused.value))
