"""CloudWatch Logs -> OpenSearch forwarder (AWS Lambda, Python 3.12, no build step).

A CloudWatch Logs subscription filter on the trail's log group invokes `handler` with
event["awslogs"]["data"] = base64(gzip(JSON)). Each logEvent's `message` is one CloudTrail record;
it becomes a document exactly as `trailsetup backfill` builds it (ctdoc.py, a port of
src/ingest/doc.rs), and all of them go to OpenSearch in `_bulk` requests (op `create`, so a second
delivery of the same event is a 409 duplicate, not a second copy).

Environment:
  OPENSEARCH_URL            endpoint, e.g. https://search-x.us-east-1.es.amazonaws.com (required)
  OPENSEARCH_AUTH           sigv4 (default) | basic | none
  OPENSEARCH_SECRET_ARN     for basic: the Secrets Manager secret holding {"username": ..., "password": ...}
                            (never the password itself in the environment); read once per container, at the
                            first invocation, with the function's role (secretsmanager:GetSecretValue on it)
  OPENSEARCH_REGION         the domain's region, for sigv4 (init sets it). Without it: the region in the
                            endpoint host (`….<region>.es.amazonaws.com`), else AWS_REGION. The Lambda's
                            own region is not the domain's when a per-region forwarder writes to a domain
                            in the home region: SigV4 must be scoped to the domain's region.
                            Service `es`, or `aoss` when the host contains `.aoss.`.
  INDEX_PREFIX              default `cloudtrail`
  INDEX_GRANULARITY         day (default): indices `<prefix>-YYYY.MM.DD`; month: `<prefix>-YYYY.MM` (init sets it to
                            the stack's layout). Any other value: the invocation fails before anything is sent
                            (an error line is logged), since documents would land in the wrong indices.
  REDACT_SESSION_TOKEN      default true
  DLQ_URL                   SQS queue for rejected records; unset -> `TRAILSETUP_REJECT {json}` on stdout
  FORWARDER_MAX_ATTEMPTS    attempts per document for 429/5xx, default 6
  FORWARDER_RETRY_BASE_MS   first backoff, default 200 (doubles, full jitter)
  FORWARDER_RETRY_CAP_MS    backoff cap, default 10000
  FORWARDER_MAX_BULK_BYTES  split requests above this size, default 5 MiB
  FORWARDER_HTTP_TIMEOUT    seconds per request, default 30

Per item: 200/201 indexed, 409 duplicate, 429/5xx retried here with capped exponential backoff and
jitter (a request-level Retry-After is honoured); still failing -> an exception, so Lambda retries
the whole invocation (documents already indexed come back as 409 duplicates). Any other rejection
(and a record that is not a JSON object) goes to the dead-letter destination with the reason.
Returns {"records", "indexed", "duplicates", "rejected"}.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import random
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Optional

try:  # the Lambda zip holds both files side by side
    import ctdoc
except ImportError:  # pragma: no cover - imported as a package
    from . import ctdoc  # type: ignore[no-redef]

REJECT_PREFIX = "TRAILSETUP_REJECT"
SQS_BODY_LIMIT = 250_000


class RetryableFailure(RuntimeError):
    """Documents still failing with 429/5xx after the in-process attempts; Lambda should retry."""


def _log(msg: str, **fields: Any) -> None:
    print(json.dumps({"msg": msg, **fields}, default=str), file=sys.stderr, flush=True)


# OPENSEARCH_SECRET_ARN -> (user, password), for the life of the container
_SECRETS: dict = {}


def region_from_secret_arn(arn: str) -> str:
    """`arn:aws:secretsmanager:eu-west-1:123456789012:secret:name-AbCdEf` -> eu-west-1."""
    parts = arn.split(":")
    if len(parts) < 7 or parts[0] != "arn" or parts[2] != "secretsmanager" or not parts[3]:
        raise RuntimeError(f"OPENSEARCH_SECRET_ARN is not a Secrets Manager secret ARN: {arn!r}")
    return parts[3]


def basic_credentials() -> tuple[str, str]:
    """The user and password from the secret OPENSEARCH_SECRET_ARN names, read once and cached. A missing variable,
    an unreadable secret or one without both values raises RuntimeError: the invocation fails (Lambda retries it,
    then hands it to the on-failure destination), never an empty password."""
    arn = os.environ.get("OPENSEARCH_SECRET_ARN", "").strip()
    if not arn:
        raise RuntimeError("OPENSEARCH_AUTH=basic but OPENSEARCH_SECRET_ARN is not set (run `trailsetup init` again)")
    if arn in _SECRETS:
        return _SECRETS[arn]
    region = region_from_secret_arn(arn)
    try:
        import boto3

        value = boto3.client("secretsmanager", region_name=region).get_secret_value(SecretId=arn)
    except Exception as e:  # noqa: BLE001 - any failure to read is fatal for this invocation
        raise RuntimeError(f"cannot read the OpenSearch credentials from secret {arn}: {type(e).__name__}: {e}"
                           " (the function's role needs secretsmanager:GetSecretValue on it)") from None
    try:
        doc = json.loads(value.get("SecretString") or "")
    except ValueError:
        doc = None
    user = doc.get("username") if isinstance(doc, dict) else None
    pw = doc.get("password") if isinstance(doc, dict) else None
    if not (isinstance(user, str) and user and isinstance(pw, str) and pw):
        raise RuntimeError(f"secret {arn} must hold a JSON object with a non-empty \"username\" and \"password\"")
    _SECRETS[arn] = (user, pw)
    return user, pw


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, "") or default)
    except ValueError:
        return default


# --- event decoding ------------------------------------------------------------------------------

def decode_event(event: dict) -> dict:
    data = base64.b64decode(event["awslogs"]["data"])
    return json.loads(gzip.decompress(data))


# --- HTTP + auth -----------------------------------------------------------------------------------

def region_from_host(host: str) -> str | None:
    """`search-x-abc.eu-west-1.es.amazonaws.com` -> eu-west-1 (also `.aoss.` and `.amazonaws.com.cn`)."""
    m = re.search(r"\.([a-z]{2}(?:-[a-z]+)+-\d+)\.(?:es|aoss)\.amazonaws\.com(?:\.cn)?$", host)
    return m.group(1) if m else None


def signing_region(host: str) -> str:
    """The region SigV4 is scoped to: the domain's, never merely the function's own."""
    return (os.environ.get("OPENSEARCH_REGION", "").strip() or region_from_host(host)
            or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1")


class Sink:
    def __init__(self, url: str, auth: str, timeout: float) -> None:
        self.url = url.rstrip("/")
        self.auth = auth
        self.timeout = timeout
        self._signer = None
        if auth == "sigv4":
            import botocore.session
            from botocore.auth import SigV4Auth

            host = urllib.parse.urlsplit(self.url).hostname or ""
            service = "aoss" if ".aoss." in host else "es"
            region = signing_region(host)
            creds = botocore.session.Session().get_credentials()
            if creds is None:
                raise RuntimeError("OPENSEARCH_AUTH=sigv4 but no AWS credentials found")
            self._signer = SigV4Auth(creds, service, region)
        elif auth == "basic":
            user, pw = basic_credentials()
            self._basic = "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()
        elif auth != "none":
            raise RuntimeError(f"OPENSEARCH_AUTH must be sigv4, basic or none, not {auth!r}")

    def _headers(self, method: str, url: str, body: bytes) -> dict:
        headers = {"Content-Type": "application/x-ndjson"}
        if self.auth == "basic":
            headers["Authorization"] = self._basic
        elif self.auth == "sigv4":
            import hashlib

            from botocore.awsrequest import AWSRequest

            headers["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
            req = AWSRequest(method=method, url=url, data=body, headers=headers)
            self._signer.add_auth(req)  # type: ignore[union-attr]
            headers = dict(req.headers.items())
        return headers

    def bulk(self, body: bytes, prefix: str) -> tuple[int, dict, bytes]:
        """POST /<prefix>/_bulk (every item names its own index; the path keeps IAM policies scoped to
        `<prefix>*` valid); returns (status, headers, body). Network errors are status 0."""
        url = self.url + "/" + prefix + "/_bulk"
        req = urllib.request.Request(url, data=body, method="POST", headers=self._headers("POST", url, body))
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                return r.status, dict(r.headers.items()), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers.items()) if e.headers else {}, e.read() or b""
        except (urllib.error.URLError, OSError) as e:  # connection refused/reset, timeout
            return 0, {}, str(e).encode()


def _retry_after(headers: dict) -> Optional[float]:
    for k, v in headers.items():
        if k.lower() == "retry-after":
            try:
                return max(0.0, float(v))
            except ValueError:
                return None
    return None


# --- dead letters ----------------------------------------------------------------------------------

def redact_session_tokens(text: str) -> str:
    """Every `"sessionToken": "<value>"` in a record's text (which may not be JSON) with its value replaced by
    REDACTED, also in the escaped spelling of a JSON string holding JSON — the same rule as the Rust quarantine
    (src/ingest/quarantine.rs, redact_session_tokens)."""
    for q in ('"', '\\"'):
        key = f"{q}sessionToken{q}"
        out, i = [], 0
        while True:
            k = text.find(key, i)
            if k < 0:
                break
            j = k + len(key)
            while j < len(text) and text[j].isspace():
                j += 1
            if j < len(text) and text[j] == ":":
                j += 1
                while j < len(text) and text[j].isspace():
                    j += 1
                if text.startswith(q, j):
                    start = j + len(q)
                    if q == '"':
                        e = start
                        while e < len(text) and text[e] != '"':
                            e += 2 if text[e] == "\\" else 1
                    else:
                        e = text.find(q, start)
                        e = len(text) if e < 0 else e
                    out.append(text[i:start])
                    out.append(ctdoc.REDACTED)
                    i = min(e, len(text))
                    continue
            out.append(text[i:k + len(key)])
            i = k + len(key)
        out.append(text[i:])
        text = "".join(out)
    return text


class DeadLetters:
    def __init__(self) -> None:
        self.url = os.environ.get("DLQ_URL", "").strip()
        self._sqs = None

    def send(self, reason: str, index: Optional[str], id_: Optional[str], document: Any) -> None:
        msg = {"reason": reason, "index": index, "id": id_, "document": document}
        text = json.dumps(msg, ensure_ascii=False)
        if not self.url:
            print(f"{REJECT_PREFIX} {text}", flush=True)
            return
        if len(text.encode()) > SQS_BODY_LIMIT:
            raw = document if isinstance(document, str) else json.dumps(document, ensure_ascii=False)
            msg["document"] = raw[: SQS_BODY_LIMIT // 2]
            msg["document_truncated"] = True
            text = json.dumps(msg, ensure_ascii=False)
        if self._sqs is None:
            import boto3

            self._sqs = boto3.client("sqs")
        self._sqs.send_message(QueueUrl=self.url, MessageBody=text)


# --- the load --------------------------------------------------------------------------------------

GRANULARITIES = ("day", "month")


def index_granularity() -> str:
    """INDEX_GRANULARITY: `day` (also when unset or empty) or `month`; anything else raises RuntimeError, after an
    error line in the log: guessing would write documents into indices the stack's layout does not have."""
    raw = os.environ.get("INDEX_GRANULARITY", "")
    g = raw.strip().lower() or "day"
    if g not in GRANULARITIES:
        _log("refusing to run: INDEX_GRANULARITY must be day or month", level="error", INDEX_GRANULARITY=raw)
        raise RuntimeError(f"INDEX_GRANULARITY must be day or month, not {raw!r} (run `trailsetup init` again)")
    return g


