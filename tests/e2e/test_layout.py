"""The index layout fits the cluster: five years of daily log files into the one-node test cluster with the default
`cluster.max_shards_per_node` (1,000) → init picks monthly indices, every record is indexed, health is green.

Daily indices would need 1,827 indices (one primary each; no replica on one node with `auto_expand_replicas: 0-1`)
— past the 1,000 shards one node accepts — so the same backfill on the old layout stops indexing.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path

import requests

ACCT = "111122223333"
START = dt.date(2020, 1, 1)
DAYS = 5 * 365 + 2  # 2020-01-01 .. 2024-12-31 (two leap days)


def five_years(root: Path) -> int:
    n = 0
    for i in range(DAYS):
        day = START + dt.timedelta(days=i)
        d = root / "AWSLogs" / ACCT / "CloudTrail" / "us-east-1" / day.strftime("%Y/%m/%d")
        d.mkdir(parents=True)
        recs = [{"eventVersion": "1.09", "eventTime": f"{day.isoformat()}T{h:02d}:00:00Z", "eventID": f"layout-{i}-{h}",
                 "eventName": "GetObject", "eventSource": "s3.amazonaws.com", "awsRegion": "us-east-1",
                 "recipientAccountId": ACCT, "userIdentity": {"type": "IAMUser", "arn": f"arn:aws:iam::{ACCT}:user/u"}}
                for h in (3, 21)]
        (d / f"{ACCT}_CloudTrail_us-east-1_{day.strftime('%Y%m%d')}T0000Z_x.json.gz").write_bytes(
            gzip.compress(json.dumps({"Records": recs}).encode(), 1))
        n += len(recs)
    return n


def test_five_years_on_one_node(run_cli, moto_reset, opensearch_url, os_clean, tmp_path, aws_env):
    prefix = os_clean
    aws_env.pop("TRAILSETUP_INDEX_GRANULARITY")  # init chooses (auto)
    health = requests.get(f"{opensearch_url}/_cluster/health", timeout=30).json()
    assert health["number_of_data_nodes"] == 1
    settings = requests.get(f"{opensearch_url}/_cluster/settings?include_defaults=true&flat_settings=true", timeout=30).json()
    assert settings["defaults"]["cluster.max_shards_per_node"] == "1000"

    common = ["--yes", "--output", "json", "--regions", "us-east-1", "--opensearch-url", opensearch_url,
              "--opensearch-auth", "none", "--index-prefix", prefix, "--no-backfill"]
    rc, out, err = run_cli(["init", *common], timeout=300)
    assert rc == 0, err[-3000:]
    plan = json.loads(out)["plan"]
    tpl = next(c for c in plan["changes"] if c["kind"] == "opensearch-index-template")
    assert tpl["details"]["granularity"] == "month", tpl
    state = json.loads(next((Path(aws_env["XDG_STATE_HOME"]) / "trailsetup").glob("*.json")).read_text())
    assert state["index_granularity"] == "month"
    installed = requests.get(f"{opensearch_url}/_index_template/{prefix}-trailsetup", timeout=30).json()
    t = installed["index_templates"][0]["index_template"]
    assert t["_meta"]["granularity"] == "month"
    assert t["template"]["settings"]["index"]["auto_expand_replicas"] == "0-1"

    src = tmp_path / "five-years"
    total = five_years(src)
    # no --opensearch-url, no --index-prefix: the stack's, and its layout, from init's state
    rc, out, err = run_cli(["backfill", "--output", "json", "--source-dir", src], timeout=900)
    assert rc == 0, err[-3000:]
    s = json.loads(out)["backfill"]
    assert s["records"] == total and s["indexed"] == total and s["quarantined"] == 0, s

    indices = sorted(i["index"] for i in requests.get(f"{opensearch_url}/_cat/indices/{prefix}-*?format=json", timeout=60).json())
    assert indices == [f"{prefix}-{y}.{m:02d}" for y in range(2020, 2025) for m in range(1, 13)]
    requests.post(f"{opensearch_url}/{prefix}/_refresh", timeout=60)
    assert requests.get(f"{opensearch_url}/{prefix}/_count", timeout=60).json()["count"] == total
    h = requests.get(f"{opensearch_url}/_cluster/health/{prefix}-*?wait_for_status=green&timeout=30s", timeout=60).json()
    assert h["status"] == "green" and h["unassigned_shards"] == 0, h

    # search touches only the indices of its window, on this layout too
    rc, out, err = run_cli(["search", "--output", "json", "--from", "2022-03-05", "--to", "2022-03-06", "--all"], timeout=120)
    assert rc == 0, err[-3000:]
    events = json.loads(out)["search"]["events"]
    assert sorted(e["eventID"] for e in events) == sorted(
        f"layout-{(dt.date(2022, 3, d) - START).days}-{h}" for d in (5, 6) for h in (3, 21))
    assert {e["index"] for e in events} == {f"{prefix}-2022.03"}
