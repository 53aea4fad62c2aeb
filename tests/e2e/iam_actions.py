"""The IAM action each recorded AWS call needs (a call recorded by awsproxy.start_proxy).

- JSON protocol (CloudTrail, CloudWatch Logs, SQS, SSM, ...): `X-Amz-Target: <Prefix>_<Version>.<Operation>` →
  `<signing service>:<Operation>`.
- Query protocol (IAM, STS, EC2, SNS, CloudWatch): `Action=<Operation>` in the form body → `<signing
  service>:<Operation>` (CloudWatch is signed as `monitoring`; its IAM prefix is `cloudwatch`, Service
  Authorization Reference, "Actions, resources, and condition keys for Amazon CloudWatch",
  https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazoncloudwatch.html).
- Smithy RPC v2 CBOR protocol (what the SDK's CloudWatch client sent): `POST /service/<Service>/operation/<Operation>`
  → `<prefix>:<Operation>`.
- REST (S3, Lambda, OpenSearch Service `es`): method and path, mapped below (`_s3`, `_lambda`, `_es`).

The signing service is read from the SigV4 `Credential=<key>/<date>/<region>/<service>/aws4_request` scope.
"""

from __future__ import annotations

import re
import urllib.parse

# signing name → IAM service prefix, where they differ
_PREFIX = {"monitoring": "cloudwatch"}

# SQS batch operations have no IAM action of their own: each is authorised as its single-message action ("Amazon
# SQS API permissions: Actions and resource reference",
# https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-api-permissions-reference.html;
# the Service Authorization Reference for SQS lists no *Batch action). moto checks them under their own name.
BATCH = {
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}


