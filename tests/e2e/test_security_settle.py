"""init in domain mode waits for the domain it created or changed to settle before it writes the security plugin's
role and mapping: first for DescribeDomain's `Processing` to be false (src/resources/opensearch.rs `apply_domain`,
"DomainStatus" in the OpenSearch Service API reference), then, for each PUT, while the plugin answers 401, 403 or 503
(a new domain's master user mapping and security index settle for a few minutes). A domain this apply did not touch
gets no such grace: a 403 there is the caller not being the master user, said at once.

moto has no data plane: a recording proxy in front of it rewrites DescribeDomain's answer so that the domain's
`Endpoint` is a local server speaking the security plugin's REST API over plain http (an `Endpoint` that already
names its scheme is used as is), and so that `Processing` is true for the first answers. Every wait of
src/aws/eventual.rs is 50 times shorter (TRAILSETUP_RETRY_SCALE=0.02); no assertion is about time — the order of
events is recorded in one timeline shared by the proxy and the fake server.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from awsproxy import start_proxy
from test_init_real_aws import read_back

ACCOUNT = "123456789012"
HOME = "us-east-1"
SCALE = "0.02"
ROLE = "/_plugins/_security/api/roles/trailsetup-writer"
MAPPING = "/_plugins/_security/api/rolesmapping/trailsetup-writer"
# OpenSearch docs, "Security plugin REST API" → create role / create role mapping (the FGAC test checks the same)
ROLE_BODY = {
    "cluster_permissions": ["cluster_monitor", "cluster_composite_ops", "cluster_manage_index_templates"],
    "index_permissions": [{"index_patterns": ["cloudtrail-*", "cloudtrail"],
                           "allowed_actions": ["crud", "create_index", "manage_aliases"]}],
}
MAPPING_BODY = {"backend_roles": [f"arn:aws:iam::{ACCOUNT}:role/trailsetup-forwarder"], "hosts": [], "users": []}
# what the security plugin answers before it is ready, or to a caller without the security_manager role
REFUSALS = {
    503: {"status": "SERVICE_UNAVAILABLE", "message": "OpenSearch Security not initialized."},
    401: {"status": "UNAUTHORIZED", "message": "Unauthorized"},
    403: {"status": "FORBIDDEN", "message": "No permission to access REST API: User arn:aws:iam::123456789012:user/moto "
                                            "with Security roles [own_index] does not have any access to endpoint PUT"},
}


def run_json(run_cli, args, env, rc_ok=(0,)):
    rc, out, err = run_cli([*args, "--output", "json"], env=env, timeout=300)
    assert rc in rc_ok, f"exit {rc}\n--- stderr ---\n{err[-6000:]}"
    return json.loads(out), err


def pending(doc):
    return json.dumps([c for c in doc["plan"]["changes"] if c["action"] != "no-op"], indent=1)[:4000]


class Timeline:
    """Events of the proxy and of the fake server, in the order they happened."""

    def __init__(self):
        self.events: list = []
        self.lock = threading.Lock()

    def add(self, *event):
        with self.lock:
            self.events.append(event)

    def snapshot(self) -> list:
        with self.lock:
            return list(self.events)


# --- the security plugin's REST API, with a scripted start --------------------------------------------------------


class SettlingSecurityApi(BaseHTTPRequestHandler):
    """An OpenSearch endpoint with the security plugin's documented REST shapes (as the fake of
    test_init_real_aws.py), whose PUTs to our role and mapping are first answered from `script[path]`, one status
    per PUT, then normally (200 `{"status": "CREATED", …}`; the body is kept and GET answers it back)."""

    store: dict = {}
    log: list = []
    script: dict = {}
    timeline: Timeline

    def _send(self, code, body):
        raw = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _handle(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(n) or b"null") if n else None
        path = self.path.split("?")[0]
        rec = {"method": self.command, "path": path, "body": body, "auth": self.headers.get("Authorization", "")}
        self.log.append(rec)
        if self.command == "PUT":
            self.timeline.add("put", path)
        if path == "/":
            return self._send(200, {"name": "fake", "cluster_name": f"{ACCOUNT}:audit", "version": {
                "distribution": "opensearch", "number": "2.19.0"}, "tagline": "The OpenSearch Project: https://opensearch.org/"})
        if path == "/_plugins/_security/authinfo":
            return self._send(200, {"user_name": "deployer", "backend_roles": [], "roles": ["all_access"]})
        m = re.fullmatch(r"/_plugins/_security/api/(roles|rolesmapping)/([\w.-]+)", path)
        if m:
            key = (m.group(1), m.group(2))
            if self.command == "GET":
                return self._send(*read_back(self.store, key))
            if self.command == "PUT":
                queue = self.script.get(path) or []
                if queue:
                    status = queue.pop(0)
                    rec["status"] = status
                    return self._send(status, REFUSALS[status])
                created = key not in self.store
                self.store[key] = body
                rec["status"] = 200
                return self._send(200, {"status": "CREATED" if created else "OK",
                                        "message": f"'{key[1]}' {'created' if created else 'updated'}."})
        if path.startswith("/_index_template/"):
            t = ("template", path)
            if self.command == "PUT":
                self.store[t] = body
                return self._send(200, {"acknowledged": True})
            if t in self.store:
                return self._send(200, {"index_templates": [{"name": path.rsplit("/", 1)[1], "index_template": self.store[t]}]})
            return self._send(404, {"error": "index_template_missing_exception"})
        return self._send(400, {"error": f"no handler found for uri [{path}] and method [{self.command}]"})

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

    def log_message(self, *a):
        pass


@pytest.fixture
def timeline():
    return Timeline()


@pytest.fixture
def security_api(timeline):
    """(url, handler class): handler.script, .log, .store are the test's own."""
    handler = type("S", (SettlingSecurityApi,), {"store": {}, "log": [], "script": {}, "timeline": timeline})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", handler
    srv.shutdown()
    srv.server_close()