class Forwarder:
    def __init__(self, context: Any = None) -> None:
        self.granularity = index_granularity()
        url = os.environ.get("OPENSEARCH_URL", "").strip()
        if not url:
            raise RuntimeError("OPENSEARCH_URL is not set")
        self.sink = Sink(url, os.environ.get("OPENSEARCH_AUTH", "sigv4").strip().lower(),
                         float(os.environ.get("FORWARDER_HTTP_TIMEOUT", "30")))
        self.prefix = os.environ.get("INDEX_PREFIX", "").strip() or "cloudtrail"
        self.redact = os.environ.get("REDACT_SESSION_TOKEN", "true").strip().lower() not in ("0", "false", "no", "off")
        self.max_attempts = max(1, _env_int("FORWARDER_MAX_ATTEMPTS", 6))
        self.base = _env_int("FORWARDER_RETRY_BASE_MS", 200) / 1000.0
        self.cap = _env_int("FORWARDER_RETRY_CAP_MS", 10_000) / 1000.0
        self.max_bytes = _env_int("FORWARDER_MAX_BULK_BYTES", 5 * 1024 * 1024)
        self.dlq = DeadLetters()
        self.context = context
        self.stats = {"records": 0, "indexed": 0, "duplicates": 0, "rejected": 0}

    def _sleep(self, attempt: int, retry_after: Optional[float]) -> None:
        delay = random.uniform(0, min(self.cap, self.base * (2 ** attempt)))
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.cap))
        remaining = getattr(self.context, "get_remaining_time_in_millis", None)
        if remaining is not None and remaining() / 1000.0 < delay + self.sink.timeout + 1:
            raise RetryableFailure("not enough time left in this invocation to retry")
        time.sleep(delay)

    def reject(self, reason: str, index: Optional[str], id_: Optional[str], document: Any) -> None:
        self.stats["rejected"] += 1
        if self.redact and isinstance(document, str):
            # a record that never became a document keeps its credentials no more than the index does
            document = redact_session_tokens(document)
        self.dlq.send(reason, index, id_, document)

    def run(self, messages: list) -> dict:
        docs = []
        for text in messages:
            self.stats["records"] += 1
            try:
                docs.append(ctdoc.build(text, self.prefix, self.redact, self.granularity))
            except ctdoc.DocError as e:
                self.reject(f"not a document: {e}", None, None, text)
        batch: list = []
        size = 0
        for d in docs:
            n = len(d.body) + len(d.index) + len(d.id) + 40
            if batch and size + n > self.max_bytes:
                self.send(batch)
                batch, size = [], 0
            batch.append(d)
            size += n
        if batch:
            self.send(batch)
        return dict(self.stats)

    def send(self, docs: list) -> None:
        pending = list(docs)
        last_reason = ""
        retry_after: Optional[float] = None
        for attempt in range(self.max_attempts):
            if attempt:
                self._sleep(attempt - 1, retry_after)
            retry_after = None
            body = b"".join(d.action() + b"\n" + d.body + b"\n" for d in pending)
            status, headers, resp = self.sink.bulk(body, self.prefix)
            if status == 0 or status == 429 or status >= 500:
                retry_after = _retry_after(headers)
                last_reason = f"HTTP {status}: {resp[:300]!r}"
                _log("bulk request failed; will retry", status=status, attempt=attempt + 1, docs=len(pending))
                continue
            if status != 200:
                # The whole request refused (auth, bad endpoint...): nothing was written; let Lambda retry.
                raise RuntimeError(f"_bulk refused with HTTP {status}: {resp[:500]!r}")
            try:
                items = json.loads(resp)["items"]
            except (ValueError, KeyError, TypeError) as e:
                raise RuntimeError(f"_bulk answered 200 without items: {e}") from None
            if len(items) != len(pending):
                raise RuntimeError(f"_bulk answered {len(items)} items for {len(pending)} documents")
            retry = []
            for d, item in zip(pending, items):
                res = next(iter(item.values()), {}) if isinstance(item, dict) else {}
                st = int(res.get("status", 0) or 0)
                if st in (200, 201):
                    self.stats["indexed"] += 1
                elif st == 409:
                    self.stats["duplicates"] += 1
                elif st == 429 or st >= 500 or st == 0:
                    retry.append(d)
                    last_reason = f"item status {st}: {json.dumps(res.get('error'))[:300]}"
                else:
                    err = res.get("error")
                    reason = f"status {st}: " + (json.dumps(err, ensure_ascii=False) if err is not None else "rejected")
                    self.reject(reason, d.index, d.id, _document(d))
            if not retry:
                return
            _log("bulk items to retry", count=len(retry), attempt=attempt + 1)
            pending = retry
        raise RetryableFailure(f"{len(pending)} documents still failing after {self.max_attempts} attempts; last: {last_reason}")


def _document(d: Any) -> Any:
    try:
        return d.document()
    except ValueError:
        return d.body.decode("utf-8", "replace")


def handler(event: dict, context: Any = None) -> dict:
    payload = decode_event(event)
    if payload.get("messageType") == "CONTROL_MESSAGE":
        return {"records": 0, "indexed": 0, "duplicates": 0, "rejected": 0}
    messages = [e.get("message", "") for e in payload.get("logEvents", [])]
    fw = Forwarder(context)
    summary = fw.run(messages)
    _log("done", logGroup=payload.get("logGroup"), logStream=payload.get("logStream"), **summary)
    return summary
