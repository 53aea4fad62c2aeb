"""Hardening findings, one test (or a few) each: what the fixed binary does, asserted exactly.

Real OpenSearch node and moto as everywhere in tests/e2e; a few tests put a small switchable proxy (standard
library http.server on 127.0.0.1) in front of the node: while a fault is set it answers GET / and the template
calls itself and refuses every `_bulk`; once cleared it forwards everything to the node. Reruns go through the
same proxy URL, so the checkpoint's identity (source, selection, URL, prefix) is the same and a rerun shows what
the failed run did or did not mark as done.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import stat
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest
import requests

from faultproxy import FaultProxy
from test_backfill import FIXTURES, backfill, os_count
from test_ingest import make_queues, queue_counts

ACCOUNT = "123456789012"

# Small real fixture files (every record has an eventID, none repeated): 2 + 2 + 26 records.
SMALL = [
    "awsdocs-cloudtrail-user-guide/AWSLogs/123456789012/CloudTrail/us-east-1/2019/10/15/"
    "123456789012_CloudTrail_us-east-1_20191015T2110Z_b2f1b9af63b4f4a5.json.gz",
    "awsdocs-cloudtrail-user-guide/AWSLogs/123456789012/CloudTrail/us-east-1/2019/11/14/"
    "123456789012_CloudTrail_us-east-1_20191114T0050Z_e34777a202bd24a8.json.gz",
    "opensearch-catalog-aws_cloudtrail/AWSLogs/347283850106/CloudTrail/eu-west-1/2021/12/02/"
    "347283850106_CloudTrail_eu-west-1_20211202T2215Z_1449997f86a5d0cb.json.gz",
]
# One more, kept outside the source root in the symlink tests (1 record).
OUTSIDE = (
    "awsdocs-cloudtrail-user-guide/AWSLogs/838185438692/CloudTrail/us-east-1/2020/07/21/"
    "838185438692_CloudTrail_us-east-1_20200721T2055Z_8b0a18e8a127d3fe.json.gz"
)
# 50 records with distinct eventIDs: material for synthetic files.
FIFTY = (
    "opensearch-catalog-aws_cloudtrail/AWSLogs/345678901234/CloudTrail/eu-west-1/2021/12/02/"
    "345678901234_CloudTrail_eu-west-1_20211202T2210Z_d4513cc504f9b83e.json.gz"
)
DAY_FILE = (
    "awsdocs-cloudtrail-user-guide/AWSLogs/111122223333/CloudTrail/us-east-1/2022/08/18/"
    "111122223333_CloudTrail_us-east-1_20220818T1710Z_9d403df19db6dd64.json.gz"
)


# --- helpers ---------------------------------------------------------------------------------------------------


def records_of(path: Path) -> list:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return json.loads(data)["Records"]


def copy_fixture(rel: str, dst_root: Path) -> Path:
    """Copy one fixture file to dst_root, keeping its AWSLogs/... path."""
    src = FIXTURES / rel
    parts = src.parts
    out = dst_root.joinpath(*parts[parts.index("AWSLogs"):])
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, out)
    return out


def small_source(dst: Path) -> tuple[Path, int, set]:
    """The SMALL files under dst: (dst, record count, eventIDs)."""
    ids, n = set(), 0
    for rel in SMALL:
        recs = records_of(copy_fixture(rel, dst))
        n += len(recs)
        ids |= {r["eventID"] for r in recs}
    assert len(ids) == n, "SMALL fixtures are expected to hold distinct eventIDs"
    return dst, n, ids


def summary(out: str, key: str = "backfill") -> dict | None:
    try:
        return json.loads(out)[key]
    except (ValueError, KeyError, TypeError):
        return None


def journal_marks(cp: Path) -> list[str]:
    """The F/D lines of a checkpoint journal ([] when there is no file)."""
    if not cp.exists():
        return []
    return [l for l in cp.read_text().splitlines()[1:] if l.startswith(("F ", "D "))]


def os_ids(base: str, index: str) -> set:
    requests.post(f"{base}/{index}/_refresh", timeout=60)
    r = requests.post(f"{base}/{index}/_search", json={"size": 10000, "_source": False, "query": {"match_all": {}}},
                      timeout=60)
    if r.status_code == 404:
        return set()
    r.raise_for_status()
    return {h["_id"] for h in r.json()["hits"]["hits"]}


def all_file_bytes(root: Path) -> list[tuple[Path, bytes]]:
    out = []
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink():
            out.append((p, p.read_bytes()))
    return out


VERSION_BODY = json.dumps({"name": "fake", "cluster_name": "fake", "version": {"number": "2.19.0",
                           "distribution": "opensearch"}, "tagline": "The OpenSearch Project"}).encode()


class SwitchProxy(FaultProxy):
    """While `bulk_fault` is (status, headers, body): GET / and every other non-_bulk call are answered here
    (version JSON / 200), each POST .../_bulk gets the fault. With `bulk_fault = None`: everything is forwarded
    to the real node."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.bulk_fault: tuple[int, dict, bytes] | None = None
        self.bulk_seen = 0

    def handle(self, method, path, headers, body):
        fault = self.bulk_fault
        if fault is None:
            return self._forward(method, path, headers, body)
        p = path.split("?")[0]
        if method == "POST" and p.endswith("/_bulk"):
            with self.lock:
                self.bulk_seen += 1
            return fault
        if method in ("GET", "HEAD") and p in ("", "/"):
            return 200, {"Content-Type": "application/json"}, VERSION_BODY
        return 200, {"Content-Type": "application/json"}, b'{"acknowledged":true}'


