"""backfill against a real OpenSearch node (and moto for S3): exact, resumable, nothing lost.

Every count is checked with plain HTTP against OpenSearch, never through trailsetup's own read path.
Expected documents come from tests/vectors/vectors.jsonl, the shared test vectors built from the fixtures.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import signal
import subprocess
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO.parent / "shared" / "fixtures" / "cloudtrail"
if not FIXTURES.is_dir():
    FIXTURES = Path(os.environ.get("TS_FIXTURES", "/work/shared/fixtures/cloudtrail"))
VECTORS = REPO / "tests" / "vectors" / "vectors.jsonl"
SYNTH = FIXTURES.parent.parent / "tools" / "ct_synth.py"


def fixture_vectors(prefix: str):
    """(index, id) → list of expected documents, from the shared vectors of the fixture records."""
    want = defaultdict(list)
    n = 0
    for line in VECTORS.read_text().splitlines():
        v = json.loads(line)
        if not v["name"].startswith("fixture:"):
            continue
        n += 1
        index = prefix + v["index"][len(v["prefix"]):]
        doc = dict(v["document"])
        # indexed, never stored: the template excludes the investigation fields from _source
        doc.pop("@trailsetup", None)
        want[(index, v["id"])].append(doc)
    return n, want


def os_count(base: str, index: str) -> int:
    requests.post(f"{base}/{index}/_refresh", timeout=60)
    r = requests.get(f"{base}/{index}/_count", timeout=60)
    if r.status_code == 404:
        return 0
    r.raise_for_status()
    return r.json()["count"]


def wait_until_count(base: str, index: str, target: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Poll `_count` until it reaches `target` (the process still running), for killing a run part way."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        requests.post(f"{base}/{index}/_refresh", timeout=30)
        if requests.get(f"{base}/{index}/_count", timeout=30).json().get("count", 0) >= target:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be stopped part way"


def os_all(base: str, index: str):
    """Every document of `index` (pattern) via search_after."""
    requests.post(f"{base}/{index}/_refresh", timeout=60)
    out, after = [], None
    while True:
        body = {"size": 1000, "sort": [{"_index": "asc"}, {"_id": "asc"}], "query": {"match_all": {}}}
        if after:
            body["search_after"] = after
        r = requests.post(f"{base}/{index}/_search", json=body, timeout=60)
        r.raise_for_status()
        hits = r.json()["hits"]["hits"]
        if not hits:
            return out
        out.extend(hits)
        after = hits[-1]["sort"]


def backfill(run_cli, args, env=None, expect_rc=0):
    rc, out, err = run_cli(["backfill", "--output", "json", *args], env=env, timeout=600)
    assert rc == expect_rc, f"rc={rc}\nstdout:\n{out[-3000:]}\nstderr:\n{err[-3000:]}"
    doc = json.loads(out)
    s = doc["backfill"]
    if "records" in s and "indexed" in s:
        assert s["records"] == s["indexed"] + s["duplicates"] + s["quarantined"], s
    return s, err


def test_fixtures_exact_then_idempotent(run_cli, opensearch_url, os_clean, tmp_path):
    prefix = os_clean
    total, want = fixture_vectors(prefix)
    assert total == 1505
    s, _ = backfill(run_cli, ["--source-dir", FIXTURES, "--opensearch-url", opensearch_url, "--index-prefix", prefix])
    assert s["records"] == 1505
    assert s["quarantined"] == 0 and s["damaged_files"] == 0
    assert s["indexed"] == len(want)
    assert s["indexed"] + s["duplicates"] == 1505
    # 188 log files; skipped: the 2 digest files and the fixtures' README.md, each with its reason.
    assert s["files"] == 188 and s["skipped_files"] == 3, s
    assert s["skipped_reasons"] == {"CloudTrail digest file (integrity data, no events)": 2, "not a .json or .json.gz file": 1}

    # Per-index counts and every _source, checked with plain HTTP.
    per_index = Counter(ix for ix, _ in want)
    for ix, n in per_index.items():
        assert os_count(opensearch_url, ix) == n, ix
    hits = os_all(opensearch_url, f"{prefix}-*")
    assert len(hits) == len(want)
    for h in hits:
        candidates = want[(h["_index"], h["_id"])]
        assert h["_source"] in candidates, (h["_index"], h["_id"])
    # The alias covers every index.
    assert os_count(opensearch_url, prefix) == len(want)

    # The whole tree was sealed by the walk and every file settled: the checkpoint is one marker, not 188 keys.
    journal = Path(s["checkpoint"]).read_text().splitlines()
    assert json.loads(journal[0])["version"] == 2
    assert journal[1:] == ['D ""'], journal
    # Second run (checkpoint): nothing new, nothing even listed.
    s2, _ = backfill(run_cli, ["--source-dir", FIXTURES, "--opensearch-url", opensearch_url, "--index-prefix", prefix])
    assert s2["indexed"] == 0 and s2["records"] == 0
    assert s2["already_done_dirs"] == 1 and s2["already_done_files"] == 0 and s2["files"] == 0
    assert s2["skipped_files"] == 0
    # Third run ignoring the checkpoint: every record is a duplicate.
    s3, _ = backfill(run_cli, ["--source-dir", FIXTURES, "--opensearch-url", opensearch_url, "--index-prefix", prefix, "--restart"])
    assert s3["indexed"] == 0 and s3["duplicates"] == 1505
    assert os_count(opensearch_url, f"{prefix}-*") == len(want)


def search(base, index, query, size=100):
    requests.post(f"{base}/{index}/_refresh", timeout=60)
    r = requests.post(f"{base}/{index}/_search", json={"size": size, "query": query}, timeout=60)
    r.raise_for_status()
    return r.json()["hits"]["hits"]


def test_classic_questions(run_cli, opensearch_url, os_clean):
    prefix = os_clean
    backfill(run_cli, ["--source-dir", FIXTURES, "--opensearch-url", opensearch_url, "--index-prefix", prefix])
    # Who ran TerminateInstances?
    requests.post(f"{opensearch_url}/{prefix}/_refresh", timeout=60)
    r = requests.post(
        f"{opensearch_url}/{prefix}/_search",
        json={"size": 0, "query": {"term": {"eventName": "TerminateInstances"}},
              "aggs": {"who": {"terms": {"field": "userIdentity.arn", "size": 50}}}},
        timeout=60,
    ).json()
    assert r["hits"]["total"]["value"] > 0
    assert r["aggregations"]["who"]["buckets"], r
    # Who authorised ingress from 0.0.0.0/0? (requestParameters is searchable through its derived text field)
    hits = search(opensearch_url, prefix, {"bool": {"filter": [
        {"term": {"eventName": "AuthorizeSecurityGroupIngress"}},
        {"match_phrase": {"requestParameters_text": "0.0.0.0/0"}},
    ]}})
    assert hits
    for h in hits:
        assert "0.0.0.0/0" in json.dumps(h["_source"]["requestParameters"])
    # Which console logins failed?
    hits = search(opensearch_url, prefix, {"bool": {"filter": [
        {"term": {"eventName": "ConsoleLogin"}},
        {"match_phrase": {"responseElements_text": "Failure"}},
    ]}})
    assert hits
    for h in hits:
        assert h["_source"]["responseElements"]["ConsoleLogin"] == "Failure"
    # Insight events are loaded and distinguishable.
    r = requests.post(f"{opensearch_url}/{prefix}/_count", json={"query": {"term": {"eventCategory": "Insight"}}}, timeout=60).json()
    assert r["count"] == 5
    # Source IPs are also ip-typed (service names tolerated): a CIDR query works.
    r = requests.post(f"{opensearch_url}/{prefix}/_count", json={"query": {"term": {"sourceIPAddress.ip": "0.0.0.0/0"}}}, timeout=60).json()
    assert r["count"] > 0


def gz(data: bytes) -> bytes:
    return gzip.compress(data, 1)


def write(p: Path, data: bytes) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)


def rec(i: int, **extra) -> dict:
    r = {"eventVersion": "1.08", "eventTime": "2024-03-01T10:00:00Z", "eventID": f"bad-input-{i:06d}",
         "eventName": "GetObject", "eventSource": "s3.amazonaws.com", "awsRegion": "us-east-1",
         "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/a"}}
    r.update(extra)
    return r


def test_bad_inputs_are_reported_and_the_run_continues(run_cli, opensearch_url, os_clean, tmp_path):
    prefix = os_clean
    src = tmp_path / "src"
    good = json.dumps({"Records": [rec(i) for i in range(10)]}).encode()
    write(src / "a-good.json.gz", gz(good))
    broken = bytearray(gz(json.dumps({"Records": [rec(100 + i) for i in range(50)]}).encode()))
    for k in range(len(broken) // 2, len(broken) // 2 + 8):
        broken[k] ^= 0x5A
    write(src / "b-corrupt.json.gz", bytes(broken))
    trunc = json.dumps({"Records": [rec(200 + i) for i in range(5)]}).encode()
    write(src / "c-truncated.json", trunc[: len(trunc) - 40])
    write(src / "d-empty.json.gz", b"")
    write(src / "e-notjson.json", b"this is not json\n")
    write(src / "f-notcloudtrail.json", json.dumps({"hello": "world"}).encode())
    big_value = "x" * 100_000
    write(src / "g-bigvalue.json", json.dumps({"Records": [rec(300, requestParameters={"policy": big_value}, userAgent=big_value, errorMessage=big_value)]}).encode())
    write(src / "h-README.txt", b"notes")
    s, err = backfill(run_cli, ["--source-dir", src, "--opensearch-url", opensearch_url, "--index-prefix", prefix,
                                "--quarantine", tmp_path / "q.jsonl"], expect_rc=3)
    damaged = {d["file"]: d["reason"] for d in s["damaged"]}
    assert set(damaged) == {"b-corrupt.json.gz", "c-truncated.json"}, damaged
    assert "truncated" in damaged["c-truncated.json"]
    reasons = s["skipped_reasons"]
    assert reasons.get("empty file") == 1
    assert any(k.startswith("not JSON") for k in reasons)
    assert any(k.startswith("not a CloudTrail log file") for k in reasons)
    assert reasons.get("not a .json or .json.gz file") == 1
    assert s["skipped_files"] == 4
    # The 100 KB record landed, whole.
    hit = requests.get(f"{opensearch_url}/{prefix}-2024.03.01/_doc/bad-input-000300", timeout=30).json()
    assert hit["found"] and hit["_source"]["requestParameters"]["policy"] == big_value
    # What landed equals what was read (records from the intact part of the truncated file included).
    assert os_count(opensearch_url, f"{prefix}-*") == s["indexed"]
    # Damaged files are in the quarantine with their reason.
    q = [json.loads(l) for l in (tmp_path / "q.jsonl").read_text().splitlines()]
    assert {e["file"] for e in q if e["kind"] == "file"} == set(damaged)


def test_huge_file_streams_in_bounded_memory(run_cli, opensearch_url, os_clean, tmp_path, trailsetup_bin, aws_env):
    """A 200 MB log file is streamed: peak RSS stays far below the file size."""
    prefix = os_clean
    src = tmp_path / "big"
    src.mkdir()
    path = src / "big.json"
    one = json.dumps(rec(0, requestParameters={"bucketName": "b", "key": "k" * 900})).encode()
    n = 200 * 1024 * 1024 // len(one) + 1
    with open(path, "wb") as f:
        f.write(b'{"Records":[')
        for i in range(n):
            r = rec(i, requestParameters={"bucketName": "b", "key": "k" * 900})
            if i % 20000 != 0:
                r["eventTime"] = "2020-01-01T00:00:00Z"
            if i:
                f.write(b",")
            f.write(json.dumps(r).encode())
        f.write(b"]}")
    assert path.stat().st_size >= 200 * 1024 * 1024
    env = dict(aws_env)
    argv = [str(trailsetup_bin), "backfill", "--output", "json", "--source-dir", str(src), "--opensearch-url", opensearch_url,
            "--index-prefix", prefix, "--from", "2024-03-01", "--to", "2024-03-01"]
    p = subprocess.run(["/usr/bin/time", "-f", "%M", *argv], capture_output=True, env=env, cwd=tmp_path, timeout=900)
    assert p.returncode == 0, p.stderr.decode()[-2000:]
    s = json.loads(p.stdout)["backfill"]
    kept = len(range(0, n, 20000))
    assert s["indexed"] == kept and s["filtered"] == n - kept
    peak_kb = int(p.stderr.decode().strip().splitlines()[-1])
    assert peak_kb < 256 * 1024, f"peak RSS {peak_kb} KiB for a {path.stat().st_size >> 20} MiB file"


def synth(tmp_path: Path, records: int, name: str, per_file: int = 100) -> Path:
    out = tmp_path / name
    subprocess.run(["python3", str(SYNTH), str(FIXTURES), str(out), "--records", str(records), "--per-file", str(per_file),
                    "--days", "5", "--regions", "3"], check=True, capture_output=True)
    return out


def test_kill_9_then_resume_is_exact(trailsetup_bin, aws_env, opensearch_url, os_clean, tmp_path, run_cli):
    prefix = os_clean
    corpus = synth(tmp_path, 60_000, "corpus")
    cp = tmp_path / "cp.json"
    argv = [str(trailsetup_bin), "backfill", "--output", "json", "--source-dir", str(corpus), "--opensearch-url",
            opensearch_url, "--index-prefix", prefix, "--checkpoint", str(cp), "--concurrency", "4"]
    rnd = random.Random(42)
    # Small requests so the run lasts long enough to be killed part way, at a random document count.
    argv += ["--bulk-mib", "0.1", "--bulk-concurrency", "1"]
    for target in sorted(rnd.sample(range(5_000, 50_000), 2)):
        p = subprocess.Popen(argv, env=aws_env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_until_count(opensearch_url, f"{prefix}-*", target, p)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    s, _ = backfill(run_cli, ["--source-dir", corpus, "--opensearch-url", opensearch_url, "--index-prefix", prefix,
                              "--checkpoint", cp])
    assert os_count(opensearch_url, f"{prefix}-*") == 60_000
    # The resumed run skipped completed directories and files; what the killed runs delivered but had not yet
    # journaled (up to a second's worth) came back as duplicates, not as extra documents.
    assert s["already_done_dirs"] + s["already_done_files"] > 0
    assert s["indexed"] + s["duplicates"] <= 60_000
    assert s["quarantined"] == 0
    # Finished: the journal collapsed to the tree's root.
    assert Path(cp).read_text().splitlines()[1:] == ['D ""']


def test_sigint_delivers_what_was_read_then_resumes(trailsetup_bin, aws_env, opensearch_url, os_clean, tmp_path, run_cli):
    prefix = os_clean
    corpus = synth(tmp_path, 30_000, "corpus")
    cp = tmp_path / "cp.json"
    argv = [str(trailsetup_bin), "backfill", "--output", "json", "--source-dir", str(corpus), "--opensearch-url",
            opensearch_url, "--index-prefix", prefix, "--checkpoint", str(cp), "--bulk-mib", "0.1", "--bulk-concurrency", "1"]
    p = subprocess.Popen(argv, env=aws_env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_until_count(opensearch_url, f"{prefix}-*", 5_000, p)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 1 and b"rerun the same command to resume" in err, err.decode()[-2000:]
    first = json.loads(out)["backfill"]
    # Everything read was delivered before the exit: what OpenSearch holds is exactly what was counted.
    assert first["records"] == first["indexed"] and first["quarantined"] == 0
    assert os_count(opensearch_url, f"{prefix}-*") == first["indexed"] < 30_000
    s, _ = backfill(run_cli, ["--source-dir", corpus, "--opensearch-url", opensearch_url, "--index-prefix", prefix,
                              "--checkpoint", cp])
    # Files cut short by the signal are read again; their delivered part comes back as duplicates (at most the
    # files being read at that moment: concurrency 8 × 100 records).
    assert first["indexed"] + s["indexed"] == 30_000 and s["duplicates"] <= 800
    assert os_count(opensearch_url, f"{prefix}-*") == 30_000


def test_s3_source_matches_directory_source(run_cli, moto_reset, boto, opensearch_url, os_clean, tmp_path):
    prefix = os_clean
    s3 = boto("s3")
    s3.create_bucket(Bucket="trail-logs")
    for p in FIXTURES.rglob("*"):
        if p.is_file() and "AWSLogs" in p.parts:
            key = "/".join(p.parts[p.parts.index("AWSLogs"):])
            s3.put_object(Bucket="trail-logs", Key=key, Body=p.read_bytes())
    s, _ = backfill(run_cli, ["--bucket", "trail-logs", "--opensearch-url", opensearch_url, "--index-prefix", prefix])
    total, want = fixture_vectors(prefix)
    assert s["records"] == total == 1505
    assert s["indexed"] == len(want) and s["quarantined"] == 0
    assert os_count(opensearch_url, f"{prefix}-*") == len(want)
    # Narrowed by account, region and date: per-day prefixes, only what matches.
    s2, _ = backfill(run_cli, ["--bucket", "trail-logs", "--opensearch-url", opensearch_url, "--index-prefix", prefix + "-n",
                               "--accounts", "111122223333", "--regions", "us-east-1", "--from", "2022-08-18", "--to", "2022-08-18"])
    assert s2["files"] == 1 and s2["records"] > 0, s2


def test_dry_run_lists_without_loading(run_cli, opensearch_url, os_clean):
    prefix = os_clean
    rc, out, err = run_cli(["backfill", "--dry-run", "--output", "json", "--source-dir", FIXTURES,
                            "--opensearch-url", opensearch_url, "--index-prefix", prefix])
    assert rc == 0, err
    s = json.loads(out)["backfill"]
    assert s["dry_run"] is True and s["files"] == 188
    assert 500 < s["estimated_records"] < 5000
    assert s["first_date"] <= s["last_date"]
    assert requests.get(f"{opensearch_url}/{prefix}-*/_count", timeout=30).json().get("count", 0) == 0


def test_rejected_records_are_quarantined_then_replayed(run_cli, opensearch_url, os_clean, tmp_path):
    prefix = os_clean
    src = tmp_path / "src"
    write(src / "x.json", json.dumps({"Records": [rec(i) for i in range(20)]}).encode())
    # Block writes on the target index: every item is rejected with 403 (not retryable) → quarantine.
    ix = f"{prefix}-2024.03.01"
    requests.put(f"{opensearch_url}/_index_template/{prefix}-block", json={"index_patterns": [ix], "priority": 1}, timeout=30)
    requests.put(f"{opensearch_url}/{ix}", timeout=30)
    requests.put(f"{opensearch_url}/{ix}/_settings", json={"index.blocks.write": True}, timeout=30)
    q = tmp_path / "q.jsonl"
    s, _ = backfill(run_cli, ["--source-dir", src, "--opensearch-url", opensearch_url, "--index-prefix", prefix,
                              "--quarantine", q], expect_rc=3)
    assert s["quarantined"] == 20 and s["indexed"] == 0
    lines = [json.loads(l) for l in q.read_text().splitlines()]
    assert len(lines) == 20 and all(l["status"] == 403 for l in lines)
    assert all("block" in json.dumps(l["reason"]) for l in lines)
    # Fix the cause, replay.
    requests.put(f"{opensearch_url}/{ix}/_settings", json={"index.blocks.write": False}, timeout=30)
    s2, _ = backfill(run_cli, ["--replay-quarantine", q, "--opensearch-url", opensearch_url, "--index-prefix", prefix,
                               "--quarantine", tmp_path / "q2.jsonl"])
    assert s2["indexed"] == 20 and s2["quarantined"] == 0
    assert os_count(opensearch_url, ix) == 20
    assert not q.exists()


def test_usage_errors(run_cli):
    rc, out, err = run_cli(["backfill", "--source-dir", "/nonexistent/dir", "--opensearch-url", "http://127.0.0.1:9"])
    assert rc == 2 and "--source-dir" in err
    rc, out, err = run_cli(["backfill", "--source-dir", str(FIXTURES)])
    assert rc == 2 and "--opensearch-url" in err and "TRAILSETUP_OPENSEARCH_URL" in err
    rc, out, err = run_cli(["backfill", "--source-dir", str(FIXTURES), "--opensearch-url", "http://127.0.0.1:9", "--from", "yesterday"])
    assert rc == 2 and "--from" in err
