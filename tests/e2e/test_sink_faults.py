"""The Rust sink under faults: 429/500 answers, per-item 429s and rejections, slow answers and timeouts.
No record may be lost; rejected ones land in the quarantine with OpenSearch's reason."""

from __future__ import annotations

import json

import requests

from faultproxy import FaultProxy
from test_backfill import FIXTURES, backfill, fixture_vectors, os_count


def test_retries_lose_nothing(run_cli, aws_env, opensearch_url, os_clean, tmp_path):
    prefix = os_clean
    total, want = fixture_vectors(prefix)
    env = dict(aws_env, TRAILSETUP_OPENSEARCH_USER="audit", TRAILSETUP_OPENSEARCH_PASSWORD="s3cret")
    with FaultProxy(opensearch_url) as p:
        p.fail_429, p.fail_500, p.item_429 = 3, 2, 60
        s, _ = backfill(run_cli, ["--source-dir", FIXTURES, "--opensearch-url", p.url, "--index-prefix", prefix,
                                  "--retry-base-ms", "1", "--compression", "gzip", "--opensearch-auth", "basic",
                                  "--bulk-mib", "0.2"], env=env)
        assert p.injected["429"] == 3 and p.injected["500"] == 2 and p.injected["item_429"] == 60
        assert p.gzip_requests > 0, "request compression was asked for"
        assert p.last_auth and p.last_auth.startswith("Basic ")
    assert s["records"] == total and s["quarantined"] == 0
    assert s["indexed"] == len(want) and s["retries"] > 0
    assert os_count(opensearch_url, f"{prefix}-*") == len(want)


def test_timeouts_are_retried_and_counted_once(run_cli, opensearch_url, os_clean):
    prefix = os_clean
    total, want = fixture_vectors(prefix)
    with FaultProxy(opensearch_url) as p:
        # The first two requests answer after 3 s; the client gives up after 1 s and sends again. The proxy still
        # forwards the late copy, so the retry meets its documents as duplicates: counted once either way.
        p.delay_count, p.delay_s, p.delay_bulk_only = 3, 3.0, True
        s, _ = backfill(run_cli, ["--source-dir", FIXTURES, "--opensearch-url", p.url, "--index-prefix", prefix,
                                  "--retry-base-ms", "1", "--timeout-secs", "1"])
    assert s["records"] == total and s["quarantined"] == 0 and s["retries"] > 0
    assert os_count(opensearch_url, f"{prefix}-*") == len(want)


def test_rejections_go_to_quarantine_with_reason(run_cli, opensearch_url, os_clean, tmp_path):
    prefix = os_clean
    total, want = fixture_vectors(prefix)
    reject = sorted({i for (_, i) in want})[:7]
    q = tmp_path / "q.jsonl"
    with FaultProxy(opensearch_url) as p:
        p.reject_ids = set(reject)
        s, _ = backfill(run_cli, ["--source-dir", FIXTURES, "--opensearch-url", p.url, "--index-prefix", prefix,
                                  "--quarantine", q], expect_rc=3)
    assert s["quarantined"] >= 7 and s["indexed"] + s["duplicates"] + s["quarantined"] == total
    lines = [json.loads(l) for l in q.read_text().splitlines()]
    assert {l["id"] for l in lines} == set(reject)
    assert all(l["status"] == 400 and l["reason"]["reason"] == "injected rejection" for l in lines)
    assert all(isinstance(l["document"], dict) for l in lines)
    # Replaying the quarantine (the rejection cause is gone) completes the set exactly.
    s2, _ = backfill(run_cli, ["--replay-quarantine", q, "--opensearch-url", opensearch_url, "--index-prefix", prefix,
                               "--quarantine", tmp_path / "q2.jsonl"])
    assert s2["quarantined"] == 0
    assert os_count(opensearch_url, f"{prefix}-*") == len(want)


def test_auth_refusal_names_the_fix(run_cli, opensearch_url, os_clean, tmp_path):
    """A 403 from the cluster stops the run with the permissions to grant; nothing is checkpointed."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Deny(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            body = b'{"message":"User: arn:aws:iam::1:user/x is not authorized to perform: es:ESHttpGet"}'
            self.send_response(403)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Deny)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        rc, out, err = run_cli(["backfill", "--source-dir", str(FIXTURES), "--opensearch-url",
                                f"http://127.0.0.1:{srv.server_address[1]}", "--index-prefix", os_clean])
    finally:
        srv.shutdown()
    assert rc == 1
    assert "403" in err and "es:ESHttpPost" in err
