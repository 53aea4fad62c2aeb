"""A small fault-injecting HTTP proxy in front of OpenSearch, for `_bulk` triage tests.

    with FaultProxy(upstream) as p:
        p.fail_429 = 2            # next 2 requests: HTTP 429 with Retry-After: 0 (not forwarded)
        p.fail_500 = 1            # next request after those: HTTP 500 (not forwarded)
        p.item_429 = 5            # next 5 _bulk items: per-item 429 (not forwarded)
        p.reject_ids = {"x"}      # items with these _id: per-item 400 mapper_parsing_exception, always
        p.delay_count, p.delay_s = 1, 2.0   # next request: sleep 2 s before answering
        url = p.url

Everything else is forwarded as is. Counters: requests, bulk_requests, injected.
Threaded http.server on 127.0.0.1, an ephemeral port; standard library only.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.lock = threading.Lock()
        self.fail_429 = 0
        self.fail_500 = 0
        self.item_429 = 0
        self.reject_ids: set[str] = set()
        self.delay_count = 0
        self.delay_s = 0.0
        self.delay_bulk_only = False
        self.requests = 0
        self.bulk_requests = 0
        self.gzip_requests = 0
        self.last_auth: str | None = None
        self.injected = {"429": 0, "500": 0, "item_429": 0, "item_400": 0, "delay": 0}
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: object) -> None:  # quiet
                pass

            def _any(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                status, headers, out = proxy.handle(self.command, self.path, dict(self.headers.items()), body)
                self.send_response(status)
                for k, v in headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FaultProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- the faults ---

    def _take(self, name: str) -> bool:
        with self.lock:
            n = getattr(self, name)
            if n > 0:
                setattr(self, name, n - 1)
                return True
            return False

    def handle(self, method: str, path: str, headers: dict, body: bytes) -> tuple[int, dict, bytes]:
        enc = next((k for k in headers if k.lower() == "content-encoding"), None)
        with self.lock:
            self.requests += 1
            self.last_auth = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
            if enc and headers[enc].lower() == "gzip":
                self.gzip_requests += 1
        if enc and headers[enc].lower() == "gzip":
            # Look inside compressed bodies; forward them uncompressed.
            import gzip
            body = gzip.decompress(body)
            headers = {k: v for k, v in headers.items() if k != enc}
        is_bulk = method == "POST" and path.split("?")[0].endswith("/_bulk")
        if (is_bulk or not self.delay_bulk_only) and self._take("delay_count"):
            self.injected["delay"] += 1
            time.sleep(self.delay_s)
        if self._take("fail_429"):
            self.injected["429"] += 1
            return 429, {"Retry-After": "0", "Content-Type": "application/json"}, \
                b'{"error":{"type":"es_rejected_execution_exception","reason":"injected"},"status":429}'
        if self._take("fail_500"):
            self.injected["500"] += 1
            return 500, {"Content-Type": "application/json"}, b'{"error":"injected","status":500}'
        if method == "POST" and path.split("?")[0].endswith("/_bulk"):
            with self.lock:
                self.bulk_requests += 1
            return self._bulk(path, headers, body)
        return self._forward(method, path, headers, body)

    def _forward(self, method: str, path: str, headers: dict, body: bytes) -> tuple[int, dict, bytes]:
        h = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length", "connection")}
        req = urllib.request.Request(self.upstream + path, data=body if body or method in ("POST", "PUT") else None,
                                     method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.status, dict(r.headers.items()), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers.items()), e.read()

    def _bulk(self, path: str, headers: dict, body: bytes) -> tuple[int, dict, bytes]:
        lines = body.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        pairs = [(lines[i], lines[i + 1]) for i in range(0, len(lines) - 1, 2)]
        plan = []  # per item: None (forward) or an injected item result
        for action, _doc in pairs:
            a = json.loads(action)
            op, meta = next(iter(a.items()))
            if meta.get("_id") in self.reject_ids:
                self.injected["item_400"] += 1
                plan.append({op: {"_index": meta.get("_index"), "_id": meta.get("_id"), "status": 400,
                                  "error": {"type": "mapper_parsing_exception", "reason": "injected rejection"}}})
            elif self._take("item_429"):
                self.injected["item_429"] += 1
                plan.append({op: {"_index": meta.get("_index"), "_id": meta.get("_id"), "status": 429,
                                  "error": {"type": "es_rejected_execution_exception", "reason": "injected"}}})
            else:
                plan.append(None)
        fwd = [p for p, x in zip(pairs, plan) if x is None]
        items: list = []
        took = 0
        if fwd:
            status, h, out = self._forward("POST", path, headers, b"".join(a + b"\n" + d + b"\n" for a, d in fwd))
            if status != 200:
                return status, h, out
            resp = json.loads(out)
            items = resp["items"]
            took = resp.get("took", 0)
        it = iter(items)
        merged = [x if x is not None else next(it) for x in plan]
        errors = any(next(iter(m.values())).get("status", 200) >= 300 for m in merged)
        out = json.dumps({"took": took, "errors": errors, "items": merged}).encode()
        return 200, {"Content-Type": "application/json"}, out