# --- DescribeDomain, rewritten --------------------------------------------------------------------------------------


def domain_rewrite(endpoint: str, timeline: Timeline, processing: dict):
    """A `rewrite` hook: each DescribeDomain answer (a GET, no body, answered with a DomainStatus) names `endpoint`
    as the domain's Endpoint; while processing["left"] > 0 it also says `Processing: true` (and counts down)."""
    lock = threading.Lock()

    def rewrite(headers, body, content):
        if body:  # CreateDomain and DescribeDomains are POSTs; DescribeDomain is a GET
            return content
        try:
            doc = json.loads(content)
        except ValueError:
            return content
        st = doc.get("DomainStatus") if isinstance(doc, dict) else None
        if not isinstance(st, dict):
            return content
        st["Endpoint"] = endpoint
        st.pop("Endpoints", None)
        with lock:
            busy = processing["left"] > 0
            if busy:
                processing["left"] -= 1
            st["Processing"] = busy
            timeline.add("describe", busy)
        return json.dumps(doc).encode()

    return rewrite


@pytest.fixture
def settle_env(aws_env):
    return dict(aws_env, TRAILSETUP_RETRY_SCALE=SCALE)


def describe_domain_calls(calls, name):
    return [c for c in calls if c["method"] == "GET" and c["path"].split("?")[0] == f"/2021-01-01/opensearch/domain/{name}"]


# --- 1: a domain created by this apply: wait for Processing false, then retry 503/401 until the plugin answers -----


def test_new_domain_waits_for_processing_then_retries_refused_puts(moto_reset, run_cli, boto, settle_env, security_api,
                                                                   timeline):
    url, api = security_api
    api.script = {ROLE: [503, 503, 401], MAPPING: [503, 503, 401]}
    processing = {"left": 2}
    srv, proxy, calls = start_proxy(moto_reset, rewrite=domain_rewrite(url, timeline, processing))
    try:
        env = dict(settle_env, AWS_ENDPOINT_URL=proxy)
        args = ["init", "--yes", "--no-backfill", "--regions", HOME, "--opensearch-domain", "audit"]
        doc, err = run_json(run_cli, args, env)
        assert doc["applied"] is True
        plan = {c["kind"]: c for c in doc["plan"]["changes"]}
        assert plan["opensearch-domain"]["action"] == "create"
        assert plan["opensearch-role-mapping"]["action"] == "create"
        # exactly one CreateDomain went through the proxy
        creates = [c for c in calls if c["method"] == "POST" and c["path"].split("?")[0] == "/2021-01-01/opensearch/domain"]
        assert len(creates) == 1, [c["path"] for c in calls]

        # the Processing answers were used up (and one `false` seen) before anything was PUT to the domain
        events = timeline.snapshot()
        first_put = next(i for i, e in enumerate(events) if e[0] == "put")
        before = [e[1] for e in events[:first_put] if e[0] == "describe"]
        assert processing["left"] == 0, events
        assert before[:2] == [True, True] and len(before) >= 3 and not any(before[2:]), events
        assert events[first_put][1] == ROLE, events
        # those answers came from DescribeDomain of our domain (through the proxy), not from another call
        assert len(describe_domain_calls(calls, "audit")) >= 3

        # every PUT the plugin refused with 503/401 was sent again, the same request, until it was taken
        puts = [r for r in api.log if r["method"] == "PUT" and "_security" in r["path"]]
        assert [(r["path"], r["status"]) for r in puts] == [
            (ROLE, 503), (ROLE, 503), (ROLE, 401), (ROLE, 200),
            (MAPPING, 503), (MAPPING, 503), (MAPPING, 401), (MAPPING, 200),
        ], [(r["path"], r.get("status")) for r in puts]
        assert all(r["body"] == ROLE_BODY for r in puts[:4]), puts[0]["body"]
        assert all(r["body"] == MAPPING_BODY for r in puts[4:]), puts[4]["body"]
        assert api.store[("roles", "trailsetup-writer")] == ROLE_BODY
        assert api.store[("rolesmapping", "trailsetup-writer")] == MAPPING_BODY
        # signed with SigV4 for the home region (a loopback host names no region)
        assert all(re.search(rf"Credential=\w+/\d{{8}}/{HOME}/es/aws4_request", r["auth"]) for r in puts), puts[0]["auth"]
        # nothing of OpenSearch's was deferred: the mapping was made here (the fake plugin serves no Dashboards: its
        # saved objects are, and say so)
        assert "deferred: opensearch-role-mapping" not in err and "deferred: opensearch-index-template" not in err, err[-4000:]
        assert "1 deferred" in err and "OpenSearch Dashboards was not found at" in err, err[-4000:]

        # the second run reads the role and mapping back (GET) and finds nothing to do, here or anywhere
        fn_env = boto("lambda").get_function_configuration(FunctionName="trailsetup-forwarder")["Environment"]["Variables"]
        api.log.clear()
        again, err = run_json(run_cli, args, env)
        assert [c["action"] for c in again["plan"]["changes"] if c["kind"] == "opensearch-role-mapping"] == ["no-op"]
        assert {r["path"] for r in api.log if r["method"] == "GET"} >= {ROLE, MAPPING}
        assert not [r for r in api.log if r["method"] == "PUT"], api.log
        s = again["plan"]["summary"]
        assert (s["create"], s["update"], s["delete"]) == (0, 0, 0), \
            f"{pending(again)}\nthe forwarder's environment after the first run: {fn_env}\n--- stderr ---\n{err[-3000:]}"
    finally:
        srv.shutdown()
        srv.server_close()


