"""`trailsetup dashboards`, all on loopback.

OpenSearch Dashboards itself cannot be installed here (no package of it on this machine's registries, no Docker
engine), so everything is tested up to its API:

(a) the saved objects (`--export`, no network call) against the real OpenSearch node over the fixtures: every saved
    search's query and every visualization's aggregations run as Dashboards sends them (a lucene `query_string`
    with `analyze_wildcard`, the aggregations its vis types build) and none errors; each preset's saved search
    returns exactly the events `trailsetup search --preset X --since all --all` returns; every reference resolves.
(b) a fake upstream (http.server on 127.0.0.1) playing Dashboards' saved-objects API and a few pages, which checks
    every request's SigV4 signature independently with botocore (the canonical request rebuilt from what arrived,
    signed with the test credentials, compared) and records what arrived: the import's shape, a second install
    that imports nothing, and the proxy (token → cookie → pages; no token → 401 and nothing upstream; the client's
    Authorization and Cookie never upstream; redirects rewritten, not followed; path and query byte for byte;
    upstream down → 502 naming it; 403 explained).
(c) headless Chromium (Debian's chromium and chromium-driver, installed by `scripts/testenv.sh setup`) through the
    proxy: the token URL sets the cookie, a page of the fake loads, and its stylesheet, script and the API call its
    script makes arrive at the upstream signed.
"""

from __future__ import annotations

import email.parser
import hashlib
import http.client
import json
import os
import re
import selectors
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

import sigv4check
from conftest import free_port, run_cli_with

REPO = Path(__file__).resolve().parents[2]
PRESETS = json.loads((REPO / "templates" / "search-presets.json").read_text())["presets"]
from test_backfill import FIXTURES  # noqa: E402  (the fixtures beside the checkout, else TS_FIXTURES or /work/shared)

AK, SK, TOKEN, REGION = "AKIDDASHBOARDSTEST", "dashboards-test-secret", "dashboards-test-session-token", "us-east-1"


