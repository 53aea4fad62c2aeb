"""A proxy in front of moto for tests that need to see, or change, what goes to AWS.

moto does not echo everything AWS is sent (DescribeDomain never returns the master user) and cannot be told to
deny one call or answer one differently. `start_proxy(upstream, answer=..., rewrite=...)` forwards every call to
moto and records it; `answer(method, path, headers, body)` may answer a call itself with (status, content type,
body); `rewrite(headers, body, content)` may edit moto's answer. Loopback only; stopped with `srv.shutdown()`.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests


class _Proxy(BaseHTTPRequestHandler):
    upstream = ""
    calls: list = []
    answer = staticmethod(lambda method, path, headers, body: None)
    rewrite = staticmethod(lambda headers, body, content: content)

    def _send(self, status, headers, content):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def _handle(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.calls.append({"method": self.command, "path": self.path, "body": body, "target": self.headers.get("X-Amz-Target", ""),
                           "auth": self.headers.get("Authorization", "")})
        mine = self.answer(self.command, self.path, self.headers, body)
        if mine is not None:
            status, ctype, raw = mine
            return self._send(status, [("Content-Type", ctype)], raw)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        r = requests.request(self.command, self.upstream + self.path, data=body, headers=headers, timeout=60)
        keep = [(k, v) for k, v in r.headers.items() if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding")]
        self._send(r.status_code, keep, self.rewrite(self.headers, body, r.content))

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

    def log_message(self, *a):
        pass


def start_proxy(upstream: str, answer=None, rewrite=None):
    """(server, url, calls): a recording proxy to `upstream` on 127.0.0.1."""
    attrs = {"upstream": upstream, "calls": []}
    if answer is not None:
        attrs["answer"] = staticmethod(answer)
    if rewrite is not None:
        attrs["rewrite"] = staticmethod(rewrite)
    handler = type("P", (_Proxy,), attrs)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}", handler.calls


def deny(target_suffix: str, action: str):
    """An `answer` hook: AccessDeniedException for the JSON-protocol call whose X-Amz-Target ends so."""

    def answer(method, path, headers, body):
        if (headers.get("X-Amz-Target") or "").endswith(target_suffix):
            msg = {"__type": "AccessDeniedException", "message": f"User is not authorized to perform: {action}"}
            return 400, "application/x-amz-json-1.1", json.dumps(msg).encode()
        return None

    return answer
