"""moto_server that also writes, for every request it authorises, the IAM action and resource moto checked and
whether it allowed it: one JSON line per check to the file named by TS_MOTO_ACTIONS_LOG. Used by
test_permissions.py to show which actions of a policy a run exercised. Arguments are moto_server's.

With TS_MOTO_CALLS_LOG set, it also writes every signed request it receives, before moto handles it, one JSON line
each: `method`, `path` (as sent, with its query), `body` (UTF-8, undecodable bytes replaced), `target`
(X-Amz-Target), `auth` (Authorization) and `key` (the access key that signed it) - the fields
iam_actions.actions_of_call reads - so a run's calls can be mapped to IAM actions, those moto does not check too.

It also corrects one fault of moto 5.2.5's signature check (see "the signed payload" below), without which moto,
once it enforces IAM, refuses as SignatureDoesNotMatch every bodiless REST request (every Lambda read,
DeleteFunction, OpenSearch Service's GETs, ...) and every query-protocol request whose form the client encoded
otherwise than botocore (the Rust SDK's IAM CreateRole or CreatePolicy with a Description)."""

from __future__ import annotations

import io
import json
import os
import sys
import threading

from moto.iam import access_control
from moto.moto_server import werkzeug_app

_LOG = os.environ["TS_MOTO_ACTIONS_LOG"]
_CALLS = os.environ.get("TS_MOTO_CALLS_LOG", "")
_lock = threading.Lock()
_orig = access_control.IAMRequestBase.check_action_permitted


def _recording(self, resource):
    allowed = False
    try:
        _orig(self, resource)
        allowed = True
    finally:
        with _lock, open(_LOG, "a") as f:
            f.write(json.dumps({"action": self._action, "resource": resource, "allowed": allowed,
                                "key": getattr(getattr(self, "_access_key", None), "_access_key_id", "")}) + "\n")


access_control.IAMRequestBase.check_action_permitted = _recording


# --- the signed payload ------------------------------------------------------------------------------------------
#
# moto/iam/access_control.py, IAMRequestBase._create_aws_request, rebuilds the signed request to recompute its SigV4
# signature (IAMRequestBase._calculate_signature) as (line 347 in moto 5.2.5)
#
#     AWSRequest(method=..., url=self._path, data=self._body or self._data, headers=<the signed headers>)
#
# `self._body` is BaseResponse.raw_body, `self._data` is BaseResponse.data (moto/core/authorization.py,
# ActionAuthenticatorMixin._authenticate_and_authorize_action, lines 57-58). Neither is the body as received:
# - raw_body is werkzeug's `request.data` (moto/core/responses.py, BaseResponse.setup_class, lines 218 and 247),
#   which is empty for a form-encoded body (werkzeug parses it into `request.form`): the query protocol (IAM, STS,
#   SNS). moto then takes `self._data`, the parsed form, and botocore form-encodes it again - in botocore's
#   spelling (a space as `+`), not the client's: the Rust SDK sends a space as `%20` (IAM CreateRole/CreatePolicy
#   with a Description), so the hash differs.
# - for a request with no body at all (a REST GET or DELETE: GetFunction, GetPolicy, ListFunctions,
#   DeleteFunction, es DescribeDomain, ...) raw_body is b"" and `self._data` is what BaseResponse.setup_class fell
#   back to: the URL's query parameters or, with none, *the HTTP headers* (`querystring.update(headers)`, line
#   268); botocore form-encodes that into a body the client never sent, so the hash is never SHA-256("").
# Either way the payload hash moto computes is not that of the payload, and the signature cannot match, whichever
# client signed (the Rust SDK; botocore too, for the bodiless case).
#
# SigV4's rule (IAM User Guide, "Create a signed AWS API request", the canonical request's last line, HashedPayload:
# the hex SHA-256 of the request's payload, of the empty string when there is none) is that the payload hashed is
# the body exactly as sent. The patch applies that rule and nothing else: the dispatcher (the WSGI application
# moto_server runs) keeps the bytes of each request's body as they arrived, before anything parses them, and puts
# the stream back for moto to read as before; `_create_aws_request` then gives the rebuilt request those bytes as
# its body instead of moto's reconstruction. Everything else the signature covers is moto's own, unchanged: method,
# path, query string, the signed headers and their values, the date, the credential scope (region, service), the
# key's secret; the comparison is moto's. A request whose signature does not cover exactly what arrived - another
# body, path, query or key - is still refused, and a form body is now checked byte for byte, where moto's rebuild
# accepted any body that parses to the same form (test_permissions.py, test_0, shows both). S3 is unaffected: its
# canonical request takes the payload hash from the signed x-amz-content-sha256 header (botocore S3SigV4Auth), as
# before.

_RAW_BODY = "trailsetup.raw_body"


def _keeping_raw_body(call):
    def __call__(self, environ, start_response):
        stream = environ.get("wsgi.input")
        if stream is not None:
            if environ.get("wsgi.input_terminated"):  # chunked: werkzeug's server de-chunks, the stream ends
                raw = stream.read()
            else:
                n = int(environ.get("CONTENT_LENGTH") or 0)
                raw = stream.read(n) if n > 0 else b""
            environ[_RAW_BODY] = raw
            environ["wsgi.input"] = io.BytesIO(raw)
            if _CALLS and environ.get("HTTP_AUTHORIZATION"):
                _log_call(environ, raw)
        return call(self, environ, start_response)

    return __call__


def _log_call(environ, raw: bytes):
    path = environ.get("RAW_URI") or environ.get("REQUEST_URI") or (
        environ.get("PATH_INFO", "/") + ("?" + environ["QUERY_STRING"] if environ.get("QUERY_STRING") else ""))
    auth = environ["HTTP_AUTHORIZATION"]
    key = auth.partition("Credential=")[2].partition("/")[0]
    with _lock, open(_CALLS, "a") as f:
        f.write(json.dumps({"method": environ.get("REQUEST_METHOD", ""), "path": path,
                            "body": raw.decode("utf-8", "replace"), "target": environ.get("HTTP_X_AMZ_TARGET", ""),
                            "auth": auth, "key": key}) + "\n")


werkzeug_app.DomainDispatcherApplication.__call__ = _keeping_raw_body(werkzeug_app.DomainDispatcherApplication.__call__)

_orig_create_aws_request = access_control.IAMRequestBase._create_aws_request


def _create_aws_request(self):
    request = _orig_create_aws_request(self)
    raw = getattr(self._headers, "environ", {}).get(_RAW_BODY)
    if raw is not None:
        request.data = raw
    return request


access_control.IAMRequestBase._create_aws_request = _create_aws_request

if __name__ == "__main__":
    from moto.server import main

    sys.exit(main(sys.argv[1:]))
