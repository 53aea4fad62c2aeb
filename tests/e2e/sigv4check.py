"""Check a request's AWS Signature Version 4 with botocore, independently of the signer under test.

`verify_sigv4(...)` rebuilds the canonical request from what arrived (method, raw path and query, the headers the
`Authorization` header says were signed, the body) and compares botocore's signature with the one sent (AWS
General Reference / IAM User Guide, "Create a signed AWS API request"). It returns None when they match, else why
not: used for OpenSearch requests the Dashboards proxy signs (`es`) and for EC2's DescribeRegions (`ec2`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from urllib.parse import parse_qsl


def verify_sigv4(method: str, raw_path: str, headers: dict, body: bytes, *, access_key: str, secret_key: str,
                 token: str | None, service: str, region: str, content_sha256: bool = True) -> str | None:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    headers = {k.lower(): v for k, v in headers.items()}
    m = re.fullmatch(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, SignedHeaders=([^,]+), Signature=([0-9a-f]{64})",
                     headers.get("authorization", ""))
    if not m:
        return f"no SigV4 Authorization header: {headers.get('authorization')!r}"
    ak, day, got_region, got_service, signed, sig = m.groups()
    if (ak, got_region, got_service) != (access_key, region, service):
        return f"credential scope {ak}/{got_region}/{got_service}"
    if token is not None and (headers.get("x-amz-security-token") != token or "x-amz-security-token" not in signed.split(";")):
        return "session token missing or unsigned"
    if content_sha256 and headers.get("x-amz-content-sha256") != hashlib.sha256(body).hexdigest():
        return "x-amz-content-sha256 is not the hash of the body that arrived"
    if "host" not in signed.split(";"):
        return "host not signed"
    path, _, query = raw_path.partition("?")
    req = AWSRequest(method=method, url=f"http://{headers['host']}{path}", data=body,
                     headers={h: headers[h] for h in signed.split(";")}, params=parse_qsl(query, keep_blank_values=True))
    req.context["timestamp"] = headers["x-amz-date"]
    if headers["x-amz-date"][:8] != day:
        return "x-amz-date is not the credential's day"
    signer = SigV4Auth(Credentials(access_key, secret_key, token), service, region)
    canonical = signer.canonical_request(req)
    want = signer.signature(signer.string_to_sign(req, canonical), req)
    return None if hmac.compare_digest(want, sig) else f"signature mismatch; botocore's canonical request:\n{canonical}"
