"""`init` with `--opensearch-auth basic`: the forwarder's user and password live in a Secrets Manager secret, never in
its environment, never in the plan, the output or the state (Lambda Developer Guide, "Working with Lambda environment
variables": "use AWS Secrets Manager instead of environment variables to store database credentials and other
sensitive information"; "Use Secrets Manager secrets in Lambda functions").

Against moto and the loopback OpenSearch node (which answers without checking basic auth); checked with boto3 and a
recording proxy in front of moto, never with trailsetup's own read path.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ACCOUNT = "123456789012"
HOME = "us-east-1"
FN = "trailsetup-forwarder"
SECRET = "trailsetup/opensearch-basic-auth"
USER = "trailsetup-writer"
PASSWORD = "Sup3r-s3cret-9f2c1e7b-forwarder"
OTHER_PASSWORD = "an0ther-s3cret-52d1a0c4-rotated"


def basic_env(aws_env, user=USER, password=PASSWORD, **extra):
    env = dict(aws_env, **extra)
    for k, v in (("TRAILSETUP_OPENSEARCH_USER", user), ("TRAILSETUP_OPENSEARCH_PASSWORD", password)):
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def init_args(opensearch_url, prefix, *extra):
    return ["init", "--yes", "--no-backfill", "--regions", HOME, "--opensearch-url", opensearch_url,
            "--opensearch-auth", "basic", "--index-prefix", prefix, *extra]


def run(run_cli, args, env, rc_ok=(0,)):
    rc, out, err = run_cli(args, env=env, timeout=300)
    assert rc in rc_ok, f"rc {rc}\n{err[-4000:]}"
    return rc, out, err


def changes(doc, kind):
    return [c for c in doc["plan"]["changes"] if c["kind"] == kind]


def the_secret(doc):
    (s,) = changes(doc, "secretsmanager-secret")
    return s


def forwarder_policy(boto) -> dict:
    iam = boto("iam")
    arn = f"arn:aws:iam::{ACCOUNT}:policy/{FN}"
    ver = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    doc = iam.get_policy_version(PolicyArn=arn, VersionId=ver)["PolicyVersion"]["Document"]
    return json.loads(doc) if isinstance(doc, str) else doc


def as_list(v):
    return v if isinstance(v, list) else [v]


def secret_grants(boto) -> list:
    """(policy name, statement) of every statement of our IAM policies and roles that names secretsmanager."""
    iam = boto("iam")
    out = []
    for p in iam.list_policies(Scope="Local")["Policies"]:
        doc = iam.get_policy_version(PolicyArn=p["Arn"], VersionId=p["DefaultVersionId"])["PolicyVersion"]["Document"]
        doc = json.loads(doc) if isinstance(doc, str) else doc
        out += [(p["PolicyName"], s) for s in as_list(doc["Statement"]) if "secretsmanager" in json.dumps(s.get("Action"))]
    for r in iam.list_roles()["Roles"]:
        for name in iam.list_role_policies(RoleName=r["RoleName"])["PolicyNames"]:
            doc = iam.get_role_policy(RoleName=r["RoleName"], PolicyName=name)["PolicyDocument"]
            doc = json.loads(doc) if isinstance(doc, str) else doc
            out += [(r["RoleName"], s) for s in as_list(doc["Statement"]) if "secretsmanager" in json.dumps(s.get("Action"))]
    return out


def files_holding(root: Path, needle: str) -> list:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def sm_calls(calls, op):
    return [c for c in calls if c["target"] == f"secretsmanager.{op}"]


def test_basic_auth_password_lives_in_secrets_manager_only(proxy, run_cli, aws_env, boto, opensearch_url, os_clean, tmp_path):
    url, calls = proxy()
    env = basic_env(aws_env, AWS_ENDPOINT_URL=url)
    args = init_args(opensearch_url, os_clean)

    # the plan, human with every setting (-v, -vv) and JSON: the secret as new, its ARN known after apply, no password
    for extra in (["--dry-run"], ["--dry-run", "-v"], ["--dry-run", "-vv"]):
        _, out, err = run(run_cli, [*args, *extra], env)
        assert "secretsmanager-secret" in out and SECRET in out
        assert PASSWORD not in out + err
    _, out, err = run(run_cli, [*args, "--dry-run", "--output", "json"], env)
    assert PASSWORD not in out + err
    plan = json.loads(out)
    s = the_secret(plan)
    assert (s["action"], s["name"], s["region"]) == ("create", SECRET, HOME)
    assert s["details"]["value"] == "new" and s["details"]["kms_key"] is None
    assert s["details"]["tags"] == {"trailsetup:stack": "trailsetup"}
    (f,) = changes(plan, "lambda-function")
    assert f["details"]["environment"]["OPENSEARCH_SECRET_ARN"] == f"<ARN of secret {SECRET}, known after apply>"
    assert boto("secretsmanager").list_secrets()["SecretList"] == []  # a dry run changes nothing

    # apply, verbosely
    _, out, err = run(run_cli, [*args, "-v"], env)
    assert PASSWORD not in out + err

    # the secret: the user and password as JSON, tagged, in the home region, the AWS managed key
    sm = boto("secretsmanager")
    d = sm.describe_secret(SecretId=SECRET)
    arn = d["ARN"]
    assert arn.startswith(f"arn:aws:secretsmanager:{HOME}:{ACCOUNT}:secret:{SECRET}-") and len(arn) == len(
        f"arn:aws:secretsmanager:{HOME}:{ACCOUNT}:secret:{SECRET}-") + 6
    assert {"Key": "trailsetup:stack", "Value": "trailsetup"} in d["Tags"]
    assert "KmsKeyId" not in d or d["KmsKeyId"] in (None, "alias/aws/secretsmanager")
    assert json.loads(sm.get_secret_value(SecretId=SECRET)["SecretString"]) == {"username": USER, "password": PASSWORD}

    # the function: the secret's ARN, no user, no password
    cfg = boto("lambda").get_function_configuration(FunctionName=FN)
    fenv = cfg["Environment"]["Variables"]
    assert fenv["OPENSEARCH_AUTH"] == "basic" and fenv["OPENSEARCH_SECRET_ARN"] == arn
    assert not any("PASSWORD" in k or k == "OPENSEARCH_USER" for k in fenv), fenv
    assert PASSWORD not in json.dumps(cfg)

    # readable by the forwarder's role only: one statement, GetSecretValue on exactly that ARN, nowhere else
    grants = secret_grants(boto)
    assert grants == [(FN, {"Sid": "ReadOpenSearchSecret", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
                            "Resource": arn})], grants
    assert not any("kms:ViaService" in json.dumps(s) for s in as_list(forwarder_policy(boto)["Statement"]))

    # the password went to AWS in CreateSecret only; nothing of it in any file of the state directory (nor home)
    carrying = {c["target"] or c["path"] for c in calls if PASSWORD.encode() in c["body"]}
    assert carrying == {"secretsmanager.CreateSecret"}, carrying
    assert files_holding(tmp_path / "home", PASSWORD) == []
    state_dir = tmp_path / "home" / ".local" / "state" / "trailsetup"
    assert (state_dir / "trailsetup.json").is_file()

    # a second run: the value read and compared, unchanged; nothing to do
    calls.clear()
    _, out, err = run(run_cli, [*args, "--output", "json"], env)
    assert PASSWORD not in out + err
    again = json.loads(out)
    s = again["plan"]["summary"]
    assert (s["create"], s["update"], s["delete"]) == (0, 0, 0), [c for c in again["plan"]["changes"] if c["action"] != "no-op"]
    sec = the_secret(again)
    assert (sec["action"], sec["details"]["value"], sec["details"]["arn"]) == ("no-op", "unchanged", arn)
    assert sm_calls(calls, "GetSecretValue") and not sm_calls(calls, "PutSecretValue")

    # another password: an update that says "changed" (never the value), PutSecretValue, the new value stored
    calls.clear()
    env2 = basic_env(aws_env, password=OTHER_PASSWORD, AWS_ENDPOINT_URL=url)
    _, out, err = run(run_cli, [*args, "--dry-run"], env2)
    assert "~ update" in out and "secretsmanager-secret" in out and '"changed"' in out
    assert PASSWORD not in out + err and OTHER_PASSWORD not in out + err
    _, out, err = run(run_cli, [*args, "--output", "json", "-v"], env2)
    assert PASSWORD not in out + err and OTHER_PASSWORD not in out + err
    doc = json.loads(out)
    sec = the_secret(doc)
    assert (sec["action"], sec["details"]["value"]) == ("update", "changed")
    assert doc["plan"]["summary"]["update"] == 1 and doc["plan"]["summary"]["create"] == 0
    assert len(sm_calls(calls, "PutSecretValue")) == 1
    assert {c["target"] or c["path"] for c in calls if OTHER_PASSWORD.encode() in c["body"]} == {"secretsmanager.PutSecretValue"}
    assert json.loads(sm.get_secret_value(SecretId=SECRET)["SecretString"]) == {"username": USER, "password": OTHER_PASSWORD}
    assert sm.describe_secret(SecretId=SECRET)["ARN"] == arn
    assert boto("lambda").get_function_configuration(FunctionName=FN)["Environment"]["Variables"]["OPENSEARCH_SECRET_ARN"] == arn
    assert files_holding(tmp_path / "home", OTHER_PASSWORD) == []

    # status reports the secret like the other resources; it does not read its value
    calls.clear()
    rc, out, err = run(run_cli, ["status", "--output", "json"], dict(aws_env, AWS_ENDPOINT_URL=url), rc_ok=(0, 1))
    checks = [c for c in json.loads(out)["status"]["checks"] if c["name"] == "resource secretsmanager-secret"]
    assert [(c["resource"], c["region"], c["level"]) for c in checks] == [(SECRET, HOME, "ok")], checks
    assert not sm_calls(calls, "GetSecretValue")
    # untagged: drift
    sm.untag_resource(SecretId=SECRET, TagKeys=["trailsetup:stack"])
    rc, out, err = run(run_cli, ["status", "--output", "json"], dict(aws_env, AWS_ENDPOINT_URL=url), rc_ok=(0, 1))
    (c,) = [c for c in json.loads(out)["status"]["checks"] if c["name"] == "resource secretsmanager-secret"]
    assert c["level"] == "warn" and "drift" in c["detail"]
    sm.tag_resource(SecretId=SECRET, Tags=[{"Key": "trailsetup:stack", "Value": "trailsetup"}])

    # destroy removes it at once (no recovery window): init right after can use the name again
    calls.clear()
    _, out, err = run(run_cli, ["destroy", "--yes", "--output", "json"], dict(aws_env, AWS_ENDPOINT_URL=url))
    gone = [c for c in json.loads(out)["plan"]["changes"] if c["kind"] == "secretsmanager-secret"]
    assert [(c["action"], c["name"]) for c in gone] == [("delete", SECRET)]
    (delete,) = sm_calls(calls, "DeleteSecret")
    assert json.loads(delete["body"]).get("ForceDeleteWithoutRecovery") is True
    assert sm.list_secrets()["SecretList"] == []
    assert boto("lambda").list_functions()["Functions"] == []
    _, out, err = run(run_cli, [*args, "--output", "json"], env)
    assert the_secret(json.loads(out))["action"] == "create"
    new_arn = sm.describe_secret(SecretId=SECRET)["ARN"]
    assert boto("lambda").get_function_configuration(FunctionName=FN)["Environment"]["Variables"]["OPENSEARCH_SECRET_ARN"] == new_arn
    assert secret_grants(boto)[0][1]["Resource"] == new_arn


@pytest.mark.parametrize("user,password,missing", [
    (USER, None, ["TRAILSETUP_OPENSEARCH_PASSWORD"]),
    (USER, "", ["TRAILSETUP_OPENSEARCH_PASSWORD"]),
    (None, PASSWORD, ["TRAILSETUP_OPENSEARCH_USER"]),
    (None, None, ["TRAILSETUP_OPENSEARCH_USER", "TRAILSETUP_OPENSEARCH_PASSWORD"]),
])
def test_missing_password_is_exit_2_and_changes_nothing(proxy, run_cli, aws_env, boto, opensearch_url, os_clean, user, password, missing):
    url, calls = proxy()
    env = basic_env(aws_env, user=user, password=password, AWS_ENDPOINT_URL=url)
    for extra in ([], ["--dry-run"], ["--dry-run", "--offline", "--account", ACCOUNT]):
        calls.clear()
        rc, out, err = run_cli([*init_args(opensearch_url, os_clean), *extra], env=env)
        assert rc == 2, err
        # the message names both variables, and which one is missing
        assert "TRAILSETUP_OPENSEARCH_USER" in err and "TRAILSETUP_OPENSEARCH_PASSWORD" in err, err
        tail = err.split(";")[-1]
        for v in ("TRAILSETUP_OPENSEARCH_USER", "TRAILSETUP_OPENSEARCH_PASSWORD"):
            assert (v in tail) == (v in missing), err
        assert "nothing was changed" in err
        assert not [c for c in calls if c["method"] != "GET" and c["target"].split(".")[-1][:3] in ("Cre", "Put", "Upd", "Tag")]
    assert boto("secretsmanager").list_secrets()["SecretList"] == []
    assert boto("lambda").list_functions()["Functions"] == []
    assert boto("iam").list_roles()["Roles"] == [] and boto("s3").list_buckets()["Buckets"] == []


def test_kms_key_encrypts_the_secret_and_the_forwarder_decrypts_through_secrets_manager(moto_reset, run_cli, aws_env, boto, opensearch_url, os_clean):
    key = boto("kms").create_key(Description="audit")["KeyMetadata"]["Arn"]
    env = basic_env(aws_env)
    _, out, err = run(run_cli, [*init_args(opensearch_url, os_clean, "--kms-key", key), "--output", "json"], env)
    assert PASSWORD not in out + err
    s = the_secret(json.loads(out))
    assert (s["action"], s["details"]["kms_key"]) == ("create", key)
    sm = boto("secretsmanager")
    d = sm.describe_secret(SecretId=SECRET)
    assert d["KmsKeyId"] == key
    sts = {st.get("Sid"): st for st in as_list(forwarder_policy(boto)["Statement"])}
    assert sts["ReadOpenSearchSecret"]["Resource"] == d["ARN"]
    dec = sts["DecryptOpenSearchSecret"]
    assert dec["Action"] == "kms:Decrypt" and as_list(dec["Resource"]) == [key]
    assert dec["Condition"]["StringEquals"]["kms:ViaService"] == f"secretsmanager.{HOME}.amazonaws.com"
    assert dec["Condition"]["StringLike"]["kms:EncryptionContext:SecretARN"] == d["ARN"]
    # second run: nothing to do
    _, out, err = run(run_cli, [*init_args(opensearch_url, os_clean, "--kms-key", key), "--output", "json"], env)
    s = json.loads(out)["plan"]["summary"]
    assert (s["create"], s["update"], s["delete"]) == (0, 0, 0), out


def test_basic_auth_policies_pass_parliament(run_cli, aws_env):
    """The forwarder's policy with the secret's `-??????` pattern and the key's kms:ViaService condition, as parliament
    (the IAM linter the other policies pass) reads it; offline, no call."""
    from parliament import analyze_policy_string

    key = f"arn:aws:kms:{HOME}:{ACCOUNT}:key/1234abcd"
    rc, out, err = run_cli(["--dry-run", "--offline", "--yes", "--account", ACCOUNT, "--regions", HOME, "--kms-key", key,
                            "--opensearch-url", "https://search.example.com", "--opensearch-auth", "basic", "--output", "json"],
                           env=basic_env(aws_env))
    assert rc == 0, err
    assert PASSWORD not in out + err
    doc = json.loads(out)
    (p,) = [c["details"]["policy"] for c in changes(doc, "iam-policy") if c["name"] == FN]
    sts = {s["Sid"]: s for s in p["Statement"]}
    assert sts["ReadOpenSearchSecret"]["Resource"] == f"arn:aws:secretsmanager:{HOME}:{ACCOUNT}:secret:{SECRET}-??????"
    assert sts["DecryptOpenSearchSecret"]["Condition"]["StringEquals"] == {"kms:ViaService": f"secretsmanager.{HOME}.amazonaws.com"}
    assert the_secret(doc)["details"]["kms_key"] == key
    findings = [(f.issue, f.detail) for f in analyze_policy_string(json.dumps(p), ignore_private_auditors=True).findings]
    assert findings == []


def test_destroy_without_state_finds_our_secret_and_keeps_anyone_elses(moto_reset, run_cli, aws_env, boto, opensearch_url, os_clean, tmp_path):
    sm = boto("secretsmanager")
    # a secret of that name that is not ours (no tag): listed as retained, kept
    sm.create_secret(Name=SECRET, SecretString=json.dumps({"username": "someone", "password": "theirs"}))
    _, out, _ = run(run_cli, ["destroy", "--yes", "--output", "json"], aws_env)
    (c,) = [c for c in json.loads(out)["plan"]["changes"] if c["kind"] == "secretsmanager-secret"]
    assert (c["action"], c["details"].get("retained")) == ("no-op", True)
    assert json.loads(sm.get_secret_value(SecretId=SECRET)["SecretString"])["username"] == "someone"
    sm.delete_secret(SecretId=SECRET, ForceDeleteWithoutRecovery=True)

    # ours, and the state file lost: found by its name and tag, deleted
    run(run_cli, init_args(opensearch_url, os_clean), basic_env(aws_env))
    assert [s["Name"] for s in sm.list_secrets()["SecretList"]] == [SECRET]
    for f in (tmp_path / "home" / ".local" / "state" / "trailsetup").glob("*.json"):
        f.unlink()
    _, out, _ = run(run_cli, ["destroy", "--yes", "--output", "json"], aws_env)
    (c,) = [c for c in json.loads(out)["plan"]["changes"] if c["kind"] == "secretsmanager-secret"]
    assert c["action"] == "delete"
    assert sm.list_secrets()["SecretList"] == []
