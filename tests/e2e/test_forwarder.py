"""The CloudWatch Logs forwarder Lambda (templates/forwarder/), run in-process.

1. every shared vector (tests/vectors/vectors.jsonl) against ctdoc.py, byte for byte, and the `@trailsetup` cases a
   vector cannot hold (checked against doc.rs by hand: serde_json's nesting limit and lone surrogates);
2. the handler on CloudWatch Logs payloads built from the fixture records, against the real node;
3. `_bulk` triage through tests/e2e/faultproxy.py: request-level 429/500, per-item 429 and 400,
   slow answers; no record lost, rejects reach the dead-letter queue (moto SQS) or stdout;
4. basic auth from the Secrets Manager secret OPENSEARCH_SECRET_ARN names (moto), read once per container; no
   readable secret -> the invocation raises, nothing is sent;
5. INDEX_GRANULARITY: month indices; a value other than day/month fails the invocation before anything is sent.
"""

from __future__ import annotations

import base64
import gzip
import json
import sys
from collections import Counter
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "templates" / "forwarder"))
sys.path.insert(0, str(REPO / "tests" / "vectors"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import ctdoc  # noqa: E402
import forwarder  # noqa: E402
import make_vectors  # noqa: E402
from faultproxy import FaultProxy  # noqa: E402

VECTORS = REPO / "tests" / "vectors" / "vectors.jsonl"


# --- helpers ---------------------------------------------------------------------------------------

def cwl_event(messages: list[str], message_type: str = "DATA_MESSAGE") -> dict:
    payload = {
        "messageType": message_type,
        "owner": "123456789012",
        "logGroup": "aws-cloudtrail-logs-123456789012",
        "logStream": "123456789012_CloudTrail_us-east-1",
        "subscriptionFilters": ["trailsetup"],
        "logEvents": [{"id": str(i), "timestamp": 1660842600000 + i, "message": m} for i, m in enumerate(messages)],
    }
    return {"awslogs": {"data": base64.b64encode(gzip.compress(json.dumps(payload).encode())).decode()}}


@pytest.fixture(scope="module")
def fixture_texts() -> list[str]:
    texts = [t for _, t in make_vectors.fixture_records(make_vectors.DEFAULT_FIXTURES)]
    assert len(texts) == 1505
    return texts


def expected_unique(texts: list[str], prefix: str) -> int:
    return len({(d.index, d.id) for d in (ctdoc.build(t, prefix) for t in texts)})


def install_template(url: str, prefix: str) -> None:
    tpl = json.loads((REPO / "templates" / "index-template.json").read_text())
    tpl["index_patterns"] = [f"{prefix}-*"]
    r = requests.put(f"{url}/_index_template/{prefix}", json=tpl, timeout=30)
    assert r.status_code == 200, r.text


def count(url: str, prefix: str) -> int:
    requests.post(f"{url}/{prefix}-*/_refresh", timeout=60)
    r = requests.get(f"{url}/{prefix}-*/_count", timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["count"]


def run(texts: list[str], chunk: int = 200) -> dict:
    total = Counter()
    for i in range(0, len(texts), chunk):
        total.update(forwarder.handler(cwl_event(texts[i:i + chunk]), None))
    return {k: total[k] for k in ("records", "indexed", "duplicates", "rejected")}


@pytest.fixture
def fw_env(monkeypatch, opensearch_url, os_clean):
    """Forwarder environment for a per-test prefix, direct to the node, fast backoff."""
    for k in ("DLQ_URL", "OPENSEARCH_USER", "OPENSEARCH_PASSWORD", "OPENSEARCH_SECRET_ARN"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(forwarder, "_SECRETS", {})
    monkeypatch.setenv("OPENSEARCH_URL", opensearch_url)
    monkeypatch.setenv("OPENSEARCH_AUTH", "none")
    monkeypatch.setenv("INDEX_PREFIX", os_clean)
    monkeypatch.setenv("FORWARDER_RETRY_BASE_MS", "1")
    monkeypatch.setenv("FORWARDER_RETRY_CAP_MS", "20")
    monkeypatch.setenv("FORWARDER_MAX_ATTEMPTS", "8")
    install_template(opensearch_url, os_clean)
    return os_clean


# --- 1. vectors --------------------------------------------------------------------------------------

def test_every_vector_matches_ctdoc():
    lines = VECTORS.read_text(encoding="utf-8").splitlines()
    vectors = [json.loads(x) for x in lines]
    assert sum(v["name"].startswith("fixture:") for v in vectors) == 1505
    assert sum(v["name"].startswith("edge:") for v in vectors) >= 80
    assert any(v.get("granularity") == "month" for v in vectors)
    assert any(v["document"] is None for v in vectors)
    assert sum("@trailsetup" in v["document"] for v in vectors if v["document"] is not None) >= 1000
    bad = []
    for v in vectors:
        try:
            d = ctdoc.build(v["record_text"], v["prefix"], granularity=v.get("granularity", "day"))
        except ctdoc.DocError:
            if v["document"] is not None:
                bad.append(v["name"])
            continue
        got = (d.index, d.id, d.document(), d.body.decode("utf-8"))
        if got != (v["index"], v["id"], v["document"], v["document_text"]):
            bad.append(v["name"])
        # the body is one line, and the action line names the same index and id
        assert b"\n" not in d.body and b"\r" not in d.body
        assert json.loads(d.action()) == {"create": {"_index": v["index"], "_id": v["id"]}}
    assert not bad, bad[:20]


def _nest(n: int, leaf: str) -> str:
    return "[" * n + leaf + "]" * n


# Records whose documents no vector can hold: a blob (or userIdentity) serde_json cannot read as a Value gives
# nothing, and a body holding one is no JSON serde_json reads (tests/vectors.rs reads every body, and every vector line,
# whose document sits two levels down, with serde_json's limit of 127 levels). Each: the record (compact, keys sorted,
# no eventTime) and the @trailsetup doc.rs writes for it (redaction on), or "" for none, or None when doc.rs refuses
# the record; checked against `append_bulk` when written.
BEYOND_VECTORS = [
    # a blob is read from its own root: 127 levels give their values, 128 give nothing (the other blobs still count)
    ('{"eventID":"n1","requestParameters":{"s":"shallow","x":' + _nest(126, '"deep"') + '}}',
     '{"resources":["deep","shallow"]}'),
    ('{"eventID":"n2","requestParameters":{"s":"shallow","x":' + _nest(127, '"deep"') + '},"responseElements":{"r":"kept"}}',
     '{"resources":["kept"]}'),
    ('{"eventID":"n3","requestParameters":' + '{"k":' * 127 + '"deep"' + "}" * 127 + "}", '{"resources":["deep"]}'),
    ('{"eventID":"n4","requestParameters":' + '{"k":' * 128 + '"deep"' + "}" * 128 + "}", ""),
    ('{"eventID":"n5","userIdentity":{"arn":"A","x":' + _nest(126, "1") + '}}', '{"principal":"A"}'),
    ('{"eventID":"n6","userIdentity":{"arn":"A","x":' + _nest(127, "1") + '}}', ""),
    # the whole record: 127 levels can be hashed (canonical _id) and redacted (body rebuilt), 128 cannot
    ('{"requestParameters":' + _nest(126, '"x"') + "}", '{"resources":["x"]}'),
    ('{"requestParameters":' + _nest(127, '"x"') + "}", None),
    ('{"eventID":"k1","requestParameters":' + _nest(126, '"x"') + ',"responseElements":{"credentials":{"sessionToken":"S"}}}',
     '{"resources":["x"]}'),
    ('{"eventID":"k2","requestParameters":' + _nest(127, '"x"') + ',"responseElements":{"credentials":{"sessionToken":"S"}}}',
     None),
    # out-of-range numbers
    ('{"additionalEventData":-1e999,"eventID":"r1","requestParameters":{"a":"gone","x":1e400},"responseElements":{"b":"kept"}}',
     '{"resources":["kept"]}'),
    ('{"eventID":"r2","userIdentity":{"arn":"arn:aws:iam::1:user/u","x":1e400}}', ""),
    ('{"eventID":"r3","requestParameters":{"a":"first"},"requestParameters":[1e400]}', ""),  # the last counts
    ('{"eventID":"r4","requestParameters":[1e400],"requestParameters":{"a":"last"}}',
     '{"resources":["last"]}'),
    ('{"eventID":"r5","requestParameters":{"a":[1e400],"a":"x","b":"y"}}', ""),  # a replaced value is read too
    ('{"x":1e400,"x":1}', None),
    # lone surrogates
    ('{"eventID":"u1","requestParameters":{"ok":"yes"},"responseElements":{"k":"\\ud800","o":"gone"}}',
     '{"resources":["yes"]}'),
    ('{"additionalEventData":{"x":"kept"},"eventID":"u2","responseElements":{"\\udc00":"v","o":"gone"}}',
     '{"resources":["kept"]}'),
    ('{"eventID":"u3","requestParameters":{"a":"b"},"userIdentity":{"arn":"A","userName":"\\ud83d\\u0041"}}',
     '{"resources":["b"]}'),
    ('{"eventID":"u4","requestParameters":{"a":"b"},"responseElements":{"credentials":{"sessionToken":"\\ud800"}}}',
     None),
    ('{"eventID":"u5","requestParameters":{"a":"b"},"responseElements":{"credentials":{"\\ud800":1,"sessionToken":"t"}}}',
     None),
    ('{"eventID":"u6","requestParameters":{"a":"b"},"x":"\\ud800"}', '{"resources":["b"]}'),
    ('{"responseElements":{"k":"\\ud800"}}', None),
]


def _expected_body(text: str, related: str) -> str:
    """doc.rs's document for a BEYOND_VECTORS record: @trailsetup first, then the record (redacted when it has a
    sessionToken: keys sorted, which these records already are)."""
    body = text.replace('"sessionToken":"S"', '"sessionToken":"REDACTED"').replace('"sessionToken":"t"',
                                                                                   '"sessionToken":"REDACTED"')
    return body if not related else '{"@trailsetup":' + related + "," + body[1:]


@pytest.mark.parametrize("text,related", BEYOND_VECTORS, ids=[f"{i}" for i in range(len(BEYOND_VECTORS))])
def test_trailsetup_beyond_the_vectors(text, related):
    if related is None:
        with pytest.raises(ctdoc.DocError):
            ctdoc.build(text)
        return
    assert ctdoc.build(text).body.decode("utf-8") == _expected_body(text, related)


def test_trailsetup_spot_checks():
    def ts(text: str, redact: bool = True):
        return json.loads(ctdoc.build(text, redact=redact).body).get("@trailsetup")

    # fields: only the listed paths (ctdoc.FIELD_PATHS, doc.rs FIELD_PATHS), strings, booleans and integers
    assert ts('{"userIdentity":{"userName":"u"},"requestParameters":{"i":"arn:aws:ec2:us-east-1:1:instance/i-0abc",'
              '"cidrIp":"0.0.0.0/0","cidrBlock":3,"f":1.5,"b":false,"z":null},"additionalEventData":{"MFAUsed":false}}') == {
        "principal": "u",
        "resources": ["0.0.0.0/0", "arn:aws:ec2:us-east-1:1:instance/i-0abc", "i-0abc"],
        "fields": ["additionalEventData.MFAUsed=false", "requestParameters.cidrBlock=3", "requestParameters.cidrIp=0.0.0.0/0"]}
    tok = '{"eventID":"e","responseElements":{"credentials":{"sessionToken":"SECRET","accessKeyId":"ASIA"}}}'
    assert "SECRET" not in json.dumps(ts(tok))
    assert "SECRET" in ts(tok, redact=False)["resources"]
    assert json.loads(ctdoc.build(tok, redact=False).body)["responseElements"]["credentials"]["sessionToken"] == "SECRET"
    assert ts('{"@trailsetup":{},"userIdentity":{"arn":"a"}}') == {}  # the record's own, as delivered
    assert ts('{"eventID":"e","userIdentity":{"arn":""},"requestParameters":{"f":0.5}}') is None
    d = ctdoc.build('{"eventID":"e","eventTime":"2022-08-31T23:30:00-01:00"}', granularity="month")
    assert d.index == "cloudtrail-2022.09"
    with pytest.raises(ValueError):
        ctdoc.build('{"eventID":"e"}', granularity="week")


def test_doc_rules_spot_checks():
    b = ctdoc.build
    assert b('{"eventID":"x","eventTime":"2026-01-11 22:54:56.000000000"}').document()["@timestamp"] == \
        "2026-01-11T22:54:56.000Z"
    assert b('{"eventTime":"2020-12-31T23:30:00-01:00","eventID":"x"}').index == "cloudtrail-2021.01.01"
    assert b('{"eventID":""}').id.startswith("sha256:")
    # same record, other whitespace/key order -> same hashed id
    assert b('{"b":1,"a":[1,2.5]}').id == b('{ "a" : [1, 2.5],\n "b": 1 }').id
    assert ctdoc.canonical_bytes(json.loads('{"b":1e20,"a":1e-7,"c":0.00001,"d":-0}')) == \
        b'{"a":1e-7,"b":1e+20,"c":0.00001,"d":0}'  # plain json.loads: -0 is int here
    for bad in ("[1]", '{"a":1} x', '{"a":', '{"eventID":"a","eventID":"b"}', '{"x":NaN}'):
        with pytest.raises(ctdoc.DocError):
            b(bad)
    # out-of-range numbers: fine in a record with an eventID (passed through), not hashable without
    assert b('{"eventID":"a","x":1e400}').id == "a"
    with pytest.raises(ctdoc.DocError):
        b('{"x":1e400}')


# --- 2. the handler against the node -------------------------------------------------------------

def test_control_message_is_ignored(fw_env, opensearch_url):
    assert forwarder.handler(cwl_event([], "CONTROL_MESSAGE"), None) == \
        {"records": 0, "indexed": 0, "duplicates": 0, "rejected": 0}


def test_handler_loads_all_fixture_records(fw_env, opensearch_url, fixture_texts):
    prefix = fw_env
    unique = expected_unique(fixture_texts, prefix)
    s = run(fixture_texts)
    assert s["records"] == 1505
    assert s["rejected"] == 0, s
    assert s["indexed"] == unique and s["duplicates"] == 1505 - unique, s
    assert count(opensearch_url, prefix) == unique
    # a second delivery adds nothing
    s2 = run(fixture_texts)
    assert s2 == {"records": 1505, "indexed": 0, "duplicates": 1505, "rejected": 0}
    assert count(opensearch_url, prefix) == unique
    # spot check: a document as stored (@trailsetup is indexed, not stored: the template keeps it out of _source)
    d = ctdoc.build(fixture_texts[0], prefix)
    want = d.document()
    related = want.pop("@trailsetup")
    r = requests.get(f"{opensearch_url}/{d.index}/_doc/{requests.utils.quote(d.id, safe='')}", timeout=30)
    assert r.status_code == 200 and r.json()["_source"] == want
    # ... and found through it
    for field, value in (("principal", related["principal"]), ("resources", related["resources"][0])):
        q = {"query": {"bool": {"filter": [{"term": {f"@trailsetup.{field}": value}}, {"ids": {"values": [d.id]}}]}}}
        r = requests.post(f"{opensearch_url}/{d.index}/_search", json=q, timeout=30)
        assert r.status_code == 200 and r.json()["hits"]["total"]["value"] == 1, (field, value, r.text)


# --- 3. triage through the fault proxy -------------------------------------------------------------

def test_retries_request_and_item_failures_lose_nothing(fw_env, opensearch_url, fixture_texts, monkeypatch):
    prefix = fw_env
    texts = fixture_texts[:400]
    with FaultProxy(opensearch_url) as p:
        monkeypatch.setenv("OPENSEARCH_URL", p.url)
        p.fail_429, p.fail_500, p.item_429 = 2, 2, 50
        s = run(texts, chunk=100)
    assert p.injected["429"] == 2 and p.injected["500"] == 2 and p.injected["item_429"] == 50
    unique = expected_unique(texts, prefix)
    assert s["records"] == 400 and s["rejected"] == 0
    assert s["indexed"] == unique and s["indexed"] + s["duplicates"] == 400, s
    assert count(opensearch_url, prefix) == unique


def test_slow_answer_times_out_and_is_retried(fw_env, opensearch_url, fixture_texts, monkeypatch):
    prefix = fw_env
    texts = fixture_texts[:100]
    monkeypatch.setenv("FORWARDER_HTTP_TIMEOUT", "1")
    with FaultProxy(opensearch_url) as p:
        monkeypatch.setenv("OPENSEARCH_URL", p.url)
        p.delay_count, p.delay_s = 1, 2.5
        s = run(texts, chunk=100)
    # requests counts on arrival (bulk_requests only once a request is past its delay, which the timed-out
    # first one may not reach before the proxy closes)
    assert p.injected["delay"] == 1 and p.requests >= 2
    unique = expected_unique(texts, prefix)
    # the first (timed-out) request may still have landed: then the retry sees 409s
    assert s["records"] == 100 and s["rejected"] == 0 and s["indexed"] + s["duplicates"] == 100, s
    assert count(opensearch_url, prefix) == unique


def test_persistent_5xx_raises_then_redelivery_completes(fw_env, opensearch_url, fixture_texts, monkeypatch):
    prefix = fw_env
    texts = fixture_texts[:150]
    monkeypatch.setenv("FORWARDER_MAX_ATTEMPTS", "3")
    with FaultProxy(opensearch_url) as p:
        monkeypatch.setenv("OPENSEARCH_URL", p.url)
        p.item_429 = 10_000  # every item, every attempt
        with pytest.raises(forwarder.RetryableFailure):
            forwarder.handler(cwl_event(texts), None)
        p.item_429 = 0
        p.fail_500 = 100
        with pytest.raises(forwarder.RetryableFailure):
            forwarder.handler(cwl_event(texts), None)
        p.fail_500 = 0
        s = forwarder.handler(cwl_event(texts), None)  # Lambda's retry of the same invocation
    unique = expected_unique(texts, prefix)
    assert s["indexed"] + s["duplicates"] == 150 and s["rejected"] == 0
    assert count(opensearch_url, prefix) == unique


def test_rejected_items_go_to_sqs_dead_letters(fw_env, opensearch_url, fixture_texts, monkeypatch, boto, moto_reset):
    prefix = fw_env
    texts = fixture_texts[:300]
    docs = [ctdoc.build(t, prefix) for t in texts]
    reject = {d.id for d in docs[10:15]} | {docs[200].id}
    queue = boto("sqs").create_queue(QueueName="trailsetup-forwarder-dlq")["QueueUrl"]
    monkeypatch.setenv("DLQ_URL", queue)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_reset)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    bad_record = '["not", "an", "object"]'
    with FaultProxy(opensearch_url) as p:
        monkeypatch.setenv("OPENSEARCH_URL", p.url)
        p.reject_ids = reject
        p.item_429 = 7
        s = run(texts + [bad_record], chunk=100)
    n_rej_items = sum(1 for d in docs if d.id in reject)
    assert s["records"] == 301
    assert s["rejected"] == n_rej_items + 1, s
    assert s["indexed"] + s["duplicates"] + s["rejected"] == 301
    got = []
    sqs = boto("sqs")
    while True:
        r = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        msgs = r.get("Messages", [])
        if not msgs:
            break
        got += [json.loads(m["Body"]) for m in msgs]
        sqs.delete_message_batch(QueueUrl=queue, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                                          for i, m in enumerate(msgs)])
    assert len(got) == s["rejected"]
    by_id = {m["id"]: m for m in got if m["id"] is not None}
    assert set(by_id) == reject
    for m in by_id.values():
        assert "mapper_parsing_exception" in m["reason"] and m["index"].startswith(prefix + "-")
        want = next(d for d in docs if d.id == m["id"])
        assert m["document"] == want.document()
    (notdoc,) = [m for m in got if m["id"] is None]
    assert notdoc["document"] == bad_record and "not a JSON object" in notdoc["reason"]
    unique_ok = len({(d.index, d.id) for d in docs if d.id not in reject})
    assert count(opensearch_url, prefix) == unique_ok


def test_rejects_without_dlq_are_logged_to_stdout(fw_env, opensearch_url, fixture_texts, monkeypatch, capsys):
    prefix = fw_env
    texts = fixture_texts[:20]
    target = ctdoc.build(texts[3], prefix)
    with FaultProxy(opensearch_url) as p:
        monkeypatch.setenv("OPENSEARCH_URL", p.url)
        p.reject_ids = {target.id}
        s = forwarder.handler(cwl_event(texts), None)
    out = capsys.readouterr().out
    lines = [x for x in out.splitlines() if x.startswith(forwarder.REJECT_PREFIX + " ")]
    assert s["rejected"] == len(lines) >= 1
    m = json.loads(lines[0][len(forwarder.REJECT_PREFIX) + 1:])
    assert m["id"] == target.id and m["index"] == target.index and m["document"] == target.document()


def test_rejected_raw_records_are_redacted_in_dead_letters(fw_env, opensearch_url, boto, moto_reset, monkeypatch):
    """A log event that is not a document (here: a JSON array, and a cut-off object) goes to the dead-letter queue
    as text; its session tokens are redacted there as the documents are (the same rule as the Rust quarantine)."""
    queue = boto("sqs").create_queue(QueueName="trailsetup-forwarder-dlq")["QueueUrl"]
    monkeypatch.setenv("DLQ_URL", queue)
    for k, v in {"AWS_ENDPOINT_URL": moto_reset, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    bad = ['[{"responseElements": {"credentials": {"sessionToken": "SECRETTOKEN123"}}}]',
           '{"eventID": "x", "responseElements": {"credentials": {"sessionToken": "SECRETTOKEN456"']
    s = forwarder.handler(cwl_event(bad), None)
    assert s["rejected"] == 2
    got = boto("sqs").receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    bodies = [m["Body"] for m in got]
    assert len(bodies) == 2
    assert all("SECRETTOKEN" not in b and "REDACTED" in b for b in bodies), bodies


# --- 4. the forwarder and backfill build the same documents ----------------------------------------

def test_forwarder_then_backfill_adds_nothing_and_the_other_way_round(fw_env, opensearch_url, fixture_texts, run_cli, monkeypatch):
    from test_backfill import FIXTURES

    def backfill_json(prefix: str) -> dict:
        rc, out, err = run_cli(["backfill", "--output", "json", "--source-dir", str(FIXTURES), "--opensearch-url",
                                opensearch_url, "--index-prefix", prefix, "--restart"])
        assert rc == 0, err[-2000:]
        return json.loads(out)["backfill"]

    prefix = fw_env
    unique = expected_unique(fixture_texts, prefix)
    s = run(fixture_texts)
    assert s["indexed"] == unique and s["rejected"] == 0
    b = backfill_json(prefix)
    assert b["records"] == 1505 and b["indexed"] == 0 and b["duplicates"] == 1505
    assert count(opensearch_url, prefix) == unique

    other = prefix + "-b"
    b = backfill_json(other)
    assert b["indexed"] == expected_unique(fixture_texts, other)
    monkeypatch.setenv("INDEX_PREFIX", other)
    s = run(fixture_texts)
    assert s["indexed"] == 0 and s["duplicates"] == 1505
    assert count(opensearch_url, other) == b["indexed"]


# --- SigV4 is scoped to the domain's region, not the function's (OpenSearch Service Developer Guide, "Signing HTTP
# requests to Amazon OpenSearch Service"; a wrong scope is refused with "Credential should be scoped to a valid
# region") -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("opensearch_region,url,want", [
    ("us-east-1", "http://127.0.0.1:9", "us-east-1"),                                          # what init sets
    ("", "https://search-audit-abc123.us-east-1.es.amazonaws.com", "us-east-1"),               # from the host
    ("", "https://vpc-audit-abc123.ap-southeast-3.es.amazonaws.com", "ap-southeast-3"),
    ("", "https://abc.cn-north-1.es.amazonaws.com.cn", "cn-north-1"),
    ("", "http://127.0.0.1:9", "eu-west-1"),                                                   # last resort
])
def test_forwarder_signs_for_the_domain_region(monkeypatch, opensearch_region, url, want):
    monkeypatch.setenv("AWS_REGION", "eu-west-1")  # the Lambda's own region
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("OPENSEARCH_REGION", opensearch_region)
    s = forwarder.Sink(url, "sigv4", 5)
    h = s._headers("POST", url + "/cloudtrail/_bulk", b"{}\n")
    auth = h["Authorization"]
    assert f"/{want}/es/aws4_request" in auth, auth


# --- basic auth: the user and password come from Secrets Manager, never from the environment ("Working with Lambda
# environment variables": use Secrets Manager for credentials; "Use Secrets Manager secrets in Lambda functions") -----

@pytest.fixture
def moto_aws(monkeypatch, moto_reset):
    """boto3 inside the forwarder talks to this test's moto (the function's own region: us-east-1)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_reset)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return moto_reset


def basic_header(user: str, pw: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()


def test_basic_auth_reads_the_secret_once_and_sends_it(fw_env, opensearch_url, fixture_texts, monkeypatch, boto, moto_aws):
    prefix = fw_env
    texts = fixture_texts[:50]
    # the secret in another region than the function's: the client goes to the ARN's region
    sm = boto("secretsmanager", "eu-west-1")
    arn = sm.create_secret(Name="trailsetup/opensearch-basic-auth",
                           SecretString=json.dumps({"username": "writer", "password": "pw-1 with: colon"}))["ARN"]
    monkeypatch.setenv("OPENSEARCH_AUTH", "basic")
    monkeypatch.setenv("OPENSEARCH_SECRET_ARN", arn)
    with FaultProxy(opensearch_url) as p:
        monkeypatch.setenv("OPENSEARCH_URL", p.url)
        s = forwarder.handler(cwl_event(texts), None)
        assert p.last_auth == basic_header("writer", "pw-1 with: colon")
        assert s["records"] == 50 and s["rejected"] == 0 and s["indexed"] + s["duplicates"] == 50
        # cached for the life of the container: a new value is read by the next cold start only
        sm.put_secret_value(SecretId=arn, SecretString=json.dumps({"username": "writer", "password": "pw-2"}))
        sm.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
        forwarder.handler(cwl_event(texts[:5]), None)
        assert p.last_auth == basic_header("writer", "pw-1 with: colon")
    assert count(opensearch_url, prefix) == expected_unique(texts, prefix)
    assert forwarder.region_from_secret_arn(arn) == "eu-west-1"


@pytest.mark.parametrize("case", ["no variable", "no secret", "not json", "no password", "empty password", "not an arn"])
def test_basic_auth_without_a_readable_secret_raises(fw_env, opensearch_url, fixture_texts, monkeypatch, boto, moto_aws, case):
    sm = boto("secretsmanager")
    values = {"not json": "writer:pw", "no password": json.dumps({"username": "writer"}),
              "empty password": json.dumps({"username": "writer", "password": ""})}
    monkeypatch.setenv("OPENSEARCH_AUTH", "basic")
    if case in values:
        monkeypatch.setenv("OPENSEARCH_SECRET_ARN", sm.create_secret(Name=f"t-{len(case)}", SecretString=values[case])["ARN"])
    elif case == "no secret":
        monkeypatch.setenv("OPENSEARCH_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:trailsetup/gone-AbCdEf")
    elif case == "not an arn":
        monkeypatch.setenv("OPENSEARCH_SECRET_ARN", "trailsetup/opensearch-basic-auth")
    with FaultProxy(opensearch_url) as p:
        monkeypatch.setenv("OPENSEARCH_URL", p.url)
        with pytest.raises(RuntimeError) as e:
            forwarder.handler(cwl_event(fixture_texts[:3]), None)
        assert p.requests == 0, "nothing is sent without credentials"
    msg = str(e.value)
    want = {"no variable": "OPENSEARCH_SECRET_ARN is not set", "no secret": "cannot read the OpenSearch credentials",
            "not an arn": "not a Secrets Manager secret ARN"}.get(case, "non-empty \"username\" and \"password\"")
    assert want in msg, msg
    assert "pw" not in msg.replace("password", "")
    assert forwarder._SECRETS == {}


# --- 5. index granularity ------------------------------------------------------------------------------------------

def test_month_granularity_writes_monthly_indices(fw_env, opensearch_url, fixture_texts, monkeypatch):
    prefix = fw_env
    texts = fixture_texts[:200]
    monkeypatch.setenv("INDEX_GRANULARITY", "month")
    s = run(texts, chunk=100)
    docs = [ctdoc.build(t, prefix, granularity="month") for t in texts]
    unique = len({(d.index, d.id) for d in docs})
    assert s["records"] == 200 and s["rejected"] == 0 and s["indexed"] == unique, s
    assert count(opensearch_url, prefix) == unique
    r = requests.get(f"{opensearch_url}/_cat/indices/{prefix}-*?h=index&format=json", timeout=30)
    got = {x["index"] for x in r.json()}
    assert got == {d.index for d in docs}
    assert all(i == f"{prefix}-undated" or len(i) == len(prefix) + len("-YYYY.MM") for i in got), got


@pytest.mark.parametrize("value", ["weekly", "days", "monthly"])
def test_unknown_granularity_fails_before_sending(fw_env, opensearch_url, fixture_texts, monkeypatch, capsys, value):
    monkeypatch.setenv("INDEX_GRANULARITY", value)
    with FaultProxy(opensearch_url) as p:
        monkeypatch.setenv("OPENSEARCH_URL", p.url)
        with pytest.raises(RuntimeError) as e:
            forwarder.handler(cwl_event(fixture_texts[:3]), None)
        assert p.requests == 0, "nothing is sent with an unknown index layout"
    assert "INDEX_GRANULARITY must be day or month" in str(e.value) and value in str(e.value)
    logged = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    assert any(m.get("level") == "error" and m.get("INDEX_GRANULARITY") == value for m in logged), logged


def test_granularity_default_and_spelling(monkeypatch):
    monkeypatch.delenv("INDEX_GRANULARITY", raising=False)
    assert forwarder.index_granularity() == "day"
    for raw, want in (("", "day"), (" day ", "day"), ("month", "month"), ("Month", "month")):
        monkeypatch.setenv("INDEX_GRANULARITY", raw)
        assert forwarder.index_granularity() == want