def rerun_through_proxy_loads_everything(run_cli, proxy, src, cp, prefix, tmp_path, n, ids, opensearch_url):
    """The failed run's checkpoint marked nothing: the same command (same URL, same checkpoint) against the
    real node loads every record; a third run then finds everything done (the checkpoint was the one used)."""
    proxy.bulk_fault = None
    args = ["--source-dir", src, "--opensearch-url", proxy.url, "--index-prefix", prefix, "--checkpoint", cp,
            "--quarantine", tmp_path / "q-rerun.jsonl"]
    s, _ = backfill(run_cli, args)
    assert s["files"] == len(SMALL) and s["records"] == n, s
    assert s["indexed"] == n and s["duplicates"] == 0 and s["quarantined"] == 0, s
    assert os_ids(opensearch_url, f"{prefix}-*") == ids
    s3, _ = backfill(run_cli, args)
    assert s3["files"] == 0 and s3["records"] == 0, s3


# --- 1. --dump-bulk touches nothing it was not given -----------------------------------------------------------


def test_dump_bulk_leaves_the_working_directory_alone(run_cli, tmp_path):
    src, n, _ = small_source(tmp_path / "src")
    work = tmp_path / "work"
    work.mkdir()
    (work / ".tmp").write_bytes(b"precious: not trailsetup's\n")
    (work / ".tmp.lock").write_bytes(b"mine too\n")
    dump = tmp_path / "dump"
    rc, out, err = run_cli(["backfill", "--output", "json", "--source-dir", src, "--dump-bulk", dump,
                            "--opensearch-url", "http://127.0.0.1:9", "--index-prefix", "ts-dump"], cwd=work)
    assert rc == 0, err[-3000:]
    assert sorted(os.listdir(work)) == [".tmp", ".tmp.lock"], sorted(os.listdir(work))
    assert (work / ".tmp").read_bytes() == b"precious: not trailsetup's\n"
    assert (work / ".tmp.lock").read_bytes() == b"mine too\n"
    # the bodies were written where asked
    bodies = sorted(dump.glob("*.ndjson"))
    assert bodies
    assert sum(b.read_bytes().count(b"\n") for b in bodies) == 2 * n


# --- 2. Retry-After is capped; a signal ends a retry wait ------------------------------------------------------

RETRY_AFTER_HOUR = (429, {"Retry-After": "3600", "Content-Type": "application/json"},
                    b'{"error":{"type":"es_rejected_execution_exception","reason":"busy"},"status":429}')


