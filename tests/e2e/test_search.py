"""`trailsetup search` against the real OpenSearch node over the fixtures (and a few hand-made near misses).

The truth is computed here from the log files themselves, independently of trailsetup's query code: each preset's
CloudWatch Logs metric filter pattern (as AWS Security Hub's CloudWatch.1-14 give it, read from
templates/search-presets.json's `pattern`) is evaluated by a small evaluator of that pattern language below, and each
filter by a plain predicate over the records. Document ids come from the shared vectors (tests/vectors), which
fix what the document builder makes of each record.

Reading of the pattern language (CloudWatch Logs user guide, "Filter pattern syntax for metric filters ..." /
"Using filter patterns to match terms in JSON log events"): `$.a.b` walks objects; `=`/`!=` compare a property that
exists (a missing property matches neither: the language has `NOT EXISTS` for absence); `*` is a wildcard in a
string; `&&` binds tighter than `||`.
"""

from __future__ import annotations

import csv
import datetime as dt
import fnmatch
import gzip
import hashlib
import io
import json
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import requests

from test_backfill import FIXTURES, VECTORS, backfill

REPO = Path(__file__).resolve().parents[2]
PRESETS = json.loads((REPO / "templates" / "search-presets.json").read_text())["presets"]


# --- the records, straight from the files ---------------------------------------------------------------------

def records_of(root: Path):
    for p in sorted(root.rglob("*")):
        if not p.is_file() or "Digest" in p.name or not (p.name.endswith(".json.gz") or p.name.endswith(".json")):
            continue
        data = gzip.decompress(p.read_bytes()) if p.name.endswith(".gz") else p.read_bytes()
        try:
            doc = json.loads(data)
        except ValueError:
            continue
        for r in doc.get("Records", []) if isinstance(doc, dict) else []:
            if isinstance(r, dict):
                yield r


def vector_keys():
    """canonical record JSON → (index suffix, document _id), from the shared vectors."""
    out = {}
    for line in VECTORS.read_text().splitlines():
        v = json.loads(line)
        if v["name"].startswith("fixture:") and v.get("id"):
            out[json.dumps(json.loads(v["record_text"]), sort_keys=True)] = (v["index"][len(v["prefix"]):], v["id"])
    return out


def doc_key(r: dict, keys: dict, prefix: str) -> tuple:
    """(index, _id) of the document a record becomes: the vectors' for the fixtures, else (a near miss) its day and
    eventID."""
    k = json.dumps(r, sort_keys=True)
    if k in keys:
        suffix, id_ = keys[k]
        return prefix + suffix, id_
    return f"{prefix}-{r['eventTime'][:10].replace('-', '.')}", r["eventID"]


# --- a CloudWatch Logs JSON filter pattern evaluator (the subset the controls use) ----------------------------

TOKEN = re.compile(r'\s*(\{|\}|\(|\)|&&|\|\||!=|=|NOT EXISTS|\$\.[A-Za-z0-9_.]+|"[^"]*"|[^\s(){}=!&|"]+)')


def tokens(pattern: str):
    pos, out = 0, []
    pattern = pattern.strip()
    while pos < len(pattern):
        m = TOKEN.match(pattern, pos)
        assert m and m.end() > pos, pattern[pos:]
        out.append(m.group(1))
        pos = m.end()
    return out


MISSING = object()


def select(rec, path: str):
    v = rec
    for k in path[2:].split("."):
        if not isinstance(v, dict) or k not in v:
            return MISSING
        v = v[k]
    return v


def compare(v, want: str) -> bool:
    if isinstance(v, (dict, list)) or v is None:
        return False
    text = v if isinstance(v, str) else json.dumps(v)
    return fnmatch.fnmatchcase(text, want) if "*" in want else text == want


