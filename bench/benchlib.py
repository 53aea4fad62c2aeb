"""What the Python benchmarks share: paths, logging, the test servers' env, free ports, bench-index cleanup."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
BIN = os.environ.get("TS_TRAILSETUP_BIN", str(ROOT / "target/release/trailsetup"))
FIXTURES = os.environ.get("CT_FIXTURES", "/work/shared/fixtures/cloudtrail")
SYNTH = os.environ.get("CT_SYNTH", "/work/shared/tools/ct_synth.py")
MOTO = ROOT / ".cache/venv/bin/moto_server"


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def load_env() -> None:
    """Read .cache/run/env; start the test servers (scripts/testenv.sh start) when OpenSearch does not answer."""
    envf = ROOT / ".cache/run/env"

    def read() -> None:
        for line in envf.read_text().splitlines():
            if line.startswith("export ") and "=" in line:
                k, v = line[len("export "):].split("=", 1)
                os.environ[k] = v.strip("'\"")

    def answers() -> bool:
        try:
            return requests.get(os.environ.get("TS_OPENSEARCH_URL", ""), timeout=5).ok
        except requests.RequestException:
            return False

    if envf.exists():
        read()
    if not answers():
        log("starting the test servers (scripts/testenv.sh start)")
        subprocess.run([str(ROOT / "scripts/testenv.sh"), "start"], check=True)
        read()
        if not answers():
            sys.exit("bench: OpenSearch does not answer at " + os.environ.get("TS_OPENSEARCH_URL", "?"))


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def delete_bench(osurl: str, prefix: str) -> None:
    """Delete the `<prefix>-*` indices and `<prefix>*` index templates."""
    requests.delete(f"{osurl}/{prefix}-*?expand_wildcards=all&ignore_unavailable=true", timeout=120)
    requests.delete(f"{osurl}/_index_template/{prefix}*", timeout=60)


def start_moto(work: Path, procs: list[subprocess.Popen], server: list[str] | None = None) -> str:
    """Start a private moto server (`server`, default moto_server as installed) on a free loopback port, logging
    to work/moto.log; it is appended to `procs` (stop_all stops it). Returns its URL once it answers."""
    import time

    port = free_port()
    procs.append(subprocess.Popen([*(server or [str(MOTO)]), "-H", "127.0.0.1", "-p", str(port)],
                                  stdout=open(work / "moto.log", "wb"), stderr=subprocess.STDOUT))
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if requests.get(f"{url}/moto-api/", timeout=2).ok:
                return url
        except requests.RequestException:
            time.sleep(0.1)
    sys.exit(f"bench: moto did not start (see {work}/moto.log)")


def trailsetup_env(endpoint: str, work: Path) -> dict[str, str]:
    """The environment for trailsetup against `endpoint` with dummy credentials, no AWS config files, and its
    state (checkpoints) under work/state."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TRAILSETUP_"))}
    env.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_REGION="us-east-1", AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null",
               AWS_EC2_METADATA_DISABLED="true", XDG_STATE_HOME=str(work / "state"))
    return env


def stop_all(procs: list[subprocess.Popen]) -> None:
    """Stop the servers started here, by PID, last first (SIGTERM, then SIGKILL after 10 s)."""
    for p in reversed(procs):
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


def preflight() -> str:
    """Check for the release binary and moto_server, load the test servers' env; returns the OpenSearch URL."""
    if not os.access(BIN, os.X_OK):
        sys.exit(f"bench: no trailsetup binary at {BIN} (cargo build --release first)")
    if not MOTO.exists():
        sys.exit("bench: no moto_server in .cache/venv (scripts/testenv.sh setup installs it)")
    load_env()
    return os.environ["TS_OPENSEARCH_URL"]
