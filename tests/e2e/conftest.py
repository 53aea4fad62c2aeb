"""Fixtures for end-to-end tests of the trailsetup binary against emulators.

The emulators are started by `scripts/testenv.sh start` (or by `scripts/test`, which
does everything); their addresses come from the environment:

    TS_MOTO_URL        moto server (AWS emulator), e.g. http://127.0.0.1:35173
    TS_OPENSEARCH_URL  one-node OpenSearch, e.g. http://127.0.0.1:9201

Fixtures: moto_url, opensearch_url, moto_reset, aws_env, boto, os_prefix, os_clean,
trailsetup_bin, run_cli. `run_cli` is also importable as a plain function
(`from conftest import run_cli_with`) for use outside fixtures.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import socket
import subprocess
from pathlib import Path
from typing import Callable, Mapping, Sequence

import pytest
import requests

from awsproxy import start_proxy

REPO_ROOT = Path(__file__).resolve().parents[2]
START_HINT = "start the emulators with `scripts/testenv.sh start` and `source .cache/run/env` (or run `scripts/test`)"

# Never let a developer's real AWS configuration leak into the tests, in this process
# (boto3) or in the binary's environment (aws_env).
_AWS_VARS_TO_DROP = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CA_BUNDLE",
)

TEST_ACCESS_KEY = "testing"
TEST_SECRET_KEY = "testing"
TEST_REGION = "us-east-1"


def pytest_configure(config: pytest.Config) -> None:
    for var in _AWS_VARS_TO_DROP:
        os.environ.pop(var, None)
    missing = REPO_ROOT / ".cache" / "no-aws-config"
    os.environ["AWS_CONFIG_FILE"] = str(missing)
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(missing)
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


def _env_url(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        pytest.fail(f"{name} is not set: {START_HINT}", pytrace=False)
    return value.rstrip("/")


# --- endpoints -----------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_url() -> str:
    """Base URL of the moto server (TS_MOTO_URL)."""
    return _env_url("TS_MOTO_URL")


@pytest.fixture(scope="session")
def opensearch_url() -> str:
    """Base URL of the OpenSearch node (TS_OPENSEARCH_URL)."""
    return _env_url("TS_OPENSEARCH_URL")


@pytest.fixture
def moto_reset(moto_url: str) -> str:
    """Wipe all moto state before the test. Returns the moto URL."""
    r = requests.post(f"{moto_url}/moto-api/reset", timeout=30)
    assert r.status_code == 200, f"moto reset failed: HTTP {r.status_code} {r.text[:200]}"
    return moto_url


# --- AWS -----------------------------------------------------------------------


@pytest.fixture
def aws_env(moto_url: str, tmp_path: Path) -> dict[str, str]:
    """Environment for running the binary against moto.

    A copy of this process's environment with every AWS_* and TRAILSETUP_* variable
    removed, then: AWS_ENDPOINT_URL=moto, fixed test credentials, AWS_REGION=us-east-1,
    config/credentials files pointing at nothing, no AWS_PROFILE, IMDS disabled, and
    HOME / XDG_* dirs inside the test's tmp_path so state files never touch the real home
    and never carry over between tests. Tests may add to it (a fresh dict per test).
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AWS_") and not k.startswith("TRAILSETUP_")
    }
    nothing = tmp_path / "no-aws-config"
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env.update(
        {
            "AWS_ENDPOINT_URL": moto_url,
            "AWS_ACCESS_KEY_ID": TEST_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": TEST_SECRET_KEY,
            "AWS_REGION": TEST_REGION,
            "AWS_DEFAULT_REGION": TEST_REGION,
            "AWS_CONFIG_FILE": str(nothing),
            "AWS_SHARED_CREDENTIALS_FILE": str(nothing),
            "AWS_EC2_METADATA_DISABLED": "true",
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_STATE_HOME": str(home / ".local" / "state"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "NO_COLOR": "1",
            "RUST_BACKTRACE": "1",
            # the tests that compare with the shared vectors expect daily indices; `init`'s own choice on this
            # one-node cluster (monthly) is tested in test_layout.py, which removes this
            "TRAILSETUP_INDEX_GRANULARITY": "day",
        }
    )
    return env


@pytest.fixture
def boto(moto_url: str) -> Callable[..., object]:
    """Factory: boto(service, region="us-east-1") -> boto3 client talking to moto."""
    import boto3

    def make(service: str, region: str = TEST_REGION, **kwargs: object) -> object:
        return boto3.client(
            service,
            region_name=region,
            endpoint_url=moto_url,
            aws_access_key_id=TEST_ACCESS_KEY,
            aws_secret_access_key=TEST_SECRET_KEY,
            **kwargs,
        )

    return make


# --- OpenSearch ----------------------------------------------------------------