def signing_service(auth: str) -> str:
    m = re.search(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/aws4_request", auth or "")
    return m.group(1) if m else ""


def actions_of_call(call: dict) -> set[str]:
    """The IAM actions one recorded call needs: one, except S3's DeleteObjects (`_s3_delete_objects`)."""
    body = call.get("body") or b""
    if signing_service(call.get("auth", "")) == "s3" and call["method"] == "POST" and "delete" in \
            urllib.parse.parse_qs(urllib.parse.urlsplit(call["path"]).query, keep_blank_values=True):
        return _s3_delete_objects(body.decode("utf-8", "replace") if isinstance(body, bytes) else body)
    return {action_of(call)}


def _s3_delete_objects(body: str) -> set[str]:
    """DeleteObjects (POST ?delete): "you must always specify the s3:DeleteObject permission", and
    s3:DeleteObjectVersion "to delete a specific version of an object from a versioning-enabled bucket" (Amazon S3
    API reference, DeleteObjects, Permissions: https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteObjects.html)."""
    return {"s3:DeleteObject", "s3:DeleteObjectVersion"} if "<VersionId>" in body else {"s3:DeleteObject"}


def action_of(call: dict) -> str:
    """`service:Action` for one recorded call (`method`, `path`, `body`, `target`, `auth`)."""
    svc = signing_service(call.get("auth", ""))
    body = call.get("body") or b""
    body = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    target = call.get("target") or ""
    if target:
        a = f"{_PREFIX.get(svc, svc)}:{target.rsplit('.', 1)[1]}"
        return BATCH.get(a, a)
    m = re.match(r"/service/[^/]+/operation/([A-Za-z]+)$", call["path"])
    if m:
        return f"{_PREFIX.get(svc, svc)}:{m.group(1)}"
    if call["method"] == "POST" and "Action=" in body:
        a = f"{_PREFIX.get(svc, svc)}:{urllib.parse.parse_qs(body)['Action'][0]}"
        return BATCH.get(a, a)
    if svc == "s3":
        return _s3(call["method"], call["path"])
    if svc == "lambda":
        return _lambda(call["method"], call["path"])
    if svc == "es":
        return _es(call["method"], call["path"])
    raise ValueError(f"no IAM action known for {svc} {call['method']} {call['path']}")


# S3: "Actions, resources, and condition keys for Amazon S3"
# (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html) and, for the API operations
# whose permission has another name, "Required permissions for Amazon S3 API operations"
# (https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-with-s3-policy-actions.html):
# HeadBucket → s3:ListBucket, ListObjectsV2 → s3:ListBucket, HeadObject → s3:GetObject,
# ListObjectVersions → s3:ListBucketVersions, DeleteObjects → actions_of_call,
# Get/PutBucketEncryption → s3:Get/PutEncryptionConfiguration,
# Get/PutBucketNotificationConfiguration → s3:Get/PutBucketNotification,
# Get/PutBucketLifecycleConfiguration → s3:Get/PutLifecycleConfiguration, ListBuckets → s3:ListAllMyBuckets.
_S3_SUB = {
    # sub-resource: (GET, PUT, DELETE)
    "policy": ("s3:GetBucketPolicy", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy"),
    "publicAccessBlock": ("s3:GetBucketPublicAccessBlock", "s3:PutBucketPublicAccessBlock", "s3:PutBucketPublicAccessBlock"),
    "encryption": ("s3:GetEncryptionConfiguration", "s3:PutEncryptionConfiguration", "s3:PutEncryptionConfiguration"),
    "ownershipControls": ("s3:GetBucketOwnershipControls", "s3:PutBucketOwnershipControls", "s3:PutBucketOwnershipControls"),
    "versioning": ("s3:GetBucketVersioning", "s3:PutBucketVersioning", None),
    "tagging": ("s3:GetBucketTagging", "s3:PutBucketTagging", "s3:PutBucketTagging"),
    "notification": ("s3:GetBucketNotification", "s3:PutBucketNotification", None),
    "lifecycle": ("s3:GetLifecycleConfiguration", "s3:PutLifecycleConfiguration", "s3:PutLifecycleConfiguration"),
    "location": ("s3:GetBucketLocation", None, None),
    "acl": ("s3:GetBucketAcl", "s3:PutBucketAcl", None),
    "versions": ("s3:ListBucketVersions", None, None),
}


def _s3(method: str, path: str) -> str:
    u = urllib.parse.urlsplit(path)
    q = urllib.parse.parse_qs(u.query, keep_blank_values=True)
    parts = [p for p in u.path.split("/") if p]
    if not parts:
        if method == "GET":
            return "s3:ListAllMyBuckets"
        raise ValueError(f"S3 {method} {path}")
    if len(parts) == 1:  # the bucket
        for sub, (get, put, delete) in _S3_SUB.items():
            if sub in q:
                a = {"GET": get, "PUT": put, "DELETE": delete}.get(method)
                if a:
                    return a
        return {"HEAD": "s3:ListBucket", "GET": "s3:ListBucket", "PUT": "s3:CreateBucket", "DELETE": "s3:DeleteBucket"}[method]
    # an object
    if "versionId" in q and method == "DELETE":
        return "s3:DeleteObjectVersion"
    if "versionId" in q and method in ("GET", "HEAD"):
        return "s3:GetObjectVersion"
    return {"HEAD": "s3:GetObject", "GET": "s3:GetObject", "PUT": "s3:PutObject", "DELETE": "s3:DeleteObject"}[method]


# Lambda: "Actions, resources, and condition keys for AWS Lambda"
# (https://docs.aws.amazon.com/service-authorization/latest/reference/list_awslambda.html); the paths are the Lambda
# API reference's (https://docs.aws.amazon.com/lambda/latest/api/API_Operations.html).
_LAMBDA = [
    ("POST", r"/2015-03-31/functions/?$", "lambda:CreateFunction"),
    ("GET", r"/2015-03-31/functions/[^/]+/?$", "lambda:GetFunction"),
    ("DELETE", r"/2015-03-31/functions/[^/]+/?$", "lambda:DeleteFunction"),
    ("GET", r"/2015-03-31/functions/[^/]+/configuration$", "lambda:GetFunctionConfiguration"),
    ("PUT", r"/2015-03-31/functions/[^/]+/configuration$", "lambda:UpdateFunctionConfiguration"),
    ("PUT", r"/2015-03-31/functions/[^/]+/code$", "lambda:UpdateFunctionCode"),
    ("GET", r"/2015-03-31/functions/[^/]+/policy$", "lambda:GetPolicy"),
    ("POST", r"/2015-03-31/functions/[^/]+/policy$", "lambda:AddPermission"),
    ("DELETE", r"/2015-03-31/functions/[^/]+/policy/[^/]+$", "lambda:RemovePermission"),
    ("GET", r"/2019-09-25/functions/[^/]+/event-invoke-config$", "lambda:GetFunctionEventInvokeConfig"),
    ("PUT", r"/2019-09-25/functions/[^/]+/event-invoke-config$", "lambda:PutFunctionEventInvokeConfig"),
    ("POST", r"/2019-09-25/functions/[^/]+/event-invoke-config$", "lambda:UpdateFunctionEventInvokeConfig"),
    ("GET", r"/2017-03-31/tags/.+$", "lambda:ListTags"),
    ("POST", r"/2017-03-31/tags/.+$", "lambda:TagResource"),
    ("DELETE", r"/2017-03-31/tags/.+$", "lambda:UntagResource"),
    ("PUT", r"/2017-10-31/functions/[^/]+/concurrency$", "lambda:PutFunctionConcurrency"),
]

# OpenSearch Service control plane: "Actions, resources, and condition keys for Amazon OpenSearch Service"
# (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonopensearchservice.html).
_ES = [
    ("POST", r"/2021-01-01/opensearch/domain/?$", "es:CreateDomain"),
    ("GET", r"/2021-01-01/opensearch/domain/[^/]+/?$", "es:DescribeDomain"),
    ("DELETE", r"/2021-01-01/opensearch/domain/[^/]+/?$", "es:DeleteDomain"),
    ("GET", r"/2021-01-01/opensearch/domain/[^/]+/config$", "es:DescribeDomainConfig"),
    ("POST", r"/2021-01-01/opensearch/domain/[^/]+/config$", "es:UpdateDomainConfig"),
    ("GET", r"/2021-01-01/tags/?$", "es:ListTags"),
    ("POST", r"/2021-01-01/tags/?$", "es:AddTags"),
]


def _match(table, svc, method, path):
    p = urllib.parse.urlsplit(path).path
    for m, rx, action in table:
        if m == method and re.match(rx, p):
            return action
    raise ValueError(f"no IAM action known for {svc} {method} {path}")


def _lambda(method: str, path: str) -> str:
    return _match(_LAMBDA, "lambda", method, path)


def _es(method: str, path: str) -> str:
    return _match(_ES, "es", method, path)
