#!/usr/bin/env python3
"""Distributed-run benchmark: `backfill --enqueue` throughput on 100,000 keys, and exactness of 3 `ingest --drain`
workers when one is killed with SIGKILL part way.

    .cache/venv/bin/python bench/fanout.py [--keys 100000] [--drainers 48] [--records 30000] [--per-file 50]
                                           [--visibility-timeout 5] [--moto locked|shipped]

Starts its own moto server on a free loopback port (the shared one from .cache/run/env is reset by the e2e tests)
and stops it by PID. OpenSearch: $TS_OPENSEARCH_URL from .cache/run/env (scripts/testenv.sh start when it does not
answer); bench-fanout-* indices and their template are deleted before and after.

1. Enqueue: the 100,000 1-record files of .cache/bench/s3list-100000 (the corpus of bench/growth.sh: 1 account,
   4 regions, 70 days; built by /work/shared/tools/ct_synth.py when missing) uploaded to a bucket (boto3, 32 threads),
   then `trailsetup backfill --bucket B --enqueue Q --output json`. moto's SQS scans the whole queue on every send
   (about 0.75 s per 10-message batch at 3,000 messages deep), so a 100,000-deep queue cannot be built in moto:
   --drainers boto3 threads receive (10 at a time) and delete_message_batch while the enqueue runs, recording every
   key, so the queue stays shallow. moto (one Python process) serves requests about in proportion to how many are
   waiting, and each 10-message send needs a receive and a delete to undo it, so the drainers must outnumber
   trailsetup's 16 sends in flight by more than 2 to 1 (48 by default): with 8, the queue grew past 3,000 within
   minutes and every call then took about a second. Reported: messages/s of trailsetup's enqueue (files / its seconds, listing
   included), send requests, the deepest queue seen (sampled every second), and whether the drained key set equals
   the uploaded key set exactly (missing, extra, received twice; the first missing keys are listed). The drainers
   share moto and the 2 cores with the enqueue, so the rate is a floor for this machine, not moto's or SQS's limit.
   moto's SQS is not thread-safe under this load: Queue.delete_message rebuilds the message list without the lock
   that add_message appends under, which drops a message sent meanwhile (bench/moto_sqs_race.py; hence --moto
   locked by default), and a receive racing a delete can hand out one message twice, so "twice" > 0 is moto's
   doing. trailsetup's own report (files, send_requests: one call per 10 keys means no entry was refused and
   resent) says what it sent.
2. Exactness: a corpus of --records records in files of --per-file (.cache/bench/fanout-N), uploaded, enqueued to
   a queue with a dead-letter queue (maxReceiveCount 5), then 3 `ingest --drain --visibility-timeout V` workers
   (each with --bulk-mib 0.1 --bulk-concurrency 1, as in the e2e kill test, so the run lasts long enough to kill one
   part way). Worker 1 gets SIGKILL once OpenSearch holds >= 1/3 of the records; the other two drain the rest (the
   killed worker's messages come back after V seconds); one more `ingest --drain` runs if the queue is not empty
   after they exit. The document count must equal the records exactly; printed with the queue and DLQ counts.
--moto locked (the default) runs bench/moto_locked.py, moto with SQS delete_message under the queue's lock, so that
moto's lost-update race (bench/moto_sqs_race.py) cannot drop a sent message and the drained set measures
trailsetup alone; --moto shipped runs moto_server as installed (8 of 100,000 keys went missing that way).
Prints the figures side by side; no assertion on times.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import requests
from botocore.config import Config

from benchlib import BIN, FIXTURES, ROOT, SYNTH, delete_bench, log, preflight, start_moto, stop_all, trailsetup_env

PREFIX = "bench-fanout"






def corpus(name: str, args: list[str]) -> Path:
    d = ROOT / ".cache/bench" / name
    if not (d / ".done").exists():
        log(f"building {d}")
        shutil.rmtree(d, ignore_errors=True)
        subprocess.run([sys.executable, SYNTH, FIXTURES, str(d), *args], check=True, stdout=sys.stderr)
        (d / ".done").touch()
    return d




def os_count(osurl: str) -> int:
    requests.post(f"{osurl}/{PREFIX}-*/_refresh", timeout=60)
    r = requests.get(f"{osurl}/{PREFIX}-*/_count", timeout=60)
    return r.json().get("count", 0) if r.ok else 0




def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--drainers", type=int, default=48)
    ap.add_argument("--records", type=int, default=30_000)
    ap.add_argument("--per-file", type=int, default=50)
    ap.add_argument("--visibility-timeout", type=int, default=5)
    ap.add_argument("--moto", choices=("locked", "shipped"), default="locked",
                    help="locked: moto with SQS delete_message under its lock (bench/moto_locked.py); shipped: as installed")
    a = ap.parse_args()
    osurl = preflight()
    big = corpus(f"s3list-{a.keys}", ["--records", str(a.keys), "--per-file", "1", "--days", "70", "--regions", "4",
                                      "--seed", "3"])
    small = corpus(f"fanout-{a.records}-{a.per_file}", ["--records", str(a.records), "--per-file", str(a.per_file),
                                                       "--days", "30", "--regions", "4", "--seed", "11"])

    work = Path(tempfile.mkdtemp(prefix="bench-fanout-"))
    procs: list[subprocess.Popen] = []
    res: dict = {}
    try:
        moto = start_moto(work, procs, None if a.moto == "shipped" else [sys.executable, str(ROOT / "bench/moto_locked.py")])
        kw = dict(region_name="us-east-1", endpoint_url=moto, aws_access_key_id="testing", aws_secret_access_key="testing",
                  config=Config(max_pool_connections=max(32, a.drainers + 2), retries={"mode": "standard", "max_attempts": 5}))
        s3, sqs = boto3.client("s3", **kw), boto3.client("sqs", **kw)
        env = trailsetup_env(moto, work)

        def upload(bucket: str, root: Path) -> list[str]:
            s3.create_bucket(Bucket=bucket)
            files = sorted(root.rglob("*.json.gz"))
            keys = [str(p.relative_to(root)) for p in files]
            t0 = time.monotonic()
            with ThreadPoolExecutor(32) as ex:
                list(ex.map(lambda pk: s3.put_object(Bucket=bucket, Key=pk[1], Body=pk[0].read_bytes()), zip(files, keys)))
            log(f"uploaded {len(keys)} objects to {bucket} in {time.monotonic() - t0:.1f}s")
            return keys

        def make_queues(name: str, max_receive: int) -> tuple[str, str]:
            dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            q = sqs.create_queue(QueueName=name, Attributes={
                "VisibilityTimeout": "60",
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": str(max_receive)})})["QueueUrl"]
            return q, dlq

        def queue_counts(url: str) -> tuple[int, int]:
            at = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
                "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
            return int(at["ApproximateNumberOfMessages"]), int(at["ApproximateNumberOfMessagesNotVisible"])

        # --- 1. enqueue 100k keys with drainers keeping the queue shallow -------------------------------------------
        keys = upload("bench-fanout-big", big)
        q, _ = make_queues("bench-fanout-big", 10)
        drained: list[str] = []
        lock = threading.Lock()
        enqueue_done = threading.Event()
        depth = [0]

        def drainer() -> None:
            empty_after_done = 0
            while empty_after_done < 3:
                try:
                    ms = sqs.receive_message(QueueUrl=q, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
                except Exception as exc:  # noqa: BLE001 - keep draining; a lost receive comes back after the timeout
                    log(f"drainer: {exc}")
                    time.sleep(0.5)
                    continue
                if not ms:
                    if enqueue_done.is_set():
                        empty_after_done += 1
                    time.sleep(0.1)
                    continue
                got = []
                for m in ms:
                    body = json.loads(m["Body"])
                    got += body["s3ObjectKey"] if isinstance(body["s3ObjectKey"], list) else [body["s3ObjectKey"]]
                with lock:
                    drained.extend(got)
                try:
                    sqs.delete_message_batch(QueueUrl=q, Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(ms)])
                except Exception as exc:  # noqa: BLE001 - undeleted messages come back and show as "twice"
                    log(f"drainer: {exc}")

        def sampler() -> None:
            i = 0
            while not enqueue_done.is_set():
                try:
                    v, nv = queue_counts(q)
                    depth[0] = max(depth[0], v + nv)
                    i += 1
                    if i % 15 == 0:
                        log(f"queue depth {v + nv}, {len(drained)} drained")
                except Exception:  # noqa: BLE001 - a missed sample is not a result
                    pass
                time.sleep(1)

        threads = [threading.Thread(target=drainer, daemon=True) for _ in range(a.drainers)]
        threads.append(threading.Thread(target=sampler, daemon=True))
        for t in threads:
            t.start()
        t0 = time.monotonic()
        p = subprocess.run([BIN, "backfill", "--bucket", "bench-fanout-big", "--enqueue", q, "--restart", "--output", "json"],
                           env=env, stdout=subprocess.PIPE, stderr=open(work / "enqueue.err", "wb"))
        enq_wall = time.monotonic() - t0
        enqueue_done.set()
        for t in threads:
            t.join()
        drain_wall = time.monotonic() - t0
        if p.returncode != 0:
            sys.exit(f"bench: enqueue failed rc={p.returncode}: {(work / 'enqueue.err').read_text()[-2000:]}")
        e = json.loads(p.stdout)["enqueue"]
        got, want = set(drained), set(keys)
        res["enqueue"] = dict(e, wall=enq_wall, drain_wall=drain_wall, drained=len(drained), unique=len(got),
                              missing=len(want - got), extra=len(got - want), twice=len(drained) - len(got),
                              depth=depth[0], left=queue_counts(q), missing_keys=sorted(want - got)[:10])
        log("enqueue: " + json.dumps(res["enqueue"]))

        # --- 2. 3 workers, one killed with SIGKILL part way -----------------------------------------------------------
        delete_bench(osurl, PREFIX)
        skeys = upload("bench-fanout-small", small)
        q2, dlq2 = make_queues("bench-fanout-small", 5)
        p = subprocess.run([BIN, "backfill", "--bucket", "bench-fanout-small", "--enqueue", q2, "--restart", "--output", "json"],
                           env=env, stdout=subprocess.PIPE, stderr=open(work / "enqueue2.err", "wb"))
        if p.returncode != 0:
            sys.exit(f"bench: enqueue of the small corpus failed rc={p.returncode}")
        sent = json.loads(p.stdout)["enqueue"]["files"]
        argv = [BIN, "ingest", "--drain", "--output", "json", "--bucket", "bench-fanout-small", "--queue-url", q2, "--opensearch-url", osurl,
                "--index-prefix", PREFIX, "--visibility-timeout", str(a.visibility_timeout), "--bulk-mib", "0.1",
                "--bulk-concurrency", "1"]
        t0 = time.monotonic()
        workers = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=open(work / f"worker{i}.err", "wb"))
                   for i in range(3)]
        target = a.records // 3
        at_kill = 0
        while time.monotonic() - t0 < 600 and workers[0].poll() is None:
            at_kill = os_count(osurl)
            if at_kill >= target:
                break
            time.sleep(0.05)
        killed_running = workers[0].poll() is None
        kill_t = time.monotonic() - t0
        if killed_running:
            os.kill(workers[0].pid, signal.SIGKILL)
        workers[0].wait()
        outs = []
        for w in workers[1:]:
            out, _ = w.communicate(timeout=900)
            if w.returncode != 0:
                log(f"worker rc={w.returncode}: {(work / 'worker1.err').read_text()[-1000:]}")
            try:
                outs.append(json.loads(out)["ingest"])
            except ValueError:
                pass
        after_two = os_count(osurl)
        left = queue_counts(q2)
        extra_run = None
        if left != (0, 0) or after_two != a.records:
            time.sleep(a.visibility_timeout + 1)
            p = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=open(work / "worker3.err", "wb"), timeout=900)
            extra_run = json.loads(p.stdout)["ingest"] if p.returncode == 0 else {"rc": p.returncode}
            if p.returncode == 0:
                outs.append(extra_run)
        total_wall = time.monotonic() - t0
        final = os_count(osurl)
        res["exact"] = dict(files=len(skeys), sent=sent, records=a.records, killed_running=killed_running,
                            kill_t=kill_t, at_kill=at_kill, after_two=after_two, left_after_two=left, extra_run=extra_run is not None,
                            final=final, left=queue_counts(q2), dlq=queue_counts(dlq2), wall=total_wall,
                            indexed=sum(o.get("indexed", 0) for o in outs), duplicates=sum(o.get("duplicates", 0) for o in outs),
                            quarantined=sum(o.get("quarantined", 0) for o in outs))
        log("exactness: " + json.dumps(res["exact"]))
        delete_bench(osurl, PREFIX)
    finally:
        stop_all(procs)
        shutil.rmtree(work, ignore_errors=True)

    # --- table -----------------------------------------------------------------------------------------------------
    e = res["enqueue"]
    print(f"\n1. backfill --enqueue of {len(keys)} keys (1 message per file), {a.drainers} boto3 drainers running alongside, "
          f"moto {a.moto}")
    hdr = (f"{'files':>7} {'seconds':>8} {'messages/s':>10} {'send reqs':>9} {'deepest':>7} {'drained':>8} {'unique':>7} "
           f"{'missing':>7} {'extra':>5} {'twice':>5} {'exact':>5}")
    print(hdr)
    print("-" * len(hdr))
    exact = e["missing"] == 0 and e["extra"] == 0 and e["unique"] == len(keys)
    print(f"{e['files']:>7} {e['seconds']:>8.2f} {e['files'] / e['seconds']:>10.0f} {e['send_requests']:>9} {e['depth']:>7} "
          f"{e['drained']:>8} {e['unique']:>7} {e['missing']:>7} {e['extra']:>5} {e['twice']:>5} {'yes' if exact else 'NO':>5}")
    for k in e["missing_keys"]:
        print(f"  missing: {k}")
    x = res["exact"]
    print(f"\n2. {x['records']} records in {x['files']} files, 3 ingest --drain workers (--visibility-timeout "
          f"{a.visibility_timeout}), worker 1 SIGKILLed part way")
    hdr = (f"{'killed at s':>11} {'docs then':>9} {'after 2':>8} {'4th run':>7} {'final docs':>10} {'expected':>8} "
           f"{'indexed':>8} {'dups':>5} {'quar':>4} {'queue':>7} {'DLQ':>7} {'seconds':>8} {'exact':>5}")
    print(hdr)
    print("-" * len(hdr))
    print(f"{x['kill_t']:>11.2f} {x['at_kill']:>9} {x['after_two']:>8} {'yes' if x['extra_run'] else 'no':>7} {x['final']:>10} "
          f"{x['records']:>8} {x['indexed']:>8} {x['duplicates']:>5} {x['quarantined']:>4} {str(x['left']):>7} "
          f"{str(x['dlq']):>7} {x['wall']:>8.1f} {'yes' if x['final'] == x['records'] else 'NO':>5}")
    if not x["killed_running"]:
        print("  !! worker 1 had already exited when the kill was due: the kill did not land part way")
    return 0


if __name__ == "__main__":
    sys.exit(main())
