"""Backfill at organization scale, against moto and a real OpenSearch node: discovery of organization layouts
with delimiter listings, pruning by --accounts/--regions/--from/--to, a checkpoint that collapses to directory
markers, kill -9 resume from S3, and a resumable `--enqueue`. Counts are checked with plain HTTP and boto3."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from awsproxy import start_proxy
from test_backfill import backfill, os_count, synth, wait_until_count
from test_ingest import make_queues, queue_counts

BUCKET = "org-logs"
ORG = "o-abc123def4"


def records_of(path: Path) -> list[dict]:
    return json.loads(gzip.decompress(path.read_bytes()))["Records"]


def upload(s3, corpus: Path, key_for) -> dict[str, Path]:
    """Put every corpus file at key_for(relative path under AWSLogs/); returns key → local file."""
    keys = {}
    for p in sorted(corpus.rglob("*.json.gz")):
        rel = "/".join(p.parts[p.parts.index("AWSLogs") + 1:])
        key = key_for(rel)
        s3.put_object(Bucket=BUCKET, Key=key, Body=p.read_bytes())
        keys[key] = p
    return keys


def org_layout(rel: str) -> str:
    # account 111111111111 logs through the organization trail, 222222222222 through its own trail
    return f"AWSLogs/{ORG}/{rel}" if rel.startswith("111111111111/") else f"AWSLogs/{rel}"


def test_org_layout_discovery_pruning_and_collapse(run_cli, moto_reset, boto, opensearch_url, os_clean, tmp_path):
    prefix = os_clean
    s3 = boto("s3")
    s3.create_bucket(Bucket=BUCKET)
    corpus = tmp_path / "corpus"
    subprocess.run(["python3", str(Path(os.environ.get("CT_SYNTH", "/work/shared/tools/ct_synth.py"))),
                    os.environ.get("TS_FIXTURES", "/work/shared/fixtures/cloudtrail"), str(corpus), "--records", "6000",
                    "--per-file", "20", "--days", "45", "--regions", "2", "--accounts", "111111111111,222222222222"],
                   check=True, capture_output=True)
    keys = upload(s3, corpus, org_layout)
    # digest files and another service's logs sit beside the trail's: never loaded, never listed as work
    s3.put_object(Bucket=BUCKET, Key=f"AWSLogs/{ORG}/111111111111/CloudTrail-Digest/us-east-1/2026/10/01/d.json.gz", Body=b"x")
    s3.put_object(Bucket=BUCKET, Key="AWSLogs/222222222222/vpcflowlogs/us-east-1/2026/10/01/f.log.gz", Body=b"x")
    per_account = Counter(k.split("/")[2] if k.split("/")[1] == ORG else k.split("/")[1] for k in keys)
    assert set(per_account) == {"111111111111", "222222222222"}

    # One account of the organization folder: only its files; the listing never enters the other account.
    s, _ = backfill(run_cli, ["--bucket", BUCKET, "--opensearch-url", opensearch_url, "--index-prefix", prefix + "-a",
                              "--accounts", "111111111111"])
    want = sum(len(records_of(p)) for k, p in keys.items() if "/111111111111/" in k)
    assert s["files"] == per_account["111111111111"] and s["records"] == want == s["indexed"], s
    assert os_count(opensearch_url, f"{prefix}-a-*") == want

    # Everything: both layouts; the finished checkpoint is the one marker of the source prefix.
    s, _ = backfill(run_cli, ["--bucket", BUCKET, "--opensearch-url", opensearch_url, "--index-prefix", prefix + "-b"])
    assert s["files"] == len(keys) and s["records"] == 6000 == s["indexed"] + s["duplicates"], s
    full_lists = s["list_requests"]
    journal = Path(s["checkpoint"]).read_text().splitlines()
    assert journal[1:] == ['D "AWSLogs/"'], journal
    assert s["checkpoint_bytes"] == len("\n".join(journal)) + 1
    again, _ = backfill(run_cli, ["--bucket", BUCKET, "--opensearch-url", opensearch_url, "--index-prefix", prefix + "-b"])
    assert again["files"] == 0 and again["already_done_dirs"] == 1 and again["list_requests"] == 0, again

    # A date window prunes the discovery: years, months and days outside it are not listed. CloudTrail names a
    # file by its delivery window's start, so the key window is one day wider on each side.
    days = sorted({"/".join(k.split("/")[-4:-1]) for k in keys})
    mid = days[len(days) // 2]
    y, m, d = mid.split("/")
    s, _ = backfill(run_cli, ["--bucket", BUCKET, "--opensearch-url", opensearch_url, "--index-prefix", prefix + "-c",
                              "--from", f"{y}-{m}-{d}", "--to", f"{y}-{m}-{d}", "--regions", "us-east-1"])
    import datetime as dt
    day = dt.date(int(y), int(m), int(d))
    near = {(day + dt.timedelta(days=i)).strftime("%Y/%m/%d") for i in (-1, 0, 1)}
    want_files = [k for k in keys if "/us-east-1/" in k and "/".join(k.split("/")[-4:-1]) in near]
    assert s["files"] == len(want_files) > 0, (s, len(want_files))
    assert s["list_requests"] < full_lists / 4, (s["list_requests"], full_lists)


def test_s3_kill_9_then_resume_is_exact(trailsetup_bin, aws_env, moto_reset, boto, opensearch_url, os_clean, tmp_path, run_cli):
    prefix = os_clean
    s3 = boto("s3")
    s3.create_bucket(Bucket=BUCKET)
    corpus = synth(tmp_path, 30_000, "corpus", per_file=50)
    upload(s3, corpus, org_layout)
    cp = tmp_path / "cp.journal"
    argv = [str(trailsetup_bin), "backfill", "--output", "json", "--bucket", BUCKET, "--opensearch-url", opensearch_url,
            "--index-prefix", prefix, "--checkpoint", str(cp), "--bulk-mib", "0.1", "--bulk-concurrency", "1"]
    for target in (6_000, 17_000):
        p = subprocess.Popen(argv, env=aws_env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_until_count(opensearch_url, f"{prefix}-*", target, p)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    # The journal after the kills: finished days were collapsed to markers as the run went.
    lines = cp.read_text().splitlines()
    assert json.loads(lines[0])["version"] == 2
    assert any(line.startswith('D "AWSLogs/') for line in lines[1:]), lines[:5]
    # A dry run counts what is left: it reads the journal (no lock taken, nothing written) and leaves out what the
    # killed runs finished, directories unlisted.
    journal = cp.read_bytes()
    sel = ["--bucket", BUCKET, "--opensearch-url", opensearch_url, "--index-prefix", prefix, "--checkpoint", str(cp)]
    rc, out, err = run_cli(["backfill", "--dry-run", "--output", "json", *sel])
    assert rc == 0, err[-2000:]
    d = json.loads(out)["backfill"]
    assert d["checkpoint"] == str(cp) and d["already_done_dirs"] > 0, d
    assert 0 < d["files"] < 600, d
    assert cp.read_bytes() == journal
    s, _ = backfill(run_cli, sel)
    assert os_count(opensearch_url, f"{prefix}-*") == 30_000
    assert s["already_done_dirs"] > 0 and s["quarantined"] == 0
    # the resume loaded exactly the files the dry run said were left
    assert s["files"] == d["files"] and s["already_done_files"] == d["already_done_files"], (s, d)
    assert cp.read_text().splitlines()[1:] == ['D "AWSLogs/"']


def test_enqueue_resumes_after_kill_9(trailsetup_bin, aws_env, moto_reset, moto_url, boto, tmp_path, run_cli):
    s3, sqs = boto("s3"), boto("sqs")
    s3.create_bucket(Bucket=BUCKET)
    # (small: moto's SQS scans the whole queue on every send, so each message costs more as the queue fills)
    corpus = synth(tmp_path, 3_000, "corpus", per_file=5)
    keys = upload(s3, corpus, org_layout)
    assert len(keys) == 600
    q, _ = make_queues(sqs, name="backfill")

    # SQS answers slowly (300 ms a call, 16 calls at a time) so that the kill lands in the middle of the run.
    def slow(method, path, headers, body):
        if b"SendMessageBatch" in body or (headers.get("X-Amz-Target") or "").endswith("SendMessageBatch"):
            time.sleep(0.3)
        return None

    srv, url, _ = start_proxy(moto_url, answer=slow)
    try:
        env = dict(aws_env, AWS_ENDPOINT_URL=url)
        cp = tmp_path / "enqueue.journal"
        argv = [str(trailsetup_bin), "backfill", "--bucket", BUCKET, "--enqueue", q, "--output", "json", "--checkpoint", str(cp)]
        p = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while queue_counts(sqs, q)[0] < 150:
            assert p.poll() is None, p.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        # calls already inside the proxy still reach SQS (as they may on AWS): let them land
        time.sleep(1.5)
        first = queue_counts(sqs, q)[0]
        assert 150 <= first < 600
        # a dry run reads the journal and counts what the rerun will send, sending nothing
        rc, out, err = run_cli(["backfill", "--dry-run", "--bucket", BUCKET, "--enqueue", q, "--output", "json",
                                "--checkpoint", str(cp)], env=env)
        assert rc == 0, err[-2000:]
        dry = json.loads(out)["enqueue"]
        assert queue_counts(sqs, q)[0] == first
        rc, out, err = run_cli(["backfill", "--bucket", BUCKET, "--enqueue", q, "--output", "json", "--checkpoint", str(cp)],
                               env=env, timeout=300)
        assert rc == 0, err[-2000:]
        second = json.loads(out)["enqueue"]
    finally:
        srv.shutdown()
    # The rerun sent only what the killed run had not checkpointed: at most the batches in flight and the last
    # second's worth came twice.
    assert second["files"] < 600 and second["files"] + first >= 600, (first, second)
    assert dry["dry_run"] is True and (dry["files"], dry["already_done_files"]) == (second["files"], second["already_done_files"])
    got = []
    while True:
        r = sqs.receive_message(QueueUrl=q, MaxNumberOfMessages=10, VisibilityTimeout=300)
        if not r.get("Messages"):
            break
        got += [k for m in r["Messages"] for k in json.loads(m["Body"])["s3ObjectKey"]]
    # Nothing lost: every key is in the queue.
    assert set(got) == set(keys)
    assert len(got) == first + second["files"]
    # A third run has nothing left to send.
    rc, out, err = run_cli(["backfill", "--bucket", BUCKET, "--enqueue", q, "--output", "json", "--checkpoint", str(cp)])
    assert rc == 0 and json.loads(out)["enqueue"]["files"] == 0, err[-2000:]