def bare_env(tmp_path: Path, **extra) -> dict:
    """No AWS configuration at all, a private HOME and state directory."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TRAILSETUP_STATE_DIR": str(tmp_path / "state"),
           "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": str(tmp_path / "none"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "NO_COLOR": "1"}
    env.update(extra)
    return env


def signing_env(tmp_path: Path) -> dict:
    return bare_env(tmp_path, AWS_ACCESS_KEY_ID=AK, AWS_SECRET_ACCESS_KEY=SK, AWS_SESSION_TOKEN=TOKEN, AWS_REGION=REGION)


def export(trailsetup_bin, tmp_path, prefix) -> list[dict]:
    # an endpoint that would refuse any call: --export makes none
    env = bare_env(tmp_path, AWS_ENDPOINT_URL="http://127.0.0.1:9", TRAILSETUP_OPENSEARCH_URL="http://127.0.0.1:9")
    rc, out, err = run_cli_with(trailsetup_bin, ["dashboards", "--export", "--index-prefix", prefix], env=env, timeout=60)
    assert rc == 0, err
    return [json.loads(line) for line in out.splitlines()]


# --- (a) the objects, and their queries on the real node ----------------------------------------------------------


def test_export_is_complete_stable_and_offline(trailsetup_bin, tmp_path):
    objs = export(trailsetup_bin, tmp_path, "cloudtrail")
    assert objs == export(trailsetup_bin, tmp_path, "cloudtrail")  # stable
    by_key = {(o["type"], o["id"]): o for o in objs}
    assert len(by_key) == len(objs)
    ip = by_key[("index-pattern", "trailsetup-cloudtrail")]
    assert ip["attributes"] == {"title": "cloudtrail-*", "timeFieldName": "@timestamp"}
    # one saved search per preset: its lucene, as lucene, titled by its control
    searches = {o["id"]: o for o in objs if o["type"] == "search"}
    assert len(searches) == len(PRESETS)
    for p in PRESETS:
        s = searches[f"trailsetup-cloudtrail-search-{p['name']}"]
        src = json.loads(s["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
        assert src["query"] == {"query": p["lucene"], "language": "lucene"}
        assert src["indexRefName"] == "kibanaSavedObjectMeta.searchSourceJSON.index"
        title = f"CIS {p['control']}: {p['title']}" if p["control"] else p["title"]
        assert s["attributes"]["title"] == title
    titles = {o["attributes"]["title"] for o in objs if o["type"] == "dashboard"}
    assert titles == {"CloudTrail overview", "CIS monitoring"}
    # Dashboards 2.x/3.x format: JSON strings, references by name, each type's newest migration
    mv = {"index-pattern": "7.6.0", "search": "7.9.3", "visualization": "7.10.0", "dashboard": "7.9.3"}
    for o in objs:
        assert o["migrationVersion"] == {o["type"]: mv[o["type"]]}
        # every reference resolves to an object in the export
        for r in o["references"]:
            assert (r["type"], r["id"]) in by_key, (o["id"], r)
        if o["type"] == "visualization":
            vs = json.loads(o["attributes"]["visState"])
            assert vs["type"] in {"histogram", "table"} and vs["title"] == o["attributes"]["title"]
            assert json.loads(o["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])["indexRefName"] == o["references"][0]["name"]
        if o["type"] == "dashboard":
            panels = json.loads(o["attributes"]["panelsJSON"])
            assert sorted(p["panelRefName"] for p in panels) == sorted(r["name"] for r in o["references"])
            assert o["attributes"]["timeRestore"] is True
    # nothing of a Kibana 8 object
    assert not any("coreMigrationVersion" in o or "typeMigrationVersion" in o for o in objs)
    # another prefix: other ids, the same shape
    other = export(trailsetup_bin, tmp_path, "ct-x")
    assert {o["id"].replace("trailsetup-ct-x", "trailsetup-cloudtrail") for o in other} == {o["id"] for o in objs}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory, trailsetup_bin, opensearch_url):
    """The fixtures (and test_search's near misses) loaded once under a module prefix."""
    from conftest import _os_delete_prefixed
    from test_search import load_fixtures_and_near_misses

    prefix = "ts-dash-" + hashlib.sha256(__file__.encode()).hexdigest()[:8]
    _os_delete_prefixed(opensearch_url, prefix)
    tmp = tmp_path_factory.mktemp("dash")
    env = bare_env(tmp)
    load_fixtures_and_near_misses(trailsetup_bin, opensearch_url, prefix, tmp, env)
    yield prefix, env, export(trailsetup_bin, tmp, prefix)
    _os_delete_prefixed(opensearch_url, prefix)


def os_search(base, prefix, body):
    r = requests.post(f"{base}/{prefix}-*/_search", json=body, timeout=120)
    assert r.status_code == 200, r.text[:2000]
    v = r.json()
    assert v["_shards"]["failed"] == 0, v["_shards"]
    return v


def lucene(q: str) -> dict:
    """A lucene query as Dashboards sends it (`query:queryString:options` is `{"analyze_wildcard": true}`)."""
    return {"query_string": {"query": q, "analyze_wildcard": True}} if q.strip() else {"match_all": {}}


def cli_ids(trailsetup_bin, env, opensearch_url, prefix, preset):
    rc, out, err = run_cli_with(trailsetup_bin, ["search", "--output", "json", "--opensearch-url", opensearch_url, "--index-prefix", prefix,
                                                 "--preset", preset, "--since", "all", "--all"], env=env, timeout=300)
    assert rc == 0, err[-3000:]
    doc = json.loads(out)["search"]
    return {(e["index"], e["id"]) for e in doc["events"]}


def test_saved_searches_return_what_search_returns(loaded, trailsetup_bin, opensearch_url):
    prefix, env, objs = loaded
    matched = 0
    for p in PRESETS:
        s = next(o for o in objs if o["id"] == f"trailsetup-{prefix}-search-{p['name']}")
        src = json.loads(s["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
        assert src["query"]["language"] == "lucene"
        # the saved search's query as Dashboards runs it, all time
        body = {"size": 10000, "_source": False, "track_total_hits": True, "query": {"bool": {"must": [lucene(src["query"]["query"])]}},
                "sort": [{"@timestamp": {"order": "desc", "unmapped_type": "boolean"}}]}
        v = os_search(opensearch_url, prefix, body)
        assert v["hits"]["total"]["value"] < 10000
        got = {(h["_index"], h["_id"]) for h in v["hits"]["hits"]}
        want = cli_ids(trailsetup_bin, env, opensearch_url, prefix, p["name"])
        assert got == want, p["name"]
        matched += bool(want)
        # and inside Dashboards' time filter (an index pattern on @timestamp): the dated ones among them
        body["query"]["bool"]["filter"] = [{"range": {"@timestamp": {"gte": "1970-01-01T00:00:00.000Z", "lte": "now",
                                                                     "format": "strict_date_optional_time"}}}]
        timed = {(h["_index"], h["_id"]) for h in os_search(opensearch_url, prefix, body)["hits"]["hits"]}
        assert timed <= want and all(i.endswith("-undated") for i, _ in want - timed), p["name"]
    # not vacuous: most questions have events in the fixtures and near misses
    assert matched >= 8, matched


def agg_of(a: dict) -> dict:
    """The OpenSearch aggregation Dashboards builds for one agg config of a visState."""
    p = a["params"]
    if a["type"] == "date_histogram":
        return {"date_histogram": {"field": p["field"], "fixed_interval": "1d", "min_doc_count": p.get("min_doc_count", 1),
                                   "time_zone": "UTC"}}
    if a["type"] == "terms":
        return {"terms": {"field": p["field"], "size": p["size"], "order": {"_count": p["order"]}}}
    if a["type"] == "filters":
        return {"filters": {"filters": {f["label"]: lucene(f["input"]["query"]) for f in p["filters"]}}}
    raise AssertionError(f"unexpected agg {a['type']}")


def test_visualizations_run_on_the_real_node(loaded, trailsetup_bin, opensearch_url):
    prefix, env, objs = loaded
    vis = [o for o in objs if o["type"] == "visualization"]
    assert len(vis) >= 8
    fields = set()
    for o in vis:
        vs = json.loads(o["attributes"]["visState"])
        query = json.loads(o["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])["query"]["query"]
        buckets = [a for a in vs["aggs"] if a["schema"] != "metric"]
        assert [a["type"] for a in vs["aggs"] if a["schema"] == "metric"] == ["count"]
        # nested in order, as Dashboards' tabify does
        aggs, inner = {}, None
        for a in buckets:
            node = agg_of(a)
            if inner is None:
                aggs[a["id"]] = node
            else:
                inner.setdefault("aggs", {})[a["id"]] = node
            inner = node
        v = os_search(opensearch_url, prefix, {"size": 0, "query": lucene(query), "aggs": aggs})
        top = v["aggregations"][buckets[0]["id"]]["buckets"]
        assert top, o["id"]  # every panel has something to show over the fixtures
        for a in buckets:
            fields.add(a["params"].get("field"))
        if buckets[0]["type"] == "filters":
            # the CIS table's counts are the presets' answers
            for p in PRESETS:
                label = f"CIS {p['control']}: {p['title']}" if p["control"] else p["title"]
                assert top[label]["doc_count"] == len(cli_ids(trailsetup_bin, env, opensearch_url, prefix, p["name"])), label
    assert {"eventSource", "eventName", "@trailsetup.principal", "userIdentity.arn", "sourceIPAddress", "recipientAccountId",
            "awsRegion", "errorCode", "@timestamp"} <= fields


# --- (b) a fake Dashboards that checks every signature -------------------------------------------------------------


def verify_sigv4(method: str, raw_path: str, headers: dict, body: bytes) -> str | None:
    """None when the request's SigV4 signature (service `es`, this file's credentials) is the one botocore computes
    from what arrived, else why not."""
    return sigv4check.verify_sigv4(method, raw_path, headers, body, access_key=AK, secret_key=SK, token=TOKEN,
                                   service="es", region=REGION)


PAGE = """<!doctype html><html><head><title>fake dashboards</title><link rel="stylesheet" href="/_dashboards/ui/app.css">
<script src="/_dashboards/ui/app.js"></script></head><body><h1>fake dashboards</h1><p id="out">loading</p></body></html>"""
SCRIPT = """
fetch('/_dashboards/api/saved_objects/_find?type=dashboard&search_fields=title&search=CIS%2FCloudTrail+overview',
      {headers: {'osd-xsrf': 'true'}})
  .then(r => r.json())
  .then(j => { document.getElementById('out').textContent = 'api:' + j.total; })
  .catch(e => { document.getElementById('out').textContent = 'error:' + e; });
"""


MIB = 1 << 20
BIG_CHUNKS = 50  # /_dashboards/stream/big: 50 MiB, one MiB at a time


def big_chunk(i: int) -> bytes:
    return hashlib.sha256(str(i).encode()).digest() * (MIB // 32)


def read_chunked(f) -> bytes:
    out = bytearray()
    while True:
        size = int(f.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while f.readline() not in (b"\r\n", b"\n", b""):
                pass
            return bytes(out)
        out += f.read(size)
        f.readline()


class Fake:
    """Dashboards' saved-objects API and a few pages, on 127.0.0.1; every request recorded with its signature's
    verdict. A request whose signature does not verify is refused with 403, as AWS would.

    auth: "sigv4" (botocore verifies each signature), "basic" (basic=(user, password)) or "none" (no Authorization
    may arrive). passthrough: an OpenSearch URL that every path outside /_dashboards is relayed to (so `init` and
    `destroy` can run against this one endpoint). `events` records, in order, what the streaming endpoints and the
    test did; `gate` lets /_dashboards/stream/big go on, `release` lets /_dashboards/stream/stall go on.
    """

    def __init__(self, basic: tuple[str, str] | None = None, auth: str = "sigv4", passthrough: str | None = None):
        self.basic = basic
        self.auth = "basic" if basic else auth
        self.passthrough = passthrough
        self.requests: list[dict] = []
        self.objects: dict[tuple, dict] = {}
        self.imports: list[dict] = []
        self.fail_delete: set[str] = set()
        self.events: list[str] = []
        self.gate, self.release = threading.Event(), threading.Event()
        self.lock = threading.Lock()
        fake = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _any(self):
                if self.headers.get("transfer-encoding", "").lower() == "chunked":
                    body, whole = read_chunked(self.rfile), True
                else:
                    n = int(self.headers.get("content-length") or 0)
                    body = self.rfile.read(n) if n else b""
                    whole = len(body) == n
                if not whole:
                    # the sender gave up half way: recorded, never answered
                    with fake.lock:
                        fake.requests.append({"method": self.command, "path": self.path, "incomplete": True, "body_len": len(body)})
                    self.close_connection = True
                    return
                fake.handle(self, body)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def event(self, what: str):
        with self.lock:
            self.events.append(what)

    def seen(self, path_start: str = "") -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["path"].startswith(path_start)]

    @staticmethod
    def reply(h, status: int, body: bytes | str, ctype: str = "application/json", extra: dict | None = None):
        if isinstance(body, str):
            body = body.encode()
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)

    def handle(self, h, body: bytes):
        headers = {k.lower(): v for k, v in h.headers.items()}
        rec = {"method": h.command, "path": h.path, "headers": headers, "body": body,
               "cookies": h.headers.get_all("cookie") or [], "authorizations": h.headers.get_all("authorization") or []}
        if self.auth == "basic":
            import base64

            want = "Basic " + base64.b64encode(f"{self.basic[0]}:{self.basic[1]}".encode()).decode()
            rec["sig_error"] = None if rec["authorizations"] == [want] else f"not the basic credentials: {rec['authorizations']}"
        elif self.auth == "none":
            rec["sig_error"] = f"an Authorization arrived: {rec['authorizations']}" if rec["authorizations"] else None
        else:
            rec["sig_error"] = verify_sigv4(h.command, h.path, headers, body)
        with self.lock:
            self.requests.append(rec)
        if rec["sig_error"]:
            return self.reply(h, 403, json.dumps({"message": "The request signature we calculated does not match the signature you provided."}))
        path, _, query = h.path.partition("?")
        xsrf = headers.get("osd-xsrf") == "true"
        if self.passthrough and not path.startswith("/_dashboards"):
            fwd = {k: headers[k] for k in ("content-type", "content-encoding") if k in headers}
            r = requests.request(h.command, self.passthrough + h.path, data=body or None, headers=fwd, timeout=120)
            return self.reply(h, r.status_code, b"" if h.command == "HEAD" else r.content, r.headers.get("content-type", "application/json"))
        if path == "/_dashboards/stream/big":
            # one MiB, then the rest only once the test says its client holds the first bytes (or after 30 s), a
            # tenth of a second apart
            h.send_response(200)
            h.send_header("Content-Type", "application/octet-stream")
            h.send_header("Content-Length", str(BIG_CHUNKS * MIB))
            h.end_headers()
            self.event("upstream: sending the first MiB")
            h.wfile.write(big_chunk(0))
            h.wfile.flush()
            if not self.gate.wait(30):
                self.event("upstream: no word from the client for 30 s")
            for i in range(1, BIG_CHUNKS):
                time.sleep(0.1)
                h.wfile.write(big_chunk(i))
                h.wfile.flush()
            self.event("upstream: finished")
            return None
        if path == "/_dashboards/stream/stall":
            # one MiB of ten, then silence until the test releases it
            h.send_response(200)
            h.send_header("Content-Type", "application/octet-stream")
            h.send_header("Content-Length", str(10 * MIB))
            h.end_headers()
            self.event("upstream: sending one MiB, then silence")
            h.wfile.write(big_chunk(0))
            h.wfile.flush()
            self.release.wait(120)
            self.event("upstream: released")
            h.close_connection = True
            return None
        if path == "/_dashboards/upload":
            return self.reply(h, 200, json.dumps({"len": len(body), "sha256": hashlib.sha256(body).hexdigest()}))
        m = re.fullmatch(r"/_dashboards/api/saved_objects/([^/]+)/([^/]+)", path)
        if m and h.command == "DELETE":
            if not xsrf:
                return self.reply(h, 400, json.dumps({"statusCode": 400, "error": "Bad Request", "message": "Request must contain a osd-xsrf header."}))
            if m.group(2) in self.fail_delete:
                return self.reply(h, 503, json.dumps({"statusCode": 503, "error": "Service Unavailable", "message": "try later"}))
            if self.objects.pop((m.group(1), m.group(2)), None) is None:
                return self.reply(h, 404, json.dumps({"statusCode": 404, "error": "Not Found",
                                                      "message": f"Saved object [{m.group(1)}/{m.group(2)}] not found"}))
            return self.reply(h, 200, "{}")
        if path == "/_dashboards/app/dashboards":
            return self.reply(h, 200, PAGE, "text/html; charset=utf-8",
                              {"Set-Cookie": "security_authentication=tenant-global; Path=/_dashboards; HttpOnly"})
        if path == "/_dashboards/ui/app.css":
            return self.reply(h, 200, "body { color: #123456; }", "text/css")
        if path == "/_dashboards/ui/app.js":
            return self.reply(h, 200, SCRIPT, "application/javascript")
        if path == "/_dashboards/api/saved_objects/_find":
            return self.reply(h, 200, json.dumps({"total": len(self.objects), "saved_objects": []}))
        if path == "/_dashboards/redirect-me":
            return self.reply(h, 302, "", extra={"Location": f"{self.url}/_dashboards/app/home?x=1#frag"})
        if path == "/_dashboards/forbidden":
            return self.reply(h, 403, json.dumps({"error": {"type": "security_exception", "reason": "no permissions for [indices:data/read/search]"}}))
        if path == "/_dashboards/api/saved_objects/_bulk_get" and h.command == "POST" and xsrf:
            out = []
            for want in json.loads(body):
                o = self.objects.get((want["type"], want["id"]))
                out.append(o or {"id": want["id"], "type": want["type"],
                                 "error": {"statusCode": 404, "error": "Not Found", "message": f"Saved object [{want['type']}/{want['id']}] not found"}})
            return self.reply(h, 200, json.dumps({"saved_objects": out}))
        if path == "/_dashboards/api/saved_objects/_import" and h.command == "POST" and xsrf:
            msg = email.parser.BytesParser().parsebytes(b"Content-Type: " + headers["content-type"].encode() + b"\r\n\r\n" + body)
            parts = [(p.get_param("name", header="content-disposition"), p.get_filename(), p.get_payload(decode=True)) for p in msg.get_payload()]
            objs = [json.loads(line) for line in parts[0][2].decode().splitlines() if line.strip()]
            self.imports.append({"query": query, "parts": [(n, f) for n, f, _ in parts], "objects": objs, "headers": headers})
            for o in objs:
                stored = dict(o, updated_at="2026-01-01T00:00:00.000Z", version="WzEsMV0=", namespaces=["default"])
                if o["type"] == "index-pattern":
                    # Dashboards fills in the fields on first use and saves them: not a difference
                    stored["attributes"] = dict(o["attributes"], fields='[{"name":"@timestamp","type":"date"}]')
                self.objects[(o["type"], o["id"])] = stored
            return self.reply(h, 200, json.dumps({"success": True, "successCount": len(objs),
                                                  "successResults": [{"type": o["type"], "id": o["id"]} for o in objs]}))
        if path.startswith("/_dashboards/echo"):
            return self.reply(h, 200, json.dumps({"path": h.path, "body": body.decode("latin-1")}))
        return self.reply(h, 404, json.dumps({"statusCode": 404, "error": "Not Found", "message": "Not Found"}))


@pytest.fixture
def fake():
    f = Fake()
    yield f
    f.close()


def dash_args(url, prefix):
    return ["dashboards", "--opensearch-url", url, "--opensearch-auth", "sigv4", "--sigv4-region", REGION, "--index-prefix", prefix]


def test_install_imports_once_then_changes_nothing(fake, trailsetup_bin, tmp_path):
    env = signing_env(tmp_path)
    prefix = "ct-install"
    rc, out, err = run_cli_with(trailsetup_bin, [*dash_args(fake.url, prefix), "--install-only", "--output", "json"], env=env, timeout=60)
    assert rc == 0, err
    doc = json.loads(out)["dashboards"]
    objs = export(trailsetup_bin, tmp_path, prefix)
    assert doc["url"] == f"{fake.url}/_dashboards" and doc["imported"] == doc["created"] == len(objs) and doc["unchanged"] == 0, doc
    # every request signed, and verified by botocore
    assert all(r["sig_error"] is None for r in fake.requests), [r["sig_error"] for r in fake.requests if r["sig_error"]]
    # the tenant: a signed GET first, then every API call in the global tenant with its cookie
    first = fake.requests[0]
    assert (first["method"], first["path"]) == ("GET", "/_dashboards/app/dashboards?security_tenant=global")
    assert first["headers"]["securitytenant"] == "global"
    assert len(fake.imports) == 1
    imp = fake.imports[0]
    assert imp["query"] == "overwrite=true"
    assert imp["parts"] == [("file", f"trailsetup-{prefix}.ndjson")]
    assert imp["headers"]["osd-xsrf"] == "true" and imp["headers"]["securitytenant"] == "global"
    assert imp["headers"]["content-type"].startswith("multipart/form-data; boundary=")
    assert "security_authentication=tenant-global" in imp["headers"]["cookie"]
    assert sorted(imp["objects"], key=lambda o: o["id"]) == sorted(objs, key=lambda o: o["id"])

    # a second run: compared (bulk get), nothing imported
    n = len(fake.requests)
    rc, out, err = run_cli_with(trailsetup_bin, [*dash_args(fake.url, prefix), "--install-only"], env=env, timeout=60)
    assert rc == 0, err
    assert "up to date" in err
    assert len(fake.imports) == 1
    assert [r["path"].split("?")[0] for r in fake.requests[n:] if r["method"] == "POST"] == ["/_dashboards/api/saved_objects/_bulk_get"]

    # one object changed in Dashboards: only it is imported again
    key = ("visualization", f"trailsetup-{prefix}-vis-top-event-names")
    fake.objects[key]["attributes"]["title"] = "renamed by hand"
    rc, out, err = run_cli_with(trailsetup_bin, [*dash_args(fake.url, prefix), "--install-only", "--output", "json"], env=env, timeout=60)
    assert rc == 0, err
    assert json.loads(out)["dashboards"]["updated"] == 1
    assert [o["id"] for o in fake.imports[-1]["objects"]] == [key[1]]


def test_install_only_without_dashboards_says_so(trailsetup_bin, tmp_path, opensearch_url):
    # the test node is plain OpenSearch: there is no Dashboards at <endpoint>/_dashboards
    rc, out, err = run_cli_with(trailsetup_bin, ["dashboards", "--install-only", "--opensearch-url", opensearch_url, "--index-prefix", "ct-none"],
                                env=bare_env(tmp_path), timeout=60)
    assert rc == 1, err
    assert f"OpenSearch Dashboards was not found at {opensearch_url}/_dashboards" in err, err


class Proxy:
    """`trailsetup dashboards --no-browser` in the background; its first stdout line is the URL."""

    def __init__(self, trailsetup_bin, env, args):
        self.proc = subprocess.Popen([str(trailsetup_bin), *args, "--no-browser"], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout=60):
            self.stop()
            pytest.fail(f"no URL within 60 s: {self.proc.stderr.read().decode()[-3000:]}")
        self.url = self.proc.stdout.readline().decode().strip()
        m = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/\?token=([0-9a-f]{64})", self.url)
        assert m, (self.url, self.proc.stderr.read1().decode() if self.proc.poll() is not None else "")
        self.port, self.token = int(m.group(1)), m.group(2)
        self.base = f"http://127.0.0.1:{self.port}"

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode, self.proc.stderr.read().decode()

    def session(self) -> requests.Session:
        s = requests.Session()
        r = s.get(self.url, allow_redirects=False, timeout=30)
        assert r.status_code == 302, r.text
        return s


def raw_get(port: int, target: str, headers: dict | None = None, method: str = "GET") -> tuple[int, dict, bytes]:
    """A request whose target (and Host, when given) is sent exactly as written."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.putrequest(method, target, skip_accept_encoding=True, skip_host="Host" in (headers or {}))
    for k, v in (headers or {}).items():
        c.putheader(k, v)
    c.endheaders()
    r = c.getresponse()
    out = (r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    c.close()
    return out


def test_proxy_signs_forwards_and_guards(fake, trailsetup_bin, tmp_path):
    prefix = "ct-proxy"
    p = Proxy(trailsetup_bin, signing_env(tmp_path), dash_args(fake.url, prefix))
    try:
        installed = len(fake.requests)
        assert len(fake.imports) == 1  # installed before serving
        # no token, no cookie: 401, nothing upstream
        r = requests.get(f"{p.base}/_dashboards/app/home", timeout=30)
        assert r.status_code == 401
        r = requests.get(f"{p.base}/?token={'0' * 64}", allow_redirects=False, timeout=30)
        assert r.status_code == 401
        r = requests.post(f"{p.base}/_dashboards/api/saved_objects/_import", headers={"osd-xsrf": "true", "Authorization": "Basic eDp5"},
                          data=b"x", timeout=30)
        assert r.status_code == 401
        assert len(fake.requests) == installed

        # the token: a cookie (HttpOnly, SameSite=Strict) and a redirect to the overview dashboard
        s = requests.Session()
        r = s.get(p.url, allow_redirects=False, timeout=30)
        assert r.status_code == 302
        assert r.headers["Location"] == f"/_dashboards/app/dashboards?security_tenant=global#/view/trailsetup-{prefix}-dashboard-overview"
        sc = r.headers["Set-Cookie"]
        assert sc.startswith(f"trailsetup_proxy_{p.port}=") and "HttpOnly" in sc and "SameSite=Strict" in sc, sc
        assert len(fake.requests) == installed
        # the token works once
        assert requests.get(p.url, allow_redirects=False, timeout=30).status_code == 401

        # pages: the landing page from the upstream, signed; the client's Authorization and Cookie stay here
        r = s.get(f"{p.base}/_dashboards/app/dashboards?security_tenant=global", headers={"Authorization": "Basic Zm9vOmJhcg==",
                  "Cookie": f"evil=1; trailsetup_proxy_{p.port}={s.cookies.get(f'trailsetup_proxy_{p.port}')}"}, timeout=30)
        assert r.status_code == 200 and "fake dashboards" in r.text
        assert "set-cookie" not in {k.lower() for k in r.headers}  # the upstream's cookies live in the proxy
        page = fake.seen("/_dashboards/app/dashboards")[-1]
        assert page["sig_error"] is None
        assert len(page["authorizations"]) == 1 and page["authorizations"][0].startswith("AWS4-HMAC-SHA256 ")
        assert not any("evil" in c or "trailsetup_proxy" in c for c in page["cookies"]), page["cookies"]

        # path and query byte for byte (%2F, +, a space as %20)
        cookie = {"Cookie": f"trailsetup_proxy_{p.port}={s.cookies.get(f'trailsetup_proxy_{p.port}')}"}
        for target in ["/_dashboards/echo/a%2Fb/c+d?q=1+2%2F3&e=&x=a%20b&plus=%2B",
                       "/_dashboards/api/saved_objects/_find?type=dashboard&search=CIS%2FCloudTrail+overview&fields=title"]:
            st, _, body = raw_get(p.port, target, cookie)
            assert st == 200, body
            rec = fake.requests[-1]
            assert rec["path"] == target and rec["sig_error"] is None, rec
            # the tenant cookie the landing page set went back to the upstream, from the proxy's own jar
            assert rec["cookies"] == ["security_authentication=tenant-global"], rec["cookies"]

        # a POST: body, content type and osd-xsrf arrive, the body's hash signed
        r = s.post(f"{p.base}/_dashboards/echo/post", data=b'{"a": 1}', headers={"Content-Type": "application/json", "osd-xsrf": "true"},
                   timeout=30)
        assert r.status_code == 200 and r.json()["body"] == '{"a": 1}'
        rec = fake.requests[-1]
        assert rec["headers"]["osd-xsrf"] == "true" and rec["headers"]["content-type"] == "application/json"
        assert rec["sig_error"] is None and rec["headers"]["x-amz-content-sha256"] == hashlib.sha256(b'{"a": 1}').hexdigest()

        # redirects are returned, not followed, with Location rewritten to the proxy
        n = len(fake.requests)
        r = s.get(f"{p.base}/_dashboards/redirect-me", allow_redirects=False, timeout=30)
        assert r.status_code == 302
        assert r.headers["Location"] == f"{p.base}/_dashboards/app/home?x=1#frag"
        assert len(fake.requests) == n + 1

        # a refusal: said, with what to do
        r = s.get(f"{p.base}/_dashboards/forbidden", headers={"Accept": "text/html"}, timeout=30)
        assert r.status_code == 403 and "security plugin" in r.text and "no permissions" in r.text
        r = s.get(f"{p.base}/_dashboards/forbidden", headers={"Accept": "application/json"}, timeout=30)
        assert r.status_code == 403 and "mapped in the domain's security plugin" in r.json()["message"]

        # every request that reached the upstream was signed and verified
        assert all(r["sig_error"] is None for r in fake.requests), [r["sig_error"] for r in fake.requests if r["sig_error"]]
        assert not any(a.startswith("Basic") for r in fake.requests for a in r["authorizations"])
    finally:
        rc, err = p.stop()
    assert rc == 0, err  # Ctrl-C: a clean stop


def test_basic_auth_install_and_proxy(trailsetup_bin, tmp_path):
    import base64

    f = Fake(basic=("dash-user", "dash-pw"))
    try:
        env = bare_env(tmp_path, TRAILSETUP_OPENSEARCH_USER="dash-user", TRAILSETUP_OPENSEARCH_PASSWORD="dash-pw")
        args = ["dashboards", "--opensearch-url", f.url, "--opensearch-auth", "basic", "--index-prefix", "ct-basic"]
        p = Proxy(trailsetup_bin, env, args)
        try:
            assert len(f.imports) == 1
            s = p.session()
            mallory = "Basic " + base64.b64encode(b"mallory:guess").decode()
            r = s.get(f"{p.base}/_dashboards/echo/basic?a=%2F", headers={"Authorization": mallory}, timeout=30)
            assert r.status_code == 200, r.text
            rec = f.requests[-1]
            assert rec["path"] == "/_dashboards/echo/basic?a=%2F"
            # the proxy's own credentials, once; never the browser's
            assert all(r["sig_error"] is None for r in f.requests), [r["sig_error"] for r in f.requests if r["sig_error"]]
            assert not any(mallory in a for r in f.requests for a in r["authorizations"])
        finally:
            rc, err = p.stop()
        assert rc == 0, err
        assert "dash-pw" not in err
    finally:
        f.close()


def test_basic_auth_password_never_goes_to_a_plain_http_dashboards_url(trailsetup_bin, tmp_path):
    # the endpoint is loopback (allowed over http); --dashboards-url is another host over plain http: refused before
    # any call, as the endpoint itself would be
    env = bare_env(tmp_path, TRAILSETUP_OPENSEARCH_USER="u", TRAILSETUP_OPENSEARCH_PASSWORD="secret-pw")
    rc, out, err = run_cli_with(trailsetup_bin, ["dashboards", "--install-only", "--opensearch-url", f"http://127.0.0.1:{free_port()}",
                                                 "--opensearch-auth", "basic", "--dashboards-url", "http://dashboards.invalid:5601",
                                                 "--index-prefix", "ct-clear"], env=env, timeout=60)
    assert rc == 2, (rc, err)
    assert "would send the password in clear text" in err and "dashboards.invalid" in err and "--allow-http-basic-auth" in err, err
    assert "secret-pw" not in err + out


def test_upstream_down_is_a_502_naming_it(trailsetup_bin, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    p = Proxy(trailsetup_bin, signing_env(tmp_path), dash_args(dead, "ct-down"))
    try:
        s = p.session()
        r = s.get(f"{p.base}/_dashboards/app/home", headers={"Accept": "text/html"}, timeout=30)
        assert r.status_code == 502 and f"{dead}/_dashboards" in r.text and "does not answer" in r.text, r.text
        r = s.get(f"{p.base}/_dashboards/api/status", timeout=30)
        assert r.status_code == 502 and dead in r.json()["message"]
    finally:
        rc, err = p.stop()
    assert rc == 0
    # the install was tried first, and said why it could not be made
    assert "the saved objects were not installed" in err and "does not answer" in err, err


def test_init_defers_dashboards_on_plain_opensearch(run_cli, moto_reset, opensearch_url, os_clean):
    args = ["init", "--yes", "--no-backfill", "--regions", "us-east-1", "--opensearch-url", opensearch_url, "--index-prefix", os_clean]
    rc, out, err = run_cli([*args, "--output", "json"], timeout=600)
    assert rc == 0, err[-3000:]
    doc = json.loads(out)
    c = next(c for c in doc["plan"]["changes"] if c["kind"] == "opensearch-dashboards-objects")
    assert c["action"] == "no-op" and c["details"]["deferred"] is True
    assert f"OpenSearch Dashboards was not found at {opensearch_url}/_dashboards" in c["details"]["reason"]
    assert sum("Dashboards was not found" in w for w in doc["warnings"]) == 1, doc["warnings"]
    # after the index template in the plan
    kinds = [c["kind"] for c in doc["plan"]["changes"]]
    assert kinds.index("opensearch-index-template") < kinds.index("opensearch-dashboards-objects")
    rc, out, err = run_cli(args, timeout=600)
    assert rc == 0, err[-3000:]
    assert "created  opensearch-dashboards-objects" not in err and "✓ created  opensearch-dashboards-objects" not in err
    assert "trailsetup dashboards" in out  # the finish summary points to it
    s = json.loads(run_cli([*args, "--output", "json"], timeout=600)[1])["plan"]["summary"]
    assert s["create"] == s["update"] == s["delete"] == 0, s


def cookie_of(p: "Proxy", s: requests.Session) -> str:
    return f"trailsetup_proxy_{p.port}={s.cookies.get(f'trailsetup_proxy_{p.port}')}"


def test_proxy_refuses_other_hosts_and_origins(fake, trailsetup_bin, tmp_path):
    p = Proxy(trailsetup_bin, signing_env(tmp_path), dash_args(fake.url, "ct-rebind"))
    try:
        n = len(fake.requests)
        # DNS rebinding: a page of rebind.evil.example, whose name now resolves to 127.0.0.1, sends its own Host;
        # the token on it is refused, and stays unused
        st, _, body = raw_get(p.port, f"/?token={p.token}", {"Host": f"rebind.evil.example:{p.port}", "Accept": "text/html"})
        assert st == 403 and b"rebind.evil.example" in body and f"http://127.0.0.1:{p.port}".encode() in body, body
        s = p.session()  # the token still works on the proxy's own address
        cookie = cookie_of(p, s)
        for host in [f"rebind.evil.example:{p.port}", f"127.0.0.1:{p.port + 1}", "127.0.0.1", f"127.0.0.1.nip.io:{p.port}"]:
            st, _, body = raw_get(p.port, "/_dashboards/echo/rebind", {"Host": host, "Cookie": cookie})
            assert st == 403, (host, st, body)
            assert "another site" in json.loads(body)["message"]
        # a page of another origin: another port of this machine is the same site to a SameSite cookie, yet refused
        for origin in ["http://127.0.0.1:9", "null", "https://evil.example"]:
            r = s.post(f"{p.base}/_dashboards/echo/csrf", data=b"{}", headers={"osd-xsrf": "true", "Origin": origin}, timeout=30)
            assert r.status_code == 403 and "another origin" in r.json()["message"], (origin, r.text)
        # no tunnel
        st, _, _ = raw_get(p.port, f"127.0.0.1:{p.port}", {"Host": f"127.0.0.1:{p.port}", "Cookie": cookie}, method="CONNECT")
        assert st in (400, 405), st
        assert len(fake.requests) == n  # none of it reached the upstream
        # the proxy's own names pass: localhost, and an Origin of its own
        st, _, body = raw_get(p.port, "/_dashboards/echo/ok", {"Host": f"localhost:{p.port}", "Cookie": cookie})
        assert st == 200, body
        r = s.post(f"{p.base}/_dashboards/echo/same", data=b"{}", headers={"osd-xsrf": "true", "Origin": p.base}, timeout=30)
        assert r.status_code == 200, r.text
        assert [r["path"] for r in fake.requests[n:]] == ["/_dashboards/echo/ok", "/_dashboards/echo/same"]
        assert all(r["sig_error"] is None for r in fake.requests[n:])
    finally:
        rc, err = p.stop()
    assert rc == 0, err


def test_large_response_streams_as_it_arrives(fake, trailsetup_bin, tmp_path):
    # a 2 s idle timeout; the upstream's 50 MiB take longer than that in all, but never pause that long
    p = Proxy(trailsetup_bin, signing_env(tmp_path), [*dash_args(fake.url, "ct-stream"), "--idle-timeout", "2"])
    try:
        s = p.session()
        r = s.get(f"{p.base}/_dashboards/stream/big", stream=True, timeout=90)
        assert r.status_code == 200 and r.headers["Content-Length"] == str(BIG_CHUNKS * MIB)
        it = r.iter_content(chunk_size=64 << 10)
        first = next(it)
        # the upstream holds back all but its first MiB until it hears that these bytes have arrived
        fake.event("client: first bytes")
        fake.gate.set()
        h, n = hashlib.sha256(first), len(first)
        for chunk in it:
            h.update(chunk)
            n += len(chunk)
        want = hashlib.sha256(b"".join(big_chunk(i) for i in range(BIG_CHUNKS))).hexdigest()
        assert (n, h.hexdigest()) == (BIG_CHUNKS * MIB, want)
        # streamed: the client had bytes before the upstream went on, let alone finished; a buffering proxy would
        # have shown "no word from the client" and "finished" first
        assert fake.events == ["upstream: sending the first MiB", "client: first bytes", "upstream: finished"], fake.events
        assert fake.requests[-1]["sig_error"] is None
    finally:
        rc, err = p.stop()
    assert rc == 0, err
    assert "sent nothing" not in err, err


def test_a_silent_upstream_is_cut_by_the_idle_timeout(fake, trailsetup_bin, tmp_path):
    p = Proxy(trailsetup_bin, signing_env(tmp_path), [*dash_args(fake.url, "ct-stall"), "--idle-timeout", "2"])
    try:
        s = p.session()
        r = s.get(f"{p.base}/_dashboards/stream/stall", stream=True, timeout=90)
        assert r.status_code == 200
        got = 0
        with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)):
            for chunk in r.iter_content(chunk_size=64 << 10):
                got += len(chunk)
        fake.event("client: cut off")
        fake.release.set()
        # the first MiB came through; the connection was closed by the proxy while the upstream was still silent
        assert 0 < got < 10 * MIB, got
        deadline = time.monotonic() + 30  # (a bound on waiting for the fake's thread, not a measurement)
        while "upstream: released" not in fake.events and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fake.events == ["upstream: sending one MiB, then silence", "client: cut off", "upstream: released"], fake.events
        # the proxy still serves
        assert s.get(f"{p.base}/_dashboards/echo/after", timeout=30).status_code == 200
    finally:
        fake.release.set()
        rc, err = p.stop()
    assert rc == 0, err
    assert "GET /_dashboards/stream/stall: OpenSearch Dashboards at" in err and "sent nothing for 2 s: the response was cut off" in err, err


def upload(p: "Proxy", s: requests.Session, body: bytes) -> requests.Response:
    return s.post(f"{p.base}/_dashboards/upload", data=body, headers={"Content-Type": "application/octet-stream", "osd-xsrf": "true"},
                  timeout=120)


def test_large_request_body_is_spooled_signed_and_intact(fake, trailsetup_bin, tmp_path):
    big = b"".join(big_chunk(i) for i in range(24))  # 24 MiB: over the 8 MiB kept in memory
    small = big[: MIB]
    spool = tmp_path / "spool"
    spool.mkdir()
    # the body is hashed for the signature, kept in a file of TMPDIR meanwhile, then sent from it
    p = Proxy(trailsetup_bin, dict(signing_env(tmp_path), TMPDIR=str(spool)), dash_args(fake.url, "ct-upload"))
    try:
        s = p.session()
        r = upload(p, s, big)
        assert r.status_code == 200, r.text
        assert r.json() == {"len": len(big), "sha256": hashlib.sha256(big).hexdigest()}
        rec = fake.requests[-1]
        # botocore verified the signature over the body that arrived, and x-amz-content-sha256 is its hash
        assert rec["sig_error"] is None and rec["headers"]["x-amz-content-sha256"] == hashlib.sha256(big).hexdigest()
        assert rec["headers"]["content-length"] == str(len(big))
        assert list(spool.iterdir()) == []  # no spool file left behind
    finally:
        rc, err = p.stop()
    assert rc == 0, err
    # where the temporary directory is missing, a large body cannot be spooled: said, with what to do, and nothing
    # sent; a small one, held in memory, still goes (so the large one above went through the spool)
    p = Proxy(trailsetup_bin, dict(signing_env(tmp_path), TMPDIR=str(tmp_path / "missing")), dash_args(fake.url, "ct-upload"))
    try:
        s = p.session()
        n = len(fake.requests)
        r = upload(p, s, big)
        assert r.status_code == 507 and "TMPDIR" in r.json()["message"], r.text
        assert len(fake.requests) == n
        r = upload(p, s, small)
        assert r.status_code == 200 and r.json()["sha256"] == hashlib.sha256(small).hexdigest()
        assert fake.requests[-1]["sig_error"] is None
    finally:
        rc, err = p.stop()
    assert rc == 0, err
    assert "cannot spool the request body to" in err, err


def test_basic_auth_request_bodies_stream_straight_through(trailsetup_bin, tmp_path):
    f = Fake(basic=("dash-user", "dash-pw"))
    big = b"".join(big_chunk(i) for i in range(24))
    try:
        # no signature over the body: no spool either (TMPDIR is missing), it streams through
        env = bare_env(tmp_path, TRAILSETUP_OPENSEARCH_USER="dash-user", TRAILSETUP_OPENSEARCH_PASSWORD="dash-pw", TMPDIR=str(tmp_path / "missing"))
        p = Proxy(trailsetup_bin, env, ["dashboards", "--opensearch-url", f.url, "--opensearch-auth", "basic", "--index-prefix", "ct-basic-up"])
        try:
            s = p.session()
            r = upload(p, s, big)
            assert r.status_code == 200, r.text
            assert r.json() == {"len": len(big), "sha256": hashlib.sha256(big).hexdigest()}
            rec = f.requests[-1]
            assert rec["sig_error"] is None and rec["headers"]["content-length"] == str(len(big))
        finally:
            rc, err = p.stop()
        assert rc == 0, err
    finally:
        f.close()


def test_a_slow_upload_is_waited_for(fake, trailsetup_bin, tmp_path):
    # --timeout 2 bounds the wait for the upstream's answer, not the browser's upload: five pieces, 0.8 s apart
    # (under the idle timeout each, over --timeout in all), then the answer
    p = Proxy(trailsetup_bin, signing_env(tmp_path), [*dash_args(fake.url, "ct-slow-up"), "--timeout", "2", "--idle-timeout", "10"])
    try:
        s = p.session()
        pieces = [bytes([65 + i]) * 1000 for i in range(5)]
        with socket.create_connection(("127.0.0.1", p.port), timeout=60) as c:
            c.sendall(f"POST /_dashboards/upload HTTP/1.1\r\nHost: 127.0.0.1:{p.port}\r\nCookie: {cookie_of(p, s)}\r\n"
                      f"Content-Type: application/octet-stream\r\nosd-xsrf: true\r\nContent-Length: 5000\r\n\r\n".encode())
            for piece in pieces:
                time.sleep(0.8)
                c.sendall(piece)
            resp = b""
            while b"\r\n\r\n" not in resp or not resp.rstrip().endswith(b"}"):
                more = c.recv(65536)
                assert more, resp
                resp += more
        assert resp.startswith(b"HTTP/1.1 200 "), resp[:300]
        assert json.loads(resp.split(b"\r\n\r\n", 1)[1]) == {"len": 5000, "sha256": hashlib.sha256(b"".join(pieces)).hexdigest()}
        assert fake.requests[-1]["sig_error"] is None
    finally:
        rc, err = p.stop()
    assert rc == 0, err


@pytest.mark.parametrize("auth", ["sigv4", "basic"])
def test_a_stalled_request_body_is_dropped(auth, trailsetup_bin, tmp_path):
    f = Fake(basic=("dash-user", "dash-pw")) if auth == "basic" else Fake()
    try:
        if auth == "basic":
            env = bare_env(tmp_path, TRAILSETUP_OPENSEARCH_USER="dash-user", TRAILSETUP_OPENSEARCH_PASSWORD="dash-pw")
            args = ["dashboards", "--opensearch-url", f.url, "--opensearch-auth", "basic", "--index-prefix", "ct-stall-up"]
        else:
            env, args = signing_env(tmp_path), dash_args(f.url, "ct-stall-up")
        p = Proxy(trailsetup_bin, env, [*args, "--idle-timeout", "2"])
        try:
            s = p.session()
            n = len(f.requests)
            # a million bytes announced, a thousand sent, then nothing
            with socket.create_connection(("127.0.0.1", p.port), timeout=60) as c:
                c.sendall(f"POST /_dashboards/upload HTTP/1.1\r\nHost: 127.0.0.1:{p.port}\r\nCookie: {cookie_of(p, s)}\r\n"
                          f"Content-Type: application/octet-stream\r\nosd-xsrf: true\r\nContent-Length: 1000000\r\n\r\n".encode() + b"x" * 1000)
                head = b""
                while b"\r\n\r\n" not in head:
                    more = c.recv(65536)
                    assert more, head
                    head += more
            assert head.startswith(b"HTTP/1.1 408 "), head[:200]
            # the upstream never got a whole request: SigV4 sends nothing before the body is whole; basic auth
            # streamed the part that came, then the proxy gave up on it
            after = f.requests[n:]
            if auth == "sigv4":
                assert after == []
            else:
                assert [(r["path"], r.get("incomplete")) for r in after] in ([], [("/_dashboards/upload", True)]), after
        finally:
            rc, err = p.stop()
        assert rc == 0, err
        assert "POST /_dashboards/upload: the request body stopped arriving (nothing for 2 s)" in err, err
    finally:
        f.close()


# --- destroy: the saved objects go, by id ----------------------------------------------------------------------------


def dash_change(doc: dict) -> dict:
    return next(c for c in doc["plan"]["changes"] if c["kind"] == "opensearch-dashboards-objects")


def init_through(run_cli, f: Fake, prefix: str) -> dict:
    """init against moto and the fake (Dashboards there, every other path relayed to the real node)."""
    rc, out, err = run_cli(["init", "--yes", "--no-backfill", "--regions", "us-east-1", "--opensearch-url", f.url,
                            "--index-prefix", prefix, "--output", "json"], timeout=600)
    assert rc == 0, err[-3000:]
    c = dash_change(json.loads(out))
    assert c["action"] == "create", c
    assert len(f.imports) == 1 and len(f.objects) >= 10
    return dict(f.objects)


def test_destroy_deletes_the_saved_objects_and_says_what_was_absent(run_cli, moto_reset, opensearch_url, os_clean):
    f = Fake(auth="none", passthrough=opensearch_url)
    try:
        installed = init_through(run_cli, f, os_clean)
        # one removed in Dashboards by hand, one Dashboards fails to delete this time
        gone = ("visualization", f"trailsetup-{os_clean}-vis-top-event-names")
        stuck = ("search", f"trailsetup-{os_clean}-search-root-activity")
        assert gone in installed and stuck in installed
        del f.objects[gone]
        f.fail_delete.add(stuck[1])
        path = lambda t, i: f"/_dashboards/api/saved_objects/{t}/{i}"  # noqa: E731

        # the plan: every object still there, referrers first, the index pattern last; the absent one said
        rc, out, err = run_cli(["destroy", "--dry-run", "--output", "json"], timeout=300)
        assert rc == 0, err
        c = dash_change(json.loads(out))
        assert c["action"] == "delete" and c["name"] == f"trailsetup-{os_clean}" and c["region"] == "-"
        objs = [(o["type"], o["id"]) for o in c["details"]["objects"]]
        assert sorted(objs) == sorted(k for k in installed if k != gone)
        assert objs[0][0] == "dashboard" and objs[-1] == ("index-pattern", f"trailsetup-{os_clean}")
        assert c["details"]["absent"] == [gone[1]]
        assert not [r for r in f.requests if r["method"] == "DELETE"]

        # destroy: one DELETE per object there, with osd-xsrf; the absent one not asked for, the failing one said
        rc, out, err = run_cli(["destroy", "--yes"], timeout=600)
        assert rc == 0, err[-3000:]
        deletes = [r for r in f.requests if r["method"] == "DELETE"]
        assert [r["path"] for r in deletes] == [path(t, i) for t, i in objs]
        assert all(r["headers"].get("osd-xsrf") == "true" and r["sig_error"] is None for r in deletes)
        assert set(f.objects) == {stuck}
        line = (f"deleted opensearch-dashboards-objects trailsetup-{os_clean} [-]: {len(installed) - 2} saved object(s); "
                f"1 already absent ({gone[1]}); 1 not deleted ({stuck[1]})")
        assert line in err and "1 not (fully) deleted" in err, err[-3000:]

        # the next run deletes what is left; then there is nothing, and nothing is asked for
        f.fail_delete.clear()
        rc, out, err = run_cli(["destroy", "--yes", "--output", "json"], timeout=600)
        assert rc == 0, err
        c = dash_change(json.loads(out))
        assert c["action"] == "delete" and c["details"]["result"]["deleted"] == [stuck[1]], c
        assert sorted(c["details"]["result"]["absent"]) == sorted(i for _, i in installed if i != stuck[1])
        assert c["details"]["result"]["not_deleted"] == []
        assert f.objects == {}
        n = len(f.requests)
        rc, out, err = run_cli(["destroy", "--yes", "--output", "json"], timeout=600)
        assert rc == 0, err
        doc = json.loads(out)
        c = dash_change(doc)
        assert c["action"] == "no-op" and "nothing to delete" in c["details"]["reason"] and "retained" not in c["details"], c
        assert doc["plan"]["summary"]["delete"] == 0
        assert not [r for r in f.requests[n:] if r["method"] == "DELETE"]
    finally:
        f.close()


def test_destroy_with_dashboards_unreachable_says_so_and_deletes_the_rest(run_cli, moto_reset, opensearch_url, os_clean):
    f = Fake(auth="none", passthrough=opensearch_url)
    installed = init_through(run_cli, f, os_clean)
    f.close()  # the endpoint (and its Dashboards) no longer answers
    rc, out, err = run_cli(["destroy", "--yes", "--output", "json"], timeout=600)
    assert rc == 0, err[-3000:]
    doc = json.loads(out)
    c = dash_change(doc)
    assert c["action"] == "no-op" and c["details"]["unreachable"] is True and c["details"]["not_deleted"] is True, c
    assert "retained" not in c["details"] and "result" not in c["details"]
    assert any(w.startswith("Dashboards saved objects: ") for w in doc["warnings"]), doc.get("warnings")
    assert doc["plan"]["summary"]["delete"] > 5  # the rest of the stack went
    assert f.objects == installed and not [r for r in f.requests if r["method"] == "DELETE"]


# --- (c) headless Chromium through the proxy ------------------------------------------------------------------------

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def test_chromium_through_the_proxy(fake, trailsetup_bin, tmp_path):
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("Chromium and ChromeDriver are not installed: run `scripts/testenv.sh setup` (Debian packages chromium, "
                    "chromium-driver)", pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    os.environ.setdefault("SE_OFFLINE", "true")  # no Selenium Manager downloads
    prefix = "ct-browser"
    p = Proxy(trailsetup_bin, signing_env(tmp_path), dash_args(fake.url, prefix))
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for a in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium'}"]:
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    try:
        before = len(fake.requests)
        driver.set_page_load_timeout(60)
        driver.get(p.url)
        WebDriverWait(driver, 30).until(lambda d: d.find_element("id", "out").text.startswith(("api:", "error:")))
        assert driver.find_element("id", "out").text == f"api:{len(fake.objects)}"
        assert driver.title == "fake dashboards"
        assert driver.current_url == f"{p.base}/_dashboards/app/dashboards?security_tenant=global#/view/trailsetup-{prefix}-dashboard-overview"
        cookie = next(c for c in driver.get_cookies() if c["name"] == f"trailsetup_proxy_{p.port}")
        assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
        # the page, its stylesheet and script, and the API call its script made: all at the upstream, signed
        got = {(r["method"], r["path"]) for r in fake.requests[before:]}
        for want in [("GET", "/_dashboards/app/dashboards?security_tenant=global"), ("GET", "/_dashboards/ui/app.css"),
                     ("GET", "/_dashboards/ui/app.js"),
                     ("GET", "/_dashboards/api/saved_objects/_find?type=dashboard&search_fields=title&search=CIS%2FCloudTrail+overview")]:
            assert want in got, (want, got)
        for r in fake.requests[before:]:
            assert r["sig_error"] is None, r
            assert not any("trailsetup_proxy" in c for c in r["cookies"]), r["cookies"]
        api = next(r for r in fake.requests[before:] if r["path"].startswith("/_dashboards/api/"))
        assert api["headers"]["osd-xsrf"] == "true"
        # a second browser (or the same link again) gets nothing
        driver.delete_all_cookies()
        driver.get(p.url)
        assert "Unauthorized" in driver.page_source
    finally:
        driver.quit()
        rc, err = p.stop()
    assert rc == 0, err