def _prefix_for(nodeid: str) -> str:
    """Deterministic, index-name-safe prefix unique to one test."""
    name = nodeid.split("::")[-1]
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40].strip("-") or "t"
    digest = hashlib.sha256(nodeid.encode()).hexdigest()[:8]
    return f"ts-{slug}-{digest}"


def _os_delete_prefixed(base: str, prefix: str) -> None:
    pattern = f"{prefix}*"
    # aliases named with the prefix (on any index), then indices, then templates
    requests.delete(f"{base}/_all/_alias/{pattern}", timeout=60)
    requests.delete(
        f"{base}/{pattern}", params={"expand_wildcards": "all", "ignore_unavailable": "true"}, timeout=60
    )
    requests.delete(f"{base}/_index_template/{pattern}", timeout=60)
    requests.delete(f"{base}/_template/{pattern}", timeout=60)
    requests.delete(f"{base}/_component_template/{pattern}", timeout=60)


@pytest.fixture
def os_prefix(request: pytest.FixtureRequest) -> str:
    """The per-test name prefix (e.g. pass as `--index-prefix`)."""
    return _prefix_for(request.node.nodeid)


@pytest.fixture
def os_clean(opensearch_url: str, os_prefix: str):
    """Yields the per-test prefix; indices, aliases and templates named `<prefix>*`
    are deleted before the test (leftovers of an aborted run) and after it."""
    _os_delete_prefixed(opensearch_url, os_prefix)
    yield os_prefix
    _os_delete_prefixed(opensearch_url, os_prefix)


# --- the binary ----------------------------------------------------------------


@pytest.fixture(scope="session")
def trailsetup_bin() -> Path:
    """target/release/trailsetup (CARGO_TARGET_DIR honoured; TS_TRAILSETUP_BIN overrides)."""
    override = os.environ.get("TS_TRAILSETUP_BIN")
    if override:
        path = Path(override)
    else:
        target = Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target"))
        if not target.is_absolute():
            target = REPO_ROOT / target
        path = target / "release" / "trailsetup"
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"trailsetup binary not found at {path}: run `cargo build --release --locked` first "
            "(scripts/test does)",
            pytrace=False,
        )
    return path


def run_cli_with(
    binary: Path | str,
    args: Sequence[object] | str,
    env: Mapping[str, str] | None = None,
    input: str | bytes | None = None,
    timeout: float = 120,
    cwd: Path | str | None = None,
) -> tuple[int, str, str]:
    """Run the binary; stdin is /dev/null (or a pipe carrying `input`), never a TTY.

    Returns (returncode, stdout, stderr) as text. On timeout the test fails with
    whatever output was captured.
    """
    argv = [str(binary)] + (shlex.split(args) if isinstance(args, str) else [str(a) for a in args])
    data = input.encode() if isinstance(input, str) else input
    try:
        proc = subprocess.run(
            argv,
            input=data,
            stdin=subprocess.DEVNULL if data is None else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env) if env is not None else None,
            cwd=str(cwd) if cwd is not None else None,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode("utf-8", "replace")
        err = (e.stderr or b"").decode("utf-8", "replace")
        pytest.fail(
            f"timed out after {timeout}s: {shlex.join(argv)}\n--- stdout ---\n{out[-4000:]}\n"
            f"--- stderr ---\n{err[-4000:]}",
            pytrace=False,
        )
    return (
        proc.returncode,
        proc.stdout.decode("utf-8", "replace"),
        proc.stderr.decode("utf-8", "replace"),
    )


@pytest.fixture
def run_cli(trailsetup_bin: Path, request: pytest.FixtureRequest, tmp_path: Path):
    """run_cli(args, env=None, input=None, timeout=120, cwd=None) -> (rc, stdout, stderr).

    env=None means the `aws_env` fixture's environment (moto endpoint, test credentials);
    cwd defaults to the test's tmp_path so stray state files stay out of the repo.
    """

    def run(
        args: Sequence[object] | str,
        env: Mapping[str, str] | None = None,
        input: str | bytes | None = None,
        timeout: float = 120,
        cwd: Path | str | None = None,
    ) -> tuple[int, str, str]:
        if env is None:
            env = request.getfixturevalue("aws_env")
        return run_cli_with(
            trailsetup_bin, args, env=env, input=input, timeout=timeout, cwd=cwd or tmp_path
        )

    return run


@pytest.fixture
def proxy(moto_reset):
    """proxy(answer=None, rewrite=None) -> (url, calls): a recording proxy in front of moto (tests/e2e/awsproxy.py);
    every proxy started is shut down after the test."""
    servers = []

    def start(answer=None, rewrite=None):
        srv, url, calls = start_proxy(moto_reset, answer=answer, rewrite=rewrite)
        servers.append(srv)
        return url, calls

    yield start
    for s in servers:
        s.shutdown()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