# --- 2: an adopted domain this apply does not touch: a 403 is the caller not being the master user, at once ---------


def test_untouched_adopted_domain_403_fails_at_once(moto_reset, run_cli, boto, settle_env, security_api, timeline):
    url, api = security_api
    dba = f"arn:aws:iam::{ACCOUNT}:role/dba"
    os_ = boto("opensearch")
    os_.create_domain(
        DomainName="shared", EngineVersion="OpenSearch_2.11",
        ClusterConfig={"InstanceType": "r6g.large.search", "InstanceCount": 3},
        EncryptionAtRestOptions={"Enabled": True},
        NodeToNodeEncryptionOptions={"Enabled": True},
        DomainEndpointOptions={"EnforceHTTPS": True, "TLSSecurityPolicy": "Policy-Min-TLS-1-2-PFS-2023-10"},
        AdvancedSecurityOptions={"Enabled": True, "InternalUserDatabaseEnabled": False,
                                 "MasterUserOptions": {"MasterUserARN": dba}},
    )
    processing = {"left": 0}
    srv, proxy, calls = start_proxy(moto_reset, rewrite=domain_rewrite(url, timeline, processing))
    try:
        env = dict(settle_env, AWS_ENDPOINT_URL=proxy)
        args = ["init", "--yes", "--no-backfill", "--regions", HOME, "--opensearch-domain", "shared"]
        # the domain's owner already gave it our access policy statement and tag: init has nothing to change on it
        dry, _ = run_json(run_cli, [*args, "--dry-run"], env)
        want = [c for c in dry["plan"]["changes"] if c["kind"] == "opensearch-domain"][0]["details"]
        os_.update_domain_config(DomainName="shared", AccessPolicies=json.dumps(want["access_policy"]))
        arn = os_.describe_domain(DomainName="shared")["DomainStatus"]["ARN"]
        os_.add_tags(ARN=arn, TagList=[{"Key": k, "Value": v} for k, v in want["tags"].items()])
        dry, _ = run_json(run_cli, [*args, "--dry-run"], env)
        plan = {c["kind"]: c for c in dry["plan"]["changes"]}
        assert plan["opensearch-domain"]["action"] == "no-op", pending(dry)
        assert plan["opensearch-role-mapping"]["action"] == "create", pending(dry)
        assert not [r for r in api.log if r["method"] == "PUT"], api.log

        # the caller is not the master user: the plugin refuses (403) every time
        api.script = {ROLE: [403] * 10, MAPPING: [403] * 10}
        api.log.clear()
        rc, out, err = run_cli([*args, "--output", "json"], env=env, timeout=300)
        assert rc == 1, f"exit {rc}\n--- stderr ---\n{err[-6000:]}"
        caller = boto("sts").get_caller_identity()["Arn"].replace(":sts::", ":iam::")  # moto spells users sts
        assert "only the domain's master user" in err and caller in err, err[-4000:]
        role_puts = [r for r in api.log if r["method"] == "PUT" and r["path"] == ROLE]
        assert [r["status"] for r in role_puts] == [403], [(r["path"], r.get("status")) for r in api.log]
        assert not [r for r in api.log if r["method"] == "PUT" and r["path"] == MAPPING], api.log
        # the domain was left as it was: no UpdateDomainConfig, no CreateDomain through the proxy
        domain_writes = [c["path"] for c in calls if c["method"] == "POST" and (
            c["path"].split("?")[0] == "/2021-01-01/opensearch/domain" or c["path"].split("?")[0].endswith("/config"))]
        assert not domain_writes, domain_writes
    finally:
        srv.shutdown()
        srv.server_close()