def evaluate(pattern: str, rec: dict) -> bool:
    toks = tokens(pattern)
    assert toks[0] == "{" and toks[-1] == "}"
    toks = toks[1:-1]
    pos = 0

    def peek():
        return toks[pos] if pos < len(toks) else None

    def take():
        nonlocal pos
        pos += 1
        return toks[pos - 1]

    def term():
        if peek() == "(":
            take()
            v = orexpr()
            assert take() == ")"
            return v
        sel = take()
        assert sel.startswith("$."), sel
        op = take()
        v = select(rec, sel)
        if op == "NOT EXISTS":
            return v is MISSING
        val = take().strip('"')
        if v is MISSING:
            return False
        return compare(v, val) if op == "=" else not compare(v, val)

    def andexpr():
        v = term()
        while peek() == "&&":
            take()
            v = term() and v
        return v

    def orexpr():
        v = andexpr()
        while peek() == "||":
            take()
            v = andexpr() or v
        return v

    v = orexpr()
    assert pos == len(toks), toks[pos:]
    return v


def strings(v):
    if isinstance(v, str):
        yield v
    elif isinstance(v, dict):
        for x in v.values():
            yield from strings(x)
    elif isinstance(v, list):
        for x in v:
            yield from strings(x)


BLOBS = ("requestParameters", "responseElements", "resources", "additionalEventData", "serviceEventDetails")


def names_resource(rec: dict, rid: str) -> bool:
    for b in BLOBS:
        for s in strings(rec.get(b)):
            if len(s) > 256:
                continue
            if s == rid:
                return True
            if s.startswith("arn:"):
                cut = re.split(r"[/:]", s[4:])[-1]
                if cut and cut == rid:
                    return True
    return False


def open_to_world(rec: dict) -> bool:
    return rec.get("eventName") == "AuthorizeSecurityGroupIngress" and any(
        names_resource(rec, c) for c in ("0.0.0.0/0", "::/0"))


def truth_of(preset: dict, rec: dict) -> bool:
    if preset["pattern"]:
        return evaluate(preset["pattern"], rec)
    assert preset["name"] == "open-to-world"
    return open_to_world(rec)


# --- hand-made near misses (recent: inside the default window) -----------------------------------------------

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
ACCT = "111122223333"