def test_retry_after_an_hour_is_capped_by_the_retry_deadline(run_cli, opensearch_url, os_clean, tmp_path):
    prefix = os_clean
    src, n, ids = small_source(tmp_path / "src")
    cp, q = tmp_path / "cp.journal", tmp_path / "q.jsonl"
    with SwitchProxy(opensearch_url) as p:
        p.bulk_fault = RETRY_AFTER_HOUR
        # Without the cap the run would sleep 3600 s: the 120 s timeout is only a safety net.
        rc, out, err = run_cli(["backfill", "--output", "json", "--source-dir", src, "--opensearch-url", p.url,
                                "--index-prefix", prefix, "--checkpoint", cp, "--quarantine", q,
                                "--retry-deadline-secs", "5"], timeout=120)
        assert rc in (1, 3), f"rc={rc}\n{err[-3000:]}"
        assert p.bulk_seen >= 1
        lines = [json.loads(l) for l in q.read_text().splitlines()]
        assert len(lines) == n, (len(lines), n)
        assert {l["reason"]["type"] for l in lines} == {"retries_exhausted"}
        assert {l["id"] for l in lines} == ids
        assert journal_marks(cp) == [], "files whose documents were never delivered were marked done"
        assert os_count(opensearch_url, f"{prefix}-*") == 0
        rerun_through_proxy_loads_everything(run_cli, p, src, cp, prefix, tmp_path, n, ids, opensearch_url)


