"""A proxy in front of moto for tests that need to see, or change, what goes to AWS.

moto does not echo everything AWS is sent (DescribeDomain never returns the master user) and cannot be told to
deny one call or answer one differently. `start_proxy(upstream, answer=..., rewrite=...)` forwards every call to
moto and records it; `answer(method, path, headers, body)` may answer a call itself with (status, content type,
body); `rewrite(headers, body, content)` may edit moto's answer. Loopback only; stopped with `srv.shutdown()`.

An `answer` may also return (status, content type, body, [(header, value), ...]) to send more headers (AWS's
REST-JSON services name the error in `x-amzn-ErrorType`, SQS's JSON protocol in `x-amzn-query-error`);
`json_error`, `rest_json_error` and `s3_error` build AWS's error answers in each wire format. Each recorded call
gets the HTTP `status` it was answered with, its `headers` (lower-cased names), and `answered: True` when the proxy
answered it itself.
"""

from __future__ import annotations

import json
import threading
import time
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
        rec = {"method": self.command, "path": self.path, "body": body, "target": self.headers.get("X-Amz-Target", ""),
               "auth": self.headers.get("Authorization", ""), "headers": {k.lower(): v for k, v in self.headers.items()}}
        self.calls.append(rec)
        mine = self.answer(self.command, self.path, self.headers, body)
        if mine is not None:
            status, ctype, raw = mine[:3]
            extra = list(mine[3]) if len(mine) > 3 else []
            rec.update(status=status, answered=True)
            return self._send(status, [("Content-Type", ctype), *extra], raw)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        r = requests.request(self.command, self.upstream + self.path, data=body, headers=headers, timeout=60)
        keep = [(k, v) for k, v in r.headers.items() if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding")]
        rec["status"] = r.status_code
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


def delay(target_suffix: str, seconds: float):
    """An `answer` hook: the JSON-protocol call whose X-Amz-Target ends so waits `seconds`, then goes to moto."""

    def answer(method, path, headers, body):
        if (headers.get("X-Amz-Target") or "").endswith(target_suffix):
            time.sleep(seconds)
        return None

    return answer


def deny(target_suffix: str, action: str):
    """An `answer` hook: AccessDeniedException for the JSON-protocol call whose X-Amz-Target ends so."""

    def answer(method, path, headers, body):
        if (headers.get("X-Amz-Target") or "").endswith(target_suffix):
            msg = {"__type": "AccessDeniedException", "message": f"User is not authorized to perform: {action}"}
            return 400, "application/x-amz-json-1.1", json.dumps(msg).encode()
        return None

    return answer


# --- AWS's error answers, one per wire protocol ------------------------------------------------------------------


def json_error(code: str, message: str, version: str = "1.1", status: int = 400, query_error: str | None = None,
               message_key: str = "message"):
    """An error of a JSON-protocol service (CloudTrail — which spells it `Message` —, CloudWatch Logs: JSON 1.1;
    SQS: JSON 1.0 with the `x-amzn-query-error: <query code>;Sender` header of its query-compatible protocol)."""
    headers = [("x-amzn-RequestId", "0c1a5e3e-7d5a-4c1e-9c39-3f8d1e2a6b7c")]
    if query_error:
        headers.append(("x-amzn-query-error", f"{query_error};Sender"))
    body = json.dumps({"__type": code, message_key: message}).encode()
    return status, f"application/x-amz-json-{version}", body, headers


def rest_json_error(status: int, code: str, message: str, **fields):
    """An error of a REST-JSON service (OpenSearch Service, Lambda): the code in `x-amzn-ErrorType`."""
    body = json.dumps({"message": message, **fields}).encode()
    return status, "application/json", body, [("x-amzn-ErrorType", code), ("x-amzn-RequestId", "5d1b0f6c-2a8e-4f0e-8d51-7c3b9e4a1f20")]


def s3_error(status: int, code: str, message: str, extra: str = ""):
    """An S3 REST-XML error document."""
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>{extra}'
            "<RequestId>4442587FB7D0A2F9</RequestId><HostId>dGVzdA==</HostId></Error>").encode()
    return status, "application/xml", body, [("x-amz-request-id", "4442587FB7D0A2F9")]