def near_misses():
    t = (NOW - dt.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    root = {"type": "Root", "principalId": ACCT, "arn": f"arn:aws:iam::{ACCT}:root", "accountId": ACCT}
    user = {"type": "IAMUser", "principalId": "AIDAEXAMPLE", "arn": f"arn:aws:iam::{ACCT}:user/alice",
            "accountId": ACCT, "userName": "alice", "accessKeyId": "AKIAEXAMPLEALICE"}
    role = {"type": "AssumedRole", "principalId": "AROAEXAMPLE:bob", "arn": f"arn:aws:sts::{ACCT}:assumed-role/Ops/bob",
            "accountId": ACCT, "accessKeyId": "ASIAEXAMPLEBOB",
            "sessionContext": {"sessionIssuer": {"type": "Role", "arn": f"arn:aws:iam::{ACCT}:role/Ops", "userName": "Ops",
                                                 "principalId": "AROAEXAMPLE", "accountId": ACCT}}}
    base = {"eventVersion": "1.09", "eventTime": t, "awsRegion": "eu-west-1", "recipientAccountId": ACCT,
            "sourceIPAddress": "203.0.113.9", "eventType": "AwsApiCall"}
    sg = lambda cidr, v6=False: {"groupId": "sg-0123", "ipPermissions": {"items": [{"ipProtocol": "tcp", "fromPort": 22, "toPort": 22,
         ("ipv6Ranges" if v6 else "ipRanges"): {"items": [{("cidrIpv6" if v6 else "cidrIp"): cidr}]}}]}}
    recs = [
        dict(base, eventName="ListBuckets", eventSource="s3.amazonaws.com", userIdentity=root, eventID="nm-root-console"),
        dict(base, eventName="ListBuckets", eventSource="s3.amazonaws.com", userIdentity=dict(root, invokedBy="support.amazonaws.com"), eventID="nm-root-invokedby"),
        dict(base, eventName="SharedSnapshotCopyInitiated", eventSource="ec2.amazonaws.com", userIdentity=root, eventType="AwsServiceEvent", eventID="nm-root-service-event"),
        dict(base, eventName="ConsoleLogin", eventSource="signin.amazonaws.com", eventType="AwsConsoleSignIn", userIdentity=user,
             additionalEventData={"MFAUsed": "No"}, responseElements={"ConsoleLogin": "Success"}, eventID="nm-login-nomfa"),
        dict(base, eventName="ConsoleLogin", eventSource="signin.amazonaws.com", eventType="AwsConsoleSignIn", userIdentity=user,
             additionalEventData={"MFAUsed": "No"}, responseElements={"ConsoleLogin": "Failure"}, errorMessage="Failed authentication", eventID="nm-login-failed"),
        dict(base, eventName="ConsoleLogin", eventSource="signin.amazonaws.com", eventType="AwsConsoleSignIn", userIdentity=user,
             additionalEventData={"MFAUsed": "Yes"}, responseElements={"ConsoleLogin": "Success"}, eventID="nm-login-mfa"),
        dict(base, eventName="AuthorizeSecurityGroupIngress", eventSource="ec2.amazonaws.com", userIdentity=role, requestParameters=sg("0.0.0.0/0"), eventID="nm-ingress-world"),
        dict(base, eventName="AuthorizeSecurityGroupIngress", eventSource="ec2.amazonaws.com", userIdentity=role, requestParameters=sg("::/0", True), eventID="nm-ingress-world6"),
        dict(base, eventName="AuthorizeSecurityGroupIngress", eventSource="ec2.amazonaws.com", userIdentity=role, requestParameters=sg("10.0.0.0/8"), eventID="nm-ingress-private"),
        dict(base, eventName="AuthorizeSecurityGroupEgress", eventSource="ec2.amazonaws.com", userIdentity=role, requestParameters=sg("0.0.0.0/0"), eventID="nm-egress-world"),
        dict(base, eventName="StopLogging", eventSource="cloudtrail.amazonaws.com", userIdentity=role,
             requestParameters={"name": f"arn:aws:cloudtrail:eu-west-1:{ACCT}:trail/audit"}, eventID="nm-stoplogging"),
        dict(base, eventName="TerminateInstances", eventSource="ec2.amazonaws.com", userIdentity=user,
             requestParameters={"instancesSet": {"items": [{"instanceId": "i-0abc1234def567890"}]}},
             responseElements={"instancesSet": {"items": [{"instanceId": "i-0abc1234def567890", "currentState": {"code": 32, "name": "shutting-down"}}]}},
             eventID="nm-terminate"),
        dict(base, eventName="RunInstances", eventSource="ec2.amazonaws.com", userIdentity=user, errorCode="Client.UnauthorizedOperation",
             errorMessage="You are not authorized to perform this operation.", eventID="nm-unauthorized"),
    ]
    return recs


def as_stored(r: dict) -> dict:
    """A record as the document stores it (without @timestamp): the session token redacted."""
    r = json.loads(json.dumps(r))
    r.pop("@timestamp", None)
    c = (r.get("responseElements") or {}).get("credentials") if isinstance(r.get("responseElements"), dict) else None
    if isinstance(c, dict) and c.get("sessionToken") is not None:
        c["sessionToken"] = "REDACTED"
    return r


def load_fixtures_and_near_misses(trailsetup_bin, opensearch_url, prefix: str, tmp, env) -> None:
    """Backfill the fixtures and the near misses (a log file written under `tmp`) into `prefix`, then refresh."""
    from conftest import run_cli_with

    extra = tmp / "extra" / "AWSLogs" / ACCT / "CloudTrail" / "eu-west-1" / NOW.strftime("%Y/%m/%d")
    extra.mkdir(parents=True)
    (extra / f"{ACCT}_CloudTrail_eu-west-1_nearmiss.json.gz").write_bytes(gzip.compress(json.dumps({"Records": near_misses()}).encode()))
    for src in (FIXTURES, tmp / "extra"):
        rc, out, err = run_cli_with(trailsetup_bin, ["backfill", "--output", "json", "--source-dir", src, "--opensearch-url", opensearch_url,
                                                     "--index-prefix", prefix], env=env, timeout=600)
        assert rc == 0, err[-3000:]
    requests.post(f"{opensearch_url}/{prefix}/_refresh", timeout=60)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory, trailsetup_bin, opensearch_url):
    """The fixtures and the near misses loaded once under a module prefix; yields (prefix, records by id, state env)."""
    from conftest import _os_delete_prefixed, run_cli_with

    prefix = "ts-search-" + hashlib.sha256(__file__.encode()).hexdigest()[:8]
    _os_delete_prefixed(opensearch_url, prefix)
    tmp = tmp_path_factory.mktemp("search")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp), "TRAILSETUP_STATE_DIR": str(tmp / "state"), "AWS_EC2_METADATA_DISABLED": "true"}
    load_fixtures_and_near_misses(trailsetup_bin, opensearch_url, prefix, tmp, env)
    keys = vector_keys()
    candidates = {}
    for r in list(records_of(FIXTURES)) + near_misses():
        c = candidates.setdefault(doc_key(r, keys, prefix), [])
        if r not in c:
            c.append(r)
    # one document per (index, _id): where the files hold several records with that key (an eventID reused the
    # same day), the first one loaded is the document; which one that was is read back
    by_id = {}
    for (index, id_), c in candidates.items():
        if len(c) > 1:
            stored = requests.get(f"{opensearch_url}/{index}/_doc/{requests.utils.quote(id_, safe='')}", timeout=30).json()["_source"]
            stored.pop("@timestamp", None)
            c = [r for r in c if as_stored(r) == stored]
            assert len(c) == 1, (index, id_)
        by_id[(index, id_)] = c[0]
    yield prefix, by_id, env
    _os_delete_prefixed(opensearch_url, prefix)


