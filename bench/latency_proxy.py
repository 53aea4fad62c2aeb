#!/usr/bin/env python3
"""A latency proxy for benchmarks: every request waits DELAY seconds, then is forwarded to UPSTREAM.

    python3 bench/latency_proxy.py UPSTREAM_URL [--delay 0.15] [--port 0]

Standard library only, one thread per connection (HTTP/1.1 keep-alive), so concurrent requests are delayed
concurrently, like a far-away endpoint. Prints `PORT <n>` on stdout once listening.
"""

from __future__ import annotations

import argparse
import http.client
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "host",
       "content-length"}


def make_handler(upstream: urllib.parse.SplitResult, delay: float):
    local = threading.local()

    def conn() -> http.client.HTTPConnection:
        c = getattr(local, "c", None)
        if c is None:
            c = http.client.HTTPConnection(upstream.hostname, upstream.port or 80, timeout=120)
            local.c = c
        return c

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            time.sleep(delay)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
            headers["Host"] = upstream.netloc
            for attempt in range(2):
                try:
                    c = conn()
                    c.request(self.command, self.path, body=body if body or self.command in ("POST", "PUT") else None,
                              headers=headers)
                    r = c.getresponse()
                    data = r.read()
                    break
                except (http.client.HTTPException, OSError):
                    local.c = None  # a stale keep-alive connection: reconnect once
                    if attempt:
                        raise
            self.send_response(r.status)
            for k, v in r.getheaders():
                if k.lower() not in HOP:
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle

        def log_message(self, *a) -> None:
            pass

    return Handler


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("upstream")
    ap.add_argument("--delay", type=float, default=0.15)
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args()
    up = urllib.parse.urlsplit(a.upstream)
    # a deep listen backlog: the default (5) drops SYNs under a burst of parallel calls, and the client's
    # retransmit after 1 s would be measured instead of the latency
    server_cls = type("Server", (ThreadingHTTPServer,), {"request_queue_size": 512})
    srv = server_cls(("127.0.0.1", a.port), make_handler(up, a.delay))
    srv.daemon_threads = True
    print(f"PORT {srv.server_address[1]}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
