#!/usr/bin/env python3
"""Writes tests/iam_reference.json: for every IAM action that a `PERMISSIONS` declaration in src/ names (and a few
more that reviews asked about), the resource types the Service Authorization Reference lists for it, and the ARN
form of each of those resource types. `permissions::tests::declarations_follow_the_service_authorization_reference`
checks the declarations against that file.

The data is read from a machine-readable scrape of the Service Authorization Reference: parliament's
iam_definition.json (parliament 1.6.4, `pip install parliament==1.6.4`; the file was last regenerated upstream on
2025-02-27), the first argument. Where a newer scrape showed the reference had changed, OVERRIDES says so and wins.

    python3 scripts/iam_reference.py .cache/venv/lib/python3.11/site-packages/parliament/iam_definition.json
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# prefix -> the page of the Service Authorization Reference
PAGES = {
    "cloudtrail": "list_awscloudtrail.html",
    "cloudwatch": "list_amazoncloudwatch.html",
    "ec2": "list_amazonec2.html",
    "es": "list_amazonopensearchservice.html",
    "iam": "list_awsidentityandaccessmanagementiam.html",
    "kms": "list_awskeymanagementservice.html",
    "lambda": "list_awslambda.html",
    "logs": "list_amazoncloudwatchlogs.html",
    "organizations": "list_awsorganizations.html",
    "s3": "list_amazons3.html",
    "secretsmanager": "list_awssecretsmanager.html",
    "sns": "list_amazonsns.html",
    "sqs": "list_amazonsqs.html",
    "ssm": "list_awssystemsmanager.html",
    "sts": "list_awssecuritytokenservice.html",
}

# Actions no declaration names, checked when the declarations were reviewed (kept so that adding one needs no
# second look-up).
EXTRA = [
    "cloudtrail:LookupEvents", "cloudtrail:PutEventSelectors", "cloudwatch:PutMetricAlarm", "es:ListDomainNames",
    "iam:CreateServiceLinkedRole", "kms:CreateAlias", "kms:CreateKey", "kms:ListAliases", "sqs:ListQueues",
]

NEWER = "iann0036/iam-dataset aws/iam_definition.json at f9b3c62b (2026-08-20)"
OVERRIDES = {
    # parliament's scrape lists no resource type; the newer one lists `topic` (optional)
    "sns:Unsubscribe": {"resource_types": ["topic"], "source": NEWER},
}
# Checked in the newer scrape too, and unchanged there.
CONFIRMED_NEWER = {
    "logs:DescribeLogGroups", "logs:DescribeSubscriptionFilters", "logs:DeleteSubscriptionFilter",
    "sns:ListSubscriptions", "sns:ListSubscriptionsByTopic", "sns:GetTopicAttributes", "sns:CreateTopic",
    "sns:SetTopicAttributes", "sns:Subscribe", "sns:TagResource", "sns:ListTagsForResource", "sns:DeleteTopic",
}

# Resource types an action lists as required (`*`) although a call names one resource of any one of them (the
# tagging actions of OpenSearch Service take one ARN).
ONE_OF = {
    "es:AddTags": "AddTags takes one ARN: a domain, a data source or an application",
    "es:ListTags": "ListTags takes one ARN: a domain, a data source or an application",
}

# ARN forms the reference's pattern does not spell out, and why they are still the resource type's.
SUFFIXES = {
    "logs:log-group": [":*", "a log group's own ARN (DescribeLogGroups' `arn`, CloudTrail's CloudWatchLogsLogGroupArn) "
                             "ends in `:*`, which also covers its log streams"],
}

LOCK_ACTIONS = re.compile(r'pub const ACTIONS: &\[&str\] = &\[([^\]]*)\]')


def declared() -> set[str]:
    out = set()
    for f in (REPO / "src").rglob("*.rs"):
        s = f.read_text()
        i = s.find("pub const PERMISSIONS: &[perm::Permission]")
        if i < 0:
            continue
        block = s[i:s.find("];", i)]
        out |= set(re.findall(r'"([a-z0-9-]+:[A-Za-z0-9]+)"', block))
        m = LOCK_ACTIONS.search(s)
        if m and "ACTIONS[" in block:
            out |= set(re.findall(r'"([^"]+)"', m.group(1)))
    return out


def main(path: str) -> None:
    data = json.load(open(path))
    actions, types = {}, {}
    for a in sorted(declared() | set(EXTRA)):
        prefix, name = a.split(":")
        hit = None
        for svc in data:
            if svc["prefix"] != prefix:
                continue
            for p in svc["privileges"]:
                if p["privilege"] == name:
                    hit = (svc, p)
                    break
            if hit:
                break
        if not hit:
            sys.exit(f"{a}: not in {path} (check the name and its casing)")
        svc, p = hit
        rts = [r["resource_type"] for r in p["resource_types"] if r["resource_type"]]
        entry = {"resource_types": rts, "source": "parliament"}
        if a in CONFIRMED_NEWER:
            entry["source"] = "parliament; " + NEWER
        entry.update(OVERRIDES.get(a, {}))
        if a in ONE_OF:
            entry["one_of"] = ONE_OF[a]
        actions[a] = entry
        arns = {r["resource"]: r["arn"] for r in svc["resources"]}
        for rt in entry["resource_types"]:
            t = rt.rstrip("*")
            key = f"{prefix}:{t}"
            types[key] = {"arn": arns[t]}
            if key in SUFFIXES:
                types[key]["suffix"], types[key]["why"] = SUFFIXES[key]
    doc = {
        "reference": {
            "what": "Service Authorization Reference, https://docs.aws.amazon.com/service-authorization/latest/reference/"
                    " (\"Actions, resources, and condition keys for <service>\"): per action, its \"Resource types\""
                    " column (`*`: required; empty: the action takes `*`), and each resource type's ARN form",
            "parliament": "parliament 1.6.4 iam_definition.json (blob 219409f6f925b884b619efe19ed0e35e95efbab2,"
                          " regenerated upstream 2025-02-27): the default source of each entry",
            "newer": NEWER + ": entries whose source names it were checked there too",
            "generated_by": "scripts/iam_reference.py",
        },
        "pages": {k: "https://docs.aws.amazon.com/service-authorization/latest/reference/" + v for k, v in sorted(PAGES.items())},
        "resource_types": dict(sorted(types.items())),
        "actions": actions,
    }
    # one line per action and per resource type
    lines = ["{"]
    for i, (k, v) in enumerate(doc.items()):
        end = "," if i < len(doc) - 1 else ""
        if k in ("resource_types", "actions"):
            inner = [f"  {json.dumps(a)}: {json.dumps(e)}" for a, e in v.items()]
            lines.append(f" {json.dumps(k)}: {{\n" + ",\n".join(inner) + f"\n }}{end}")
        else:
            lines.append(f" {json.dumps(k)}: " + json.dumps(v, indent=2).replace("\n", "\n ") + end)
    lines.append("}")
    out = "\n".join(lines) + "\n"
    assert json.loads(out) == doc
    (REPO / "tests/iam_reference.json").write_text(out)


if __name__ == "__main__":
    main(sys.argv[1])