def test_sigterm_ends_a_retry_wait_and_nothing_is_marked_done(trailsetup_bin, aws_env, run_cli, opensearch_url,
                                                              os_clean, tmp_path):
    prefix = os_clean
    src, n, ids = small_source(tmp_path / "src")
    cp, q = tmp_path / "cp.journal", tmp_path / "q.jsonl"
    with SwitchProxy(opensearch_url) as p:
        p.bulk_fault = RETRY_AFTER_HOUR
        argv = [str(trailsetup_bin), "backfill", "--output", "json", "--source-dir", str(src), "--opensearch-url",
                p.url, "--index-prefix", prefix, "--checkpoint", str(cp), "--quarantine", str(q),
                "--retry-deadline-secs", "3000"]
        proc = subprocess.Popen(argv, env=aws_env, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while p.bulk_seen < 1 and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert p.bulk_seen >= 1 and proc.poll() is None, "the run never reached its first _bulk"
            time.sleep(0.5)  # the refusal is read; the batch is waiting to retry
            proc.send_signal(signal.SIGTERM)
            try:
                out, err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
                pytest.fail("SIGTERM did not end the run while a batch waited to retry (Retry-After: 3600)\n"
                            + err.decode("utf-8", "replace")[-3000:])
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode != 0, err.decode("utf-8", "replace")[-3000:]
        assert journal_marks(cp) == []
        assert os_count(opensearch_url, f"{prefix}-*") == 0
        rerun_through_proxy_loads_everything(run_cli, p, src, cp, prefix, tmp_path, n, ids, opensearch_url)


# --- 3. symbolic links: loops, links inside the root, links out of it ------------------------------------------


def symlink_tree(tmp_path: Path, second_link: str):
    """tmp/tree/root holds SMALL (3 real files), two loops back to itself, a loop through its parent, a link to
    one of its own files, and a link `ext1` to tmp/outside (which holds OUTSIDE); plus, as `second_link` says,
    `ext2` -> the same directory ("dir") or `extfile.json.gz` -> the same file ("file")."""
    tree = tmp_path / "tree"
    root, n, ids = small_source(tree / "root")
    first = next(root.rglob("*.json.gz"))  # before any link exists
    outside_file = copy_fixture(OUTSIDE, tmp_path / "outside")
    outside_dir = tmp_path / "outside"
    (root / "a" / "deep").mkdir(parents=True)
    (root / "b").mkdir()
    os.symlink("..", root / "a" / "up")                 # root/a/up -> root
    os.symlink("../..", root / "a" / "deep" / "up2")    # root/a/deep/up2 -> root
    os.symlink("../..", root / "b" / "up3")             # root/b/up3 -> tree (the parent: leads back into root)
    os.symlink(first, root / "z-same-as-first.json.gz")  # a link to a file inside the root
    os.symlink(outside_dir, root / "ext1")
    if second_link == "dir":
        os.symlink(outside_dir, root / "ext2")
    else:
        os.symlink(outside_file, root / "extfile.json.gz")
    out_recs = records_of(outside_file)
    return root, n, ids, len(out_recs), {r["eventID"] for r in out_recs}


@pytest.mark.parametrize("second_link", ["dir", "file"])
def test_symlinks_without_follow_read_each_file_inside_once(second_link, run_cli, opensearch_url, os_clean, tmp_path):
    prefix = os_clean
    root, n, ids, _, out_ids = symlink_tree(tmp_path, second_link)
    rc, out, err = run_cli(["backfill", "--output", "json", "--source-dir", root, "--opensearch-url", opensearch_url,
                            "--index-prefix", prefix], timeout=120)
    assert rc == 0, err[-3000:]
    s = json.loads(out)["backfill"]
    assert s["files"] == len(SMALL), s
    assert s["records"] == n and s["indexed"] == n and s["duplicates"] == 0 and s["quarantined"] == 0, s
    got = os_ids(opensearch_url, f"{prefix}-*")
    assert got == ids and not (got & out_ids)


@pytest.mark.parametrize("second_link", ["dir", "file"])
def test_symlinks_with_follow_read_the_outside_file_once(second_link, run_cli, opensearch_url, os_clean, tmp_path):
    prefix = os_clean
    root, n, ids, n_out, out_ids = symlink_tree(tmp_path, second_link)
    rc, out, err = run_cli(["backfill", "--output", "json", "--source-dir", root, "--follow-symlinks",
                            "--opensearch-url", opensearch_url, "--index-prefix", prefix], timeout=120)
    assert rc == 0, err[-3000:]
    s = json.loads(out)["backfill"]
    assert s["files"] == len(SMALL) + 1, s
    assert s["records"] == n + n_out and s["indexed"] == n + n_out, s
    assert s["duplicates"] == 0 and s["quarantined"] == 0, s
    assert os_ids(opensearch_url, f"{prefix}-*") == ids | out_ids


# --- 4. a whole-request 4xx on _bulk stops the run, nothing marked done ----------------------------------------


@pytest.mark.parametrize("status", [404, 400])
def test_whole_request_4xx_on_bulk_fails_and_checkpoints_nothing(status, run_cli, opensearch_url, os_clean, tmp_path):
    prefix = os_clean
    src, n, ids = small_source(tmp_path / "src")
    cp, q = tmp_path / "cp.journal", tmp_path / "q.jsonl"
    body = {404: b'{"error":"no handler found for uri [/x/_bulk] and method [POST]"}',
            400: b'{"error":{"type":"illegal_argument_exception","reason":"bad request"},"status":400}'}[status]
    with SwitchProxy(opensearch_url) as p:
        p.bulk_fault = (status, {"Content-Type": "application/json"}, body)
        rc, out, err = run_cli(["backfill", "--output", "json", "--source-dir", src, "--opensearch-url", p.url,
                                "--index-prefix", prefix, "--checkpoint", cp, "--quarantine", q], timeout=120)
        assert rc == 1, f"rc={rc}\n{err[-3000:]}"
        assert p.bulk_seen >= 1
        assert str(status) in err
        assert journal_marks(cp) == [], "files whose documents were refused as a whole were marked done"
        rerun_through_proxy_loads_everything(run_cli, p, src, cp, prefix, tmp_path, n, ids, opensearch_url)


# --- 5. credentials in the URL are refused and never written ---------------------------------------------------


def test_credentials_in_the_url_are_refused_and_never_echoed(run_cli, tmp_path):
    src, _, _ = small_source(tmp_path / "src")
    state = tmp_path / "state"
    rc, out, err = run_cli(["backfill", "--source-dir", src, "--opensearch-url", "http://user:s3cretPW@127.0.0.1:9",
                            "--index-prefix", "ts-creds", "--state-dir", state])
    assert rc == 2, err[-3000:]
    assert "s3cretPW" not in out and "s3cretPW" not in err
    assert "--opensearch-url" in err
    rc, out, err = run_cli(["init", "--dry-run", "--offline", "--yes", "--account", ACCOUNT, "--regions", "us-east-1",
                            "--opensearch-url", "https://user:s3cretPW@search.example.com", "--state-dir", state])
    assert rc == 2, err[-3000:]
    assert "s3cretPW" not in out and "s3cretPW" not in err
    assert "--opensearch-url" in err
    # nothing written anywhere in the test's directory (state dir, HOME/XDG dirs) holds it
    leaks = [str(p) for p, b in all_file_bytes(tmp_path) if b"s3cretPW" in b]
    assert leaks == []


# --- 7. basic auth over plain http to a remote host --------------------------------------------------------------


def test_basic_auth_over_http_to_a_remote_host_is_refused(run_cli, aws_env, opensearch_url, os_clean, tmp_path):
    src, n, ids = small_source(tmp_path / "src")
    pw = "Pw-never-in-clear-42"
    env = dict(aws_env, TRAILSETUP_OPENSEARCH_USER="audit", TRAILSETUP_OPENSEARCH_PASSWORD=pw)
    remote = ["backfill", "--source-dir", src, "--opensearch-url", "http://search.example.invalid:9200",
              "--opensearch-auth", "basic", "--index-prefix", os_clean, "--checkpoint", tmp_path / "cp-remote"]
    rc, out, err = run_cli(remote, env=env)
    assert rc == 2, err[-3000:]
    assert "--allow-http-basic-auth" in err
    assert pw not in out and pw not in err
    # Asked for explicitly: no refusal; the run then fails to reach the host (a failure, not a usage error).
    rc, out, err = run_cli([*remote, "--allow-http-basic-auth"], env=env, timeout=120)
    assert rc == 1, err[-3000:]
    assert pw not in out and pw not in err
    # Loopback over http stays allowed.
    s, err = backfill(run_cli, ["--source-dir", src, "--opensearch-url", opensearch_url, "--opensearch-auth", "basic",
                                "--index-prefix", os_clean], env=env)
    assert s["indexed"] == n
    assert pw not in err
    assert os_ids(opensearch_url, f"{os_clean}-*") == ids


# --- 8. private file modes; session tokens redacted in the quarantine ------------------------------------------


def test_state_files_are_private_and_quarantine_redacts_session_tokens(trailsetup_bin, aws_env, opensearch_url,
                                                                      os_clean, tmp_path):
    prefix = os_clean
    good = records_of(FIXTURES / FIFTY)[0]
    secret_rec = [{"eventVersion": "1.08", "eventID": "not-an-object", "responseElements":
                   {"credentials": {"accessKeyId": "ASIAEXAMPLE", "sessionToken": "SECRETTOKEN123"}}}]
    src = tmp_path / "src"
    src.mkdir()
    (src / "mixed.json.gz").write_bytes(gzip.compress(json.dumps({"Records": [good, secret_rec, 1]}).encode()))
    state = tmp_path / "state"
    assert not state.exists()
    argv = [str(trailsetup_bin), "backfill", "--output", "json", "--source-dir", str(src), "--opensearch-url",
            opensearch_url, "--index-prefix", prefix, "--state-dir", str(state)]
    # a usual umask: whatever the modes are, they come from trailsetup, not from a strict umask
    p = subprocess.run(argv, env=aws_env, cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, timeout=120,
                       preexec_fn=lambda: os.umask(0o022))
    err = p.stderr.decode("utf-8", "replace")
    assert p.returncode == 3, err[-3000:]
    s = json.loads(p.stdout)["backfill"]
    assert s["records"] == 3 and s["indexed"] == 1 and s["quarantined"] == 2, s

    mode = lambda x: stat.S_IMODE(os.stat(x).st_mode)  # noqa: E731
    journal = Path(s["checkpoint"])
    qfile = Path(s["quarantine_file"])
    assert journal.is_file() and qfile.is_file()
    assert state in journal.parents and state in qfile.parents
    assert mode(state) == 0o700, oct(mode(state))
    assert mode(journal.parent) == 0o700, oct(mode(journal.parent))
    assert mode(journal) == 0o600, oct(mode(journal))
    assert mode(qfile) == 0o600, oct(mode(qfile))
    loose = [(str(x), oct(mode(x))) for x in [state, *state.rglob("*")]
             if mode(x) & 0o077 or (x.is_dir() and mode(x) != 0o700)]
    assert loose == []

    text = qfile.read_text()
    lines = [json.loads(l) for l in text.splitlines()]
    assert sorted(l["kind"] for l in lines) == ["record", "record"]
    assert "SECRETTOKEN123" not in text
    assert "REDACTED" in text
    assert any("ASIAEXAMPLE" in l.get("record_text", "") for l in lines), "the rest of the record is kept"


# --- 9. a damaged state file or checkpoint is never reset ------------------------------------------------------


def test_corrupt_state_file_is_left_byte_identical(moto_reset, run_cli, boto, opensearch_url, os_clean, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    sf = state / "trailsetup.json"
    sf.write_bytes(b"{not json")
    rc, out, err = run_cli(["init", "--yes", "--no-backfill", "--regions", "us-east-1", "--opensearch-url",
                            opensearch_url, "--index-prefix", os_clean, "--state-dir", state], timeout=300)
    assert rc != 0, err[-3000:]
    assert str(sf) in err, err[-3000:]
    assert sf.read_bytes() == b"{not json"
    assert sorted(os.listdir(state)) == ["trailsetup.json"]
    assert boto("s3").list_buckets()["Buckets"] == [], "init changed the account before giving up"


def test_checkpoint_that_cannot_be_read_is_not_reset(run_cli, opensearch_url, os_clean, tmp_path):
    """A path that exists but cannot be read as a file (here a directory: root reads any file) stops the run
    before anything is loaded, naming it."""
    src, _, _ = small_source(tmp_path / "src")
    cp = tmp_path / "cp.journal"
    cp.mkdir()
    (cp / "keep").write_text("x")
    rc, out, err = run_cli(["backfill", "--source-dir", src, "--opensearch-url", opensearch_url, "--index-prefix",
                            os_clean, "--checkpoint", cp], timeout=120)
    assert rc not in (0, 3), err[-3000:]
    assert str(cp) in err and "checkpoint" in err, err[-3000:]
    assert (cp / "keep").read_text() == "x"
    assert os_count(opensearch_url, f"{os_clean}-*") == 0


def test_unreadable_checkpoint_file_is_not_reset(run_cli, opensearch_url, os_clean, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads a file whatever its mode")
    src, n, _ = small_source(tmp_path / "src")
    cp = tmp_path / "cp.journal"
    args = ["--source-dir", src, "--opensearch-url", opensearch_url, "--index-prefix", os_clean, "--checkpoint", cp]
    s, _ = backfill(run_cli, args)
    assert s["indexed"] == n
    before = cp.read_bytes()
    cp.chmod(0)
    try:
        rc, out, err = run_cli(["backfill", *args], timeout=120)
    finally:
        cp.chmod(0o600)
    assert rc not in (0, 3), err[-3000:]
    assert str(cp) in err
    assert cp.read_bytes() == before


# --- 10. ingest reads only the stack's buckets -----------------------------------------------------------------


def test_ingest_loads_only_the_named_bucket(run_cli, moto_reset, boto, opensearch_url, os_clean, tmp_path):
    prefix = os_clean
    s3, sqs = boto("s3"), boto("sqs")
    mine, theirs = "trail-logs-mine", "somebody-elses-bucket"
    s3.create_bucket(Bucket=mine)
    s3.create_bucket(Bucket=theirs)
    key_a = SMALL[2][SMALL[2].index("AWSLogs"):]
    key_b = OUTSIDE[OUTSIDE.index("AWSLogs"):]
    s3.put_object(Bucket=mine, Key=key_a, Body=(FIXTURES / SMALL[2]).read_bytes())
    s3.put_object(Bucket=theirs, Key=key_b, Body=(FIXTURES / OUTSIDE).read_bytes())
    ids_a = {r["eventID"] for r in records_of(FIXTURES / SMALL[2])}
    q, dlq = make_queues(sqs)
    body_a = json.dumps({"s3Bucket": mine, "s3ObjectKey": [key_a]})
    body_b = json.dumps({"s3Bucket": theirs, "s3ObjectKey": [key_b]})
    sqs.send_message(QueueUrl=q, MessageBody=body_a)
    sqs.send_message(QueueUrl=q, MessageBody=body_b)

    rc, out, err = run_cli(["ingest", "--output", "json", "--drain", "--queue-url", q, "--bucket", mine,
                            "--opensearch-url", opensearch_url, "--index-prefix", prefix], timeout=300)
    assert rc == 0, err[-3000:]
    s = json.loads(out)["ingest"]
    assert s["records"] == len(ids_a) and s["indexed"] == len(ids_a), s
    assert os_ids(opensearch_url, f"{prefix}-*") == ids_a
    assert queue_counts(sqs, q) == (0, 0)
    dead = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                               MessageAttributeNames=["All"]).get("Messages", [])
    assert [m["Body"] for m in dead] == [body_b]
    reason = dead[0].get("MessageAttributes", {}).get("trailsetup-reason", {}).get("StringValue", "")
    assert theirs in reason, dead[0]


def test_ingest_without_a_known_bucket_is_a_usage_error(run_cli, moto_reset, boto, opensearch_url, tmp_path):
    q, _ = make_queues(boto("sqs"))
    rc, out, err = run_cli(["ingest", "--drain", "--queue-url", q, "--opensearch-url", opensearch_url,
                            "--state-dir", tmp_path / "no-state"])
    assert rc == 2, err[-3000:]
    assert "--bucket" in err


# --- 11. a record over the size limit ------------------------------------------------------------------------


def test_record_over_the_size_limit_is_quarantined_small(run_cli, opensearch_url, os_clean, tmp_path):
    prefix = os_clean
    first, last = records_of(FIXTURES / FIFTY)[:2]
    src = tmp_path / "src"
    src.mkdir()
    path = src / "huge-record.json.gz"
    chunk = b"a" * (1 << 20)
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(b'{"Records":[' + json.dumps(first).encode() + b",")
        f.write(b'{"eventVersion":"1.08","eventID":"huge-record-1","eventTime":"2021-12-02T22:00:00Z",'
                b'"eventName":"PutObject","eventSource":"s3.amazonaws.com","requestParameters":{"blob":"')
        for _ in range(200):
            f.write(chunk)
        f.write(b'"}},' + json.dumps(last).encode() + b"]}")
    q = tmp_path / "q.jsonl"
    s, _ = backfill(run_cli, ["--source-dir", src, "--opensearch-url", opensearch_url, "--index-prefix", prefix,
                              "--quarantine", q], expect_rc=3)
    assert s["records"] == 3 and s["indexed"] == 2 and s["quarantined"] == 1, s
    assert os_ids(opensearch_url, f"{prefix}-*") == {first["eventID"], last["eventID"]}
    raw = q.read_bytes().splitlines()
    assert len(raw) == 1
    assert len(raw[0]) < 200 * 1024, len(raw[0])
    line = json.loads(raw[0])
    assert line["kind"] == "record"
    assert "over the limit" in json.dumps(line["reason"]), line["reason"]


# --- 13. --account is 12 digits; --from/--to honour the time of day --------------------------------------------


def test_account_must_be_twelve_digits(run_cli):
    rc, out, err = run_cli(["init", "--dry-run", "--offline", "--yes", "--account", "12345", "--regions", "us-east-1"])
    assert rc == 2, err[-3000:]
    assert "--account" in err


def test_from_to_honour_the_time_of_day(run_cli, opensearch_url, os_clean, tmp_path):
    prefix = os_clean
    src = tmp_path / "src"
    copy_fixture(DAY_FILE, src)  # one real record at 17:11 that day
    base = records_of(FIXTURES / FIFTY)
    times = ["2022-08-18T00:00:00Z", "2022-08-18T17:11:59Z", "2022-08-18T17:11:59.999Z", "2022-08-18T17:12:00Z",
             "2022-08-18T17:12:00.001Z", "2022-08-18T17:15:30Z", "2022-08-18T17:19:59.999Z", "2022-08-18T17:20:00Z",
             "2022-08-18T17:20:00.001Z", "2022-08-18T17:20:01Z", "2022-08-18T18:00:00Z", "2022-08-18T23:59:59Z",
             "2022-08-17T17:15:00Z", "2022-08-19T17:15:00Z"]
    recs = []
    for i, t in enumerate(times):
        r = dict(base[i])
        r["eventTime"], r["eventID"] = t, f"time-of-day-{i:02d}"
        recs.append(r)
    day = src / "AWSLogs" / "111122223333" / "CloudTrail" / "us-east-1" / "2022" / "08" / "18"
    (day / "111122223333_CloudTrail_us-east-1_20220818T1715Z_0000000000000000.json.gz").write_bytes(
        gzip.compress(json.dumps({"Records": recs}).encode()))

    lo, hi = "2022-08-18T17:12:00Z", "2022-08-18T17:20:00Z"
    parse = lambda t: datetime.fromisoformat(t.replace("Z", "+00:00"))  # noqa: E731
    every = [r for f in sorted(src.rglob("*.json.gz")) for r in records_of(f)]
    want = {r["eventID"] for r in every if parse(lo) <= parse(r["eventTime"]) <= parse(hi)}
    assert len(want) == 5  # the test's own arithmetic: 17:12:00, 17:12:00.001, 17:15:30, 17:19:59.999, 17:20:00

    s, _ = backfill(run_cli, ["--source-dir", src, "--opensearch-url", opensearch_url, "--index-prefix", prefix,
                              "--from", lo, "--to", hi])
    assert s["records"] == len(want) and s["indexed"] == len(want), s
    assert s["filtered"] == len(every) - len(want), s
    assert os_ids(opensearch_url, f"{prefix}-*") == want