def search(trailsetup_bin, env, opensearch_url, prefix, *args, expect=0, output="json"):
    from conftest import run_cli_with

    rc, out, err = run_cli_with(trailsetup_bin, ["search", "--output", output, "--opensearch-url", opensearch_url, "--index-prefix", prefix, *args],
                                env=env, timeout=300)
    assert rc == expect, f"rc={rc}\n{out[-2000:]}\n{err[-3000:]}"
    return out, err


def ids_of(out: str):
    """The (index, id) of every event of a `--output json` answer (all of them: total == listed)."""
    doc = json.loads(out)["search"]
    ids = [(e["index"], e["id"]) for e in doc["events"]]
    assert len(ids) == doc["total"] == len(set(ids)), (len(ids), doc["total"])
    return set(ids)


def eids(keys):
    return {k[1] for k in keys}


@pytest.mark.parametrize("preset", [p["name"] for p in PRESETS])
def test_each_preset_returns_exactly_what_its_pattern_matches(preset, loaded, trailsetup_bin, opensearch_url):
    prefix, by_id, env = loaded
    p = next(x for x in PRESETS if x["name"] == preset)
    want = {i for i, r in by_id.items() if truth_of(p, r)}
    out, _ = search(trailsetup_bin, env, opensearch_url, prefix, "--preset", preset, "--since", "all", "--all")
    assert ids_of(out) == want, preset


def test_near_misses_are_misses(loaded, trailsetup_bin, opensearch_url):
    prefix, _, env = loaded
    got = lambda name: eids(ids_of(search(trailsetup_bin, env, opensearch_url, prefix, "--preset", name, "--since", "1d", "--all")[0]))
    root = got("root-activity")
    assert "nm-root-console" in root and "nm-root-invokedby" not in root and "nm-root-service-event" not in root
    nomfa = got("console-login-without-mfa")
    assert "nm-login-nomfa" in nomfa and "nm-login-failed" not in nomfa and "nm-login-mfa" not in nomfa
    assert "nm-login-failed" in got("console-login-failures")
    world = got("open-to-world")
    assert world == {"nm-ingress-world", "nm-ingress-world6"}
    assert "nm-stoplogging" in got("cloudtrail-changes")
    assert "nm-unauthorized" in got("unauthorized-calls")


