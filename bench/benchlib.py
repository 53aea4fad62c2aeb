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