FILTERS = [
    (["--event", "TerminateInstances,StopInstances"], lambda r: r.get("eventName") in ("TerminateInstances", "StopInstances")),
    (["--source", "iam"], lambda r: r.get("eventSource") == "iam.amazonaws.com"),
    (["--source", "s3.amazonaws.com"], lambda r: r.get("eventSource") == "s3.amazonaws.com"),
    (["--resource", "i-0abc1234def567890"], lambda r: names_resource(r, "i-0abc1234def567890")),
    (["--resource", "audit"], lambda r: names_resource(r, "audit")),
    (["--resource", "0.0.0.0/0"], lambda r: names_resource(r, "0.0.0.0/0")),
    (["--principal", f"arn:aws:iam::{ACCT}:user/alice"], None),
    (["--principal", "Ops"], None),
    (["--access-key", "ASIAEXAMPLEBOB"], lambda r: isinstance(r.get("userIdentity"), dict) and r["userIdentity"].get("accessKeyId") == "ASIAEXAMPLEBOB"),
    (["--ip", "203.0.113.9"], lambda r: r.get("sourceIPAddress") == "203.0.113.9"),
    (["--account", ACCT], lambda r: r.get("recipientAccountId") == ACCT),
    (["--region", "eu-west-1,us-west-2"], lambda r: r.get("awsRegion") in ("eu-west-1", "us-west-2")),
    (["--errors"], lambda r: r.get("errorCode") is not None),
    (["--errors", "--source", "ec2", "--region", "us-east-1"],
     lambda r: r.get("errorCode") is not None and r.get("eventSource") == "ec2.amazonaws.com" and r.get("awsRegion") == "us-east-1"),
]


def principal_match(r, p):
    ui = r.get("userIdentity")
    if not isinstance(ui, dict):
        return False
    si = ((ui.get("sessionContext") or {}).get("sessionIssuer") or {}) if isinstance(ui.get("sessionContext"), dict) else {}
    return p in (ui.get("arn"), ui.get("userName"), ui.get("principalId"), si.get("arn"), si.get("userName"))


@pytest.mark.parametrize("args,pred", FILTERS, ids=[" ".join(a) for a, _ in FILTERS])
def test_filters_against_the_files(args, pred, loaded, trailsetup_bin, opensearch_url):
    prefix, by_id, env = loaded
    if pred is None:
        pred = lambda r, p=args[1]: principal_match(r, p)
    want = {i for i, r in by_id.items() if pred(r)}
    assert want, f"the data has no event for {args}: the test would prove nothing"
    out, _ = search(trailsetup_bin, env, opensearch_url, prefix, *args, "--since", "all", "--all")
    assert ids_of(out) == want


def test_window_limit_order_and_counts(loaded, trailsetup_bin, opensearch_url):
    prefix, by_id, env = loaded
    # default window: the last 90 days: only the near misses (the fixtures are older)
    out, _ = search(trailsetup_bin, env, opensearch_url, prefix, "--all")
    assert eids(ids_of(out)) == {r["eventID"] for r in near_misses()}
    # one day, by dates: exactly that day's events, newest first
    day = "2022-08-18"
    want = {i for i, r in by_id.items() if str(r.get("eventTime", "")).startswith(day)}
    assert want
    out, _ = search(trailsetup_bin, env, opensearch_url, prefix, "--from", day, "--to", day, "--all")
    doc = json.loads(out)["search"]
    assert {(e["index"], e["id"]) for e in doc["events"]} == want
    times = [e["eventTime"] for e in doc["events"]]
    assert times == sorted(times, reverse=True)
    # --limit: the newest N of the total
    out, _ = search(trailsetup_bin, env, opensearch_url, prefix, "--since", "all", "--limit", "7")
    doc = json.loads(out)["search"]
    assert len(doc["events"]) == 7 and doc["total"] == len(by_id)
    # counts by event over everything equal a count over the files
    out, _ = search(trailsetup_bin, env, opensearch_url, prefix, "--since", "all", "--count-by", "event", "--all")
    doc = json.loads(out)["search"]
    want = Counter(r.get("eventName") for r in by_id.values() if isinstance(r.get("eventName"), str))
    assert {c["key"]: c["count"] for c in doc["counts"]} == dict(want)
    out, _ = search(trailsetup_bin, env, opensearch_url, prefix, "--since", "all", "--count-by", "principal", "--preset", "root-activity")
    assert json.loads(out)["search"]["counts"]
    out, _ = search(trailsetup_bin, env, opensearch_url, prefix, "--since", "all", "--count-by", "day", "--limit", "3")
    days = [c["key"] for c in json.loads(out)["search"]["counts"]]
    assert len(days) == 3 and days == sorted(days, reverse=True) and re.fullmatch(r"\d{4}-\d\d-\d\d", days[0])


def test_output_formats(loaded, trailsetup_bin, opensearch_url):
    prefix, by_id, env = loaded
    args = ("--resource", "i-0abc1234def567890", "--since", "all")
    out, _ = search(trailsetup_bin, env, opensearch_url, prefix, *args, output="jsonl")
    docs = [json.loads(l) for l in out.splitlines()]
    assert [d["eventID"] for d in docs] == ["nm-terminate"]
    # the stored document: the record as delivered plus @timestamp; the investigation fields are indexed, not stored
    want = dict(next(r for r in by_id.values() if r.get("eventID") == "nm-terminate"))
    want["@timestamp"] = docs[0]["@timestamp"]
    assert docs[0]["@timestamp"].startswith(want["eventTime"][:19])
    assert docs[0] == want and "@trailsetup" not in docs[0]
    out, _ = search(trailsetup_bin, env, opensearch_url, prefix, *args, output="csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 1 and rows[0]["eventName"] == "TerminateInstances" and rows[0]["principal"].endswith("user/alice")
    out, _ = search(trailsetup_bin, env, opensearch_url, prefix, *args, output="human")
    assert "TerminateInstances" in out and "user/alice" in out
    out, err = search(trailsetup_bin, env, opensearch_url, prefix, "--resource", "i-doesnotexist", "--since", "all", output="human")
    assert out.strip() == "no events"
    out, _ = search(trailsetup_bin, env, opensearch_url, prefix, "--resource", "i-doesnotexist", "--since", "all")
    assert json.loads(out) == {"search": {"total": 0, "events": []}}


def test_bad_input_and_unreachable(loaded, trailsetup_bin, opensearch_url):
    prefix, _, env = loaded
    _, err = search(trailsetup_bin, env, opensearch_url, prefix, "--preset", "nope", expect=2)
    assert "root-activity" in err and "open-to-world" in err
    _, err = search(trailsetup_bin, env, opensearch_url, prefix, "--since", "7x", expect=2)
    assert "--since" in err
    _, err = search(trailsetup_bin, env, opensearch_url, prefix, "--from", "2024-13-01", expect=2)
    assert "--from" in err
    _, err = search(trailsetup_bin, env, opensearch_url, prefix, "--count-by", "nope", expect=2)
    assert "principal" in err
    from conftest import run_cli_with

    rc, out, err = run_cli_with(trailsetup_bin, ["search", "--opensearch-url", "http://127.0.0.1:9", "--index-prefix", prefix], env=env)
    assert rc == 1 and "127.0.0.1:9" in err, err
    rc, out, err = run_cli_with(trailsetup_bin, ["search", "--name", "nosuchstack"], env=dict(env, AWS_ENDPOINT_URL="http://127.0.0.1:9",
                                                                                           AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y", AWS_REGION="us-east-1"))
    assert rc == 2 and "--opensearch-url" in err, err
    rc, out, err = run_cli_with(trailsetup_bin, ["search", "--preset", "list"], env=env)
    assert rc == 0 and "CloudWatch.3" in out and "open-to-world" in out


def test_migrate_upgrades_old_indices_in_place(trailsetup_bin, opensearch_url, os_clean, tmp_path):
    """Indices made before the investigation fields: search says so, `migrate` upgrades them with every document
    and its stored source unchanged, and finishes a migration that stopped half-way."""
    from conftest import run_cli_with

    prefix = os_clean
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TRAILSETUP_STATE_DIR": str(tmp_path / "state")}
    old = json.loads(subprocess.run(["git", "-C", str(REPO), "show", "ac4b16d:templates/index-template.json"],
                                    capture_output=True, check=True).stdout)
    old["index_patterns"] = [f"{prefix}-*"]
    old["priority"] = 100 + len(prefix)
    old["template"]["aliases"] = {prefix: {}}
    assert "@trailsetup" not in json.dumps(old)
    requests.put(f"{opensearch_url}/_index_template/{prefix}-trailsetup", json=old, timeout=30).raise_for_status()
    lines, stored = [], {}
    for v in map(json.loads, VECTORS.read_text().splitlines()):
        if v["name"].startswith("fixture:") and v.get("document") and v["index"] != "cloudtrail-undated":
            index = prefix + v["index"][len(v["prefix"]):]
            doc = {k: x for k, x in v["document"].items() if k != "@trailsetup"}
            if (index, v["id"]) in stored:
                continue
            stored[(index, v["id"])] = doc
            lines += [json.dumps({"create": {"_index": index, "_id": v["id"]}}), json.dumps(doc)]
    r = requests.post(f"{opensearch_url}/_bulk?refresh=true", data="\n".join(lines) + "\n",
                      headers={"content-type": "application/x-ndjson"}, timeout=300).json()
    assert r["errors"] is False
    indices = sorted({i for i, _ in stored})
    rid = "i-0bf2c5c4a3c2f5a4e"  # a resource no old index can answer for: any id works, the warning is the point
    rc, out, err = run_cli_with(trailsetup_bin, ["search", "--output", "json", "--opensearch-url", opensearch_url, "--index-prefix", prefix,
                                                 "--since", "all", "--resource", rid], env=env)
    assert rc == 0 and "trailsetup migrate" in err and "older trailsetup" in err, err
    # a migration that stopped half-way: one index moved to its migrate.* copy and deleted
    half = indices[0]
    requests.put(f"{opensearch_url}/migrate.{half}", json={}, timeout=30).raise_for_status()
    requests.post(f"{opensearch_url}/_reindex?refresh=true", json={"source": {"index": half}, "dest": {"index": f"migrate.{half}"}},
                  timeout=300).raise_for_status()
    requests.delete(f"{opensearch_url}/{half}", timeout=30).raise_for_status()

    rc, out, err = run_cli_with(trailsetup_bin, ["migrate", "--output", "json", "--opensearch-url", opensearch_url, "--index-prefix", prefix],
                                env=env, timeout=600)
    assert rc == 0, err[-3000:]
    m = json.loads(out)["migrate"]
    assert sorted(m["indices"]) == indices
    # every document back, its stored source unchanged; the copies gone; the mapping current
    for index in indices:
        mapping = requests.get(f"{opensearch_url}/{index}/_mapping", timeout=30).json()[index]["mappings"]
        assert "@trailsetup" in mapping["properties"] and mapping["_source"]["excludes"] == ["@trailsetup"], index
    assert requests.get(f"{opensearch_url}/_cat/indices/migrate.{prefix}-*?format=json", timeout=30).json() == []
    requests.post(f"{opensearch_url}/{prefix}/_refresh", timeout=60)
    got = {}
    page = requests.post(f"{opensearch_url}/{prefix}-*/_search?scroll=2m", json={"size": 1000, "sort": ["_doc"]}, timeout=60).json()
    while page["hits"]["hits"]:
        for h in page["hits"]["hits"]:
            got[(h["_index"], h["_id"])] = h["_source"]
        page = requests.post(f"{opensearch_url}/_search/scroll", json={"scroll": "2m", "scroll_id": page["_scroll_id"]}, timeout=60).json()
    assert got == stored
    # and the investigation fields answer: every TerminateInstances' instance id, straight from the documents
    want = {k for k, d in stored.items() if d.get("eventName") == "TerminateInstances" and "i-" in json.dumps(d.get("requestParameters"))}
    assert want
    some = next(iter(want))
    iid = re.search(r'"(i-[0-9a-f]+)"', json.dumps(stored[some]["requestParameters"])).group(1)
    rc, out, err = run_cli_with(trailsetup_bin, ["search", "--output", "json", "--opensearch-url", opensearch_url, "--index-prefix", prefix,
                                                 "--since", "all", "--all", "--resource", iid], env=env)
    assert rc == 0 and "older trailsetup" not in err
    assert some in ids_of(out)
    # a second run has nothing to do
    rc, out, err = run_cli_with(trailsetup_bin, ["migrate", "--output", "json", "--opensearch-url", opensearch_url, "--index-prefix", prefix], env=env)
    assert rc == 0 and json.loads(out)["migrate"]["indices"] == []
